"""Process lifetimes of the grid: liveness of a pid, workers that die with their parent,
and signals that stop a grid cleanly (no science here).

- :func:`pid_alive`, :func:`process_start` and :func:`die_with_parent` live in
  :mod:`napari_dfct._procs` (the viewer's training process uses them too) and are
  re-exported here.
- :func:`stop_on_signals` turns ``SIGINT`` and ``SIGTERM`` into :class:`GridStopped` in
  the main thread, so a grid stops its workers and keeps its finished runs.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

from .._procs import die_with_parent, pid_alive, process_start

__all__ = [
    "GridStopped",
    "die_with_parent",
    "pid_alive",
    "process_start",
    "stop_on_signals",
]


class GridStopped(KeyboardInterrupt):
    """A grid was stopped by a signal (``SIGINT``, ``SIGTERM``).

    A subclass of :class:`KeyboardInterrupt`, so code that cleans up after Ctrl-C cleans up
    after ``SIGTERM`` too; ``signum`` is the signal's number and ``exit_status`` the shell's
    convention for it (130 for ``SIGINT``, 143 for ``SIGTERM``).
    """

    def __init__(self, signum: int):
        self.signum = int(signum)
        super().__init__(f"stopped by {signal_name(signum)}")

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15, and so on."""
    try:
        return signal.Signals(int(signum)).name
    except ValueError:
        return f"signal {signum}"


# --------------------------------------------------------------------------- signals
@contextlib.contextmanager
def stop_on_signals(signums=(signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Within the block, ``SIGINT`` and ``SIGTERM`` raise :class:`GridStopped` in the main
    thread (elsewhere: nothing changes); the previous handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise GridStopped(signum)

    old = {}
    for s in signums:
        with contextlib.suppress(OSError, ValueError):
            old[s] = signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in old.items():
            with contextlib.suppress(OSError, ValueError, TypeError):
                signal.signal(s, h if h is not None else signal.SIG_DFL)
