"""Shared glue for the dock widgets: trained models, layer and worker helpers.

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

The layer helpers (:func:`image_layers`, :func:`current_index`, :func:`upsert_image`)
are display glue only: picking layers, finding the displayed slice, and adding or updating
an output layer by name so repeated clicks never pile up layers.
:func:`lower_thread_priority` lets a worker thread yield the CPU to the GUI thread.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from psygnal.containers import EventedList

if TYPE_CHECKING:
    import napari
    from napari.layers import Image

__all__ = [
    "MODELS",
    "OWNER_KEY",
    "register_model",
    "registered_models",
    "connect_registry",
    "clear",
    "image_layers",
    "current_index",
    "upsert_image",
    "spatial_placement",
    "lower_thread_priority",
]

#: ``layer.metadata`` key naming the widget that made a derived layer
#: (e.g. ``"weights"``, ``"preview"``, ``"prediction"``).
OWNER_KEY = "napari_dfct"

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


# ---------------------------------------------------------------------------- layers
def image_layers(
    viewer: napari.viewer.Viewer | None, *, exclude_roles: tuple[str, ...] = ()
) -> list[tuple[str, Image]]:
    """Image layers of ``viewer`` as ``(name, layer)`` choices for a combo box.

    Layers whose ``metadata[OWNER_KEY]`` is in ``exclude_roles`` (maps drawn by a widget,
    training previews) are left out so they are not offered as inputs.
    """
    if viewer is None:
        return []
    from napari.layers import Image

    out = []
    for layer in viewer.layers:
        if not isinstance(layer, Image) or layer.rgb:
            continue
        if layer.metadata.get(OWNER_KEY) in exclude_roles:
            continue
        out.append((layer.name, layer))
    return out


def current_index(viewer: napari.viewer.Viewer, layer: Image) -> int:
    """Index along the first axis of a 3-D ``layer`` of the slice the viewer shows.

    The viewer's world position is mapped to the layer's data coordinates (so scale and
    translate are honoured) and clamped to the valid range. Returns 0 for 2-D layers.
    """
    if layer.ndim < 3:
        return 0
    try:
        coords = layer.world_to_data(viewer.dims.point)
        # world_to_data returns the layer's own dimensions (the last layer.ndim of world)
        z = float(np.asarray(coords)[-layer.ndim])
    except Exception:  # noqa: BLE001 - fall back to the raw step on unusual dims
        z = float(viewer.dims.current_step[-layer.ndim])
    n = int(layer.data.shape[-3])
    return int(min(max(round(z), 0), n - 1))


def spatial_placement(layer: Image, offset: tuple[float, float] = (0.0, 0.0)) -> dict:
    """Scale and translate of the last two axes of ``layer`` for a 2-D derived layer.

    ``offset`` (row, col) in pixels shifts the translate, e.g. for a centred patch.
    """
    scale = np.asarray(layer.scale, dtype=float)[-2:]
    translate = np.asarray(layer.translate, dtype=float)[-2:] + scale * np.asarray(offset)
    return {"scale": tuple(scale), "translate": tuple(translate)}


def upsert_image(
    viewer: napari.viewer.Viewer,
    name: str,
    data: np.ndarray,
    *,
    role: str,
    contrast_limits: tuple[float, float] | None = None,
    scale: Any = None,
    translate: Any = None,
    **add_kwargs,
) -> Image:
    """Update the image layer called ``name`` with ``data``, or add it if absent.

    An existing layer keeps its colormap and visibility (the user's choice); its data,
    scale, translate and (when given) contrast limits are replaced. A layer of that name
    with a different type or dimensionality is replaced by a new one at the same position.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    name : str
        Layer name.
    data : numpy.ndarray
        Image data.
    role : str
        Stored in ``layer.metadata[OWNER_KEY]``.
    contrast_limits : (float, float), optional
    scale, translate : sequence of float, optional
    **add_kwargs
        Passed to :meth:`napari.viewer.Viewer.add_image` when a layer is created.
    """
    from napari.layers import Image

    index = None
    if name in viewer.layers:
        layer = viewer.layers[name]
        if isinstance(layer, Image) and layer.ndim == data.ndim:
            if scale is not None:
                layer.scale = scale
            if translate is not None:
                layer.translate = translate
            layer.data = data
            if contrast_limits is not None:
                layer.contrast_limits_range = _safe_limits(contrast_limits)
                layer.contrast_limits = _safe_limits(contrast_limits)
            layer.metadata[OWNER_KEY] = role
            return layer
        index = viewer.layers.index(layer)
        viewer.layers.remove(layer)
    kwargs = dict(add_kwargs)
    if scale is not None:
        kwargs["scale"] = scale
    if translate is not None:
        kwargs["translate"] = translate
    if contrast_limits is not None:
        kwargs["contrast_limits"] = _safe_limits(contrast_limits)
    layer = viewer.add_image(data, name=name, metadata={OWNER_KEY: role}, **kwargs)
    if index is not None:
        viewer.layers.move(viewer.layers.index(layer), index)
    return layer


def _safe_limits(limits: tuple[float, float]) -> tuple[float, float]:
    lo, hi = float(limits[0]), float(limits[1])
    if not np.isfinite(lo):
        lo = 0.0
    if not np.isfinite(hi) or hi <= lo:
        hi = lo + 1.0
    return lo, hi


# ---------------------------------------------------------------------------- workers
def lower_thread_priority(step: int = 10) -> Callable[[], None]:
    """Lower the OS priority of the calling thread (Linux only), so the GUI thread wins.

    Training and the Qt event loop compete for the same cores; a lower priority
    (``nice``) for the training thread keeps the event loop responsive on small
    machines. Linux schedules threads individually, so this touches no other thread.

    Returns
    -------
    callable
        Restores the previous priority (best effort: unprivileged users cannot raise
        a priority again; the worker thread then stays ``nice`` until the thread pool
        retires it).
    """
    if not sys.platform.startswith("linux"):
        return lambda: None
    try:
        tid = threading.get_native_id()
        old = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(old + int(step), 19))
    except (AttributeError, OSError):
        return lambda: None

    def restore() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, old)
        except OSError:
            pass

    return restore
