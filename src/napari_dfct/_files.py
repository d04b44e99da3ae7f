"""Writing files safely: one atomic-write helper and one JSON writer for the whole package.

* :func:`atomic_write` yields a binary file next to the destination; when the block ends
  without an exception the data are flushed to disk and the file replaces the destination
  in one :func:`os.replace` (then the folder entry is flushed too). A reader therefore sees
  the old file or the complete new one, never a half-written one; an exception removes
  the temporary file and leaves the destination untouched. The temporary file is created
  with a plain ``open`` (mode ``"xb"``), so it honours the umask like any other file the
  package writes.
* :func:`fingerprint` is the one identity of a file's content: its size and SHA-256.
* :func:`user_cache_dir` is the one home of the package's caches (the sample data, ONNX
  exports): ``$NAPARI_DFCT_CACHE_DIR``, else ``$XDG_CACHE_HOME/napari-dfct``, else
  ``~/.cache/napari-dfct``.
* :func:`json_safe` is the one NaN rule: NumPy scalars and arrays become Python values,
  paths strings, and **non-finite floats (NaN, +-inf) become** ``null``, so every JSON file
  written by :func:`write_json` is strict JSON that any reader accepts.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "fingerprint",
    "json_safe",
    "read_json",
    "user_cache_dir",
    "write_json",
]

#: The environment variable that moves every cache of the package (:func:`user_cache_dir`).
CACHE_ENV = "NAPARI_DFCT_CACHE_DIR"


def user_cache_dir() -> Path:
    """The folder of the package's caches: ``$NAPARI_DFCT_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/napari-dfct``, else ``~/.cache/napari-dfct`` (not created here).
    Everything in it can be deleted at any time: it is made again when needed."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "napari-dfct"


def _fsync_dir(folder: Path) -> None:
    """Flush a folder entry to disk (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """Yield a binary file that replaces ``path`` atomically when the block succeeds.

    The folder must exist. Raises :class:`IsADirectoryError` when ``path`` is a folder.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "xb") as fh:  # honours the umask, like a plain open()
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`atomic_write`); return the path."""
    with atomic_write(path) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically, creating missing parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, text.encode("utf-8"))


def fingerprint(path: str | os.PathLike, chunk: int = 1 << 20) -> dict:
    """Size and SHA-256 of a file (of its first and last 64 MiB beyond 1 GiB):
    ``{"bytes": size, "sha256": hex}``."""
    import hashlib

    path = Path(path)
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        if size <= (1 << 30):
            for block in iter(lambda: fh.read(chunk), b""):
                h.update(block)
        else:  # pragma: no cover - large files
            h.update(fh.read(64 << 20))
            fh.seek(size - (64 << 20))
            h.update(fh.read(64 << 20))
    return {"bytes": size, "sha256": h.hexdigest()}


def json_safe(obj: Any) -> Any:
    """``obj`` made strict-JSON-safe: the package's one rule for NaN and friends.

    Dicts (keys as strings), lists and tuples are walked; NumPy arrays and scalars become
    lists and Python numbers; paths become strings; one-element tensors their value;
    non-finite floats (NaN, +inf, -inf) become ``None``.
    """
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if type(obj).__name__ == "Tensor" and hasattr(obj, "numel") and obj.numel() == 1:
        return json_safe(obj.item())
    return obj


def write_json(path: str | os.PathLike, data: Any, indent: int | None = 2) -> Path:
    """Write ``data`` as strict JSON (:func:`json_safe`), atomically, parents created."""
    text = json.dumps(json_safe(data), indent=indent, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


_JSON_KINDS: dict[type, str] = {dict: "an object", list: "an array"}


def _json_kind(value: Any) -> str:
    for typ, words in _JSON_KINDS.items():
        if isinstance(value, typ):
            return words
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return "a string" if isinstance(value, str) else "a number"


def read_json(path: str | os.PathLike, expect: type | None = None) -> Any:
    """Read a UTF-8 JSON file.

    Parameters
    ----------
    path : path
        The file.
    expect : {dict, list}, optional
        What the file must hold: a JSON object (``dict``) or array (``list``).

    Raises
    ------
    ValueError
        One line naming the file: not UTF-8, not valid JSON, nested too deeply, or not
        what ``expect`` asks for.
    OSError
        The file cannot be read (:class:`FileNotFoundError` when it is missing).
    """
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is corrupt (not valid JSON: {exc})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is corrupt (not UTF-8 text)") from None
    except RecursionError:
        raise ValueError(f"{path} is corrupt (nested too deeply)") from None
    if expect is not None and not isinstance(data, expect):
        raise ValueError(
            f"{path} is corrupt: it holds {_json_kind(data)} where "
            f"{_JSON_KINDS.get(expect, getattr(expect, '__name__', str(expect)))} is expected"
        )
    return data
