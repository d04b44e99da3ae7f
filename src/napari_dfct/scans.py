"""Training sets of many scans: 2-D slices of any size, split by scan, sampled in groups.

A study has many scans (the paper: 89), each a single-rotation input and a multi-rotation
target of its own size, from which one or more slices are taken. :class:`ScanSlices`
holds those slices as a list (slices of different sizes cannot be stacked) with the scan
each one comes from; :func:`split_by_scan` holds whole scans out for validation, never
slices of one scan on both sides; :class:`GroupedSampler` draws patches from slices of
any sizes, one :class:`~napari_dfct.data.PatchSampler` per slice size driven by one
generator. Reading a data set from files is :mod:`napari_dfct.io.dataset`.

For a 2.5-D context model (context ``K``) every slice also carries the ``2K + 1``
neighbouring input slices of its own scan (:attr:`ScanSlices.contexts`, reflected at the
scan's ends: :mod:`napari_dfct.context`), so a patch never mixes two scans.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .data import Batch, PatchSampler

__all__ = ["GroupedSampler", "ScanSlices", "split_by_scan"]


@dataclass
class ScanSlices:
    """2-D training slices of several scans.

    Attributes
    ----------
    inputs, targets : list of numpy.ndarray
        float32 (Y, X) slices; ``inputs[k]`` and ``targets[k]`` have the same shape, slices
        of different scans may differ.
    scans : numpy.ndarray
        The scan index of every slice (int64, ``len(inputs)``).
    names : list of str
        The scan names, by scan index.
    origins : list of tuple
        ``(scan name, slice index in its volume)`` of every slice.
    context : int
        ``K``: the data set was read for a 2.5-D model with this context (0: 2-D).
    contexts : list of numpy.ndarray, optional
        With ``context`` K > 0: per slice, the float32 ``(2K + 1, Y, X)`` input slices
        ``z - K .. z + K`` of its scan (its own input in the middle).
    """

    inputs: list
    targets: list
    scans: np.ndarray
    names: list = field(default_factory=list)
    origins: list = field(default_factory=list)
    context: int = 0
    contexts: list | None = None

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        return [tuple(int(v) for v in a.shape) for a in self.inputs]

    def validate(self, patch: int | None = None) -> None:
        """Raise :class:`ValueError` for slices that cannot train and for two scans
        holding the same data (one line each)."""
        if len(self.inputs) != len(self.targets) or len(self.scans) != len(self.inputs):
            raise ValueError("inputs, targets and scans must have one entry per slice")
        if len({int(s) for s in self.scans}) < 2:
            raise ValueError(
                "a data set of scans needs at least 2 scans (validation holds "
                "out whole scans, never slices of one scan)"
            )
        for k, (x, y) in enumerate(zip(self.inputs, self.targets)):
            where = self._where(k)
            if x.ndim != 2 or x.shape != y.shape:
                raise ValueError(
                    f"{where}: input and target slices differ in shape "
                    f"({tuple(x.shape)} vs {tuple(y.shape)})"
                )
            if patch is not None and int(patch) > min(x.shape):
                raise ValueError(
                    f"{where} is {x.shape[0]}x{x.shape[1]}, smaller than the "
                    f"{patch}x{patch} patch; use a patch of at most "
                    f"{min(x.shape)}"
                )
            if not (np.isfinite(x).all() and np.isfinite(y).all()):
                raise ValueError(f"{where} contains NaN or infinite values")
        self._check_contexts()
        self._check_distinct()

    def _check_contexts(self) -> None:
        """A context data set's neighbouring slices: one ``(2K + 1, Y, X)`` stack per
        slice, its own input in the middle, finite."""
        k = int(self.context)
        if not k:
            return
        if self.contexts is None or len(self.contexts) != len(self.inputs):
            raise ValueError(f"context {k} needs the neighbouring slices of every slice")
        for j, (x, c) in enumerate(zip(self.inputs, self.contexts)):
            if tuple(np.shape(c)) != (2 * k + 1, *np.shape(x)):
                raise ValueError(
                    f"{self._where(j)}: its neighbouring slices are {tuple(np.shape(c))}, "
                    f"not ({2 * k + 1}, {x.shape[0]}, {x.shape[1]})"
                )
            if not (np.array_equal(c[k], x) and np.isfinite(c).all()):
                raise ValueError(
                    f"{self._where(j)}: its neighbouring slices hold NaN or infinite "
                    "values, or not the slice itself in the middle"
                )

    def model_inputs(self, normalized: list, window, context: int = 0) -> list:
        """The network input of every slice, ``(C, Y, X)`` float32: its ``normalized``
        slice (``C = 1``), or with ``context`` K its ``2K + 1`` neighbouring slices
        normalised by ``window`` (an :class:`~napari_dfct.window.IntensityWindow`)."""
        if not int(context):
            return [np.asarray(a)[None] for a in normalized]
        assert self.contexts is not None and int(self.context) == int(context)
        return [window.normalize(np.asarray(c, dtype=np.float32)) for c in self.contexts]

    def _check_distinct(self) -> None:
        """Refuse two scans holding the same data: a slice whose input and target are
        bit-identical to a slice of another scan (the same scan listed twice, under other
        file names). Constant slices (blank padding) say nothing and are skipped."""
        seen: dict[bytes, int] = {}
        for k, (x, y) in enumerate(zip(self.inputs, self.targets)):
            x, y = np.ascontiguousarray(x), np.ascontiguousarray(y)
            if x.size == 0 or x.min() == x.max():
                continue
            h = hashlib.blake2b(digest_size=16)
            h.update(repr((x.shape, x.dtype.str, y.dtype.str)).encode())
            h.update(x.view(np.uint8).ravel().tobytes())
            h.update(y.view(np.uint8).ravel().tobytes())
            first = seen.setdefault(h.digest(), k)
            if first != k and int(self.scans[first]) != int(self.scans[k]):
                raise ValueError(
                    f"{self._where(first)} and {self._where(k)} hold the same input and "
                    "target data: the same scan is listed twice; list each scan once"
                )

    def _where(self, k: int) -> str:
        if k < len(self.origins):
            name, z = self.origins[k]
            return f"scan {name!r} slice {z}"
        return f"slice {k}"


def split_by_scan(
    scans, val_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split slice indices into training and validation sets **by scan**.

    A share ``val_fraction`` of the scans (rounded, at least one, at most all but one) is
    held out with all its slices. Returns sorted, disjoint index arrays of slices.
    """
    scans = np.asarray(scans, dtype=np.int64)
    ids = np.unique(scans)
    if ids.size < 2:
        raise ValueError(
            f"need at least 2 scans to split into training and validation, got {ids.size}"
        )
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    n_val = int(min(max(round(ids.size * float(val_fraction)), 1), ids.size - 1))
    held = np.random.default_rng(seed).permutation(ids)[:n_val]
    is_val = np.isin(scans, held)
    index = np.arange(scans.size, dtype=np.int64)
    return index[~is_val], index[is_val]


