#!/usr/bin/env bash
# Train experiments fold by fold (fold-major, so partial runs still compare them all), then print
# the results table. Finished folds are skipped and killed runs resume, so it can be re-run until
# it completes. selcnn_results.sh and whisper_results.sh call it with their experiments.
#   MODELS="whisper_tiny selcnn_segbw" DATA=mini FOLDS="0 1 2 3 4" EPOCHS=8 bash scripts/results.sh
# OUTPUT_ROOT=folds/long keeps a study's fold outputs apart from the standard ones under folds/.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-mini}
FOLDS=${FOLDS:-"0 1 2 3 4"}
EPOCHS=${EPOCHS:-6}
PATIENCE=${PATIENCE:-3}
OUTPUT_ROOT=${OUTPUT_ROOT:-folds}
MODELS=${MODELS:?set MODELS to the experiments to train}
ARGS=${ARGS:-}
for fold in $FOLDS; do
  for model in $MODELS; do
    # shellcheck disable=SC2086
    .venv/bin/antispoof train --model "$model" --data "$DATA" --fold "$fold" \
      trainer.max_epochs="$EPOCHS" trainer.patience="$PATIENCE" trainer.progress_every=0 \
      output_root="$OUTPUT_ROOT" $ARGS
  done
done
.venv/bin/antispoof report --data "$DATA" --output-root "$OUTPUT_ROOT"
