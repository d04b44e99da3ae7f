"""3-D training data: patches of consecutive slices of one scan, and the per-slice view.

A 3-D model (``dims = 3``, :mod:`napari_dfct.model`) trains on patches of
``depth x patch x patch`` voxels (``TrainConfig.patch_depth``, default 8):

* **Inside one scan.** A patch holds ``depth`` consecutive slices of one scan, never of
  two scans or two specimens: the training slices fall into *runs* (consecutive slices
  of one scan, :func:`slice_runs`), and a patch starts only where the run holds
  ``depth`` slices from there on (:func:`patch_starts`). A run shorter than ``depth``
  is refused with one line (no padding: a reflected patch would teach the network
  anatomy that mirrors along z).
* **One transform for the whole patch.** The in-plane crop, flips and rotation are the
  2-D sampler's (:func:`napari_dfct.data.sample_coordinates`), drawn once per patch and
  applied to every slice of it (input, target and the A_S crop); the order of the
  slices is reversed with 50 % chance (a volume's z direction has no preferred sign).
* **Split.** A data set of scans holds out whole scans, as for 2-D. A single volume is
  split into two blocks: the last ``val_fraction`` of its slices validate, the first
  ones train (:func:`block_split`), so no patch holds a validation slice's target.
* **Validation** predicts every validation run in consecutive chunks of ``depth``
  slices (the last one shorter), so every slice counts once (:func:`validation_chunks`).

The loss of a ``(N, 1, Z, H, W)`` output is the 2-D loss of its ``N * Z`` slices
(:func:`per_slice`, used by :class:`napari_dfct.losses.AmplifiedLoss`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .data import Batch, PatchSampler, _gather_mixed, sample_coordinates
from .scans import GroupedSampler

__all__ = [
    "GroupedVolumePatchSampler",
    "VolumePatchSampler",
    "block_split",
    "check_runs",
    "from_slices",
    "patch_starts",
    "per_slice",
    "run_namer",
    "scan_runs",
    "slice_runs",
    "validation_chunks",
]


def per_slice(t: torch.Tensor) -> torch.Tensor:
    """``(N, C, Z, H, W)`` as the ``(N * Z, C, H, W)`` stack of its slices (slice ``z``
    of sample ``n`` at ``n * Z + z``); :func:`from_slices` is the inverse."""
    n, c, z, h, w = t.shape
    return t.transpose(1, 2).reshape(n * z, c, h, w)


def from_slices(t: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """The inverse of :func:`per_slice` for a tensor of the original ``shape``."""
    n, c, z, h, w = (int(v) for v in shape)
    return t.reshape(n, z, c, h, w).transpose(1, 2)


def slice_runs(
    index: Sequence[int] | np.ndarray,
    scan: Sequence[int] | np.ndarray | None = None,
    z: Sequence[int] | np.ndarray | None = None,
) -> list[np.ndarray]:
    """The runs of ``index`` (slice numbers of a training set, ascending): maximal
    stretches of consecutive slices of one scan. ``scan[i]`` and ``z[i]`` are slice
    ``i``'s scan and position in it (None: one scan, ``z = i``)."""
    idx = np.asarray(index, dtype=np.int64)
    if idx.size == 0:
        return []
    sc = np.zeros(idx.max() + 1, np.int64) if scan is None else np.asarray(scan, np.int64)
    zz = np.arange(idx.max() + 1) if z is None else np.asarray(z, np.int64)
    breaks = (np.diff(sc[idx]) != 0) | (np.diff(zz[idx]) != 1)
    return np.split(idx, np.flatnonzero(breaks) + 1)


def scan_runs(index: Sequence[int] | np.ndarray, scans=None) -> list[np.ndarray]:
    """The runs (:func:`slice_runs`) of the slices ``index`` of a data set of scans
    (``scans``, a :class:`~napari_dfct.scans.ScanSlices`: each slice's scan and position
    in it) or of one volume (``scans`` None)."""
    if scans is None:
        return slice_runs(index)
    scan_of = np.asarray(scans.scans, dtype=np.int64)
    z_of = np.asarray([z for _, z in scans.origins], dtype=np.int64)
    return slice_runs(index, scan_of, z_of)


