# One Makefile: every target installs what it needs into .venv first.
PY := $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTOS := $(wildcard proto/callagent/v1/*.proto)
BUF := .tools/node_modules/.bin/buf
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help install gen lint test test-unit fuzz run bench clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(STAMP)  ## create .venv and install the project with dev tools

gen: $(STAMP)  ## regenerate gen/ from proto/ (commit the result)
	$(BIN)/python gen/regenerate.py

$(BUF):
	npm install --silent --no-audit --no-fund --prefix .tools @bufbuild/buf@1

lint: $(STAMP) $(BUF)  ## buf lint, ruff, mypy, import contracts
	$(BUF) lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: $(STAMP)  ## run the whole test suite (embedded PostgreSQL unless DATABASE_URL is set)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP)  ## only the pure unit tests: no database, no sockets (seconds)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

fuzz: $(STAMP)  ## fuzz the REST contract against a live stack (FUZZ_EXAMPLES=100 per operation and mode; FUZZ_SEED=N explores other inputs)
	$(BIN)/python -m tests.fuzz

run: $(STAMP)  ## run the whole stack: embedded PostgreSQL, core, gateway
	$(BIN)/python -m dev.stack

bench: $(STAMP)  ## run the benchmarks and print their figures (BENCH=me,calls to pick)
	$(BIN)/python -m tests.bench

clean:  ## remove the venv and local data
	rm -rf $(VENV) .tools .callagent
