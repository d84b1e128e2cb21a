"""Results as a readable table: one line per document (document, label, score, segments)."""

from __future__ import annotations

from typing import Any

#: Characters of a document's name (or inline text) shown at most.
DOCUMENT_WIDTH = 48


def document_label(item: dict[str, Any], inline_texts: dict[str, str]) -> str:
    """The document column: an inline text quoted (its start), else the document's name (its end)."""
    name = item["source"]
    text = inline_texts.get(name)
    if text is not None:
        shown = repr(" ".join(text.split()))
        return shown if len(shown) <= DOCUMENT_WIDTH else shown[: DOCUMENT_WIDTH - 3] + "..."
    return name if len(name) <= DOCUMENT_WIDTH else "..." + name[-(DOCUMENT_WIDTH - 3) :]


def row(item: dict[str, Any], inline_texts: dict[str, str]) -> tuple[str, str, str, str]:
    """``(document, label, score, segments)`` of one result item (the operator's ``full`` shape)."""
    document = document_label(item, inline_texts)
    if "results" not in item:
        return document, item.get("status", "?"), "", ""
    sentiments = item["results"]["sentiments"]
    average = sentiments["average"]
    return document, average["sentiment"], f"{average['sentiment_score']:.3f}", str(len(sentiments["segments"]))


def render(items: list[dict[str, Any]], inline_texts: dict[str, str]) -> str:
    """
    The table of ``items``, then one line per skipped or failed document saying why.

    :param items: result items in the operator's ``xcom_output="full"`` shape.
    :param inline_texts: inline texts by document name, shown instead of the name.
    """
    header = ("document", "label", "score", "segments")
    rows = [row(item, inline_texts) for item in items]
    widths = [max(len(cells[column]) for cells in [header, *rows]) for column in range(len(header))]
    lines = []
    for cells in [header, *rows]:
        document, label, score, segments = cells
        lines.append(
            f"{document:<{widths[0]}}  {label:<{widths[1]}}  {score:>{widths[2]}}  {segments:>{widths[3]}}".rstrip()
        )
    for item in items:
        why = item.get("error") or item.get("reason")
        if why:
            lines.append(f"{item['status']}: {item['source']}: {why}")
    return "\n".join(lines)
