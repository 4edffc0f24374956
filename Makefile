# Quick start: `make demo` and `make test` set up .venv on first use.
#
# The virtual environment sees the system's site-packages, so a torch that is
# already installed (e.g. a CUDA build) is used as it is. Only where no torch
# is importable is torch==2.13.0 installed first: on the project's machines
# that pin is a CPU build on local disk, while an unpinned "torch" would pull
# a multi-GB CUDA build.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.skweight-installed
TORCH_PIN ?= torch==2.13.0

.PHONY: setup demo test bench lint examples clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) -m skweight.demo

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) benchmarks/bench_train.py

lint: setup
	$(PY) -m ruff check skweight tests examples benchmarks

examples: setup
	@for f in examples/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
