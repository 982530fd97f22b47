# The two commands a user needs: `make demo` (the main job on a local
# container) and `make test` (everything CI runs). See README.md.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

# Molecule scenarios, fastest first; `make molecule SCENARIOS=stack` runs one.
SCENARIOS ?= $(shell scripts/list-scenarios)
# Debian releases for the target containers.
RELEASES ?= bookworm trixie

.PHONY: help venv machine demo test lint unit rules-test molecule bench clean

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

venv: $(VENV)/.installed  ## Create .venv with the pinned Python packages and collections.

machine:  ## Install and start what the tests and the demo need (Docker engine, base images).
	scripts/prepare-machine $(RELEASES)

demo: venv  ## Roll the whole stack out to a local container and print where it runs.
	scripts/prepare-machine bookworm
	scripts/demo up

lint: venv  ## ansible-lint (production profile), yamllint, ruff.
	yamllint --strict .
	ruff check .
	ruff format --check .
	ansible-lint --profile production

unit: venv  ## pytest: modules, filters, the Docker exporter.
	pytest

rules-test: venv  ## promtool and amtool tests on the rules and routes the roles render.
	tests/rules/run

molecule: venv machine  ## Every Molecule scenario in a systemd container.
	scripts/run-molecule $(SCENARIOS)

test: lint unit rules-test molecule  ## Everything CI runs, fastest checks first.

bench: venv  ## Timings of a rollout, a no-change rerun and a `--tags rules` rerun.
	scripts/bench

clean:  ## Remove what `make demo` started.
	scripts/demo down
