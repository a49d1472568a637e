# ewsgate: the two commands are `make demo` and `make test`; `make bench` writes docs/performance.md.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PROTOS := $(wildcard src/ewsgate/proto/*.proto)

.PHONY: demo test lint bench proto system-deps venv clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $@

venv: $(BIN)/.installed

# Generated gRPC/protobuf code is built from the .proto contract, never edited or committed.
proto: venv
	@if [ -n "$(PROTOS)" ]; then $(BIN)/python -m ewsgate.proto.build; fi

# Debian packages the tests use as real peers (Chromium, net-snmp, OpenSSH).
system-deps:
	bash scripts/install-system-deps.sh

demo: venv proto
	$(BIN)/ewsgate demo

lint: venv proto
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

test: venv proto system-deps lint
	$(BIN)/pytest -q

bench: venv proto system-deps
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache .hypothesis
