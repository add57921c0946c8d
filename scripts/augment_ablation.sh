#!/usr/bin/env bash
# Augmentation ablation: one experiment per preset (none, each family alone, all) for each model,
# named <model>+<preset>, then the results table. Finished folds are skipped, killed runs resume.
#   MODELS="selcnn_mulbs whisper_tiny" PRESETS="none wave all" FOLDS="0" EPOCHS=4 bash scripts/augment_ablation.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-mini}
FOLDS=${FOLDS:-"0"}
EPOCHS=${EPOCHS:-4}
MODELS=${MODELS:-"selcnn_mulbs whisper_tiny"}
PRESETS=${PRESETS:-"none wave channel specaugment mixup splice noise all"}
ARGS=${ARGS:-}
for model in $MODELS; do
  for fold in $FOLDS; do
    for preset in $PRESETS; do
      # shellcheck disable=SC2086
      .venv/bin/antispoof train --model "$model" --data "$DATA" --fold "$fold" augment="$preset" \
        experiment="$model+$preset" trainer.max_epochs="$EPOCHS" trainer.patience="$EPOCHS" \
        trainer.progress_every=0 $ARGS
    done
  done
done
.venv/bin/antispoof report --data "$DATA" --experiments "*+*"
