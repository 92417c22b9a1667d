"""The directories a backup goes into and a restore fills: refused unless new or empty, and
emptied again when the work fails, so no half-written backup or root is left behind."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


def is_within(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True


def is_empty_dir(path: Path) -> bool:
    with os.scandir(path) as it:
        return next(it, None) is None


def clear(path: Path, existed: bool) -> None:
    """Removes what a failed backup or restore wrote (the directory was new or empty)."""
    if not path.exists():
        return
    if not existed:
        shutil.rmtree(path, ignore_errors=True)
        return
    with os.scandir(path) as it:
        entries = list(it)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
