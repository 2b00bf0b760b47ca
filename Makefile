# `make demo` and `make test` are the two entry points (see README). Both create .venv on first use and install
# everything they need from the project's own files: Python packages from requirements-dev.lock only (exact
# versions with hashes, so a release published after a landing cannot change what CI installs); the stamp
# re-installs when the lock or pyproject.toml changes. `make lock` refreshes both lock files.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
TS     := clients/typescript
NODE_STAMP := $(TS)/node_modules/.installed-stamp
TS_MAIN    := $(TS)/dist/main.js
TS_SOURCES := $(TS)/tsconfig.json $(shell find $(TS)/src -name '*.ts')
# The dashboard page: its source in clients/web, built by esbuild into florist_grpc/web (committed: the wheel ships it).
WEB        := clients/web
WEB_STAMP  := $(WEB)/node_modules/.installed-stamp

.PHONY: demo test lint lock proto web system-deps bench clean

LOCK_DEV := requirements-dev.lock
LOCK_RUN := requirements.lock
# pip-compile (pip-tools), not uv: it resolves through pip's own configuration, so torch==2.13.0 resolves to the
# CPU wheel on this machine's disk (uv ignores pip's find-links and would pull a CUDA build). The index URLs stay
# out of the lock: each machine's pip configuration (or the Dockerfile's --extra-index-url) supplies them.
LOCK_FLAGS := --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links

$(STAMP): $(LOCK_DEV) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# Every package, pip and setuptools included, from the lock: --require-hashes refuses anything unpinned.
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK_DEV)
	# The project itself, editable, built with the locked setuptools (no isolated build env fetching its own).
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

$(NODE_STAMP): $(TS)/package.json $(TS)/package-lock.json
	cd $(TS) && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

$(WEB_STAMP): $(WEB)/package.json $(WEB)/package-lock.json
	cd $(WEB) && npm ci --no-audit --no-fund --loglevel=error
	touch $(WEB_STAMP)

# tsc (strict) type-checks and compiles the TypeScript client; lint depends on it, so a type error fails lint.
$(TS_MAIN): $(NODE_STAMP) $(TS_SOURCES)
	cd $(TS) && npm run --silent build
	touch $(TS_MAIN)

demo: $(STAMP)
	$(BIN)/florist-grpc demo

lint: $(STAMP) $(TS_MAIN) $(WEB_STAMP)
	$(BIN)/python tools/check_lock.py
	$(BIN)/python tools/genproto.py --check
	$(BIN)/python tools/genproto_ts.py --check
	# The dashboard: tsc type-checks it, and the committed florist_grpc/web must be what clients/web builds.
	cd $(WEB) && npm run --silent check
	cd protos && ../$(BIN)/buf lint
	$(BIN)/ruff check florist_grpc tools tests bench examples
	$(BIN)/ruff format --check florist_grpc tools tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/hadolint Dockerfile

# Debian packages some tests need (nftables for the network-namespace test; slurm-wlm and munge for tests/slurm;
# chromium for the browser tests), installed when missing and root; a stated skip otherwise.
system-deps:
	sh tools/install-system-deps.sh

test: $(STAMP) $(TS_MAIN) $(WEB_STAMP) system-deps lint
	$(BIN)/pytest -q

# Keeps every existing pin that still satisfies pyproject.toml and resolves only what changed; `make lock
# UPGRADE=1` moves every package to its newest allowed release. The runtime lock (the Dockerfile's) starts from
# the dev lock's pins, so the two never disagree on a version.
lock: $(STAMP)
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile $(LOCK_FLAGS) $(if $(UPGRADE),--upgrade) --extra dev \
		-o $(LOCK_DEV) pyproject.toml
	cp $(LOCK_DEV) $(LOCK_RUN)
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile $(LOCK_FLAGS) -o $(LOCK_RUN) pyproject.toml
	$(BIN)/python tools/check_lock.py

proto: $(STAMP) $(NODE_STAMP) $(WEB_STAMP)
	$(BIN)/python tools/genproto.py
	$(BIN)/python tools/genproto_ts.py
	cd $(WEB) && npm run --silent build  # the page bundles the generated TypeScript

# Rebuild the dashboard page (florist_grpc/web) after changing clients/web or the TypeScript it shares.
web: $(WEB_STAMP)
	cd $(WEB) && npm run --silent typecheck && npm run --silent build

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(TS)/node_modules $(TS)/dist $(WEB)/node_modules .florist .florist-demo
