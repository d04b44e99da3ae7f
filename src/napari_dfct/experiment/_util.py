"""Small helpers shared by the grid, the report and the demo (no science here)."""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import atomic_write_bytes

__all__ = [
    "atomic_write_json",
    "atomic_write_text",
    "json_safe",
    "parse_seeds",
    "parse_point",
    "parse_line",
    "read_json",
    "timestamp",
    "to_float",
]


def timestamp() -> str:
    """Local time as ``YYYYmmdd-HHMMSS`` (for folder names)."""
    return time.strftime("%Y%m%d-%H%M%S")


def json_safe(obj: Any) -> Any:
    """Return ``obj`` with NumPy scalars/arrays, paths and non-finite floats made JSON-safe.

    Non-finite floats (NaN, inf) become ``None`` so that the files are strict JSON.
    """
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temporary file in the same folder, then rename).

    A reader never sees a half-written file: either the old one, or the complete new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented strict JSON, atomically (see :func:`atomic_write_text`)."""
    text = json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def to_float(value: Any) -> float:
    """``float(value)``, with ``None`` and unparsable values as NaN."""
    if value is None:
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


_RANGE = re.compile(r"^\s*(-?\d+)\s*(?:-\s*(-?\d+)\s*)?$")


def parse_seeds(text: str | int | Iterable[int]) -> list[int]:
    """Parse a seed selection: ``"3"``, ``"0-9"``, ``"0,2,5-7"``, an int or a list of ints.

    Returns the seeds in the given order without duplicates. ``ValueError`` on bad input.
    """
    if isinstance(text, (int, np.integer)):
        return [int(text)]
    if not isinstance(text, str):
        seeds = [int(s) for s in text]
    else:
        seeds = []
        for part in text.split(","):
            if not part.strip():
                continue
            m = re.match(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$", part)
            if not m:
                raise ValueError(
                    f"bad seed selection {text!r}: use e.g. '3', '0-9' or '0,2,5-7'"
                )
            lo = int(m.group(1))
            hi = int(m.group(2)) if m.group(2) is not None else lo
            if hi < lo:
                raise ValueError(f"bad seed range {part.strip()!r}: the end is before the start")
            seeds.extend(range(lo, hi + 1))
    out: list[int] = []
    for s in seeds:
        if s < 0:
            raise ValueError(f"seeds must be >= 0, got {s}")
        if s not in out:
            out.append(s)
    if not out:
        raise ValueError(f"empty seed selection {text!r}")
    return out


def parse_point(text: str | Iterable[float]) -> list[float]:
    """Parse ``"R,C"`` (or a pair) into ``[row, col]``."""
    if isinstance(text, str):
        parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    else:
        parts = list(text)
    try:
        values = [float(p) for p in parts]
    except (TypeError, ValueError):
        raise ValueError(f"bad point {text!r}: use ROW,COL") from None
    if len(values) != 2:
        raise ValueError(f"bad point {text!r}: use ROW,COL")
    return values


def parse_line(text: str | Iterable[Any]) -> list[list[float]]:
    """Parse ``"R0,C0,R1,C1"`` (or ``[[r0, c0], [r1, c1]]``) into two points."""
    if isinstance(text, str):
        parts = [p for p in re.split(r"[,\s;:]+", text.strip()) if p]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"bad line {text!r}: use R0,C0,R1,C1") from None
        if len(values) != 4:
            raise ValueError(f"bad line {text!r}: use R0,C0,R1,C1")
        return [values[:2], values[2:]]
    pts = [parse_point(p) for p in text]
    if len(pts) != 2:
        raise ValueError(f"bad line {text!r}: give two points")
    return pts
