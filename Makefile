# Two entry points, both usable on a fresh machine (Python 3.11, root, package registries only):
#   make demo   - emulator + example DAGs + SQLite, prints the stored scores
#   make test   - starts PostgreSQL and an S3-compatible server, installs Chromium for the
#                 connection-form test, checks the built wheel, runs the unit and DAG tests on
#                 Airflow 2.11 (.venv-af2), then the whole test suite on Airflow 3
SHELL := bash
.SHELLFLAGS := -eo pipefail -c
VENV ?= .venv
PYTHON ?= python3
CONSTRAINTS ?= constraints/airflow-3.txt

.PHONY: demo test lint services services-stop browser-deps benchmark benchmark-scale venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	# pip's notes about optional local mirrors are noise here; errors still fail the build.
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e '.[test]' 2>&1 \
		| { grep -v "^WARNING: Location 'file:" || true; }
	touch $@

demo: venv
	bash scripts/demo.sh

services: venv
	bash scripts/services.sh start

services-stop:
	bash scripts/services.sh stop

browser-deps: venv
	bash scripts/browser-test-deps.sh

lint: venv
	bash scripts/lint.sh

test: services browser-deps lint
	bash scripts/check-package.sh
	bash scripts/test-airflow2.sh
	bash scripts/test.sh

benchmark: venv
	$(VENV)/bin/python benchmarks/throughput.py
	$(MAKE) benchmark-scale

# 10k/100k file:// documents (worker and deferrable), a 200k-record JSONL.gz and a 200k-row table;
# inputs are cached under /tmp/dgsentiment-scale-cache. BENCHMARK_SCALE_ARGS="--text-sizes 1000 10000" for a quick run.
benchmark-scale: venv
	$(VENV)/bin/python benchmarks/scale.py $(BENCHMARK_SCALE_ARGS)

clean:
	bash scripts/services.sh stop || true
	rm -rf $(VENV) .venv-af2 .airflow-home .demo .ci-state dist build