class GroupedSampler:
    """Random augmented patches from 2-D slices of any sizes.

    One :class:`~napari_dfct.data.PatchSampler` per slice size; the epoch order, the
    patch positions and the augmentation all come from this sampler's one generator, so a
    run is reproducible and resumable like one with a single size. The interface is the
    :class:`~napari_dfct.data.PatchSampler`'s (``epoch``, ``extra_batches``,
    ``samples_per_epoch``, ``steps_per_epoch``, ``get_state``, ``set_state``).

    Parameters
    ----------
    inputs, targets : list of numpy.ndarray
        Normalised 2-D slices; ``inputs`` may be ``(C, Y, X)`` stacks (a context model's
        neighbouring slices), augmented alike.
    spatial_weight : callable, optional
        ``(H, W) -> A_S`` of a full slice of that size (None: no spatial weight).
    **kwargs
        ``patch``, ``patches_per_slice``, ``augment``, ``seed``, ``device``, ``storage``,
        ``max_angle`` as for :class:`~napari_dfct.data.PatchSampler`.
    """

    def __init__(
        self,
        inputs,
        targets,
        spatial_weight: Callable[[tuple[int, ...]], torch.Tensor | None] | None = None,
        *,
        patch: int = 128,
        patches_per_slice: int = 1,
        augment: bool = True,
        seed: int = 0,
        device="cpu",
        storage="auto",
        max_angle: float = 15.0,
    ):
        n = len(inputs)
        if n < 1:
            raise ValueError("the sampler needs at least one training slice")
        shapes = [tuple(int(v) for v in np.shape(a)) for a in inputs]
        PatchSampler._check_order_memory(n, int(patches_per_slice))
        self.group_of = np.zeros(n, dtype=np.int64)
        self.local = np.zeros(n, dtype=np.int64)
        self.samplers: list[PatchSampler] = []
        for g, shape in enumerate(dict.fromkeys(shapes)):
            members = [k for k in range(n) if shapes[k] == shape]
            self.group_of[members] = g
            self.local[members] = np.arange(len(members))
            weight = spatial_weight(shape[-2:]) if spatial_weight is not None else None
            self.samplers.append(
                PatchSampler(
                    np.stack([inputs[k] for k in members]),
                    np.stack([targets[k] for k in members]),
                    weight,
                    patch=patch,
                    patches_per_slice=patches_per_slice,
                    augment=augment,
                    seed=seed,
                    device=device,
                    storage=storage,
                    max_angle=max_angle,
                )
            )
        first = self.samplers[0]
        self.device, self.storage, self.patch = first.device, first.storage, first.patch
        self.patches_per_slice = int(patches_per_slice)
        self.n_slices = n
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(int(seed))

    samples_per_epoch = PatchSampler.samples_per_epoch
    steps_per_epoch = PatchSampler.steps_per_epoch
    epoch = PatchSampler.epoch
    extra_batches = PatchSampler.extra_batches
    get_state = PatchSampler.get_state
    set_state = PatchSampler.set_state

    def sample(self, slice_index, generator: torch.Generator | None = None):
        """One random augmented patch per entry of ``slice_index`` (global slice indices);
        the batch holds them grouped by slice size."""
        gen = self.generator if generator is None else generator
        index = np.asarray(torch.as_tensor(np.asarray(slice_index)).cpu(), dtype=np.int64)
        parts = []
        for g, sampler in enumerate(self.samplers):
            chosen = index[self.group_of[index] == g]
            if chosen.size:
                parts.append(sampler.sample(self.local[chosen], generator=gen))
        x = torch.cat([p[0] for p in parts])
        y = torch.cat([p[1] for p in parts])
        w = None if parts[0][2] is None else torch.cat([p[2] for p in parts])
        return Batch(x, y, w)
