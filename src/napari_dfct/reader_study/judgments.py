"""The judgments of a reader study: one append-only CSV file, ``judgments.csv``.

One row per answer, columns :data:`JUDGMENT_COLUMNS`:
``reader,trial,slice,left,right,choice,seconds,time`` with ``left``/``right`` the candidate
names, ``choice`` ``left`` or ``right``, ``seconds`` the decision time and ``time`` the
moment of the answer (ISO 8601 with the UTC offset).

What the file guarantees:

* **Nothing recorded is lost.** Each answer is one ``os.write`` of one whole line to a
  file opened with ``O_APPEND``, then ``fsync``: when :func:`append_judgment` returns, the
  row is on disk. A kill or a power cut loses at most the answer being written.
* **Readers never corrupt each other's rows.** With ``O_APPEND`` the kernel places every
  write at the current end of the file, so two processes appending at once write whole
  lines one after the other, never interleaved. An exclusive advisory lock (``flock``,
  where the platform has it) around the torn-line check and the write keeps one
  appender from mistaking another's write in flight for a torn line.
* **The header is written once,** with the file: it is created complete (header written
  into a temporary file, fsynced, then hard-linked into place, which fails when the file
  already exists), so no process ever appends to a file without its header.
* **A torn last line** (a crash mid-write) is skipped with a warning by
  :func:`read_judgments`; the next append first ends it with a line break, so the torn
  fragment never swallows a later row.

When a reader answers a trial twice (a study that allows going back), the last answer
counts (:func:`latest`).

This module imports neither Qt nor napari.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import secrets
import warnings
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: appends are not serialised
    fcntl = None  # type: ignore[assignment]

from .._files import _fsync_dir
from .study import Study, Trial, validate_name

__all__ = [
    "CHOICES",
    "JUDGMENTS_FILE",
    "JUDGMENT_COLUMNS",
    "answered",
    "append_judgment",
    "latest",
    "next_trial",
    "read_judgments",
]

JUDGMENT_COLUMNS = ("reader", "trial", "slice", "left", "right", "choice", "seconds", "time")
#: The judgments file in the study folder.
JUDGMENTS_FILE = "judgments.csv"
#: The two answers.
CHOICES = ("left", "right")
_HEADER = (",".join(JUDGMENT_COLUMNS) + "\n").encode()


def _path(study_dir: str | os.PathLike) -> Path:
    return Path(study_dir) / JUDGMENTS_FILE


def _create(path: Path) -> None:
    """Create ``path`` holding just the header, atomically; nothing when it exists."""
    if path.exists():
        return
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "xb") as fh:
            fh.write(_HEADER)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return
        except OSError:  # pragma: no cover - a file system without hard links
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                return
            try:
                os.write(fd, _HEADER)
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(path.parent)
    finally:
        try:
            tmp.unlink()
        except OSError:
            pass


def _time_text(time: Any) -> str:
    if time is None:
        time = _dt.datetime.now(_dt.timezone.utc).astimezone()
    if isinstance(time, _dt.datetime):
        if time.tzinfo is None:
            time = time.astimezone()
        return time.isoformat(timespec="milliseconds")
    text = str(time)
    if _parse_time(text) is None:
        raise ValueError(f"time {text!r} is not an ISO 8601 time with a UTC offset")
    return text


def _parse_time(text: str) -> _dt.datetime | None:
    try:
        t = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


def append_judgment(
    study: Study,
    reader: str,
    trial: Trial,
    choice: str,
    seconds: float,
    time: Any = None,
) -> None:
    """Append one answer to the study's ``judgments.csv`` (the module's guarantees).

    Parameters
    ----------
    study : Study
    reader : str
        The reader's name or initials (no comma, quote or line break).
    trial : Trial
        One of ``study.trials``.
    choice : str
        ``"left"`` or ``"right"``: the side the reader found better.
    seconds : float
        Decision time (finite, not negative).
    time : datetime or str, optional
        When the answer was given (default: now, local time with its UTC offset).

    Raises
    ------
    ValueError
        A bad reader name, choice, decision time or time; a trial that is not the study's;
        a trial the reader has answered when the study does not allow going back.
    """
    reader = validate_name(reader, "reader name")
    if choice not in CHOICES:
        raise ValueError(f"choice must be 'left' or 'right', got {choice!r}")
    seconds = float(seconds)
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"decision time must be a finite number of seconds >= 0, got {seconds}")
    if not (0 <= trial.index < len(study.trials)) or study.trials[trial.index] != trial:
        raise ValueError(f"trial {trial.index} is not a trial of {study.dir}")
    if not study.allow_back and _has_answer(_path(study.dir), reader, trial.index):
        raise ValueError(f"{reader} has already answered trial {trial.index}")
    fields = (reader, trial.index, trial.slice, trial.left, trial.right, choice)
    line = ",".join(map(str, fields)) + f",{seconds:.3f},{_time_text(time)}\n"
    path = _path(study.dir)
    _create(path)
    fd = os.open(path, os.O_RDWR | os.O_APPEND)
    try:
        _lock(fd)  # released by os.close, or by the kernel when the process dies
        data = line.encode("utf-8")
        if not _ends_with_newline(fd):
            data = b"\n" + data  # close a torn line left by a crash
        written = os.write(fd, data)
        if written != len(data):  # pragma: no cover - a full disk
            raise OSError(f"{path}: only {written} of {len(data)} bytes written")
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(fd: int) -> None:
    """Hold an exclusive advisory lock on ``fd`` until it is closed (no-op without fcntl).

    The torn-line check reads the file's size and last byte; another process's append in
    flight can show a size that ends mid-line (Linux grows the size page by page while it
    copies a write that crosses a page boundary), and the check would then add a line break
    of its own: an empty line. The lock makes check and write one step among appenders.
    """
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)


def _ends_with_newline(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size == 0 or os.pread(fd, 1, size - 1) == b"\n"


def _has_answer(path: Path, reader: str, index: int) -> bool:
    """Whether ``path`` holds a complete, valid row of ``reader`` on trial ``index`` (the
    rows :func:`read_judgments` returns), without parsing the whole file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return False
    key = f"\n{reader},{index},".encode()
    at = data.find(key)
    while at >= 0:
        end = data.find(b"\n", at + 1)
        if end >= 0 and _row(data[at + 1 : end].decode("utf-8", errors="replace")) is not None:
            return True
        at = data.find(key, at + 1)
    return False


