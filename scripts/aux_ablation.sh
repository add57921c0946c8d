#!/usr/bin/env bash
# The auxiliary multi-task ablation of docs/results_aux_mtl.md (seed 003): OC-softmax on the frozen
# Whisper-base MHFA head, then + S1 reconstruction, + S2 adversarial conversion, + S3 speaker, + all
# three, fold-major on mini (a partial run still compares every system on the folds it finished),
# then the paired bootstrap of each against the vanilla OC-softmax head. Resumable.
#   EPOCHS=3 FOLDS="0 1 2 3 4" bash scripts/aux_ablation.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=whisper_base_mhfa_oc
MODELS="$BASE ${BASE}_s1 ${BASE}_s2 ${BASE}_s3 ${BASE}_all"
MODELS="$MODELS" DATA=${DATA:-mini} FOLDS="${FOLDS:-0 1 2 3 4}" EPOCHS="${EPOCHS:-3}" bash scripts/results.sh
.venv/bin/antispoof report --data "${DATA:-mini}" --experiments "${BASE}*"
.venv/bin/antispoof compare ${BASE}_s1:$BASE ${BASE}_s2:$BASE ${BASE}_s3:$BASE ${BASE}_all:$BASE --data "${DATA:-mini}" --resamples "${RESAMPLES:-200}"
