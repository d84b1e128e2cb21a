"""Loading example DAGs, running them with dag.test() and reading their XComs."""

from __future__ import annotations

import importlib.util
import operator
from pathlib import Path

EXAMPLE_DAGS = Path(__file__).resolve().parents[2] / "example_dags"


def load_dag(file_name: str):
    """Import an example DAG file the way the DAG processor does (by path) and return its ``dag``."""
    path = EXAMPLE_DAGS / file_name
    spec = importlib.util.spec_from_file_location(f"example_dag_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def xcom_values(dag_run) -> dict[str, object]:
    """Return ``{task_id: return_value}`` of a finished run, read from the metadata DB."""
    try:
        from airflow.models.xcom import XComModel

        decode = XComModel.deserialize_value
    except ImportError:  # Airflow 2: XCom rows are deserialized when loaded
        from airflow.models.xcom import XCom as XComModel

        decode = operator.attrgetter("value")
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(XComModel)
            .filter(XComModel.dag_id == dag_run.dag_id, XComModel.run_id == dag_run.run_id)
            .filter(XComModel.key == "return_value")
            .all()
        )
        return {row.task_id: decode(row) for row in rows}


SQLITE_CONN_ID = "dgsentiment_sqlite"


DOCUMENTS = {
    "review-1.txt": "Fantastic hotel. The staff were friendly and the room was spotless!",
    "review-2.txt": "The room was dirty and the staff were rude. Never again.",
    "memo-3.txt": "The quarterly report is attached. The meeting starts at nine.",
}
