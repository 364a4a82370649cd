# `make demo` and `make test` set everything up on a fresh machine: .venv, torch (CPU build 2.13.0), then
# every other package at the exact version of requirements/lock.txt, then the project itself (no deps).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   ?= demo_out
LOCK   := requirements/lock.txt
# pip-compile (pip-tools), itself pinned in requirements/tools.txt, runs from its own venv
TOOLS  := requirements/tools.txt
LOCKVENV ?= build/lock-venv
PIP    := pip==26.3
TORCH  := torch==2.13.0

.PHONY: demo test test-fast bench system-deps lint clean lock lock-tools

$(STAMP): pyproject.toml $(LOCK)
	python3 -m venv $(VENV)
	$(PY) -m pip install -q $(PIP)
	# the CPU build that lies on disk; a bare `torch` requirement would pull a CUDA build of several GB
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -r $(LOCK)
	# the project alone: its dependencies are all in the lock; setuptools too (no unpinned build env)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Refresh the lock: `make lock` resolves pyproject.toml with the extras train,tune,fleet,dev to today's newest
# versions (pip-compile --upgrade); `make lock LOCK_UPGRADE=` keeps the current pins and only resolves what
# a pyproject.toml change needs. torch comes from the CPU wheel pip's find-links offer (2.13.0+cpu) and
# is written as torch==2.13.0; the lock must name no nvidia-*/CUDA/triton package, no file:// URL and no
# --find-links/--index-url line (a fresh machine has only its own pip config).
LOCK_UPGRADE ?= --upgrade
$(LOCKVENV)/.installed: $(TOOLS)
	python3 -m venv $(LOCKVENV)
	$(LOCKVENV)/bin/python -m pip install -q $(PIP)
	$(LOCKVENV)/bin/python -m pip install -q -r $(TOOLS)
	touch $@

lock: $(LOCKVENV)/.installed
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCKVENV)/bin/pip-compile -q $(LOCK_UPGRADE) \
	  --extra train,tune,fleet,dev --allow-unsafe --strip-extras \
	  --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
	  --output-file $(LOCK) pyproject.toml
	sed -i 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/' $(LOCK)
	grep -qx '$(TORCH)' $(LOCK) || { echo "lock: torch is not $(TORCH)"; exit 1; }
	! grep -v '^ *#' $(LOCK) | grep -iE '^(nvidia|triton|cuda)|file:|^-' || { echo "lock: CUDA or local paths (above)"; exit 1; }

# the lock tool's own pins (requirements/tools.in -> requirements/tools.txt)
lock-tools: $(LOCKVENV)/.installed
	CUSTOM_COMPILE_COMMAND="make lock-tools" $(LOCKVENV)/bin/pip-compile -q --upgrade --allow-unsafe \
	  --strip-extras --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
	  --output-file $(TOOLS) requirements/tools.in

# ffmpeg (an MJPEG server for the stream tests), systemd-analyze (unit verification, comes with systemd) and
# the real servers the tests start themselves (tests/servers.py) come from Debian: PostgreSQL, Mosquitto and
# its CLI clients, Chromium. Each missing one is installed with apt-get; one that cannot be is a note (its
# tests skip, saying why), never an error. `apt-get update` runs once, only when something is missing.
SYSTEM_DEPS := ffmpeg:ffmpeg postgresql:initdb mosquitto:mosquitto mosquitto-clients:mosquitto_pub chromium:chromium
system-deps:
	@apt=; for dep in $(SYSTEM_DEPS); do pkg=$${dep%%:*}; exe=$${dep#*:}; \
	  ( PATH="$$PATH:/usr/sbin:/sbin:$$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tr '\n' :)"; \
	    command -v $$exe >/dev/null 2>&1 ) && continue; \
	  if [ -z "$$apt" ]; then apt=no; command -v apt-get >/dev/null 2>&1 && apt-get update -qq && apt=yes; fi; \
	  { [ $$apt = yes ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$pkg >/dev/null; } \
	  || echo "note: $$pkg not installed; the tests that need it will be skipped"; \
	done

demo: $(STAMP)
	$(VENV)/bin/edge-qwq demo --workdir $(DEMO)

test: $(STAMP) system-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -m "not slow"

# after `make demo`: student vs teacher, early exit vs full depth (model_bench), service pipeline vs
# bare inference (pipeline_bench), whole frames: early exit vs full depth and tile reuse (frame_bench), each printing JSON
bench: $(STAMP)
	$(PY) bench/model_bench.py --workdir $(DEMO)
	$(PY) bench/pipeline_bench.py --bundle $(DEMO)/bundle
	$(PY) bench/frame_bench.py --workdir $(DEMO)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(DEMO) .pytest_cache
