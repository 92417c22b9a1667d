"""Which consumers are running: each registers itself when it starts and keeps a heartbeat.

A consumer process's entry in the `control` table (`consumer:QUEUE:HOST:PID`) carries its
owner token and, from each beat, its own CPU use and memory (a process on another host cannot
be measured from here); its `updated_at` is its last heartbeat, on the ledger's clock,
refreshed by a daemon thread every few seconds. A consumer is dead when its pid is (on this
host), or when its heartbeat is older than SEER_HEARTBEAT_TIMEOUT (on any host: a stopped
process, a host gone or cut off); the reaper then gives its parcels back.

Each (queue, host) also has a record of its runs (`runs:QUEUE:HOST`): how often it started,
when it restarted without having been stopped on purpose (the last KEEP_RESTARTS times), and
whether its last process was stopped on purpose. It outlives the entries, so that a consumer
that died and never came back is still expected (`fleet`, the consumer_down rule) until
FORGET_AFTER.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil

from worker.identity import Owner, current_owner, host_name, is_alive
from worker.ledger import Ledger
from worker.said_once import SaidOnce

log = logging.getLogger("seer.consumers")

PREFIX = "consumer:"
# A stat of one blob every this many heartbeats (every 30 s at most, at the 5 s interval).
CAS_CHECK_EVERY = 6
STARTS = "starts:"
RUNS = "runs:"
# Restart times kept per (queue, host): SEER_RESTART_ALERT_COUNT is at most one less.
KEEP_RESTARTS = 100
DEFAULT_TIMEOUT = 30.0  # SEER_HEARTBEAT_TIMEOUT's default
# An entry whose heartbeat stopped this long ago is forgotten (a host taken out of service),
# so that `seer status` does not list it for ever.
FORGET_AFTER = 86400.0


def heartbeat_interval(timeout: float) -> float:
    """Seconds between two heartbeats: six a timeout, between 1 and 5 s, so that a beat or
    two lost to a busy ledger never make a live consumer look dead."""
    return min(5.0, max(1.0, timeout / 6))


@dataclass(frozen=True)
class ConsumerInfo:
    queue: str
    host: str
    pid: int
    started: float
    alive: bool | None  # by its pid; None: on another host, cannot tell from here
    owner: Owner | None = None  # pid and start time: never mistaken for a reused pid
    heartbeat: float | None = None  # its last heartbeat, on the ledger's clock
    heartbeat_age: float | None = None  # seconds since then, when it was read
    stale: bool = False  # silent for longer than SEER_HEARTBEAT_TIMEOUT: dead, whatever its pid
    cas_root: str | None = None  # the CAS directory it stores blobs in, as its host resolves it
    cas_missing: str | None = None  # a recorded blob its host could not find there, if any
    cpu_percent: float | None = None  # its CPU use between its last two beats, as it measured
    rss: int | None = None  # its resident memory at its last beat, in bytes


def _key(queue: str, owner: Owner) -> str:
    return f"{PREFIX}{queue}:{owner.host}:{owner.pid}"


def _put(ledger: Ledger, key: str, value: dict[str, Any], now: float) -> None:
    ledger.execute(
        "INSERT INTO control (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) "
        "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (key, json.dumps(value), now),
    )


@dataclass(frozen=True)
class Registration:
    """A consumer process's entry: its key and what it holds."""

    key: str
    value: dict[str, Any]


def register(
    ledger: Ledger,
    queue: str,
    now: float | None = None,
    *,
    host_id: str | None = None,
    cas_root: str | None = None,
) -> Registration | None:
    """Records this consumer process (its heartbeat begins now) and counts a start; None when
    one of its threads has already registered it."""
    now = ledger.now() if now is None else now
    owner = current_owner(host_id)
    key = _key(queue, owner)
    value: dict[str, Any] = {"queue": queue, "token": owner.token, "started": now}
    if cas_root is not None:
        value["cas_root"] = cas_root
    with ledger.write():
        # The start-up hook runs once per worker thread (the scheduler has two): only the
        # first thread of a process registers it and counts a start. The lock orders them
        # where writers do not exclude each other (PostgreSQL).
        ledger.lock(key)
        mine = ledger.row("SELECT value FROM control WHERE key = ?", (key,))
        if mine:
            old = Owner.parse(json.loads(mine["value"])["token"])
            if old and old.process_token == owner.process_token:
                return None
        # Entries of dead consumers on this host are dropped as a new one registers; their
        # (queue, host) records keep when they were last heard from.
        for row in ledger.rows(
            "SELECT key, value, updated_at FROM control WHERE key LIKE ?", (PREFIX + "%",)
        ):
            found = json.loads(row["value"])
            old = Owner.parse(found["token"])
            if old and is_alive(old, host_id) is False:
                ledger.execute("DELETE FROM control WHERE key = ?", (row["key"],))
                _note_lost(ledger, found["queue"], old.host, float(row["updated_at"]), now)
        _put(ledger, key, value, now)
        _note_start(ledger, queue, owner.host, now)
        # How often each queue's consumer process started: restarts are starts after the first.
        ledger.execute(
            "INSERT INTO control (key, value, updated_at) VALUES (?, '1', ?) "
            # `control.value`: PostgreSQL finds a bare `value` ambiguous (control or excluded).
            "ON CONFLICT (key) DO UPDATE SET value = CAST(control.value AS INTEGER) + 1, "
            "updated_at = ?",
            (f"{STARTS}{queue}", now, now),
        )
    return Registration(key, value)


