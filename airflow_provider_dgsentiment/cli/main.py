"""``dgsentiment score`` and ``dgsentiment check``: the command line over the operator's engine.

``score`` takes texts, files, ``-`` (standard input) and URIs (``file://``, ``s3://conn@bucket/key``,
globs and record files, exactly as the operator's ``source`` reads them), scores them with the
operator's :class:`~airflow_provider_dgsentiment.run.scoring.ScoringRun` (same engine, readers,
errors and limits, nothing stored) and prints a table or, with ``--json``, the operator's
``xcom_output="full"`` items (the API's response shape plus ``source``). ``check`` tests a key
with ``GET /v1/projects``, which costs nothing.

Exit status: 0 when every document was scored or skipped (or the key works); 1 when some failed (or
the key does not work); 2 when nothing could run (no key, a bad option, a source matching nothing)
or a systemic error stopped the run (a bad key, no credit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from airflow_provider_dgsentiment.hooks.sentiment import DeepgramSentimentHook
    from airflow_provider_dgsentiment.run.outcome import ScoringOutcome
    from airflow_provider_dgsentiment.storage.sources import DocumentSource

#: Inline texts scored without progress lines on stderr; files and URIs may hold many documents.
FEW_DOCUMENTS = 3
#: Seconds between progress lines on stderr.
PROGRESS_INTERVAL = 5.0
#: The tag every request of the command carries (Deepgram usage by pipeline).
COMMAND_TAG = "dgsentiment-cli"
EXIT_OK, EXIT_FAILED_DOCUMENTS, EXIT_ERROR = 0, 1, 2
EMULATOR_NOTICE = (
    "dgsentiment: dry run against the local emulator at {url}: scores come from its lexicon model (VADER), "
    "not from Deepgram"
)


def build_parser() -> argparse.ArgumentParser:
    """Return the command's argument parser."""
    connection = argparse.ArgumentParser(add_help=False)
    where = connection.add_argument_group("where the key comes from (in this order)")
    where.add_argument("--conn-id", help="an Airflow 'deepgram' connection (env var, secrets backend or metadata DB)")
    where.add_argument(
        "--base-url",
        help="with DEEPGRAM_API_KEY: the API's base URL (default https://api.deepgram.com; "
        "e.g. https://api.eu.deepgram.com)",
    )
    where.add_argument(
        "--emulator", action="store_true", help="start a local emulator and use it (a dry run: no key, no cost)"
    )

    parser = argparse.ArgumentParser(
        prog="dgsentiment",
        description="Score text with Deepgram's Sentiment Analysis, or check a key, without writing a DAG.",
        epilog="The key is read from --conn-id, else DEEPGRAM_API_KEY; it is never prompted for nor printed.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{score,check}")
    score = commands.add_parser(
        "score",
        parents=[connection],
        help="score texts, files, - (stdin) or URIs",
        description="Score each input: a text, a file, - (standard input, one document) or a URI "
        "(file://, s3://conn@bucket/key, globs, record files .jsonl/.csv/.tsv/.parquet as the operator reads them). "
        "Inline texts come first in the output, then the files and URIs in listing order.",
    )
    score.add_argument("inputs", nargs="+", metavar="TEXT|FILE|-|URI")
    score.add_argument("--json", action="store_true", help="print the results in the API's response shape")
    score.add_argument("--language", default="en", help="language code (default: %(default)s)")
    score.add_argument("--max-concurrency", type=int, help="requests in flight at most (default: the connection's)")
    score.add_argument("--format", default="auto", help="how to read files: auto, text, jsonl, csv, parquet")
    score.add_argument("--text-field", default="text", help="the field of a record to score (default: %(default)s)")
    score.add_argument("--id-field", help="the field that keys a record (default: its line or row number)")
    score.add_argument("--max-input-tokens", type=int, help="stop before the run would pass this many input tokens")
    score.add_argument(
        "--tag", action="append", dest="tags", help=f"a Deepgram tag for usage reports (default: {COMMAND_TAG})"
    )
    score.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    commands.add_parser(
        "check",
        parents=[connection],
        help="check a key with GET /v1/projects (no cost)",
        description="Check that the key works: GET /v1/projects, which costs nothing.",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """
    Console script entry point ``dgsentiment``.

    Standard output carries the result only: whatever else writes to file descriptor 1 while
    the command runs (Airflow's structured logs of retries, for instance) goes to stderr.
    """
    args = build_parser().parse_args(argv)
    sys.stdout.flush()
    result_fd = os.dup(1)
    os.dup2(2, 1)
    with open(result_fd, "w", closefd=True) as result:
        status = run(args, out=result)
    sys.exit(status)


def run(args: argparse.Namespace, *, out: TextIO, stdin: TextIO | None = None) -> int:
    """Run the parsed command, printing its result to ``out``; return its exit status."""
    from airflow.providers.common.compat.sdk import AirflowNotFoundException

    from airflow_provider_dgsentiment.cli.credentials import connection_id, define_connection
    from airflow_provider_dgsentiment.cli.local_emulator import LocalEmulator
    from airflow_provider_dgsentiment.exceptions import DeepgramError
    from airflow_provider_dgsentiment.hooks.sentiment import DeepgramSentimentHook

    _logs_to_stderr()
    try:
        with ExitStack() as stack:
            if args.emulator:
                emulator = stack.enter_context(LocalEmulator())
                conn_id = define_connection(emulator.url, emulator.api_key)
                print(EMULATOR_NOTICE.format(url=emulator.url), file=sys.stderr)
            else:
                conn_id = connection_id(args.conn_id, args.base_url)
            hook = stack.enter_context(
                DeepgramSentimentHook(conn_id, max_concurrency=getattr(args, "max_concurrency", None))
            )
            if args.command == "check":
                ok, message = hook.test_connection()
                print(message, file=out)
                return EXIT_OK if ok else EXIT_FAILED_DOCUMENTS
            return _score(args, hook, stdin or sys.stdin, out)
    except (DeepgramError, AirflowNotFoundException, RuntimeError) as error:
        print(f"dgsentiment: error: {error}", file=sys.stderr)
        return EXIT_ERROR


def split_inputs(values: Sequence[str], stdin: TextIO) -> tuple[list[str], list[str]]:
    """
    Return ``(inline texts, source entries)``: ``-`` is standard input, a value with ``://`` a URI,
    an existing path a file (as an absolute ``file://`` URI), anything else a text.
    """
    texts: list[str] = []
    entries: list[str] = []
    for value in values:
        if value == "-":
            texts.append(stdin.read())
        elif "://" in value:
            entries.append(value)
        elif os.path.exists(value):
            entries.append("file://" + os.path.abspath(value))
        else:
            texts.append(value)
    return texts, entries


def _score(args: argparse.Namespace, hook: DeepgramSentimentHook, stdin: TextIO, out: TextIO) -> int:
    from airflow_provider_dgsentiment.run.scoring import ScoringOptions
    from airflow_provider_dgsentiment.storage.sources import DocumentSource

    texts, entries = split_inputs(args.inputs, stdin)
    sources = []
    if texts:
        sources.append(DocumentSource.inline(texts, stored_prefix=""))
    if entries:
        sources.append(
            DocumentSource(
                entries=tuple(entries), format=args.format, text_field=args.text_field, id_field=args.id_field
            )
        )
    options = ScoringOptions(
        language=args.language,
        max_concurrency=args.max_concurrency,
        skip_scored=False,
        fail_on_empty_source=False,  # said below, without the operator's argument in the hint
        progress_interval=PROGRESS_INTERVAL,
        tags=tuple(args.tags if args.tags is not None else [COMMAND_TAG]),
        max_input_tokens=args.max_input_tokens,
    )
    log = logging.getLogger("dgsentiment")
    log.setLevel(logging.WARNING if args.quiet or (len(texts) <= FEW_DOCUMENTS and not entries) else logging.INFO)
    outcomes = asyncio.run(_score_sources(sources, hook, options, log))

    # A source that listed no object at all (a record file holding no record did list one).
    empty = [source for source, outcome in zip(sources, outcomes) if not source.is_inline and not outcome.inputs]
    if empty:
        print(f"dgsentiment: error: {empty[0].describe()} matched no objects", file=sys.stderr)
        return EXIT_ERROR
    items = [item for outcome in outcomes for item in outcome.xcom_value()]
    if args.json:
        print(json.dumps(items, indent=2), file=out)
    else:
        from airflow_provider_dgsentiment.cli.table import render

        print(render(items, {f"text[{index}]": text for index, text in enumerate(texts)}), file=out)
    systemic = next((outcome.systemic_error for outcome in outcomes if outcome.systemic_error is not None), None)
    if systemic is not None:
        unscored = sum(outcome.total - outcome.scored - outcome.skipped for outcome in outcomes)
        print(f"dgsentiment: stopped: {systemic} ({unscored} document(s) left unscored)", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_FAILED_DOCUMENTS if any(outcome.failed for outcome in outcomes) else EXIT_OK


async def _score_sources(
    sources: list[DocumentSource], hook: DeepgramSentimentHook, options: Any, log: logging.Logger
) -> list[ScoringOutcome]:
    """Score each source in turn on one event loop (one engine); stop after a systemic error."""
    from airflow_provider_dgsentiment.run.scoring import ScoringRun

    outcomes = []
    for source in sources:
        outcome = await ScoringRun(source=source, hook=hook, keep="full", options=options, log=log).run()
        outcomes.append(outcome)
        if outcome.systemic_error is not None:
            break
    return outcomes


def _logs_to_stderr() -> None:
    """Send every log line (the command's progress, the hook's retries) to stderr: stdout is the result."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logging.basicConfig(handlers=[handler], level=logging.WARNING, force=True)
    command_log = logging.getLogger("dgsentiment")
    command_log.handlers[:] = [handler]
    command_log.propagate = False
