# One command to set up and run the quickstart (make demo), one for the tests (make test).
# Each creates the virtual environment when missing, installing the pinned CPU torch first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mlegpipe-installed
TORCH := torch==2.13.0

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml plugins/mlegpipe-example-detector/pyproject.toml plugins/mlegpipe-example-decay/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[pythia,dask,test]" ./plugins/mlegpipe-example-detector ./plugins/mlegpipe-example-decay
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mlegpipe run pipelines/quickstart.toml --force

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP)
	$(BIN)/ruff check .
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
