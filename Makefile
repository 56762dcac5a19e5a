# natlab — run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.SHELLFLAGS := -eu -o pipefail -c

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NAT_A  ?= cone
NAT_B  ?= cone
export NAT_A NAT_B
# Link impairments for lab-up (README "Impairments"): NAT_A_IMPAIR='delay=40ms loss=2%' sets both directions
# of router-a, NAT_A_IMPAIR_UP / NAT_A_IMPAIR_DOWN one each (they win over the unsuffixed one); B likewise.
IMPAIR_VARS := $(foreach site,A B,$(foreach way,_UP _DOWN,NAT_$(site)_IMPAIR$(way)) NAT_$(site)_IMPAIR)
export $(IMPAIR_VARS)
# Bring your own host (README "Bring your own host"): HOST_A_IMAGE=myapp:latest runs that image as alice (its
# command HOST_A_COMMAND, else the image's own), with natlab's agent beside it as alice-agent; B likewise (bob).
# Each adds its overlay to compose.yaml; unset, lab-up is what it always was.
HOST_VARS := HOST_A_IMAGE HOST_A_COMMAND HOST_B_IMAGE HOST_B_COMMAND
export $(HOST_VARS)
USER_HOSTS := $(if $(HOST_A_IMAGE),-f scenarios/topologies/user-host-a.yaml) $(if $(HOST_B_IMAGE),-f scenarios/topologies/user-host-b.yaml)
COMPOSE := docker compose$(if $(strip $(USER_HOSTS)), -f compose.yaml $(strip $(USER_HOSTS)))
ATTACKER ?=
# ATTACKER=1: lab-up also starts the attacker (mallory) and its victim, compose profile `attack`.
PROFILES := $(if $(ATTACKER),--profile attack)
PYTEST_ARGS ?=
GRID_ARGS ?=
IMPAIR_CHECK_ARGS ?=
SWEEP_ARGS ?=

# CAPTURE=1 (or full): lab-up's routers capture every packet of their WAN and LAN sides from boot; CAPTURE=ring
# keeps only the last few MB. Sets NATLAB_CAPTURE, which compose passes to the routers (and which the scenario
# harness reads too: NATLAB_CAPTURE=off make scenarios runs its labs without their default ring).
CAPTURE ?=
ifneq ($(CAPTURE),)
export NATLAB_CAPTURE := $(if $(filter 1 on yes true,$(CAPTURE)),full,$(CAPTURE))
endif

.PHONY: help venv compose images user-image lab-up lab-down lab-status impair-check logs capture lint unit scenarios impaired test bench grid sweep fuzz interop interop-image clean

