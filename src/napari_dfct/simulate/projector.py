"""Parallel-beam projector and filtered back-projection (FBP) over one full rotation.

* Geometry: parallel beam, ``n_views`` views equally spaced over **360 degrees** (one full
  revolution of the gantry), a detector of ``D = 2*ceil(c*sqrt(2)) + 3`` bins of one pixel
  (``c = (size - 1) / 2``), wide enough that every pixel of the square image is seen in
  every view, so the air around the body is reconstructed without truncation.
* Projection: Joseph's method (one linearly interpolated sample per image row or column
  along each ray), vectorised as a gather with fixed indices and weights
  (:func:`torch.nn.functional.embedding_bag`, batched over slices and maps). Opposite
  views of a parallel-beam rotation see mirrored line integrals, and the square pixel
  grid is symmetric under 90-degree turns and transposition, so for ``n_views % 8 == 0``
  only the views of the first octant are computed, the others being exact copies
  (mirrored detector) or the same views of the turned / transposed image.
* Reconstruction: FBP with a Hann-windowed ramp filter (``filter_name="hann"``, the
  simulator's default) or a plain ramp (``filter_name="ramp"``), pixel-driven back-projection
  with linear interpolation, also a gather. It matches ``skimage.transform.iradon`` of
  ``radon`` on the same phantom to within a fraction of a percent.

torch (the gathers, the FFT) is imported when a projection runs, not with this module, so
the ``dfct`` command's help and the simulator's options load no torch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "back_project",
    "detector_bins",
    "fbp",
    "filter_sinogram",
    "forward_project",
    "view_angles",
]


def view_angles(n_views: int) -> np.ndarray:
    """Projection angles (radians, float64): ``n_views`` equally spaced over 360 degrees."""
    return 2.0 * np.pi * np.arange(int(n_views)) / int(n_views)


def detector_bins(size: int) -> int:
    """Detector bins for a ``size``-wide image: covers the image diagonal (odd count)."""
    c = (int(size) - 1) / 2.0
    return 2 * int(math.ceil(c * math.sqrt(2.0))) + 3


def _as_stack(a: np.ndarray, ndim: int) -> tuple[np.ndarray, bool]:
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == ndim - 1:
        return a[None], True
    if a.ndim != ndim:
        raise ValueError(f"expected a {ndim - 1}-D or {ndim}-D array, got shape {a.shape}")
    return a, False


#: Bytes of projector indices kept between calls, per operator (projection and
#: back-projection); larger index sets are rebuilt on every call, in bounded chunks.
CACHE_BYTES = 320 * 2**20


def _fold(n_views: int, symmetry: bool = True) -> tuple[int, int]:
    """(views per symmetry class, base views computed) for ``n_views`` (see
    :class:`_Geometry`)."""
    v = int(n_views)
    if symmetry and v % 8 == 0:
        return 8, v // 8 + 1
    if symmetry and v % 4 == 0:
        return 4, v // 4
    if v % 2 == 0:
        return 2, v // 2
    return 1, v


def _index_bytes(size: int, n_base: int, n_det: int) -> tuple[int, int]:
    n = int(size)
    rays = min(n_det, 2 * (int(math.ceil((n - 1) / 2.0)) + 1) + 1)
    return n_base * rays * 2 * n * 8, n_base * n * n * 2 * 8


def geometry_plan(size: int, n_views: int, chunk: int) -> tuple[int, int, int]:
    """``(projection index bytes, back-projection index bytes, slices per block)`` of a
    :class:`_Geometry`, without building it. Slices per block: ``chunk``, or at least 16
    when the indices do not fit :data:`CACHE_BYTES` (they are then rebuilt on every call:
    fewer, bigger calls)."""
    fp, bp = _index_bytes(size, _fold(n_views)[1], detector_bins(size))
    return fp, bp, max(int(chunk), 16) if max(fp, bp) > CACHE_BYTES else int(chunk)


class _Geometry:
    """Parallel-beam projector and back-projector for one (size, n_views), 360 degrees.

    Both operators are gathers with fixed indices and weights, evaluated by
    :func:`torch.nn.functional.embedding_bag` on channels-last tables, so any number of
    images (slices, maps) share one pass. Symmetries of the square pixel grid cut the
    index work (they are exact permutations of pixels, so results are unchanged):
    opposite views see mirrored rays (even ``n_views``); a view at ``theta + 90 deg`` sees
    the image turned by 90 degrees (``n_views % 4 == 0``); a view at ``90 deg - theta``
    sees the transposed image (``n_views % 8 == 0``). Such views become extra channels
    of the first octant (``n_views / 8 + 1`` views for 360). Indices are kept between
    calls while they fit ``cache_bytes``.
    """

    def __init__(
        self, size: int, n_views: int, symmetry: bool = True, cache_bytes: int = CACHE_BYTES
    ):
        self.size = n = int(size)
        self.n_views = v = int(n_views)
        self.n_det = detector_bins(n)
        self.fold, n_base = _fold(v, symmetry)
        self.theta = view_angles(v)[:n_base]
        self.cache_bytes = int(cache_bytes)
        self._fp: list | None = None
        self._bp: list | None = None

    def index_bytes(self) -> tuple[int, int]:
        """Bytes of the (projection, back-projection) indices and weights."""
        return _index_bytes(self.size, len(self.theta), self.n_det)

    # -- forward projection (Joseph's method) -----------------------------------------
    def _fp_chunks(self):
        """Yield (view slice, bin slice, idx, weights) for the base views."""
        import torch

        n = self.size
        c = (n - 1) / 2.0
        c_det = (self.n_det - 1) / 2.0
        half = int(math.ceil(c)) + 1  # rays with |t| > c miss the inscribed circle
        j0 = max(0, int(c_det) - half)
        j1 = min(self.n_det, int(c_det) + half + 1)
        t = np.arange(j0, j1) - c_det
        m = n + 3  # padded width: one zero column before, two after
        s = np.arange(n)
        per = max(1, 4_000_000 // ((j1 - j0) * 2 * n))
        for i in range(0, len(self.theta), per):
            th = self.theta[i : i + per]
            cos, sin = np.cos(th), np.sin(th)
            rows = np.abs(cos) >= np.abs(sin)  # ray mostly along y: one sample per row
            a = np.where(rows, cos, sin)
            b = np.where(rows, sin, cos)
            # sample position (padded coordinates) across the stepping axis
            pa = torch.from_numpy((t[None, :] / a[:, None] + c + 1.0).astype(np.float32))
            pb = torch.from_numpy((-(s[None, :] - c) * b[:, None] / a[:, None]).astype(np.float32))
            pos = pa[:, :, None] + pb[:, None, :]  # (v, J, n)
            pos.clamp_(0.0, n + 1.0)
            p0 = torch.floor(pos)
            nv, nj = len(th), j1 - j0
            idx = torch.empty((nv, nj, 2, n), dtype=torch.int32)
            w = torch.empty((nv, nj, 2, n), dtype=torch.float32)
            scale = torch.from_numpy((1.0 / np.abs(a)).astype(np.float32))[:, None, None]
            torch.mul(pos.sub_(p0), scale, out=w[:, :, 1])
            torch.sub(scale, w[:, :, 1], out=w[:, :, 0])
            s_stride = torch.from_numpy(np.where(rows, m, 1).astype(np.int32))[:, None, None]
            p_stride = torch.from_numpy(np.where(rows, 1, m).astype(np.int32))[:, None, None]
            step = (torch.arange(n, dtype=torch.int32) + 1)[None, None, :] * s_stride
            torch.addcmul(step, p0.to(torch.int32), p_stride, out=idx[:, :, 0])
            torch.add(idx[:, :, 0], p_stride, out=idx[:, :, 1])
            idx = idx.reshape(nv * nj, 2 * n)
            w = w.reshape(nv * nj, 2 * n)
            yield slice(i, i + len(th)), slice(j0, j1), idx, w

    def _project_table(self, table: torch.Tensor) -> torch.Tensor:
        """Padded channels-last table ``((n+3)**2, C)`` -> ``(C, n_base, D)``."""
        import torch

        n_ch = table.shape[1]
        out = torch.zeros((len(self.theta), self.n_det, n_ch), dtype=torch.float32)
        chunks = self._fp if self._fp is not None else self._fp_chunks()
        keep: list | None = [] if self._fp is None else None
        nbytes = 0
        for vs, js, idx, w in chunks:
            vals = torch.nn.functional.embedding_bag(idx, table, per_sample_weights=w, mode="sum")
            out[vs, js] = vals.reshape(vs.stop - vs.start, js.stop - js.start, n_ch)
            if keep is not None:  # keep the indices while they fit the cache
                nbytes += idx.numel() * 4 + w.numel() * 4
                if nbytes <= self.cache_bytes:
                    keep.append((vs, js, idx, w))
                else:
                    keep = None
        if keep is not None:
            self._fp = keep
        return out.permute(2, 0, 1)

    def project(self, images: np.ndarray) -> np.ndarray:
        """``(Z, n, n)`` images -> ``(Z, n_views, D)`` line integrals (value x pixel)."""
        import torch

        z, n, v = images.shape[0], self.size, self.n_views
        turned = np.rot90(images, 1, axes=(1, 2))  # theta + 90 deg sees it turned by +90
        if self.fold == 8:  # 90 deg - theta sees the transposed image
            chans = [images, images.transpose(0, 2, 1), turned, turned.transpose(0, 2, 1)]
        elif self.fold == 4:
            chans = [images, turned]
        else:
            chans = [images]
        stack = np.concatenate(chans, axis=0)
        padded = np.zeros((stack.shape[0], n + 3, n + 3), dtype=np.float32)
        padded[:, 1 : n + 1, 1 : n + 1] = stack
        table = torch.from_numpy(np.ascontiguousarray(padded.reshape(len(stack), -1).T))
        base = self._project_table(table).reshape(len(chans), z, -1, self.n_det)
        if self.fold == 8:
            h = v // 8

            def quarter(direct, transposed):  # views 0..h direct, h+1..2h-1 transposed
                return torch.cat([direct[:, : h + 1], transposed[:, 1:h].flip(1)], dim=1)

            half = torch.cat([quarter(base[0], base[1]), quarter(base[2], base[3])], dim=1)
        elif self.fold == 4:
            half = torch.cat([base[0], base[1]], dim=1)
        else:
            half = base[0]
        if self.fold >= 2:  # theta + 180 deg: mirrored detector
            half = torch.cat([half, half.flip(-1)], dim=1)
        return half.numpy()

    # -- back-projection (pixel driven, linear interpolation) --------------------------
    def _bp_chunks(self):
        import torch

        n = self.size
        c = (n - 1) / 2.0
        nb, n_det = len(self.theta), self.n_det
        c_det = (n_det - 1) / 2.0
        cos = torch.from_numpy(np.cos(self.theta).astype(np.float32))
        sin = torch.from_numpy(np.sin(self.theta).astype(np.float32))
        coord = torch.arange(n, dtype=torch.float32) - c
        xc = coord[None, :, None] * cos[None, None, :]  # (1, n, nb)
        base = (torch.arange(nb, dtype=torch.int32) * n_det)[None, None, :]
        rows_per = max(1, 2_000_000 // (n * nb))
        for r0 in range(0, n, rows_per):
            r1 = min(n, r0 + rows_per)
            t = xc + (coord[r0:r1, None, None] * sin[None, None, :] + c_det)  # (r, n, nb)
            i0 = torch.floor(t)
            idx = torch.empty((r1 - r0, n, 2, nb), dtype=torch.int32)
            w = torch.empty((r1 - r0, n, 2, nb), dtype=torch.float32)
            torch.sub(t, i0, out=w[:, :, 1])
            torch.sub(1.0, w[:, :, 1], out=w[:, :, 0])
            torch.add(i0.to(torch.int32).clamp_(0, n_det - 2), base, out=idx[:, :, 0])
            torch.add(idx[:, :, 0], 1, out=idx[:, :, 1])
            idx = idx.reshape(-1, 2 * nb)
            w = w.reshape(-1, 2 * nb)
            yield slice(r0 * n, r1 * n), idx, w

    def _backproject_table(self, q: torch.Tensor) -> torch.Tensor:
        """Channels-last ``(n_base * D, C)`` -> ``(C, n, n)``, plain sum over views."""
        import torch

        n = self.size
        out = torch.empty((n * n, q.shape[1]), dtype=torch.float32)
        chunks = self._bp if self._bp is not None else self._bp_chunks()
        keep: list | None = [] if self._bp is None else None
        nbytes = 0
        for ps, idx, w in chunks:
            out[ps] = torch.nn.functional.embedding_bag(idx, q, per_sample_weights=w, mode="sum")
            if keep is not None:  # keep the indices while they fit the cache
                nbytes += idx.numel() * 4 + w.numel() * 4
                if nbytes <= self.cache_bytes:
                    keep.append((ps, idx, w))
                else:
                    keep = None
        if keep is not None:
            self._bp = keep
        return out.T.reshape(q.shape[1], n, n)

    def back_project(self, filtered: np.ndarray, filter_name: str | None = None) -> np.ndarray:
        """``(Z, n_views, D)`` filtered sinograms -> ``(Z, n, n)`` with the FBP weight.

        With ``filter_name`` ("ramp" or "hann") the input is a raw sinogram, filtered after
        folding opposite views (the filter is even, so it commutes with the mirror)."""
        import torch

        z, v, n_det = filtered.shape
        if v != self.n_views or n_det != self.n_det:
            raise ValueError(
                f"sinogram shape {filtered.shape[1:]} does not match the geometry "
                f"({self.n_views}, {self.n_det})"
            )
        q = filtered
        if self.fold >= 2:  # fold opposite views onto the first half rotation
            h = v // 2
            q = q[:, :h] + q[:, h:, ::-1]
        if filter_name is not None:
            q = filter_sinogram(q, filter_name)
        quarters = [q[:, : v // 4], q[:, v // 4 :]] if self.fold >= 4 else [q]
        if self.fold == 8:  # views h+1..2h-1 of a quarter: transposed octant views 1..h-1
            h = v // 8
            chans = []
            for qq in quarters:
                mirrored = np.zeros_like(qq[:, : h + 1])
                mirrored[:, 1:h] = qq[:, h + 1 :][:, ::-1]
                chans += [qq[:, : h + 1], mirrored]
        else:
            chans = quarters
        q = np.concatenate(chans, axis=0)
        table = torch.from_numpy(
            np.ascontiguousarray(q.reshape(q.shape[0], -1).T, dtype=np.float32)
        )
        img = self._backproject_table(table).numpy().reshape(len(chans), z, self.size, -1)
        if self.fold == 8:
            parts = [img[0] + img[1].transpose(0, 2, 1), img[2] + img[3].transpose(0, 2, 1)]
        else:
            parts = list(img)
        out = parts[0]
        if self.fold >= 4:  # undo the turn of the second quarter
            out = out + np.rot90(parts[1], -1, axes=(1, 2))
        return (out * np.float32(math.pi / (2.0 * v))).astype(np.float32, copy=False)


def forward_project(images: np.ndarray, n_views: int) -> np.ndarray:
    """Parallel-beam line integrals over one full rotation (Joseph's method).

    Parameters
    ----------
    images : np.ndarray
        ``(Y, X)`` or ``(Z, Y, X)`` square images, values per pixel, zero outside the
        inscribed circle (the mirror symmetry of opposite views assumes it).
    n_views : int
        Views over 360 degrees (:func:`view_angles`).

    Returns
    -------
    np.ndarray
        float32 sinogram ``(V, D)`` or ``(Z, V, D)`` with ``D = detector_bins(size)``, in
        units of value x pixel; the detector centre is bin ``(D - 1) / 2``.
    """
    stack, squeeze = _as_stack(images, 3)
    if stack.shape[1] != stack.shape[2]:
        raise ValueError(f"images must be square, got {stack.shape[1]}x{stack.shape[2]}")
    n_views = int(n_views)
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    out = _Geometry(stack.shape[-1], n_views, cache_bytes=0).project(stack)
    return out[0] if squeeze else out


def _ramp_response(n_det: int, filter_name: str = "ramp") -> tuple[np.ndarray, int]:
    """Frequency response of the discrete ramp filter (rfft layout) and the padded length."""
    pad = max(64, int(2 ** math.ceil(math.log2(2 * n_det))))
    n = np.concatenate([np.arange(1, pad // 2 + 1, 2), np.arange(pad // 2 - 1, 0, -2)])
    h = np.zeros(pad)
    h[0] = 0.25
    h[1::2] = -1.0 / (np.pi * n) ** 2
    resp = 2.0 * np.real(np.fft.rfft(h))
    if filter_name == "hann":
        freq = np.fft.rfftfreq(pad)  # 0 .. 0.5 cycles/sample
        resp *= 0.5 * (1.0 + np.cos(2.0 * np.pi * freq))
    elif filter_name != "ramp":
        raise ValueError(f"filter must be 'ramp' or 'hann', got {filter_name!r}")
    return resp.astype(np.float32), pad


def filter_sinogram(sino: np.ndarray, filter_name: str = "ramp") -> np.ndarray:
    """Apply the FBP filter along the detector axis (last axis), float32."""
    import torch

    sino = np.asarray(sino, dtype=np.float32)
    n_det = sino.shape[-1]
    resp, pad = _ramp_response(n_det, filter_name)
    t = torch.from_numpy(np.ascontiguousarray(sino))
    spec = torch.fft.rfft(t, n=pad, dim=-1) * torch.from_numpy(resp)
    return torch.fft.irfft(spec, n=pad, dim=-1)[..., :n_det].contiguous().numpy()


def back_project(filtered: np.ndarray, size: int) -> np.ndarray:
    """FBP back-projection over 360 degrees of an already filtered sinogram.

    Parameters
    ----------
    filtered : np.ndarray
        ``(V, D)`` or ``(Z, V, D)`` filtered sinogram (:func:`filter_sinogram`) with
        ``D = detector_bins(size)``.
    size : int
        Output image width.

    Returns
    -------
    np.ndarray
        float32 ``(Y, X)`` or ``(Z, Y, X)``, with the FBP angular weight ``pi / (2 V)``.
    """
    stack, squeeze = _as_stack(filtered, 3)
    out = _Geometry(int(size), stack.shape[1], cache_bytes=0).back_project(stack)
    return out[0] if squeeze else out


def fbp(sinogram: np.ndarray, size: int, filter_name: str = "ramp") -> np.ndarray:
    """Filtered back-projection of a 360-degree parallel-beam sinogram.

    Parameters
    ----------
    sinogram : np.ndarray
        ``(V, D)`` or ``(Z, V, D)`` line integrals (:func:`forward_project` layout).
    size : int
        Output image width.
    filter_name : {"ramp", "hann"}
        Ramp filter, or ramp with a Hann window.

    Returns
    -------
    np.ndarray
        float32 ``(Y, X)`` or ``(Z, Y, X)`` in units of sinogram value per pixel.
    """
    stack, squeeze = _as_stack(sinogram, 3)
    out = _Geometry(int(size), stack.shape[1], cache_bytes=0).back_project(stack, filter_name)
    return out[0] if squeeze else out
