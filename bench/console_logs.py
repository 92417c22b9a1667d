"""Logs view benchmark (issue 14 item 4): a 1 GB log opened at its end, its last error, a
search that has far to go; against the naive way of reading the end of a file.

    .venv/bin/python bench/console_logs.py [--reps 20] [--code HEAD] [--dir DIR] [--keep]

1. A storage root (`seer init`) in --dir (default /tmp/seer-bench-logs), its
   logs/seer-postmaster.log written with ~9.5 million realistic lines (Huey's consumer format,
   INFO mostly, DEBUG, WARNING; an ERROR every ~50,000 lines in the first 900 MB, none in
   the last 100 MB but one at ~60 MB from the end; a traceback after each error; the word
   "NEEDLE-NEAR-START" on line 100 only). Reused when present with the same size (writing it
   takes ~30 s); deleted at the end unless --keep.
2. Median and p95 of --reps, after a warm-up (the file is in the page cache: this measures
   the code, not the disk):
   a. the service: worker/ops/logs.tail of the lines the view opens with (OPEN_LINES);
      baseline in the same run, the naive way: collections.deque(open(f), maxlen=N);
   b. the view: a headless console (run_test, 120x40, a new app each time), from the key L
      sent to the view mounted, to its first read answered, to the file's last line drawn
      (rendered into a frame; goal < 100 ms);
   c. `e` in the view, from the end: until the last error (60 MB up) is the current line
      (keys sent as the terminal does, polled every ms: Pilot's waits are not the view's);
      the service's own last_error steps, for scale;
   d. `/` a text near the start, from the end: from enter until the view says where one
      press stopped (SEARCH_LIMIT bytes read), and once, the presses of n until found.

The code measured is the commit --code (default HEAD) of worker/ and seer_console/ (git
archive into a temporary directory, first on the import path): others edit the tree meanwhile.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import median_p95, snapshot_code, timed  # bench/ is sys.path[0] when a bench runs

GB = 1024**3
SIZE = GB
NEEDLE = "NEEDLE-NEAR-START"
LAST_ERROR_FROM_END = 60 * 1024**2
QUIET_TAIL = 100 * 1024**2  # no ERROR in the last 100 MB but the one above


def _stamp(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def write_log(path: Path, size: int = SIZE) -> int:
    """~`size` bytes of the postmaster's log; returns its size."""
    agents = ("planner", "coder", "reviewer", "researcher", "writer", "critic")
    start = 1_795_000_000.0
    n = 0
    written = 0
    error_at = size - LAST_ERROR_FROM_END
    put_error = False
    with open(path, "w", buffering=4 * 1024**2) as f:
        while written < size:
            batch = []
            for _ in range(10_000):
                ts = start + n * 0.01
                stamp = f"[{_stamp(ts)},{n % 1000:03d}]"
                agent = agents[n % 6]
                quiet = written >= size - QUIET_TAIL
                if n == 100:
                    line = f"{stamp} INFO:seer:agent {agent} says {NEEDLE} once\n"
                elif not put_error and written >= error_at:
                    put_error = True
                    line = f"{stamp} ERROR:huey.consumer:Unhandled exception in task {n:08x}.\n"
                elif n % 50_000 == 49_999 and not quiet:
                    line = (
                        f"{stamp} ERROR:huey.consumer:Unhandled exception in task {n:08x}.\n"
                        "Traceback (most recent call last):\n"
                        '  File "worker/postmaster.py", line 180, in _deliver\n'
                        "TimeoutError: agent inbox store did not answer within 30s\n"
                    )
                elif n % 97 == 13:
                    line = f"{stamp} WARNING:seer:parcel {n:08x}-5eed to {agent}: try 2 of 5\n"
                elif n % 11 == 3:
                    line = f"{stamp} DEBUG:seer:claimed {n % 7 + 1} parcels for {agent}\n"
                else:
                    line = (
                        f"{stamp} INFO:huey:Executing worker.tasks.deliver: "
                        f"{n:08x}-5eed-4000-8000-{n:012d} ({agent})\n"
                    )
                batch.append(line)
                n += 1
            text = "".join(batch)
            f.write(text)
            written += len(text)
    return path.stat().st_size


def naive_tail(path: Path, lines: int) -> list[str]:
    with open(path, errors="replace") as f:
        return list(collections.deque(f, maxlen=lines))


