"""Helpers of the sensor tests: documents already scored into the averages table, objects already loaded."""

from __future__ import annotations

import uuid

from airflow_provider_dgsentiment.client.results import SentimentResult
from airflow_provider_dgsentiment.storage.load_history import Load, LoadHistory
from airflow_provider_dgsentiment.storage.sources import list_object_versions
from airflow_provider_dgsentiment.storage.warehouse import ScoredDocument, WarehouseWriter


def scored_document(source: str, score: float = 0.5) -> ScoredDocument:
    """A one-segment scored document named ``source``, ready for ``WarehouseWriter.write``."""
    text = f"document {source}"
    label = "positive" if score > 0.333 else "negative" if score < -0.333 else "neutral"
    body = {
        "metadata": {
            "request_id": str(uuid.uuid4()),
            "created": "2024-05-01T00:00:00.000Z",
            "language": "en",
            "sentiment_info": {"model_uuid": "test-model", "input_tokens": 2, "output_tokens": 2},
        },
        "results": {
            "sentiments": {
                "segments": [
                    {"text": text, "start_word": 0, "end_word": 1, "sentiment": label, "sentiment_score": score}
                ],
                "average": {"sentiment": label, "sentiment_score": score},
            }
        },
    }
    return ScoredDocument(source, uuid.uuid4().hex * 2, SentimentResult.from_response(body), "en")


def store_loaded(
    sql_conn_id: str,
    uris: list[str],
    averages_table: str = "deepgram_sentiment_averages",
    *,
    segments_table: str | None = None,
    storage_conn_id: str | None = None,
) -> None:
    """
    Store text objects as the operator does after reading them: scored rows, and complete reads in
    the load history at the version the storage lists now (``"v1"`` for an object not there).
    """
    segments_table = segments_table or f"{averages_table}_segments"
    with WarehouseWriter(sql_conn_id, averages_table=averages_table, segments_table=segments_table) as w:
        w.ensure_tables()
        history = LoadHistory(w)
        history.ensure_tables()
        w.write([scored_document(uri) for uri in uris])
        listed = [uri for uri in uris if uri.startswith("file://") or storage_conn_id]
        versions, _ = list_object_versions(listed, storage_conn_id, keep_missing=False)
        loads = [Load(uri, "text", "", versions.get(uri) or "v1", records=1, scored=1) for uri in uris]
        history.record(loads, [], [])
