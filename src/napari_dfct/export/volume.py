"""The z axis of a 3-D model's bioimage.io package: its test block and its halo.

A 3-D model (``dims = 3``, :mod:`napari_dfct.model`) predicts a volume in z-chunks of its
training depth ``d`` (``patch_depth``), the volume first extended by ``d // 4`` reflected
slices at each end (:mod:`napari_dfct.infer`, "3-D models"). The package follows that
rule (:func:`z_plan`):

* its input's z axis is at least ``d`` slices (any number above: the network pools
  in-plane only), its output's z axis has a halo of ``d // 4`` slices (a tool that predicts
  in blocks crops them, as napari-dfct counts only a chunk's inner slices);
* its test input is one such chunk: ``d - 2 (d // 4)`` consecutive slices of one scan
  (:func:`volume_block`) extended by ``d // 4`` slices reflected at each end (slice -1
  is slice 1: :func:`z_extend`), ``d`` slices in all. napari-dfct's prediction of those
  inner slices, as a volume of its own, is one chunk, exactly this test input: it equals
  the package's test output without its z halo.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ._errors import ExportError

__all__ = [
    "config_patch_depth",
    "model_patch_depth",
    "network_depth",
    "simulated_block",
    "volume_block",
    "z_extend",
    "z_plan",
]


def z_plan(depth: int) -> tuple[int, int]:
    """``(inner, ends)`` of a 3-D model of patch depth ``depth``: the slices of the test
    block and the reflected slices added at each end, ``inner + 2 ends == depth``
    (:func:`napari_dfct.infer._chunk_plan`'s ends: ``depth // 4``)."""
    from ..infer import _chunk_plan

    d = int(depth)
    ends = _chunk_plan(d, d)[0]
    return d - 2 * ends, ends


def network_depth(model: torch.nn.Module) -> int:
    """The patch depth of a 3-D network (the z-chunks it predicts in), 0 for a 2-D one."""
    from ..infer import _default_patch_depth

    if int(getattr(model, "dims", 2)) != 3:
        return 0
    return int(getattr(model, "patch_depth", None) or _default_patch_depth())


def config_patch_depth(cfg: dict) -> int:
    """:func:`network_depth` of a saved model configuration (``config.json``): the
    ``train.patch_depth`` of a ``dims = 3`` model (the default when it is not recorded),
    0 for a 2-D model."""
    from ..infer import _default_patch_depth

    arch, train = cfg.get("model"), cfg.get("train")
    if not isinstance(arch, dict) or int(arch.get("dims", 2) or 2) != 3:
        return 0
    depth = train.get("patch_depth") if isinstance(train, dict) else None
    return depth if isinstance(depth, int) and depth > 0 else _default_patch_depth()


def model_patch_depth(model_dir: str | os.PathLike) -> int:
    """:func:`config_patch_depth` of a model folder (0: a 2-D model); :class:`ExportError`
    for a folder that is not a model folder."""
    from ..checkpoint import CheckpointError, load_config

    try:
        return config_patch_depth(load_config(model_dir))
    except CheckpointError as exc:
        raise ExportError(str(exc)) from None


def _too_few(depth: int, got: str) -> ExportError:
    inner, _ = z_plan(depth)
    return ExportError(
        f"a 3-D model (patch depth {depth}) reads volumes: its test data must be at least "
        f"{inner} consecutive slices of one scan, got {got}"
    )


def volume_block(volume: np.ndarray, centre: int | None, depth: int) -> tuple[np.ndarray, str]:
    """The ``inner`` consecutive slices of ``volume`` (:func:`z_plan`) around slice
    ``centre`` (None: the central one), moved inside the volume at its ends, and words
    naming them (``slices 3-6``); :class:`ExportError` for a volume of fewer slices."""
    a = np.asarray(volume)
    inner, _ = z_plan(depth)
    if a.ndim != 3 or a.shape[0] < inner:
        shape = "a single slice" if a.ndim == 2 else f"shape {tuple(a.shape)}"
        raise _too_few(depth, shape if a.ndim != 3 else f"{a.shape[0]} slices")
    n = a.shape[0]
    z = n // 2 if centre is None else int(centre)
    first = min(max(z - inner // 2, 0), n - inner)
    return a[first : first + inner], f"slices {first}-{first + inner - 1}"


def simulated_block(size: int, depth: int) -> np.ndarray:
    """The ``inner`` (:func:`z_plan`) neighbouring slices of one simulated single-rotation
    acquisition ``(inner, size, size)``: a 3-D package's test block without data."""
    from ..simulate import simulate_dfct

    inner, _ = z_plan(depth)
    sim = simulate_dfct(n_slices=inner, size=size, rotations=1, seed=0)
    return np.asarray(sim.input, dtype=np.float32)


def z_extend(block: np.ndarray, depth: int) -> np.ndarray:
    """``block`` ``(inner, H, W)`` extended by ``ends`` slices at each end (:func:`z_plan`),
    reflected about its end slices as napari-dfct's z-chunks are
    (:func:`napari_dfct.context.reflect_index`): ``(depth, H, W)`` for ``inner`` slices."""
    from ..context import reflect_index

    _, ends = z_plan(depth)
    n = block.shape[0]
    return np.ascontiguousarray(block[reflect_index(np.arange(-ends, n + ends), n)])
