"""The deployment's log files, read for an operator: the end at once, scrolling back, new lines
since an offset (rotation and truncation noticed), search and the last error, in blocks from
where the reader stands, so that a 1 GB log costs what is shown and not what it holds.

Every call opens the file afresh under the storage root without following a link (a link
planted in logs/ must not make the console read another file), reads a bounded number of bytes,
and returns frozen results whose lines are text fit for a terminal: decoded as UTF-8 with
replacement, control characters escaped, secrets redacted, very long lines cut.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from worker.files import UnsafeEntry, link_refused, open_dir_below
from worker.layout import Layout
from worker.redaction import redact_text

BLOCK = 64 * 1024
# What one call reads at most while looking for lines (a screen's worth needs far less) and
# while searching: a UI calls again from where the last call stopped, and shows progress.
READ_BUDGET = 4 * 1024 * 1024
SEARCH_BUDGET = 32 * 1024 * 1024
SEARCH_BLOCK = 1024 * 1024
# Shown of one line, in characters; the rest is said, not shown.
MAX_LINE = 2000

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ERROR_LEVELS = frozenset({"ERROR", "CRITICAL"})


@dataclass(frozen=True)
class LogFile:
    """One log of the deployment: its short name (`seer logs NAME`), file name and where."""

    name: str
    filename: str
    root: Path  # the storage root: nothing below it is reached through a link
    description: str

    @property
    def path(self) -> Path:
        return self.root / "logs" / self.filename


# (name, file name, what writes it): supervisor/supervisord.conf names the first three.
_FILES = (
    ("postmaster", "seer-postmaster.log", "the postmaster consumer (supervisord's program log)"),
    ("scheduler", "seer-scheduler.log", "the scheduler consumer (supervisord's program log)"),
    ("supervisord", "supervisord.log", "supervisord itself: spawns, exits, restarts"),
    ("orchestration", "orchestration.log", "JSON lines: storage reports, compactions, alerts"),
)
NAMES = tuple(name for name, _, _ in _FILES)
FILENAMES = {name: filename for name, filename, _ in _FILES}


def log_files(layout: Layout) -> tuple[LogFile, ...]:
    return tuple(LogFile(n, f, layout.root, d) for n, f, d in _FILES)


def log_file(layout: Layout, name: str) -> LogFile:
    """The log called `name`; ValueError naming the allowed ones otherwise."""
    for log in log_files(layout):
        if log.name == name:
            return log
    raise ValueError(f"no log {name!r}: allowed are {', '.join(NAMES)}")


@dataclass(frozen=True)
class Line:
    offset: int  # where the line starts in the file
    end: int  # just past its newline (or the file's end)
    text: str  # as shown: redacted, printable, cut to MAX_LINE
    level: str | None


@dataclass(frozen=True)
class Chunk:
    """Lines from [start, end) of the file as it was when read (`size`, `inode`)."""

    lines: tuple[Line, ...]
    start: int
    end: int
    size: int
    inode: int
    # The file shrank or was replaced (a rotation) since the offset asked about: these lines
    # are from the start of the new file.
    restarted: bool = False
    read: int = 0  # bytes read to answer, for the curious and the tests

    @property
    def at_start(self) -> bool:
        return self.start == 0

    @property
    def at_end(self) -> bool:
        return self.end >= self.size


@dataclass(frozen=True)
class Found:
    """A search step: the line found (None: not in the bytes looked at), where the next step
    starts (`offset`), and whether the file's start or end was reached (`done`)."""

    line: Line | None
    offset: int
    done: bool
    size: int
    read: int = 0


@dataclass(frozen=True)
class FileInfo:
    log: LogFile
    exists: bool
    size: int = 0
    modified: float | None = None
    error: str | None = None