def _run_key(queue: str, host: str) -> str:
    return f"{RUNS}{queue}:{host}"


def _record(ledger: Ledger, queue: str, host: str) -> dict[str, Any] | None:
    row = ledger.row("SELECT value FROM control WHERE key = ?", (_run_key(queue, host),))
    return json.loads(row["value"]) if row else None


def _note_start(ledger: Ledger, queue: str, host: str, now: float) -> None:
    """A start of the (queue, host): a restart unless its last process stopped on purpose
    (or there was none)."""
    record = _record(ledger, queue, host)
    planned = record is None or record.get("stopped") is not None
    record = record or {}
    recent = list(record.get("recent", ()))
    if not planned:
        recent = [*recent, now][-KEEP_RESTARTS:]
    value = {
        "starts": int(record.get("starts", 0)) + 1,
        "restarts": int(record.get("restarts", 0)) + (0 if planned else 1),
        "recent": recent,
        "stopped": None,
        "lost": None,
    }
    _put(ledger, _run_key(queue, host), value, now)


def _note_lost(ledger: Ledger, queue: str, host: str, heard: float, now: float) -> None:
    record = _record(ledger, queue, host)
    if record is not None and record.get("stopped") is None:
        record["lost"] = max(heard, record.get("lost") or 0.0)
        _put(ledger, _run_key(queue, host), record, now)


def beat(
    ledger: Ledger,
    registration: Registration,
    now: float | None = None,
    changed: bool = False,
    usage: tuple[float | None, int] | None = None,
) -> bool:
    """Refreshes the heartbeat; an entry that is gone (dropped by a peer that took this
    consumer for dead, or forgotten) is written again, as registered. False when it had to
    be. `changed`: the registration's value changed too (what its CAS check found); `usage`:
    the process's CPU percent since its last beat and its resident memory, which the entry
    carries from then on."""
    now = ledger.now() if now is None else now
    value = registration.value
    if usage is not None:
        value = {**value, "cpu": usage[0], "rss": usage[1]}
    with ledger.write():
        if changed or usage is not None:
            if ledger.execute(
                "UPDATE control SET value = ?, updated_at = ? WHERE key = ?",
                (json.dumps(value), now, registration.key),
            ).rowcount:
                return True
        elif ledger.execute(
            "UPDATE control SET updated_at = ? WHERE key = ?", (now, registration.key)
        ).rowcount:
            return True
        _put(ledger, registration.key, registration.value, now)
    return False


def deregister(ledger: Ledger, registration: Registration, now: float | None = None) -> None:
    """Removes this consumer process's entry on a graceful stop: stopped on purpose (by an
    operator, a rollback, supervisord's shutdown), it is neither a consumer that runs nor one
    taken for dead, and its (queue, host) is no longer expected to run (no consumer_down
    alert) until a consumer of it starts again."""
    now = ledger.now() if now is None else now
    queue = registration.value["queue"]
    owner = Owner.parse(registration.value["token"])
    host = owner.host if owner else host_name()
    with ledger.write():
        ledger.execute("DELETE FROM control WHERE key = ?", (registration.key,))
        record = _record(ledger, queue, host) or {"starts": 1, "restarts": 0, "recent": []}
        record["stopped"] = now
        _put(ledger, _run_key(queue, host), record, now)


