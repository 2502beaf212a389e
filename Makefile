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

# A private kernel cache per run keeps "cold cache" honest and leaves the user's cache alone; it is removed
# after the run (an EXPRGEN_CACHE_DIR you set is yours and kept). -rs: why each skipped test skipped.
test: $(STAMP)
	@tmp=""; cache="$${EXPRGEN_CACHE_DIR:-}"; \
	if [ -z "$$cache" ]; then tmp=$$(mktemp -d); cache=$$tmp/cache; fi; \
	EXPRGEN_CACHE_DIR=$$cache $(PY) -m pytest -q -rs -n 2 --dist loadfile; status=$$?; \
	if [ -n "$$tmp" ]; then rm -rf "$$tmp"; fi; exit $$status

# Random expressions against the reference for FUZZ_MINUTES (hypothesis "fuzz" profile, tests/test_fuzz.py);
# failures are kept in .hypothesis/ and tried first by the next run. A summary of what was checked follows.
FUZZ_MINUTES ?= 20
fuzz: $(STAMP)
	@stats=$$(mktemp -d); \
	EXPRGEN_CACHE_DIR=$${EXPRGEN_CACHE_DIR:-$$(mktemp -d)/cache} EXPRGEN_FUZZ_PROFILE=fuzz EXPRGEN_FUZZ_STATS=$$stats \
	EXPRGEN_FUZZ_MINUTES=$(FUZZ_MINUTES) EXPRGEN_FUZZ_DEADLINE=$$(( $$(date +%s) + 60 * $(FUZZ_MINUTES) )) \
		$(PY) -m pytest -q -rfE -n 2 --dist load tests/test_fuzz.py; status=$$?; \
	$(PY) tests/test_fuzz.py --summary $$stats; rm -rf $$stats; exit $$status

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) bench/bench_core.py
	$(PY) bench/bench_reductions.py
	$(PY) bench/bench_autodiff.py
	$(PY) bench/bench_train.py

generate: $(STAMP)
	$(VENV)/bin/exprgen generate

clean:
	rm -rf $(VENV) build *.egg-info