# -- opening -----------------------------------------------------------------------------------

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _open(log: LogFile) -> int:
    """An fd of the log, reached from the storage root without following any link."""
    dir_fd = open_dir_below(log.root, "logs")
    try:
        try:
            fd = os.open(log.filename, _READ_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise link_refused(log.path) from None
            raise
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafeEntry(errno.EINVAL, f"{log.path} is not a regular file: refused", str(log.path))
    return fd


def info(log: LogFile) -> FileInfo:
    try:
        fd = _open(log)
    except FileNotFoundError:
        return FileInfo(log, False)
    except OSError as exc:
        return FileInfo(log, False, error=str(exc) if isinstance(exc, UnsafeEntry) else _why(exc))
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return FileInfo(log, True, st.st_size, st.st_mtime)


def _why(exc: OSError) -> str:
    return f"{exc.filename or ''}: {exc.strerror or type(exc).__name__}".lstrip(": ")


def _pread(fd: int, size: int, offset: int) -> bytes:
    return os.pread(fd, size, offset) if size > 0 else b""


# -- making lines --------------------------------------------------------------------------------

_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def display(raw: bytes) -> str:
    """A line of the file as it may be shown: decoded, cut, printable, redacted."""
    cut = len(raw) > MAX_LINE * 4
    text = raw[: MAX_LINE * 4].decode("utf-8", "replace").rstrip("\r\n")
    if len(text) > MAX_LINE:
        text, cut = text[:MAX_LINE], True
    text = text.replace("\t", "    ")
    text = _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode(), text)
    text = redact_text(text)
    if cut:
        text += f" … ({len(raw):,} bytes in all)"
    return text


def _line(raw: bytes, offset: int) -> Line:
    text = display(raw)
    return Line(offset, offset + len(raw), text, level_of(text))


_PY_LEVEL = re.compile(r"\b(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\b[:\s]")
# supervisord: "2026-12-02 10:00:00,123 INFO spawned: ..." (CRIT, ERRO, WARN, INFO, DEBG, ...)
_SUPERVISOR_LEVEL = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (CRIT|ERRO|WARN|INFO|DEBG|TRAC|BLAT) "
)
_SUPERVISOR = {
    "CRIT": "CRITICAL",
    "ERRO": "ERROR",
    "WARN": "WARNING",
    "INFO": "INFO",
    "DEBG": "DEBUG",
    "TRAC": "DEBUG",
    "BLAT": "DEBUG",
}
# JSON lines' "level" (the storage report's is the CAS's health) and "status" (compactions).
_JSON_LEVEL = {
    "debug": "DEBUG",
    "info": "INFO",
    "ok": "INFO",
    "resolved": "INFO",
    "test": "INFO",
    "warn": "WARNING",
    "warning": "WARNING",
    "error": "ERROR",
    "failed": "ERROR",
    "critical": "CRITICAL",
    "fatal": "CRITICAL",
}
_TRACEBACK = "Traceback (most recent call last)"


def level_of(line: str) -> str | None:
    """The line's level, one of LEVELS, or None: Python logging's `LEVEL` (Huey's
    `[time] LEVEL:name:message` too), supervisord's `INFO`/`WARN`/`CRIT`, JSON lines' "level"
    or a failed "status"; a traceback's first line is an ERROR."""
    stripped = line.lstrip()
    if stripped.startswith("{"):
        try:
            record = json.loads(stripped)
        except ValueError:
            record = None
        if isinstance(record, dict):
            for key in ("level", "levelname", "status"):
                value = record.get(key)
                if isinstance(value, str) and value.lower() in _JSON_LEVEL:
                    return _JSON_LEVEL[value.lower()]
            return None
    found = _SUPERVISOR_LEVEL.match(line)
    if found:
        return _SUPERVISOR[found.group(1)]
    if line.startswith(_TRACEBACK):
        return "ERROR"
    found = _PY_LEVEL.search(line[:200])
    if found:
        word = found.group(1)
        return "WARNING" if word == "WARN" else word
    return None


# -- reading -------------------------------------------------------------------------------------


def _split(data: bytes, base: int) -> list[Line]:
    """`data` (from file offset `base`, starting at a line start) as lines."""
    lines, pos = [], 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        stop = len(data) if nl < 0 else nl + 1
        lines.append(_line(data[pos:stop], base + pos))
        pos = stop
    return lines


