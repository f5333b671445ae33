# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.edge-hired-installed
# The lowest transformers the support matrix allows (constraints/lowest.txt), in its own venv.
LOWEST_VENV ?= .venv-lowest
LOWEST_PYTHON ?= python3.11
LOWEST_STAMP := $(LOWEST_VENV)/.edge-hired-installed

.PHONY: demo test test-lowest lint install clean

$(STAMP): pyproject.toml constraints/cpu.txt scripts/install.sh
	VENV=$(VENV) bash scripts/install.sh

$(LOWEST_STAMP): pyproject.toml constraints/lowest.txt scripts/install.sh
	VENV=$(LOWEST_VENV) PYTHON=$(LOWEST_PYTHON) EDGE_HIRED_TARGET=cpu \
		CONSTRAINTS=constraints/lowest.txt bash scripts/install.sh

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edge-hired demo

test: $(STAMP)
	$(PY) -m pytest

# Every test but the `slow` ones (benchmarks, the pip resolver): all model families, export, serve.
test-lowest: $(LOWEST_STAMP)
	$(LOWEST_VENV)/bin/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check edge_hired tests scripts
	$(VENV)/bin/ruff format --check edge_hired tests scripts

clean:
	rm -rf $(VENV) $(LOWEST_VENV) .pytest_cache .hypothesis
