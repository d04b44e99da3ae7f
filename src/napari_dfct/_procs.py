"""Process lifetimes shared by the package: liveness of a pid, children that die with their
parent, and owner tags of files that a process leaves while it works (no science here).

- :func:`pid_alive` says whether a process of this host still runs. A zombie (a process
  that has ended but was not reaped, as happens to orphans under a container's init) and a
  recycled pid (another process that got the same number; told apart by its start time,
  :func:`process_start`) count as dead.
- :func:`die_with_parent` makes a child process end when the process that started it
  ends, by any signal including ``SIGKILL``: on Linux through ``prctl(PR_SET_PDEATHSIG,
  SIGKILL)``, and everywhere through a watchdog thread that ends the child when its parent
  pid changes (``PR_SET_PDEATHSIG`` fires when the parent *thread* that started the child
  ends, and exists only on Linux, hence both). The grid's pool workers
  (:mod:`napari_dfct.experiment.executors`) and the viewer's training process
  (:func:`napari_dfct.train.process.fit_in_process`) both use it.
- :func:`owner_tag` names this process in the names of hidden work folders
  (``<host>-<pid>``), and :func:`left_by_dead_process` tells whether such a folder was
  left by a process that is gone, so the next run can clean it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

__all__ = [
    "FOREIGN_STALE_AFTER",
    "die_with_parent",
    "host_tag",
    "left_by_dead_process",
    "owner_tag",
    "pid_alive",
    "process_start",
]

_PR_SET_PDEATHSIG = 1
WATCHDOG_INTERVAL = 0.5
"""Seconds between two looks of a child's watchdog at its parent pid."""
FOREIGN_STALE_AFTER = 86400.0
"""Seconds after which a work folder of another host counts as left behind (its pid cannot
be checked from here)."""


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


# --------------------------------------------------------------------------- owner tags
def host_tag() -> str:
    """This host's name with every character but letters and digits as ``_`` (never
    empty): safe in a file name, and free of ``-``."""
    return "".join(c if c.isalnum() else "_" for c in socket.gethostname()) or "host"


def owner_tag() -> str:
    """``<host>-<pid>`` of this process, for the names of hidden work folders."""
    return f"{host_tag()}-{os.getpid()}"


def left_by_dead_process(
    tag: str, path: str | os.PathLike, foreign_after: float = FOREIGN_STALE_AFTER
) -> bool:
    """Whether the work folder ``path``, named with the :func:`owner_tag` ``tag``, was
    left by a process that is gone.

    A tag of this host: its pid is not alive (and is not this process). A tag of another
    host: ``path`` was last changed more than ``foreign_after`` seconds ago. A tag that is
    not ``<host>-<pid>``: never (nothing of unknown origin is removed).
    """
    host, _, pid = str(tag).rpartition("-")
    if not host or not pid.isdigit():
        return False
    if host != host_tag():
        try:
            return time.time() - Path(path).stat().st_mtime > foreign_after
        except OSError:
            return False
    return int(pid) != os.getpid() and not pid_alive(int(pid))


# --------------------------------------------------------------------------- children
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