def _row(line: str) -> dict | None:
    parts = line.split(",")
    if len(parts) != len(JUDGMENT_COLUMNS):
        return None
    row: dict[str, Any] = dict(zip(JUDGMENT_COLUMNS, parts))
    try:
        row["trial"] = int(row["trial"])
        row["slice"] = int(row["slice"])
        row["seconds"] = float(row["seconds"])
    except ValueError:
        return None
    if row["choice"] not in CHOICES or not row["reader"] or _parse_time(row["time"]) is None:
        return None
    return row


def read_judgments(study_dir: str | os.PathLike) -> list[dict]:
    """Every complete row of ``judgments.csv`` as a dict (``trial``, ``slice`` int,
    ``seconds`` float, the rest str), in file order; ``[]`` when there is no file yet.

    A torn last line (no line break: a crash mid-write) and malformed lines are skipped
    with a warning; ValueError when the file does not start with the header.
    """
    path = _path(study_dir)
    if not path.is_file():
        return []
    data = path.read_bytes()
    if not data:
        return []
    lines = data.split(b"\n")
    if not data.startswith(_HEADER):
        raise ValueError(f"{path} does not start with the header {_HEADER.decode().strip()}")
    tail = lines.pop()  # b"" when the file ends with a line break
    if tail:
        warnings.warn(
            f"{path}: skipped a torn last line (an answer interrupted while being written)",
            stacklevel=2,
        )
    rows = []
    for number, raw in enumerate(lines[1:], start=2):
        if not raw.strip():
            continue
        row = _row(raw.decode("utf-8", errors="replace").rstrip("\r"))
        if row is None:
            warnings.warn(f"{path}: skipped malformed line {number}", stacklevel=2)
            continue
        rows.append(row)
    return rows


def latest(rows: list[dict]) -> list[dict]:
    """One row per (reader, trial): the last answer, in the order of those last answers."""
    last: dict[tuple[str, int], dict] = {}
    for row in rows:
        key = (row["reader"], row["trial"])
        last.pop(key, None)
        last[key] = row
    return list(last.values())


def answered(study: Study, reader: str) -> set[int]:
    """The trial indices ``reader`` has answered."""
    reader = validate_name(reader, "reader name")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = read_judgments(study.dir)
    return {r["trial"] for r in rows if r["reader"] == reader}


def next_trial(study: Study, reader: str) -> int | None:
    """The first trial ``reader`` has not answered, in study order; None when done."""
    done = answered(study, reader)
    return next((t.index for t in study.trials if t.index not in done), None)
