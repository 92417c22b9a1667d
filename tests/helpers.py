"""Shared test helpers: wait by polling with a deadline, never by a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(
    predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition", step=0.02
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def parcel(agent: str = "agent-1", n: int = 0, attachment: str | None = None) -> dict:
    body = {
        "to_agent_id": agent,
        "task_id": f"task-{n}",
        "stream": "command.delegation",
        "type": "pm.task.created",
        "envelope": {"body": f"parcel {n}", "metadata": {"n": n}},
    }
    if attachment is not None:
        body["attachments"] = {"notes.txt": {"content": attachment, "mime_type": "text/plain"}}
    return body
