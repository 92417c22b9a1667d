"""What the CLI and the console say: counts, times and names an operator reads at 3 a.m."""

from __future__ import annotations

import os
import pwd
import time

from seer_console import output
from worker.fleet import control


def test_a_time_in_the_future_is_never_ago():
    now = 1_000_000.0
    assert output.when(now + 0.5, now).endswith("(in a moment)")
    assert output.when(now + 1, now).endswith("(in a second)")
    assert output.when(now - 0.5, now).endswith("(a moment ago)")


def test_set_ephemeral_with_a_short_ttl_expires_in_the_future(runtime, cli):
    out = cli("memory", "set-ephemeral", "a", "k", "1", "--ttl", "1s").out
    assert "(in " in out and "ago" not in out


def test_quota_far_away_is_not_a_number_of_days():
    assert output.quota_eta(13469 * 86400 + 18 * 3600, short=True) == "not within a year"
    assert output.quota_eta(3 * 86400 + 4 * 3600, short=True) == "in 3d04h"
    assert output.quota_eta(2 * 86400) == "in 2 days"


def test_monitor_storage_says_not_within_a_year(runtime, cli):
    from worker.monitoring import metrics

    t = time.time()
    # 1 KiB in 12 hours against a 100 GiB quota.
    for hours, size in ((12, 0), (0, 1024)):
        taken = metrics.measure(runtime.ledger, "postmaster", "scheduler", now=t - hours * 3600)
        metrics.record(runtime.ledger, taken.__class__(**{**taken.__dict__, "cas_bytes": size}))
    out = cli("monitor-storage", "--dry-run").out
    assert "quota reached not within a year" in out, out


def test_compaction_counts_agents_processed_and_speaks_in_the_singular(runtime, cli):
    memory = runtime.memory()
    an_hour_ago = time.time() - 3600
    memory.set_ephemeral("a", "k", 1, ttl=60, now=an_hour_ago)  # expired 59 minutes ago
    memory.set_durable("b", "k", 1)
    one = cli("compact-memory", "--agent", "a", "--json").json()
    assert one["agents"] == 1 and one["keys_deleted"] == 1
    again = cli("compact-memory", "--agent", "a").out
    assert "deleted 0 expired keys (agent a)" in again
    memory.set_ephemeral("a", "k2", 1, ttl=60, now=an_hour_ago)
    everyone = cli("compact-memory").out
    assert "deleted 1 expired key from 2 agents" in everyone, everyone


def test_pause_without_user_is_attributed_to_the_uid_name(runtime, cli, monkeypatch):
    monkeypatch.delenv("USER", raising=False)
    monkeypatch.delenv("LOGNAME", raising=False)
    assert cli("queue", "pause").code == 0
    state = control.pause_state(runtime.ledger)
    assert state.by == f"cli:{pwd.getpwuid(os.getuid()).pw_name}"
    assert "?" not in state.by


def test_counts_agree_with_their_word():
    assert output.counted(0, "blob") == "0 blobs"
    assert output.counted(1, "blob") == "1 blob"
    assert output.counted(2048, "failed parcel") == "2,048 failed parcels"
    assert output.counted(1, "crash", "crashes") == "1 crash"
    assert output.counted(3, "crash", "crashes") == "3 crashes"


def test_one_blob_is_a_blob_in_status_stats_and_verify(runtime, cli):
    data = b"one blob, said in the singular\n"
    put = runtime.store.put(data)
    with runtime.ledger.write():
        runtime.ledger.execute(
            "INSERT INTO blobs (hash, size, created_at) VALUES (?, ?, ?)",
            (put.digest, put.size, time.time()),
        )
    assert "in 1 blob," in cli("status").out
    stats = cli("monitor-storage", "--dry-run").out
    assert "in 1 blob\n" in stats and "in 1 blob in the ledger" in stats, stats
    verified = cli("cas", "verify").out
    assert "1 blob (" in verified and "1 row in the ledger" in verified, verified
