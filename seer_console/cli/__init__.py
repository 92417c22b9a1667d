"""`seer`: every operator action from the command line, for runbooks, cron and scripts.

Each command is a thin caller of a service function in worker/; each command group is a module
of this package with a `register(sub, add)`, and what they share is in `common`. Exit status
(common.ExitCode): 0 done, 1 the action failed or found nothing, 2 bad usage, input or settings
(`seer status`, `monitor-storage`: worker's Health, 0 OK, 1 warning, 2 critical, 3 unknown, as
monitoring plugins expect).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from seer_console.cli.common import (
    DATABASE_ERRORS,
    Command,
    ExitCode,
    Failure,
    Parser,
    UserError,
    close_opened,
    error,
)
from worker.cas.store import CasError
from worker.fleet.programs import SupervisorError
from worker.layout import NotInitialised, UnsafeEntry
from worker.ledger import migrations
from worker.ledger.errors import LedgerUnavailable
from worker.settings import SettingsError

__all__ = ["ExitCode", "Failure", "UserError", "build_parser", "main"]

# The modules of this package with commands, in `seer --help`'s order; imported when the parser
# is built.
GROUPS = (
    "setup",
    "status",
    "parcels",
    "inbox",
    "failed",
    "memory",
    "config",
    "monitor",
    "cas",
    "supervisor",
    "backup",
    "backend",
    "queue",
    "logs",
)
# Commands whose module is the only one imported when they come first: `seer worker` is the
# consumer supervisord starts, and its start pays for no other command's imports.
ALONE = {"worker": "worker"}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Every command's parser; with `only` (a module of GROUPS or ALONE), that module's
    commands alone."""
    parser = Parser(
        prog="seer",
        description="Operate Seer Ops: the Postmaster worker, its queue, the CAS and the inbox.",
        epilog="Settings come from the environment and .env (see config/seer.env.example).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    def add(name: str, func: Command, help: str, **kw: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, **kw)
        p.set_defaults(func=func)
        return p

    for name in GROUPS if only is None else (only,):
        importlib.import_module(f"seer_console.cli.{name}").register(sub, add)
    return parser


def _undecodable(argv: Sequence[str]) -> str | None:
    """The first argument that was not valid UTF-8 (Python keeps such bytes as surrogates)."""
    for arg in argv:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return arg
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    alone = ALONE.get(argv[0]) if argv else None
    parser = build_parser() if alone is None else build_parser(alone)
    bad = _undecodable(argv)
    if bad is not None:
        shown = bad.encode("utf-8", "backslashreplace").decode("ascii", "replace")
        print(
            f"seer: argument {shown[:60]!r} is not valid UTF-8: ids, names and values are text",
            file=sys.stderr,
        )
        return ExitCode.USAGE
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (UserError, SettingsError, NotInitialised, migrations.SchemaMismatch) as exc:
        error(exc)
        return ExitCode.USAGE
    except (Failure, CasError, UnsafeEntry, SupervisorError, LedgerUnavailable) as exc:
        error(exc)
        return ExitCode.FAILED
    except NotImplementedError as exc:
        error(exc)
        return ExitCode.USAGE
    except DATABASE_ERRORS as exc:
        error(f"the ledger database cannot be used: {exc}")
        return ExitCode.FAILED
    except KeyboardInterrupt:
        print("seer: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        return ExitCode.OK
    finally:
        close_opened()


if __name__ == "__main__":
    sys.exit(main())