def row(label: str, values: list[float], goal: str = "") -> str:
    med, p95 = median_p95(values)
    return f"  {label:<58} {med * 1000:>10.1f} {p95 * 1000:>10.1f}  {goal}"


def press(app: Any, key: str) -> None:
    """The key as the terminal sends it, without Pilot's waits for idle (which take 100s of
    ms on a busy machine and are not the view's)."""
    from textual import events

    event = events.Key(key, key if len(key) == 1 else None)  # "enter" is no character
    event.set_sender(app)
    app._driver.send_message(event)


async def view_open(app_factory: Any, last: str, reps: int) -> dict[str, list[float]]:
    """From L sent to: the view mounted, its first read answered, the last line on screen."""
    from seer_console.views.logs import LogLines, LogsView

    drawn: list[float] = []
    render_line = LogLines.render_line

    def rendered(self: Any, y: int) -> Any:
        # The last line rendered into a frame: on screen, not only scrolled to.
        strip = render_line(self, y)
        if self.lines and self.scroll_offset.y + y == len(self.lines) - 1 and not drawn:
            drawn.append(time.perf_counter())
        return strip

    LogLines.render_line = rendered  # type: ignore[method-assign]
    out: dict[str, list[float]] = {"mounted": [], "read": [], "shown": []}
    for i in range(reps + 2):  # the first two warm up
        app = app_factory()
        async with app.run_test(size=(120, 40)) as pilot:
            await app.workers.wait_for_complete()
            await pilot.pause()
            marks: dict[str, float] = {}
            drawn.clear()
            t = time.perf_counter()
            press(app, "L")
            while True:
                view = app.screen
                now = time.perf_counter()
                if isinstance(view, LogsView) and view.is_mounted:
                    marks.setdefault("mounted", now)
                    if view.body.lines:
                        marks.setdefault("read", now)
                    seen = view.body.shown_lines()
                    if drawn and seen is not None and seen[1].text == last:
                        marks["shown"] = drawn[0]
                        break
                await asyncio.sleep(0.001)
            if i >= 2:
                for name, at in marks.items():
                    out[name].append(at - t)
    return out


