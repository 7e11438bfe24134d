"""One live job per run folder: a lock file naming its holder (host, pid, since when), kept fresh
by a heartbeat while the run trains, so that two jobs of a grid (a local pool, a Slurm array, a
user's own sbatch scripts) never write one run folder, and a lock left by a killed job is
recognised as stale instead of blocking the folder for ever."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from suite.errors import SuiteError
from suite.results import LOCK_FILE, LOCK_STALE_S

NAME, STALE_S = LOCK_FILE, LOCK_STALE_S  # the run-folder format's (suite/results.py)
BEAT_S = 30.0  # the holder touches its lock this often


class RunLockError(SuiteError, RuntimeError):
    """A run folder that a live job holds; the message names the holder and the lock file."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def stale(holder: dict[str, Any], lock: Path, now: float | None = None) -> bool:
    """Whether a lock's holder is gone: on this host, its pid is not alive; on another host
    (whose processes this one cannot see), its heartbeat is older than STALE_S."""
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        return not _alive(holder["pid"])
    try:
        age = (now or time.time()) - lock.stat().st_mtime
    except FileNotFoundError:
        return True
    return age > STALE_S


class RunLock:
    """`with RunLock(folder):` holds the folder's lock, or raises RunLockError naming the live
    holder. A stale lock is taken over. `active=False` (torchrun ranks other than 0, which
    write nothing) holds nothing."""

    def __init__(self, folder: Path, active: bool = True) -> None:
        self.folder, self.active = Path(folder), active
        self.path = self.folder / NAME
        self.me = {"host": socket.gethostname(), "pid": os.getpid(),
                   "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def __enter__(self) -> RunLock:
        if not self.active:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a stale lock is removed, then O_EXCL decides between takers
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if stale(holder, self.path):
                    self.path.unlink(missing_ok=True)
                    continue
                raise RunLockError(
                    f"{self.folder}: held by pid {holder.get('pid')} on host "
                    f"{holder.get('host')} since {holder.get('since')}: another job is running "
                    f"this run; if it is gone, delete {self.path}") from None
            with os.fdopen(fd, "w") as f:
                json.dump(self.me, f)
            self._beat = threading.Thread(target=self._heartbeat, daemon=True)
            self._beat.start()
            return self
        raise RunLockError(f"{self.path}: other jobs keep taking this run's lock")

    def _holder(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}  # being written, or damaged: judged by its age

    def _heartbeat(self) -> None:
        while not self._stop.wait(BEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                return

    def __exit__(self, *exc: object) -> None:
        if not self.active or self._beat is None:
            return
        self._stop.set()
        if self._holder() == self.me:  # never another job's lock
            self.path.unlink(missing_ok=True)


__all__ = ["NAME", "RunLock", "RunLockError", "stale"]
