"""Small helpers shared by the grid, the report and the demo (no science here)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np

from .._files import atomic_write_text, json_safe, read_json
from .._files import write_json as atomic_write_json
from ..roi import parse_line, parse_point

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
                raise ValueError(f"bad seed selection {text!r}: use e.g. '3', '0-9' or '0,2,5-7'")
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


# --------------------------------------------------------------------------- data folders
_SUFFIXES = (".tif", ".tiff", ".npy")


@overload
def _find_file(folder: Path, stem: str, required: Literal[True] = True) -> Path: ...
@overload
def _find_file(folder: Path, stem: str, required: bool) -> Path | None: ...
def _find_file(folder: Path, stem: str, required: bool = True) -> Path | None:
    for suffix in _SUFFIXES:
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    if required:
        raise ValueError(f"{folder} has no {stem}.tif (expected a `dfct simulate` folder)")
    return None


def _mask_name(meta: dict | None) -> str:
    """File name of a test folder's body mask: meta.json's ``"mask"``, else body.tif."""
    name = (meta or {}).get("mask")
    return name if isinstance(name, str) and name else "body.tif"
