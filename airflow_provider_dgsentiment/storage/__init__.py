"""
Storage: where documents come from and where results go.

- :mod:`.sources` names what ``source`` / ``sql`` point at: parsing, listing, reading;
- :mod:`.listing` decides which names a folder or glob lists (markers skipped, symlink loops ended);
- :mod:`.records` reads records from JSONL / JSON / CSV / Parquet files and SQL rows
  (:mod:`.json_stream` streams a JSON array or newline-delimited JSON);
- :mod:`.warehouse` writes the SQL tables, checks them and finds what is stored;
- :mod:`.result_files` writes JSONL parts under ``results_path``;
- :mod:`.lineage` names objects and tables for OpenLineage and Assets.
"""

from __future__ import annotations

from airflow_provider_dgsentiment.storage.lineage import table_asset
from airflow_provider_dgsentiment.storage.records import Record, detect_format
from airflow_provider_dgsentiment.storage.result_files import ResultFiles
from airflow_provider_dgsentiment.storage.sources import (
    Document,
    DocumentSource,
    SensedObjects,
    find_objects,
    fingerprint,
)
from airflow_provider_dgsentiment.storage.warehouse import (
    RunIdentity,
    ScoredDocument,
    WarehouseWriter,
    sql_hook,
    validate_table_name,
)

__all__ = [
    "Document",
    "DocumentSource",
    "Record",
    "ResultFiles",
    "RunIdentity",
    "ScoredDocument",
    "SensedObjects",
    "WarehouseWriter",
    "detect_format",
    "find_objects",
    "fingerprint",
    "sql_hook",
    "table_asset",
    "validate_table_name",
]
