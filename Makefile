# Every target sets up its own virtual environment first, so a fresh clone needs only
# python3 (3.11+) and network access to PyPI.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Browser code from the npm registry, pinned by version and sha512 in web/assets.py and never
# committed: uPlot for the dashboard's charts (served by the agent), axe-core for the tests' audit.
UPLOT  := web/static/vendor/uPlot.iife.min.js
AXE    := build/test-assets/axe.min.js
# The dashboard's end-to-end tests drive Debian's chromium (Playwright cannot download a
# browser here); `make test` installs it when it is missing.
CHROMIUM ?= /usr/bin/chromium

# The store tests run on PostgreSQL too, against a server they start themselves (tests/pg_kit.py:
# initdb into a temporary folder, a Unix socket); `make test` installs Debian's postgresql when
# no initdb is found. FLEETWATCH_PG_BINDIR names another PostgreSQL's bin folder.
PG_INITDB = $(or $(FLEETWATCH_PG_BINDIR:%=%/initdb),$(lastword $(sort $(wildcard /usr/lib/postgresql/*/bin/initdb))))
SUDO = $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: setup test lint soak chaos demo bench docs docs-site clean browser postgresql

setup: $(STAMP) $(UPLOT)

$(UPLOT): web/assets.py
	$(PYTHON) -m web.assets uplot
	@touch $@

$(AXE): web/assets.py
	$(PYTHON) -m web.assets axe-core
	@touch $@

browser: $(CHROMIUM)

$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "make: $(CHROMIUM) is missing and there is no apt-get: install Chromium and run make CHROMIUM=/path/to/chromium test"; exit 1; }
	@echo "installing Debian's chromium for the dashboard's browser tests"
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -qq --no-install-recommends chromium
	@test -x $(CHROMIUM) || { echo "make: chromium installed but $(CHROMIUM) is not there; set CHROMIUM=/path/to/chromium"; exit 1; }

postgresql:
	@if [ -z "$(PG_INITDB)" ] || [ ! -x "$(PG_INITDB)" ]; then \
	  command -v apt-get >/dev/null || { echo "make: PostgreSQL is missing and there is no apt-get: install PostgreSQL and run make FLEETWATCH_PG_BINDIR=/path/to/its/bin test"; exit 1; }; \
	  echo "installing Debian's postgresql for the PostgreSQL store tests"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends postgresql \
	    || { echo "make: could not install Debian's postgresql; install it (apt-get install postgresql) or set FLEETWATCH_PG_BINDIR"; exit 1; }; \
	fi

# The environment is installed with uv (from PyPI, pinned to a minor release like ruff below): it
# resolves the same versions as pip and installs them about 6x faster (measured on 2 loaded cores,
# a fresh venv, load average ~12: pip 3:26 wall and 58 CPU-s, uv 0:31 and 10 CPU-s). pip is the
# fallback when uv cannot be installed (no wheel for the platform, say).
UV_PIN := uv>=0.13,<0.14
EXTRAS := .[emulator,test,docs]

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if $(PY) -m pip install --quiet --disable-pip-version-check '$(UV_PIN)' 2>/dev/null; then \
	  echo "$(VENV)/bin/uv pip install -e '$(EXTRAS)'"; \
	  $(VENV)/bin/uv pip install --quiet --python $(PY) -e '$(EXTRAS)'; \
	else \
	  echo "make: uv could not be installed; installing with pip instead (slower)"; \
	  $(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip \
	    && $(PY) -m pip install --quiet --disable-pip-version-check -e '$(EXTRAS)'; \
	fi
	@touch $(STAMP)

# pytest-xdist workers for `make test`: one more than the cores by default (tests/conftest.py
# keeps each worker's emulator, ports and artefacts apart): with one a core, a worker waits on a
# subprocess or real latency a third of the time (137 % of 2 cores used). Measured on 2 idle
# cores, one run each: 2 workers 8:51 wall, 3 workers 8:05. `make test JOBS=0` runs in one process.
JOBS ?= $(shell echo $$(( $$(nproc) + 1 )))

test: $(STAMP) $(UPLOT) $(AXE) $(CHROMIUM) postgresql lint docs-site
	FLEETWATCH_CHROMIUM=$(CHROMIUM) $(PY) -m pytest -n $(JOBS) --dist worksteal

# Lint and format (ruff) on the whole tree, types (mypy) on the product packages: the settings are
# in pyproject.toml ([tool.ruff], [tool.mypy]); .pre-commit-config.yaml runs the same on commit.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# A simulated week of `fleetwatch run` (10,140 polls on a fake clock): memory and store size per day.
soak: $(STAMP)
	$(PY) -m pytest -m soak -s tests/test_soak.py

# Faults, restarts and hostile input at full size (make test runs each at a quick size): prints
# the chaos table and writes test-artifacts/chaos-full.json.
chaos: $(STAMP)
	CHAOS_FULL=1 $(PY) -m pytest tests/test_faultproxy.py tests/test_chaos_*.py

demo: $(STAMP) $(UPLOT)
	$(VENV)/bin/fleetwatch demo

bench: $(STAMP) $(UPLOT)
	$(PY) bench/emulator.py --functions 10000
	$(PY) bench/collector.py --functions 1000 --queues 200 --tables 50 --databases 5
	$(PY) bench/dashboard.py --functions 10000 --incidents 200
	$(PY) bench/pages.py

# The configuration reference, from the settings table: docs/configuration.md.
docs: $(STAMP)
	$(VENV)/bin/fleetwatch config docs > docs/configuration.md

# The documentation site (mkdocs.yml) into build/site; --strict makes a broken link or anchor fail.
docs-site: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --quiet

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache test-artifacts web/static/vendor
