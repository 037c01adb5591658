"""One process at a time: an advisory ``flock`` on a lock file that names its holder.

Two trainings in one run folder (or two sweeps over one manifest) would both write the same
checkpoints and logs. The holder keeps an exclusive ``flock`` on the lock file for as long as
it runs and writes its PID into it; the kernel drops the lock when the process dies however it
dies, so a ``kill -9`` never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from rlvlmf.errors import UserError


class ProcessLock:
    """An exclusive, non-blocking lock held by this process.

    Args:
        path: The lock file (created if missing; its folder must exist).
        what: What the lock guards, for the message (``"run folder runs/x"``).

    Raises:
        UserError: On ``acquire``, another process holds the lock; the message names its PID.
    """

    def __init__(self, path: str | os.PathLike[str], what: str) -> None:
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> ProcessLock:
        """Take the lock, or raise ``UserError`` naming the process that has it."""
        if self._fd is not None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UserError(f"{self.what} is in use by process {holder}; wait for it to end "
                            f"or stop it (kill {holder}) before starting another") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (the file stays; an unlocked file means nobody holds it)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ProcessLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
