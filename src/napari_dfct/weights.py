"""Amplification maps for the structured loss: spatial ``A_S`` and frequency ``A_F``.

Both maps are radial, lie in ``[1, 2]`` and come in three profiles:

``"none"``
    All ones (no amplification).
``"linear"``
    A straight line in the normalised radius.
``"nonlinear"``
    A closed-form curve (see below) with the same end points.

Spatial map ``A_S`` (image domain)
----------------------------------
The iso-centre is the pixel ``(H // 2, W // 2)``: the rotation centre of
:func:`skimage.transform.radon` / :func:`skimage.transform.iradon` and the zero bin of
``numpy.fft.fftshift``; it exists for odd and even sizes. The normalised radius is

.. math:: r = d / d_{max}, \\qquad d = \\sqrt{(y - H//2)^2 + (x - W//2)^2}

where ``d_max`` is the distance to the farthest pixel of the slice (a corner): the
*edge* is the farthest point, so ``r`` spans ``[0, 1]`` over the slice without clamping,
``A_S = 2`` exactly at the iso-centre pixel and ``A_S = 1`` exactly at the farthest corner.
(``edge="inscribed"`` uses the inscribed circle instead and clamps ``r`` to 1 outside it,
so everything outside the reconstruction circle weighs 1.)

* linear: ``A_S(r) = 2 - r``
* nonlinear: a logistic step in ``r``, rescaled to hit the end points exactly,

  .. math:: s(r) = \\frac{1}{1 + e^{k (r - r_0)}}, \\qquad
            A_S(r) = 1 + \\frac{s(r) - s(1)}{s(0) - s(1)}

  with ``r_0 = 0.45`` (transition radius) and ``k = 12`` (steepness). Its slope is
  ``k/4 / (s(0) - s(1)) ~ 3.0`` at ``r_0`` (linear: 1) — a sharper ROI / background
  transition — and falls to ``0.18`` at ``r = 0.8`` and ``0.016`` at ``r = 1`` (linear: 1
  everywhere): a smoother decay to the edges. The centre is a plateau too
  (``A_S(0.2) = 1.96``).

Frequency map ``A_F`` (Fourier domain)
--------------------------------------
``A_F`` is in the layout of :func:`torch.fft.fft2` (DC at ``[0, 0]``, frequencies as
:func:`torch.fft.fftfreq`). With integer frequency indices ``m_y = min(k_y, H - k_y)``,
``m_x = min(k_x, W - k_x)`` the radial frequency in cycles / pixel is
``f = sqrt((m_y / H)^2 + (m_x / W)^2)`` and the normalised one is ``rho = f / f_max`` with
``f_max`` the largest value on the grid (the corner bin, Nyquist in both axes for even
sizes). Because ``m`` is symmetric in ``k -> -k mod N``, ``A_F`` is exactly
Hermitian-symmetric (``A_F[k] == A_F[-k mod N]``), so ``IFFT2(A_F * FFT2(L))`` of a real
``L`` is real up to rounding.

* linear: ``A_F(rho) = 1 + rho``
* nonlinear: ``A_F(rho) = 1 + rho ** gamma`` with ``gamma = 0.5``: equal at the end points
  (1 at DC, 2 at the highest frequency) and strictly above the linear map in between,
  raising the mid and high bands further (e.g. ``1.71`` vs ``1.5`` at ``rho = 0.5``).

Caching and ownership
---------------------
:func:`spatial_weight` and :func:`frequency_weight` are cached per
``(shape, profile, device, dtype, ...)`` with :func:`functools.lru_cache`: repeated calls
return **the same tensor object**. Treat it as read-only: never modify it in place
(``w.mul_(...)``, ``w[...] = ...``); use ``w.clone()`` if you need a private copy.
Out-of-place arithmetic (``w * loss``) is fine and is what the losses do.
The NumPy helpers (:func:`spatial_weight_np`, :func:`frequency_weight_np`,
:func:`radial_profile`) are not cached and return fresh float64 arrays.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch

#: A NumPy array or a torch tensor (a function given one returns the same kind).
ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

__all__ = [
    "PROFILES",
    "FREQUENCY_PROFILES",
    "EDGES",
    "SPATIAL_NONLINEAR_R0",
    "SPATIAL_NONLINEAR_K",
    "FREQUENCY_NONLINEAR_GAMMA",
    "FREQUENCY_NONLINEAR_POWER",
    "spatial_profile",
    "frequency_profile",
    "spatial_radius",
    "frequency_radius",
    "spatial_weight_np",
    "frequency_weight_np",
    "spatial_weight",
    "frequency_weight",
    "radial_profile",
    "crop",
    "crop_batch",
    "fftshift",
    "clear_cache",
]

PROFILES = ("none", "linear", "nonlinear")
#: Frequency profiles: the spatial ones plus ``sqrt`` (``1 + sqrt(rho)``, the non-linear
#: profile of version 0.1, kept selectable under its own name).
FREQUENCY_PROFILES = PROFILES + ("sqrt",)
EDGES = ("corner", "inscribed")

#: Transition radius of the non-linear spatial profile (fraction of the edge radius).
SPATIAL_NONLINEAR_R0 = 0.45
#: Steepness of the non-linear spatial profile's logistic step.
SPATIAL_NONLINEAR_K = 12.0
#: Exponent of the ``sqrt`` frequency profile ``1 + rho ** gamma``.
FREQUENCY_NONLINEAR_GAMMA = 0.5
#: Power of the non-linear frequency profile ``2 - (1 - rho) ** n``.
FREQUENCY_NONLINEAR_POWER = 3.0


# ----------------------------------------------------------------------------- validation
def _check_profile(profile: str, valid: Sequence[str] = PROFILES) -> str:
    if not isinstance(profile, str) or profile.lower() not in valid:
        raise ValueError(f"unknown weight profile {profile!r}; valid profiles: {', '.join(valid)}")
    return profile.lower()


def _check_shape(shape: Sequence[int] | np.ndarray) -> tuple[int, int]:
    try:
        shp = tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(f"shape must be a (height, width) pair, got {shape!r}") from None
    if len(shp) != 2 or min(shp) < 1:
        raise ValueError(f"shape must be a (height, width) pair of positive ints, got {shape!r}")
    return shp


def _check_edge(edge: str) -> str:
    if edge not in EDGES:
        raise ValueError(f"unknown edge {edge!r}; valid edges: {', '.join(EDGES)}")
    return edge


# ------------------------------------------------------------------- closed-form profiles
def spatial_profile(
    r: Any,
    profile: str = "linear",
    *,
    r0: float = SPATIAL_NONLINEAR_R0,
    k: float = SPATIAL_NONLINEAR_K,
) -> np.ndarray:
    """Spatial amplification as a function of the normalised radius.

    Parameters
    ----------
    r : array_like
        Normalised radius; values are clipped to ``[0, 1]``.
    profile : {"none", "linear", "nonlinear"}
        ``none``: 1; ``linear``: ``2 - r``; ``nonlinear``: rescaled logistic step
        ``1 + (s(r) - s(1)) / (s(0) - s(1))`` with ``s(r) = 1 / (1 + exp(k (r - r0)))``.
    r0, k : float
        Transition radius and steepness of the non-linear profile.

    Returns
    -------
    numpy.ndarray
        float64, same shape as ``r``, in ``[1, 2]``; 2 at ``r = 0`` and 1 at ``r = 1``.
    """
    profile = _check_profile(profile)
    r = np.clip(np.asarray(r, dtype=np.float64), 0.0, 1.0)
    if profile == "none":
        return np.ones_like(r)
    if profile == "linear":
        return 2.0 - r
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")

    def s(x: Any) -> Any:
        return 1.0 / (1.0 + np.exp(k * (x - r0)))

    s0, s1 = s(0.0), s(1.0)
    out = 1.0 + (s(r) - s1) / (s0 - s1)
    # exact end points regardless of rounding
    out = np.where(r <= 0.0, 2.0, np.where(r >= 1.0, 1.0, out))
    return np.clip(out, 1.0, 2.0)


def frequency_profile(
    rho: Any,
    profile: str = "linear",
    *,
    gamma: float = FREQUENCY_NONLINEAR_GAMMA,
    power: float = FREQUENCY_NONLINEAR_POWER,
) -> np.ndarray:
    """Frequency amplification as a function of the normalised radial frequency.

    Parameters
    ----------
    rho : array_like
        Normalised radial frequency; values are clipped to ``[0, 1]``.
    profile : {"none", "linear", "nonlinear", "sqrt"}
        ``none``: 1; ``linear``: ``1 + rho``; ``nonlinear``: ``2 - (1 - rho) ** power``
        (above the linear profile everywhere in between, most at mid bands, flat at the
        top: it follows where the simulator's streaks outweigh the anatomy, see
        ``docs/loss-amplification.md``); ``sqrt``: ``1 + rho ** gamma`` (the non-linear
        profile of version 0.1, which lifts the low-to-mid bands most).
    gamma : float
        Exponent of the ``sqrt`` profile, ``0 < gamma <= 1``.
    power : float
        Power of the non-linear profile, ``>= 1``.

    Returns
    -------
    numpy.ndarray
        float64, same shape as ``rho``, in ``[1, 2]``; 1 at DC and 2 at ``rho = 1``.
    """
    profile = _check_profile(profile, FREQUENCY_PROFILES)
    rho = np.clip(np.asarray(rho, dtype=np.float64), 0.0, 1.0)
    if profile == "none":
        return np.ones_like(rho)
    if profile == "linear":
        return 1.0 + rho
    if profile == "nonlinear":
        if not power >= 1:
            raise ValueError(f"power must be at least 1, got {power}")
        return 2.0 - (1.0 - rho) ** power
    if not 0 < gamma <= 1:
        raise ValueError(f"gamma must lie in (0, 1], got {gamma}")
    return 1.0 + rho**gamma


# ------------------------------------------------------------------------- radius grids
def spatial_radius(shape: Sequence[int], edge: str = "corner") -> np.ndarray:
    """Normalised distance of every pixel from the iso-centre ``(H // 2, W // 2)``.

    Parameters
    ----------
    shape : (int, int)
        Slice shape ``(H, W)``.
    edge : {"corner", "inscribed"}
        ``corner``: divide by the distance to the farthest pixel (``r`` in ``[0, 1]``,
        exactly 1 there). ``inscribed``: divide by the radius of the largest centred circle
        that fits in the slice (distance to the nearest border pixel) and clamp to 1.

    Returns
    -------
    numpy.ndarray
        float64 ``(H, W)``.
    """
    h, w = _check_shape(shape)
    edge = _check_edge(edge)
    cy, cx = h // 2, w // 2
    dy = np.arange(h, dtype=np.float64) - cy
    dx = np.arange(w, dtype=np.float64) - cx
    d = np.sqrt(dy[:, None] ** 2 + dx[None, :] ** 2)
    if edge == "corner":
        dmax = math.hypot(max(cy, h - 1 - cy), max(cx, w - 1 - cx))
    else:
        dmax = float(min(cy, h - 1 - cy, cx, w - 1 - cx))
    if dmax == 0:  # a 1-pixel slice, or a 1-2 pixel wide strip for "inscribed"
        return np.clip(d, 0.0, 1.0)
    r = d / dmax
    if edge == "corner":
        # the farthest pixel(s) land on 1.0 exactly
        r[d >= dmax] = 1.0
    return np.clip(r, 0.0, 1.0)


def frequency_radius(shape: Sequence[int]) -> np.ndarray:
    """Normalised radial frequency of every bin, in ``torch.fft.fft2`` layout.

    Parameters
    ----------
    shape : (int, int)
        Spectrum shape ``(H, W)`` (same as the image).

    Returns
    -------
    numpy.ndarray
        float64 ``(H, W)``, 0 at DC ``[0, 0]``, 1 at the highest radial frequency; exactly
        symmetric under ``k -> -k mod N`` in both axes.
    """
    h, w = _check_shape(shape)
    ky = np.arange(h)
    kx = np.arange(w)
    my = np.minimum(ky, h - ky) / h  # |fftfreq| built from symmetric integers
    mx = np.minimum(kx, w - kx) / w
    f = np.sqrt(my[:, None] ** 2 + mx[None, :] ** 2)
    fmax = f.max()
    if fmax == 0:
        return np.zeros((h, w))
    rho = f / fmax
    rho[f >= fmax] = 1.0
    return rho


# ---------------------------------------------------------------------- NumPy weight maps
def spatial_weight_np(
    shape: Sequence[int],
    profile: str = "linear",
    *,
    edge: str = "corner",
    normalize: bool = False,
) -> np.ndarray:
    """Spatial amplification map ``A_S`` as a float64 NumPy array (for previews).

    Parameters
    ----------
    shape : (int, int)
        Full slice shape ``(H, W)``.
    profile : {"none", "linear", "nonlinear"}
        Radial profile, see :func:`spatial_profile`.
    edge : {"corner", "inscribed"}
        Where the weight reaches 1, see :func:`spatial_radius`.
    normalize : bool
        Divide by the mean over the slice, so the map has mean 1.

    Returns
    -------
    numpy.ndarray
        float64 ``(H, W)``.
    """
    profile = _check_profile(profile)
    h, w = _check_shape(shape)
    if profile == "none":
        return np.ones((h, w))
    a = spatial_profile(spatial_radius((h, w), edge), profile)
    if normalize:
        a = a / a.mean()
    return a


def frequency_weight_np(
    shape: Sequence[int], profile: str = "linear", *, normalize: bool = False
) -> np.ndarray:
    """Frequency amplification map ``A_F`` (``fft2`` layout) as a float64 NumPy array.

    Parameters
    ----------
    shape : (int, int)
        Image / spectrum shape ``(H, W)``.
    profile : {"none", "linear", "nonlinear", "sqrt"}
        Radial profile, see :func:`frequency_profile`.
    normalize : bool
        Divide by the mean over the spectrum, so the map has mean 1 (``A_F(DC)`` becomes
        ``1 / mean``).

    Returns
    -------
    numpy.ndarray
        float64 ``(H, W)``; use :func:`fftshift` to put DC in the middle for display.
    """
    profile = _check_profile(profile, FREQUENCY_PROFILES)
    h, w = _check_shape(shape)
    if profile == "none":
        return np.ones((h, w))
    a = frequency_profile(frequency_radius((h, w)), profile)
    if normalize:
        a = a / a.mean()
    return a


# ------------------------------------------------------------------ cached torch tensors
def _device_key(device: str | torch.device | None) -> str:
    if device is None:
        return "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    return str(dev)


@functools.lru_cache(maxsize=64)
def _spatial_cached(
    shape: tuple[int, int],
    profile: str,
    edge: str,
    normalize: bool,
    device: str,
    dtype: torch.dtype,
) -> torch.Tensor:
    a = spatial_weight_np(shape, profile, edge=edge, normalize=normalize)
    return torch.as_tensor(a, dtype=dtype, device=torch.device(device))


@functools.lru_cache(maxsize=64)
def _frequency_cached(
    shape: tuple[int, int], profile: str, normalize: bool, device: str, dtype: torch.dtype
) -> torch.Tensor:
    a = frequency_weight_np(shape, profile, normalize=normalize)
    return torch.as_tensor(a, dtype=dtype, device=torch.device(device))


def spatial_weight(
    shape: Sequence[int],
    profile: str = "linear",
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    edge: str = "corner",
    normalize: bool = False,
) -> torch.Tensor:
    """Spatial amplification map ``A_S`` for a full slice (cached, read-only).

    Parameters
    ----------
    shape : (int, int)
        Full slice shape ``(H, W)``: compute on the whole slice, then :func:`crop` /
        :func:`crop_batch` to the patch.
    profile : {"none", "linear", "nonlinear"}
        ``none`` gives ones; see the module docstring for the closed forms.
    device : torch.device or str, optional
        Defaults to CPU.
    dtype : torch.dtype
        Defaults to float32.
    edge : {"corner", "inscribed"}
        Where the weight reaches 1, see :func:`spatial_radius`.
    normalize : bool
        Rescale to mean 1 over the slice.

    Returns
    -------
    torch.Tensor
        ``(H, W)`` in ``[1, 2]`` (unless normalised), 2 at ``(H // 2, W // 2)``. The same
        object is returned for the same arguments: do not modify it in place.
    """
    return _spatial_cached(
        _check_shape(shape),
        _check_profile(profile),
        _check_edge(edge),
        bool(normalize),
        _device_key(device),
        dtype,
    )


def frequency_weight(
    shape: Sequence[int],
    profile: str = "linear",
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    normalize: bool = False,
) -> torch.Tensor:
    """Frequency amplification map ``A_F`` in ``torch.fft.fft2`` layout (cached, read-only).

    Parameters
    ----------
    shape : (int, int)
        Image shape ``(H, W)`` (the patch shape when the loss is computed on patches).
    profile : {"none", "linear", "nonlinear"}
        ``none`` gives ones; see the module docstring for the closed forms.
    device : torch.device or str, optional
        Defaults to CPU.
    dtype : torch.dtype
        Defaults to float32 (real; multiply it into a complex spectrum directly).
    normalize : bool
        Rescale to mean 1 over the spectrum.

    Returns
    -------
    torch.Tensor
        ``(H, W)`` in ``[1, 2]`` (unless normalised), 1 at DC ``[0, 0]``, 2 at the highest
        radial frequency, Hermitian-symmetric. The same object is returned for the same
        arguments: do not modify it in place.
    """
    return _frequency_cached(
        _check_shape(shape),
        _check_profile(profile, FREQUENCY_PROFILES),
        bool(normalize),
        _device_key(device),
        dtype,
    )


def clear_cache() -> None:
    """Drop all cached weight tensors (e.g. to free GPU memory)."""
    _spatial_cached.cache_clear()
    _frequency_cached.cache_clear()


# ------------------------------------------------------------------------------ helpers
def radial_profile(
    kind: str = "spatial", profile: str = "linear", n: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Sample a weight's closed form along the normalised radius (for plots).

    Parameters
    ----------
    kind : {"spatial", "frequency"}
        Which map.
    profile : {"none", "linear", "nonlinear"}
        Which profile.
    n : int
        Number of samples in ``[0, 1]``.

    Returns
    -------
    r, weight : numpy.ndarray
        float64 ``(n,)`` each.
    """
    r = np.linspace(0.0, 1.0, int(n))
    if kind == "spatial":
        return r, spatial_profile(r, profile)
    if kind == "frequency":
        return r, frequency_profile(r, profile)
    raise ValueError(f"unknown kind {kind!r}; valid kinds: spatial, frequency")


def crop(weight: ArrayT, top: int, left: int, height: int, width: int | None = None) -> ArrayT:
    """Crop a patch ``[top:top+height, left:left+width]`` from the last two axes.

    Works for NumPy arrays and torch tensors (returns a view).

    Raises
    ------
    ValueError
        If the patch does not lie inside the map.
    """
    width = height if width is None else width
    h, w = weight.shape[-2:]
    top, left, height, width = int(top), int(left), int(height), int(width)
    if top < 0 or left < 0 or height < 1 or width < 1 or top + height > h or left + width > w:
        raise ValueError(
            f"patch at ({top}, {left}) of size ({height}, {width}) does not fit in a "
            f"({h}, {w}) weight map"
        )
    return weight[..., top : top + height, left : left + width]


def crop_batch(weight: torch.Tensor, corners: Any, size: int | Sequence[int]) -> torch.Tensor:
    """Crop one patch per sample from a full-slice map, vectorised (works on GPU).

    Parameters
    ----------
    weight : torch.Tensor
        ``(H, W)`` map, e.g. :func:`spatial_weight`.
    corners : array_like or torch.Tensor
        ``(B, 2)`` integer ``(top, left)`` per sample.
    size : int or (int, int)
        Patch ``(height, width)``.

    Returns
    -------
    torch.Tensor
        ``(B, 1, height, width)``, a new tensor (safe to modify), same as stacking
        ``crop(weight, top, left, height, width)[None]``.
    """
    if weight.ndim != 2:
        raise ValueError(f"weight must be (H, W), got shape {tuple(weight.shape)}")
    ph, pw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    c = torch.as_tensor(corners, device=weight.device).long().reshape(-1, 2)
    h, w = weight.shape
    if c.numel() and (
        bool((c < 0).any()) or int(c[:, 0].max()) + ph > h or int(c[:, 1].max()) + pw > w
    ):
        raise ValueError(f"a ({ph}, {pw}) patch at the given corners leaves the ({h}, {w}) map")
    rows = c[:, 0:1] + torch.arange(ph, device=weight.device)[None, :]  # (B, ph)
    cols = c[:, 1:2] + torch.arange(pw, device=weight.device)[None, :]  # (B, pw)
    return weight[rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def fftshift(a: Any) -> Any:
    """Move DC to the centre of the last two axes, for display (NumPy or torch)."""
    if isinstance(a, torch.Tensor):
        return torch.fft.fftshift(a, dim=(-2, -1))
    return np.fft.fftshift(np.asarray(a), axes=(-2, -1))
