"""CAS put throughput, ledger accounting included, against a plain durable file write.

    .venv/bin/python bench/cas.py [--count 8] [--size-mb 64]

For each of `count` distinct random blobs (os.urandom, generated before its timings), in a fresh
temporary directory, interleaved:

- baseline: sha256 + write to a temp file + fsync + rename into place + fsync of the directory;
- ours: `ContentStore.put(data)` on an initialised storage root (`seer init`), then the blob
  recorded in the ledger as the Postmaster does it: `INSERT OR IGNORE INTO blobs` in a
  `with ledger.write():` transaction, so the counters trigger fires and the commit is durable.

Prints MB/s of each (MB = 2**20 bytes) and the ratio ours / baseline.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
MB = 1024 * 1024


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def baseline_put(directory: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    temp = directory / f".{digest}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o660)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temp, directory / digest)
    fsync_dir(directory)
    return digest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=8, help="distinct blobs (default 8)")
    parser.add_argument("--size-mb", type=int, default=64, help="size of each blob in MB")
    args = parser.parse_args(argv)

    from worker.runtime import Runtime
    from worker.settings import load_settings

    size = args.size_mb * MB
    tmp = Path(tempfile.mkdtemp(prefix="seer-bench-cas-"))
    runtime = None
    try:
        env_file = tmp / "seer.env"
        env_file.write_text("")
        env = dict(os.environ, SEER_STORAGE_PATH=str(tmp / "storage"), SEER_ENV_FILE=str(env_file))
        subprocess.run(
            [str(BIN / "seer"), "init"], cwd=tmp, env=env, check=True, capture_output=True
        )
        runtime = Runtime.open(load_settings(env))
        store, ledger = runtime.store, runtime.ledger
        plain = tmp / "plain"
        plain.mkdir()
        fsync_dir(tmp)
        print(
            f"CAS benchmark: {args.count} distinct blobs of {args.size_mb} MB, "
            f"ledger synchronous={ledger.scalar('pragma synchronous')} (2 = FULL), "
            f"python {sys.version.split()[0]}"
        )
        t_base = t_ours = 0.0
        for i in range(args.count):
            data = os.urandom(size)
            t0 = time.perf_counter()
            baseline_put(plain, data)
            t1 = time.perf_counter()
            result = store.put(data)
            with ledger.write():
                ledger.execute(
                    "INSERT OR IGNORE INTO blobs (hash, size, created_at) VALUES (?, ?, ?)",
                    (result.digest, result.size, time.time()),
                )
            t2 = time.perf_counter()
            assert result.created
            t_base += t1 - t0
            t_ours += t2 - t1
            print(
                f"  blob {i + 1}: baseline {t1 - t0:6.3f}s ({args.size_mb / (t1 - t0):7.1f} MB/s)"
                f" | ours {t2 - t1:6.3f}s ({args.size_mb / (t2 - t1):7.1f} MB/s)"
            )
            del data
        counted = ledger.row(
            "SELECT (SELECT value FROM counters WHERE name = 'cas_blobs') AS blobs, "
            "(SELECT value FROM counters WHERE name = 'cas_bytes') AS bytes"
        )
        assert counted == {"blobs": args.count, "bytes": args.count * size}, counted
        total = args.count * args.size_mb
        base_rate, ours_rate = total / t_base, total / t_ours
        ratio = ours_rate / base_rate
        verdict = "met" if ratio >= 0.7 else "NOT met"
        print(f"baseline (sha256 + write + fsync + rename + dir fsync): {base_rate:7.1f} MB/s")
        print(f"ours (ContentStore.put + ledger blobs row, durable):   {ours_rate:7.1f} MB/s")
        print(
            f"ratio ours/baseline {ratio:.2f} (goal >= 0.7: {verdict});"
            f" ledger counters: cas_blobs {counted['blobs']}, cas_bytes {counted['bytes']}"
        )
    finally:
        if runtime is not None:
            runtime.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
