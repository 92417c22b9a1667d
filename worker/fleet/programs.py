"""What is known of supervisord without its client: the consumers' program names and the
client's error.

`seer worker` needs both (the parent check, the CLI's one-line errors) and nothing else of
worker.fleet.supervision, whose xmlrpc, http.client and supervisor modules cost every consumer's
start some 40 ms. supervision re-exports them, so `supervision.PROGRAMS` and
`supervision.SupervisorError` are these.
"""

from __future__ import annotations

PROGRAMS = ("seer-postmaster", "seer-scheduler")


class SupervisorError(RuntimeError):
    """supervisord cannot be reached or refused; the message is one line. `fault` is the
    refusal's code (supervisor.xmlrpc.Faults), None for anything else."""

    def __init__(self, message: str, *, fault: int | None = None, unreachable: bool = False):
        super().__init__(message)
        self.fault = fault
        self.unreachable = unreachable
