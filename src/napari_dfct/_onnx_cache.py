"""The disk cache of ONNX exports: a network is exported once per weights, not per process.

Where: ``onnx/`` in the package's cache folder (:func:`napari_dfct._files.user_cache_dir`:
``$NAPARI_DFCT_CACHE_DIR``, else ``$XDG_CACHE_HOME/napari-dfct``, else
``~/.cache/napari-dfct``). Deleting the folder, or any file in it, at any time is safe:
an export missing from it is made again at its next use.

What: per export two files, ``<key>.json`` (the record) and ``<key>-<sha>.onnx`` (the
graph, named by its content). The key (:func:`key`) is a SHA-256 of everything that
changes the exported graph: the weights (every parameter and buffer, name, dtype, shape
and bytes), the network's class, its architecture (``model_config``) and the source of the
module that defines it, the channels and the padding multiple, the export's settings
(opset, example size) and the source of the exporter, the versions of torch, onnx and
onnxruntime. Another weights file, an edited network or an upgrade gets another key.

Written atomically (:func:`napari_dfct._files.atomic_write`): the graph first, then the
record that names it with its size and SHA-256, so a process never reads a half-written
export, and two processes that export the same network at once each write a complete pair
(the record that lands last names its own graph). The record also holds the check made at
export time (the largest difference from torch on the check input, in fractions of the
intensity window, and the tolerance it passed). A record that cannot be read, or whose
graph is missing, of another size or of another SHA-256, is :class:`CacheDamaged`;
:mod:`napari_dfct._onnx` then exports the network again (one logged line). Nothing here
unpickles: the record is JSON, the graph a protobuf that ONNX Runtime parses.

Bound: after every write the least recently used exports (a load touches its record) are
removed until the folder holds at most :data:`LIMIT_BYTES`; graphs no record names
(a process killed between its two writes) and temporary files are removed after an hour.

Nothing here imports torch, onnx or onnxruntime at import time.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import inspect
import json
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._files import atomic_write_bytes, read_json, user_cache_dir, write_json

if TYPE_CHECKING:
    import torch

__all__ = [
    "FORMAT",
    "LIMIT_BYTES",
    "CacheDamaged",
    "digest_of",
    "discard",
    "file_digest",
    "folder",
    "key",
    "key_of",
    "lookup",
    "prune",
    "read",
    "weights_digest",
    "write",
]

#: The layout of the record; a new one makes every old record a miss.
FORMAT = 1
#: The most the cache folder holds after a write (bytes of graphs): about 8 exports of
#: ``paper`` (126 MB each) or 130 of ``small`` (8 MB).
LIMIT_BYTES = 1 << 30
#: Subfolder of the package's cache folder.
SUBFOLDER = "onnx"
#: Age (seconds) after which a graph that no record names, or a temporary file, is removed.
STALE_SECONDS = 3600.0

_KEY = re.compile(r"^[0-9a-f]{32}$")
_SOURCES: dict[str, str] = {}


class CacheDamaged(ValueError):
    """A cached export that cannot be used: the message says why (one line)."""


def folder() -> Path:
    """The folder of the cached exports (not created here)."""
    return user_cache_dir() / SUBFOLDER


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer of ``model``: name, dtype, shape and the bytes
    of its values in their logical order (the same for any device or memory format)."""
    import torch

    def tensors():
        for name, t in [*model.named_parameters(), *model.named_buffers()]:
            flat = t.detach().to("cpu").contiguous().reshape(-1)
            yield name, str(flat.dtype), tuple(t.shape), flat.view(torch.uint8).numpy().data

    return digest_of(tensors())


def digest_of(tensors: Iterable[tuple[str, str, tuple, Any]]) -> str:
    """:func:`weights_digest` of tensors given as ``(name, dtype, shape, data)``: torch's
    name of the dtype (``"torch.float32"``), the shape as a tuple of ints and the bytes of
    the values in their logical order (anything :meth:`hashlib.sha256.update` takes)."""
    h = hashlib.sha256()
    for name, dtype, shape, data in sorted(tensors, key=lambda item: item[0]):
        h.update(f"{name}\0{dtype}\0{tuple(shape)}\0".encode())
        h.update(data)
    return h.hexdigest()


