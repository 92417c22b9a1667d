"""How the CLI prints: tables for people, JSON for scripts, one-line errors, human times."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import humanize

# How counts are said: the worker's, so the CLI, the console and the worker say them alike.
from worker.wording import counted as counted
from worker.wording import plural_s as plural_s


def stamp(ts: float | None) -> str:
    """A time in full, local: "2026-12-02 16:29:10"; "-" for none."""
    return "-" if not ts else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def short_stamp(ts: float | None) -> str:
    """Month, day, hour and minute: a table's row fits 80 columns ("12-02 16:29")."""
    return "-" if not ts else time.strftime("%m-%d %H:%M", time.localtime(ts))


def when(ts: float | None, now: float | None = None) -> str:
    if not ts:
        return "-"
    now = time.time() if now is None else now
    at = stamp(ts)
    if ts > now:
        return f"{at} (in {humanize.naturaldelta(ts - now)})"
    return f"{at} ({humanize.naturaldelta(now - ts)} ago)"


def age(seconds: float | None) -> str:
    return "-" if seconds is None else humanize.naturaldelta(seconds)


def size(n: int | None) -> str:
    return "-" if n is None else humanize.naturalsize(n, binary=True)


# C0 and C1 controls, DEL, and the line and paragraph separators: a terminal obeys escape
# sequences, and each of these breaks a line for someone (str.splitlines, JavaScript, less).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: object) -> str:
    """Text from data made safe to print on a terminal: control characters as \\x.. escapes,
    unpaired surrogates (bytes that were not UTF-8) as \\udc.. escapes."""
    shown = _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode(), str(text))
    return shown.encode("utf-8", "backslashreplace").decode("utf-8")


def emit_json(value: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    json.dump(value, out, indent=2, ensure_ascii=False, default=str)
    out.write("\n")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], out: TextIO | None = None) -> None:
    out = out or sys.stdout
    cells = [[str(h) for h in headers]] + [
        ["" if c is None else printable(c) for c in r] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def one_line(text: str, limit: int = 80) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def latency(seconds: float | None) -> str:
    """One round trip: 0.3 ms, 12 ms, 1.2 s."""
    if seconds is None:
        return "-"
    ms = seconds * 1000
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{seconds:.1f} s"


def doorbells(depths: dict[str, int]) -> str:
    """Each queue's doorbells: `doorbells: postmaster 0, scheduler 1`."""
    if not depths:
        return "doorbells: not counted"
    return "doorbells: " + ", ".join(f"{name} {count:,}" for name, count in depths.items())


def clock(ts: float | None) -> str:
    return "-" if not ts else time.strftime("%H:%M:%S", time.localtime(ts))


def rate(bytes_per_day: float | None) -> str:
    if bytes_per_day is None:
        return "growth: too little history"
    sign = "-" if bytes_per_day < 0 else "+"
    return f"{sign}{size(int(abs(bytes_per_day)))}/day"


_BARS = "▁▂▃▄▅▆▇█"


def spark(values: Sequence[float], width: int, from_zero: bool = True) -> str:
    """The last `width` values as bars, scaled from zero (a count) or from their minimum (a
    level such as bytes stored, whose change would not show against zero)."""
    if not values:
        return "no history yet".ljust(width)[:width]
    shown = list(values)[-width:]
    low = 0.0 if from_zero else min(shown)
    span = max(shown) - low
    if span <= 0:
        return (_BARS[0 if from_zero and max(shown) <= 0 else 3] * len(shown)).rjust(width)
    return "".join(_BARS[min(7, int((v - low) / span * 7.999))] for v in shown).rjust(width)


def quota_eta(seconds: float | None, short: bool = False) -> str:
    """When the quota fills at the current growth: `in 3d04h`, or `not within a year` (a
    figure of 13469 days says nothing an operator can act on)."""
    if seconds is None:
        return "not at the current growth"
    if seconds > 365 * 86400:
        return "not within a year"
    return f"in {short_age(seconds) if short else age(seconds)}"


def operator() -> str:
    """Who runs this command, for `paused by cli:NAME`: $USER, else the uid's name, else it."""
    import os
    import pwd

    name = os.environ.get("USER") or os.environ.get("LOGNAME")
    if name:
        return name
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"


def short_age(seconds: float | None) -> str:
    """13s, 4m12s, 2h03m, 3d04h: ages that fit a narrow pane."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
