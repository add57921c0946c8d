#!/usr/bin/env bash
# Every SELCNN-MTL variant and the LCNN baseline, fold by fold, then the results table.
#   DATA=mini FOLDS="0 1 2 3 4" EPOCHS=6 bash scripts/selcnn_results.sh
MODELS=${MODELS:-"selcnn_segment selcnn_utterance selcnn_segbw selcnn_uttbw selcnn_mulbs selcnn_segu selcnn_uttu lcnn_segment"} \
  EPOCHS=${EPOCHS:-6} exec bash "$(dirname "$0")/results.sh"
