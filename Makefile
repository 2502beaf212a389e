# Quick start: `make demo` and `make test` each create .venv when missing and install exprgen into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-test

.PHONY: demo test bench fuzz generate clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: $(STAMP)
	$(VENV)/bin/exprgen demo

# A private kernel cache per run keeps "cold cache" honest and leaves the user's cache alone.
test: $(STAMP)
	EXPRGEN_CACHE_DIR=$${EXPRGEN_CACHE_DIR:-$$(mktemp -d)/cache} $(PY) -m pytest -q -n 2 --dist loadfile

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) bench/bench_core.py

generate: $(STAMP)
	$(VENV)/bin/exprgen generate

clean:
	rm -rf $(VENV) build *.egg-info
