# make run    set up (first time) and start the dashboard in sandbox mode at http://localhost:8501
# make test   set up (first time) and run the whole test suite, browser tests included
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test screenshots sandbox sync bench lint chromium clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(BIN)/python -m streamlit run streamlit_app.py --server.port $(PORT)

test: $(VENV)/.dev chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The README's screenshots (docs/screenshots), taken by the browser tests.
screenshots: $(VENV)/.dev chromium
	UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest tests/e2e

# Debian's chromium for the browser tests (Playwright's own download is not reachable here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { echo "Installing Debian's chromium for the browser tests"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

sandbox: $(VENV)/.runtime
	$(BIN)/python -m pica_core.sandbox --port 8600

sync: $(VENV)/.runtime
	$(BIN)/python -m pica_core sync

bench: $(VENV)/.dev
	$(BIN)/python bench/run_all.py

lint: $(VENV)/.dev
	$(BIN)/ruff check pica_core pages tests bench streamlit_app.py

clean:
	rm -rf $(VENV) .pytest_cache
