"""Memory the simulator needs, estimated before it allocates anything.

:func:`estimate_memory` adds up the arrays :func:`simulate_dfct` holds at its peak: the
three output volumes with the phantom and body mask it returns, the phantom while it is
drawn (material fractions, texture fields, the supersampled canvas of one slice), the
per-view error fields of the vibration (for the whole stack when the slices share one
acquisition, per block of slices for independent specimens), the sinograms and
reconstructions of one block of slices, and the projector's cached indices. It errs on
the high side (1.2 to 2 times the peak resident memory measured at 128 to 800 px), so that
:func:`check_memory` refuses a size that cannot fit with one clear message instead of an
allocation failure halfway.
"""

from __future__ import annotations

from ..device import available_memory, format_bytes
from .projector import CACHE_BYTES, detector_bins, geometry_plan

__all__ = ["check_memory", "estimate_memory"]


def estimate_memory(
    n_slices: int,
    size: int,
    n_views: int,
    *,
    specimens: bool = False,
    chunk: int = 4,
    supersample: int = 2,
) -> int:
    """Peak bytes :func:`simulate_dfct` needs (an estimate on the high side).

    Parameters
    ----------
    n_slices, size, n_views : int
        As in :func:`simulate_dfct`.
    specimens : bool
        Independent specimens (phantom and error fields per block of slices) instead of
        one shared acquisition (for the whole stack).
    chunk : int
        Slices per block (:class:`Physics` ``chunk``).
    supersample : int
        Phantom supersampling.
    """
    z, n, v = int(n_slices), int(size), int(n_views)
    d = detector_bins(n)
    n2 = n * n
    fp_idx, bp_idx, nz = geometry_plan(n, v, chunk)
    nz = max(1, min(nz, z))
    # cached up to a limit each, else rebuilt per call in bounded chunks
    caches = min(fp_idx, CACHE_BYTES) + min(bp_idx, CACHE_BYTES) + 128 * 2**20
    kept = 22 * z * n2  # input, target, truth, phantom mu/eps/labels, body mask
    canvas = 100 * int(supersample) ** 2 * n2  # one supersampled slice being drawn
    block = 100 * nz * v * d + 150 * nz * n2 + caches
    if specimens:
        work = 120 * nz * n2 + canvas + 28 * nz * v * d + block
    else:
        errors = 16 * z * v * d
        work = max(100 * z * n2 + canvas, errors + 12 * z * v * d, errors + block)
    return int(kept + work)


def check_memory(
    n_slices: int,
    size: int,
    n_views: int,
    *,
    specimens: bool = False,
    chunk: int = 4,
    supersample: int = 2,
) -> int:
    """:func:`estimate_memory`, or ``ValueError`` (one line) when it exceeds the host's
    available memory (:func:`napari_dfct.device.available_memory`). Returns the estimate."""
    need = estimate_memory(
        n_slices, size, n_views, specimens=specimens, chunk=chunk, supersample=supersample
    )
    have = available_memory()
    if have is not None and need > have:
        what = "specimens" if specimens else "slices"
        raise ValueError(
            f"simulating {n_slices} {what} of {size} x {size} px with {n_views} views "
            f"needs about {format_bytes(need)} of memory, more than the "
            f"{format_bytes(have)} available: use a smaller size, fewer slices or fewer "
            "views"
        )
    return need
