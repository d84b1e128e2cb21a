#!/usr/bin/env bash
# Run the gs:// tests (marker `gcs`) in their own pinned venv, against the GCS server of scripts/services.sh.
#
#   bash scripts/test-gcs.sh [pytest args]   # default: every test marked gcs (-m gcs)
#   bash scripts/test-gcs.sh --build         # only build .venv-gcs (CI builds it ahead, in the background)
#
# gs:// needs the google provider (the `gcs` extra), which the project's .venv leaves out: it brings
# ~160 packages of its own (the google-cloud libraries, ray, litellm, scipy) and needs tenacity and
# importlib-metadata below constraints/airflow-3.txt's pins. So it has its own venv, .venv-gcs, the
# Airflow 3.3 line with the gcs extra, pinned by constraints/gcs.txt (the file users install with:
# pip install -c constraints/gcs.txt 'airflow-provider-dgsentiment[gcs]'), built by scripts/build-venv.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${VENV_GCS:-.venv-gcs}"
bash scripts/build-venv.sh "$venv" constraints/gcs.txt test,gcs
[ "${1:-}" = --build ] && exit 0

# Versions from the metadata: importing gcsfs here would log its experimental switch to no purpose.
"$venv/bin/python" -c 'import sys
from importlib.metadata import version
print("test-gcs.sh:", ", ".join(f"{name} {version(name)}" for name in sys.argv[1:]), "Python", sys.version.split()[0])' \
  apache-airflow apache-airflow-providers-google gcsfs
[ "$#" -eq 0 ] && set -- tests -m gcs -q
# scripts/test.sh loads the services' env (the GCS server's endpoint) and refuses a run that collected no tests.
VENV="$venv" AIRFLOW_HOME="$PWD/.airflow-home/tests-gcs" exec bash scripts/test.sh "$@"