class _Meter:
    """This process's CPU use between two reads and its resident memory: two cheap system
    calls a beat."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._last = self._used()

    def _used(self) -> tuple[float, float]:
        times = self._process.cpu_times()
        return time.monotonic(), times.user + times.system

    def read(self) -> tuple[float | None, int] | None:
        try:
            at, used = self._used()
            rss = int(self._process.memory_info().rss)
        except psutil.Error:
            return None
        last_at, last_used = self._last
        self._last = (at, used)
        cpu = round(100.0 * (used - last_used) / (at - last_at), 1) if at > last_at else None
        return cpu, rss


class Heartbeat:
    """The daemon thread that keeps one consumer process's heartbeat (its own ledger
    connection: the ledger opens one per thread)."""

    def __init__(
        self,
        ledger: Ledger,
        registration: Registration,
        interval: float,
        cas_check: Callable[[], str | None] | None = None,
    ) -> None:
        self.ledger = ledger
        self.registration = registration
        self.interval = interval
        self.cas_check = cas_check
        self._beats = 0
        self._checker: threading.Thread | None = None
        self._look_wanted = threading.Event()
        self._found: tuple[str | None] | None = None
        self._meter = _Meter()
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat {registration.key}", daemon=True
        )

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stopped.set()
        self._look_wanted.set()  # the checker, if waiting, ends
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _check_cas(self) -> bool:
        """Every CAS_CHECK_EVERY beats, looks for the newest recorded blob in this host's CAS;
        True when what it found differs from what the entry says.

        The look runs on a thread of its own and its answer is taken at a later beat: on an
        object store that is down it can take as long as the client's retries and timeouts,
        and a heartbeat that waited for it would have this consumer taken for dead. One
        thread for the heartbeat's life, not one a look: on PostgreSQL each thread that reads
        the ledger holds a connection of the pool until it ends."""
        self._beats += 1
        if self.cas_check is None:
            return False
        if (self._beats - 1) % CAS_CHECK_EVERY == 0 and not self._look_wanted.is_set():
            if self._checker is None:
                self._checker = threading.Thread(
                    target=self._looking, name=f"CAS check {self.registration.key}", daemon=True
                )
                self._checker.start()
            self._look_wanted.set()
        found, self._found = self._found, None
        if found is None:
            return False
        missing = found[0]
        value = self.registration.value
        if value.get("cas_missing") == missing:
            return False
        if missing:
            log.warning("the newest recorded blob %s is not in this host's CAS", missing[:12])
        value["cas_missing"] = missing
        return True

    def _looking(self) -> None:
        assert self.cas_check is not None
        # Said once, not at every look: the Postmaster's backoff says the rest.
        said = SaidOnce(log, "CAS check failed, retrying", "CAS check works again")
        while self._look_wanted.wait() and not self._stopped.is_set():
            try:
                self._found = (self.cas_check(),)
            except Exception as exc:  # an unreadable store is its own report, not a death
                said.failed(exc)
            else:
                said.worked()
            self._look_wanted.clear()

    def _run(self) -> None:
        said = SaidOnce(log, "heartbeat not recorded, retrying", "heartbeat recorded again")
        try:
            while not self._stopped.wait(self.interval):
                try:
                    changed = self._check_cas()
                    usage = self._meter.read()
                    if not beat(self.ledger, self.registration, changed=changed, usage=usage):
                        log.warning(
                            "heartbeat: %s was gone from the ledger (taken for dead?); "
                            "registered again",
                            self.registration.key,
                        )
                except Exception as exc:  # the ledger out of reach: said once, then retried
                    said.failed(exc)
                    continue
                said.worked()
        finally:
            self.ledger.close()


def start(
    ledger: Ledger,
    queue: str,
    *,
    host_id: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    cas_root: str | None = None,
    cas_check: Callable[[], str | None] | None = None,
) -> Heartbeat | None:
    """Registers this consumer process and starts its heartbeat; None when one of its threads
    has already done so (the start-up hook runs once per worker thread). `cas_root` and
    `cas_check` (a recorded blob missing from this host's CAS, or None) let `seer status` see
    hosts that do not share one CAS directory."""
    registration = register(ledger, queue, host_id=host_id, cas_root=cas_root)
    if registration is None:
        return None
    interval = heartbeat_interval(timeout)
    return Heartbeat(ledger, registration, interval, cas_check).start()


def _entries(ledger: Ledger) -> list[tuple[dict[str, Any], Owner, float]]:
    found = []
    for row in ledger.rows(
        "SELECT value, updated_at FROM control WHERE key LIKE ? ORDER BY key", (PREFIX + "%",)
    ):
        value = json.loads(row["value"])
        owner = Owner.parse(value["token"])
        if owner is not None:
            found.append((value, owner, float(row["updated_at"])))
    return found


def last_heartbeats(ledger: Ledger) -> dict[str, float]:
    """Each registered consumer process's last heartbeat, by its owner's process token."""
    return {owner.process_token: at for _, owner, at in _entries(ledger)}


def consumers(
    ledger: Ledger,
    *,
    host_id: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    now: float | None = None,
) -> list[ConsumerInfo]:
    """Every registered consumer, of every host; `host_id` is this host's SEER_HOST_ID (its
    consumers are also checked by pid), `timeout` SEER_HEARTBEAT_TIMEOUT."""
    now = ledger.now() if now is None else now
    host = host_name(host_id)
    found = []
    for value, owner, at in _entries(ledger):
        age = max(0.0, now - at)
        found.append(
            ConsumerInfo(
                value["queue"],
                owner.host,
                owner.pid,
                value["started"],
                is_alive(owner, host),
                owner,
                at,
                age,
                age > timeout,
                value.get("cas_root"),
                value.get("cas_missing"),
                value.get("cpu"),
                value.get("rss"),
            )
        )
    return found


def cas_sharing_problems(found: list[ConsumerInfo]) -> list[str]:
    """What the live consumers' reports say of their CAS: every host must store blobs in one
    shared directory (docs/SCALING.md). Two roots, or a recorded blob a host cannot find."""
    live = [c for c in found if is_up(c) and c.cas_root]
    problems = []
    roots = sorted({(c.cas_root or "", c.host) for c in live})
    if len({root for root, _ in roots}) > 1:
        shown = ", ".join(f"{host} {root}" for root, host in roots)
        problems.append(f"hosts store blobs in different CAS directories: {shown}")
    for c in live:
        if c.cas_missing:
            problems.append(
                f"{c.host} cannot find blob {c.cas_missing[:12]}… that the ledger records, in "
                f"{c.cas_root}: is the shared CAS directory mounted there?"
            )
    return sorted(set(problems))


def is_up(consumer: ConsumerInfo) -> bool:
    """What "the consumer is up" means everywhere (status, metrics, the exporter, the console):
    not dead by its pid (on this host) and heard from within SEER_HEARTBEAT_TIMEOUT. One on
    another host cannot be checked by pid from here: its heartbeat tells."""
    return consumer.alive is not False and not consumer.stale


def forget(ledger: Ledger, older_than: float = FORGET_AFTER, now: float | None = None) -> int:
    """Drops the entries of consumers silent for longer than `older_than` seconds, and the
    records of (queue, host)s with no entry left that changed no later (a host taken out of
    service: no longer expected to run)."""
    now = ledger.now() if now is None else now
    silent = "FROM control WHERE key LIKE ? AND updated_at < ?"
    params = (PREFIX + "%", now - older_than)
    # `runs:QUEUE:HOST` and its consumers' `consumer:QUEUE:HOST:PID`.
    unused = (
        "FROM control WHERE key LIKE ? AND updated_at < ? AND NOT EXISTS (SELECT 1 FROM "
        f"control AS c WHERE c.key LIKE ? || substr(control.key, {len(RUNS) + 1}) || ?)"
    )
    unused_params = (RUNS + "%", now - older_than, PREFIX, ":%")
    # The reaper asks every few seconds: a write only when there is something to drop.
    if not ledger.scalar(f"SELECT 1 {silent} LIMIT 1", params) and not ledger.scalar(
        f"SELECT 1 {unused} LIMIT 1", unused_params
    ):
        return 0
    with ledger.write():
        dropped = ledger.execute(f"DELETE {silent}", params).rowcount
        ledger.execute(f"DELETE {unused}", unused_params)
        return dropped


def starts(ledger: Ledger) -> dict[str, int]:
    """How many consumer processes of each queue have started since the storage root was made."""
    return {
        r["key"][len(STARTS) :]: int(r["value"])
        for r in ledger.rows("SELECT key, value FROM control WHERE key LIKE ?", (STARTS + "%",))
    }


def restarts(ledger: Ledger) -> dict[str, int]:
    """Each queue's consumer restarts: process starts after the first."""
    return {queue: max(0, n - 1) for queue, n in starts(ledger).items()}


