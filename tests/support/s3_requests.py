"""Count the requests the S3-compatible server receives: moto's own recorder, driven over its HTTP API.

The server (``scripts/services.sh``) records nothing until a test starts the recorder; each
recorded request is a JSON line with its method and URL, so GETs of objects, HEADs and listings
are told apart by the server's own account, not by instrumenting the client.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from urllib.parse import urlsplit


class S3Requests:
    """
    Record the requests the server receives inside a ``with`` block.

    :param endpoint: the server's base URL (``DGS_TEST_S3_ENDPOINT``).
    :param bucket: count only the requests on this bucket.
    """

    def __init__(self, endpoint: str, bucket: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.bucket = bucket
        self.entries: list[dict] = []

    def _call(self, action: str) -> bytes:
        request = urllib.request.Request(f"{self.endpoint}/moto-api/recorder/{action}", method="POST", data=b"")
        if action == "download-recording":
            request = urllib.request.Request(f"{self.endpoint}/moto-api/recorder/{action}", method="GET")
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.read()

    def __enter__(self) -> S3Requests:
        self._call("reset-recording")
        self._call("start-recording")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._call("stop-recording")
        lines = self._call("download-recording").decode("utf-8").splitlines()
        self.entries = [json.loads(line) for line in lines if line.strip()]

    def counts(self) -> Counter:
        """``{"get_object": n, "head": n, "list": n, "put": n, ...}`` on the bucket."""
        counted: Counter = Counter()
        for entry in self.entries:
            url = urlsplit(entry["url"])
            path = url.path.lstrip("/")
            bucket, _, key = path.partition("/")
            if bucket != self.bucket:
                continue
            method = entry["method"]
            if method == "GET":
                counted["list" if not key or "list-type" in url.query else "get_object"] += 1
            else:
                counted[method.lower()] += 1
        counted["requests"] = sum(counted.values())
        return counted

    def objects_read(self) -> list[str]:
        """The keys of the objects read with GET, in order."""
        keys = []
        for entry in self.entries:
            url = urlsplit(entry["url"])
            bucket, _, key = url.path.lstrip("/").partition("/")
            if entry["method"] == "GET" and bucket == self.bucket and key and "list-type" not in url.query:
                keys.append(key)
        return keys
