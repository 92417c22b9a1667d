"""`seer backup` and `seer restore`: online copies of a running root, restored and checked, on
every ledger backend (a PostgreSQL root is restored into a schema of a database of its own)."""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import os
import threading
from pathlib import Path

import pytest

from tests import blobs
from tests.helpers import PG_ADMIN_URL, parcel, pg_run_database, pg_url, wait_for
from tests.test_cli import one_line_failure
from worker.cas import store as cas_store
from worker.cas import tools as cas_tools
from worker.cas.store import ContentStore
from worker.layout import Layout
from worker.ledger import migrations
from worker.ops import backup as backup_module
from worker.ops import operations
from worker.ops.backup import BackupError, BackupRefused, latest_backup
from worker.ops.backup import blobs as backup_blobs
from worker.parcels import intake as parcels
from worker.runtime import Runtime
from worker.settings import load_settings

DAY = 86400.0

# A backup's CAS is files whatever the live store keeps in the ledger: every test runs on both
# kinds of blob.
# Backup and restore reach the blobs through the store interface alone: every test on the
# ledger's rows and on files, the ones about what a copy of the blobs does on objects too.
pytestmark = [pytest.mark.usefixtures("blob_kind"), pytest.mark.blob_kinds("ledger", "files")]
ON_OBJECTS_TOO = pytest.mark.blob_kinds("ledger", "files", "objects")


def deliver(runtime: Runtime, items: list[dict]) -> list[str]:
    """Delivers in-process (no consumer): each parcel's attachment and manifest go to the CAS."""
    batch = [parcels.validate(p, runtime.settings.max_parcel_size) for p in items]
    ids = parcels.queue_parcels(runtime.ledger, batch)
    assert runtime.postmaster().deliver_waiting().delivered == len(ids)
    return ids


def filled(runtime: Runtime, n: int = 5) -> list[str]:
    return deliver(
        runtime, [parcel(f"agent-{i % 2}", i, attachment=f"notes {i}") for i in range(n)]
    )


def rows(ledger, sql: str) -> list[tuple]:
    return [tuple(r.values()) for r in ledger.rows(sql)]


def snapshot(runtime: Runtime) -> dict[str, list[tuple]]:
    ledger = runtime.ledger
    return {
        "messages": rows(ledger, "SELECT * FROM messages ORDER BY id"),
        "artifacts": rows(ledger, "SELECT * FROM artifacts ORDER BY id"),
        "blobs": rows(ledger, "SELECT * FROM blobs ORDER BY hash"),
        "parcels": rows(ledger, "SELECT * FROM parcels ORDER BY seq"),
        "counters": sorted(ledger.counters().items()),
    }


def blob_hashes(runtime: Runtime) -> list[str]:
    return [r["hash"] for r in runtime.ledger.rows("SELECT hash FROM blobs ORDER BY hash")]


def counters_match_table(runtime: Runtime) -> None:
    ledger = runtime.ledger
    counters = ledger.counters()
    assert counters["cas_bytes"] == ledger.scalar("SELECT coalesce(sum(size), 0) FROM blobs")
    assert counters["cas_blobs"] == ledger.scalar("SELECT count(*) FROM blobs")


# -- where a PostgreSQL root is restored ----------------------------------------------------------
# pg_restore recreates a dump under its own schema's name (then renamed to the target's), and the
# source's schema is still there in the run's database: targets are schemas of another database.

_targets = itertools.count(1)
_restore_database: list[str] = []


def restore_database() -> str:
    """This process's database for restore targets, made on first use."""
    import psycopg

    if not _restore_database:
        name = f"{pg_run_database()}_restore"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        _restore_database.append(name)
    return _restore_database[0]


@pytest.fixture(scope="module", autouse=True)
def _drop_restore_database():
    yield
    import psycopg

    for name in _restore_database:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _restore_database.clear()


def pg_tables(url: str, schema: str | None = None) -> list[str]:
    """The tables of the URL's schema (or `schema`), Huey's left out."""
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        found = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = coalesce(%s, current_schema()) "
            "AND tablename NOT LIKE 'huey%%' ORDER BY 1",
            (schema,),
        ).fetchall()
    return [r[0] for r in found]


