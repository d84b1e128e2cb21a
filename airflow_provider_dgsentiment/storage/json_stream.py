"""Read a JSON export value by value, streamed: a JSON array's elements, or JSON values one after another.

``mongoexport --jsonArray`` writes one JSON array; BigQuery's ``EXPORT DATA (format=JSON)``
and ``mongoexport`` without it write newline-delimited JSON; a hand-written export may be one
pretty-printed object. :func:`iter_json_values` reads all three from a text stream, holding
one read piece and the value being decoded, never the whole file (the standard library's
``json.load`` would hold it all, and no streaming parser is a dependency of the provider).

Each value comes with where it starts, for messages: ``element 12 (line 40)`` in an array,
``line 7`` otherwise. A value that is not valid JSON outside an array fails alone (reading
goes on at the next line, as for JSONL); inside an array nothing after it can be found, so
it ends the file with :class:`JsonStreamError`.

:func:`write_json_lines` and :func:`read_json_lines` write and read a whole JSON-lines object (the
results' parts, the load history's objects in object storage).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

#: Characters read from the text stream at a time.
READ_CHARS = 1024 * 1024
_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


class JsonStreamError(ValueError):
    """The file cannot be read on: a broken array, or a value longer than the limit."""


class BadJsonValue:
    """A value that is not valid JSON (outside an array): ``reason`` says why."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def iter_json_values(stream: IO[str], *, max_chars: int) -> Iterator[tuple[str, Any]]:
    """
    Yield ``(location, value)`` for each record of a JSON export; a bad value outside an array as :class:`BadJsonValue`.

    :param stream: the decoded text.
    :param max_chars: the longest value read; a longer one raises :class:`JsonStreamError`.
    """
    reader = _Reader(stream, max_chars)
    reader.skip_whitespace()
    if reader.peek() == "[":
        yield from _array_elements(reader)
        return
    while reader.peek():
        line = reader.line
        try:
            value = reader.value()
        except json.JSONDecodeError as exc:
            yield f"line {line}", BadJsonValue(f"not valid JSON ({exc.msg} at column {reader.column_of(exc.pos)})")
            reader.skip_line_after(exc.pos)
        else:
            yield f"line {line}", value
        reader.skip_whitespace()


def _array_elements(reader: _Reader) -> Iterator[tuple[str, Any]]:
    reader.advance(1)  # the "["
    reader.skip_whitespace()
    if reader.peek() == "]":
        reader.advance(1)
        reader.expect_end()
        return
    element = 0
    while True:
        element += 1
        location = f"element {element} (line {reader.line})"
        try:
            value = reader.value()
        except json.JSONDecodeError as exc:
            raise JsonStreamError(f"{location} is not valid JSON ({exc.msg}); nothing after it can be read") from None
        yield location, value
        reader.skip_whitespace()
        separator = reader.peek()
        if separator == "]":
            reader.advance(1)
            reader.expect_end()
            return
        if separator != ",":
            found = repr(separator) if separator else "the end of the file"
            raise JsonStreamError(f"the array is not closed: expected ',' or ']' after {location}, found {found}")
        reader.advance(1)
        reader.skip_whitespace()


class _Reader:
    """A window on the text: what was read and not yet consumed, and the line it starts on."""

    def __init__(self, stream: IO[str], max_chars: int) -> None:
        self.stream = stream
        self.max_chars = max_chars
        self.buffer = ""
        self.position = 0
        self.line = 1
        self.at_end = False

    def _fill(self, size: int | None = None) -> bool:
        """Read one more piece (:data:`READ_CHARS`, or ``size``); False at the end of the stream."""
        if self.at_end:
            return False
        piece = self.stream.read(size or READ_CHARS)
        if not piece:
            self.at_end = True
            return False
        if self.position:
            self.buffer = self.buffer[self.position :]
            self.position = 0
        self.buffer += piece
        return True

    def peek(self) -> str:
        if self.position >= len(self.buffer) and not self._fill():
            return ""
        return self.buffer[self.position]

    def advance(self, count: int) -> None:
        end = self.position + count
        self.line += self.buffer.count("\n", self.position, end)
        self.position = end

    def skip_whitespace(self) -> None:
        while True:
            run = _WHITESPACE.match(self.buffer, self.position)
            self.advance(run.end() - self.position if run else 0)
            if self.position < len(self.buffer) or not self._fill():
                return

    def value(self) -> Any:
        """Decode the value at the position, reading more while it is cut off by the end of what was read."""
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buffer, self.position)
            except json.JSONDecodeError as exc:
                if not self._cut_off(exc) or not self._fill_within_limit():
                    raise
                continue
            if end == len(self.buffer) and self._fill_within_limit():
                continue  # a number may go on in the next piece
            self.advance(end - self.position)
            return value

    def _cut_off(self, exc: json.JSONDecodeError) -> bool:
        """Whether the error may be the end of what was read rather than bad JSON."""
        return exc.msg.startswith("Unterminated string") or exc.pos >= len(self.buffer.rstrip())

    def _fill_within_limit(self) -> bool:
        """Read more of a value cut off by the end of what was read (twice as much each time: no quadratic re-decoding)."""
        held = len(self.buffer) - self.position
        if held > self.max_chars:
            raise JsonStreamError(f"a value at line {self.line} is longer than {self.max_chars} characters")
        return self._fill(max(READ_CHARS, held))

    def column_of(self, index: int) -> int:
        return index - (self.buffer.rfind("\n", 0, index) + 1) + 1

    def skip_line_after(self, index: int) -> None:
        """Go on reading at the line after the one ``index`` (in what was read) is on."""
        self.advance(index - self.position)
        while True:
            newline = self.buffer.find("\n", self.position)
            if newline >= 0:
                self.advance(newline + 1 - self.position)
                return
            self.advance(len(self.buffer) - self.position)
            if not self._fill():
                return

    def expect_end(self) -> None:
        self.skip_whitespace()
        if self.peek():
            raise JsonStreamError(f"text follows the array's closing ']' on line {self.line}")


# ---------------------------------------------------------------------- JSON lines objects


def write_json_lines(path: ObjectStoragePath, lines: Iterable[dict[str, Any]]) -> None:
    """Write ``lines`` as the object ``path``, one compact JSON document per line (closed on return)."""
    with path.open("wb") as file:
        for line in lines:
            file.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n")


def read_json_lines(part: ObjectStoragePath) -> Iterator[Any]:
    """The lines of a part, parsed; a line cut by a crash (not JSON) reads as None."""
    with part.open("rb") as file:
        # readline, not iteration: Airflow 2's file wrapper has __getitem__ but no __iter__.
        for raw in iter(file.readline, b""):
            try:
                yield json.loads(raw)
            except ValueError:
                yield None
