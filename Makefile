# Two commands do everything on a fresh machine (Python 3.11 with venv): `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_RUN ?= demo

.PHONY: setup demo test lint bench

# The virtual environment, rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade pip
	$(VENV)/bin/pip install -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# Synthesise, prepare, upload to a local S3 server, train from s3:// (about 5 minutes on 2 CPU cores), generate.
demo: setup
	$(PY) -m data_prep.demo --name $(DEMO_RUN)

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: setup
	$(PY) bench/generation.py
