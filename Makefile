# detainer-watch — the two commands: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= config/detainer-watch.toml
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck install migrate bench clean docker

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,postgres]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	mkdir -p data
	$(BIN)/detainer-watch --config $(CONFIG) migrate
	$(BIN)/detainer-watch --config $(CONFIG) run

test: $(STAMP)
	$(BIN)/ruff check service tests bench
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check service tests bench
	$(BIN)/ruff format --check service tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

migrate: $(STAMP)
	$(BIN)/detainer-watch --config $(CONFIG) migrate

bench: $(STAMP)
	$(BIN)/python bench/bench_matcher.py

docker:
	docker build -t detainer-watch .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