@dataclass(frozen=True)
class HostConsumer:
    """One consumer of the fleet, as the Worker pane, `seer status` and the alert rules see
    it: a live process, or a (queue, host) with none running (its last one stale or dead, or
    stopped on purpose). CPU and memory are what the process measured of itself at its last
    beat (one on another host cannot be measured from here)."""

    queue: str
    host: str
    # RUNNING; STALE: silent past SEER_HEARTBEAT_TIMEOUT; GONE: dead by its pid, or no process
    # left; STOPPED: its last process stopped on purpose (not expected to run).
    state: str
    local: bool  # on this host
    pid: int | None = None
    heartbeat_age: float | None = None  # seconds since it was last heard from
    cpu_percent: float | None = None
    rss: int | None = None
    restarts: int = 0  # starts after the first, on purpose or not
    restart_times: tuple[float, ...] = ()  # the last KEEP_RESTARTS starts not on purpose
    last_heard: float | None = None  # its last heartbeat (or its stop), the ledger's clock

    @property
    def running(self) -> bool:
        return self.state == "RUNNING"

    @property
    def expected(self) -> bool:
        """Expected to run: registered and not stopped on purpose since (FORGET_AFTER after
        it was last heard from, it is forgotten)."""
        return self.state != "STOPPED"

    def restarts_since(self, since: float) -> int:
        """Its restarts not on purpose (crashes, kills, a lost host) after `since`."""
        return sum(1 for at in self.restart_times if at > since)


