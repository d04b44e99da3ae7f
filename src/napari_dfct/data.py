"""Training data: intensity window, train/validation split, on-device patch sampling.

The paper clips input and ground truth with the *same* intensity window, to emphasise the
streaks, and scales the result to [0, 1] (:class:`IntensityWindow`, which lives in the
torch-free :mod:`napari_dfct.window` and is re-exported here). Training draws one
random 128x128 patch per training slice and step, with horizontal and vertical flips and an
in-plane rotation of up to +-15 degrees, each with 50 % chance; the spatial amplification
map A_S is computed on the whole slice and cropped (and transformed) exactly like the patch
(:class:`PatchSampler`). For a 2.5-D context model the input of a patch has ``2K + 1``
channels, the slices ``z - K .. z + K`` of one scan (:mod:`napari_dfct.context`), and
every channel is cropped, flipped and rotated by the same transform as the target.

The sampler keeps the whole normalised training set on the training device (when it fits)
and draws a batch with a handful of tensor operations: one bilinear gather at per-sample
affine coordinates covers crop, flips and rotation for input, target and A_S at once. No
Python loop runs per sample, and the random draws come from a seeded
:class:`torch.Generator`, so a run is reproducible.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

# the memory helpers live in napari_dfct.device; re-exported here
from .device import available_memory, format_bytes

# the intensity window lives in the torch-free napari_dfct.window; re-exported here
from .window import DEFAULT_WINDOW_MARGIN as DEFAULT_WINDOW_MARGIN
from .window import DEFAULT_WINDOW_PERCENTILES as DEFAULT_WINDOW_PERCENTILES
from .window import IntensityWindow, window_from_percentiles

__all__ = [
    "Batch",
    "IntensityWindow",
    "PatchSampler",
    "augment_angular",
    "available_memory",
    "centre_slice",
    "format_bytes",
    "sample_coordinates",
    "split_slices",
    "validate_pair",
    "window_from_percentiles",
]


# --------------------------------------------------------------------------- split
def split_slices(
    n_slices: int, val_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split slice indices into training and validation sets.

    Parameters
    ----------
    n_slices : int
        Number of slices (at least 2).
    val_fraction : float
        Fraction of slices for validation, in (0, 1). The count is rounded and clamped so
        that both sides hold at least one slice.
    seed : int
        Seed of the random permutation.

    Returns
    -------
    train, val : numpy.ndarray of int64
        Sorted, disjoint index arrays that together cover ``range(n_slices)``.
    """
    n = int(n_slices)
    if n < 2:
        raise ValueError(f"need at least 2 slices to split into training and validation, got {n}")
    if not 0.0 < float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    n_val = int(min(max(round(n * float(val_fraction)), 1), n - 1))
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_val:]).astype(np.int64), np.sort(perm[:n_val]).astype(np.int64)


def validate_pair(
    input: np.ndarray, target: np.ndarray | None = None, *, patch: int | None = None
) -> None:
    """Check a training pair and raise :class:`ValueError` with a clear message.

    Parameters
    ----------
    input, target : numpy.ndarray
        Volumes (Z, Y, X) with Z >= 2, same shape, finite values.
    patch : int, optional
        Patch size that must fit into a slice.
    """
    arrays = [("input", input)] + ([("target", target)] if target is not None else [])
    for name, a in arrays:
        if not isinstance(a, np.ndarray | torch.Tensor):
            raise ValueError(f"{name} must be an array, got {type(a).__name__}")
        if a.ndim != 3:
            raise ValueError(
                f"{name} must be a 3-D volume (slices, rows, cols), got shape {tuple(a.shape)}"
            )
        if a.shape[0] < 2:
            raise ValueError(
                f"{name} has {a.shape[0]} slice; training needs at least 2 "
                "(one for training, one for validation)"
            )
    if target is not None and tuple(input.shape) != tuple(target.shape):
        raise ValueError(
            f"input and target shapes differ: {tuple(input.shape)} vs {tuple(target.shape)}"
        )
    if patch is not None:
        h, w = input.shape[1:]
        if int(patch) < 1:
            raise ValueError(f"patch size must be positive, got {patch}")
        if int(patch) > min(h, w):
            raise ValueError(
                f"patch size {patch} is larger than the slices ({h}x{w}); "
                f"use a patch of at most {min(h, w)}"
            )
    for name, a in arrays:
        finite = torch.isfinite(a).all() if isinstance(a, torch.Tensor) else np.isfinite(a).all()
        if not bool(finite):
            raise ValueError(f"{name} contains NaN or infinite values")


