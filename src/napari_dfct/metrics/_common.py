"""Helpers shared by the metric modules: argument checks and number formatting."""

from __future__ import annotations

from typing import Any

import numpy as np

_NAN = float("nan")


def _as_image2d(image: Any) -> tuple[np.ndarray | None, str | None]:
    """Return ``(array, None)`` for a usable 2-D image, else ``(None, reason)``."""
    try:
        arr = np.asarray(image)
    except Exception as exc:  # noqa: BLE001 # pragma: no cover - exotic array-likes
        return None, f"image cannot be read as an array ({exc})"
    if arr.ndim != 2:
        return None, f"image is not 2-D (shape {tuple(arr.shape)}); pass one slice"
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        return None, f"image is empty (shape {tuple(arr.shape)})"
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        return None, f"image has non-numeric dtype {arr.dtype}"
    if np.iscomplexobj(arr):
        return None, "image is complex-valued"
    return arr, None


def _point(p: Any, name: str) -> np.ndarray:
    """A (row, col) pair as float64; ``ValueError`` if it is not a pair of numbers."""
    try:
        arr = np.asarray(p, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a (row, col) pair of numbers, got {p!r}") from exc
    if arr.size != 2:
        raise ValueError(f"{name} must be a (row, col) pair, got {p!r}")
    return arr


def _size2(size: Any) -> tuple[float, float]:
    """ROI size as (height, width); an int means a square."""
    try:
        arr = np.asarray(size, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"ROI size must be a number or a (height, width) pair, got {size!r}"
        ) from exc
    if arr.size == 1:
        return float(arr[0]), float(arr[0])
    if arr.size == 2:
        return float(arr[0]), float(arr[1])
    raise ValueError(f"ROI size must be a number or a (height, width) pair, got {size!r}")


def _fmt(x: float) -> str:
    return f"{x:.4g}"
