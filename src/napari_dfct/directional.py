"""Directional amplification ``A_D(rho, phi)``: frequency weights aimed at the streaks.

By the Fourier slice theorem an error in the view at angle ``theta`` fills, after
filtered back-projection, only the central line at angle ``theta`` of the slice's 2-D
spectrum (perpendicular to the streak it draws). Streak energy therefore sits on a few
spectral directions that change from slice to slice, while ``A_F`` is isotropic. The
directional weight lifts only those directions:

.. math:: A_D(\\rho, \\phi) = 1 + (A_F(\\rho) - 1)\\, G(\\phi)

with ``A_F`` one of the radial frequency profiles of :mod:`napari_dfct.weights`
(``linear``, ``nonlinear``, ``sqrt``) and ``G`` in ``[0, 1]`` an angular part estimated
**per sample** from the residual ``r = input - target`` of that patch or slice.

Angles
------
``phi = atan2(f_row, f_col) mod pi`` in ``[0, pi)``, with ``f_row`` / ``f_col`` the signed
frequencies of :func:`torch.fft.fftfreq` along the rows (axis -2) and the columns (axis
-1) of the array. With the simulator's projector (a view at ``theta`` back-projects a
function of ``col cos(theta) + row sin(theta)``, :mod:`napari_dfct.simulate.projector`) the
error of view ``theta`` lands at ``phi = theta mod pi``; its streak runs along
``theta + 90`` degrees in the image.

The estimator of ``G``
----------------------
1. ``r`` is multiplied by a separable periodic Hann window (so that the patch border does
   not leak energy onto the axes, ``phi = 0`` and ``90`` degrees) and transformed,
   ``P = |FFT2(r w)|^2``.
2. Bins with ``LOW_CUT / min(H, W) <= |f| <= 0.5`` cycles / pixel enter the angular
   histogram: DC and the lowest radial band (within ``LOW_CUT = 4`` bins of DC, where
   angles are quantised to tens of degrees, and where the estimate correlated least
   with the simulator's truth) are dropped, and so are the spectrum's corners
   beyond the inscribed circle (they exist only near the diagonals and would bias an
   isotropic error towards 45 and 135 degrees).
3. Their energy is summed into ``ANGLE_BINS = 180`` bins of ``phi`` over ``[0, pi)`` (one
   degree), each bin shared linearly between its two nearest bin centres.
4. The histogram ``h`` is smoothed circularly over the angle with a Gaussian of standard
   deviation ``ANGLE_SIGMA = 4`` degrees (periodic in 180 degrees).
5. ``G = (h - min h) / (max h - min h)``. When ``max h - min h <= FLAT_CONTRAST * max h``
   (an isotropic or a zero residual) ``G = 1`` everywhere, and then ``A_D`` equals ``A_F``
   exactly: D with a flat angular part *is* spectral F.

``G`` is evaluated at every frequency bin by linear interpolation between the bin centres,
then the map is symmetrised, ``(g[k] + g[-k mod N]) / 2``, which makes ``A_D`` exactly
Hermitian-symmetric (``A_D[k] == A_D[-k mod N]``, including the Nyquist row and column
of even sizes) so that the filtered error stays real. ``A_D`` lies in ``[1, 2]``, equals 1
at DC and ``A_F`` in the most streaked direction.

The oracle
----------
:func:`oracle_angular` builds ``G`` the same way (steps 3-5) from a known error energy
per view (:func:`napari_dfct.simulate.view_error_energy` for a simulated slice), each
view's energy placed at its spectral angle ``theta mod pi``: what a perfect estimate
would give, for validating the estimator and for the study.

NumPy helpers (:func:`angular_profile`, :func:`directional_weight_np`) serve previews.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from . import weights as _w

__all__ = [
    "ANGLE_BINS",
    "ANGLE_SIGMA",
    "LOW_CUT",
    "FLAT_CONTRAST",
    "DC_IDENTITY",
    "spectral_angle",
    "angular_energy",
    "angular_weight",
    "angular_from_energy",
    "weight_from_angular",
    "directional_weight",
    "oracle_angular",
    "angular_profile",
    "directional_weight_np",
    "bin_angles",
]

#: Angle bins over [0, 180) degrees.
ANGLE_BINS = 180
#: Standard deviation of the circular Gaussian smoothing over angle, degrees.
ANGLE_SIGMA = 4.0
#: Frequency bins next to DC left out of the angular histogram.
LOW_CUT = 4.0
#: Relative contrast ``(max - min) / max`` below which the angular part is flat (G = 1).
FLAT_CONTRAST = 1e-6

#: Why a directional configuration is refused in the paper's mode (one line).
DC_IDENTITY = (
    "directional amplification (D) needs mode 'spectral': in the paper's formula a "
    "frequency weight acts on the loss map, whose mean keeps only A(DC) = 1 "
    "(mean(Re IFFT2(A FFT2(L))) = A(DC) mean(L)), so any frequency or directional weight "
    "there trains the baseline"
)


# ----------------------------------------------------------------------------- grids
def spectral_angle(shape) -> np.ndarray:
    """``phi = atan2(f_row, f_col) mod pi`` of every bin, ``fft2`` layout, float64 radians.

    DC gets 0. See the module docstring for the convention.
    """
    h, w = _w._check_shape(shape)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    phi = np.mod(np.arctan2(np.broadcast_to(fy, (h, w)), np.broadcast_to(fx, (h, w))), np.pi)
    phi[phi >= np.pi] = 0.0
    return phi


def bin_angles(n_bins: int = ANGLE_BINS) -> np.ndarray:
    """Centres of the angle bins, degrees: ``0, 180 / n, ...``."""
    return np.arange(int(n_bins)) * 180.0 / int(n_bins)


def _soft_bins(phi: np.ndarray, n_bins: int):
    """Lower bin, upper bin and the upper bin's share of each angle (linear)."""
    pos = phi / np.pi * n_bins
    i0 = np.floor(pos).astype(np.int64) % n_bins
    frac = pos - np.floor(pos)
    return i0, (i0 + 1) % n_bins, frac


