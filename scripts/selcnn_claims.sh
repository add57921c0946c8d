#!/usr/bin/env bash
# The PartialSpoof paper's claims as paired comparisons on the hidden test clips (run after
# selcnn_results.sh): Δ EER (A - B) with a 95 % bootstrap interval, over the folds both finished.
#   DATA=mini OUTPUT_ROOT=folds/long bash scripts/selcnn_claims.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PAIRS=(
  # multi-task over single task
  selcnn_segbw:selcnn_segment selcnn_mulbs:selcnn_segment
  selcnn_uttbw:selcnn_utterance selcnn_mulbs:selcnn_utterance
  # binary branch over uni-branch
  selcnn_segbw:selcnn_segu selcnn_mulbs:selcnn_segu selcnn_mulbs:selcnn_uttu
  # SegBW best
  selcnn_segbw:selcnn_mulbs selcnn_segbw:selcnn_uttbw
  # SE blocks over the plain LCNN (Table 4)
  selcnn_segment:lcnn_segment
)
.venv/bin/antispoof compare "${PAIRS[@]}" --data "${DATA:-mini}" --output-root "${OUTPUT_ROOT:-folds}" \
  --resamples "${RESAMPLES:-1000}"
