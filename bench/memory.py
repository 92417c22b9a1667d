"""Peak memory of the real parcel worker delivering maximum-size parcels (issue 10, item 13).

Queues N parcels of POSTMASTER_MAX_PARCEL_SIZE each (one base64 attachment of random bytes:
nothing to redact, nothing to dedupe), starts `seer worker postmaster` (Huey's consumer runs in
that process) and reads its peak resident set (VmHWM) once every parcel is delivered.
Compared with the figure the settings state: about 3 x POSTMASTER_BATCH_BYTES above the
worker's resident set at rest. With --unbounded the same run is repeated with the byte bound
lifted (batches of POSTMASTER_BATCH_SIZE whatever their size), as before the bound existed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import snapshot_code, stop, tail

MiB = 1024 * 1024


def vm_hwm(pid: int) -> int:
    """Peak resident set of a live process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def queue(root: Path, env: dict[str, str], count: int, size: int) -> None:
    from worker.parcels import intake as parcels
    from worker.runtime import Runtime

    os.environ.update(env)
    runtime = Runtime.open()
    raw = (size - 1024) * 3 // 4  # base64 grows 4/3; room for the rest of the JSON
    for n in range(count):
        content = base64.b64encode(os.urandom(raw)).decode()
        parcel = {
            "to_agent_id": "bench",
            "task_id": f"task-{n}",
            "attachments": {"blob.bin": {"content": content, "encoding": "base64"}},
        }
        parcels.queue_parcels(runtime.ledger, [parcels.validate(parcel, size)])
    runtime.close()


def run(work: Path, count: int, size: int, batch_bytes: str) -> dict:
    root = work / f"root-{batch_bytes}"
    env = {
        **os.environ,
        "SEER_STORAGE_PATH": str(root),
        "POSTMASTER_MAX_PARCEL_SIZE": str(size),
        "POSTMASTER_BATCH_BYTES": batch_bytes,
        "ORCHESTRATION_CAS_MAX_SIZE": "1024G",
    }
    seer = str(Path(sys.executable).parent / "seer")
    subprocess.run([seer, "init"], env=env, check=True, capture_output=True)
    started = time.monotonic()
    queue(root, env, count, size)
    queued = time.monotonic() - started
    log = work / f"worker-{batch_bytes}.log"
    from worker.fleet import consumers, control
    from worker.runtime import Runtime

    os.environ.update(env)
    runtime = Runtime.open()
    # Paused while it starts: "at rest" is the worker up, before any payload is read.
    control.pause(runtime.ledger, by="bench")
    with open(log, "wb") as out:
        proc = subprocess.Popen([seer, "worker", "postmaster"], env=env, stdout=out, stderr=out)
    try:
        while not any(
            c.queue == "postmaster" and consumers.is_up(c)
            for c in consumers.consumers(runtime.ledger)
        ):
            if proc.poll() is not None:
                raise RuntimeError(f"the worker died:\n{tail(log)}")
            time.sleep(0.05)
        time.sleep(1.0)  # let the start-up hook finish; nothing is claimed while paused
        rest = vm_hwm(proc.pid)
        control.resume(runtime.ledger)
        runtime.ring(
            [r["id"] for r in runtime.ledger.rows("SELECT id FROM parcels WHERE state='queued'")]
        )
        began = time.monotonic()
        while True:
            delivered = runtime.ledger.scalar(
                "SELECT count(*) FROM parcels WHERE state = 'delivered'"
            )
            if proc.poll() is not None:
                raise RuntimeError(f"the worker died:\n{tail(log)}")
            if delivered == count:
                break
            if time.monotonic() - began > 1800:
                raise RuntimeError(f"not delivered in 30 min:\n{tail(log)}")
            time.sleep(0.2)
        took = time.monotonic() - began
        peak = vm_hwm(proc.pid)
    finally:
        stop(proc)
        runtime.close()
    return {"rest": rest, "peak": peak, "queued_s": queued, "delivered_s": took}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--size-mb", type=int, default=32, help="POSTMASTER_MAX_PARCEL_SIZE")
    parser.add_argument("--batch-bytes", default="64M")
    parser.add_argument("--unbounded", action="store_true", help="also run without the bound")
    parser.add_argument("--code", default="HEAD")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="seer-bench-memory-") as tmp:
        work = Path(tmp)
        print("code:", snapshot_code(work / "code", args.code))
        size = args.size_mb * MiB
        print(
            f"{args.count} parcels of {args.size_mb} MiB, POSTMASTER_BATCH_BYTES={args.batch_bytes}"
        )
        from worker.settings import parse_size

        bound = parse_size(args.batch_bytes)
        runs = [("bounded", args.batch_bytes)]
        if args.unbounded:
            runs.append(("unbounded", "1024T"))
        results = {}
        for label, batch in runs:
            r = run(work, args.count, size, batch)
            results[label] = r
            print(
                f"  {label:<9} rest {r['rest'] / MiB:7.1f} MiB  peak {r['peak'] / MiB:7.1f} MiB  "
                f"(+{(r['peak'] - r['rest']) / MiB:.1f})  queued in {r['queued_s']:.0f}s, "
                f"delivered in {r['delivered_s']:.0f}s"
            )
        ours = results["bounded"]
        stated = ours["rest"] + 3 * bound
        print(
            f"peak / stated figure (rest + 3 x {args.batch_bytes} = {stated / MiB:.0f} MiB): "
            f"{ours['peak'] / stated:.2f} (goal <= 1.0)"
        )
        if args.unbounded:
            print(f"bounded / unbounded peak: {ours['peak'] / results['unbounded']['peak']:.2f}")
        print(json.dumps({k: {n: round(v) for n, v in r.items()} for k, r in results.items()}))


if __name__ == "__main__":
    main()
