# One command to set up and run the quickstart (make demo), one for the tests (make test: ruff, the docs built
# with warnings as errors, pytest).
# Each creates the virtual environment when missing, installing the pinned CPU torch first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mlegpipe-installed
TORCH := torch==2.13.0

.PHONY: install demo test lint bench docs clean

$(STAMP): pyproject.toml plugins/mlegpipe-example-detector/pyproject.toml plugins/mlegpipe-example-decay/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[pythia,dask,test,docs]" ./plugins/mlegpipe-example-detector ./plugins/mlegpipe-example-decay
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mlegpipe run pipelines/quickstart.toml --force

lint: $(STAMP)
	$(BIN)/ruff check .

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

test: $(STAMP)
	$(BIN)/ruff check .
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache build/site
