# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.edge-hired-installed

.PHONY: demo test lint install clean

$(STAMP): pyproject.toml constraints/cpu.txt scripts/install.sh
	VENV=$(VENV) bash scripts/install.sh

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edge-hired demo

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check edge_hired tests scripts
	$(VENV)/bin/ruff format --check edge_hired tests scripts

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
