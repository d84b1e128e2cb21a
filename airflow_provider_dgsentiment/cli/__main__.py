"""``python -m airflow_provider_dgsentiment.cli``: the ``dgsentiment`` command."""

from airflow_provider_dgsentiment.cli.main import main

if __name__ == "__main__":
    main()
