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

.PHONY: setup demo test test-vision bench lint examples gpu-check docs clean

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

# The pretrained path on real architectures (torchvision's resnet18 and
# efficientnet_b0, timm's resnet18; random weights, nothing downloaded): the
# tests marked vision, in a second environment of its own, so that .venv keeps
# its light CPU torch (PyPI's torchvision does not load beside torch 2.13.0).
# About 5.5 GB (a CUDA build of torch that runs on the CPU). torch and
# torchvision are pinned in the same pip command as the project, so that its
# "torch>=2.2" cannot move them.
VISION_VENV ?= .venv-vision
VISION_PY := $(VISION_VENV)/bin/python
VISION_STAMP := $(VISION_VENV)/.skweight-installed
VISION_PINS ?= torch==2.14.1 torchvision==0.29.1 timm

$(VISION_STAMP): pyproject.toml
	@test -x $(VISION_PY) || $(PYTHON) -m venv $(VISION_VENV)
	$(VISION_PY) -m pip install --quiet $(VISION_PINS) -e ".[test]"
	@touch $(VISION_STAMP)

test-vision: $(VISION_STAMP)
	$(VISION_PY) -m pytest -m vision -p no:cacheprovider tests/test_vision.py

bench: setup
	$(PY) benchmarks/bench_train.py

# The CUDA tests and the GPU benchmark (fp32 and bf16, data on the GPU) in one
# command, a few minutes on one GPU; it stops at once where CUDA is missing.
gpu-check: setup
	@$(PY) -c "import torch, sys; ok = torch.cuda.is_available(); print('CUDA:', torch.cuda.get_device_name(0) if ok else 'not available'); sys.exit(0 if ok else 1)" || { echo "gpu-check needs a CUDA GPU"; exit 1; }
	$(PY) -m pytest -m cuda -q -p no:cacheprovider
	$(PY) benchmarks/bench_train.py --device cuda --repeats 3 --no-memory

DOCS_STAMP := $(VENV)/.skweight-docs-installed
$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e ".[test,docs]"
	@touch $(DOCS_STAMP)

# The HTML site, offline, into docs/_build/html (the gallery runs the examples).
# Warnings go to a file and are counted; -E re-reads every page so the count
# is complete.
docs: $(DOCS_STAMP)
	@mkdir -p docs/_build
	$(PY) -m sphinx -E -b html -q -w docs/_build/warnings.log docs docs/_build/html
	@n=$$(grep -cE 'WARNING|ERROR|CRITICAL' docs/_build/warnings.log); \
	 echo "docs: $$n warning(s), see docs/_build/warnings.log; open docs/_build/html/index.html"

# ruff, then numpydoc's validation of the public API's docstrings (the checks
# and their exceptions: [tool.numpydoc_validation] in pyproject.toml).
lint: setup
	$(PY) -m ruff check skweight tests examples benchmarks docs
	$(PY) docs/check_docstrings.py

examples: $(DOCS_STAMP)
	@for f in examples/plot_*.py; do echo "== $$f"; MPLBACKEND=Agg $(PY) $$f || exit 1; done

clean:
	rm -rf $(VENV) $(VISION_VENV) build *.egg-info .pytest_cache .ruff_cache docs/_build docs/auto_examples docs/generated