def use_root(monkeypatch: pytest.MonkeyPatch, root: Path) -> Layout:
    """Points the settings at a new storage root and, on PostgreSQL, a new empty schema; with
    the CAS on an object store, at a new empty bucket too (`seer restore` creates it)."""
    monkeypatch.setenv("SEER_STORAGE_PATH", str(root))
    if os.environ.get("ORCHESTRATION_CAS_URL"):
        monkeypatch.setenv(
            "ORCHESTRATION_CAS_URL", f"s3://restored-{next(_targets)}-{os.getpid()}/cas"
        )
    if os.environ.get("SEER_DATABASE_URL"):
        monkeypatch.setenv("SEER_DATABASE_URL", pg_url(restore_database(), f"r{next(_targets)}"))
    return Layout.from_settings(load_settings())


def ledger_file(backup: Path) -> Path:
    """The backup's ledger file (ledger.db, or the PostgreSQL dump)."""
    return backup / json.loads((backup / "manifest.json").read_text())["databases"][0]["name"]


def engine_files(runtime: Runtime) -> list[str]:
    if runtime.ledger.dialect == "postgresql":
        return ["ledger.pgdump"]
    return ["ledger.db", "queue.db"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def restored_runtime(monkeypatch, tmp_path: Path, cli, dest: Path, name: str = "restored"):
    use_root(monkeypatch, tmp_path / name)
    result = cli("restore", str(dest))
    assert result.code == 0, result.err
    return Runtime.open(), result


# -- an idle root -------------------------------------------------------------------------------


@ON_OBJECTS_TOO
def test_backup_of_an_idle_root_then_restore_gives_the_same_ledger_and_blobs(
    runtime, cli, tmp_path, monkeypatch
):
    filled(runtime)
    before = snapshot(runtime)
    dest = tmp_path / "backups" / "one"
    dest.parent.mkdir()

    result = cli("backup", str(dest))
    assert result.code == 0, result.err
    assert str(dest / "manifest.json") in result.out
    # No reflinks on this filesystem: copies, each hash-checked.
    assert "10 blobs: 0 cloned (reflink), 10 copied" in result.out

    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["schema_version"] == migrations.LATEST
    assert manifest["blobs"] == 10 and manifest["cloned"] == 0 and manifest["copied"] == 10
    assert manifest["blob_bytes"] == sum(b[1] for b in before["blobs"])
    assert manifest["messages"] == 5 and manifest["source_root"] == str(runtime.layout.root)
    for db in manifest["databases"]:
        assert sha256(dest / db["name"]) == db["sha256"]
        assert (dest / db["name"]).stat().st_size == db["size"]
    # A plain set of files: no WAL left beside the copies, and no marker (not a live root).
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [*engine_files(runtime), "manifest.json", "orchestration"]
    )
    assert manifest["engine"] == runtime.ledger.dialect
    # No blob shares an inode with the live store: a byte flipped there stays there.
    copy = ContentStore(dest / "orchestration" / "cas")
    for digest in blob_hashes(runtime):
        assert os.stat(copy.path_for(digest)).st_nlink == 1
        assert copy.read(digest) == runtime.store.read(digest)
    assert (dest / "manifest.json").stat().st_mode & 0o777 == runtime.layout.file_mode

    restored, result = restored_runtime(monkeypatch, tmp_path, cli, dest)
    assert "`seer migrate --status`" in result.out
    assert "10 blobs hash-checked" in result.out
    assert snapshot(restored) == before
    for digest in blob_hashes(restored):
        assert restored.store.read(digest) == runtime.store.read(digest)
    report = cas_tools.verify(restored.ledger, restored.store)
    assert report.clean and not report.orphaned and report.blobs_checked == 10
    layout = restored.layout
    assert layout.is_initialised()
    for directory in (layout.root, layout.cas, layout.logs, layout.run):
        assert directory.stat().st_mode & 0o777 == layout.dir_mode
    kept = engine_files(restored) if restored.ledger.dialect == "sqlite" else []
    for name in [*kept, layout.marker.name]:
        assert (layout.root / name).stat().st_mode & 0o777 == layout.file_mode
    # The restored root works: its queue schema is there, and the CLI reads it.
    assert restored.queues.postmaster.pending_count() == 0
    assert cli("migrate", "--status").code == 0
    assert cli("inbox", "agent-0", "--json").json()
    restored.close()


