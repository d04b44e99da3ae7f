"""One grid per folder: the lock file ``OUT/grid.lock`` (no science here).

:func:`grid_lock` holds a grid folder for the length of a ``with`` block. The lock file is
created with ``O_CREAT | O_EXCL`` (so exactly one process creates it) and names its owner:
host, pid, the pid's start time, when it started and the command. A second grid on the
same folder gets :class:`GridLocked`, one line that names the holder. A lock whose owner
is gone (a process of this host that no longer runs, is a zombie or whose pid now belongs
to another process: :func:`napari_dfct._procs.pid_alive`) is taken over; one of another
host is never taken over (its pid cannot be checked from here): the message says how to
remove it. The lock goes when the block ends, by an exception too (Ctrl-C and
``SIGTERM`` arrive as exceptions through
:func:`napari_dfct.experiment._procs.stop_on_signals`); a killed grid leaves it for the
next grid to take over. Within one process the lock is re-entrant (the CLI holds it while
it simulates data, :func:`napari_dfct.experiment.run_grid` while it runs the grid).

Reading a grid folder (``dfct grid-report``, :func:`grid_status`) takes no lock;
:func:`lock_holder` tells a reader whether a grid runs there.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["LOCK_FILE", "GridLocked", "check_grid_folder", "grid_lock", "lock_holder"]

LOCK_FILE = "grid.lock"
_WRITE_WAIT = 1.0
"""Seconds to wait for the content of a lock file that another process has just created."""
_HELD: dict[Path, int] = {}
_GUARD = threading.Lock()


class GridLocked(ValueError):
    """Another grid holds the folder (a :class:`ValueError`: one line in the CLI)."""


def check_grid_folder(out_dir: str | os.PathLike) -> Path:
    """The grid folder ``out_dir``, created with its parents; ``ValueError`` (one line)
    when it is a file, lies under a file or cannot be created."""
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a folder: give a folder for the grid")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(
            f"cannot create the grid folder {out}: a part of its path is a file"
        ) from None
    except OSError as exc:
        raise ValueError(f"cannot create the grid folder {out}: {exc.strerror or exc}") from None
    return out


def _record() -> dict:
    from .._procs import process_start

    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_start": process_start(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(sys.argv)[:300],
    }


def _read(path: Path, wait: float = 0.0) -> dict | None:
    """The lock record in ``path``; ``None`` when there is none or it is not readable
    (waiting up to ``wait`` seconds for a file that is being written)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(info, dict) and "pid" in info:
                return info
        except (OSError, ValueError, UnicodeDecodeError):
            pass
        if time.monotonic() >= deadline or not path.is_file():
            return None
        time.sleep(0.05)


def _same(a: dict | None, b: dict | None) -> bool:
    keys = ("host", "pid", "pid_start", "started")
    return a is not None and b is not None and all(a.get(k) == b.get(k) for k in keys)


def _gone(info: dict) -> bool:
    """Whether the owner of a lock record is a process of this host that has ended."""
    from .._procs import pid_alive

    return info.get("host") == socket.gethostname() and not pid_alive(
        info.get("pid"), info.get("pid_start")
    )


def _take_over(path: Path, stale: dict) -> None:
    """Remove the lock ``path`` of a dead owner, unless another process replaced it since
    it was read (then it is put back)."""
    from .._procs import owner_tag

    aside = path.with_name(f"{path.name}.stale-{owner_tag()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:  # another grid took it over first
        return
    if not _same(_read(aside), stale):  # a new owner's lock: give it back
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
        except OSError:  # pragma: no cover - no hard links on this file system
            os.replace(aside, path)
    with contextlib.suppress(OSError):
        aside.unlink()


def _held_message(out: Path, path: Path, info: dict | None) -> str:
    if info is None:
        return (
            f"{path} exists but does not say which grid holds {out}; if no grid runs on "
            "this folder, remove it and start again"
        )
    who = f"pid {info.get('pid')}, started {info.get('started')}"
    if info.get("host") == socket.gethostname():
        return (
            f"{out} is in use by another dfct grid ({who} on this host); wait for it to "
            f"finish or stop it (kill {info.get('pid')}), then start again"
        )
    return (
        f"{out} is in use by a dfct grid on host {info.get('host')} ({who}); if it no "
        f"longer runs there, remove {path} and start again"
    )


def _acquire(out: Path) -> dict:
    path = out / LOCK_FILE
    record = _record()
    for _ in range(5):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            holder = _read(path, wait=_WRITE_WAIT)
            if holder is not None and _gone(holder):
                _take_over(path, holder)
                continue
            raise GridLocked(_held_message(out, path, holder)) from None
        except OSError as exc:
            raise ValueError(
                f"cannot write to the grid folder {out}: {exc.strerror or exc}"
            ) from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(record, fh)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException as exc:
            with contextlib.suppress(OSError):
                path.unlink()
            if isinstance(exc, OSError):
                raise ValueError(
                    f"cannot write to the grid folder {out}: {exc.strerror or exc}"
                ) from None
            raise
        return record
    raise GridLocked(f"could not take {path}: other grids keep starting on {out}")


def _release(out: Path, record: dict) -> None:
    path = out / LOCK_FILE
    if _same(_read(path), record):  # never another grid's lock
        with contextlib.suppress(OSError):
            path.unlink()


@contextlib.contextmanager
def grid_lock(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold the grid folder ``out_dir`` (created) within the block; yield the folder.

    Raises
    ------
    GridLocked
        Another live grid holds the folder (or its lock cannot be read).
    ValueError
        The folder is a file, or cannot be created or written.
    """
    out = check_grid_folder(out_dir).resolve()
    with _GUARD:
        nested = out in _HELD
        if nested:
            _HELD[out] += 1
    if nested:
        try:
            yield out
        finally:
            with _GUARD:
                _HELD[out] -= 1
        return
    record = _acquire(out)
    with _GUARD:
        _HELD[out] = 1
    try:
        yield out
    finally:
        with _GUARD:
            _HELD.pop(out, None)
        _release(out, record)


def lock_holder(out_dir: str | os.PathLike) -> dict | None:
    """The lock record of the grid that runs on ``out_dir`` (``None``: none does, or only
    a lock of a dead owner is left there); records of another host are returned as they
    are. Takes no lock and changes nothing."""
    info = _read(Path(out_dir) / LOCK_FILE)
    return None if info is None or _gone(info) else info
