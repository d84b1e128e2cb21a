"""Helpers of the sensor tests: documents already scored into the averages table."""

from __future__ import annotations

import uuid

from airflow_provider_dgsentiment.client.results import SentimentResult
from airflow_provider_dgsentiment.storage.warehouse import ScoredDocument


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