def _back(fd: int, end: int, want: int, budget: int) -> tuple[list[Line], int, int]:
    """Up to `want` whole lines ending at `end` (a line start or the file's end), read
    backwards in blocks; returns (lines, their start, bytes read). A line longer than the
    budget is shown from where the budget ran out."""
    blocks: list[bytes] = []
    start, read, newlines = end, 0, 0
    while start > 0 and read < budget:
        size = min(BLOCK, start)
        start -= size
        block = _pread(fd, size, start)
        blocks.append(block)
        read += size
        newlines += block.count(b"\n")
        # Newlines before the last byte: `want` of them mean `want` whole lines.
        if newlines - (1 if blocks[0].endswith(b"\n") else 0) >= want:
            break
    data = b"".join(reversed(blocks))
    if start > 0:
        # Drop the partial first line: keep from just after the want-th newline from the end.
        cut, seen = len(data) - 1, 0
        while seen < want:
            nl = data.rfind(b"\n", 0, cut)
            if nl < 0:
                break
            cut, seen = nl, seen + 1
        if seen == want:
            data, start = data[cut + 1 :], start + cut + 1
    lines = _split(data, start)
    if len(lines) > want:
        drop = len(lines) - want
        start = lines[drop].offset
        lines = lines[drop:]
    return lines, start, read


def tail(log: LogFile, lines: int = 40) -> Chunk:
    """The last `lines` lines, read backwards from the end: a few blocks whatever the size."""
    fd = _open(log)
    try:
        st = os.fstat(fd)
        found, start, read = _back(fd, st.st_size, lines, READ_BUDGET)
    finally:
        os.close(fd)
    return Chunk(tuple(found), start, st.st_size, st.st_size, st.st_ino, read=read)


def before(log: LogFile, offset: int, lines: int = 200) -> Chunk:
    """Up to `lines` lines ending at `offset` (a line start): scrolling up."""
    fd = _open(log)
    try:
        st = os.fstat(fd)
        end = min(offset, st.st_size)
        found, start, read = _back(fd, end, lines, READ_BUDGET)
    finally:
        os.close(fd)
    return Chunk(tuple(found), start, end, st.st_size, st.st_ino, read=read)


def after(log: LogFile, offset: int, lines: int = 1000, inode: int | None = None) -> Chunk:
    """Up to `lines` lines from `offset` on: scrolling down, and following. A file that shrank
    below `offset`, or is another file than `inode` (supervisord rotated it), is read from its
    start, and the chunk says `restarted`."""
    fd = _open(log)
    try:
        st = os.fstat(fd)
        restarted = st.st_size < offset or (inode is not None and inode != st.st_ino)
        start = 0 if restarted else offset
        pos, read, newlines = start, 0, 0
        blocks: list[bytes] = []
        while pos < st.st_size and read < READ_BUDGET:
            block = _pread(fd, min(BLOCK, st.st_size - pos), pos)
            if not block:
                break
            blocks.append(block)
            pos += len(block)
            read += len(block)
            newlines += block.count(b"\n")
            if newlines >= lines:
                break
        data = b"".join(blocks)
        # Whole lines only, unless the file ends there (its last line, still being written).
        if pos < st.st_size:
            nl = data.rfind(b"\n")
            if nl >= 0:
                data = data[: nl + 1]
        found = _split(data, start)[:lines]
        end = found[-1].end if found else start
    finally:
        os.close(fd)
    return Chunk(tuple(found), start, end, st.st_size, st.st_ino, restarted, read)


def head(log: LogFile, lines: int = 40) -> Chunk:
    """The first `lines` lines: the top of the file, from its first blocks."""
    return after(log, 0, lines)


# -- searching -----------------------------------------------------------------------------------


def _positions(region: bytes, words: tuple[bytes, ...]) -> list[int]:
    """Where any of `words` (lower case) starts in `region`, ASCII case folded, in order.

    bytes.lower() and bytes.find() run at memory speed; a case-insensitive regex over bytes
    (what this was) scans at ~10-25 MB/s, which made a 1 GB log's search take a minute.
    bytes.lower() folds ASCII letters only, so offsets are the same in both."""
    folded = region.lower()
    found: set[int] = set()
    for word in words:
        at = folded.find(word)
        while at >= 0:
            found.add(at)
            at = folded.find(word, at + 1)
    return sorted(found)


