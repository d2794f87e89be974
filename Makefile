# `make run` and `make test` set everything up on a fresh machine, then run.
# Set-up is cached by stamp files and redone when pyproject.toml or the npm lock changes.

SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config/engine.yaml
PYTEST_ARGS ?=
# The Prometheus integration test runs a real server: the Debian package `prometheus`.
PROMETHEUS := $(or $(shell command -v prometheus),/usr/bin/prometheus)
# deploy/docker-compose.yml is resolved by Debian's `docker-compose` (no Docker engine needed).
DOCKER_COMPOSE := $(or $(shell command -v docker-compose),/usr/bin/docker-compose)

.PHONY: help install run test soak lint format docs bench clean

help:
	@echo "make run    set up, then run the daemon on $(CONFIG) (Ctrl-C stops it)"
	@echo "make test   set up (apt-get install prometheus, docker-compose if missing), then lint and test"
	@echo "make soak   the load tests make test leaves out (minutes: 1,000 slow clients, ...)"
	@echo "make bench  set up (with the reference libraries), then run bench/ (BENCHES=bus ...)"
	@echo "make docs   regenerate docs/configuration.md from the config models"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "Python 3.11 or 3.12 is needed, found $$($(PYTHON) --version)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --editable '.[dev]'
	@touch $@

$(VENV)/.installed-bench: $(VENV)/.installed
	$(BIN)/pip install --quiet --editable '.[dev,bench]'
	@touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(VENV)/.installed node_modules/.installed

# File targets, so nothing runs when the binary is already there; the Debian package is
# named as the binary.
$(PROMETHEUS) $(DOCKER_COMPOSE):
	@command -v apt-get >/dev/null || { echo "$(notdir $@) is missing and apt-get is not here:" \
		"install it and put it on PATH"; exit 1; }
	@if [ "$$(id -u)" = 0 ]; then sudo=; \
	elif command -v sudo >/dev/null; then sudo=sudo; \
	else echo "$(notdir $@) is missing and installing it needs root:" \
		"run 'apt-get update && apt-get install $(notdir $@)' as root"; exit 1; fi; \
	echo "installing the Debian package $(notdir $@) (for tests/integration)"; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
	&& $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends $(notdir $@)

run: install
	exec $(BIN)/trade-engine run --config $(CONFIG)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache --no-logo

test: lint $(PROMETHEUS) $(DOCKER_COMPOSE)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Opt-in: minutes of load each; run before calling an HTTP or hostile-input change done.
soak: install $(PROMETHEUS)
	$(BIN)/python -m pytest -m soak $(PYTEST_ARGS)

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

docs: install
	$(BIN)/trade-engine config docs --out docs/configuration.md

BENCHES ?= bus features inference dex walkforward retrain

bench: $(VENV)/.installed-bench node_modules/.installed
	@for b in $(BENCHES); do echo "== bench/$$b.py"; $(BIN)/python bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) node_modules .pytest_cache .ruff_cache .hypothesis
