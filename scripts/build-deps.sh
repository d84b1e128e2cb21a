#!/usr/bin/env bash
# System packages `make venv` needs to build a wheel that PyPI has only as source:
# mysqlclient (the MySQL/MariaDB driver of apache-airflow-providers-mysql) compiles against
# libmysqlclient, found with pkg-config. Installed from Debian's packages when missing (as root);
# elsewhere say what to install.
set -euo pipefail
if pkg-config --exists mysqlclient 2>/dev/null && command -v cc >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "build-deps: install default-libmysqlclient-dev pkg-config build-essential (mysqlclient builds against them)" >&2
  exit 1
fi
echo "build-deps: installing default-libmysqlclient-dev, pkg-config and build-essential from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq default-libmysqlclient-dev pkg-config build-essential >/dev/null
