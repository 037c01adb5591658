"""Stopping a run cleanly on SIGINT (Ctrl-C) or SIGTERM (a scheduler, ``kill``).

The first signal only records a request: the loop finishes the step it is in, writes a
checkpoint and returns, so nothing since the last checkpoint is lost. A second signal while
that happens interrupts at once (``KeyboardInterrupt``), for a user who will not wait.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Context manager that turns SIGINT/SIGTERM into a flag the loop polls.

    Outside the main thread (where Python cannot install handlers) it installs nothing and
    ``signum`` stays ``None``; the caller's own handling applies.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def request(self, signum: int = signal.SIGINT) -> None:
        """Ask the loop to stop (what a signal does; also for tests and embedding code)."""
        self.signum = signum

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt  # second signal: the user does not want to wait
        self.signum = signum

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