# --------------------------------------------------------------------------- sampler
def _gather(
    tables: list[tuple[torch.Tensor, bool]],
    shape: tuple[int, int],
    index: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    exact: bool = False,
) -> list[torch.Tensor]:
    """Sample pixel tables at (rows, cols): bilinear, border-clamped.

    Parameters
    ----------
    tables : list of (torch.Tensor, bool)
        Images in channels-last pixel-table layout, (N * H * W, C) — i.e.
        ``images.permute(0, 2, 3, 1).reshape(-1, C)`` of an (N, C, H, W) stack — each with
        a flag: True when it holds one image per slice (offset by ``index``), False when it
        holds a single image shared by all samples.
    shape : (int, int)
        (H, W).
    index : torch.Tensor
        (B,) slice index per sample.
    rows, cols : torch.Tensor
        (B, P, Q) float source coordinates in pixels.
    exact : bool
        The coordinates are integers (no rotation): one gather, no interpolation.

    Returns
    -------
    list of torch.Tensor
        (B, C, P, Q) per table. Integer coordinates give the pixel values exactly.
    """
    h, w = shape
    rows = rows.clamp(0, h - 1)
    cols = cols.clamp(0, w - 1)
    r0f = torch.floor(rows)
    c0f = torch.floor(cols)
    i00 = r0f.long() * w + c0f.long()  # flat index of the top-left neighbour in a slice
    base = (index.to(rows.device) * (h * w)).view(-1, 1, 1)
    out = []
    if exact:
        for table, per_slice in tables:
            i = (i00 + base if per_slice else i00).reshape(-1)
            out.append(table.index_select(0, i).view(*rows.shape, -1).permute(0, 3, 1, 2))
        return out
    fr = (rows - r0f).unsqueeze(-1)
    fc = (cols - c0f).unsqueeze(-1)
    dc = (c0f < w - 1).long()  # step to the right neighbour (0 at the last column)
    dr = (r0f < h - 1).long() * w  # step to the neighbour below
    for table, per_slice in tables:
        i = i00 + base if per_slice else i00

        def take(j: torch.Tensor, table=table) -> torch.Tensor:
            return table.index_select(0, j.reshape(-1)).view(*rows.shape, -1)

        top = torch.lerp(take(i), take(i + dc), fc)
        i10 = i + dr
        bottom = torch.lerp(take(i10), take(i10 + dc), fc)
        out.append(torch.lerp(top, bottom, fr).permute(0, 3, 1, 2))
    return out


def _gather_mixed(tables, shape, index, rows, cols, rotated: torch.Tensor) -> list[torch.Tensor]:
    """:func:`_gather` with the exact path for unrotated and bilinear for rotated samples
    (two batched calls; ``rotated`` is a (B,) bool mask on the CPU)."""
    if bool(rotated.all()):
        return _gather(tables, shape, index, rows, cols)
    if not bool(rotated.any()):
        return _gather(tables, shape, index, rows, cols, exact=True)
    dev = rows.device
    rot = rotated.to(dev)
    keep = ~rot
    a = _gather(tables, shape, index[keep], rows[keep], cols[keep], exact=True)
    b = _gather(tables, shape, index[rot], rows[rot], cols[rot])
    out = []
    for ta, tb in zip(a, b):
        t = torch.empty((rows.shape[0], ta.shape[1], *rows.shape[1:]), dtype=ta.dtype, device=dev)
        t[keep] = ta
        t[rot] = tb
        out.append(t)
    return out