@functools.lru_cache(maxsize=32)
def _tables(shape, n_bins, low_cut, device):
    """Cached per (shape, bins, cut, device): window, histogram bins and map bins."""
    h, w = shape
    dev = torch.device(device)
    win = (
        np.outer(np.hanning(h + 1)[:h], np.hanning(w + 1)[:w])
        if min(h, w) > 2
        else np.ones((h, w))
    )
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    f = np.sqrt(fy**2 + fx**2)
    keep = (f >= low_cut / min(h, w)) & (f <= 0.5)
    i0, i1, frac = _soft_bins(spectral_angle(shape), n_bins)
    ki = np.flatnonzero(keep.ravel())

    def t(a, dt=torch.float32):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=dev)

    return {
        "window": t(win),
        "keep": t(ki, torch.int64),
        "h0": t(i0.ravel()[ki], torch.int64),
        "h1": t(i1.ravel()[ki], torch.int64),
        "hf": t(frac.ravel()[ki]),
        "m0": t(i0.ravel(), torch.int64),
        "m1": t(i1.ravel(), torch.int64),
        "mf": t(frac.ravel()),
    }


@functools.lru_cache(maxsize=16)
def _kernel_spectrum(n_bins: int, sigma_deg: float, device: str) -> torch.Tensor:
    """rfft of the circular Gaussian (unit sum) over ``n_bins`` angle bins."""
    d = np.minimum(np.arange(n_bins), n_bins - np.arange(n_bins)) * 180.0 / n_bins
    if sigma_deg > 0:
        k = np.exp(-0.5 * (d / sigma_deg) ** 2)
    else:
        k = (d == 0).astype(np.float64)
    k /= k.sum()
    return torch.fft.rfft(torch.as_tensor(k, dtype=torch.float64, device=device))


def _device_key(device) -> str:
    return _w._device_key(device)


# ------------------------------------------------------------------------- estimator
def _as_batch(x: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim == 2:
        return x[None]
    if x.ndim == 4:
        if x.shape[1] != 1:
            raise ValueError(f"expected one channel, got shape {tuple(x.shape)}")
        return x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"expected (H, W), (B, H, W) or (B, 1, H, W), got {tuple(x.shape)}")
    return x


