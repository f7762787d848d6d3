# `make demo` and `make test` each create .venv when it is missing and install the project into it.
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
# torch first, pinned: this version has a CPU wheel on the dev/CI machines' disk; an unpinned torch
# would download a CUDA build of several GB. GPU users: `make test TORCH=` keeps the torch they have.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.rankscope-installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(if $(TORCH),$(PY) -m pip install -q '$(TORCH)')
	$(PY) -m pip install -q -e '.[dev,real]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rankscope demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/build_program.py
	$(PY) benchmarks/sim_speed.py
	$(PY) benchmarks/train_speed.py
	$(PY) benchmarks/tui_speed.py
	$(PY) benchmarks/real_vs_native.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
