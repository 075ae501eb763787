# Slidelane: `make up` starts everything locally, `make test` runs the whole suite.
# Both create .venv when missing and (re)install the project only when pyproject.toml
# changed since the last install (stamp file .venv/.installed).

PY ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

UI := services/gateway/ui
UI_DEPS := $(UI)/node_modules/.installed
UI_BUILD := $(UI)/dist/index.html

.PHONY: up test proto lint-proto lint install clean ui system-deps

up: $(STAMP) $(UI_BUILD)
	$(BIN)/python -m services.launcher

test: $(STAMP) $(UI_DEPS) system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The browser UI: npm packages from package-lock.json, then a Vite build (not committed).
ui: $(UI_BUILD)

$(UI_DEPS): $(UI)/package-lock.json
	# Not `npm ci`: vite's optional dependency napi-windows-process-start-time is not in the
	# registry this project installs from, so the lock file cannot list it and `npm ci`
	# refuses; `npm install` follows the lock file and skips the unavailable optional package.
	cd $(UI) && npm install --no-audit --no-fund
	touch $(UI_DEPS)

$(UI_BUILD): $(UI_DEPS) $(STAMP) $(shell find $(UI)/src protos -type f 2>/dev/null)
	cd $(UI) && npm run build

# What the tests drive besides Python: Chromium (browser tests) and promtool (alert
# rules). Installed from Debian's packages when missing and we may; else those tests skip.
system-deps:
	@missing=""; command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

install: $(STAMP)

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

proto: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

# buf resolves google/api/*.proto from build/proto-deps (copied from the
# googleapis-common-protos wheel), so linting needs no network.
lint-proto: $(STAMP)
	@mkdir -p build/proto-deps/google/api
	@SP=$$($(BIN)/python -c "import google.api, pathlib; print(pathlib.Path(google.api.__path__[0]))"); \
		cp $$SP/annotations.proto $$SP/http.proto $$SP/httpbody.proto build/proto-deps/google/api/
	$(BIN)/buf lint

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf build .pytest_cache .ruff_cache
