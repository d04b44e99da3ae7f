"""Pixel-wise L1/L2 losses with structured (spatial / frequency) amplification.

Notation: ``p`` prediction, ``t`` target, ``L`` the pixel-wise loss map (``|p - t|`` for
L1, ``(p - t)^2`` for L2), ``A_S`` the spatial and ``A_F`` the frequency amplification map
(:mod:`napari_dfct.weights`), ``F(X) = Re{IFFT2(A_F * FFT2(X))}`` the frequency filter
over the last two axes. The scalar loss is the mean of the amplified map.

Mode ``"paper"`` (the paper's formulas, exactly)
------------------------------------------------
=========  ==========================
scheme     amplified map
=========  ==========================
none       ``L``
S          ``A_S * L``
F          ``F(L)``
S+F        ``F(A_S * L)``
F+S        ``A_S * F(L)``
=========  ==========================

**The DC identity.** Summing an inverse DFT over all pixels keeps only the DC bin, so for
any map ``X``: ``mean(F(X)) = A_F(DC) * mean(X)``. With the mean reduction this means

* ``F`` alone only rescales the plain loss: ``mean(F(L)) = A_F(DC) * mean(L)``; with
  ``A_F(DC) = 1`` (the default weights) it *equals* the plain loss, value and gradient;
* ``S+F`` equals ``S`` times ``A_F(DC)`` (equal for the default weights);
* ``F+S`` equals ``S`` with ``A_S`` replaced by the filtered map ``F(A_S)`` (``A_F`` is
  real and Hermitian-symmetric, so the filter is self-adjoint:
  ``sum(A_S * F(L)) = sum(F(A_S) * L)``).

So in ``paper`` mode the frequency weighting changes nothing but a scale (and, for F+S, a
smoothed/sharpened copy of ``A_S``). Scales still matter with coupled weight decay (Adam's
``weight_decay``), so :func:`effective_scale` reports them.

Mode ``"spectral"`` (beyond the paper)
--------------------------------------
The frequency weight acts on the *signed* error ``e = p - t`` before the pointwise loss,
where it does change the gradient. With ``ell`` the pointwise loss (``|.|`` or ``(.)^2``)
and ``w_S = A_S ** (1 / q)`` (``q = 1`` for L1, ``q = 2`` for L2, so that
``ell(w_S * e) = A_S * ell(e)``):

=========  ====================================
scheme     amplified map
=========  ====================================
none       ``ell(e)``                 (= plain)
S          ``A_S * ell(e)``           (= paper S)
F          ``ell(F(e))``
S+F        ``ell(F(w_S * e))``        (weight the error spatially, then filter)
F+S        ``A_S * ell(F(e))``        (filter the error, then weight the loss)
=========  ====================================

``D`` (directional, :mod:`napari_dfct.directional`) is spectral only: ``A_D`` is built
per sample from ``FFT2(input - target)`` and acts exactly like ``A_F`` above (``D``:
``ell(D(e))``, ``S+D``: ``ell(D(w_S * e))``, ``D+S``: ``A_S * ell(D(e))``); the loss then
needs the input batch (``input=`` of :meth:`AmplifiedLoss.forward`). In mode ``paper`` a
directional configuration is refused (the DC identity below makes any frequency weight on
the loss map the baseline).

Both orders reduce to ``S`` when ``A_F = 1`` and to ``F`` when ``A_S = 1``. They differ
by the commutator of the (smooth) spatial weighting and the (nearly local) filter, so in
practice the two orders give similar losses (maps differ by about a percent). For L2,
``mean(F(e)^2) = sum_k A_F(k)^2 |E(k)|^2 / (HW)^2`` (Parseval): a frequency-weighted MSE
with weights ``A_F^2``.

``normalize=True`` divides ``A_S`` by its mean over the **full slice** and ``A_F`` by its
mean over the spectrum, so a comparison tests the weighting rather than the loss scale.
When a cropped ``spatial_weight`` is passed to the loss it is used **as given**: take it
from :meth:`AmplifiedLoss.full_spatial_weight`, which applies the normalisation, and crop
that (:func:`napari_dfct.weights.crop_batch`).

All loss arithmetic runs in float32 with autocast disabled (FFTs in bfloat16/float16 are
unsupported or inaccurate); inputs are cast to float32 first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import directional as _d
from . import weights as _w
from .loss_config import (
    DIRECTIONAL_SCHEMES,
    LOSSES,
    MODES,
    ORDERS,
    SCHEMES,
    LossConfig,
    build_loss_config,
    paper_configs,
    paper_names,
)
from .loss_config import coerce_config as _coerce_config

__all__ = [
    "LOSSES",
    "SCHEMES",
    "DIRECTIONAL_SCHEMES",
    "MODES",
    "ORDERS",
    "LossConfig",
    "build_loss_config",
    "paper_configs",
    "paper_names",
    "pixel_loss",
    "frequency_filter",
    "AmplifiedLoss",
    "effective_scale",
    "measured_scale",
    "scale_matched_control",
    "LossMaps",
    "loss_maps",
]


# --------------------------------------------------------------------------- functions
def pixel_loss(pred: torch.Tensor, target: torch.Tensor | float, loss: str = "l2") -> torch.Tensor:
    """Pixel-wise loss map: ``|pred - target|`` (L1) or ``(pred - target)^2`` (L2)."""
    d = pred - target
    if loss == "l1":
        return d.abs()
    if loss == "l2":
        return d * d
    raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")


def _on(weight: torch.Tensor | None) -> torch.Tensor:
    """A weight that the configuration's scheme switches on (so it is never None)."""
    if weight is None:  # pragma: no cover - LossConfig admits no such scheme
        raise AssertionError("the loss scheme uses a weight that is switched off")
    return weight


