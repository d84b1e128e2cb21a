"""The local emulator as a child process (``python -m airflow_provider_dgsentiment.emulator``), for dry runs.

The emulator is started as its own process and spoken to over loopback HTTP only: its code is
never imported here (it is an independent second implementation of the API).
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import tempfile

#: What the emulator prints once it serves, followed by its URL.
LISTENING = "listening on "
#: Seconds to wait for the emulator to exit after SIGTERM before killing it.
STOP_TIMEOUT = 10


class LocalEmulator:
    """
    A Deepgram emulator on a free loopback port, as a context manager; stopped by its own PID.

    :param api_key: the key it accepts; default a random one.
    """

    def __init__(self, api_key: str | None = None) -> None:
        self.api_key = api_key or f"dry-run-{secrets.token_hex(8)}"
        self.url = ""
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> LocalEmulator:
        command = [sys.executable, "-m", "airflow_provider_dgsentiment.emulator", "--host", "127.0.0.1"]
        command += ["--port", "0", "--api-key", self.api_key]
        with tempfile.TemporaryFile("w+") as errors:
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
            assert self.process.stdout is not None
            line = self.process.stdout.readline()
            if LISTENING not in line:
                self.__exit__()
                errors.seek(0)
                detail = errors.read().strip().splitlines()[-1:] or [f"exit status {self.process.poll()}"]
                raise RuntimeError(
                    f"the local emulator did not start ({detail[0]}); it needs the emulator extra: "
                    "pip install 'airflow-provider-dgsentiment[emulator]'"
                )
        self.url = line.split(LISTENING, 1)[1].strip()
        return self

    def __exit__(self, *exc_info: object) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
