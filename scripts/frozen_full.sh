#!/usr/bin/env bash
# Full-scale frozen-encoder run on the CPU: build SpoofBench-full, cache the encoder's states once,
# train the heads on every fold, then vote and stack over them. Every step resumes where a killed
# run stopped (finished folds are skipped), so re-running it continues the study.
#   MODELS="whisper_tiny_mhfa whisper_tiny_pooled" FOLDS="0 1 2 3 4" bash scripts/frozen_full.sh
# Whisper-base (the default) needs 22 GB of disk for its cache, tiny.en 13 GB.
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS=${MODELS:-"whisper_base_mhfa whisper_base_pooled"}
FOLDS=${FOLDS:-"0 1 2 3 4"}
EPOCHS=${EPOCHS:-6}
stage() { echo "== $1: $(date -u +%T)"; }
stage "data"
.venv/bin/antispoof data --preset full
for model in $MODELS; do
  stage "embed ($model)"
  .venv/bin/antispoof embed --data full --model "$model"
done
stage "train"
MODELS="$MODELS" DATA=full FOLDS="$FOLDS" EPOCHS="$EPOCHS" PATIENCE=3 bash scripts/results.sh
stage "vote"
.venv/bin/python ensemble/vote.py --dataset full
stage "stack"
.venv/bin/python ensemble/stack.py --dataset full
stage "done"
