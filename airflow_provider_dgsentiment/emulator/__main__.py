"""Command line: ``dgsentiment-emulator`` / ``python -m airflow_provider_dgsentiment.emulator``.

Serves the emulated Deepgram API until SIGINT or SIGTERM, after printing one line::

    dgsentiment-emulator listening on http://127.0.0.1:8765

(with the real port when ``--port 0`` asked for a free one).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_provider_dgsentiment.emulator.server import EmulatorConfig

#: Port used when ``--port`` is not given.
DEFAULT_PORT = 8765


def _rate(value: str) -> float:
    rate = float(value)
    if not 0 <= rate <= 1:
        raise argparse.ArgumentTypeError(f"must be within [0, 1], got {value}")
    return rate


def _non_negative(value: str) -> float:
    number = float(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number


def build_parser() -> argparse.ArgumentParser:
    """Return the CLI's argument parser."""
    parser = argparse.ArgumentParser(
        prog="dgsentiment-emulator",
        description="Serve a local Deepgram-compatible Sentiment Analysis API (POST /v1/read).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument(
        "--port",
        type=_non_negative_int,
        default=DEFAULT_PORT,
        help="port to bind; 0 picks a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help="the key to accept in 'Authorization: Token <key>' "
        "(default: $DEEPGRAM_EMULATOR_API_KEY, else 'emulator-key')",
    )
    parser.add_argument("--accept-any-key", action="store_true", help="accept any non-empty key")
    parser.add_argument(
        "--max-concurrency",
        type=_positive_int,
        default=10,
        help="requests in flight before answering 429 (default: %(default)s)",
    )
    parser.add_argument(
        "--latency", type=_non_negative, default=0.0, help="seconds added to every request (default: %(default)s)"
    )
    parser.add_argument(
        "--latency-jitter",
        type=_rate,
        default=0.2,
        help="latency varies uniformly by this fraction, 0.2 = ±20%% (default: %(default)s)",
    )
    parser.add_argument(
        "--error-rate", type=_rate, default=0.0, help="share of requests answered 500 or 503 (default: %(default)s)"
    )
    parser.add_argument(
        "--rate-limit-rate",
        type=_rate,
        default=0.0,
        help="share of requests answered 429 with Retry-After (default: %(default)s)",
    )
    parser.add_argument(
        "--retry-after",
        type=_non_negative_int,
        default=1,
        help="seconds sent in Retry-After with every 429 (default: %(default)s)",
    )
    parser.add_argument(
        "--drop-rate",
        type=_rate,
        default=0.0,
        help="share of requests whose connection is closed with no response (default: %(default)s)",
    )
    parser.add_argument(
        "--spike-rate",
        type=_rate,
        default=0.0,
        help="share of requests given --spike-latency extra seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--spike-latency", type=_non_negative, default=0.0, help="extra seconds of a spike (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=None, help="fault RNG seed, for repeatable runs")
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """Return the :class:`EmulatorConfig` that parsed command-line ``args`` ask for."""
    from airflow_provider_dgsentiment.emulator.server import API_KEY_ENV, DEFAULT_API_KEY, EmulatorConfig

    api_key = args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or DEFAULT_API_KEY
    return EmulatorConfig(
        host=args.host,
        port=args.port,
        api_key=api_key,
        accept_any_key=args.accept_any_key,
        max_concurrency=args.max_concurrency,
        latency=args.latency,
        latency_jitter=args.latency_jitter,
        error_rate=args.error_rate,
        rate_limit_rate=args.rate_limit_rate,
        retry_after=args.retry_after,
        drop_rate=args.drop_rate,
        spike_rate=args.spike_rate,
        spike_latency=args.spike_latency,
        seed=args.seed,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, serve until SIGINT/SIGTERM, and return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Imported here so that --help answers without loading aiohttp and the model.
    from airflow_provider_dgsentiment.emulator.server import serve

    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, stop.set)
            except NotImplementedError:  # pragma: no cover - Windows: Ctrl+C raises KeyboardInterrupt
                pass

        def announce(url: str) -> None:
            print(f"dgsentiment-emulator listening on {url}", flush=True)

        await serve(config, stop=stop, on_ready=announce)

    try:
        asyncio.run(run())
    except KeyboardInterrupt:  # pragma: no cover - only where signal handlers are unsupported
        pass
    except OSError as exc:
        print(f"dgsentiment-emulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
