"""`seer logs`: the worker's, supervisord's and the orchestration log, tailed and searched."""

from __future__ import annotations

from typing import Any

from seer_console.cli.common import AddCommand


def register(sub: Any, add: AddCommand) -> None:
    """Not yet: filled in by the logs work of issue 14."""