def _scan(
    log: LogFile,
    offset: int | None,
    backward: bool,
    words: tuple[bytes, ...],
    accept: Callable[[Line], bool],
    budget: int,
) -> Found:
    """The nearest line before `offset` (backward) or from `offset` on (forward) holding one
    of `words` (any ASCII case) for which accept(line) holds, reading at most about `budget`
    bytes."""
    fd = _open(log)
    try:
        size = os.fstat(fd).st_size
        pos = size if offset is None else max(0, min(offset, size))
        read = 0
        while read < budget:
            if backward:
                if pos <= 0:
                    return Found(None, 0, True, size, read)
                lo = max(0, pos - SEARCH_BLOCK)
                data = _pread(fd, pos - lo, lo)
                read += len(data)
                # From the first whole line of the block (the partial one is the next block's).
                first = 0
                if lo > 0:
                    nl = data.find(b"\n")
                    first = nl + 1 if 0 <= nl < len(data) - 1 else 0
                base = lo + first
                region = data[first:]
                seen = -1  # a line with several matches is judged once
                for at in reversed(_positions(region, words)):
                    line = _line_at(region, at, base)
                    if line.offset == seen:
                        continue
                    seen = line.offset
                    if accept(line):
                        return Found(line, line.offset, False, size, read)
                pos = base
            else:
                if pos >= size:
                    return Found(None, size, True, size, read)
                data = _pread(fd, min(SEARCH_BLOCK, size - pos), pos)
                read += len(data)
                stop = len(data)
                if pos + len(data) < size:
                    nl = data.rfind(b"\n")
                    stop = nl + 1 if nl >= 0 else len(data)
                region = data[:stop]
                seen = -1
                for at in _positions(region, words):
                    line = _line_at(region, at, pos)
                    if line.offset == seen:
                        continue
                    seen = line.offset
                    if accept(line):
                        return Found(line, line.end, False, size, read)
                pos += stop
        return Found(None, pos, False, size, read)
    finally:
        os.close(fd)


def _line_at(region: bytes, index: int, base: int) -> Line:
    start = region.rfind(b"\n", 0, index) + 1
    nl = region.find(b"\n", index)
    stop = len(region) if nl < 0 else nl + 1
    return _line(region[start:stop], base + start)


def search(
    log: LogFile,
    text: str,
    offset: int | None = None,
    direction: str = "backward",
    budget: int = SEARCH_BUDGET,
) -> Found:
    """The next line holding `text` (case-insensitive, ASCII letters folded) before `offset`
    (backward; None: the end) or from `offset` on (forward). A line matches as it is shown:
    a secret the redaction hides is not found by searching for it. Found.line None with
    done False: nothing in the `budget` bytes looked at; call again from Found.offset."""
    if direction not in ("backward", "forward"):
        raise ValueError(f"direction {direction!r}: allowed are backward, forward")
    needle = text.lower()
    if not needle:
        raise ValueError("nothing to search for")
    return _scan(
        log,
        offset,
        direction == "backward",
        (needle.encode("utf-8").lower(),),
        lambda line: needle in line.text.lower(),
        budget,
    )


# What an error line holds, lower case (looked for in any ASCII case): Python's and Huey's
# ERROR and CRITICAL, supervisord's ERRO and CRIT, a traceback's first line, JSON lines'
# "level": "error" / "critical" (those words again) and "status": "failed" or "fatal". A line
# holding one is then judged by level_of, as it is shown.
_ERROR_WORDS = (
    b"error",
    b"critical",
    b"crit ",
    b"erro ",
    b"traceback (most recent call last)",
    b'"failed"',
    b'"fatal"',
)


def last_error(log: LogFile, offset: int | None = None, budget: int = SEARCH_BUDGET) -> Found:
    """The last line at ERROR or CRITICAL (or a traceback's first line) before `offset`
    (None: the end), scanning backwards; continue from Found.offset as for search."""
    return _scan(log, offset, True, _ERROR_WORDS, lambda line: line.level in ERROR_LEVELS, budget)
