"""No symbolic link is followed out of the storage root (issue 10, item 4).

Anyone in the operators' group can write inside the root. A link planted at a log file, at
logs/, at a fan-out dir or at cas/tmp must never make the worker's user write elsewhere: each
is refused with one line naming it, and nothing is lost (a parcel keeps its tries).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import pytest

from tests.helpers import parcel
from worker.cas.store import ContentStore, UnsafeStoreEntry
from worker.layout import Layout, UnsafeEntry
from worker.ops import consumer, jobs, operations
from worker.parcels import failures
from worker.parcels import intake as parcels
from worker.runtime import Runtime

ATTACHMENT = "the attachment that must stay inside the root"
PREFIX = hashlib.sha256(ATTACHMENT.encode()).hexdigest()[:2]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """Where a planted link points: a directory outside the root, and a file in it."""
    where = tmp_path / "outside"
    where.mkdir()
    (where / "target").write_bytes(b"")
    return where


def plant(runtime: Runtime, relative: str, outside: Path) -> Path:
    """Replaces `relative` under the root (if there) by a link to `outside` (a directory for
    a directory's place, else the file in it); returns the link."""
    link = runtime.layout.root / relative
    is_dir = relative in ("logs", "run", "orchestration/memory") or not relative.endswith(".log")
    if link.is_dir() and not link.is_symlink():
        for child in link.iterdir():
            child.unlink()
        link.rmdir()
    elif link.exists():
        link.unlink()
    link.symlink_to(outside if is_dir else outside / "target")
    return link


def written_outside(outside: Path) -> list[str]:
    """What landed outside: any new entry, or bytes in the target file."""
    found = sorted(p.name for p in outside.iterdir() if p.name != "target")
    if (outside / "target").stat().st_size:
        found.append("target (appended to)")
    return found


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def queue(runtime: Runtime, *items: dict) -> list[str]:
    return parcels.queue_parcels(
        runtime.ledger, [parcels.validate(p, runtime.settings.max_parcel_size) for p in items]
    )


# -- the log files ---------------------------------------------------------------------------


@pytest.mark.parametrize("relative", ["logs/orchestration.log", "logs"])
def test_compaction_writes_no_line_through_a_link(runtime, outside, caplog, relative):
    link = plant(runtime, relative, outside)
    caplog.set_level(logging.ERROR, logger="seer.compaction")
    run = runtime.compactor().run("manual")
    assert written_outside(outside) == []
    # The run is recorded all the same; the refusal is one line naming the link.
    assert runtime.compactor().get(run.id).status == "ok"
    (record,) = [r for r in caplog.records if r.name == "seer.compaction"]
    assert f"{link} is a symbolic link" in one_line(record.getMessage())
    assert record.exc_info is None


@pytest.mark.parametrize("relative", ["logs/orchestration.log", "logs"])
def test_the_storage_report_job_says_the_link_and_goes_on(runtime, outside, caplog, relative):
    link = plant(runtime, relative, outside)
    scheduler = runtime.queues.scheduler
    jobs.register(runtime)
    (job,) = [t for t in scheduler._registry._registry.values() if t.__name__ == "monitor_storage"]
    caplog.set_level(logging.ERROR)
    job().execute()  # what the consumer runs; no exception reaches it
    assert written_outside(outside) == []
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert f"{link} is a symbolic link" in one_line(record.getMessage())


@pytest.mark.parametrize("relative", ["logs/alerts.log", "logs"])
def test_a_test_alert_writes_no_line_through_a_link(runtime, outside, relative):
    link = plant(runtime, relative, outside)
    report = operations.send_test_alert(runtime, "log")
    assert written_outside(outside) == []
    (outcome,) = report.channels
    assert not report.ok and outcome.status != "sent"
    assert f"{link} is a symbolic link" in one_line(outcome.error)
    # Kept for a retry, not dropped: once the link is gone it is delivered.
    link.unlink()
    if relative == "logs":
        runtime.layout.logs.mkdir()
    from worker.monitoring import monitor

    assert monitor.deliver(runtime, now=time.time() + 3600).sent == 1
    assert "Test alert" in (runtime.layout.logs / "alerts.log").read_text()


@pytest.mark.parametrize(
    "relative, command",
    [
        ("logs/orchestration.log", ("monitor-storage",)),
        ("logs", ("monitor-storage",)),
        ("logs/alerts.log", ("alerts", "test")),
        ("logs", ("alerts", "test")),
        ("logs/orchestration.log", ("compact-memory",)),
    ],
)
def test_commands_refuse_a_link_in_one_line(runtime, cli, outside, relative, command):
    link = plant(runtime, relative, outside)
    result = cli(*command)
    assert result.code != 0
    assert f"{link} is a symbolic link" in one_line(result.err)
    assert written_outside(outside) == []


def test_a_fifo_where_a_log_belongs_fails_at_once(runtime):
    os.mkfifo(runtime.layout.logs / "orchestration.log")
    with pytest.raises(OSError):
        runtime.layout.append_log("orchestration.log", {"event": "x"})


# -- the content store -----------------------------------------------------------------------


@pytest.mark.parametrize("relative", [f"orchestration/cas/{PREFIX}", "orchestration/cas/tmp"])
@pytest.mark.usefixtures("file_blobs")
def test_a_delivery_puts_no_blob_through_a_link_and_loses_no_parcel(runtime, outside, relative):
    link = plant(runtime, relative, outside)
    real_open = os.open
    opened_outside: list[str] = []

    def watching_open(path, flags, *args, **kwargs):
        fd = real_open(path, flags, *args, **kwargs)
        # A temp file made outside and unlinked again would leave no trace: watch the opens.
        if str(outside) in os.readlink(f"/proc/self/fd/{fd}"):
            opened_outside.append(str(path))
        return fd

    (pid,) = queue(runtime, parcel("agent-1", 1, attachment=ATTACHMENT))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "open", watching_open)
        result = runtime.postmaster().deliver_waiting()
    assert (result.claimed, result.delivered) == (1, 0)
    assert written_outside(outside) == [] and opened_outside == []
    row = failures.parcel(runtime.ledger, pid)
    assert (row.state, row.attempts) == ("queued", 1)
    assert f"{link} is a symbolic link" in one_line(row.error)
    # Not lost: with the link gone, the next try delivers it.
    link.unlink()
    assert runtime.postmaster().deliver_waiting(now=time.time() + 3600).delivered == 1
    assert failures.parcel(runtime.ledger, pid).state == "delivered"
    assert written_outside(outside) == []


