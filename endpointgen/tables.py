"""Tables for the terminal and for Markdown, shared by `plan` and `list`."""

from __future__ import annotations

from collections.abc import Sequence


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Columns padded to their widest cell; the last column is never padded."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        padded = [c.ljust(widths[i]) for i, c in enumerate(cells[:-1])] + [cells[-1]]
        return (indent + "  ".join(padded)).rstrip()

    rule = ["-" * w for w in widths]
    return "\n".join([line(headers), line(rule), *(line(r) for r in rows)]) + "\n"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "| " + " | ".join(md(h) for h in headers) + " |"
    rule = "|" + "|".join(" --- " for _ in headers) + "|"
    body = ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
    return "\n".join([head, rule, *body]) + "\n"


def md(text: str) -> str:
    """Text safe in a Markdown table cell: one line, no column breaks, no markup.

    `$` is escaped too: GitHub reads `$...$` as math, and prices are full of dollars.
    """
    out = " ".join(text.split())
    for ch in "\\`*[]<|$":
        out = out.replace(ch, "\\" + ch)
    return out