help: ## Show the targets and what they do
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[1m%-12s\033[0m %s\n", $$1, $$2}'
	@echo "  Variables: NAT_A, NAT_B (router profiles for lab-up: full-cone, restricted-cone, cone, symmetric, symmetric-pp, symmetric-seq, udp-blocked),"
	@echo "             NATLAB_WAN, NATLAB_LAN_A, NATLAB_LAN_B (the lab's /24s, first three octets, inside 198.18.0.0/15), PYTEST_ARGS, GRID_ARGS, SWEEP_ARGS, INTEROP_ARGS,"
	@echo "             FUZZ_SECONDS (make fuzz's total time, default 60)"
	@echo "             ATTACKER=1 (lab-up also starts the attacker mallory and its victim)"
	@echo "             NAT_A_IMPAIR, NAT_A_IMPAIR_UP, NAT_A_IMPAIR_DOWN and NAT_B_… (link impairments for lab-up: 'delay=40ms jitter=5ms"
	@echo "             loss=2%' or a preset: dsl, cable, lte, satellite, lossy-wifi; up = LAN -> WAN; see README \"Impairments\")"
	@echo "             CAPTURE=1 (lab-up: the routers capture packets from boot; then make capture), CAPTURE=ring (the last few MB)"
	@echo "             HOST_A_IMAGE, HOST_A_COMMAND, HOST_B_IMAGE, HOST_B_COMMAND (lab-up: your own image as alice / bob, natlab's"
	@echo "             agent beside it as alice-agent / bob-agent; see README \"Bring your own host\")"

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: $(STAMP) ## Create the host virtualenv (.venv) from pyproject.toml

compose: $(STAMP) ## Install the Docker Compose v2 plugin if `docker compose` is missing
	@images/install-compose.sh $(PY)

images: compose ## Build the lab image (bootstraps the Debian base once; rebuilds only what changed)
	@images/build.sh >/dev/null

user-image: compose ## Build the example user image natlab-user-netcat (plain Debian + netcat, no natlab code); prints its tag
	@images/build-user-netcat.sh

# `--progress quiet`: compose prints nothing but its errors, verbatim (e.g. "Pool overlaps with other one on
# this address space" when another lab or network holds the lab's subnets: move it with NATLAB_WAN and friends).
lab-up: images ## Start the interactive lab and wait until every service is healthy (NAT_A=, NAT_B=, NAT_A_IMPAIR=, NATLAB_WAN=, ATTACKER=1, HOST_A_IMAGE=, ...)
	@for s in A B; do [ -z "$$(printenv HOST_$${s}_COMMAND)" ] || [ -n "$$(printenv HOST_$${s}_IMAGE)" ] || { \
	  echo "lab-up: HOST_$${s}_COMMAND needs HOST_$${s}_IMAGE, the image to run it in" >&2; exit 2; }; done
	@err=$$(mktemp); trap 'rm -f "$$err"' EXIT; \
	$(COMPOSE) $(PROFILES) --progress quiet up -d --wait --wait-timeout 60 --remove-orphans 2>"$$err" || { \
	  $(COMPOSE) $(PROFILES) ps -a; $(COMPOSE) $(PROFILES) logs --tail 40; \
	  echo "lab-up: the lab did not come up; docker compose said:" >&2; cat "$$err" >&2; exit 1; }
	@echo "natlab: lab up and healthy (router-a: $(NAT_A), router-b: $(NAT_B); wan $${NATLAB_WAN:-198.18.0}.0/24)."
	@for s in A B; do both=$$(printenv NAT_$${s}_IMPAIR || true); \
	  up=$$(printenv NAT_$${s}_IMPAIR_UP || true); down=$$(printenv NAT_$${s}_IMPAIR_DOWN || true); \
	  [ -z "$$both$$up$$down" ] || echo "  router-$${s,,} impaired: up '$${up:-$${both:-off}}', down '$${down:-$${both:-off}}'"; done
	@$(if $(HOST_A_IMAGE),echo "  alice:   your $(HOST_A_IMAGE) (docker compose exec alice ...); natlab's agent is alice-agent",true)
	@$(if $(HOST_B_IMAGE),echo "  bob:     your $(HOST_B_IMAGE) (docker compose exec bob ...); natlab's agent is bob-agent",true)
	@echo "  chat:    docker compose exec $(if $(HOST_A_IMAGE),alice-agent,alice) client bob"
	@echo "  details: make lab-status"
	@$(if $(CAPTURE),echo "  packets: make capture (the routers capture $(NATLAB_CAPTURE) into /var/log/natlab/pcap)",true)

# compose.yaml alone: --remove-orphans takes a user host's agent (alice-agent) too, whatever HOST_A_IMAGE says now.
lab-down: compose ## Stop the interactive lab and remove its containers and networks
	@docker compose --profile attack down --volumes --remove-orphans --timeout 2 2>/dev/null  # the attacker too, if up

lab-status: $(STAMP) ## Show the lab: profiles, addresses, who is registered, each pair's path
	@$(PY) -m scenarios.lab_status

impair-check: $(STAMP) ## Each router of the running lab: impairments configured vs measured, as a table (IMPAIR_CHECK_ARGS='--seconds 10')
	@$(PY) -m scenarios.impair_check $(IMPAIR_CHECK_ARGS)

logs: compose ## Show the interactive lab's recent logs (SERVICE=alice for one service)
	@$(COMPOSE) logs --tail 200 --timestamps $(SERVICE)

capture: $(STAMP) ## Copy the interactive lab's router pcaps to results/captures/ and print one line per flow
	@$(PY) -m scenarios.capture_report

lint: $(STAMP) ## ruff check, ruff format --check, mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy tests scenarios

unit: $(STAMP) ## Unit tests (no Docker)
	$(VENV)/bin/pytest tests $(PYTEST_ARGS)

# Issue 11's timing scenarios (impairment self-check, faults, the impaired headline): part of `make scenarios`,
# and on their own in `make impaired` (about 6 minutes).
IMPAIRED_SCENARIOS := scenarios/test_impairments.py scenarios/test_faults.py scenarios/test_impaired_traversal.py

scenarios: images ## Scenario tests on real containers (e.g. PYTEST_ARGS='-k symmetric')
	$(VENV)/bin/pytest scenarios $(PYTEST_ARGS)

impaired: images ## Only issue 11's timing scenarios: impairments measured through a router, faults, 100 ms RTT + 5% loss traversal
	$(VENV)/bin/pytest $(IMPAIRED_SCENARIOS) $(PYTEST_ARGS)

test: lint compose unit scenarios ## Everything CI runs: lint + unit + scenarios (compose first: a unit test checks the topology files with it)

bench: images ## Measure lab-up (cold, warm), lab-down and connect-to-direct; prints the figures (results/bench), then make sweep
	@$(PY) -m scenarios.bench
	@$(MAKE) -s sweep

# The grid, then the sweep (its picture of traversal under impairment); fails when either did, after both ran.
grid: images ## Every ordered pair of NAT profiles in one lab, checked against theory (GRID_ARGS='--attempts 5', '--impair lte'), then make sweep
	@status=0; $(PY) -m scenarios.grid $(GRID_ARGS) || status=$$?; $(MAKE) -s sweep || status=$$?; exit $$status

sweep: images ## Cone-cone across round trip x loss: time to direct and delivery, plotted to results/sweep (SWEEP_ARGS='--attempts 5')
	$(PY) -m scenarios.sweep $(SWEEP_ARGS)

# The interop image (README "Interop"): the lab image plus nebula (Debian) and aiortc, whose wheels are fetched
# here on the host (the lab's containers reach no registry) for the containers' Python (Debian bookworm's 3.11,
# glibc 2.36) and architecture, pinned by interop/requirements.txt. Built only by these targets and the interop
# scenarios, never by `make images` or `make lab-up`.
INTEROP_WHEELS := .build/interop-wheels
INTEROP_ARCH := $(shell uname -m)
INTEROP_ARGS ?=

$(INTEROP_WHEELS)/.fetched: interop/requirements.txt $(STAMP)
	@rm -rf $(INTEROP_WHEELS) && mkdir -p $(INTEROP_WHEELS)
	@$(PY) -m pip download -q --no-deps --only-binary=:all: --dest $(INTEROP_WHEELS) -r interop/requirements.txt \
	  --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
	  $(foreach glibc,2_17 2_26 2_28,--platform manylinux_$(glibc)_$(INTEROP_ARCH)) --platform manylinux2014_$(INTEROP_ARCH) --platform any
	@touch $@

interop-image: compose $(INTEROP_WHEELS)/.fetched ## Build the interop image (lab image + nebula + aiortc from wheels fetched on this host); prints its tag
	@images/build-interop.sh $(INTEROP_WHEELS)

interop: interop-image ## aiortc, nebula (relays off/on) and natlab's client across NAT site pairs, vs expectations (INTEROP_ARGS='--all --attempts 3')
	$(PY) -m scenarios.interop $(INTEROP_ARGS)

FUZZ_SECONDS ?= 60
FUZZ_STAMP := $(VENV)/.fuzz-installed

$(FUZZ_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[dev,fuzz]'
	@touch $@

fuzz: $(FUZZ_STAMP) ## Fuzz the parser, the server's handler and the agent core with atheris (FUZZ_SECONDS=60 in all); prints executions and coverage
	@$(PY) -m fuzz --seconds $(FUZZ_SECONDS)

clean: ## Remove every natlab-labelled container, network, volume and image (also from crashed runs)
	@docker ps -aq --filter label=natlab | xargs -r docker rm -f >/dev/null || true
	@docker network ls -q --filter label=natlab | xargs -r docker network rm >/dev/null || true
	@docker volume ls -q --filter label=natlab | xargs -r docker volume rm >/dev/null || true
	@docker images -q --filter label=natlab | awk '!seen[$$0]++' | xargs -r docker rmi -f >/dev/null  # newest (children) first
	@echo "natlab: removed all natlab-labelled objects"
