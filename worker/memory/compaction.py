"""Memory compaction: expired ephemeral keys removed agent by agent, in short transactions.

Each write transaction deletes at most BATCH keys of one agent (contiguous on disk, since the
table is clustered by agent and key) and ends within TXN_BUDGET, so parcel delivery keeps
getting the write lock between them. Every run is recorded, and logged as one line to
logs/orchestration.log before it is recorded as finished.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from worker.files import append_json_line
from worker.identity import Owner, current_owner, is_alive
from worker.ledger import Ledger

log = logging.getLogger("seer.compaction")

BATCH = 2000
TXN_BUDGET = 0.05  # seconds of deleting per write transaction
# SQLite hands the write lock to whoever asks first after a commit, and a waiting connection
# polls with growing sleeps: without a pause, compaction would take the lock straight back and
# starve parcel delivery.
YIELD = 0.015


@dataclass(frozen=True)
class Run:
    id: int
    trigger: str
    agent_id: str | None
    dry_run: bool
    started_at: float
    finished_at: float | None
    agents: int
    keys_deleted: int
    status: str
    error: str | None

    @property
    def duration(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at

    def as_dict(self) -> dict:
        return {**asdict(self), "duration": self.duration}

    def summary(self) -> str:
        """`deleted 3 expired keys from 2 agents`: what the CLI, the console and the log say."""
        verb = "would delete" if self.dry_run else "deleted"
        keys = f"{self.keys_deleted} expired key{'' if self.keys_deleted == 1 else 's'}"
        if self.agent_id is not None:
            return f"{verb} {keys} (agent {self.agent_id})"
        return f"{verb} {keys} from {self.agents} agent{'' if self.agents == 1 else 's'}"


def _agents(ledger: Ledger, after: str | None = None) -> Iterator[str]:
    # One index seek per agent, not a scan of every key.
    current = after
    while True:
        if current is None:
            found = ledger.scalar("SELECT agent_id FROM memory ORDER BY agent_id LIMIT 1")
        else:
            found = ledger.scalar(
                "SELECT agent_id FROM memory WHERE agent_id > ? ORDER BY agent_id LIMIT 1",
                (current,),
            )
        if found is None:
            return
        yield found
        current = found


def count_expired(ledger: Ledger, agent: str, now: float) -> int:
    return ledger.scalar(
        "SELECT count(*) FROM memory WHERE agent_id = ? AND expires_at <= ?", (agent, now)
    )


def _delete_expired(ledger: Ledger, agents: Iterator[str], now: float) -> dict[str, int]:
    """Deletes expired keys agent after agent; returns keys deleted per agent processed
    (an agent with nothing expired is there with 0).

    A transaction takes batches (of one agent or the next) until TXN_BUDGET has passed, then
    the lock is left to others for YIELD: few commits, no long hold, no starved writer.
    """
    deleted: dict[str, int] = {}
    agent = next(agents, None)
    start_key = ""  # where the next batch of this agent's keys begins
    while agent is not None:
        started = time.monotonic()
        with ledger.write():
            while agent is not None and time.monotonic() - started < TXN_BUDGET:
                # A plain range delete: with `key IN (SELECT … LIMIT n)` SQLite does the
                # lookups twice. The range ends BATCH keys on, or at the agent's last key.
                end_key = ledger.scalar(
                    "SELECT key FROM memory WHERE agent_id = ? AND key >= ? ORDER BY key "
                    "LIMIT 1 OFFSET ?",
                    (agent, start_key, BATCH),
                )
                n = ledger.execute(
                    "DELETE FROM memory WHERE agent_id = ? AND key >= ? AND expires_at <= ?"
                    + ("" if end_key is None else " AND key < ?"),
                    (agent, start_key, now) + (() if end_key is None else (end_key,)),
                ).rowcount
                deleted[agent] = deleted.get(agent, 0) + n
                if end_key is None:
                    agent, start_key = next(agents, None), ""
                else:
                    start_key = end_key
        if agent is not None:
            time.sleep(YIELD)
    return deleted


def compact(ledger: Ledger, agent: str, now: float | None = None) -> int:
    """Deletes the agent's expired ephemeral keys; returns how many (the task card's compact)."""
    deleted = _delete_expired(ledger, iter([agent]), ledger.now() if now is None else now)
    return deleted.get(agent, 0)


class Compactor:
    """Runs and records compactions; `log_path` receives one line per run, written following
    no link below `base` (the storage root; by default the log's directory)."""

    def __init__(
        self,
        ledger: Ledger,
        log_path: Path | None = None,
        file_mode: int = 0o660,
        *,
        base: Path | None = None,
    ):
        self.ledger = ledger
        self.log_path = log_path
        self.file_mode = file_mode
        self.base = base

    def run(
        self,
        trigger: str,
        agent: str | None = None,
        dry_run: bool = False,
        now: float | None = None,
    ) -> Run:
        """Compacts one agent or all; never raises for a failure: it is recorded as failed."""
        cutoff = self.ledger.now() if now is None else now
        self.interrupted(now=cutoff)
        owner = current_owner()
        started = self.ledger.now()
        with self.ledger.write():
            run_id = self.ledger.scalar(
                "INSERT INTO compaction_runs (trigger, agent_id, dry_run, started_at, status, "
                "owner) VALUES (?, ?, ?, ?, 'running', ?) RETURNING id",
                (trigger, agent, int(dry_run), started, owner.token),
            )
        agents_touched = keys = 0
        status, error = "ok", None
        try:
            agents = iter([agent]) if agent else _agents(self.ledger)
            if dry_run:
                counts = {name: count_expired(self.ledger, name, cutoff) for name in agents}
            else:
                counts = _delete_expired(self.ledger, agents, cutoff)
            # Agents processed, as the task card counts them: every agent compacted, also
            # those with nothing expired (an --agent run processed one agent, not none).
            agents_touched = len(counts)
            keys = sum(counts.values())
        except Exception as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"[:2000]
            log.exception("memory compaction failed")
        run = Run(
            id=run_id,
            trigger=trigger,
            agent_id=agent,
            dry_run=dry_run,
            started_at=started,
            finished_at=self.ledger.now(),
            agents=agents_touched,
            keys_deleted=keys,
            status=status,
            error=error,
        )
        # The line first: whoever reads the run as finished in the ledger finds its line too.
        # A log that cannot be written must not leave the run 'running' for good.
        try:
            self._log(run)
        except OSError as exc:
            # One line, no traceback: a refused link or a full disk, said in the worker's log.
            log.error("cannot write the compaction line to %s: %s", self.log_path, exc)
        with self.ledger.write():
            self.ledger.execute(
                "UPDATE compaction_runs SET finished_at = ?, agents = ?, keys_deleted = ?, "
                "status = ?, error = ? WHERE id = ?",
                (run.finished_at, agents_touched, keys, status, error, run_id),
            )
        return run

    def interrupted(self, now: float | None = None) -> int:
        """Marks runs left 'running' by a worker that died as failed; returns how many."""
        now = self.ledger.now() if now is None else now
        marked = 0
        for row in self.ledger.rows(
            "SELECT id, owner FROM compaction_runs WHERE status = 'running'"
        ):
            owner = Owner.parse(row["owner"] or "")
            if owner is None or is_alive(owner) is False:
                with self.ledger.write():
                    marked += self.ledger.execute(
                        "UPDATE compaction_runs SET status = 'failed', finished_at = ?, "
                        "error = 'interrupted: the worker running it died' "
                        "WHERE id = ? AND status = 'running'",
                        (now, row["id"]),
                    ).rowcount
        return marked

    def get(self, run_id: int) -> Run:
        row = self.ledger.row(f"SELECT {_COLUMNS} FROM compaction_runs WHERE id = ?", (run_id,))
        if row is None:
            raise LookupError(f"no compaction run {run_id}")
        return _run(row)

    def recent(self, limit: int = 20) -> list[Run]:
        rows = self.ledger.rows(
            f"SELECT {_COLUMNS} FROM compaction_runs ORDER BY started_at DESC, id DESC LIMIT ?",
            (limit,),
        )
        return [_run(r) for r in rows]

    def _log(self, run: Run) -> None:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(run.finished_at)),
            "event": "memory.compaction",
            "status": run.status,
            "trigger": run.trigger,
            "dry_run": run.dry_run,
            "agent": run.agent_id,
            "agents_processed": run.agents,
            "keys_deleted": run.keys_deleted,
            "duration_s": round(run.duration or 0.0, 3),
            "error": run.error,
        }
        log.info("compaction %s: %s in %.2fs", run.status, run.summary(), run.duration or 0.0)
        if self.log_path is None:
            return
        append_json_line(self.log_path, line, self.file_mode, base=self.base)


def failures_per_day(ledger: Ledger, now: float | None = None) -> int:
    """Failed runs in the last 24 hours: the rule 'compaction failures > 3 per day' reads it."""
    now = ledger.now() if now is None else now
    return ledger.scalar(
        "SELECT count(*) FROM compaction_runs WHERE status = 'failed' AND started_at >= ?",
        (now - 86400,),
    )


_COLUMNS = (
    "id, trigger, agent_id, dry_run, started_at, finished_at, agents, keys_deleted, status, error"
)


def _run(row: dict) -> Run:
    return Run(**{**row, "dry_run": bool(row["dry_run"])})
