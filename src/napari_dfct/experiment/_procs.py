"""Process lifetimes of the grid: liveness of a pid, workers that die with their parent,
and signals that stop a grid cleanly (no science here).

- :func:`pid_alive` says whether a process of this host still runs. A zombie (a process
  that has ended but was not reaped, as happens to orphans under a container's init) and a
  recycled pid (another process that got the same number; told apart by its start time,
  :func:`process_start`) count as dead.
- :func:`die_with_parent` makes a pool worker end when the process that started it ends,
  by any signal including ``SIGKILL``: on Linux through ``prctl(PR_SET_PDEATHSIG,
  SIGKILL)``, and everywhere through a watchdog thread that ends the worker when its
  parent pid changes (``PR_SET_PDEATHSIG`` fires when the parent *thread* that started the
  worker ends, and exists only on Linux, hence both).
- :func:`stop_on_signals` turns ``SIGINT`` and ``SIGTERM`` into :class:`GridStopped` in
  the main thread, so a grid stops its workers and keeps its finished runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator

__all__ = [
    "GridStopped",
    "die_with_parent",
    "pid_alive",
    "process_start",
    "stop_on_signals",
]

_PR_SET_PDEATHSIG = 1
WATCHDOG_INTERVAL = 0.5
"""Seconds between two looks of a worker's watchdog at its parent pid."""


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


# --------------------------------------------------------------------------- liveness
def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (None: no such file)."""
    try:
        with open(f"/proc/{int(pid)}/stat", encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except (OSError, ValueError):
        return None
    return text[text.rfind(")") + 2 :].split()


def process_start(pid: int | None = None) -> str | None:
    """When process ``pid`` (default: this one) started, as an opaque string that tells it
    apart from a later process with the same pid; ``None`` where unknown (no ``/proc``)."""
    fields = _proc_stat(os.getpid() if pid is None else pid)
    return fields[19] if fields and len(fields) > 19 else None


def pid_alive(pid, start: str | None = None) -> bool:
    """Whether process ``pid`` of this host still runs.

    Parameters
    ----------
    pid : int
        The process id (anything else counts as dead).
    start : str, optional
        Its :func:`process_start`, when it was recorded: a process with the same pid that
        started at another time is another process, and ``pid`` counts as dead.

    A zombie counts as dead. Where ``/proc`` is missing, a process that ``os.kill(pid, 0)``
    reaches counts as alive, and so does one that this user may not signal.
    """
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    if os.path.isdir("/proc/self"):
        fields = _proc_stat(pid)
        if fields is None:
            return False
        if fields[0] in ("Z", "X", "x"):
            return False
        return not (start is not None and len(fields) > 19 and fields[19] != str(start))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


# --------------------------------------------------------------------------- workers
def _set_pdeathsig() -> bool:
    """Ask Linux to send this process ``SIGKILL`` when its parent thread ends."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):  # pragma: no cover - no libc / no prctl
        return False


def _watch_parent(parent_pid: int, interval: float) -> None:  # pragma: no cover - subprocess
    while True:
        if os.getppid() != parent_pid:
            os._exit(1)
        time.sleep(interval)


def die_with_parent(parent_pid: int, interval: float = WATCHDOG_INTERVAL) -> None:
    """End this process as soon as process ``parent_pid`` (its parent) ends.

    Sets ``PR_SET_PDEATHSIG`` on Linux and starts a daemon watchdog thread that calls
    :func:`os._exit` when :func:`os.getppid` is no longer ``parent_pid`` (an orphan is
    adopted by another process). A parent that ended before this call ends this process
    at once.
    """
    parent_pid = int(parent_pid)
    _set_pdeathsig()
    if os.getppid() != parent_pid:  # the parent ended before the line above
        os._exit(1)
    threading.Thread(
        target=_watch_parent,
        args=(parent_pid, float(interval)),
        name="dfct-parent-watchdog",
        daemon=True,
    ).start()


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
