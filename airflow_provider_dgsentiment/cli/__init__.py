"""The ``dgsentiment`` command: score text, files or URIs, or check a key, without writing a DAG.

- :mod:`.main` parses the command line and runs ``score`` / ``check``;
- :mod:`.credentials` decides which connection the hook uses (``--conn-id``, ``DEEPGRAM_API_KEY``,
  ``--emulator``) and says where it looked when there is no key;
- :mod:`.local_emulator` runs the emulator as a child process for a dry run (never imported: the
  emulator is a second implementation of the API);
- :mod:`.table` prints results as a readable table.

Scoring goes through the operator's own :class:`~airflow_provider_dgsentiment.run.scoring.ScoringRun`
and :class:`~airflow_provider_dgsentiment.hooks.sentiment.DeepgramSentimentHook`: same engine,
readers, errors and limits.
"""
