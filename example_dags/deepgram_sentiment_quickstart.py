"""Quickstart: score a few inline sentences with Deepgram and print the scores.

Results go to XCom only. The ``deepgram_default`` connection holds the API key; for an
offline run point it at the local emulator::

    dgsentiment-emulator --port 8765 --api-key demo-key &
    export AIRFLOW_CONN_DEEPGRAM_DEFAULT='{"conn_type": "deepgram", "host": "http://127.0.0.1:8765", "password": "demo-key"}'
    airflow dags test deepgram_sentiment_quickstart
"""

from __future__ import annotations

try:
    from airflow.sdk import DAG, task
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task

from airflow_provider_dgsentiment.operators.sentiment import DeepgramSentimentOperator

SAMPLE_TEXTS = [
    "I love this product. The setup took two minutes and it works beautifully!",
    "The delivery was late, the box was damaged and nobody answered my emails. Terrible service.",
    "The meeting is scheduled for Tuesday at ten. Please bring the quarterly report.",
]

with DAG(
    dag_id="deepgram_sentiment_quickstart",
    schedule=None,
    catchup=False,
    tags=["deepgram", "sentiment", "example"],
    doc_md=__doc__,
) as dag:
    score = DeepgramSentimentOperator(
        task_id="score_texts",
        text=SAMPLE_TEXTS,
        deepgram_conn_id="deepgram_default",
        language="en",
        xcom_output="full",
    )

    @task
    def print_scores(results: list[dict]) -> list[dict]:
        """Print one line per text: its average sentiment, score and segment count."""
        lines = []
        for item in results:
            if "results" not in item:
                print(f"{item['source']}: {item.get('status')} ({item.get('reason') or item.get('error')})")
                continue
            average = item["results"]["sentiments"]["average"]
            segments = item["results"]["sentiments"]["segments"]
            lines.append(
                {
                    "source": item["source"],
                    "sentiment": average["sentiment"],
                    "sentiment_score": average["sentiment_score"],
                    "segments": len(segments),
                }
            )
            print(
                f"{item['source']}: {average['sentiment']} ({average['sentiment_score']:+.3f}), "
                f"{len(segments)} segment(s), request_id={item['metadata']['request_id']}"
            )
        return lines

    print_scores(score.output)