def angular_energy(residual, n_bins: int = ANGLE_BINS, low_cut: float = LOW_CUT) -> torch.Tensor:
    """Windowed spectral energy of ``residual`` summed into angle bins (steps 1-3).

    Parameters
    ----------
    residual : torch.Tensor
        ``(H, W)``, ``(B, H, W)`` or ``(B, 1, H, W)``, e.g. ``input - target``.

    Returns
    -------
    torch.Tensor
        float64 ``(B, n_bins)``, not smoothed; no gradient.
    """
    with torch.no_grad():
        r = _as_batch(residual).float()
        b, h, w = r.shape
        tab = _tables((h, w), int(n_bins), float(low_cut), _device_key(r.device))
        spec = torch.fft.fft2(r * tab["window"], dim=(-2, -1))
        p = (spec.real**2 + spec.imag**2).reshape(b, -1)[:, tab["keep"]].double()
        hist = torch.zeros((b, int(n_bins)), dtype=torch.float64, device=r.device)
        frac = tab["hf"].double()
        hist.index_add_(1, tab["h0"], p * (1.0 - frac))
        hist.index_add_(1, tab["h1"], p * frac)
        return hist


def angular_from_energy(
    hist, sigma: float = ANGLE_SIGMA, flat_contrast: float = FLAT_CONTRAST
) -> torch.Tensor:
    """Steps 4-5: smooth ``(B, n_bins)`` angular energies circularly and rescale each row
    to ``[0, 1]`` (rows with a relative contrast up to ``flat_contrast`` become 1)."""
    hist = torch.as_tensor(hist, dtype=torch.float64)
    if hist.ndim == 1:
        hist = hist[None]
    n = hist.shape[-1]
    ker = _kernel_spectrum(n, float(sigma), _device_key(hist.device))
    sm = torch.fft.irfft(torch.fft.rfft(hist, dim=-1) * ker, n=n, dim=-1).clamp_min(0.0)
    lo = sm.min(dim=-1, keepdim=True).values
    hi = sm.max(dim=-1, keepdim=True).values
    span = hi - lo
    flat = ~(span > flat_contrast * hi)
    g = (sm - lo) / torch.where(flat, torch.ones_like(span), span)
    return torch.where(flat, torch.ones_like(g), g).clamp(0.0, 1.0)


def angular_weight(
    residual, n_bins: int = ANGLE_BINS, sigma: float = ANGLE_SIGMA, low_cut: float = LOW_CUT
) -> torch.Tensor:
    """The estimated angular part ``G``, float64 ``(B, n_bins)`` in ``[0, 1]``."""
    return angular_from_energy(angular_energy(residual, n_bins, low_cut), sigma)


def weight_from_angular(
    g, shape, profile: str = "nonlinear", *, device=None, normalize: bool = False
) -> torch.Tensor:
    """``A_D = 1 + (A_F - 1) G(phi)`` from angular parts ``g`` ``(B, n_bins)``.

    Parameters
    ----------
    g : torch.Tensor or array_like
        ``(B, n_bins)`` or ``(n_bins,)`` in ``[0, 1]``.
    shape : (int, int)
        Spectrum shape ``(H, W)``.
    profile : {"linear", "nonlinear", "sqrt", "none"}
        The radial profile ``A_F``.
    normalize : bool
        Divide by the mean of ``A_F`` (the divisor of normalised F, so that D with a flat
        angular part stays equal to F).

    Returns
    -------
    torch.Tensor
        float32 ``(B, 1, H, W)``, ``fft2`` layout, Hermitian-symmetric, in ``[1, 2]``
        (unless normalised).
    """
    h, w = _w._check_shape(shape)
    g = torch.as_tensor(g, dtype=torch.float32, device=device)
    if g.ndim == 1:
        g = g[None]
    dev = g.device
    n_bins = g.shape[-1]
    tab = _tables((h, w), int(n_bins), LOW_CUT, _device_key(dev))
    g0 = g[:, tab["m0"]]
    gm = g0 + tab["mf"] * (g[:, tab["m1"]] - g0)  # exactly 1 where G is flat
    gm = gm.reshape(-1, h, w)
    flipped = torch.roll(torch.flip(gm, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))
    gm = 0.5 * (gm + flipped)
    a_f = _w.frequency_weight((h, w), profile, device=dev)
    a_d = (1.0 + (a_f - 1.0) * gm).clamp(1.0, 2.0)
    if normalize:
        a_d = a_d / float(_w.frequency_weight_np((h, w), profile).mean())
    return a_d[:, None]