def test_backup_into_an_existing_empty_directory_and_json_output(runtime, cli, tmp_path):
    filled(runtime, 2)
    dest = tmp_path / "empty"
    dest.mkdir()
    result = cli("backup", str(dest), "--json")
    assert result.code == 0, result.err
    out = result.json()
    assert out["path"] == str(dest) and out["manifest"] == str(dest / "manifest.json")
    assert out["blobs"] == 4 and out["copied"] == 4 and out["duration"] >= 0
    assert dest.stat().st_mode & 0o777 == runtime.layout.dir_mode


def test_blobs_are_copied_when_reflinks_are_not_possible(
    runtime, cli, tmp_path, monkeypatch, blob_kind
):
    filled(runtime, 3)
    tried = []
    real_ioctl = cas_store.fcntl.ioctl

    def no_clone(fd, request, *args):
        if request != cas_store._FICLONE:
            return real_ioctl(fd, request, *args)
        tried.append(fd)
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(cas_store.fcntl, "ioctl", no_clone)
    dest = tmp_path / "copied"
    out = cli("backup", str(dest), "--json").json()
    assert out["cloned"] == 0 and out["copied"] == 6
    # Asked once: a filesystem without reflinks is not asked again for every blob (rows of
    # the ledger are written out, never cloned).
    assert len(tried) == (1 if blob_kind == "files" else 0)
    copy = ContentStore(dest / "orchestration" / "cas")
    for digest in blob_hashes(runtime):
        path = copy.path_for(digest)
        assert os.stat(path).st_nlink == 1
        assert path.stat().st_mode & 0o777 == runtime.layout.file_mode
        assert copy.read(digest)
    # No temp files left beside the copies.
    assert not list((dest / "orchestration" / "cas").rglob("*.tmp"))

    restored, result = restored_runtime(monkeypatch, tmp_path, cli, dest)
    assert "0 cloned (reflink), 6 copied" in result.out
    assert cas_tools.verify(restored.ledger, restored.store).clean
    restored.close()


def test_a_backup_of_an_older_schema_restores_and_is_refused_by_the_runtime(
    runtime, cli, tmp_path, monkeypatch
):
    filled(runtime, 1)
    # Migration 7 keeps small blobs as rows: they become files before it is undone.
    cas_tools.unpack(runtime.store)
    migrations.rollback(runtime.ledger, 1)
    dest = tmp_path / "old"
    # No schema check on backup: it is what one takes before migrating.
    assert cli("backup", str(dest), "--json").json()["schema_version"] == migrations.LATEST - 1
    use_root(monkeypatch, tmp_path / "restored")
    result = cli("restore", str(dest))
    assert result.code == 0
    assert f"schema version {migrations.LATEST - 1}, behind" in result.err
    with pytest.raises(migrations.SchemaMismatch):
        Runtime.open()
    assert cli("migrate").code == 0
    Runtime.open().close()


# -- refusals -----------------------------------------------------------------------------------


def test_backup_refuses_a_non_empty_destination_or_one_inside_the_root(runtime, cli, tmp_path):
    dest = tmp_path / "full"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    result = cli("backup", str(dest))
    assert result.code == 2 and "is not empty" in result.err
    assert sorted(p.name for p in dest.iterdir()) == ["keep.txt"]

    inside = runtime.layout.root / "backup"
    result = cli("backup", str(inside))
    assert result.code == 2 and "inside the storage root" in result.err
    assert not inside.exists()

    a_file = tmp_path / "a-file"
    a_file.write_text("")
    assert cli("backup", str(a_file)).code == 2
    assert cli("backup", str(tmp_path / "no" / "such" / "dir")).code == 2


def test_backup_refuses_an_uninitialised_root(env, cli, tmp_path):
    result = cli("backup", str(tmp_path / "dest"))
    assert result.code == 2 and "not initialised" in result.err
    assert not (tmp_path / "dest").exists()


@pytest.fixture
def taken(runtime, cli, tmp_path) -> Path:
    filled(runtime, 3)
    dest = tmp_path / "taken"
    assert cli("backup", str(dest)).code == 0
    return dest


def test_restore_refuses_a_non_empty_or_initialised_target(
    runtime, taken, cli, tmp_path, monkeypatch
):
    # The live root itself: initialised.
    result = cli("restore", str(taken))
    assert result.code == 2 and "is initialised" in result.err

    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    use_root(monkeypatch, target)
    result = cli("restore", str(taken))
    assert result.code == 2 and "is not empty" in result.err
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]