@pytest.mark.parametrize("relative", ["prefix", "tmp"])
def test_a_put_through_a_linked_directory_is_a_one_line_cas_error(tmp_path, outside, relative):
    store = ContentStore(tmp_path / "cas")
    data = b"bytes for a linked directory"
    name = hashlib.sha256(data).hexdigest()[:2] if relative == "prefix" else "tmp"
    store.root.mkdir()
    (store.root / name).symlink_to(outside)
    for put in (store.put, lambda d: store.put_many([d])):
        with pytest.raises(UnsafeStoreEntry) as refused:
            put(data)
        assert f"{store.root / name} is a symbolic link" in one_line(str(refused.value))
    assert written_outside(outside) == []


def test_a_link_where_a_blob_belongs_is_replaced_not_followed(tmp_path, outside):
    store = ContentStore(tmp_path / "cas")
    data = b"the real bytes"
    path = store.path_for(hashlib.sha256(data).hexdigest())
    path.parent.mkdir(parents=True)
    # The bait: the right bytes, outside, where whoever planted the link can change them later.
    bait = outside / "bait"
    bait.write_bytes(data)
    path.symlink_to(bait)
    assert store.put(data).created is False  # healed in place: it was counted as existing
    assert not path.is_symlink() and path.read_bytes() == data
    assert bait.read_bytes() == data


def test_temp_cleaning_removes_nothing_through_a_linked_tmp(tmp_path, outside):
    store = ContentStore(tmp_path / "cas")
    store.put(b"makes the root")
    (store.root / "tmp").rmdir()
    (store.root / "tmp").symlink_to(outside)
    victim = outside / "1-00ff.tmp"  # the name of a temp file of a dead process, and old
    victim.write_bytes(b"someone else's")
    os.utime(victim, (0, 0))
    assert store.clean_temp() == 0
    assert victim.read_bytes() == b"someone else's"


def test_a_wiped_tmp_is_made_again_through_the_new_directory(tmp_path):
    store = ContentStore(tmp_path / "cas")
    store.put(b"first")
    for entry in store.tmp_dir.iterdir():
        entry.unlink()
    store.tmp_dir.rmdir()
    assert store.put(b"second").created is True
    assert store.tmp_dir.is_dir() and list(store.tmp_dir.iterdir()) == []
    assert store.read(hashlib.sha256(b"second").hexdigest()) == b"second"


# -- the start-up check ----------------------------------------------------------------------

PLACES = [
    "logs/orchestration.log",
    "logs/alerts.log",
    "logs",
    f"orchestration/cas/{PREFIX}",
    "orchestration/cas/tmp",
    "orchestration/memory",
    "run",
]


@pytest.mark.parametrize("relative", PLACES)
@pytest.mark.parametrize("queue_name", ["postmaster", "scheduler"])
def test_seer_worker_refuses_a_root_holding_a_link(
    runtime, cli, outside, monkeypatch, relative, queue_name
):
    link = plant(runtime, relative, outside)

    def no_consumer(*args):
        raise AssertionError(f"the consumer was started: {args}")

    monkeypatch.setattr(consumer, "run", no_consumer)
    result = cli("worker", queue_name)
    assert result.code != 0
    assert one_line(result.err) == (
        f"seer: {link} is a symbolic link: refused, Seer follows no link inside its storage "
        "root (remove it, and find out who made it)"
    )
    with pytest.raises(UnsafeEntry):
        Runtime.open()
    assert written_outside(outside) == []


def test_status_says_unknown_naming_the_link(runtime, cli, outside):
    link = plant(runtime, "logs/alerts.log", outside)
    result = cli("status")
    assert result.code == 3  # UNKNOWN: nothing can be read until the link is gone
    assert f"{link} is a symbolic link" in one_line(result.err)


def test_a_clean_root_passes_the_check_with_every_fanout_dir(runtime):
    for n in range(256):
        (runtime.layout.cas / f"{n:02x}").mkdir()
    (runtime.layout.cas / "tmp").mkdir(exist_ok=True)
    assert runtime.layout.find_link() is None
    Runtime.open().close()


def test_init_refuses_to_chmod_through_a_linked_directory(env, cli, tmp_path, outside):
    root = tmp_path / "storage"
    root.mkdir()
    (root / "logs").symlink_to(outside)
    os.chmod(outside, 0o700)
    result = cli("init")
    assert result.code != 0
    assert f"{root / 'logs'} is a symbolic link" in one_line(result.err)
    assert os.stat(outside).st_mode & 0o777 == 0o700


def test_a_log_line_goes_through_layout_with_the_file_mode(runtime):
    layout: Layout = runtime.layout
    layout.append_log("orchestration.log", {"event": "x", "n": 1})
    layout.append_log("orchestration.log", {"event": "y", "n": 2})
    path = layout.logs / "orchestration.log"
    assert path.read_text().splitlines() == ['{"event": "x", "n": 1}', '{"event": "y", "n": 2}']
    assert os.stat(path).st_mode & 0o777 == layout.file_mode
