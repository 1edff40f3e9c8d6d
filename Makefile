# autodiscover-guard — the two commands a new user needs are `make run` and `make test`.
# Both create .venv at the repository root when it is missing and install the project into it.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# A second interpreter line (mitmproxy 12.x needs Python >= 3.12); tested when present.
# (pyenv installs a python3.12 shim that fails when 3.12 is not "global", so each candidate is run)
PY312  ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12; do \
            "$$p" -c 'import sys' >/dev/null 2>&1 && { echo "$$p"; break; }; done)
VENV312 ?= .venv312

.PHONY: venv run test test-fast test312 lint typecheck bench fuzz clean

RUN_STAMP := $(VENV)/.installed-runtime

# `make run` needs only the runtime dependencies; `make test` (and venv) adds the test extras.
$(RUN_STAMP): pyproject.toml
	@test -x $(BIN)/python || echo "First setup: creating $(VENV) and installing mitmproxy and the other" \
	    "runtime dependencies (a few minutes the first time; later runs start at once)."
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $(RUN_STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || echo "First setup: creating $(VENV) with the runtime and test dependencies" \
	    "(a few minutes the first time)."
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP) $(RUN_STAMP)

venv: $(STAMP)

## run: start the guarding proxy on 127.0.0.1:8080 with the shipped default policy
run: $(RUN_STAMP)
	$(BIN)/autodiscover-guard run --mode workstation

## test: the whole suite (unit, property, end-to-end, lint, types), then again on Python 3.12 if present
test: venv
	$(BIN)/python -m pytest
	@if [ -n "$(PY312)" ]; then $(MAKE) --no-print-directory test312; \
	else echo "python3.12 not found: skipped the mitmproxy 12.x run"; fi

test312:
	test -x $(VENV312)/bin/python || $(PY312) -m venv $(VENV312)
	$(VENV312)/bin/python -m pip install -q --upgrade pip
	$(VENV312)/bin/python -m pip install -q -e '.[test]'
	$(VENV312)/bin/python -m pytest -p no:cacheprovider

## test-fast: everything but the end-to-end tests
test-fast: venv
	$(BIN)/python -m pytest -m "not e2e"

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy

## bench: benchmarks (not part of the suite); prints a report
bench: venv
	$(BIN)/python -m bench

## fuzz: a longer hypothesis run (FUZZ_EXAMPLES per property, default 20000) over every parser, the
## decoder, the log scrubber and the normaliser; prints examples and time per property, then a summary
FUZZ_EXAMPLES ?= 20000
FUZZ_TESTS := tests/test_fuzz.py tests/formats tests/test_names.py tests/test_decode.py tests/test_log.py tests/test_differential.py
fuzz: venv
	HYPOTHESIS_PROFILE=fuzz FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest $(FUZZ_TESTS) \
	    -p no:cacheprovider -q --timeout 3600 --hypothesis-show-statistics

clean:
	rm -rf $(VENV) $(VENV312) .pytest_cache .mypy_cache .ruff_cache .hypothesis
