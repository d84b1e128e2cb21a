"""Which names a folder or glob lists: markers and hidden names left out, local folders walked safely.

Two decisions about listing live here, for every storage:

* **Markers and hidden names.** Below the folder or glob a ``source`` entry names, a file
  or folder whose name starts with ``_`` or ``.`` is not a document: Spark and Hadoop write
  ``_SUCCESS``, ``_committed_*``, ``_started_*``, ``_temporary/`` and ``.crc`` checksums
  beside their output, and Spark, Hive, Athena and DuckDB skip such names when they read a
  folder. They are skipped here too (and counted, so the caller can say so). An object named
  explicitly is still read, and a glob whose last part itself starts with ``_`` or ``.``
  (``in/_*.txt``) matches such files.
* **Local folders are walked without following symlinked folders** (``os.walk`` does not
  follow them), also for globs: the standard library's recursive glob follows them, so a
  symlink loop (``a/loop -> ..``) made it list forever. A symlink to a file is listed; a
  symlinked folder is not entered.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

from airflow_provider_dgsentiment.exceptions import NAMED_IN_MESSAGES, first_and_more

#: Names starting with these are markers or hidden, not documents, inside a listed folder or glob.
SKIPPED_PREFIXES = ("_", ".")
#: Characters that make a ``source`` entry a glob.
GLOB_CHARACTERS = frozenset("*?[")
#: Skipped names a log line shows at most.
MAX_SHOWN_SKIPPED = NAMED_IN_MESSAGES


class SkippedNames:
    """The names a listing left out: counted, the first few kept for the log line."""

    def __init__(self) -> None:
        self.count = 0
        self.shown: list[str] = []

    def add(self, name: str) -> None:
        self.count += 1
        if len(self.shown) < MAX_SHOWN_SKIPPED:
            self.shown.append(name.rstrip("/").rsplit("/", 1)[-1])

    def describe(self, entry: str) -> str:
        """One log line: how many names under ``entry`` were skipped, and a few of them."""
        return (
            f"Skipped {self.count} name(s) under {entry} that start with _ or . "
            f"({first_and_more(self.shown, total=self.count)}): "
            "Spark/Hadoop markers, checksums and hidden files are not documents (Spark, Hive, Athena and DuckDB "
            "skip them too); name an object explicitly to read it"
        )


def is_glob(location: str) -> bool:
    return any(character in location for character in GLOB_CHARACTERS)


def glob_root(pattern: str) -> str:
    """The folder a glob lists under: its parts before the first part holding a glob character."""
    parts = pattern.split("/")
    for index, part in enumerate(parts):
        if is_glob(part):
            return "/".join(parts[:index]) or "/"
    return pattern


def explicit_prefix(pattern: str) -> str | None:
    """``_`` or ``.`` when the pattern's last part itself starts with it (it asks for such names)."""
    last = pattern.rstrip("/").rsplit("/", 1)[-1]
    return last[0] if last.startswith(SKIPPED_PREFIXES) else None


def skipped_below(location: str, root: str, explicit: str | None, skipped: SkippedNames) -> bool:
    """
    Whether ``location`` has a part below ``root`` starting with ``_`` or ``.`` (counted in ``skipped``).

    :param explicit: a prefix the last part may start with because the pattern asks for it.
    """
    relative = location[len(root) :].strip("/").split("/") if location.startswith(root) else [location]
    last = len(relative) - 1
    for index, part in enumerate(relative):
        if part.startswith(SKIPPED_PREFIXES) and not (index == last and explicit and part.startswith(explicit)):
            skipped.add(location)
            return True
    return False


def walk_local(root: str, skipped: SkippedNames, *, pattern: str | None = None) -> Iterator[str]:
    """
    Yield the files under the local folder ``root`` (or those matching the glob ``pattern``).

    Never enters a symlinked folder, a folder starting with ``_`` or ``.``, or (for a glob
    without ``**``) a folder deeper than the pattern reaches; files starting with ``_`` or
    ``.`` are counted in ``skipped`` unless the pattern's last part asks for them.

    :param root: the folder to walk (:func:`glob_root` of the pattern).
    :param pattern: a glob (``*``, ``?``, ``[...]``, ``**``) over whole paths, or None for every file.
    """
    matcher = _glob_regex(pattern) if pattern is not None else None
    explicit = explicit_prefix(pattern) if pattern is not None else None
    depth_limit = None
    if pattern is not None and "**" not in pattern.split("/"):
        depth_limit = len(pattern.rstrip("/").split("/")) - len(root.rstrip("/").split("/"))
    base_depth = root.rstrip("/").count("/")
    for folder, folders, files in os.walk(root):
        depth = folder.rstrip("/").count("/") - base_depth
        kept = []
        for name in folders:
            if name.startswith(SKIPPED_PREFIXES):
                skipped.add(os.path.join(folder, name))
            elif depth_limit is None or depth + 1 < depth_limit:
                kept.append(name)
        folders[:] = kept
        for name in files:
            location = os.path.join(folder, name)
            if matcher is not None and not matcher.match(location):
                continue
            if name.startswith(SKIPPED_PREFIXES) and not (explicit and name.startswith(explicit)):
                skipped.add(location)
                continue
            yield location


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex over whole paths for a glob: ``*``/``?``/``[...]`` within one part, ``**`` across parts."""
    parts = pattern.split("/")
    pieces = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            pieces.append(".*" if last else "(?:[^/]*/)*")
        else:
            pieces.append(_part_regex(part) + ("" if last else "/"))
    return re.compile("".join(pieces) + r"\Z", re.DOTALL)


def _part_regex(part: str) -> str:
    out = []
    index = 0
    while index < len(part):
        character = part[index]
        index += 1
        if character == "*":
            out.append("[^/]*")
        elif character == "?":
            out.append("[^/]")
        elif character == "[":
            start = index + 1 if part[index : index + 1] == "!" else index
            if part[start : start + 1] == "]":  # a "]" first in the class is a literal
                start += 1
            end = part.find("]", start)
            if end < 0:
                out.append(re.escape(character))
                continue
            body = part[index:end].replace("\\", "\\\\")
            index = end + 1
            out.append("[^/" + body[1:] + "]" if body.startswith("!") else "[" + body + "]")
        else:
            out.append(re.escape(character))
    return "".join(out)
