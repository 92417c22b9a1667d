"""Who holds a parcel in flight, and whether that holder is still alive.

An owner token names the host (SEER_HOST_ID, else the machine's name), the process (pid and
start time, so a recycled pid is not mistaken for the holder) and the worker thread. Only a
holder on this host can be checked by pid; one elsewhere is judged by its heartbeat
(worker.fleet.consumers).
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started: int
    thread: int

    @property
    def token(self) -> str:
        return f"{self.host}/{self.pid}/{self.started}/{self.thread}"

    @property
    def process_token(self) -> str:
        return f"{self.host}/{self.pid}/{self.started}/"

    @classmethod
    def parse(cls, token: str) -> Owner | None:
        parts = token.rsplit("/", 3)
        if len(parts) != 4 or not all(p.isdigit() for p in parts[1:]):
            return None
        return cls(parts[0], int(parts[1]), int(parts[2]), int(parts[3]))


def _start_ticks(pid: int) -> int:
    process = psutil.Process(pid)
    if process.status() == psutil.STATUS_ZOMBIE:
        # Killed but not yet reaped by its parent: it holds nothing any more.
        raise psutil.ZombieProcess(pid)
    return int(process.create_time() * 100)


def host_name(host_id: str | None = None) -> str:
    """This host's name in the ledger: `host_id` (SEER_HOST_ID) when set, else the machine's."""
    return host_id or socket.gethostname()


def current_owner(host_id: str | None = None) -> Owner:
    """The calling thread as an owner; `host_id`: SEER_HOST_ID (empty: the machine's name)."""
    return Owner(host_name(host_id), os.getpid(), _start_ticks(os.getpid()), threading.get_ident())


def is_alive(owner: Owner, host: str | None = None) -> bool | None:
    """True or False for a holder on this host (`host`: its SEER_HOST_ID, empty or None: the
    machine's name); None when it runs elsewhere (its heartbeat, or else its lease, tells)."""
    if owner.host != host_name(host):
        return None
    try:
        return _start_ticks(owner.pid) == owner.started
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True