def frequency_filter(x: torch.Tensor, a_f: torch.Tensor) -> torch.Tensor:
    """``Re{IFFT2(a_f * FFT2(x))}`` over the last two axes, computed in float32.

    Parameters
    ----------
    x : torch.Tensor
        ``(..., H, W)`` real.
    a_f : torch.Tensor
        ``(H, W)`` real, ``fft2`` layout.

    Returns
    -------
    torch.Tensor
        float32, same shape as ``x``.
    """
    dev = x.device.type
    with _no_autocast(dev):
        x = x.float()
        spec = torch.fft.fft2(x, dim=(-2, -1))
        a_f = a_f.to(device=x.device, dtype=torch.float32)
        return torch.fft.ifft2(spec * a_f, dim=(-2, -1)).real


def _no_autocast(device_type: str) -> contextlib.AbstractContextManager:
    """A context that disables autocast on ``device_type`` (a no-op where there is none)."""
    try:
        ok = torch.amp.is_autocast_available(device_type)
    except Exception:  # noqa: BLE001 # pragma: no cover - older torch
        ok = device_type in ("cuda", "cpu")
    if not ok:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, enabled=False)


# ------------------------------------------------------------------------------ module
class AmplifiedLoss(torch.nn.Module):
    """Amplified L1/L2 loss; see the module docstring for the formulas.

    Parameters
    ----------
    config : LossConfig or str or dict
        The configuration (a name such as ``"l2+s+f-nonlinear"`` works too).

    Notes
    -----
    ``pred`` and ``target`` are ``(B, C, H, W)`` (``C = 1`` for DFCT slices). ``A_F`` is
    built for the ``(H, W)`` being compared (the patch). ``spatial_weight`` is the spatial
    map cropped like the patch, ``(B, 1, h, w)``, ``(1, 1, h, w)`` or ``(h, w)``; it is used
    as given (no normalisation) and ignored when the spatial weight is off. When it is
    ``None`` and S is on, ``A_S`` of the full ``(H, W)`` is used (full slices). ``input``
    is the network input batch, same shape as ``target``: the directional weight ``A_D``
    is estimated per sample from ``input - target`` (required for D, ignored otherwise).
    ``angular`` ``(B, n_bins)`` replaces that estimate of the angular part ``G`` with a
    known one (required by an ``oracle`` configuration, ignored without D).
    """

    def __init__(self, config: LossConfig | str | dict = LossConfig()):
        super().__init__()
        self.config = _coerce_config(config)

    def extra_repr(self) -> str:
        return f"config={self.config.name!r}"

    # --------------------------------------------------------------- weight maps
    def full_spatial_weight(
        self, shape: Sequence[int], device: str | torch.device | None = None
    ) -> torch.Tensor | None:
        """``A_S`` for a full slice of ``shape`` as this loss wants it (normalised if so
        configured), float32, cached and read-only; ``None`` when S is off.

        Crop it like the patch (:func:`napari_dfct.weights.crop_batch`) and pass the crop
        as ``spatial_weight``.
        """
        if self.config.spatial == "none":
            return None
        return _w.spatial_weight(
            shape, self.config.spatial, device=device, normalize=self.config.normalize
        )

    def frequency_weight(
        self, shape: Sequence[int], device: str | torch.device | None = None
    ) -> torch.Tensor | None:
        """``A_F`` for ``shape`` (normalised if so configured); ``None`` when F is off."""
        if self.config.frequency == "none":
            return None
        return _w.frequency_weight(
            shape, self.config.frequency, device=device, normalize=self.config.normalize
        )

    def _spatial(self, spatial_weight: Any, ref: torch.Tensor) -> torch.Tensor | None:
        if self.config.spatial == "none":
            return None
        b, c, h, w = ref.shape
        if spatial_weight is None:
            return self.full_spatial_weight((h, w), device=ref.device)
        sw = torch.as_tensor(spatial_weight)
        if sw.ndim == 2:
            sw = sw[None, None]
        elif sw.ndim == 3:
            sw = sw[:, None]
        if (
            sw.ndim != 4
            or tuple(sw.shape[-2:]) != (h, w)
            or sw.shape[0] not in (1, b)
            or sw.shape[1] not in (1, c)
        ):
            raise ValueError(
                f"spatial_weight of shape {tuple(torch.as_tensor(spatial_weight).shape)} does "
                f"not match the prediction {tuple(ref.shape)}; expected (B, 1, {h}, {w}), "
                f"(1, 1, {h}, {w}) or ({h}, {w})"
            )
        return sw.to(device=ref.device, dtype=torch.float32)

    # ---------------------------------------------------------------------- maps
    def directional_weight(
        self, input: torch.Tensor | None, target: torch.Tensor, angular: Any = None
    ) -> torch.Tensor | None:
        """Per-sample ``A_D`` ``(B, 1, H, W)`` of ``input - target`` (normalised if so
        configured), or from the angular parts ``angular`` ``(B, n_bins)`` when given;
        ``None`` when D is off."""
        cfg = self.config
        if cfg.directional == "none":
            return None
        if angular is not None:
            g = torch.as_tensor(angular, device=target.device)
            if g.ndim != 2 or g.shape[0] != target.shape[0]:
                raise ValueError(
                    f"angular parts must be (B, n_bins) with B = "
                    f"{target.shape[0]}, got {tuple(g.shape)}"
                )
            with torch.no_grad():
                return _d.weight_from_angular(
                    g,
                    tuple(target.shape[-2:]),
                    cfg.directional,
                    device=target.device,
                    normalize=cfg.normalize,
                )
        if cfg.oracle:
            raise ValueError(
                f"{cfg.name}: an oracle configuration takes the angular part of its "
                "directional weight from the simulator's truth; pass it (angular=...)"
            )
        if input is None:
            raise ValueError(
                f"{self.config.name}: the directional weight is estimated from "
                "input - target; pass the input batch (input=...)"
            )
        inp = torch.as_tensor(input)
        if tuple(inp.shape) != tuple(target.shape):
            raise ValueError(
                f"input {tuple(inp.shape)} and target {tuple(target.shape)} differ in shape"
            )
        return _d.directional_weight(
            inp.detach(), target.detach(), self.config.directional, normalize=self.config.normalize
        )

    def loss_map(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        spatial_weight: Any = None,
        input: torch.Tensor | None = None,
        angular: Any = None,
    ) -> torch.Tensor:
        """Amplified pixel-wise loss map, float32, same shape as ``pred`` (``(B, 1, H, W)``),
        times the configuration's ``scale``. ``input`` (the network input batch, same
        shape) is needed by the directional weight only; ``angular`` (known angular parts
        ``(B, n_bins)``) replaces its estimate.

        A 3-D model's ``(B, 1, Z, H, W)`` output is compared slice by slice: the map is
        the 2-D map of its ``B * Z`` slices (A_S about each slice's iso-centre, A_F and
        A_D on each slice's spectrum; :func:`napari_dfct.volume3d.per_slice`), in the
        output's shape."""
        if pred.ndim == 5:
            from .volume3d import from_slices, per_slice

            def flat(t: Any) -> Any:
                return per_slice(t) if isinstance(t, torch.Tensor) and t.ndim == 5 else t

            lmap = self.loss_map(
                per_slice(pred), per_slice(target), flat(spatial_weight), flat(input), angular
            )
            return from_slices(lmap, pred.shape)
        lmap = self._unscaled_map(pred, target, spatial_weight, input, angular)
        return lmap if self.config.scale == 1.0 else lmap * self.config.scale

    def _unscaled_map(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        spatial_weight: Any,
        input: torch.Tensor | None = None,
        angular: Any = None,
    ) -> torch.Tensor:
        if pred.shape != target.shape:
            raise ValueError(
                f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape"
            )
        if pred.ndim != 4:
            raise ValueError(f"expected (B, C, H, W) tensors, got shape {tuple(pred.shape)}")
        cfg = self.config
        dev = pred.device.type
        with _no_autocast(dev):
            p, t = pred.float(), target.float()
            h, w = p.shape[-2:]
            a_s = self._spatial(spatial_weight, p)
            a_f = self.frequency_weight((h, w), device=p.device)
            if a_f is None:
                a_f = self.directional_weight(input, t, angular)
            if cfg.mode == "paper":
                lmap = pixel_loss(p, t, cfg.loss)
                sch = cfg.scheme
                if sch == "S":
                    return _on(a_s) * lmap
                if sch == "F":
                    return frequency_filter(lmap, _on(a_f))
                if sch == "S+F":
                    return frequency_filter(_on(a_s) * lmap, _on(a_f))
                if sch == "F+S":
                    return _on(a_s) * frequency_filter(lmap, _on(a_f))
                return lmap
            # spectral mode: weight the spectrum of the signed error
            e = p - t
            sch = cfg.scheme
            if sch in ("S+F", "S+D"):
                w_s = _on(a_s) if cfg.loss == "l1" else torch.sqrt(_on(a_s))
                return pixel_loss(frequency_filter(w_s * e, _on(a_f)), 0.0, cfg.loss)
            if a_f is not None:
                e = frequency_filter(e, a_f)
            lmap = pixel_loss(e, 0.0, cfg.loss)
            return lmap if a_s is None else a_s * lmap

    def forward(
        self,
        pred: torch.Tensor,
        target: torch.Tensor,
        spatial_weight: Any = None,
        input: torch.Tensor | None = None,
        angular: Any = None,
    ) -> torch.Tensor:
        """Scalar loss: the mean of :meth:`loss_map` (float32)."""
        return self.loss_map(pred, target, spatial_weight, input, angular).mean()


