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
import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from . import weights as _w

__all__ = [
    "LOSSES",
    "SCHEMES",
    "MODES",
    "ORDERS",
    "LossConfig",
    "paper_configs",
    "paper_names",
    "pixel_loss",
    "frequency_filter",
    "AmplifiedLoss",
    "effective_scale",
    "scale_matched_control",
    "LossMaps",
    "loss_maps",
]

LOSSES = ("l1", "l2")
SCHEMES = ("none", "S", "F", "S+F", "F+S")
MODES = ("paper", "spectral")
ORDERS = ("sf", "fs")
_PROFILES_ON = ("linear", "nonlinear")


def _norm_choice(value, valid, what):
    v = value.lower() if isinstance(value, str) else value
    if v not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(valid)}")
    return v


@dataclass(frozen=True)
class LossConfig:
    """Which loss and which amplification.

    Parameters
    ----------
    loss : {"l1", "l2"}
        Pixel-wise loss.
    spatial, frequency : {"none", "linear", "nonlinear"}
        Profile of ``A_S`` and ``A_F``.
    order : {"sf", "fs"}
        ``sf``: S then F (S+F); ``fs``: F then S (F+S). Only meaningful when both weights
        are on; otherwise it is stored as ``"sf"`` so equal losses compare equal.
    mode : {"paper", "spectral"}
        See the module docstring.
    normalize : bool
        Rescale the weight maps to mean 1.
    scale : float
        A constant factor on the loss (default 1). A scale-matched control is the plain
        loss with the :func:`effective_scale` of an amplified configuration: with Adam's
        coupled weight decay a loss scale alone changes training.

    Notes
    -----
    ``name`` is ``<loss>[+<terms>][-spectral][-norm]`` where the terms are ``s-<profile>``,
    ``f-<profile>``, ``s+f-<profile>`` or ``f+s-<profile>`` (both weights with one profile),
    or ``s-<p>+f-<q>`` / ``f-<q>+s-<p>`` (different profiles), and ``@<scale>`` when the
    scale is not 1. Examples: ``"l2"``, ``"l2+s-linear"``, ``"l2+s+f-nonlinear"``,
    ``"l1+f+s-linear"``, ``"l2+f-linear-spectral-norm"``, ``"l2@1.47"``.
    """

    loss: str = "l2"
    spatial: str = "none"
    frequency: str = "none"
    order: str = "sf"
    mode: str = "paper"
    normalize: bool = False
    scale: float = 1.0

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen)
        set_("loss", _norm_choice(self.loss, LOSSES, "loss"))
        set_("spatial", _norm_choice(self.spatial, _w.PROFILES, "spatial profile"))
        set_("frequency", _norm_choice(self.frequency, _w.FREQUENCY_PROFILES,
                                       "frequency profile"))
        order = _norm_choice(self.order, ORDERS, "order")
        set_("order", order if (self.spatial != "none" and self.frequency != "none") else "sf")
        set_("mode", _norm_choice(self.mode, MODES, "mode"))
        if not isinstance(self.normalize, (bool, np.bool_)):
            raise ValueError(f"normalize must be a bool, got {self.normalize!r}")
        set_("normalize", bool(self.normalize))
        try:
            scale = float(self.scale)
        except (TypeError, ValueError):
            raise ValueError(f"loss scale must be a number, got {self.scale!r}") from None
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(f"loss scale must be positive and finite, got {self.scale!r}")
        set_("scale", scale)

    # ------------------------------------------------------------------ naming
    @property
    def scheme(self) -> str:
        """``"none"``, ``"S"``, ``"F"``, ``"S+F"`` or ``"F+S"``."""
        s, f = self.spatial != "none", self.frequency != "none"
        if s and f:
            return "S+F" if self.order == "sf" else "F+S"
        return "S" if s else ("F" if f else "none")

    @property
    def profile(self) -> str:
        """The weights' profile when they share one (``"none"`` for the baseline).

        ``"mixed"`` when spatial and frequency profiles differ.
        """
        on = {p for p in (self.spatial, self.frequency) if p != "none"}
        return "none" if not on else (on.pop() if len(on) == 1 else "mixed")

    @property
    def name(self) -> str:
        """Canonical name, the inverse of :meth:`from_name`."""
        sch = self.scheme
        if sch == "none":
            core = self.loss
        elif sch == "S":
            core = f"{self.loss}+s-{self.spatial}"
        elif sch == "F":
            core = f"{self.loss}+f-{self.frequency}"
        else:
            first, second = ("s", "f") if sch == "S+F" else ("f", "s")
            prof = {"s": self.spatial, "f": self.frequency}
            if self.spatial == self.frequency:
                core = f"{self.loss}+{first}+{second}-{self.spatial}"
            else:
                core = f"{self.loss}+{first}-{prof[first]}+{second}-{prof[second]}"
        if self.mode == "spectral":
            core += "-spectral"
        if self.normalize:
            core += "-norm"
        if self.scale != 1.0:
            core += f"@{self.scale:g}"
        return core

    @property
    def plain(self) -> "LossConfig":
        """The un-amplified loss of the same kind (L1 or L2, scale 1): the selection
        criterion that every configuration shares."""
        return LossConfig(loss=self.loss)

    def __str__(self) -> str:
        return self.name

    @classmethod
    def from_name(cls, name: str, **overrides) -> "LossConfig":
        """Parse a name made by :attr:`name`; keyword ``overrides`` replace fields after.

        Raises
        ------
        ValueError
            On an unknown name (the message lists the valid paper names).
        """
        cfg = _parse_name(name)
        return dataclasses.replace(cfg, **overrides) if overrides else cfg

    # ----------------------------------------------------------- (de)serialising
    def to_dict(self) -> dict:
        """JSON-friendly dict of the fields plus ``name`` and ``scheme`` (informative)."""
        d = dataclasses.asdict(self)
        d["name"] = self.name
        d["scheme"] = self.scheme
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "LossConfig":
        """Inverse of :meth:`to_dict`; a dict holding only ``name`` also works."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a dict for a loss config, got {type(d).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields - {"name", "scheme"}
        if unknown:
            raise ValueError(f"unknown loss-config keys: {', '.join(sorted(unknown))}")
        kw = {k: v for k, v in d.items() if k in fields}
        if not kw and "name" in d:
            return cls.from_name(d["name"])
        cfg = cls(**kw)
        if "name" in d and kw.keys() == fields and d["name"] != cfg.name:
            raise ValueError(
                f"loss-config name {d['name']!r} disagrees with its fields ({cfg.name})"
            )
        return cfg


_TERM = re.compile(r"^(s|f)(?:-(linear|nonlinear|sqrt))?$")


def _invalid(name) -> ValueError:
    valid = ", ".join(paper_names())
    return ValueError(
        f"unknown loss configuration {name!r}. Valid names: {valid} "
        "(append '-spectral' and/or '-norm' for the spectral mode / normalised weights, "
        "'@X' for a constant loss scale X)"
    )


def _parse_name(name: str) -> LossConfig:
    if not isinstance(name, str) or not name.strip():
        raise _invalid(name)
    s = name.strip().lower()
    scale = 1.0
    if "@" in s:
        s, _, scale_text = s.partition("@")
        try:
            scale = float(scale_text)
        except ValueError:
            raise _invalid(name) from None
        if not (np.isfinite(scale) and scale > 0):
            raise _invalid(name)
    normalize = mode_spectral = False
    if s.endswith("-norm"):
        normalize, s = True, s[: -len("-norm")]
    if s.endswith("-spectral"):
        mode_spectral, s = True, s[: -len("-spectral")]
    parts = s.split("+")
    loss, terms = parts[0], parts[1:]
    if loss not in LOSSES:
        raise _invalid(name)
    matches = [_TERM.match(t) for t in terms]
    if any(m is None for m in matches) or len(terms) > 2:
        raise _invalid(name)
    kinds = [m.group(1) for m in matches]
    profs = [m.group(2) for m in matches]
    spatial = frequency = "none"
    order = "sf"
    if len(terms) == 1:
        if profs[0] is None:
            raise _invalid(name)
        if kinds[0] == "s":
            spatial = profs[0]
        else:
            frequency = profs[0]
    elif len(terms) == 2:
        if kinds[0] == kinds[1] or profs[1] is None:
            raise _invalid(name)
        first_prof = profs[0] if profs[0] is not None else profs[1]
        prof = {kinds[0]: first_prof, kinds[1]: profs[1]}
        spatial, frequency = prof["s"], prof["f"]
        order = "sf" if kinds[0] == "s" else "fs"
    return LossConfig(
        loss=loss,
        spatial=spatial,
        frequency=frequency,
        order=order,
        mode="spectral" if mode_spectral else "paper",
        normalize=normalize,
        scale=scale,
    )


def paper_configs(
    losses: Sequence[str] = LOSSES,
    schemes: Sequence[str] = SCHEMES,
    profiles: Sequence[str] = _PROFILES_ON,
    *,
    mode: str = "paper",
    normalize: bool = False,
) -> list[LossConfig]:
    """The paper's grid: per loss, the baseline once and every scheme x profile.

    Parameters
    ----------
    losses : sequence of {"l1", "l2"}
    schemes : sequence of {"none", "S", "F", "S+F", "F+S"}
    profiles : sequence of {"linear", "nonlinear"}
    mode, normalize
        Applied to every configuration (``"paper"``, ``False`` reproduce the paper).

    Returns
    -------
    list of LossConfig
        18 for the defaults: 2 losses x (1 baseline + 4 schemes x 2 profiles).
    """
    out: list[LossConfig] = []
    for sch in schemes:
        if sch not in SCHEMES:
            raise ValueError(f"unknown scheme {sch!r}; valid: {', '.join(SCHEMES)}")
    for p in profiles:
        if p not in _PROFILES_ON:
            raise ValueError(f"unknown profile {p!r}; valid: {', '.join(_PROFILES_ON)}")
    for loss in losses:
        if "none" in schemes:
            out.append(LossConfig(loss=loss, mode=mode, normalize=normalize))
        for sch in schemes:
            if sch == "none":
                continue
            for p in profiles:
                out.append(
                    LossConfig(
                        loss=loss,
                        spatial=p if "S" in sch else "none",
                        frequency=p if "F" in sch else "none",
                        order="fs" if sch == "F+S" else "sf",
                        mode=mode,
                        normalize=normalize,
                    )
                )
    return out


def paper_names() -> list[str]:
    """Names of the 18 paper configurations."""
    return [c.name for c in paper_configs()]


# --------------------------------------------------------------------------- functions
def pixel_loss(pred: torch.Tensor, target: torch.Tensor, loss: str = "l2") -> torch.Tensor:
    """Pixel-wise loss map: ``|pred - target|`` (L1) or ``(pred - target)^2`` (L2)."""
    d = pred - target
    if loss == "l1":
        return d.abs()
    if loss == "l2":
        return d * d
    raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")


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


def _no_autocast(device_type: str):
    """A context that disables autocast on ``device_type`` (a no-op where there is none)."""
    try:
        ok = torch.amp.is_autocast_available(device_type)
    except Exception:  # pragma: no cover - older torch
        ok = device_type in ("cuda", "cpu")
    if not ok:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, enabled=False)


def _coerce_config(config) -> LossConfig:
    if isinstance(config, LossConfig):
        return config
    if isinstance(config, str):
        return LossConfig.from_name(config)
    if isinstance(config, dict):
        return LossConfig.from_dict(config)
    raise ValueError(f"expected a LossConfig, a name or a dict, got {type(config).__name__}")


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
    ``None`` and S is on, ``A_S`` of the full ``(H, W)`` is used (full slices).
    """

    def __init__(self, config: LossConfig | str | dict = LossConfig()):
        super().__init__()
        self.config = _coerce_config(config)

    def extra_repr(self) -> str:
        return f"config={self.config.name!r}"

    # --------------------------------------------------------------- weight maps
    def full_spatial_weight(self, shape, device=None) -> torch.Tensor | None:
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

    def frequency_weight(self, shape, device=None) -> torch.Tensor | None:
        """``A_F`` for ``shape`` (normalised if so configured); ``None`` when F is off."""
        if self.config.frequency == "none":
            return None
        return _w.frequency_weight(
            shape, self.config.frequency, device=device, normalize=self.config.normalize
        )

    def _spatial(self, spatial_weight, ref: torch.Tensor) -> torch.Tensor | None:
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
    def loss_map(
        self, pred: torch.Tensor, target: torch.Tensor, spatial_weight=None
    ) -> torch.Tensor:
        """Amplified pixel-wise loss map, float32, same shape as ``pred`` (``(B, 1, H, W)``),
        times the configuration's ``scale``."""
        lmap = self._unscaled_map(pred, target, spatial_weight)
        return lmap if self.config.scale == 1.0 else lmap * self.config.scale

    def _unscaled_map(self, pred, target, spatial_weight) -> torch.Tensor:
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
            if cfg.mode == "paper":
                lmap = pixel_loss(p, t, cfg.loss)
                sch = cfg.scheme
                if sch == "S":
                    return a_s * lmap
                if sch == "F":
                    return frequency_filter(lmap, a_f)
                if sch == "S+F":
                    return frequency_filter(a_s * lmap, a_f)
                if sch == "F+S":
                    return a_s * frequency_filter(lmap, a_f)
                return lmap
            # spectral mode: weight the spectrum of the signed error
            e = p - t
            sch = cfg.scheme
            if sch == "S+F":
                w_s = a_s if cfg.loss == "l1" else torch.sqrt(a_s)
                return pixel_loss(frequency_filter(w_s * e, a_f), 0.0, cfg.loss)
            if a_f is not None:
                e = frequency_filter(e, a_f)
            lmap = pixel_loss(e, 0.0, cfg.loss)
            return lmap if a_s is None else a_s * lmap

    def forward(
        self, pred: torch.Tensor, target: torch.Tensor, spatial_weight=None
    ) -> torch.Tensor:
        """Scalar loss: the mean of :meth:`loss_map` (float32)."""
        return self.loss_map(pred, target, spatial_weight).mean()


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
            The product of the three: the loss relative to the plain loss for a uniform (paper mode)
            or white (spectral mode) error. For spectral L1 with S+F it is a close lower
            bound (the exact value lies below ``sqrt(mean(A_S^2)) * a_f_rms``).
    """
    cfg = _coerce_config(config)
    shape = _w._check_shape(shape)
    if patch is None:
        pshape = shape
    else:
        pshape = (int(patch), int(patch)) if np.isscalar(patch) else _w._check_shape(patch)
        if pshape[0] > shape[0] or pshape[1] > shape[1] or min(pshape) < 1:
            raise ValueError(f"patch {pshape} does not fit in the slice {shape}")
    a_s = _w.spatial_weight_np(shape, cfg.spatial, normalize=cfg.normalize)
    a_f = _w.frequency_weight_np(pshape, cfg.frequency, normalize=cfg.normalize)
    cov = np.outer(_patch_coverage(shape[0], pshape[0]), _patch_coverage(shape[1], pshape[1]))
    a_s_patch = float(np.sum(a_s * cov) / np.sum(cov))
    s_on, f_on = cfg.spatial != "none", cfg.frequency != "none"
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


def scale_matched_control(
    config: LossConfig | str,
    shape: Sequence[int] = (800, 800),
    patch: int | Sequence[int] | None = None,
) -> LossConfig | None:
    """The scale-matched control of an amplified configuration.

    The plain loss of the same kind (L1 or L2, paper mode) multiplied by the
    configuration's :func:`effective_scale` (``scale``, rounded to three significant
    digits, so that the name ``l2@1.47`` states the value exactly). Training it separates
    what the amplification's *structure* does from what its *scale* does: with Adam's
    coupled weight decay a constant factor on the loss changes training too.

    Returns None for a plain configuration and when the scale rounds to 1 (the baseline
    is then its own control).
    """
    cfg = _coerce_config(config)
    if cfg.scheme == "none":
        return None
    scale = float(f"{effective_scale(cfg, shape, patch)['scale']:.3g}")
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
    """

    a_s: np.ndarray
    a_f: np.ndarray
    a_f_dc: float
    loss: np.ndarray | None
    amplified: np.ndarray | None
    offset: tuple[int, int]

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


