#!/usr/bin/env bash
# SpoofBench v3 at full scale on the CPU (issue 29's results): build full v3, the two probes of
# learnability (linear-frequency statistics with gradient boosting, written as a baseline
# submission; frozen Whisper-base states with logistic regression), then MHFA on frozen
# Whisper-base and a pooled head on linear-frequency frames (spectral_pooled) fold by fold, vote
# and stack. Every step resumes where a killed run stopped
# (finished families, cached states and finished folds are kept), so re-running it continues.
#   FOLDS="0 1 2 3 4" EPOCHS=3 SPECTRAL_EPOCHS=12 bash scripts/v3_full.sh 2>&1 | tee v3_full.log
set -euo pipefail
cd "$(dirname "$0")/.."
FOLDS=${FOLDS:-"0 1 2 3 4"}
EPOCHS=${EPOCHS:-3}
SPECTRAL_EPOCHS=${SPECTRAL_EPOCHS:-12}
stage() { echo "== $1: $(date -u +%T)"; }
stage "data"
/usr/bin/time -f "data: %e s wall, %U s user, %S s sys, %M KB peak" .venv/bin/antispoof data --preset full
stage "spectral probe"
mkdir -p submissions
.venv/bin/python bench/learnability.py --data data/spoofbench-full --features spectral --classifier gbm \
  --submission submissions/spectral_gbm_full.csv
stage "embed"
.venv/bin/antispoof embed --data full --model whisper_base_mhfa
stage "whisper probe"
.venv/bin/python bench/learnability.py --data data/spoofbench-full --layers 4,5
stage "train"
MODELS=whisper_base_mhfa DATA=full FOLDS="$FOLDS" EPOCHS="$EPOCHS" PATIENCE=3 bash scripts/results.sh
stage "spectral embed and train"
.venv/bin/antispoof embed --data full --model spectral_pooled
MODELS=spectral_pooled DATA=full FOLDS="$FOLDS" EPOCHS="$SPECTRAL_EPOCHS" PATIENCE=4 bash scripts/results.sh
stage "vote"
.venv/bin/python ensemble/vote.py --dataset full
stage "stack"
.venv/bin/python ensemble/stack.py --dataset full
stage "done"