# ------------------------------------------------------------------------ scale report
def _patch_coverage(n: int, p: int) -> np.ndarray:
    """How many of the ``n - p + 1`` patch positions along one axis cover each pixel."""
    starts = np.arange(n - p + 1)
    cov = np.zeros(n)
    np.add.at(cov, (starts[:, None] + np.arange(p)[None, :]).ravel(), 1.0)
    return cov


def effective_scale(
    config: LossConfig | str,
    shape: Sequence[int] = (800, 800),
    patch: int | Sequence[int] | None = None,
) -> dict:
    """Scale factors a configuration puts on the loss, for reporting.

    Parameters
    ----------
    config : LossConfig or str
        The configuration.
    shape : (int, int)
        Full slice shape: ``A_S`` is computed on it (and normalised over it).
    patch : int or (int, int), optional
        Training patch size. ``A_F`` is built for the shape the loss sees: the patch when
        given, else the full slice. With a patch, the spatial factor is the expected mean of
        an ``A_S`` crop over uniformly random patch positions (no rotation), which weights
        the centre more than the corners.

    Returns
    -------
    dict
        ``a_s_mean``, ``a_s_min``, ``a_s_max`` over the slice and ``a_s_patch_mean`` (the
        expected crop mean; equals ``a_s_mean`` without a patch) — all 1 when S is off;
        ``a_f_dc``, ``a_f_mean``, ``a_f_rms`` (``sqrt(mean(A_F^2))``) — 1 when F is off;
        and

        ``frequency_factor``
            ``paper`` mode: ``A_F(DC)`` — the exact factor F puts on the loss and on its
            gradient. ``spectral`` mode: the gain on a white (uncorrelated) error,
            ``mean(A_F^2)`` for L2 and ``sqrt(mean(A_F^2))`` for L1 (exact in expectation
            for Gaussian errors).
        ``spatial_factor``
            ``a_s_patch_mean``: the factor S puts on a spatially uniform loss map.
        ``loss_scale``
            The configuration's constant factor (``LossConfig.scale``).
        ``scale``
            The product of the three: the loss relative to the plain loss for a uniform
            (paper mode) or white (spectral mode) error. For spectral L1 with S+F it is a
            close lower bound (the exact value lies below ``sqrt(mean(A_S^2)) * a_f_rms``).

        Directional configurations (D, S+D, D+S): ``A_D`` depends on the data (its angular
        part ``G`` comes from each sample's ``input - target``), so its white-error gain
        has no fixed value. It is reported, and used by :func:`scale_matched_control`, at
        ``G = 1``, where ``A_D`` equals ``A_F`` of its radial profile: an **upper bound**
        (the ``a_f_*`` entries are those of that radial profile; the true gain lies between
        1 and the bound).
    """
    cfg = _coerce_config(config)
    shape = _w._check_shape(shape)
    if patch is None:
        pshape = shape
    else:
        pshape = (
            _w._check_shape(patch)
            if isinstance(patch, Sequence | np.ndarray)
            else (int(patch), int(patch))
        )
        if pshape[0] > shape[0] or pshape[1] > shape[1] or min(pshape) < 1:
            raise ValueError(f"patch {pshape} does not fit in the slice {shape}")
    a_s = _w.spatial_weight_np(shape, cfg.spatial, normalize=cfg.normalize)
    radial = cfg.directional if cfg.directional != "none" else cfg.frequency
    a_f = _w.frequency_weight_np(pshape, radial, normalize=cfg.normalize)
    cov = np.outer(_patch_coverage(shape[0], pshape[0]), _patch_coverage(shape[1], pshape[1]))
    a_s_patch = float(np.sum(a_s * cov) / np.sum(cov))
    s_on, f_on = cfg.spatial != "none", radial != "none"
    a_f_ms = float(np.mean(a_f**2))
    if not f_on:
        ff = 1.0
    elif cfg.mode == "paper":
        ff = float(a_f[0, 0])
    else:
        ff = a_f_ms if cfg.loss == "l2" else float(np.sqrt(a_f_ms))
    sf = a_s_patch if s_on else 1.0
    return {
        "name": cfg.name,
        "scheme": cfg.scheme,
        "mode": cfg.mode,
        "shape": list(shape),
        "patch": list(pshape),
        "a_s_mean": float(a_s.mean()),
        "a_s_min": float(a_s.min()),
        "a_s_max": float(a_s.max()),
        "a_s_patch_mean": a_s_patch,
        "a_f_dc": float(a_f[0, 0]),
        "a_f_mean": float(a_f.mean()),
        "a_f_rms": float(np.sqrt(a_f_ms)),
        "frequency_factor": ff,
        "spatial_factor": sf,
        "loss_scale": cfg.scale,
        "scale": ff * sf * cfg.scale,
    }


