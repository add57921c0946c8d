#!/usr/bin/env bash
# Train the Whisper-encoder detectors fold by fold, then print the results table (all experiments).
# Finished folds are skipped and killed runs resume, so this can be re-run until it completes.
#   DATA=mini FOLDS="0 1 2 3 4" EPOCHS=8 bash scripts/whisper_results.sh
#   CPU run of base with masked batch padding instead of 15 s padding:
#   MODELS=whisper_base ARGS="experiment=whisper_base_cpu model.pad_to=batch" bash scripts/whisper_results.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-mini}
FOLDS=${FOLDS:-"0 1 2 3 4"}
EPOCHS=${EPOCHS:-8}
PATIENCE=${PATIENCE:-3}
MODELS=${MODELS:-"whisper_tiny whisper_base"}
ARGS=${ARGS:-}
for fold in $FOLDS; do
  for model in $MODELS; do
    # shellcheck disable=SC2086
    .venv/bin/antispoof train --model "$model" --data "$DATA" --fold "$fold" \
      trainer.max_epochs="$EPOCHS" trainer.patience="$PATIENCE" trainer.progress_every=0 $ARGS
  done
done
.venv/bin/antispoof report --data "$DATA"
