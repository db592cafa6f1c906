# Two commands: `make train` (the main job) and `make test`. `make help` lists all targets.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
ARGS    ?=

.PHONY: help venv train test test-fast bench export clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	touch $(STAMP)

venv: $(STAMP)  ## create .venv and install the project (about 2 minutes the first time)

train: $(STAMP)  ## the main job: MAE on bundled MNIST, CPU, ~6 min; extra Hydra overrides via ARGS="..."
	$(BIN)/python train.py $(ARGS)

test: $(STAMP)  ## run the test suite (2 CPU workers)
	$(BIN)/python -m pytest -n 2 --dist loadfile tests $(ARGS)

test-fast: $(STAMP)  ## the unit tests only (skips the end-to-end CLI runs)
	$(BIN)/python -m pytest -n 2 -m "not e2e" tests $(ARGS)

bench: $(STAMP)  ## benchmarks (every modality; ARGS="--only video" for one section, --quick for a smoke run)
	$(BIN)/python benchmarks/run.py $(ARGS)

export: $(STAMP)  ## export a run's encoder to timm: make export RUN=outputs/DATE/TIME
	$(BIN)/python -m mae.modalities.image.export $(RUN)

clean:  ## remove run outputs (keeps .venv)
	rm -rf outputs multirun lightning_logs
