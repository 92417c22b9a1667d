"""What the benchmarks share: one fixed version of the code, timing, stopping processes."""

from __future__ import annotations

import io
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PACKAGES = ("worker", "seer_console")


def snapshot_code(dest: Path, ref: str) -> str:
    """Puts one fixed version of the code under test first on the import path, here and in every
    process started from here (PYTHONPATH comes before the editable install's finder); says which.

    Others edit the tree while a bench runs, sometimes halfway through a change (a `seer init` of
    newer code than the bench's own imports fails the schema check). So the code is by default
    the commit `ref` (git archive); "worktree" copies the working tree as it is at the start."""
    source = Path(__file__).resolve().parents[1]
    dest.mkdir(parents=True)
    if ref == "worktree":
        for package in PACKAGES:
            shutil.copytree(
                source / package, dest / package, ignore=shutil.ignore_patterns("__pycache__")
            )
        label = "the working tree, copied at the start"
    else:
        git = ["git", "-C", str(source)]
        sha = subprocess.run(
            [*git, "rev-parse", "--short", ref], capture_output=True, text=True, check=True
        ).stdout.strip()
        archive = subprocess.run(
            [*git, "archive", "--format=tar", sha, *PACKAGES], capture_output=True, check=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(dest, filter="data")
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", *PACKAGES],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        label = f"commit {sha}" + (
            f" (uncommitted changes to {len(dirty)} files there are not measured)" if dirty else ""
        )
    sys.path.insert(0, str(dest))
    os.environ["PYTHONPATH"] = str(dest)
    return label


def median_p95(values: list[float]) -> tuple[float, float]:
    """Median and p95 (nearest rank)."""
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return statistics.median(ordered), p95


def timed(call: Callable[[], Any], reps: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        call()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        call()
        out.append(time.perf_counter() - t)
    return out


def stop(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """SIGINT (Huey's graceful stop), wait, kill on timeout."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"  ! pid {proc.pid} did not stop on SIGINT in {timeout}s: killed")
            proc.kill()
            proc.wait()


def tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
