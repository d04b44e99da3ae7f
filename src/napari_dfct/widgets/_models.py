"""The session's model registry: model folders trained or opened in this session, and
the recent model folders on disk.

The Train widget registers every model folder it finishes (or stops) here; the Predict
widget lists them, then the model folders in :func:`default_models_dir` (where the Train
widget saves runs by default) from earlier sessions, newest first
(:func:`recent_models`). The registry is a module-level :class:`psygnal.containers.EventedList`
of resolved :class:`pathlib.Path` objects, newest last, so any widget can listen to
``MODELS.events`` (``inserted``, ``removed``, ...) and refresh its choices.

Examples
--------
>>> from napari_dfct.widgets import _models
>>> _models.register_model("runs/l2-20250101-120000")  # doctest: +SKIP
>>> _models.registered_models()  # doctest: +SKIP
[PosixPath('/.../runs/l2-20250101-120000')]
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from pathlib import Path

from psygnal.containers import EventedList

__all__ = [
    "MODELS",
    "RECENT_LIMIT",
    "clear",
    "connect_registry",
    "default_models_dir",
    "recent_models",
    "register_model",
    "registered_models",
]

#: At most this many model folders from :func:`default_models_dir` are offered.
RECENT_LIMIT = 20


#: The environment variable that moves :func:`default_models_dir`.
MODELS_DIR_ENV = "NAPARI_DFCT_MODELS_DIR"


def default_models_dir() -> Path:
    """Where new model folders go by default: ``~/napari-dfct/models``
    (``NAPARI_DFCT_MODELS_DIR`` overrides it)."""
    override = os.environ.get(MODELS_DIR_ENV)
    if override:
        return Path(override).expanduser()
    return Path.home() / "napari-dfct" / "models"


def recent_models(folder: str | os.PathLike | None = None, limit: int = RECENT_LIMIT):
    """The model folders directly in ``folder`` (default: :func:`default_models_dir`),
    newest first (by the time their ``config.json`` was last written: a run writes it
    every epoch), at most ``limit``; resolved paths. A missing or unreadable folder has
    none."""
    from napari_dfct.checkpoint import CONFIG_FILE, is_model_dir

    root = Path(default_models_dir() if folder is None else folder).expanduser()
    found = []
    try:
        for entry in os.scandir(root):
            try:
                if entry.is_dir() and is_model_dir(entry.path):
                    mtime = (Path(entry.path) / CONFIG_FILE).stat().st_mtime
                    found.append((mtime, entry.name, _key(entry.path)))
            except OSError:
                continue
    except OSError:
        return []
    found.sort(key=lambda t: (t[0], t[1]), reverse=True)
    return [path for _, _, path in found[: max(int(limit), 0)]]


#: Model folders trained or opened in this session, oldest first, without duplicates.
MODELS: EventedList = EventedList()


def _key(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def register_model(path: str | os.PathLike) -> Path:
    """Add a model folder to the session registry (moving it to the end if present).

    Parameters
    ----------
    path : str or os.PathLike
        A model folder (``model.safetensors`` + ``config.json``).

    Returns
    -------
    pathlib.Path
        The resolved path as stored in :data:`MODELS`.
    """
    key = _key(path)
    if key in MODELS:
        if MODELS[-1] == key:
            return key
        MODELS.remove(key)
    MODELS.append(key)
    return key


def connect_registry(widget, callback: Callable[[], None]) -> Callable:
    """Call ``callback()`` whenever :data:`MODELS` changes, for as long as ``widget`` lives.

    The registry outlives any dock widget; the connection is dropped when the Qt widget
    is destroyed (so a closed widget is never called), and it does not keep the widget
    alive.

    Parameters
    ----------
    widget : QObject
        Owner of the connection (its ``destroyed`` signal ends it).
    callback : callable
        A bound method of ``widget`` taking no arguments.

    Returns
    -------
    callable
        The slot connected to the registry events.
    """
    ref = weakref.WeakMethod(callback)

    def slot(*_args) -> None:
        method = ref()
        if method is not None:
            method()

    def disconnect(*_args) -> None:
        for signal in (MODELS.events.inserted, MODELS.events.removed):
            signal.disconnect(slot)

    MODELS.events.inserted.connect(slot)
    MODELS.events.removed.connect(slot)
    widget.destroyed.connect(disconnect)
    return slot


def registered_models() -> list[Path]:
    """Return the registered model folders, oldest first, that still exist on disk."""
    return [p for p in MODELS if p.is_dir()]


def clear() -> None:
    """Forget every registered model folder (used by tests)."""
    while len(MODELS):
        MODELS.pop()
