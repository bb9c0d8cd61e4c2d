# Two entry points (see README): `make reproduce` and `make test`.
# Both are idempotent: the virtual environment is built once (a stamp file
# records it) and the data is fetched once (the fetch verifies what is there).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.rnnlab-installed
OUT    ?= reports/reference
PROFILE ?= reference

.PHONY: setup data reproduce smoke test lint cli-parsers clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# pinned: pip takes the CPU build from the local wheel; unpinned torch pulls a multi-GB CUDA build
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,sweep,serve]'
	touch $(STAMP)

data: setup
	$(BIN)/rnnlab data fetch --dataset mnist

reproduce: data
	$(BIN)/rnnlab reproduce --profile $(PROFILE) --jobs 2 --out $(OUT)

smoke: data
	$(BIN)/rnnlab train mnist --dry-run --force --out runs/smoke

test: setup lint
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests bench

# the command line's parsers as data, read by `rnnlab` instead of importing torch to parse;
# rerun after changing a setting, task, cell or command option (tests/test_cli_fast.py checks)
cli-parsers: setup
	$(BIN)/python -m rnnlab.cli.live

clean:
	rm -rf $(VENV) runs reports