def measured_scale(
    config: LossConfig | str,
    input: np.ndarray,
    target: np.ndarray,
    patch: int,
    *,
    window: Any = None,
    n_patches: int = 256,
    seed: int = 0,
) -> dict:
    """The loss scale a configuration puts on the **real** error, measured.

    The loss of the identity prediction (``input`` as the prediction of ``target``, where
    a residual U-Net starts) on ``n_patches`` random ``patch``-sized patches of the
    normalised data, amplified against plain: unlike :func:`effective_scale`, which
    assumes a uniform or white error, this sees the error's own spectrum and position
    (streaks are neither white nor uniform).

    Parameters
    ----------
    config : LossConfig or str
        The configuration.
    input, target : numpy.ndarray
        (Z, Y, X) or (Y, X) training volumes of one shape.
    patch : int
        Training patch side (clipped to the slice).
    window : IntensityWindow or dict, optional
        Normalisation; default :func:`napari_dfct.data.window_from_percentiles` of both.
    n_patches, seed : int
        Random patches (slice, top, left), seeded.

    Returns
    -------
    dict
        ``scale``: the amplified loss summed over the patches divided by the plain one (the
        ratio of the mean losses training sees); ``median``, ``q25``, ``q75``: of the
        per-patch ratios; ``n_patches``.
    """
    from .data import IntensityWindow, window_from_percentiles

    cfg = _coerce_config(config)
    x = np.asarray(input, dtype=np.float32)
    y = np.asarray(target, dtype=np.float32)
    x, y = (x[None], y[None]) if x.ndim == 2 else (x, y)
    if x.ndim != 3 or x.shape != y.shape:
        raise ValueError(
            f"input and target must be volumes of one shape, got {x.shape}, {y.shape}"
        )
    if window is None:
        window = window_from_percentiles(x, y)
    elif isinstance(window, dict):
        window = IntensityWindow.from_dict(window)
    n, h, w = x.shape
    p = int(min(int(patch), h, w))
    rng = np.random.default_rng(seed)
    zs = rng.integers(0, n, n_patches)
    corners = np.stack(
        [rng.integers(0, h - p + 1, n_patches), rng.integers(0, w - p + 1, n_patches)], 1
    )

    def batch(v: np.ndarray) -> torch.Tensor:
        v = window.normalize(v)
        return torch.from_numpy(
            np.stack([v[z, r : r + p, c : c + p] for z, (r, c) in zip(zs, corners)])[:, None]
        )

    xb, yb = batch(x), batch(y)
    amplified, plain = AmplifiedLoss(cfg), AmplifiedLoss(cfg.plain)
    sw = None
    full = amplified.full_spatial_weight((h, w)) if cfg.spatial != "none" else None
    if full is not None:
        sw = _w.crop_batch(full, corners, p)
    with torch.no_grad():
        a = amplified.loss_map(xb, yb, sw, xb).double().mean((1, 2, 3))
        b = plain.loss_map(xb, yb).double().mean((1, 2, 3))
    ratios = (a / b).numpy()
    q25, median, q75 = np.percentile(ratios, [25, 50, 75])
    return {
        "scale": float(a.sum() / b.sum()),
        "median": float(median),
        "q25": float(q25),
        "q75": float(q75),
        "n_patches": int(n_patches),
    }


