# Two entry points, both usable on a fresh machine (Python 3.11, root, package registries only):
#   make demo   - emulator + example DAGs + SQLite, prints the stored scores
#   make test   - starts PostgreSQL, S3 (moto), MariaDB, fakesnow, GCS (gcp-storage-emulator) and
#                 Azure Blob (Azurite) servers on loopback, installs Chromium for the connection-form
#                 test, lints, checks the built wheel, runs the unit and DAG tests on Airflow 2.11, the
#                 whole test suite on Airflow 3.3, the commands of docs/getting-started.md in a fresh
#                 folder (scripts/run-getting-started.sh), a subset on 3.0, 3.1 and 3.2 (each in its
#                 pinned venv), the gs:// tests in .venv-gcs (the google provider; scripts/test-gcs.sh), then
#                 test-deployment: a distributed Airflow 3 on loopback (PostgreSQL, Redis,
#                 api-server, scheduler, dag-processor, triggerer, two Celery workers, S3, emulator)
#                 and the nightly pipeline through its REST API, with a killed worker and a
#                 restarted triggerer; the servers it started are stopped at the end
#                 (DGS_KEEP_SERVICES=1 keeps them)
SHELL := bash
.SHELLFLAGS := -eo pipefail -c
VENV ?= .venv
PYTHON ?= python3
CONSTRAINTS ?= constraints/airflow-3.txt
#: The Airflow lines tested besides 3.3 (.venv) and 2.11 (.venv-af2), each in .venv-af<line> (scripts/test-airflow.sh).
MIDDLE_AIRFLOW_LINES ?= 3.0 3.1 3.2

.PHONY: demo test test-suites test-airflow-lines test-gcs unit test-getting-started test-deployment lint services services-stop browser-deps benchmark benchmark-nightly benchmark-durability benchmark-scale benchmark-deployment venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	bash scripts/build-deps.sh
	$(PYTHON) -m venv $(VENV)
	# pip's notes about optional local mirrors are noise here; errors still fail the build.
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -c $(CONSTRAINTS) -e '.[test,test-databases,azure]' 2>&1 \
		| { grep -v "^WARNING: Location 'file:" || true; }
	touch $@

demo: venv
	bash scripts/demo.sh

services: venv
	VENV=$(VENV) bash scripts/services.sh start

services-stop:
	VENV=$(VENV) bash scripts/services.sh stop

browser-deps: venv
	bash scripts/browser-test-deps.sh

lint: venv
	bash scripts/lint.sh

# The inner loop: the unit tests only (client, storage, run, hooks, triggers, emulator, provider
# metadata), no servers and no DAG runs. Under 2 minutes on 2 cores.
unit: venv
	bash scripts/test.sh -q -p no:cacheprovider tests/client tests/storage tests/run tests/hooks tests/triggers \
		tests/emulator tests/test_architecture.py tests/test_exceptions.py tests/test_get_provider_info.py tests/test_docs.py \
		-m "not integration"

# The servers run for the whole of test-suites; the ones this started are stopped after it, pass or fail.
test: venv browser-deps lint
	VENV=$(VENV) bash scripts/services.sh run $(MAKE) --no-print-directory test-suites

test-suites:
	bash scripts/check-package.sh
	bash scripts/test-airflow.sh 2.11
	VENV=$(VENV) bash scripts/test.sh
	VENV=$(VENV) bash scripts/run-getting-started.sh
	$(MAKE) --no-print-directory test-airflow-lines
	bash scripts/test-gcs.sh
	$(MAKE) --no-print-directory test-deployment

# The unit and DAG tests that cover operator, sensor, deferrable and records, on each middle line.
test-airflow-lines:
	for line in $(MIDDLE_AIRFLOW_LINES); do bash scripts/test-airflow.sh $$line || exit 1; done

# The gs:// tests (marker gcs) in .venv-gcs, the google provider's pinned venv (constraints/gcs.txt).
test-gcs: venv
	VENV=$(VENV) bash scripts/services.sh run bash scripts/test-gcs.sh

# docs/getting-started.md's commands, run in a fresh temporary folder.
test-getting-started: venv
	VENV=$(VENV) bash scripts/run-getting-started.sh

# Starts and stops its own deployment, and the servers of `make services` when they are not running.
test-deployment: venv
	VENV=$(VENV) bash scripts/services.sh run bash scripts/deployment.sh test

benchmark: venv
	$(VENV)/bin/python benchmarks/throughput.py
	$(VENV)/bin/python benchmarks/token_budget.py
	$(VENV)/bin/python benchmarks/object_history.py
	$(MAKE) benchmark-nightly
	$(MAKE) benchmark-durability
	$(MAKE) benchmark-scale

# Requests re-paid after a kill -9 at 50% of 5,000 documents, per output mode, worker and triggerer (~6 min).
benchmark-durability: venv
	$(VENV)/bin/python benchmarks/durability.py $(BENCHMARK_DURABILITY_ARGS)

# A night over 10k objects of which 1% changed, 0.2's way (read all) beside 0.3's (listing + changed only).
# BENCHMARK_NIGHTLY_ARGS="--objects 100000 --week 10000" for the issue's full sizes (several minutes).
benchmark-nightly: venv
	$(VENV)/bin/python benchmarks/nightly.py $(BENCHMARK_NIGHTLY_ARGS)

# 10k/100k file:// documents (worker and deferrable), a 200k-record JSONL.gz and a 200k-row table;
# inputs are cached under /tmp/dgsentiment-scale-cache. BENCHMARK_SCALE_ARGS="--text-sizes 1000 10000" for a quick run.
benchmark-scale: venv
	$(VENV)/bin/python benchmarks/scale.py $(BENCHMARK_SCALE_ARGS)

# The nightly pipeline end to end on the loopback Celery deployment, worker then deferrable mode.
# The servers it starts (services.sh, the deployment) are stopped after it, also when it fails.
benchmark-deployment: venv
	VENV=$(VENV) bash scripts/services.sh run bash -c 'VENV=$(VENV) bash scripts/deployment.sh start || exit 1; \
		set -a; . .ci-state/deployment/deployment.env; set +a; \
		rc=0; $(VENV)/bin/python benchmarks/deployment.py $(BENCHMARK_DEPLOYMENT_ARGS) || rc=$$?; \
		VENV=$(VENV) bash scripts/deployment.sh stop; exit $$rc'

clean:
	bash scripts/deployment.sh stop || true
	bash scripts/services.sh stop || true
	rm -rf $(VENV) .venv-af2 .venv-af30 .venv-af31 .venv-af32 .venv-gcs .venv-*.lock .airflow-home .demo .ci-state dist build
