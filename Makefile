# Two commands for a fresh machine (see README):
#   make run    set up .venv and serve http://127.0.0.1:8000 with the embedded defaults
#   make test   set up .venv (with test tools and system packages) and run every test
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
SYSTEM_PACKAGES := espeak-ng sox chromium postgresql

.PHONY: run test lint setup setup-dev system-deps bench clean

run: setup
	$(PY) app.py

test: setup-dev system-deps
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
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# torch is pinned to the 2.13.0 CPU build and installed first: an unpinned torch pulls a multi-GB CUDA build.
$(VENV)/.runtime-installed: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.runtime-installed
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# Debian packages the tests use: espeak-ng/sox (scripted speech, TTS hook), chromium (page tests),
# postgresql (the meeting store against a throw-away cluster).
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache test-output
