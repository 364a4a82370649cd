# `make demo` and `make test` set everything up on a fresh machine: .venv, torch (CPU build 2.13.0), the project.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   ?= demo_out

.PHONY: demo test test-fast bench system-deps lint clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# the CPU build that lies on disk; a bare `torch` requirement would pull a CUDA build of several GB
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[train,tune,dev]"
	touch $(STAMP)

# ffmpeg (an MJPEG server for the stream tests) and systemd-analyze (unit verification) come from Debian.
system-deps:
	@command -v ffmpeg >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null) \
	  || echo "note: ffmpeg not installed; the stream tests will be skipped"; }

demo: $(STAMP)
	$(VENV)/bin/edge-qwq demo --workdir $(DEMO)

test: $(STAMP) system-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

test-fast: $(STAMP)
	$(VENV)/bin/pytest -q -m "not slow"

# after `make demo`: student vs teacher, early exit vs full depth (model_bench), service pipeline vs
# bare inference (pipeline_bench), each printing JSON
bench: $(STAMP)
	$(PY) bench/model_bench.py --workdir $(DEMO)
	$(PY) bench/pipeline_bench.py --bundle $(DEMO)/bundle

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(DEMO) .pytest_cache
