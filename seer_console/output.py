"""How the CLI prints: tables for people, JSON for scripts, one-line errors, human times."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import humanize


def when(ts: float | None, now: float | None = None) -> str:
    if not ts:
        return "-"
    now = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    return f"{stamp} ({humanize.naturaldelta(max(0.0, now - ts))} ago)"


def age(seconds: float | None) -> str:
    return "-" if seconds is None else humanize.naturaldelta(seconds)


def size(n: int | None) -> str:
    return "-" if n is None else humanize.naturalsize(n, binary=True)


def emit_json(value: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    json.dump(value, out, indent=2, ensure_ascii=False, default=str)
    out.write("\n")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def one_line(text: str, limit: int = 80) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