def run_namer(scans=None, volume: str = "the volume"):
    """How :func:`check_runs` names a run of :func:`scan_runs`: by its scan of ``scans``
    (``"scan 'name'"``), or ``volume`` for one volume."""
    if scans is None:
        return lambda run: volume
    return lambda run: f"scan {scans.names[int(scans.scans[int(run[0])])]!r}"


def check_runs(runs: list[np.ndarray], depth: int, name=lambda run: "the volume") -> None:
    """Refuse (one :class:`ValueError` line) a run of fewer than ``depth`` slices."""
    for run in runs:
        if len(run) < int(depth):
            raise ValueError(
                f"3-D patches are {int(depth)} consecutive slices of one scan; {name(run)} "
                f"has {len(run)} consecutive training slices: use a smaller patch depth, "
                "or scans of more slices"
            )


def patch_starts(lengths: Sequence[int], depth: int) -> np.ndarray:
    """The first slice of every possible patch of ``depth`` slices of runs of
    ``lengths`` slices stored one after the other (int64, in that storage)."""
    out, offset = [], 0
    for n in lengths:
        out.append(offset + np.arange(max(int(n) - int(depth) + 1, 0)))
        offset += int(n)
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


def block_split(n_slices: int, val_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """A single volume's split for a 3-D model: the first slices train, the last
    ``val_fraction`` of them (rounded, at least one) validate, as two blocks."""
    from .data import split_slices

    n = int(n_slices)
    split_slices(n, val_fraction)  # the same checks and messages as the 2-D split
    n_val = int(min(max(round(n * float(val_fraction)), 1), n - 1))
    index = np.arange(n, dtype=np.int64)
    return index[: n - n_val], index[n - n_val :]


def validation_chunks(
    inputs: Sequence[np.ndarray], targets: Sequence[np.ndarray], depth: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Validation runs (``(Z, H, W)`` each, normalised) cut into consecutive chunks of
    ``depth`` slices (the last one of a run shorter), stacked by shape: ``x`` as
    ``(N, 1, Z, H, W)``, ``y`` as ``(N, Z, H, W)`` tensors. Every slice is in one chunk."""
    groups: dict[tuple, tuple[list, list]] = {}
    d = int(depth)
    for x, y in zip(inputs, targets):
        for s in range(0, len(x), d):
            xs, ys = x[s : s + d], y[s : s + d]
            gx, gy = groups.setdefault(tuple(xs.shape), ([], []))
            gx.append(xs)
            gy.append(ys)
    xs_out = [torch.from_numpy(np.stack(gx)[:, None]) for gx, _ in groups.values()]
    ys_out = [torch.from_numpy(np.stack(gy)) for _, gy in groups.values()]
    return xs_out, ys_out


class VolumePatchSampler(PatchSampler):
    """Random augmented ``depth x patch x patch`` patches of runs of consecutive slices.

    Parameters
    ----------
    input, target : numpy.ndarray or torch.Tensor
        Normalised training slices ``(N, H, W)``: runs of consecutive slices of one scan
        each, stored one after the other.
    spatial_weight : torch.Tensor, optional
        A_S of a full slice ``(H, W)``; every slice of a patch gets the same crop.
    lengths : sequence of int
        The slices of every run, in storage order (sum ``N``); each at least ``depth``.
    depth : int
        Slices per patch.
    **kwargs
        As for :class:`~napari_dfct.data.PatchSampler` (no ``angular``).

    The sampler's items (:attr:`n_slices`, what an epoch shuffles) are the patch
    positions along z (:func:`patch_starts`); batches are ``(B, 1, depth, P, P)``.
    """

    def __init__(self, input, target, spatial_weight=None, *, lengths, depth: int, **kwargs):
        super().__init__(input, target, spatial_weight, **kwargs)
        if sum(int(n) for n in lengths) != self.n_slices:
            raise ValueError(f"runs of {list(lengths)} slices do not hold {self.n_slices}")
        self.depth = int(depth)
        self.starts = torch.from_numpy(patch_starts(lengths, self.depth))
        if self.starts.numel() == 0:
            raise ValueError(f"no run holds the {self.depth} slices of a 3-D patch")
        self.n_slices = int(self.starts.numel())  # patch positions: what an epoch draws
        self._check_order_memory(self.n_slices, self.patches_per_slice)

    def sample(self, slice_index, generator: torch.Generator | None = None) -> Batch:
        """One random augmented patch per entry of ``slice_index`` (patch positions)."""
        gen = self.generator if generator is None else generator
        item = torch.as_tensor(np.asarray(slice_index), dtype=torch.long)
        b, d, p = int(item.numel()), self.depth, self.patch
        rows, cols, params = sample_coordinates(
            b,
            self.shape,
            p,
            gen,
            augment=self.augment,
            max_angle=self.max_angle,
            device=self.storage,
        )
        offsets = torch.arange(d).expand(b, d)
        if self.augment:  # reverse the slice order of half the patches
            flip = torch.rand(b, generator=gen) < 0.5
            offsets = torch.where(flip[:, None], d - 1 - offsets, offsets)
        index = (self.starts[item][:, None] + offsets).reshape(-1)
        tables = [(self.data, True)]
        if self.weight is not None:
            tables.append((self.weight, False))
        got = _gather_mixed(
            tables,
            self.shape,
            index.to(self.storage),
            rows.repeat_interleave(d, 0),
            cols.repeat_interleave(d, 0),
            (params["angle"] != 0).repeat_interleave(d),
        )
        shape = (b, 1, d, p, p)
        x = from_slices(got[0][:, :1], shape).contiguous().to(self.device, non_blocking=True)
        y = from_slices(got[0][:, 1:2], shape).contiguous().to(self.device, non_blocking=True)
        w = None
        if self.weight is not None:
            w = from_slices(got[1], shape).contiguous().to(self.device, non_blocking=True)
        return Batch(x, y, w)


class GroupedVolumePatchSampler(GroupedSampler):
    """:class:`VolumePatchSampler` over runs of slices of several sizes: one sampler per
    slice size, driven by one generator (as :class:`~napari_dfct.scans.GroupedSampler`).

    ``runs`` is a list of ``(input, target)`` pairs of ``(Z, H, W)`` arrays (consecutive
    slices of one scan each); ``spatial_weight`` maps ``(H, W)`` to A_S (or is None).
    """

    def __init__(self, runs, spatial_weight=None, *, depth: int, seed: int = 0, **kwargs):
        shapes = [tuple(int(v) for v in x.shape[1:]) for x, _ in runs]
        self.samplers = []
        for shape in dict.fromkeys(shapes):
            members = [r for r, s in zip(runs, shapes) if s == shape]
            self.samplers.append(
                VolumePatchSampler(
                    np.concatenate([x for x, _ in members]),
                    np.concatenate([y for _, y in members]),
                    None if spatial_weight is None else spatial_weight(shape),
                    lengths=[len(x) for x, _ in members],
                    depth=depth,
                    seed=seed,
                    **kwargs,
                )
            )
        sizes = [s.n_slices for s in self.samplers]
        self.group_of = np.repeat(np.arange(len(sizes)), sizes).astype(np.int64)
        self.local = np.concatenate([np.arange(n) for n in sizes]).astype(np.int64)
        first = self.samplers[0]
        self.device, self.storage, self.patch = first.device, first.storage, first.patch
        self.patches_per_slice = first.patches_per_slice
        self.n_slices = int(sum(sizes))
        PatchSampler._check_order_memory(self.n_slices, self.patches_per_slice)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(int(seed))
