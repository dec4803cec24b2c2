# Every target sets up its own virtual environment first, so a fresh clone needs only
# python3 (3.11+) and network access to PyPI.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup test demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[emulator,test]'
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	$(VENV)/bin/fleetwatch demo

bench: $(STAMP)
	$(PY) bench/emulator.py --functions 10000
	$(PY) bench/collector.py --functions 1000 --queues 200 --tables 50 --databases 5

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
