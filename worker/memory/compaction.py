"""Memory compaction: expired ephemeral keys removed agent by agent, in short transactions.

Each write transaction deletes at most BATCH keys of one agent (contiguous on disk, since the
table is clustered by agent and key) and ends within TXN_BUDGET, so parcel delivery keeps
getting the write lock between them. Every run is recorded, and logged as one line to
logs/orchestration.log before it is recorded as finished.

One run at a time, cluster-wide: a run holds a claim in the `control` table (LEASE_KEY), renewed
as it goes; a run asked for meanwhile is not started ('skipped', not recorded). A claim not
renewed for LEASE seconds, or held by a dead process on this host, is taken over, and its run
marked failed.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
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
# starve parcel delivery. (PostgreSQL's writers do not queue for one lock: there the pause only
# costs the run a little.)
YIELD = 0.015

LEASE_KEY = "compaction:running"
LOCK = "compaction"
LEASE = 60.0  # seconds a run's claim lasts unrenewed: then it is taken for dead
RENEW_EVERY = 2.0


class ClaimLost(Exception):
    """This run's claim was taken over (it went unrenewed for LEASE seconds): it stops."""


@dataclass(frozen=True)
class Run:
    """A compaction run as recorded. status 'skipped' is the one never recorded: another run
    was in progress, and `id` is that run's."""

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
        if self.status == "skipped":
            return f"not started: compaction run {self.id} is in progress"
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


def _delete_expired(
    ledger: Ledger,
    agents: Iterator[str],
    now: float,
    renew: Callable[[], None] | None = None,
) -> dict[str, int]:
    """Deletes expired keys agent after agent; returns keys deleted per agent processed
    (an agent with nothing expired is there with 0). `renew` runs at the start of every
    transaction (the run's claim: it raises to stop the run).

    A transaction takes batches (of one agent or the next) until TXN_BUDGET has passed, then
    the lock is left to others for YIELD: few commits, no long hold, no starved writer.
    """
    deleted: dict[str, int] = {}
    agent = next(agents, None)
    start_key = ""  # where the next batch of this agent's keys begins
    while agent is not None:
        started = time.monotonic()
        with ledger.write():
            if renew is not None:
                renew()
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
        host_id: str | None = None,
    ):
        self.ledger = ledger
        self.log_path = log_path
        self.file_mode = file_mode
        self.base = base
        self.host_id = host_id  # SEER_HOST_ID: whose runs can be judged dead by their pid

    def run(
        self,
        trigger: str,
        agent: str | None = None,
        dry_run: bool = False,
        now: float | None = None,
    ) -> Run:
        """Compacts one agent or all; never raises for a failure: it is recorded as failed."""
        cutoff = self.ledger.now() if now is None else now
        owner = current_owner(self.host_id)
        started = self.ledger.now()
        with self.ledger.write():
            # Look, then claim: on PostgreSQL two runs starting at once (the schedule and an
            # operator, two hosts) would both find no claim without this lock.
            self.ledger.lock(LOCK)
            holder = self._live_claim(started)
            if holder is None:
                self._mark_interrupted(cutoff, keep=None)
                run_id = self.ledger.scalar(
                    "INSERT INTO compaction_runs (trigger, agent_id, dry_run, started_at, "
                    "status, owner) VALUES (?, ?, ?, ?, 'running', ?) RETURNING id",
                    (trigger, agent, int(dry_run), started, owner.token),
                )
                claim = json.dumps({"run": run_id, "owner": owner.token})
                self.ledger.execute(
                    "INSERT INTO control (key, value, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                    "updated_at = excluded.updated_at",
                    (LEASE_KEY, claim, started),
                )
        if holder is not None:
            return self._skipped(holder, trigger, agent, dry_run, started)
        agents_touched = keys = 0
        status, error = "ok", None
        renew = self._renewal(claim)
        try:
            agents = iter([agent]) if agent else _agents(self.ledger)
            if dry_run:
                counts = {}
                for name in agents:
                    counts[name] = count_expired(self.ledger, name, cutoff)
                    renew()
            else:
                counts = _delete_expired(self.ledger, agents, cutoff, renew)
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
            # Only our own claim: one taken over meanwhile is the new run's.
            self.ledger.execute(
                "DELETE FROM control WHERE key = ? AND value = ?", (LEASE_KEY, claim)
            )
        return run

    def _live_claim(self, clock: float) -> dict | None:
        """The claim of the run in progress (run, owner), or None when there is none or its
        holder is dead: a dead pid on this host, or no renewal for LEASE seconds."""
        row = self.ledger.row("SELECT value, updated_at FROM control WHERE key = ?", (LEASE_KEY,))
        if row is None or row["updated_at"] < clock - LEASE:
            return None
        claim = json.loads(row["value"])
        owner = Owner.parse(claim.get("owner") or "")
        if owner is None or is_alive(owner, self.host_id) is False:
            return None
        return claim

    def _renewal(self, claim: str) -> Callable[[], None]:
        """Renews this run's claim, at most every RENEW_EVERY seconds (in the caller's write,
        as a savepoint, or in its own); raises ClaimLost once another run has taken it over."""
        last = [time.monotonic()]

        def renew() -> None:
            if time.monotonic() - last[0] < RENEW_EVERY:
                return
            with self.ledger.write():
                renewed = self.ledger.execute(
                    "UPDATE control SET updated_at = ? WHERE key = ? AND value = ?",
                    (self.ledger.now(), LEASE_KEY, claim),
                ).rowcount
            if not renewed:
                raise ClaimLost(
                    f"another run took over this compaction's claim (not renewed for {LEASE:g}s)"
                )
            last[0] = time.monotonic()

        return renew

    def _skipped(
        self, holder: dict, trigger: str, agent: str | None, dry_run: bool, now: float
    ) -> Run:
        running = Owner.parse(holder.get("owner") or "")
        where = f" on {running.host} (pid {running.pid})" if running else ""
        log.info(
            "compaction (%s) not started: run %s is in progress%s", trigger, holder["run"], where
        )
        return Run(
            id=holder["run"],
            trigger=trigger,
            agent_id=agent,
            dry_run=dry_run,
            started_at=now,
            finished_at=now,
            agents=0,
            keys_deleted=0,
            status="skipped",
            error=f"another compaction is running: run {holder['run']}{where}",
        )

    def _mark_interrupted(self, now: float, keep: int | None) -> int:
        """Inside a write holding LOCK: every 'running' run but `keep` (the live claim's)
        is marked failed. Its claim is gone or dead, so nothing is running it any more."""
        return self.ledger.execute(
            "UPDATE compaction_runs SET status = 'failed', finished_at = ?, "
            "error = 'interrupted: the worker running it died or stopped' "
            "WHERE status = 'running' AND id IS DISTINCT FROM ?",
            (now, keep),
        ).rowcount

    def interrupted(self, now: float | None = None) -> int:
        """Marks runs left 'running' by a worker that died (or stopped renewing its claim)
        as failed; returns how many."""
        clock = self.ledger.now()
        now = clock if now is None else now
        with self.ledger.write():
            self.ledger.lock(LOCK)
            holder = self._live_claim(clock)
            return self._mark_interrupted(now, holder["run"] if holder else None)

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
