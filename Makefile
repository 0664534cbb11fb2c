# Two commands on a fresh machine:
#   make demo   set up .venv, generate the sales data, run examples/sales/pipeline.yaml
#   make test   set up .venv with the test extra, then ruff, mypy (src/), the strict docs build
#               (make docs) and pytest, whose docs-site test checks the site it built
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
ROWS   ?= 100000

.PHONY: demo test lint typecheck pytest bench browser spark-jars docs images clean

$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.base
	$(PY) -m pip install -q -e '.[test]'
	touch $@

demo: $(VENV)/.base
	$(PY) examples/sales/generate.py --rows $(ROWS)
	$(VENV)/bin/data-pipeline run examples/sales/pipeline.yaml
	@echo "Open the dashboard: $(CURDIR)/examples/sales/output/sales_dashboard.html"

browser:
	@bash scripts/ensure-chromium.sh

spark-jars: $(VENV)/.test  ## hadoop-aws + AWS SDK (Spark S3 tests) and the GCS connector (Spark GCS test), once, into ~/.cache
	@bash scripts/fetch-spark-jars.sh $(PY)

lint: $(VENV)/.test
	$(VENV)/bin/ruff check src tests benchmarks examples

typecheck: $(VENV)/.test
	$(VENV)/bin/mypy src/data_pipeline

# pytest needs the site: tests/unit/test_docs_site.py reads it (DATA_PIPELINE_DOCS_SITE)
pytest: $(VENV)/.test browser spark-jars docs
	DATA_PIPELINE_DOCS_SITE=$(CURDIR)/site $(VENV)/bin/pytest -q

test: lint typecheck docs pytest

docs: $(VENV)/.test  ## the documentation site with the API reference, offline and strict, into site/
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site
	@echo "Open the documentation: $(CURDIR)/site/index.html"

images: $(VENV)/.base  ## the PNGs of docs/visualization.md, made by vl-convert (no browser)
	$(PY) -m data_pipeline.visualization.example --images docs/img/visualization

bench: $(VENV)/.test
	$(PY) -m benchmarks e2e_batch

clean:
	rm -rf $(VENV) site examples/sales/data examples/sales/output benchmarks/.data .pytest_cache .mypy_cache .ruff_cache
