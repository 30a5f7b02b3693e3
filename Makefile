# Developer shortcuts; each is one plain command (see README.md).
PYTHON ?= python3

.PHONY: docs docs-fast test lint format clean-docs

# the documentation site, every example run and its figures rendered (several minutes; starts clean)
docs: clean-docs
	$(PYTHON) -m sphinx -W docs docs/_build/html
	@echo "open docs/_build/html/index.html"

# the same site without running the examples (their code and text only): seconds
docs-fast:
	$(PYTHON) -m sphinx -W -D plot_gallery=0 docs docs/_build/html
	@echo "open docs/_build/html/index.html"

test:
	$(PYTHON) -m pytest -q

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

format:
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

clean-docs:
	rm -rf docs/_build docs/generated docs/auto_examples docs/sg_execution_times.rst
