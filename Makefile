# `make demo` runs the sandbox demo; `make test` runs lint, types and the whole test suite.
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup test lint demo serve bench

$(BIN)/veo: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/veo

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: lint
	bash scripts/ensure-system.sh
	bash scripts/pytest.sh $(PYTEST_ARGS)

demo: setup
	bash scripts/ensure-system.sh
	$(BIN)/veo demo

serve: setup
	$(BIN)/veo migrate && $(BIN)/veo serve

bench: setup
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done
