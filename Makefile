# `make demo` and `make test` are the two entry points (see README). Both create .venv on first use and install
# everything they need from the project's own files; the stamp re-installs when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
TS     := clients/typescript
NODE_STAMP := $(TS)/node_modules/.installed-stamp
TS_MAIN    := $(TS)/dist/main.js
TS_SOURCES := $(TS)/tsconfig.json $(shell find $(TS)/src -name '*.ts')

.PHONY: demo test lint proto bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch==2.13.0 (pinned in pyproject.toml) is the CPU build this machine's pip finds locally.
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(NODE_STAMP): $(TS)/package.json $(TS)/package-lock.json
	cd $(TS) && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# tsc (strict) type-checks and compiles the TypeScript client; lint depends on it, so a type error fails lint.
$(TS_MAIN): $(NODE_STAMP) $(TS_SOURCES)
	cd $(TS) && npm run --silent build
	touch $(TS_MAIN)

demo: $(STAMP)
	$(BIN)/florist-grpc demo

lint: $(STAMP) $(TS_MAIN)
	$(BIN)/python tools/genproto.py --check
	$(BIN)/python tools/genproto_ts.py --check
	cd protos && ../$(BIN)/buf lint
	$(BIN)/ruff check florist_grpc tools tests bench examples
	$(BIN)/ruff format --check florist_grpc tools tests bench examples
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/hadolint Dockerfile

test: $(STAMP) $(TS_MAIN) lint
	$(BIN)/pytest -q

proto: $(STAMP) $(NODE_STAMP)
	$(BIN)/python tools/genproto.py
	$(BIN)/python tools/genproto_ts.py

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(TS)/node_modules $(TS)/dist .florist .florist-demo