def sample_coordinates(
    n: int,
    shape: tuple[int, int],
    patch: int,
    generator: torch.Generator,
    *,
    augment: bool = True,
    max_angle: float = 15.0,
    p_flip: float = 0.5,
    p_rotate: float = 0.5,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Source coordinates of ``n`` random, augmented square patches.

    Each patch is a ``patch`` x ``patch`` grid centred at a random position, optionally
    flipped horizontally and/or vertically and rotated in-plane by a random angle in
    ``[-max_angle, max_angle]`` degrees (each with its own probability). Without rotation
    the grid sits on integer pixel positions, so the crop is exact slicing. A rotated patch
    is placed so that it lies inside the slice; if it cannot (patch too large for the
    rotated square), it is centred and sampled with border clamping.

    Parameters
    ----------
    n : int
        Number of patches.
    shape : (int, int)
        Slice shape (H, W).
    patch : int
        Patch side length.
    generator : torch.Generator
        CPU generator for all random draws.
    augment : bool
        When False, plain random crops (no flips, no rotation).
    max_angle, p_flip, p_rotate : float
        Augmentation parameters.
    device : torch.device or str
        Where the coordinate grids are built.

    Returns
    -------
    rows, cols : torch.Tensor
        (n, patch, patch) float32 source coordinates.
    params : dict
        The drawn parameters (CPU tensors): ``center`` (n, 2), ``flip_h``, ``flip_v``,
        ``angle`` (degrees).
    """
    h, w = int(shape[0]), int(shape[1])
    p = int(patch)
    if p > min(h, w):
        raise ValueError(f"patch size {p} is larger than the slices ({h}x{w})")
    u = torch.rand((n, 6), generator=generator, dtype=torch.float64)
    if augment:
        flip_h = u[:, 0] < p_flip
        flip_v = u[:, 1] < p_flip
        rotate = u[:, 2] < p_rotate
        angle = torch.where(rotate, (u[:, 3] * 2 - 1) * max_angle, torch.zeros_like(u[:, 3]))
    else:
        flip_h = torch.zeros(n, dtype=torch.bool)
        flip_v = torch.zeros(n, dtype=torch.bool)
        rotate = torch.zeros(n, dtype=torch.bool)
        angle = torch.zeros(n, dtype=torch.float64)
    half = (p - 1) / 2.0
    # unrotated: integer top-left corner in [0, H - P]
    top = torch.floor(u[:, 4] * (h - p + 1)).clamp_(max=h - p)
    left = torch.floor(u[:, 5] * (w - p + 1)).clamp_(max=w - p)
    center_r = top + half
    center_c = left + half
    # rotated: centre anywhere the rotated square stays inside the slice
    theta = torch.deg2rad(angle)
    extent = half * (theta.cos().abs() + theta.sin().abs())
    lo_r, hi_r = extent, (h - 1) - extent
    lo_c, hi_c = extent, (w - 1) - extent
    mid_r = torch.full_like(lo_r, (h - 1) / 2)
    mid_c = torch.full_like(lo_c, (w - 1) / 2)
    rot_r = torch.where(hi_r >= lo_r, lo_r + u[:, 4] * (hi_r - lo_r), mid_r)
    rot_c = torch.where(hi_c >= lo_c, lo_c + u[:, 5] * (hi_c - lo_c), mid_c)
    center_r = torch.where(rotate, rot_r, center_r)
    center_c = torch.where(rotate, rot_c, center_c)

    dev = torch.device(device)
    f32 = torch.float32
    grid = torch.arange(p, dtype=f32, device=dev) - half  # exact for half-integers
    sy = torch.where(flip_v, -1.0, 1.0).to(dev, f32).view(n, 1, 1)
    sx = torch.where(flip_h, -1.0, 1.0).to(dev, f32).view(n, 1, 1)
    v = grid.view(1, p, 1) * sy  # row offset of output pixel (i, j)
    uu = grid.view(1, 1, p) * sx  # col offset
    cos = theta.cos().to(dev, f32).view(n, 1, 1)
    sin = theta.sin().to(dev, f32).view(n, 1, 1)
    # rotation by +theta (counter-clockwise in (row, col) display): exact identity at 0
    rows = center_r.to(dev, f32).view(n, 1, 1) + cos * v - sin * uu
    cols = center_c.to(dev, f32).view(n, 1, 1) + sin * v + cos * uu
    params = {
        "center": torch.stack([center_r, center_c], 1),
        "flip_h": flip_h,
        "flip_v": flip_v,
        "angle": angle,
    }
    return rows, cols, params


def augment_angular(g: torch.Tensor, angle: torch.Tensor, mirror: torch.Tensor) -> torch.Tensor:
    """Angular parts ``G(phi)`` of slices as the augmented patches see them.

    A patch of :func:`sample_coordinates` rotated by ``angle`` degrees turns a spectral
    direction ``phi`` of its slice into ``phi + angle``; a flip along one axis (``flip_h``
    xor ``flip_v``: ``mirror``) then mirrors it, ``-(phi + angle)``; both flips are a
    rotation by 180 degrees, which leaves every direction (mod 180) in place. So the
    patch's ``G'(phi') = G(s phi' - angle)`` with ``s = -1`` when mirrored, read off the
    circular (180-degree periodic) ``G`` by linear interpolation between bin centres.

    Parameters
    ----------
    g : torch.Tensor
        ``(B, n_bins)`` on bins ``k * 180 / n_bins`` degrees
        (:func:`napari_dfct.directional.bin_angles`).
    angle : torch.Tensor
        ``(B,)`` rotation of each patch, degrees.
    mirror : torch.Tensor
        ``(B,)`` bool, one flip.

    Returns
    -------
    torch.Tensor
        ``(B, n_bins)``, same dtype and device as ``g``.
    """
    b, n = g.shape
    dev = g.device
    step = 180.0 / n
    phi = torch.arange(n, device=dev, dtype=torch.float64) * step
    s = torch.where(mirror.to(dev), -1.0, 1.0).to(torch.float64).view(b, 1)
    src = s * phi.view(1, n) - angle.to(dev, torch.float64).view(b, 1)
    pos = torch.remainder(src / step, n)
    i0 = torch.floor(pos).long() % n
    frac = (pos - torch.floor(pos)).to(g.dtype)
    i1 = (i0 + 1) % n
    g0 = torch.gather(g, 1, i0)
    return g0 + frac * (torch.gather(g, 1, i1) - g0)


def centre_slice(x: torch.Tensor) -> torch.Tensor:
    """The centre channel ``x[:, C // 2]`` of a ``(B, C, H, W)`` batch, as ``(B, 1, H, W)``:
    the slice a context model predicts (``C = 2K + 1``), or the batch itself (``C = 1``).
    Losses that look at the input (``A_D``) see this slice."""
    c = int(x.shape[1])
    return x if c == 1 else x[:, c // 2 : c // 2 + 1]


class Batch(tuple):
    """One batch ``(x, y, w)`` of a sampler, carrying the patches' known angular parts
    ``g`` (``(B, n_bins)``; None unless the sampler was given them)."""

    g: torch.Tensor | None

    def __new__(cls, x, y, w, g=None):
        obj = super().__new__(cls, (x, y, w))
        obj.g = g
        return obj


class PatchSampler:
    """Random, augmented patches of a (normalised) training set, drawn on the device.

    Parameters
    ----------
    input, target : numpy.ndarray or torch.Tensor
        Normalised training slices, (N, H, W); or ``input`` (N, C, H, W): C input
        channels per training slice (a context model's ``2K + 1`` neighbouring slices,
        :func:`napari_dfct.context.context_stack`), all cropped and augmented alike.
    spatial_weight : torch.Tensor, optional
        A_S for the full slice, (H, W); its crop travels with each patch. None when the
        loss uses no spatial weight.
    patch : int
        Patch side length (default 128).
    patches_per_slice : int
        Patches per training slice per epoch.
    augment : bool
        Flips and rotation (each with 50 % chance).
    seed : int
        Seed of the sampler's own :class:`torch.Generator` (CPU; its state is saved for
        resuming).
    device : torch.device or str
        Training device: the batches are returned there.
    storage : "auto" or torch.device or str
        Where the data live. ``"auto"`` keeps them on ``device`` when they fit in free
        device memory (with room to spare), otherwise on the CPU (pinned on CUDA); batches
        are then gathered on the CPU and copied.
    max_angle : float
        Largest rotation, degrees.
    angular : numpy.ndarray or torch.Tensor, optional
        ``(N, n_bins)`` known angular parts ``G`` of the slices' streaks (the simulator's
        truth, for an ``oracle`` directional loss); each batch then carries them as its
        patches see them (:func:`augment_angular`) in :attr:`Batch.g`.
    """

    def __init__(
        self,
        input: np.ndarray | torch.Tensor,
        target: np.ndarray | torch.Tensor,
        spatial_weight: torch.Tensor | None = None,
        *,
        patch: int = 128,
        patches_per_slice: int = 1,
        augment: bool = True,
        seed: int = 0,
        device: torch.device | str = "cpu",
        storage: torch.device | str = "auto",
        max_angle: float = 15.0,
        angular: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        x = torch.as_tensor(np.asarray(input) if not isinstance(input, torch.Tensor) else input)
        y = torch.as_tensor(np.asarray(target) if not isinstance(target, torch.Tensor) else target)
        if x.ndim == 3:
            x = x.unsqueeze(1)
        if x.ndim != 4 or y.ndim != 3 or x.shape[:1] + x.shape[2:] != y.shape:
            raise ValueError(
                f"input and target must be (N, H, W) of the same shape (or an input of "
                f"(N, C, H, W)), got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        n, c, h, w = x.shape
        if n < 1:
            raise ValueError("the sampler needs at least one training slice")
        if int(patch) > min(h, w):
            raise ValueError(
                f"patch size {patch} is larger than the slices ({h}x{w}); "
                f"use a patch of at most {min(h, w)}"
            )
        if int(patches_per_slice) < 1:
            raise ValueError(f"patches_per_slice must be >= 1, got {patches_per_slice}")
        self._check_order_memory(int(n), int(patches_per_slice))
        self.device = torch.device(device)
        self.patch = int(patch)
        self.patches_per_slice = int(patches_per_slice)
        self.augment = bool(augment)
        self.max_angle = float(max_angle)
        self.shape = (int(h), int(w))
        self.n_slices = int(n)
        self.channels = int(c)
        self.storage = self._choose_storage((x.numel() + y.numel()) * 4, storage)
        # pixel table (N*H*W, C + 1): one index_select fetches every input channel and the
        # target together, at the same (augmented) coordinates
        x = x.to(self.storage, torch.float32).permute(0, 2, 3, 1)
        y = y.to(self.storage, torch.float32).unsqueeze(-1)
        self.data = torch.cat([x, y], -1).reshape(-1, c + 1).contiguous()
        self.weight = None
        if spatial_weight is not None:
            sw = torch.as_tensor(spatial_weight, dtype=torch.float32)
            if tuple(sw.shape) != self.shape:
                raise ValueError(
                    f"spatial weight shape {tuple(sw.shape)} does not match slices {self.shape}"
                )
            self.weight = sw.to(self.storage).reshape(-1, 1).contiguous()
        self.angular = None
        if angular is not None:
            g = torch.as_tensor(
                np.asarray(angular) if not isinstance(angular, torch.Tensor) else angular,
                dtype=torch.float32,
            )
            if g.ndim != 2 or g.shape[0] != n:
                raise ValueError(
                    f"angular parts must be (N, n_bins) with N = {n} slices, got {tuple(g.shape)}"
                )
            self.angular = g.to(self.storage)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(int(seed))

    #: Bytes per patch of an epoch's shuffled order (:meth:`epoch`): the repeated slice
    #: indices, their permutation and the permuted copy, int64 each.
    ORDER_BYTES_PER_PATCH = 3 * 8

    @classmethod
    def _check_order_memory(cls, n_slices: int, patches_per_slice: int) -> None:
        """Refuse, before allocating, an epoch whose patch order alone does not fit in
        the available memory."""
        need = cls.ORDER_BYTES_PER_PATCH * n_slices * patches_per_slice
        free = available_memory("cpu")
        if free is not None and need > free:
            raise ValueError(
                f"{patches_per_slice} patches per slice for {n_slices} training slices "
                f"need {format_bytes(need)} of memory just to shuffle one epoch, more than "
                f"the {format_bytes(free)} available; use at most "
                f"{max(1, free // (cls.ORDER_BYTES_PER_PATCH * n_slices))} patches per slice"
            )

    def _choose_storage(self, nbytes: int, storage) -> torch.device:
        if storage != "auto":
            return torch.device(storage)
        if self.device.type == "cuda":
            try:
                free, _ = torch.cuda.mem_get_info(self.device)
            except Exception:  # noqa: BLE001 # pragma: no cover - driver specific
                return torch.device("cpu")
            return self.device if nbytes < 0.5 * free else torch.device("cpu")
        return self.device

    @property
    def samples_per_epoch(self) -> int:
        """Patches per epoch: training slices x patches_per_slice."""
        return self.n_slices * self.patches_per_slice

    def steps_per_epoch(self, batch_size: int) -> int:
        """Number of batches per epoch (the last one may be smaller)."""
        return -(-self.samples_per_epoch // int(batch_size))

    def sample(
        self,
        slice_index: torch.Tensor | np.ndarray | list[int],
        generator: torch.Generator | None = None,
    ) -> Batch:
        """Draw one random augmented patch per entry of ``slice_index``.

        ``generator`` (a CPU :class:`torch.Generator`) replaces the sampler's own, whose
        state then stays untouched.

        Returns
        -------
        x, y : torch.Tensor
            (B, C, P, P) and (B, 1, P, P) float32 on the training device (C = 1 but for
            a context model's input).
        w : torch.Tensor or None
            (B, 1, P, P) A_S crop, transformed like the patch (None without weight).

        The returned :class:`Batch` also carries ``g``: the patches' angular parts
        ``(B, n_bins)`` when the sampler has them, else None.
        """
        index = torch.as_tensor(np.asarray(slice_index), dtype=torch.long)
        b = int(index.numel())
        rows, cols, params = sample_coordinates(
            b,
            self.shape,
            self.patch,
            self.generator if generator is None else generator,
            augment=self.augment,
            max_angle=self.max_angle,
            device=self.storage,
        )
        tables = [(self.data, True)]
        if self.weight is not None:
            tables.append((self.weight, False))
        got = _gather_mixed(
            tables, self.shape, index.to(self.storage), rows, cols, params["angle"] != 0
        )
        c = self.channels
        x = got[0][:, :c].contiguous().to(self.device, non_blocking=True)
        y = got[0][:, c : c + 1].contiguous().to(self.device, non_blocking=True)
        w = None
        if self.weight is not None:
            w = got[1].contiguous().to(self.device, non_blocking=True)
        g = None
        if self.angular is not None:
            g = augment_angular(
                self.angular[index.to(self.storage)],
                params["angle"],
                params["flip_h"] ^ params["flip_v"],
            )
            g = g.to(self.device, non_blocking=True)
        return Batch(x, y, w, g)

    def epoch(self, batch_size: int) -> Iterator[Batch]:
        """Batches of one epoch: every slice ``patches_per_slice`` times, shuffled."""
        order = torch.arange(self.n_slices).repeat(self.patches_per_slice)
        order = order[torch.randperm(order.numel(), generator=self.generator)]
        for start in range(0, order.numel(), int(batch_size)):
            yield self.sample(order[start : start + int(batch_size)])

    def extra_batches(self, n_batches: int, batch_size: int, seed: int) -> Iterator[Batch]:
        """``n_batches`` batches drawn with their own generator (``seed``), leaving the
        sampler's training sequence untouched (for BatchNorm re-estimation)."""
        gen = torch.Generator(device="cpu")
        gen.manual_seed(int(seed))
        for _ in range(int(n_batches)):
            index = torch.randint(0, self.n_slices, (int(batch_size),), generator=gen)
            yield self.sample(index, generator=gen)

    def get_state(self) -> list[int]:
        """RNG state of the sampler (a list of bytes, JSON-friendly)."""
        return self.generator.get_state().tolist()

    def set_state(self, state: list[int]) -> None:
        """Restore :meth:`get_state`."""
        self.generator.set_state(torch.tensor(state, dtype=torch.uint8))
