"""The session's model registry: model folders trained or opened in this session.

The Train widget registers every model folder it finishes (or stops) here; the Predict
widget lists them. The registry is a module-level :class:`psygnal.containers.EventedList`
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
    "clear",
    "connect_registry",
    "register_model",
    "registered_models",
]

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
