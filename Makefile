# The two commands: `make run` (the back-office with demo data on SQLite) and
# `make test` (ruff and the whole test suite). Both need only Python 3.11 and make.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
MANAGE := $(BIN)/python manage.py

.PHONY: run test lint bench load worker beat install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall only when the dependency list changes. `run` needs only the
# runtime dependencies; `test` adds the dev extra (pytest, Playwright, ...).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(VENV)/.installed $@

install: $(VENV)/.installed-dev

run: $(VENV)/.installed
	$(MANAGE) migrate --no-input
	$(MANAGE) seed_demo
	$(MANAGE) runserver 127.0.0.1:8000

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

# Every benchmark at full size (BENCH_ARGS="--scale small" for a quick look), the load run,
# then one Markdown table of all results with floors and ratios (bench-results/summary.md).
bench: install
	$(MANAGE) benchmark ledger $(BENCH_ARGS)
	$(MANAGE) benchmark api $(BENCH_ARGS)
	$(MANAGE) benchmark imports $(BENCH_ARGS)
	$(MANAGE) benchmark reports $(BENCH_ARGS)
	$(MAKE) --no-print-directory load
	$(MANAGE) benchmark summary | tee bench-results/summary.md

# A minute of mixed API traffic under gunicorn with a real Celery worker, then reconcile
# (needs PostgreSQL and Redis; not part of `make test`).
load: install  # LOAD_ARGS="--seconds 60 --rate 25" (the defaults)
	DATABASE_URL=$${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/loyalty_load} \
	  REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6379/14} \
	  $(BIN)/python -m loyalty.benchmarks.load $(LOAD_ARGS)

worker: $(VENV)/.installed
	$(BIN)/celery -A config worker --loglevel=info

beat: $(VENV)/.installed
	$(BIN)/celery -A config beat --loglevel=info

clean:
	rm -rf $(VENV) db/*.sqlite3 .pytest_cache .ruff_cache
