# The two commands of the README:  `make demo`  (the main job)  and  `make test`.
# Both first create the virtual environment from the lock file (once; again when it changes).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo sandbox test test-fast lint bench clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --config-settings editable_mode=compat -e .
	touch $(STAMP)

# The main job: the whole product on this machine against the sandbox (`pdsync demo`): it starts
# the sandbox and a Prefect server, connects, backfills, serves, sends four deal changes through
# real webhooks, prints what landed in Planhat and why, stops everything and exits.
demo: $(STAMP)
	$(VENV)/bin/pdsync demo

# The sandbox Pipedrive and Planhat alone, serving the demo data set until Ctrl-C.
sandbox: $(STAMP)
	$(PY) -m sandbox --dataset demo

# Tests keep Python's bytecode and pytest's assertion-rewrite caches (in __pycache__/, ignored
# by git) even where the environment sets PYTHONDONTWRITEBYTECODE: without them every run
# rewrites and compiles every test module again, in each worker (5 s of the fast tier).
TEST_ENV := PYTHONDONTWRITEBYTECODE=

# The test command (.ci/run calls exactly this).
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(TEST_ENV) $(PY) -m pytest

# The fast tier: plain functions and tasks against in-memory fakes (no Prefect harness, no
# end-to-end flow), on both cores, with its slowest tests shown.
test-fast: $(STAMP)
	$(TEST_ENV) $(PY) -m pytest -m "not slow" -n 2 --durations=10

# mypy checks the product packages (pyproject.toml's [tool.mypy] names them), strictly.
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

bench: $(STAMP)
	$(PY) bench/sandbox_data.py
	$(PY) bench/sandbox_pages.py
	$(PY) bench/clients_paging.py
	$(PY) bench/mapping_engine.py
	$(PY) bench/store_links.py
	$(PY) bench/pipeline_backfill.py

clean:
	rm -rf $(VENV) .pytest_cache
