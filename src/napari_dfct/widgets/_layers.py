"""Layer glue for the dock widgets: pick image layers, find the shown slice, draw outputs.

Display helpers only: :func:`image_layers` offers layers to a combo box,
:func:`current_index` finds the slice the viewer shows, :func:`spatial_placement` puts a
2-D derived layer on its source's pixel grid, and :func:`upsert_image` adds or updates an
output layer by name so repeated clicks never pile up layers. Derived layers carry the
name of the widget that made them in ``layer.metadata[OWNER_KEY]``.

A prediction layer that does not hold every slice yet lists the slices it holds in
``layer.metadata[PREDICTED_KEY]``; the others are placeholders (NaN) that no widget
measures or trains on: :func:`missing_slices` and :func:`slice_ready` tell them apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import napari
    from napari.layers import Image

__all__ = [
    "OWNER_KEY",
    "PREDICTED_KEY",
    "current_index",
    "image_layers",
    "missing_slices",
    "slice_ready",
    "spatial_placement",
    "upsert_image",
]

#: ``layer.metadata`` key naming the widget that made a derived layer
#: (e.g. ``"weights"``, ``"preview"``, ``"prediction"``).
OWNER_KEY = "napari_dfct"
#: ``layer.metadata`` key listing the slices (first axis) a prediction layer holds; a
#: layer without it holds all of its slices.
PREDICTED_KEY = "napari_dfct_predicted"


def missing_slices(layer) -> list[int]:
    """Slices along the first axis of a 3-D ``layer`` that hold no data yet (placeholders
    of a prediction in progress), ascending; empty for any other layer."""
    done = layer.metadata.get(PREDICTED_KEY)
    if done is None or layer.ndim < 3:
        return []
    done = {int(z) for z in done}
    return [z for z in range(int(layer.data.shape[0])) if z not in done]


def slice_ready(layer, z: int) -> bool:
    """False when slice ``z`` of ``layer`` is a placeholder (not predicted yet)."""
    done = layer.metadata.get(PREDICTED_KEY)
    return done is None or layer.ndim < 3 or int(z) in done


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
            # set only what changed: each setter refreshes the layer (a live preview
            # updates its data every epoch, its placement never)
            if scale is not None and not _same(layer.scale, scale):
                layer.scale = scale
            if translate is not None and not _same(layer.translate, translate):
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


def _same(current, new) -> bool:
    return bool(np.array_equal(np.asarray(current, float), np.asarray(new, float)))


def _safe_limits(limits: tuple[float, float]) -> tuple[float, float]:
    lo, hi = float(limits[0]), float(limits[1])
    if not np.isfinite(lo):
        lo = 0.0
    if not np.isfinite(hi) or hi <= lo:
        hi = lo + 1.0
    return lo, hi
