# The two commands a user needs: `make demo` (the main job on a local
# container) and `make test` (everything CI runs). See README.md.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

# Molecule scenarios, each with the Debian releases of its target container,
# longest first so that parallel runs finish together. `make molecule
# SCENARIOS=prometheus` runs one; MOLECULE_JOBS runs go at once.
# `archive` runs the stack's tests too: with it on Debian 13 and `stack` on
# Debian 12, both releases and both install methods are covered. `tags` runs
# the tag contract on the stack's host, beside the stack's own tests. `security`
# runs on Debian 13, whose redis_exporter has basic auth; the exporters whose
# packages differ most between the releases run on both.
SCENARIOS ?= tags postgres_exporter:bookworm,trixie stack:bookworm archive:trixie \
	security:trixie cluster alertmanager dragonflydb_exporter:bookworm,trixie docker_exporter \
	prometheus node_exporter:bookworm,trixie
# Three at once on 2 cores: most of a scenario's time is waiting for alerts.
MOLECULE_JOBS ?= 3

.PHONY: help venv machine demo test test-stages lint unit config-test faults molecule bench bench-fleet clean role-docs docs-site

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements.yml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	scripts/install-collections
	touch $@

venv: $(VENV)/.installed  ## Create .venv with the pinned Python packages; check or install requirements.yml.

machine:  ## Install and start what the tests and the demo need (Docker engine, images).
	scripts/prepare-machine

demo: machine venv  ## Roll the whole stack out to a local container and print where it runs.
	scripts/demo up

lint: venv  ## yamllint, ruff, ansible-lint (production profile), role and plugin docs, changelog, ansible-test sanity.
	yamllint --strict .
	ruff check .
	ruff format --check .
	ansible-lint -q --profile production
	python3 scripts/role_docs.py --check
	scripts/collection-docs lint
	antsibull-changelog lint
	mkdir -p build && antsibull-changelog generate --output build/CHANGELOG.md --output-format md
	cmp -s build/CHANGELOG.md CHANGELOG.md || { echo "CHANGELOG.md is stale: run antsibull-changelog generate" >&2; exit 1; }
	scripts/ansible-sanity

unit: machine venv  ## pytest: modules and filters against real services, the Docker exporter.
	pytest

config-test: machine venv  ## promtool and amtool tests on the files the roles render.
	tests/run-config-tests

# The fault matrix (docs/reliability.md): the stack's services on loopback,
# under kill -9, full and read-only disks, clocks, peers and destinations
# gone. Its tests mostly wait for alerts: FAULTS_JOBS of them run at once.
FAULTS_JOBS ?= 4
faults: machine venv  ## The fault matrix: each fault pages once, loses nothing, recovers (as root).
	rm -rf build/faults && mkdir -p build/faults
	FAULTS_CATALOG=$$(python3 tests/faults/harness.py build/faults/rendered) \
		pytest -n $(FAULTS_JOBS) -p no:cacheprovider tests/faults

molecule: machine venv  ## Every Molecule scenario in systemd containers.
	scripts/run-molecule -j $(MOLECULE_JOBS) $(SCENARIOS)

# What `make test` runs, fastest checks first; .ci/run times each.
TEST_STAGES := lint unit config-test faults molecule
test: $(TEST_STAGES)  ## Everything CI runs, fastest checks first.

test-stages:
	@echo $(TEST_STAGES)

bench: machine venv  ## Timings: a rollout, a no-change rerun, a --tags rules rerun.
	scripts/bench

bench-fleet: machine venv  ## Timings on two monitoring hosts and 20 monitored ones, against one host.
	scripts/bench --fleet 20

role-docs: venv  ## Regenerate roles/*/README.md from argument specs, defaults and tags; check they agree.
	python3 scripts/role_docs.py

docs-site: venv  ## Build the collection's HTML docsite (antsibull-docs, Sphinx) in build/docsite/html.
	scripts/collection-docs site

clean:  ## Remove what `make demo` started.
	scripts/demo down
