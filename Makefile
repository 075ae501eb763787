# Slidelane: `make up` starts everything locally, `make test` runs the whole suite.
# Both create .venv when missing and (re)install the project only when pyproject.toml
# changed since the last install (stamp file .venv/.installed).

PY ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: up test proto lint-proto lint install clean

up: $(STAMP)
	$(BIN)/python -m services.launcher

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

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
