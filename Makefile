# Every target brings the project-local virtualenv up to date itself, so a fresh machine
# needs nothing but Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
VECTORS ?= ../shared/vectors
PY_DIRS := $(wildcard relay tests bench adapters proto)

.PHONY: run test lint proto bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# The main job: the demo (reference partner chains, their adapters and witnesses, the relay on
# embedded SQLite, a court session). Ctrl-C stops everything.
run: $(STAMP)
	$(BIN)/relay demo

lint: $(STAMP)
	$(BIN)/ruff check $(PY_DIRS)
	$(BIN)/ruff format --check $(PY_DIRS)
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	bash scripts/ensure-system-deps.sh
	$(BIN)/python -m pytest -n 2 -q

proto: $(STAMP)
	$(BIN)/python proto/generate.py

# Benchmarks are not tests: they print measured rates and ratios against a floor measured
# in the same run. Each can also be run alone: make bench-proofs, bench-lightclient, ...
BENCHES := proofs lightclient checkpoints query store replicas scale audit

bench: $(addprefix bench-,$(BENCHES))

bench-%: $(STAMP)
	$(BIN)/python bench/bench_$*.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
