# Two commands for a fresh machine (see README):
#   make run    set up .venv and serve http://127.0.0.1:8000 with the embedded defaults
#   make test   set up .venv (with test tools and system packages) and run every test
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# PyTorch's CPU build lives on PyTorch's own index; PyPI's torch is the multi-GB CUDA build.
TORCH_VERSION := 2.13.0
TORCH_INDEX   ?= https://download.pytorch.org/whl/cpu
SYSTEM_PACKAGES := espeak-ng sox postgresql redis-server
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint setup setup-dev system-deps python-venv browser bench clean

run: setup
	$(PY) app.py

test: setup-dev system-deps browser
	$(PY) -m pytest

lint: setup-dev
	$(VENV)/bin/ruff check .

bench: setup-dev system-deps
	$(PY) bench/stream_bench.py
	$(PY) bench/diarization_bench.py
	$(PY) bench/wer_bench.py
	$(PY) bench/store_bench.py --postgres

setup: $(VENV)/.runtime-installed
setup-dev: $(VENV)/.dev-installed

$(VENV)/bin/python:
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || $(MAKE) --no-print-directory python-venv
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Debian and Ubuntu ship venv's pip bootstrap (ensurepip) in a separate package.
python-venv:
	@pkg="python$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')-venv"; \
	echo "$(PYTHON) cannot create a venv (no ensurepip): installing $$pkg"; \
	$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq "$$pkg" >/dev/null \
	  || { echo "could not install it: run 'sudo apt-get install $$pkg' and try again"; exit 1; }

# torch first, the CPU build from PyTorch's index. Where that index cannot be reached (an offline
# mirror or a local wheel directory in pip's configuration, as on our CI), plain pip is asked instead.
$(VENV)/.runtime-installed: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet --retries 1 --timeout 20 torch==$(TORCH_VERSION) --index-url $(TORCH_INDEX) \
	  || $(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -r requirements.txt
	@$(PY) -c 'import torch, sys; sys.exit(0) if torch.version.cuda is None else print("warning: torch", torch.__version__, "is a CUDA build; the CPU build is much smaller")'
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.runtime-installed
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# Debian packages the tests use: espeak-ng/sox (scripted speech, TTS hook), postgresql (the meeting
# store against a throw-away cluster), redis-server (ORCHESTRATOR_BACKEND=redis against a throw-away server).
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

# The page tests drive Chromium: Debian's package where it is a real browser; on Ubuntu its
# `chromium` is a shim that installs a snap, which Playwright cannot drive, so Playwright's own
# build is installed there instead (tests/test_page.py picks whichever is present).
browser: setup-dev
	@if grep -qs '^ID=ubuntu' /etc/os-release; then \
	  echo "Ubuntu: using Playwright's Chromium (the chromium package is a snap shim)"; \
	  $(PY) -m playwright install --with-deps chromium; \
	elif ! dpkg -s chromium >/dev/null 2>&1; then \
	  echo "installing: chromium"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache test-output