def loss_maps(image, target, config: LossConfig | str | dict, patch: int | None = None
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
    crop = (slice(r0, None if side is None else r0 + side),
            slice(c0, None if side is None else c0 + side))

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
    if target is not None:
        tgt = np.asarray(target)
        if tgt.shape != img.shape:
            raise ValueError(
                f"image {tuple(img.shape)} and target {tuple(tgt.shape)} differ in shape")
        p, t = (torch.from_numpy(np.ascontiguousarray(a[crop], dtype=np.float32))[None, None]
                for a in (img, tgt))
        spatial = a_s[None, None] if cfg.spatial != "none" else None
        with torch.no_grad():
            plain = AmplifiedLoss(LossConfig(loss=cfg.loss, mode=cfg.mode)).loss_map(p, t)
            amp = amplified.loss_map(p, t, spatial_weight=spatial)
    return LossMaps(
        a_s=_map_np(a_s), a_f=_map_np(_w.fftshift(a_f)), a_f_dc=float(a_f[0, 0]),
        loss=None if plain is None else _map_np(plain[0, 0]),
        amplified=None if amp is None else _map_np(amp[0, 0]), offset=(r0, c0),
    )


def _map_np(t: torch.Tensor) -> np.ndarray:
    """A float32 NumPy copy of a tensor (never a view of a cached weight)."""
    return np.array(t.detach().to("cpu", torch.float32).numpy(), dtype=np.float32, copy=True)
