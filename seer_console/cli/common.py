"""What every `seer` command group shares: exit codes, the two errors a command raises, the
argparse types and parser, asking for confirmation, warnings, and opening the runtime."""

from __future__ import annotations

import argparse
import enum
import sys
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from seer_console import output
from worker.ledger import Ledger
from worker.ledger.errors import LedgerError
from worker.queue.errors import QueueError
from worker.runtime import Runtime
from worker.settings import Settings, parse_duration

# The ledger, the queue and backup's copy turn their drivers' errors into these: the CLI
# never sees sqlite3's (or, later, a PostgreSQL or Redis driver's).
DATABASE_ERRORS: tuple[type[Exception], ...] = (LedgerError, QueueError)


class ExitCode(enum.IntEnum):
    """`seer`'s exit status (`seer status` and `monitor-storage` use worker's Health)."""

    OK = 0
    FAILED = 1  # the action failed or found nothing
    USAGE = 2  # bad usage, input or settings
    # supervisorctl's own codes (4.x), so that runbooks treat `seer supervisor` alike.
    NOT_RUNNING = 3
    UNREACHABLE = 4
    INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it


class UserError(Exception):
    """A mistake of the caller's: printed as one line, exit 2, no traceback."""


class Failure(Exception):
    """The action could not be done (not found, unreachable): one line, exit 1."""


Command = Callable[[argparse.Namespace], int]


class AddCommand(Protocol):
    """Adds a top-level command whose parser's description is its help; returns the parser."""

    def __call__(
        self, name: str, func: Command, help: str, **kw: Any
    ) -> argparse.ArgumentParser: ...


class Parser(argparse.ArgumentParser):
    """Every level of `seer`'s parsers: a usage error is one line and exit 2, as for every
    other mistake of the caller's."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {output.printable(message)} (see --help)\n")


# What the running command opened, closed when it ends (`main`): a command run in-process (the
# tests, the console's actions) must not leave a pool of database connections behind, nor a
# SQLite connection that checkpoints into the file whenever it is collected.
_OPENED: list[Runtime | Ledger] = []
_Opened = TypeVar("_Opened", Runtime, Ledger)


def opened(thing: _Opened) -> _Opened:
    """Registers a runtime or ledger for closing when the command ends; returns it."""
    _OPENED.append(thing)
    return thing


def close_opened() -> None:
    while _OPENED:
        _OPENED.pop().close()


def open_runtime() -> Runtime:
    return opened(Runtime.open())


def supervisor_runtime() -> Runtime:
    """For the commands that talk only to supervisord: they work whatever the schema (after a
    rollback the operator must still be able to stop, start and remove the workers)."""
    return opened(Runtime.open(check_schema=False))


# Past any list an operator reads, and within SQLite's 64-bit integers.
MAX_COUNT = 1_000_000


def positive_int(text: str) -> int:
    """An argparse type: a whole number from 1 to MAX_COUNT."""
    try:
        value = int(text) if len(text) <= 20 else 0
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_COUNT:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from 1 to {MAX_COUNT:,}, not {output.one_line(text, 40)!r}"
        )
    return value


def duration_arg(text: str, option: str = "--older-than") -> float:
    """A duration option's value in seconds ("90s", "12h", "7d"); a bad one is a UserError."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UserError(f"{option} {text!r} is not {exc}") from None


def confirm(question: str, assume_yes: bool) -> bool:
    """Asks at the terminal; without one, refuses (a script must say --yes)."""
    if assume_yes:
        return True
    if not sys.stdin.isatty():
        raise UserError(f"{question} Refusing without a terminal to ask: pass --yes")
    answer = input(f"{question} [y/N] ").strip().lower()
    return answer in ("y", "yes")


def warn(text: str) -> None:
    print(f"seer: warning: {text}", file=sys.stderr)


def error(text: object) -> None:
    """One line on stderr, whatever the text holds (no terminal escapes get through)."""
    print(f"seer: {output.printable(text)}", file=sys.stderr)


def large_blobs_place(settings: Settings) -> str:
    """Where the blobs above the ledger's threshold are, as the CAS commands say it."""
    if settings.cas_url:
        return f"objects of {settings.cas_url}"
    return "files under orchestration/cas"
