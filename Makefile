# `make demo` and `make test` are the two entry points (see README). Both create .venv on first use and install
# everything they need from the project's own files; the stamp re-installs when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
NODE_STAMP := clients/node/node_modules/.installed-stamp

.PHONY: demo test lint proto bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch==2.13.0 (pinned in pyproject.toml) is the CPU build this machine's pip finds locally.
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(NODE_STAMP): clients/node/package.json clients/node/package-lock.json
	cd clients/node && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

demo: $(STAMP)
	$(BIN)/florist-grpc demo

lint: $(STAMP)
	$(BIN)/python tools/genproto.py --check
	cd protos && ../$(BIN)/buf lint
	$(BIN)/ruff check florist_grpc tools tests bench
	$(BIN)/ruff format --check florist_grpc tools tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/hadolint Dockerfile

test: $(STAMP) $(NODE_STAMP) lint
	$(BIN)/pytest -q

proto: $(STAMP)
	$(BIN)/python tools/genproto.py

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) clients/node/node_modules .florist .florist-demo