def fleet(
    ledger: Ledger,
    *,
    host_id: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    now: float | None = None,
) -> tuple[HostConsumer, ...]:
    """Every host's consumers: each live process, and each (queue, host) registered within
    FORGET_AFTER that has none; this host's first. Two reads of the control table's
    consumer and run entries (a few a host)."""
    now = ledger.now() if now is None else now
    here = host_name(host_id)
    entries = consumers(ledger, host_id=host_id, timeout=timeout, now=now)
    records: dict[tuple[str, str], tuple[dict[str, Any], float]] = {}
    for row in ledger.rows(
        "SELECT key, value, updated_at FROM control WHERE key LIKE ?", (RUNS + "%",)
    ):
        queue, _, host = row["key"][len(RUNS) :].partition(":")
        records[(queue, host)] = (json.loads(row["value"]), float(row["updated_at"]))
    found = []
    for queue, host in set(records) | {(c.queue, c.host) for c in entries}:
        record, changed = records.get((queue, host), ({}, now))
        common: dict[str, Any] = {
            "queue": queue,
            "host": host,
            "local": host == here,
            "restarts": max(0, int(record.get("starts", 0)) - 1),
            "restart_times": tuple(record.get("recent", ())),
        }
        mine = [c for c in entries if (c.queue, c.host) == (queue, host)]
        up = [c for c in mine if is_up(c)]
        for c in up:
            found.append(
                HostConsumer(
                    state="RUNNING",
                    pid=c.pid,
                    heartbeat_age=c.heartbeat_age,
                    cpu_percent=c.cpu_percent,
                    rss=c.rss,
                    last_heard=c.heartbeat,
                    **common,
                )
            )
        if up:
            continue
        if mine:
            last = max(mine, key=lambda c: c.heartbeat or 0.0)
            state = "GONE" if last.alive is False else "STALE"
            found.append(
                HostConsumer(
                    state=state,
                    pid=last.pid,
                    heartbeat_age=last.heartbeat_age,
                    last_heard=last.heartbeat,
                    **common,
                )
            )
            continue
        stopped = record.get("stopped")
        heard = float(stopped if stopped is not None else record.get("lost") or changed)
        found.append(
            HostConsumer(
                state="STOPPED" if stopped is not None else "GONE",
                heartbeat_age=max(0.0, now - heard),
                last_heard=heard,
                **common,
            )
        )
    return tuple(sorted(found, key=lambda c: (not c.local, c.host, c.queue, c.pid or 0)))


def forget_host(ledger: Ledger, host: str) -> int:
    """Forgets every entry and record of `host` at once (a host taken out of service without
    a graceful stop: no longer expected to run); returns how many were dropped."""
    with ledger.write():
        dropped = 0
        for prefix in (PREFIX, RUNS):
            for row in ledger.rows("SELECT key FROM control WHERE key LIKE ?", (prefix + "%",)):
                rest = row["key"][len(prefix) :]
                _, _, where = rest.partition(":")
                where = where.rsplit(":", 1)[0] if prefix == PREFIX else where
                if where == host:
                    dropped += ledger.execute(
                        "DELETE FROM control WHERE key = ?", (row["key"],)
                    ).rowcount
        return dropped