def _source_digest(obj: Any) -> str:
    """SHA-256 of the file that defines ``obj`` (a class or a module); "" when unknown."""
    try:
        path = inspect.getsourcefile(obj)
    except TypeError:
        path = None
    return file_digest(path) if path else ""


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a source file's bytes (kept per path for the process); "" when it
    cannot be read."""
    name = str(path)
    if name not in _SOURCES:
        try:
            _SOURCES[name] = hashlib.sha256(Path(name).read_bytes()).hexdigest()
        except OSError:
            return ""
    return _SOURCES[name]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        with contextlib.suppress(Exception):  # another distribution of the same module
            return str(__import__(dist).__version__)
    return ""


def _architecture(model: torch.nn.Module) -> Any:
    try:
        from .model import model_config

        return model_config(model)
    except Exception:  # noqa: BLE001 - a network model_config cannot describe
        return None


def key(model: torch.nn.Module, digest: str, settings: dict, exporter: Any) -> str:
    """The cache key of ``model`` (weights ``digest``, :func:`weights_digest`) exported
    with ``settings`` (channels, multiple, opset, ...) by the code of ``exporter`` (a
    module or function whose source file is hashed)."""
    import torch

    cls = type(model)
    return key_of(
        network=f"{cls.__module__}.{cls.__qualname__}",
        source=_source_digest(cls),
        architecture=_architecture(model),
        training=bool(model.training),
        digest=digest,
        settings=settings,
        exporter=_source_digest(exporter),
        torch_version=str(torch.__version__),
    )


def key_of(
    *,
    network: str,
    source: str,
    architecture: Any,
    training: bool,
    digest: str,
    settings: dict,
    exporter: str,
    torch_version: str,
) -> str:
    """:func:`key` from its parts, without torch: the network's class (``module.name``),
    the SHA-256 of its source file, its architecture (``model_config``), whether it is in
    training mode, the weights' digest, the export's settings, the SHA-256 of the
    exporter's source file and torch's version."""
    blob = {
        "format": FORMAT,
        "weights": digest,
        "class": network,
        "source": source,
        "architecture": architecture,
        "training": bool(training),
        "settings": settings,
        "exporter": exporter,
        "versions": {
            "torch": torch_version,
            "onnx": _version("onnx"),
            "onnxruntime": _version("onnxruntime"),
        },
    }
    text = json.dumps(blob, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _record_path(k: str) -> Path:
    if not _KEY.match(k):
        raise ValueError(f"not a cache key: {k!r}")
    return folder() / f"{k}.json"


def lookup(k: str) -> bool:
    """Whether an export of key ``k`` is on disk (its record and the graph it names;
    nothing is verified: :func:`read` does)."""
    try:
        rec = read_json(_record_path(k), dict)
        name = rec.get("file")
        return isinstance(name, str) and (folder() / Path(name).name).is_file()
    except (OSError, ValueError):
        return False


def read(k: str) -> tuple[bytes, dict, Path] | None:
    """The graph (bytes), record and graph path of key ``k``; None when it is not cached.

    Raises
    ------
    CacheDamaged
        The record is unreadable, or the graph it names is missing, truncated or changed.
    """
    path = _record_path(k)
    if not path.exists():
        return None
    try:
        rec = read_json(path, dict)
    except (OSError, ValueError) as exc:
        raise CacheDamaged(f"its record cannot be read ({exc})") from None
    name, size, sha = rec.get("file"), rec.get("bytes"), rec.get("sha256")
    if rec.get("format") != FORMAT or rec.get("key") != k:
        raise CacheDamaged(f"its record {path.name} is of another format or key")
    if not (isinstance(name, str) and isinstance(size, int) and isinstance(sha, str)):
        raise CacheDamaged(f"its record {path.name} lacks the file, size or SHA-256")
    graph = folder() / Path(name).name
    try:
        data = graph.read_bytes()
    except OSError as exc:
        raise CacheDamaged(f"{graph.name} cannot be read ({exc.strerror or exc})") from None
    if len(data) != size or hashlib.sha256(data).hexdigest() != sha:
        raise CacheDamaged(f"{graph.name} is not the file its record describes")
    with contextlib.suppress(OSError):  # marks the export as used (pruning keeps it longer)
        os.utime(path)
    return data, rec, graph


def write(k: str, data: bytes, record: dict) -> Path:
    """Store the graph ``data`` under key ``k`` with ``record`` (made JSON-safe; the file,
    size, SHA-256, format and key are added); return the graph's path, then prune.

    Raises
    ------
    OSError
        The folder cannot be created or written.
    """
    path = _record_path(k)
    path.parent.mkdir(parents=True, exist_ok=True)
    sha = hashlib.sha256(data).hexdigest()
    graph = path.with_name(f"{k}-{sha[:12]}.onnx")
    atomic_write_bytes(graph, data)
    meta = {"format": FORMAT, "key": k, "file": graph.name, "bytes": len(data), "sha256": sha}
    write_json(path, {**meta, **{n: v for n, v in record.items() if n not in meta}})
    prune()
    return graph


def discard(k: str) -> None:
    """Remove the export of key ``k`` (its record and every graph of the key)."""
    path = _record_path(k)
    for p in [path, *path.parent.glob(f"{k}-*.onnx")]:
        with contextlib.suppress(OSError):
            p.unlink()


def prune(limit: int = LIMIT_BYTES) -> list[Path]:
    """Remove the least recently used exports until the graphs take at most ``limit``
    bytes (the most recent one always stays), and stale leftovers; return what was
    removed. Errors (a file removed meanwhile by another process) are ignored."""
    root = folder()
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    records, named = [], set()
    for p in entries:
        if p.suffix == ".json" and _KEY.match(p.stem):
            try:
                rec = read_json(p, dict)
                graph = root / Path(str(rec.get("file"))).name
                records.append((p.stat().st_mtime, p, graph, graph.stat().st_size))
                named.add(graph.name)
            except (OSError, ValueError):
                continue
    for p in entries:  # leftovers: unnamed graphs, temporary files
        leftover = (p.suffix == ".onnx" and p.name not in named) or p.name.endswith(".tmp")
        with contextlib.suppress(OSError):
            if leftover and now - p.stat().st_mtime > STALE_SECONDS:
                p.unlink()
                removed.append(p)
    records.sort(key=lambda r: r[0], reverse=True)  # newest first
    total = 0
    for i, (_, rec_path, graph, size) in enumerate(records):
        total += size
        if i > 0 and total > limit:
            for p in (rec_path, graph):
                with contextlib.suppress(OSError):
                    p.unlink()
                    removed.append(p)
    return removed
