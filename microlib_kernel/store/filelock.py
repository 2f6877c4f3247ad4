"""A single-writer lock next to a database file, naming the process that holds it."""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

from ..errors import DatasourceLocked


class WriterLock:
    """An exclusive ``flock`` on ``<path>.lock``; the file records who holds it.

    ``flock`` locks belong to an open file, so a second host in the same process is
    refused too, and the kernel releases the lock when a holder is killed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path.with_name(path.name + ".lock")
        self._fd: int | None = None

    def acquire(self, target: Path) -> None:
        """Take the lock.

        Raises:
            DatasourceLocked: another process (or host) holds it; the message names it.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            pid = holder.split(" ", 1)[0] if holder else "?"
            if pid == str(os.getpid()):
                raise DatasourceLocked(
                    f"{target} is already open by another Host in this process; "
                    "close it first (host.close()) or use another datasource",
                    path=str(target),
                    pid=os.getpid(),
                ) from None
            raise DatasourceLocked(
                f"{target} is in use by another process (pid {pid}: {holder or 'unknown'}); "
                "stop that process or use another datasource",
                path=str(target),
                pid=int(pid) if pid.isdigit() else None,
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {' '.join(sys.argv)[:200]}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None


def _read_holder(fd: int) -> str:
    try:
        return os.pread(fd, 512, 0).decode(errors="replace").strip()
    except OSError:
        return ""
