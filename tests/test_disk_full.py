"""A full disk is said, not hidden (issue 10, item 9): on a real full filesystem (a tmpfs), a
send says "disk full: PATH", `seer status` is CRITICAL, and nothing is half-written."""

from __future__ import annotations

import errno
import os

import pytest

from tests.test_cli import ok, one_line_failure


def fill(where) -> object:
    """Writes a filler file until the filesystem says ENOSPC; returns its path."""
    filler = where / "filler"
    chunk = b"\0" * 65536
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, chunk)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


@pytest.fixture
def full_root(env, cli, tmp_path, tmpfs, monkeypatch):
    monkeypatch.setenv("POSTMASTER_MAX_PARCEL_SIZE", "256K")
    root = tmpfs(tmp_path / "storage", "6m")
    assert cli("init").code == 0
    return root


# The ledger and the queue in files under the full root: SQLite's case. A full disk under a
# PostgreSQL server is tests/test_scaleout_faults.py's.
@pytest.mark.backends("sqlite")
def test_a_send_to_a_full_root_says_disk_full_and_queues_nothing(full_root, cli):
    (pid,) = ok(cli("parcel", "send", "-", stdin='{"to_agent_id": "a"}')).split()
    filler = fill(full_root)
    big = '{"to_agent_id": "a", "envelope": {"body": "' + "x" * 200_000 + '"}}'
    result = cli("parcel", "send", "-", stdin=big)
    line = one_line_failure(result, 1)
    assert "disk full" in line and str(full_root) in line
    assert "no transaction is active" not in line
    status = cli("status")
    assert status.code == 2 and "disk full" in status.out + status.err
    shown = cli("status", "--json").json()
    assert shown["level"] == "critical" and any("disk full" in p for p in shown["problems"])
    # Room again: the command works, the earlier parcel is intact, nothing half-written.
    os.unlink(filler)
    assert cli("parcel", "show", pid, "--json").json()["state"] == "queued"
    ok(cli("parcel", "send", "-", stdin=big))
    assert cli("status", "--json").json()["level"] != "critical" or not any(
        "disk full" in p for p in cli("status", "--json").json()["problems"]
    )


@pytest.mark.backends("sqlite")  # queue.db: the SQLite queue's file
def test_a_damaged_queue_database_is_said_and_loses_no_parcel(runtime, cli):
    runtime.layout.queue_db.write_bytes(b"this is not a database " * 200)
    result = cli("parcel", "send", "-", stdin='{"to_agent_id": "a"}')
    assert result.code == 0 and "Traceback" not in result.err
    (pid,) = result.out.split()
    assert "queue database is damaged" in result.err and "within a minute" not in result.err
    status = cli("status")
    assert status.code == 2 and "queue database cannot be read" in status.out + status.err
    assert cli("parcel", "show", pid, "--json").json()["state"] == "queued"
    # The repair the line names: move it aside, `seer init` makes a new one.
    runtime.layout.queue_db.rename(runtime.layout.queue_db.with_suffix(".damaged"))
    assert cli("init").code == 0
    assert "queue database" not in " ".join(cli("status", "--json").json()["problems"])
