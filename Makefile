# Two commands for a newcomer:  make run   (the main job)   and   make test.
# Each creates the virtual environment .venv itself on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-slow lint typecheck format bench notebooks warmup clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and exactly pinned: an unpinned torch pulls CUDA wheels.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	# Compile the numba kernels into numba's on-disk cache now (about a minute), so that
	# the first PHEW / SynFlow call of a session loads them instead of compiling them.
	$(PY) -m pathnet._kernels.warmup
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/pathnet reproduce --out figures

# The tests and every docstring example of the package (numpydoc Examples run as doctests).
test: $(STAMP)
	$(PY) -m pytest -m "not slow" -n 2 -q --doctest-modules tests pathnet

test-slow: $(STAMP)
	$(PY) -m pytest -m slow -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) -m benchmarks.run

# Regenerate the notebooks from notebooks/make_notebooks.py and execute them in place
# (full settings, kernel started in notebooks/), so the committed files carry their plots.
notebooks: $(STAMP)
	cd notebooks && $(abspath $(PY)) make_notebooks.py

# Refill numba's cache after editing a kernel (make venv does it once at install).
warmup: $(STAMP)
	$(PY) -m pathnet._kernels.warmup

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