async def view_keys(app_factory: Any, last: str, reps: int) -> dict[str, Any]:
    """`e` from the end, `/` NEEDLE's first press, then n until found, in one app."""
    from textual.widgets import Input

    from seer_console.views.logs import LogsView

    found: dict[str, Any] = {"error": [], "search": []}
    app = app_factory()
    async with app.run_test(size=(120, 40)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.press("L")
        view = app.screen
        assert isinstance(view, LogsView)

        async def until(condition: Any, limit: float = 120.0) -> None:
            deadline = time.monotonic() + limit
            while not condition():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not within {limit}s: {view.progress}")
                await pilot.pause()

        async def until_soon(condition: Any, limit: float = 120.0) -> None:
            # Polled every ms, not through Pilot's waits for idle: those are not the view's.
            deadline = time.monotonic() + limit
            while not condition():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not within {limit}s: {view.progress}")
                await asyncio.sleep(0.001)

        async def at_end() -> None:
            await pilot.press("G")
            await until(lambda: view.body.shown_lines() and view.body.shown_lines()[1].text == last)
            await app.workers.wait_for_complete()
            await pilot.pause()

        for i in range(reps + 1):
            await at_end()
            t = time.perf_counter()
            press(app, "e")
            await until_soon(lambda: view.body.current is not None)
            if i:
                found["error"].append(time.perf_counter() - t)
        found["error_line"] = view.body.lines[view.body.index_of(view.body.current)].text
        for i in range(reps + 1):
            await at_end()
            await pilot.press("slash")
            view.query_one("#logs-search", Input).value = NEEDLE  # typed: not timed
            view.progress = None  # the last press's words are not this one's answer
            t = time.perf_counter()
            press(app, "enter")
            await until_soon(lambda: "looks on" in (view.progress or ""))
            if i:
                found["search"].append(time.perf_counter() - t)
        found["search_said"] = view.progress
        # Once: n until the line near the start is found, each press a bounded slice.
        await app.workers.wait_for_complete()
        found["current_before_walk"] = view.body.current
        view.body.current = None
        t = time.perf_counter()
        presses = 0
        while view.body.current is None:
            said = view.progress
            press(app, "n")
            presses += 1
            await until_soon(lambda s=said: view.body.current is not None or view.progress != s)
            await until_soon(lambda: view.body.current is not None or "looks on" in view.progress)
        found["walk"] = (time.perf_counter() - t, presses + 1)
        found["walk_line"] = view.body.lines[view.body.index_of(view.body.current)].text
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--code", default="HEAD", help="the commit measured, or 'worktree'")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/seer-bench-logs"))
    parser.add_argument("--keep", action="store_true", help="keep the 1 GB log for next time")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="seer-bench-logs-code-"))
    try:
        return run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(args.dir, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> int:
    label = snapshot_code(work / "code", args.code)
    print(f"code: {label}")
    root = args.dir / "storage"
    os.environ["SEER_STORAGE_PATH"] = str(root)
    os.environ.pop("SEER_ENV_FILE", None)
    if not (root / ".seer-root").exists():
        subprocess.run([str(Path(sys.executable).parent / "seer"), "init"], check=True)
    path = root / "logs" / "seer-postmaster.log"
    marker = args.dir / "size"
    if path.exists() and marker.exists() and marker.read_text() == str(path.stat().st_size):
        print(f"log: {path} reused ({path.stat().st_size:,} bytes)")
    else:
        t = time.perf_counter()
        size = write_log(path)
        marker.write_text(str(size))
        print(f"log: {path} written, {size:,} bytes in {time.perf_counter() - t:.0f} s")

    from seer_console.app import SeerConsole
    from seer_console.source import SnapshotSource
    from seer_console.views import logs as view_logs
    from worker.layout import Layout
    from worker.ops import logs

    log = logs.log_file(Layout(root), "postmaster")
    lines = view_logs.OPEN_LINES
    # Warm the page cache: the figures are the code's, not the disk's.
    with open(path, "rb") as f:
        while f.read(16 * 1024**2):
            pass
    last = logs.tail(log, 1).lines[-1].text

    service = timed(lambda: logs.tail(log, lines), args.reps)
    read = logs.tail(log, lines).read
    naive = timed(lambda: naive_tail(path, lines), args.reps, warmup=1)
    assert naive_tail(path, 1)[0].rstrip("\n") == last

    def error_by_service() -> logs.Found:
        step = logs.last_error(log)
        while step.line is None and not step.done:
            step = logs.last_error(log, step.offset)
        return step

    error_service = timed(error_by_service, args.reps, warmup=1)

    def app() -> SeerConsole:
        return SeerConsole(SnapshotSource(), live=False)

    opened = asyncio.run(view_open(app, last, args.reps))
    keys = asyncio.run(view_keys(app, last, args.reps))

    size = path.stat().st_size
    print()
    print(
        f"Logs view, a {size / GB:.2f} GiB log (page cache warm), median and p95 of {args.reps}, ms"
    )
    print(f"  {'':<58} {'median':>10} {'p95':>10}")
    print(row(f"a. service: tail {lines} lines (read {read:,} bytes)", service))
    print(row(f"   naive: deque(open(f), maxlen={lines}) (reads it all)", naive))
    ratio = median_p95(naive)[0] / median_p95(service)[0]
    print(f"     naive / service: {ratio:,.0f}x")
    print(row("b. view: L until the view is mounted", opened["mounted"]))
    print(row("   L until its read of the end is answered", opened["read"]))
    print(
        row(
            "   L until the last line is drawn (rendered into a frame)",
            opened["shown"],
            "goal < 100 ms",
        )
    )
    print(
        row(
            f"c. view: e from the end until the last error ({LAST_ERROR_FROM_END >> 20} MiB up)",
            keys["error"],
        )
    )
    print(row("   service: last_error steps until found", error_service))
    print(
        row(
            f"d. view: / {NEEDLE} from the end: one press ({view_logs.SEARCH_LIMIT >> 20} MiB)",
            keys["search"],
        )
    )
    walk, presses = keys["walk"]
    print(f"     it says: {keys['search_said']}")
    print(
        f"     then n until found: {presses} presses in all, {walk:.2f} s (once, after the first)"
    )
    print(f"     found: {keys['walk_line'][:90]}")
    if keys["current_before_walk"] is not None:
        print(f"     (a line was current before the walk: {keys['current_before_walk']})")
    print(f"     last error: {keys['error_line'][:90]}")
    goal = median_p95(opened["shown"])[0] < 0.100
    print(f"\nopen at the end under 100 ms: {'yes' if goal else 'NO'}")
    return 0 if goal else 1


if __name__ == "__main__":
    sys.exit(main())