def scale_matched_control(
    config: LossConfig | str,
    shape: Sequence[int] = (800, 800),
    patch: int | Sequence[int] | None = None,
    scale: float | None = None,
) -> LossConfig | None:
    """The scale-matched control of an amplified configuration.

    The plain loss of the same kind (L1 or L2, paper mode) multiplied by the
    configuration's :func:`effective_scale` (``scale``, rounded to three significant
    digits, so that the name ``l2@1.47`` states the value exactly). Training it separates
    what the amplification's *structure* does from what its *scale* does: with Adam's
    coupled weight decay a constant factor on the loss changes training too.

    ``scale`` replaces that bound with a measured scale (:func:`measured_scale` on the
    training data: the one to use, as streak errors are neither uniform nor white).

    Returns None for a plain configuration and when the scale rounds to 1 (the baseline
    is then its own control).
    """
    cfg = _coerce_config(config)
    if cfg.scheme == "none":
        return None
    if scale is None:
        scale = effective_scale(cfg, shape, patch)["scale"]
    scale = float(f"{float(scale):.3g}")
    if scale == 1.0:
        return None
    return LossConfig(loss=cfg.loss, scale=scale)


# ------------------------------------------------------------------------- loss maps
@dataclass(frozen=True)
class LossMaps:
    """The weight and loss maps of one slice (:func:`loss_maps`), float32 NumPy arrays.

    Attributes
    ----------
    a_s : numpy.ndarray
        ``A_S`` of the full slice (normalised if so configured) cropped like the maps;
        ones when S is off.
    a_f : numpy.ndarray
        ``A_F`` for the maps' shape, DC in the centre (``fftshift``); ones when F is off.
    a_f_dc : float
        ``A_F`` at DC.
    loss, amplified : numpy.ndarray or None
        The plain pixel-wise L1/L2 map (same loss and mode, no amplification, no scale)
        and :meth:`AmplifiedLoss.loss_map`; None without a target.
    offset : (int, int)
        Row and column of the maps' top-left pixel in the slice.
    a_d : numpy.ndarray or None
        The directional weight ``A_D`` of this slice or patch, DC in the centre; None
        when D is off or without a target.
    angles, angular : numpy.ndarray or None
        Its angular part: bin centres (degrees) and ``G`` there
        (:func:`napari_dfct.directional.angular_profile`); None like ``a_d``.
    """

    a_s: np.ndarray
    a_f: np.ndarray
    a_f_dc: float
    loss: np.ndarray | None
    amplified: np.ndarray | None
    offset: tuple[int, int]
    a_d: np.ndarray | None = None
    angles: np.ndarray | None = None
    angular: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(h, w)`` of the maps."""
        return (int(self.a_s.shape[0]), int(self.a_s.shape[1]))

    @property
    def ratio(self) -> float | None:
        """Mean amplified / mean plain loss (NaN if the plain mean is 0; None without a
        target)."""
        if self.loss is None or self.amplified is None:
            return None
        plain = float(np.mean(self.loss))
        return float(np.mean(self.amplified)) / plain if plain > 0 else float("nan")


def loss_maps(
    image: Any,
    target: Any,
    config: LossConfig | str | dict,
    patch: int | None = None,
    input: Any = None,
) -> LossMaps:
    """``A_S``, ``A_F`` and the plain and amplified loss maps of one slice, for viewing.

    Parameters
    ----------
    image : array_like, (H, W)
        The compared image (a prediction, or the network input), windowed like the
        training data. Without a target only its shape is used.
    target : array_like, (H, W), optional
        The target, windowed the same way. None: the weight maps only.
    config : LossConfig or str or dict
        The loss configuration.
    patch : int, optional
        Side of a centred square patch, clamped to the slice: ``A_S`` of the full slice is
        cropped like a training patch and ``A_F`` is built for the patch. None: the full
        slice (as in inference).
    input : array_like, (H, W), optional
        The network input, from which the directional weight is estimated
        (``input - target``); default ``image``.

    Raises
    ------
    ValueError
        Not a 2-D slice, a target of another shape, or a patch below 1 pixel.
    """
    cfg = _coerce_config(config)
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D slice, got shape {tuple(img.shape)}")
    shape = (int(img.shape[0]), int(img.shape[1]))
    side = None if patch is None else min(int(patch), *shape)
    if side is not None and side < 1:
        raise ValueError(f"patch {patch} is below 1 pixel")
    r0, c0 = (0, 0) if side is None else ((shape[0] - side) // 2, (shape[1] - side) // 2)
    crop = (
        slice(r0, None if side is None else r0 + side),
        slice(c0, None if side is None else c0 + side),
    )

    amplified = AmplifiedLoss(cfg)
    a_s_full = amplified.full_spatial_weight(shape)
    if a_s_full is None:
        a_s_full = _w.spatial_weight(shape, "none")
    a_s = a_s_full[crop].contiguous()
    map_shape = (int(a_s.shape[0]), int(a_s.shape[1]))
    a_f = amplified.frequency_weight(map_shape)
    if a_f is None:
        a_f = _w.frequency_weight(map_shape, "none")

    plain = amp = None
    extra: dict = {}
    if target is not None:
        tgt = np.asarray(target)
        src = img if input is None else np.asarray(input)
        for what, a in (("target", tgt), ("input", src)):
            if a.shape != img.shape:
                raise ValueError(
                    f"image {tuple(img.shape)} and {what} {tuple(a.shape)} differ in shape"
                )
        p, t, x = (
            torch.from_numpy(np.ascontiguousarray(a[crop], dtype=np.float32))[None, None]
            for a in (img, tgt, src)
        )
        spatial = a_s[None, None] if cfg.spatial != "none" else None
        with torch.no_grad():
            plain = AmplifiedLoss(LossConfig(loss=cfg.loss, mode=cfg.mode)).loss_map(p, t)
            amp = amplified.loss_map(p, t, spatial_weight=spatial, input=x)
            a_d = amplified.directional_weight(x, t)
        if a_d is not None:
            angles, g = _d.angular_profile(x[0, 0].numpy(), t[0, 0].numpy())
            extra = {"a_d": _map_np(_w.fftshift(a_d[0, 0])), "angles": angles, "angular": g}
    return LossMaps(
        a_s=_map_np(a_s),
        a_f=_map_np(_w.fftshift(a_f)),
        a_f_dc=float(a_f[0, 0]),
        loss=None if plain is None else _map_np(plain[0, 0]),
        amplified=None if amp is None else _map_np(amp[0, 0]),
        offset=(r0, c0),
        **extra,
    )


def _map_np(t: torch.Tensor) -> np.ndarray:
    """A float32 NumPy copy of a tensor (never a view of a cached weight)."""
    return np.array(t.detach().to("cpu", torch.float32).numpy(), dtype=np.float32, copy=True)