def test_restore_refuses_a_damaged_ledger_copy(runtime, taken, cli, tmp_path, monkeypatch):
    ledger = ledger_file(taken)
    data = bytearray(ledger.read_bytes())
    data[len(data) // 2] ^= 0x01
    ledger.write_bytes(bytes(data))
    target = tmp_path / "target"
    use_root(monkeypatch, target)
    result = cli("restore", str(taken))
    assert result.code == 1
    assert result.err.strip() == (
        f"seer: damaged backup: {ledger.name} does not match the SHA-256 in the manifest"
    )
    assert not target.exists()
    if os.environ.get("SEER_DATABASE_URL"):
        assert pg_tables(os.environ["SEER_DATABASE_URL"]) == []


def test_restore_refuses_a_missing_manifest_and_leaves_the_target_alone(
    runtime, taken, cli, tmp_path, monkeypatch
):
    (taken / "manifest.json").unlink()
    target = tmp_path / "target"
    target.mkdir()
    use_root(monkeypatch, target)
    result = cli("restore", str(taken))
    assert result.code == 2 and "has no manifest.json" in result.err
    assert list(target.iterdir()) == []
    assert cli("restore", str(tmp_path / "nowhere")).code == 2


@ON_OBJECTS_TOO
def test_restore_refuses_a_damaged_blob_and_removes_what_it_wrote(
    runtime, taken, cli, tmp_path, monkeypatch
):
    digest = blob_hashes(runtime)[0]
    path = ContentStore(taken / "orchestration" / "cas").path_for(digest)
    # A new file in its place: the live blob it was linked to stays intact.
    good = path.read_bytes()
    path.unlink()
    path.write_bytes(good + b"!")
    target = tmp_path / "target"
    target.mkdir()
    use_root(monkeypatch, target)
    result = cli("restore", str(taken))
    assert result.code == 1
    assert f"damaged backup: blob {digest} does not match its SHA-256" in result.err
    assert list(target.iterdir()) == []
    assert runtime.store.read(digest) == good
    if os.environ.get("SEER_DATABASE_URL"):
        # What pg_restore wrote is gone too: the schema can take a good backup.
        url = os.environ["SEER_DATABASE_URL"]
        assert pg_tables(url) == []
        assert pg_tables(url, json.loads((taken / "manifest.json").read_text())["schema"]) == []


def test_restore_refuses_a_backup_missing_a_recorded_blob(
    runtime, taken, cli, tmp_path, monkeypatch
):
    digest = blob_hashes(runtime)[-1]
    ContentStore(taken / "orchestration" / "cas").path_for(digest).unlink()
    use_root(monkeypatch, tmp_path / "target")
    result = cli("restore", str(taken))
    assert result.code == 1 and f"blob {digest} recorded in its ledger is missing" in result.err
    assert not (tmp_path / "target").exists()


# -- during a backup ----------------------------------------------------------------------------


def between_snapshot_and_cas(monkeypatch, action) -> None:
    """Runs `action` after the databases are copied and before the CAS is walked."""
    original = backup_blobs.copy_recorded

    def wrapped(*args, **kwargs):
        action()
        return original(*args, **kwargs)

    monkeypatch.setattr(backup_blobs, "copy_recorded", wrapped)


@ON_OBJECTS_TOO
def test_a_gc_during_the_backup_leaves_out_the_blob_and_its_row(
    runtime, cli, tmp_path, monkeypatch
):
    filled(runtime, 3)
    gone = hashlib.sha256(b"notes 1").hexdigest()
    with runtime.ledger.write():
        runtime.ledger.execute("DELETE FROM artifacts WHERE hash = ?", (gone,))
        runtime.ledger.execute("UPDATE blobs SET created_at = 1")
    for digest in blob_hashes(runtime):
        blobs.set_written(runtime.store, digest, 1)

    def collect() -> None:
        report = cas_tools.gc(runtime.ledger, runtime.store, grace=DAY)
        assert [b.hash for b in report.removed] == [gone]

    between_snapshot_and_cas(monkeypatch, collect)
    dest = tmp_path / "during-gc"
    out = cli("backup", str(dest), "--json").json()
    assert out["collected_meanwhile"] == 1 and out["blobs"] == 5

    restored, _ = restored_runtime(monkeypatch, tmp_path, cli, dest)
    assert gone not in blob_hashes(restored)
    assert sorted(blob_hashes(restored)) == sorted(blob_hashes(runtime))
    counters_match_table(restored)
    report = cas_tools.verify(restored.ledger, restored.store)
    assert report.clean and not report.orphaned
    restored.close()


@ON_OBJECTS_TOO
def test_a_referenced_blob_missing_from_the_live_store_fails_the_backup(
    runtime, cli, tmp_path, monkeypatch
):
    filled(runtime, 2)
    lost = hashlib.sha256(b"notes 0").hexdigest()
    between_snapshot_and_cas(monkeypatch, lambda: runtime.store.remove(lost))
    dest = tmp_path / "damaged"
    result = cli("backup", str(dest))
    assert result.code == 1
    assert f"blob {lost} is used by artifacts" in result.err and "seer cas verify" in result.err
    assert not dest.exists()
    assert latest_backup(runtime.layout) is None


# -- the record of backups taken ----------------------------------------------------------------


def test_latest_backup_is_the_newest_one_still_there(runtime, tmp_path, monkeypatch):
    layout = runtime.layout
    assert latest_backup(layout) is None
    first = backup_module.backup(layout, tmp_path / "b1", now=1000.0)
    second = backup_module.backup(layout, tmp_path / "b2", now=3000.0)
    backup_module.backup(layout, tmp_path / "b3", now=2000.0)
    found = latest_backup(layout)
    assert found is not None
    assert (found.path, found.created_at, found.schema_version) == (
        second.path,
        3000.0,
        migrations.LATEST,
    )
    record = layout.root / "backups.json"
    assert record.stat().st_mode & 0o777 == layout.file_mode
    assert len(json.loads(record.read_text())["backups"]) == 3
    # A backup that was deleted does not count.
    for name in os.listdir(second.path):
        path = second.path / name
        if path.is_file():
            path.unlink()
    assert latest_backup(layout).path == tmp_path / "b3"
    assert latest_backup(layout, present_only=False).path == second.path
    assert [b.path for b in backup_module.backups(layout)] == [first.path, tmp_path / "b3"]

    # A restored root's state is that backup: it is recorded there too.
    target = use_root(monkeypatch, tmp_path / "restored")
    backup_module.restore(first.path, target)
    restored_latest = latest_backup(target)
    assert restored_latest is not None and restored_latest.path == first.path


def test_the_api_raises_refusals_as_backup_errors(runtime, tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("")
    with pytest.raises(BackupRefused):
        backup_module.backup(runtime.layout, tmp_path / "x")
    with pytest.raises(BackupRefused):
        backup_module.restore(tmp_path / "x", runtime.layout)
    assert issubclass(BackupRefused, BackupError)


# -- engines ------------------------------------------------------------------------------------


def test_a_backup_restores_only_into_a_deployment_on_its_own_engine(
    runtime, taken, cli, tmp_path, monkeypatch
):
    use_root(monkeypatch, tmp_path / "target")
    if runtime.ledger.dialect == "sqlite":
        # The same root's settings, the ledger moved to PostgreSQL: refused, and pointed at the
        # command that moves a SQLite ledger.
        monkeypatch.setenv("SEER_DATABASE_URL", pg_url(restore_database(), "unused"))
        line = one_line_failure(cli("restore", str(taken)), 2)
        assert "backup of a SQLite ledger" in line and "ledger is PostgreSQL" in line
        assert "`seer migrate-backend --to postgresql://…`" in line
    else:
        monkeypatch.delenv("SEER_DATABASE_URL")
        line = one_line_failure(cli("restore", str(taken)), 2)
        assert "backup of a PostgreSQL ledger" in line and "ledger is SQLite" in line
        assert "SEER_DATABASE_URL" in line
    assert not (tmp_path / "target").exists()


@pytest.mark.backends("postgresql")
def test_restore_refuses_a_database_that_already_has_a_ledger(
    runtime, taken, cli, tmp_path, monkeypatch
):
    live_url = os.environ["SEER_DATABASE_URL"]
    before = snapshot(runtime)
    use_root(monkeypatch, tmp_path / "target")
    monkeypatch.setenv("SEER_DATABASE_URL", live_url)  # the live ledger's own schema
    line = one_line_failure(cli("restore", str(taken)), 2)
    assert "already has a ledger in schema" in line and "127.0.0.1:5432" in line
    assert not (tmp_path / "target").exists()
    assert snapshot(runtime) == before


def drop_schema(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        schema = conn.execute("SELECT current_schema()").fetchone()[0]
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')


@pytest.mark.backends("postgresql")
def test_a_lost_schema_is_restored_under_its_own_name(runtime, taken, cli, tmp_path, monkeypatch):
    # The disaster the backup is for: the ledger's schema is gone (made again, empty), the
    # storage root too. The same settings restore both.
    url = os.environ["SEER_DATABASE_URL"]
    before = snapshot(runtime)
    runtime.close()
    drop_schema(url)
    monkeypatch.setenv("SEER_STORAGE_PATH", str(tmp_path / "new-root"))
    result = cli("restore", str(taken))
    assert result.code == 0, result.err
    assert "and the database at 127.0.0.1:5432" in result.out
    restored = Runtime.open()
    assert snapshot(restored) == before
    assert cas_tools.verify(restored.ledger, restored.store).clean
    restored.close()


@pytest.mark.backends("postgresql")
def test_a_dump_is_restored_into_an_existing_empty_schema_of_another_name(
    runtime, taken, cli, tmp_path, monkeypatch
):
    import psycopg

    before = snapshot(runtime)
    source_schema = json.loads((taken / "manifest.json").read_text())["schema"]
    use_root(monkeypatch, tmp_path / "target")
    url = os.environ["SEER_DATABASE_URL"]
    with psycopg.connect(pg_url(restore_database()), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {url.rsplit('%3D', 1)[1]}")
    restored, _ = restored_runtime(monkeypatch, tmp_path, cli, taken, name="target")
    assert snapshot(restored) == before
    # Everything was moved in, nothing left under the dump's own name.
    assert pg_tables(pg_url(restore_database()), source_schema) == []
    with restored.ledger.write():  # the triggers work where they are now
        restored.ledger.execute("DELETE FROM artifacts")
        restored.ledger.execute("DELETE FROM blobs")
    assert restored.ledger.counters()["cas_blobs"] == 0
    restored.close()


@pytest.mark.backends("postgresql")
def test_the_database_password_never_shows(runtime, cli, tmp_path, monkeypatch):
    # Trust authentication: the server ignores the password, so it can be any word.
    with_password = os.environ["SEER_DATABASE_URL"].replace("postgres@", "postgres:hunter2@")
    monkeypatch.setenv("SEER_DATABASE_URL", with_password)
    filled(runtime, 2)
    dest = tmp_path / "b"
    said = [cli("backup", str(dest), "--verify"), cli("backup", str(tmp_path / "j"), "--json")]
    assert all(r.code == 0 for r in said), said
    use_root(monkeypatch, tmp_path / "target")
    target = os.environ["SEER_DATABASE_URL"].replace("postgres@", "postgres:hunter2@")
    monkeypatch.setenv("SEER_DATABASE_URL", target)
    said += [cli("restore", str(dest), "--json")]
    assert said[-1].code == 0, said[-1].err
    # A tool that fails and prints everything it was given: the command line and its
    # environment's password; neither reaches the operator.
    tools = tmp_path / "bin"
    tools.mkdir()
    fake = tools / "pg_dump"
    fake.write_text('#!/bin/sh\necho "pg_dump: error: args $* password $PGPASSWORD" >&2\nexit 1\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    monkeypatch.setenv("SEER_DATABASE_URL", with_password)
    monkeypatch.setenv("SEER_STORAGE_PATH", str(runtime.layout.root))
    failed = cli("backup", str(tmp_path / "fails"))
    line = one_line_failure(failed, 1)
    assert "at 127.0.0.1:5432 failed (pg_dump)" in line and "password ***" in line
    said.append(failed)
    for result in said:
        assert "hunter2" not in result.out + result.err
    for found in (tmp_path / "b" / "manifest.json", tmp_path / "j" / "manifest.json"):
        assert "hunter2" not in found.read_text()


# -- under load ---------------------------------------------------------------------------------

BATCHES = 10
PER_BATCH = 30


@ON_OBJECTS_TOO
@pytest.mark.queue_facing
def test_a_backup_taken_under_load_restores_a_consistent_point_in_time(
    runtime, cli, consumers, tmp_path, monkeypatch
):
    # Small batches: many delivery transactions, so the consumer commits while we copy.
    monkeypatch.setenv("POSTMASTER_BATCH_SIZE", "5")
    live_consumer = consumers("postmaster")
    live = runtime
    delivered = lambda rt: rt.ledger.counter("parcels_delivered")  # noqa: E731
    snapshot_taken = threading.Event()
    errors: list[BaseException] = []

    def sender() -> None:
        rt = Runtime.open()
        try:
            for b in range(BATCHES):
                if b == BATCHES - 3:
                    # The last batches only after the snapshot: some deliveries certainly
                    # come after it.
                    assert snapshot_taken.wait(60)
                # At most about two batches waiting: the consumer is busy the whole time.
                wait_for(lambda b=b: delivered(rt) >= (b - 2) * PER_BATCH, 60, "delivery")
                items = [
                    parcel(
                        f"agent-{n % 3}",
                        n,
                        attachment=f"attachment {n}: " + "x" * (n % 97),
                    )
                    for n in range(b * PER_BATCH, (b + 1) * PER_BATCH)
                ]
                batch = [parcels.validate(p, rt.settings.max_parcel_size) for p in items]
                operations.send_parcels(rt, batch)
        except BaseException as exc:
            errors.append(exc)
            snapshot_taken.set()
        finally:
            rt.close()

    at_snapshot: dict[str, int] = {}

    def meanwhile() -> None:
        # The ledger copy is done: let the sender go on, and see deliveries (with new blobs in
        # the live CAS) commit before the CAS is walked.
        at_snapshot["delivered"] = delivered(live)
        snapshot_taken.set()
        wait_for(
            lambda: delivered(live) >= at_snapshot["delivered"] + PER_BATCH,
            60,
            "deliveries after the snapshot",
        )

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    wait_for(lambda: delivered(live) >= 2 * PER_BATCH or errors, 60, "delivery to start")
    between_snapshot_and_cas(monkeypatch, meanwhile)
    dest = tmp_path / "under-load"
    manifest = backup_module.backup(live.layout, dest)
    thread.join(120)
    assert not errors, errors
    total = BATCHES * PER_BATCH
    wait_for(lambda: delivered(live) == total, 120, "every parcel delivered")
    assert live_consumer.proc.poll() is None
    # Files stored after the snapshot were there to walk, and were left out.
    assert manifest.skipped >= PER_BATCH

    restored, _ = restored_runtime(monkeypatch, tmp_path, cli, dest)
    rdb, ldb = restored.ledger, live.ledger
    messages = rdb.rows("SELECT id, parcel_id, envelope FROM messages ORDER BY id")
    assert 0 < len(messages) == manifest.messages < total
    # A point in time: the restored messages are exactly the live ones up to the last of them,
    # and the parcels exactly the first ones sent.
    last = messages[-1]["id"]
    assert messages == ldb.rows(
        "SELECT id, parcel_id, envelope FROM messages WHERE id <= ? ORDER BY id", (last,)
    )
    restored_parcels = [r["id"] for r in rdb.rows("SELECT id FROM parcels ORDER BY seq")]
    assert restored_parcels == [
        r["id"]
        for r in ldb.rows("SELECT id FROM parcels ORDER BY seq LIMIT ?", (len(restored_parcels),))
    ]
    # Delivered after the backup: in the live ledger, not in the restored one.
    later = {
        r["parcel_id"] for r in ldb.rows("SELECT parcel_id FROM messages WHERE id > ?", (last,))
    }
    assert len(later) >= PER_BATCH
    assert not later & {m["parcel_id"] for m in messages}
    # Every restored message has its artifacts, and their blobs are there and verify.
    for m in messages:
        arts = rdb.rows("SELECT kind, hash FROM artifacts WHERE parcel_id = ?", (m["parcel_id"],))
        assert {a["kind"] for a in arts} == {"attachment", "manifest"}
        for a in arts:
            assert restored.store.read(a["hash"])
    counters_match_table(restored)
    report = cas_tools.verify(restored.ledger, restored.store)
    assert report.clean and not report.orphaned and report.rows == manifest.blobs

    # The restored root delivers what was still waiting at the snapshot.
    live_consumer.stop()
    consumers("postmaster")
    expected = len(restored_parcels)
    wait_for(lambda: delivered(restored) == expected, 60, "the restored root to deliver")
    assert rdb.scalar("SELECT count(*) FROM messages") == expected
    counters_match_table(restored)
    restored.close()


@ON_OBJECTS_TOO
def test_a_byte_flipped_in_the_live_store_after_a_backup_is_not_in_the_backup(
    runtime, taken, cli, tmp_path, monkeypatch
):
    digest = blob_hashes(runtime)[0]
    good = runtime.store.read(digest)
    # In place (the file's inode, the ledger's row), as a failing disk or a stray write would.
    blobs.damage(runtime.store, digest)
    copy = ContentStore(taken / "orchestration" / "cas")
    assert copy.read(digest) == good
    assert backup_module.verify(taken).blobs == len(blob_hashes(runtime))
    restored, _ = restored_runtime(monkeypatch, tmp_path, cli, taken)
    assert restored.store.read(digest) == good
    restored.close()


def test_backup_verify_reads_back_what_it_wrote(runtime, cli, tmp_path):
    filled(runtime, 3)
    dest = tmp_path / "verified"
    result = cli("backup", str(dest), "--verify")
    assert result.code == 0, result.err
    databases = "1 database" if runtime.ledger.dialect == "postgresql" else "2 databases"
    assert f"verified: {databases} and 6 blobs read back and hash-checked" in result.out
    assert cli("backup", str(tmp_path / "v2"), "--verify", "--json").json()["verified"] is True
    # Damage after the fact is found, and named.
    digest = blob_hashes(runtime)[1]
    path = ContentStore(dest / "orchestration" / "cas").path_for(digest)
    path.write_bytes(path.read_bytes() + b"!")
    with pytest.raises(backup_module.DamagedBackup, match=f"blob {digest} does not match"):
        backup_module.verify(dest)


KEY = "k" * 32


def test_a_signed_backup_restores_and_a_tampered_one_is_refused(
    runtime, cli, tmp_path, monkeypatch
):
    filled(runtime, 2)
    monkeypatch.setenv("SEER_BACKUP_KEY", KEY)
    signed = tmp_path / "signed"
    result = cli("backup", str(signed), "--sign", "--verify")
    assert result.code == 0, result.err
    assert "(signed with SEER_BACKUP_KEY)" in result.out
    assert "signature" in json.loads((signed / "manifest.json").read_text())
    # A forged ledger with its SHA-256 recomputed in the manifest: caught by the signature.
    forged = tmp_path / "forged"
    assert cli("backup", str(forged)).code == 0
    manifest = json.loads((forged / "manifest.json").read_text())
    ledger = ledger_file(forged)
    with open(ledger, "ab") as f:
        f.write(b"\0" * 4096)
    for db in manifest["databases"]:
        if db["name"] == ledger.name:
            db["size"] = ledger.stat().st_size
            db["sha256"] = sha256(ledger)
    (forged / "manifest.json").write_text(json.dumps(manifest))
    use_root(monkeypatch, tmp_path / "target")
    line = one_line_failure(cli("restore", str(forged)), 1)
    assert "signature does not match" in line
    assert not (tmp_path / "target" / ".seer-root").exists()
    # The genuine one restores.
    monkeypatch.setenv("SEER_BACKUP_KEY", KEY)
    restored, _ = restored_runtime(monkeypatch, tmp_path, cli, signed, name="good")
    restored.close()


def test_with_a_key_set_an_unsigned_backup_is_refused(runtime, cli, tmp_path, monkeypatch):
    filled(runtime, 1)
    unsigned = tmp_path / "unsigned"
    assert cli("backup", str(unsigned)).code == 0
    one_line_failure(cli("backup", str(tmp_path / "x"), "--sign"), 2)
    monkeypatch.setenv("SEER_BACKUP_KEY", KEY)
    use_root(monkeypatch, tmp_path / "target")
    line = one_line_failure(cli("restore", str(unsigned)), 2)
    assert "not signed" in line and "SEER_BACKUP_KEY" in line
    with pytest.raises(backup_module.BackupRefused):
        backup_module.verify(unsigned, KEY)
    # Without the key, the same backup is what it always was: checked by its SHA-256s only.
    assert backup_module.verify(unsigned).blobs == 2
