# The two quickstart commands: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install system-deps runtime-deps demo serve lint format test test-fast bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev,deep]"
	touch $(STAMP)

install: $(STAMP)

system-deps:
	./scripts/install-system-deps.sh

runtime-deps:
	./scripts/install-system-deps.sh runtime

demo: install runtime-deps
	$(BIN)/recloop demo

serve: install
	$(BIN)/recloop serve

format: install
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

# pytest exits 5 when it collected no test: a suite that ran nothing has failed.
test: install system-deps lint
	$(BIN)/pytest; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-fast: install
	$(BIN)/pytest -m "not integration and not e2e and not slow"

bench: install system-deps
	$(BIN)/python benchmarks/bench_service.py

clean:
	rm -rf $(VENV) recloop-data .pytest_cache .mypy_cache .ruff_cache
