"""CAS put throughput, ledger accounting included, against a plain durable file write.

    .venv/bin/python bench/cas.py [--count 8] [--size-mb 64]

For each of `count` distinct random blobs (os.urandom, generated before its timings), in a fresh
temporary directory, interleaved:

- baseline: sha256 + write to a temp file + fsync + rename into place + fsync of the directory;
- ours: `ContentStore.put(data)` on an initialised storage root (`seer init`), then the blob
  recorded in the ledger as the Postmaster does it: `INSERT OR IGNORE INTO blobs` in a
  `with ledger.write():` transaction, so the counters trigger fires and the commit is durable.

Prints MB/s of each (MB = 2**20 bytes) and the ratio ours / baseline.

    .venv/bin/python bench/cas.py --object-store [--small-count 2000] [--count 8] [--size-mb 64]

The CAS on an S3-compatible object store, against boto3's plain `put_object` of the same bytes
in the same run, on a private Ceph RGW started for the run (tests/rgw_server.py; or the one
AWS_ENDPOINT_URL names, with --endpoint-from-env):

- 1 KB blobs per second with the worker's concurrency (ORCHESTRATION_CAS_CONCURRENCY, 8):
  ours `ObjectStore.put_many` of batches of 100 (a delivery batch), each blob hashed, MD5'd,
  signed and create-only; the baseline `put_object` of the same bytes from 8 threads of one
  client; goal >= 0.8;
- 64 MB blobs in MB/s, one at a time: ours `ObjectStore.put`, the baseline one `put_object`;
  goal >= 0.9.
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
    parser.add_argument(
        "--object-store", action="store_true", help="measure the object store (Ceph RGW)"
    )
    parser.add_argument(
        "--small-count", type=int, default=2000, help="1 KB blobs per side (--object-store)"
    )
    parser.add_argument(
        "--endpoint-from-env",
        action="store_true",
        help="use the store AWS_ENDPOINT_URL and the AWS_* variables name, not a private RGW",
    )
    args = parser.parse_args(argv)
    if args.object_store:
        return object_store(args)

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


def _rounds(name: str, fn_base, fn_ours, rounds: int) -> tuple[float, float]:
    """Interleaved rounds; the total seconds of each side."""
    t_base = t_ours = 0.0
    for i in range(rounds):
        t0 = time.perf_counter()
        fn_base(i)
        t1 = time.perf_counter()
        fn_ours(i)
        t2 = time.perf_counter()
        t_base += t1 - t0
        t_ours += t2 - t1
        print(f"  {name} round {i + 1}: baseline {t1 - t0:6.3f}s | ours {t2 - t1:6.3f}s")
    return t_base, t_ours


def object_store(args: argparse.Namespace) -> int:
    import concurrent.futures
    import contextlib

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.rgw_server import PrivateRgw
    from worker.cas.objects import ObjectStore, make_client

    concurrency = 8
    with contextlib.ExitStack() as stack:
        tmp = Path(tempfile.mkdtemp(prefix="seer-bench-s3-"))
        stack.callback(shutil.rmtree, tmp, True)
        if not args.endpoint_from_env:
            server = stack.enter_context(PrivateRgw(tmp))
            os.environ.update(server.env())
        endpoint = os.environ["AWS_ENDPOINT_URL"]
        import boto3
        from botocore.config import Config

        bucket = f"seer-bench-{time.time_ns():x}"
        # The baseline's client: boto3's defaults but for the checksums RGW 16 cannot take
        # (boto3 1.36+ sends CRC trailers by default), and the same pool size as ours.
        plain = boto3.session.Session().client(
            "s3",
            config=Config(
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                max_pool_connections=concurrency + 2,
                s3={"addressing_style": "path"},
            ),
        )
        plain.create_bucket(Bucket=bucket)
        store = ObjectStore(f"s3://{bucket}/cas", client=make_client(concurrency=concurrency))
        stack.callback(store.close)
        pool = stack.enter_context(concurrent.futures.ThreadPoolExecutor(concurrency))
        print(
            f"object-store benchmark: {endpoint} "
            f"({'private Ceph RGW' if not args.endpoint_from_env else 'AWS_ENDPOINT_URL'}), "
            f"concurrency {concurrency}, python {sys.version.split()[0]}, "
            f"boto3 {boto3.__version__}"
        )

        # 1 KB: batches of 100, as a delivery batch puts them.
        batch = 100
        rounds = max(1, args.small_count // batch)
        small = [[os.urandom(1024) for _ in range(batch)] for _ in range(rounds)]
        warm = [os.urandom(1024) for _ in range(concurrency * 2)]
        store.put_many(warm)
        list(
            pool.map(
                lambda d: plain.put_object(Bucket=bucket, Key=os.urandom(8).hex(), Body=d), warm
            )
        )

        def base_small(i: int) -> None:
            list(
                pool.map(
                    lambda d: plain.put_object(
                        Bucket=bucket, Key=f"plain/{hashlib.sha256(d).hexdigest()}", Body=d
                    ),
                    small[i],
                )
            )

        def ours_small(i: int) -> None:
            assert all(r.created for r in store.put_many(small[i]))

        t_base, t_ours = _rounds("1 KB x100", base_small, ours_small, rounds)
        n = rounds * batch
        small_ratio = (n / t_ours) / (n / t_base)
        print(f"1 KB baseline (boto3 put_object, {concurrency} threads): {n / t_base:8.1f} blobs/s")
        print(f"1 KB ours (ObjectStore.put_many, batches of {batch}):  {n / t_ours:8.1f} blobs/s")
        print(
            f"1 KB ratio ours/baseline {small_ratio:.2f} (goal >= 0.8: "
            f"{'met' if small_ratio >= 0.8 else 'NOT met'})"
        )

        size = args.size_mb * MB

        def base_big(i: int) -> None:
            data = big[0]
            plain.put_object(Bucket=bucket, Key=f"plain/big-{i}", Body=data)

        def ours_big(i: int) -> None:
            assert store.put(big[0]).created

        big: list[bytes] = []
        t_base = t_ours = 0.0
        for i in range(args.count):
            big[:] = [os.urandom(size)]
            tb, to = _rounds(
                f"{args.size_mb} MB #{i + 1}",
                lambda _, i=i: base_big(i),
                lambda _, i=i: ours_big(i),
                1,
            )
            t_base += tb
            t_ours += to
        total = args.count * args.size_mb
        big_ratio = (total / t_ours) / (total / t_base)
        print(f"{args.size_mb} MB baseline (boto3 put_object): {total / t_base:7.1f} MB/s")
        print(f"{args.size_mb} MB ours (ObjectStore.put):      {total / t_ours:7.1f} MB/s")
        print(
            f"{args.size_mb} MB ratio ours/baseline {big_ratio:.2f} (goal >= 0.9: "
            f"{'met' if big_ratio >= 0.9 else 'NOT met'})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
