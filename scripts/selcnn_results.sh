#!/usr/bin/env bash
# Train every SELCNN-MTL variant and the LCNN baseline fold by fold (fold-major, so partial runs
# still compare all variants), then print the results table. Finished folds are skipped and
# killed runs resume, so this can be re-run until it completes.
#   DATA=mini FOLDS="0 1 2 3 4" EPOCHS=6 bash scripts/selcnn_results.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-mini}
FOLDS=${FOLDS:-"0 1 2 3 4"}
EPOCHS=${EPOCHS:-6}
PATIENCE=${PATIENCE:-3}
MODELS=(selcnn_segment selcnn_utterance selcnn_segbw selcnn_uttbw selcnn_mulbs selcnn_segu selcnn_uttu lcnn_segment)
for fold in $FOLDS; do
  for model in "${MODELS[@]}"; do
    .venv/bin/antispoof train --model "$model" --data "$DATA" --fold "$fold" \
      trainer.max_epochs="$EPOCHS" trainer.patience="$PATIENCE" trainer.progress_every=0
  done
done
.venv/bin/antispoof report --data "$DATA"
