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

# Synthesise the demo corpus, train the demo model (about 5 minutes on 2 CPU cores), generate a clip.
demo: setup
	$(PY) -m data_prep.demo_corpus --out data/demo
	$(PY) train.py +exp=demo name=$(DEMO_RUN) train.resume=auto
	$(PY) generate.py checkpoint=runs/$(DEMO_RUN)/checkpoints/best.pt seconds=5 out_dir=runs/$(DEMO_RUN)/generated
	@echo
	@echo "Your clip: runs/$(DEMO_RUN)/generated/clip_000.wav (5 s, 16 kHz). Training audio: runs/$(DEMO_RUN)/samples/."

test: setup
	$(PY) -m pytest

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: setup
	$(PY) bench/generation.py
