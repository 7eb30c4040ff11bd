# Two commands: `make demo` and `make test`. Each sets itself up from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Pinned: this exact version is a CPU build on these machines' local index; a range or a
# plain `torch` would download a multi-GB CUDA build.
TORCH  := torch==2.13.0
STAMP  := $(VENV)/.installed

# The real components the tests drive: a redis-server (cache stores) and headless
# Chromium (the HTML report). Installed from Debian's packages when missing.
SYSTEM_TOOLS := redis-server chromium
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test test-fast lint bench clean system-tools compat docs

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
	$(BIN)/python -m pip install -q $(TORCH) 2>&1 | grep -v '^WARNING: Location' || true
	$(BIN)/python -m pip install -q -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
	$(BIN)/python -c "import torch, aotpack, pytest; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(STAMP)

demo: $(STAMP)
	@# bytecode, as installing a wheel writes it (an editable install does not, and these
	@# machines set PYTHONDONTWRITEBYTECODE): otherwise each fresh process compiles aotpack
	$(BIN)/python -m compileall -q src
	$(BIN)/aotpack demo

# The documentation site (docs/, mkdocs.yml) into site/, not committed. --strict: a broken
# link, a missing API reference or a docstring naming a parameter that is gone fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

lint: $(STAMP)
	$(BIN)/ruff check --no-cache src tests conftest.py docs/hooks.py $(wildcard bench) $(wildcard examples)

system-tools:
	@missing=""; for t in $(SYSTEM_TOOLS); do command -v $$t >/dev/null || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (Debian packages)"; \
	  $(SUDO) apt-get update -q >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing >/dev/null; \
	fi

# Workers (the machines have 2 cores: inductor's compiles leave a core idle while a
# test waits on a fresh process or the C++ compiler): 19 -> 11.4 minutes with two. --dist loadfile
# keeps a file's tests (and a documentation page's blocks, which build on each other) on
# one worker, so module fixtures compile once. (xdist starts the files with the most tests
# first. Starting the slowest first instead, --no-loadscope-reorder with the files sorted
# by their measured time, took 18.5 minutes against 15.3 and made
# tests/cache/test_cache.py::test_an_earlier_aoti_compile_leaves_the_next_key_alone fail:
# torchao's quantize_ in tests/packages/test_subclass_weights.py had left inductor's
# global config changed for the tests after it in its worker; that file puts it back
# since. Tried 2026-12-04.)
#
# One worker more than the cores (at most 4): the suite is CPU-bound (95% of two cores), and
# the third worker takes the time a worker waits on a fresh process, a Ray or Redis server
# starting, or Chromium: on this tree 930 s against 955 s with two (2026-12-08, one run
# each, beside 17.0 against 17.6 minutes on an older tree; the machine varies by a minute
# from run to run).
PYTEST_WORKERS := -n $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$((n + 1 > 4 ? 4 : n + 1))) --dist loadfile
test: $(STAMP) lint system-tools
	@# bytecode first, as for the demo: the suite starts a few hundred fresh processes, and
	@# with PYTHONDONTWRITEBYTECODE each would compile aotpack and the test helpers again
	@# (~0.4 s of CPU a process)
	$(BIN)/python -m compileall -q src tests >/dev/null
	$(BIN)/python -m pytest $(PYTEST_WORKERS)

# For local work: everything but the tests marked slow (inductor/AOTInductor compiles);
# CI and `make test` run them all.
test-fast: $(STAMP) system-tools
	$(BIN)/python -m pytest $(PYTEST_WORKERS) -m "not slow" -q

bench: $(STAMP) system-tools
	$(BIN)/python bench/warm_start.py
	$(BIN)/python bench/steady_state.py
	$(BIN)/python bench/guard_overhead.py
	$(BIN)/python bench/repro_storage.py
	$(BIN)/python bench/cache_load.py
	$(BIN)/python bench/train_start.py
	$(BIN)/python bench/trace_overhead.py

# The newest torch with timm and torchvision built for it, in a second venv: the whole
# suite plus the vision models (tests/models/test_vision.py). Not part of CI (a CUDA build of
# several GB; torchvision from PyPI does not load beside the local CPU torch 2.13).
COMPAT_VENV  := .venv-compat
COMPAT_TORCH := torch==2.14.1 torchvision==0.29.1
$(COMPAT_VENV)/.installed: pyproject.toml Makefile
	test -x $(COMPAT_VENV)/bin/python || $(PYTHON) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -m pip install -q $(COMPAT_TORCH) timm 2>&1 | grep -v '^WARNING: Location' || true
	$(COMPAT_VENV)/bin/python -m pip install -q -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
	$(COMPAT_VENV)/bin/python -c "import torch, torchvision, timm, aotpack; print('compat:', torch.__version__, torchvision.__version__, timm.__version__)"
	touch $@

compat: $(COMPAT_VENV)/.installed system-tools
	$(COMPAT_VENV)/bin/python -m pytest -m "not cuda" tests

clean:
	rm -rf $(VENV) $(COMPAT_VENV) build dist site src/*.egg-info .pytest_cache
