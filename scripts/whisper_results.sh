#!/usr/bin/env bash
# The Whisper-encoder detectors, fold by fold, then the results table.
#   DATA=mini FOLDS="0 1 2 3 4" EPOCHS=8 bash scripts/whisper_results.sh
#   base on the CPU, with masked batch padding instead of 15 s padding:
#   MODELS=whisper_base EPOCHS=4 ARGS="experiment=whisper_base_cpu model.pad_to=batch" bash scripts/whisper_results.sh
MODELS=${MODELS:-"whisper_tiny whisper_base"} EPOCHS=${EPOCHS:-8} exec bash "$(dirname "$0")/results.sh"
