"""Apache Airflow provider for Deepgram text Sentiment Analysis."""

__version__ = "0.3.0"
