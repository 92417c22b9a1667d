"""The README's screenshots: which snapshot test draws each one. `make screenshots` runs
`python -m tests.screenshots`, which regenerates those snapshots and copies them into
screenshots/; tests/test_screenshots.py checks that what is there is what the tests draw
and that the README shows each one."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
SNAPSHOTS = TOP / "tests" / "__snapshots__"

# screenshots/<name> -> tests/__snapshots__/<module>/<snapshot>
SHOTS: dict[str, str] = {
    "main-80x24.svg": "test_console/test_snapshot_main_80x24.svg",
    "main-120x40-paused.svg": "test_console/test_snapshot_main_120x40_paused.svg",
    "failure-detail.svg": "test_console/test_snapshot_failure_detail.svg",
    "help.svg": "test_console/test_snapshot_help.svg",
    "confirm-purge.svg": "test_console/test_snapshot_confirmation.svg",
    "hosts-120x40.svg": "test_hosts/test_snapshot_three_hosts_120x40.svg",
    "parcels-120x40.svg": "test_view_parcels/test_snapshot_view[size1].svg",
    "parcel-life-120x40.svg": "test_view_parcels/test_snapshot_life[size1].svg",
    "inboxes-120x40.svg": "test_view_inboxes/test_snapshot_view[size1].svg",
    "inbox-message-120x40.svg": "test_view_inboxes/test_snapshot_message[size1].svg",
    "logs-120x40.svg": "test_view_logs/test_snapshot_logs_120x40_search.svg",
    "schedule-120x40.svg": "test_view_schedule/test_snapshot_view[size1].svg",
    "history-120x40.svg": "test_view_history/test_snapshot_history_120x40_week.svg",
}


def snapshot(shot: str) -> Path:
    return SNAPSHOTS / SHOTS[shot]


def main() -> int:
    modules = sorted({f"tests/{SHOTS[shot].split('/')[0]}.py" for shot in SHOTS})
    # Only the snapshot tests: the modules' other tests are not what draws the pictures.
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *modules]
    done = subprocess.run([*command, "-k", "snapshot", "--snapshot-update"], cwd=TOP)
    if done.returncode not in (0, 1):  # 1: the snapshots changed, which is why this runs
        return done.returncode
    for shot in SHOTS:
        shutil.copyfile(snapshot(shot), TOP / "screenshots" / shot)
        print(f"screenshots/{shot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
