"""`seer status`: one-shot health for people and for monitoring (exit status: worker's Health),
and the rendering of the status snapshot that `seer queue status` shares."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from seer_console import output
from seer_console.cli.common import DATABASE_ERRORS, AddCommand, open_runtime
from worker.layout import NotInitialised, UnsafeEntry
from worker.ledger import migrations
from worker.ledger.errors import LedgerDiskFull, LedgerUnavailable
from worker.monitoring import status
from worker.monitoring.status import Health
from worker.settings import SettingsError


def queue_lines(snap: status.Snapshot) -> list[str]:
    q = snap.queue
    state = "PAUSED" if q.paused else "running"
    if q.paused:
        state += f" since {output.when(q.paused_since, snap.taken_at)} by {q.paused_by}"
    lines = [
        f"queue      {q.name}: {state}",
        f"depth      {q.depth} queued, {q.in_flight} in flight, oldest "
        f"{output.age(q.oldest_queued_age)}",
    ]
    if q.backoff_reason:
        until = output.when(q.backoff_until, snap.taken_at)
        lines.append(f"backoff    {q.backoff_reason} (next try {until})")
    if snap.queue_backend is not None:
        lines.append(f"backend    {backend_line(snap)}")
    return lines


def backend_line(snap: status.Snapshot) -> str:
    """The queue's storage: `redis redis://host:port, ping 0.3 ms, doorbells: postmaster 0,
    scheduler 1, persistence none`, or UNREACHABLE and why (never a password: the address is
    Settings.queue_address)."""
    probe = snap.queue_backend
    assert probe is not None
    where = f"{probe.backend} {output.printable(probe.address)}"
    if not probe.reachable:
        since = snap.queue_unreachable_since
        when = f" since {output.when(since, snap.taken_at)}" if since else ""
        why = (probe.error or "no answer").removeprefix(
            f"cannot reach the queue at {probe.address}: "
        )
        why = output.one_line(output.printable(why), 200)
        return f"{where}, UNREACHABLE{when}: {why}"
    parts = [where, f"ping {output.latency(probe.latency)}"]
    if probe.depths:
        parts.append(output.doorbells(probe.depths))
    parts.append(f"persistence {probe.persistence or 'unknown'}")
    return ", ".join(parts)


def status_lines(snap: status.Snapshot) -> list[str]:
    lines = [f"seer ops   {snap.level.upper()}", f"storage    {snap.storage_root}"]
    lines += queue_lines(snap)
    p = snap.parcels
    lines.append(
        f"parcels    {p['queued']} queued, {p['in_flight']} in flight, {p['delivered']} "
        f"delivered, {p['failed']} failed ({snap.failed_last_hour} in the last hour)"
    )
    if snap.flow:
        f = snap.flow
        lines.append(f"last {f.window:.0f}s   {f.delivered} delivered, {f.failed} failed")
    pct = 100.0 * snap.cas_bytes / snap.cas_quota if snap.cas_quota else 0.0
    lines.append(
        f"cas        {output.size(snap.cas_bytes)} in {output.counted(snap.cas_blobs, 'blob')}, "
        f"{pct:.1f}% of {output.size(snap.cas_quota)}"
    )
    lines.append(f"supervisor {snap.supervisor}")
    for c in snap.consumers:
        alive = f"alive (pid {', '.join(map(str, c.pids))})" if c.alive else "NOT RUNNING"
        sup = f", supervisord: {c.supervisor_state}" if c.supervisor_state else ""
        restarts = "" if c.restarts is None else f", {c.restarts} restart"
        restarts += "" if c.restarts in (None, 1) else "s"
        lines.append(f"consumer   {c.queue}: {alive}{sup}{restarts}")
        lines += heartbeat_lines(c)
        if c.last_exit:
            lines.append(
                f"last exit  {c.queue}: {c.last_exit.describe()} at "
                f"{output.when(c.last_exit.at, snap.taken_at)}"
            )
    lines += host_lines(snap)
    lines.append("rules      " + ", ".join(f"{rule} {level}" for rule, level in snap.rules.items()))
    lines += [f"problem    {text}" for text in snap.problems]
    return lines + note_lines(snap)


def host_lines(snap: status.Snapshot) -> list[str]:
    """Every host's consumers as the rules see them (worker.fleet.consumers.fleet): state,
    pid, heartbeat, the CPU and memory each measured of itself, restarts. Only when another
    host has any: on one host the consumer rows say it all."""
    if all(c.local for c in snap.hosts):
        return []
    lines = []
    for c in snap.hosts:
        # Host names come from the ledger (SEER_HOST_ID of each host): printed safe.
        where = f"{output.printable(c.host)} {c.queue}"
        parts = [c.state + ("" if c.pid is None else f" pid {c.pid}")]
        if c.heartbeat_age is not None:
            parts.append(f"heartbeat {c.heartbeat_age:.0f}s ago")
        if c.running and c.cpu_percent is not None:
            parts.append(f"cpu {c.cpu_percent:.0f}%")
        if c.running and c.rss is not None:
            parts.append(f"mem {output.size(c.rss)}")
        parts.append(f"restarts {c.restarts}")
        lines.append(f"host       {where}: {', '.join(parts)}")
    return lines


def note_lines(snap: status.Snapshot) -> list[str]:
    """What an operator should know though it changes no level (Redis persisting nothing)."""
    return [f"note       {output.printable(text)}" for text in snap.notes]


def heartbeat_lines(c: status.ConsumerStatus) -> list[str]:
    """One line per process of the queue, of every host, with its heartbeat's age."""
    lines = []
    for p in c.processes:
        age = "-" if p.heartbeat_age is None else f"{p.heartbeat_age:.0f}s ago"
        mark = " STALE (taken for dead)" if p.stale else ""
        lines.append(f"heartbeat  {c.queue}: {p.host} pid {p.pid}, {age}{mark}")
    return lines


def print_status(snap: status.Snapshot) -> None:
    print("\n".join(status_lines(snap)))


# What leaves the health unknown (exit 3) rather than failing the command: a check must
# always get one of the four answers.
UNKNOWN_WHEN: tuple[type[Exception], ...] = (
    SettingsError,
    NotInitialised,
    UnsafeEntry,
    migrations.SchemaMismatch,
    LedgerUnavailable,
    *DATABASE_ERRORS,
)


def cmd_status(args: argparse.Namespace) -> int:
    try:
        runtime = open_runtime()
        snap = status.snapshot(runtime)
    except LedgerDiskFull as exc:
        # Known, not unknown: the ledger cannot even be read for want of room (SQLite's
        # read needs its WAL index to grow), and nothing is delivered until there is room.
        if args.json:
            output.emit_json({"level": "critical", "error": str(exc), "problems": [str(exc)]})
        print(f"seer status: CRITICAL: {exc}", file=sys.stderr)
        return Health.CRITICAL
    except UNKNOWN_WHEN as exc:
        if args.json:
            output.emit_json({"level": "unknown", "error": str(exc)})
        print(f"seer status: UNKNOWN: {exc}", file=sys.stderr)
        return Health.UNKNOWN
    if args.json:
        output.emit_json(snap.as_dict())
    else:
        print_status(snap)
    return snap.exit_code


def register(sub: Any, add: AddCommand) -> None:
    p = add("status", cmd_status, "one-shot health: queue, parcels, failures, consumers")
    p.add_argument("--json", action="store_true")