def directional_weight(
    inp, target, profile: str = "nonlinear", *, normalize: bool = False, sigma: float = ANGLE_SIGMA
) -> torch.Tensor:
    """Per-sample ``A_D`` from ``FFT2(inp - target)``, batched for training.

    Parameters
    ----------
    inp, target : torch.Tensor
        ``(B, 1, H, W)`` (or ``(H, W)``, ``(B, H, W)``): the network input and the target
        of each sample (patch or slice).
    profile : str
        Radial profile of ``A_D`` (:data:`napari_dfct.weights.FREQUENCY_PROFILES`).
    normalize : bool
        See :func:`weight_from_angular`.

    Returns
    -------
    torch.Tensor
        float32 ``(B, 1, H, W)``, no gradient.
    """
    with torch.no_grad():
        r = _as_batch(inp).float() - _as_batch(target).to(_as_batch(inp).device).float()
        g = angular_weight(r, sigma=sigma)
        return weight_from_angular(g, r.shape[-2:], profile, device=r.device, normalize=normalize)


# ------------------------------------------------------------------------------ oracle
def oracle_angular(
    view_angles, energy, n_bins: int = ANGLE_BINS, sigma: float = ANGLE_SIGMA
) -> np.ndarray:
    """``G`` from a known error energy per view (the simulator's truth).

    Parameters
    ----------
    view_angles : array_like
        ``(V,)`` view angles ``theta`` in radians (any range).
    energy : array_like
        ``(V,)`` or ``(Z, V)`` error energy of each view (e.g.
        :func:`napari_dfct.simulate.view_error_energy`).

    Returns
    -------
    numpy.ndarray
        float64 ``(n_bins,)`` or ``(Z, n_bins)`` in ``[0, 1]``: each view's energy at the
        spectral angle ``theta mod pi``, then steps 3-5 of the estimator.
    """
    theta = np.mod(np.asarray(view_angles, dtype=np.float64).ravel(), np.pi)
    e = np.asarray(energy, dtype=np.float64)
    squeeze = e.ndim == 1
    e = e.reshape(-1, theta.size)
    i0, i1, frac = _soft_bins(theta, int(n_bins))
    hist = np.zeros((e.shape[0], int(n_bins)))
    for row, er in zip(hist, e):
        np.add.at(row, i0, er * (1.0 - frac))
        np.add.at(row, i1, er * frac)
    g = angular_from_energy(torch.from_numpy(hist), sigma).numpy()
    return g[0] if squeeze else g


# ------------------------------------------------------------------------ NumPy helpers
def angular_profile(
    image, target, n_bins: int = ANGLE_BINS, sigma: float = ANGLE_SIGMA
) -> tuple[np.ndarray, np.ndarray]:
    """The estimated angular part of one slice or patch, for plots.

    Returns
    -------
    angles, g : numpy.ndarray
        Bin centres in degrees ``(n_bins,)`` and ``G`` there, float64 in ``[0, 1]``.
    """
    r = np.asarray(image, dtype=np.float32) - np.asarray(target, dtype=np.float32)
    if r.ndim != 2:
        raise ValueError(f"expected a 2-D slice, got shape {tuple(r.shape)}")
    g = angular_weight(torch.from_numpy(r), n_bins=n_bins, sigma=sigma)[0].numpy()
    return bin_angles(n_bins), g


def directional_weight_np(
    image, target, profile: str = "nonlinear", *, normalize: bool = False
) -> np.ndarray:
    """``A_D`` of one slice or patch as a float64 ``(H, W)`` array in ``fft2`` layout (use
    :func:`napari_dfct.weights.fftshift` to put DC in the middle)."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D slice, got shape {tuple(img.shape)}")
    a = directional_weight(
        torch.from_numpy(img),
        torch.from_numpy(np.asarray(target, dtype=np.float32)),
        profile,
        normalize=normalize,
    )
    return a[0, 0].double().numpy()
