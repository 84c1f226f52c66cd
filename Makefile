# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo-workspace
DEMO_NIGHTS ?= 3

.PHONY: demo test lint install bench soak soxspipe test-soxspipe

$(BIN)/soxs-es: pyproject.toml setup.py soxs_es/_speedups.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/soxs-es
	@$(BIN)/python -m compileall -q soxs_es >/dev/null  # byte-code ready: each command imports ~0.1 s faster

demo: install
	rm -rf $(DEMO_DIR)
	$(BIN)/soxs-es demo $(DEMO_DIR) --nights $(DEMO_NIGHTS)
	$(BIN)/soxs-es prep $(DEMO_DIR)
	@echo
	@echo "Workspace made in $(DEMO_DIR)/:"
	@find $(DEMO_DIR) -maxdepth 2 | sort | head -40
	@echo
	$(BIN)/soxs-es log $(DEMO_DIR) | tail -5

test: install
	$(BIN)/ruff check soxs_es tests
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check soxs_es tests

# Benchmarks (not run by CI). SOXSPIPE_VENV=/path/to/venv compares with soxspipe 0.19.0; BENCH_ARGS=--big adds 1,000 nights.
bench: install
	$(BIN)/python bench/run.py $(if $(SOXSPIPE_VENV),--soxspipe $(SOXSPIPE_VENV)) $(BENCH_ARGS)

# A longer fault-injection run: prep killed (SIGKILL) at 100 random moments, each re-run must converge.
soak: install
	SOXS_ES_SOAK=100 $(BIN)/python -m pytest -q tests/test_reliability.py -k killed
	SOXS_ES_SOAK=100 SOXS_ES_SOAK_NIGHTS=16 $(BIN)/python -m pytest -q tests/test_reliability.py -k killed

# soxspipe 0.19.0 beside soxs-es (it needs Python >= 3.12: python3.12 on PATH, else pyenv's 3.12.1), and the
# tests that run it (skipped by `make test`, which needs no soxspipe).
# (pyenv's shim for python3.12 is on PATH even where it cannot run, so the candidate must answer --version)
SOXSPIPE_PYTHON ?= $(shell python3.12 --version >/dev/null 2>&1 && command -v python3.12 || echo "$$(pyenv root 2>/dev/null)/versions/3.12.1/bin/python")
SOXSPIPE_ENV ?= .soxspipe-venv

$(SOXSPIPE_ENV)/bin/soxspipe:
	$(SOXSPIPE_PYTHON) -m venv $(SOXSPIPE_ENV)
	$(SOXSPIPE_ENV)/bin/pip install --quiet soxspipe==0.19.0 six
	touch $@

soxspipe: $(SOXSPIPE_ENV)/bin/soxspipe

test-soxspipe: install soxspipe
	SOXSPIPE=$(abspath $(SOXSPIPE_ENV))/bin/soxspipe $(BIN)/python -m pytest -q -rs tests/test_soxspipe.py
