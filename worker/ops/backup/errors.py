"""What a backup, a restore or a verify refuses, each one line that says what is wrong."""

from __future__ import annotations


class BackupError(Exception):
    """A backup or restore could not be done: one line, says what is wrong."""


class BackupRefused(BackupError):
    """The caller asked for something unsafe (a non-empty destination or target): nothing done."""


class DamagedBackup(BackupError):
    """The backup does not match its manifest, or a blob in it does not match its hash."""
