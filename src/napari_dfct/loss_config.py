"""Loss configurations: which pixel loss and which amplification, and their names.

:class:`LossConfig` says which loss (L1, L2) and which amplification: spatial ``S``,
frequency ``F``, directional ``D`` (:mod:`napari_dfct.directional`), their order, the mode
(``paper`` or ``spectral``, see :mod:`napari_dfct.losses`), normalisation and a constant
scale. Its :attr:`~LossConfig.name` round-trips through :meth:`LossConfig.from_name`.
:mod:`napari_dfct.losses` re-exports everything here.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

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
    "coerce_config",
]

LOSSES = ("l1", "l2")
SCHEMES = ("none", "S", "F", "S+F", "F+S")
#: Schemes with the directional weight (always mode ``spectral``).
DIRECTIONAL_SCHEMES = ("D", "S+D", "D+S")
MODES = ("paper", "spectral")
ORDERS = ("sf", "fs")
_PROFILES_ON = ("linear", "nonlinear")


def _norm_choice(value: Any, valid: Sequence[str], what: str) -> str:
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
    spatial, frequency : {"none", "linear", "nonlinear"} (frequency also ``"sqrt"``)
        Profile of ``A_S`` and ``A_F``.
    order : {"sf", "fs"}
        ``sf``: S then F or D (S+F, S+D); ``fs``: F or D then S (F+S, D+S). Only meaningful
        when two weights are on; otherwise it is stored as ``"sf"`` so equal losses
        compare equal.
    mode : {"paper", "spectral"}, optional
        See :mod:`napari_dfct.losses`. Default: ``"spectral"`` with a directional weight,
        else ``"paper"``.
    normalize : bool
        Rescale the weight maps to mean 1.
    scale : float
        A constant factor on the loss (default 1). A scale-matched control is the plain
        loss with the :func:`effective_scale` of an amplified configuration: with Adam's
        coupled weight decay a loss scale alone changes training.
    directional : {"none", "linear", "nonlinear", "sqrt"}
        Radial profile of the directional weight ``A_D``
        (:mod:`napari_dfct.directional`). Mode ``spectral`` only (``ValueError`` with the
        DC identity in mode ``paper``), and not together with ``frequency``.
    oracle : bool
        Build the directional weight's angular part ``G`` from the simulator's known error
        energy per view (:func:`napari_dfct.simulate.slice_angular`) instead of estimating
        it from ``input - target``: what a perfect estimate would give. For the study on
        simulated data only (training needs that truth, ``fit(..., oracle=...)``);
        directional configurations only.

    Notes
    -----
    ``name`` is ``<loss>[+<terms>][-spectral][-norm]`` where the terms are ``s-<profile>``,
    ``f-<profile>``, ``s+f-<profile>`` or ``f+s-<profile>`` (both weights with one profile),
    or ``s-<p>+f-<q>`` / ``f-<q>+s-<p>`` (different profiles), and ``@<scale>`` when the
    scale is not 1. Examples: ``"l2"``, ``"l2+s-linear"``, ``"l2+s+f-nonlinear"``,
    ``"l1+f+s-linear"``, ``"l2+f-linear-spectral-norm"``, ``"l2@1.47"``. Directional
    terms use ``d``: ``"l2+d-nonlinear"``, ``"l2+s+d-nonlinear"``, ``"l2+d+s-linear"``,
    ``"l1+d-sqrt"``; they are always spectral, so their canonical name has no
    ``-spectral`` (it is accepted when parsing). The oracle variant ends in ``-oracle``
    (``"l2+d-nonlinear-oracle"``, before ``-norm``).

    Examples
    --------
    >>> from napari_dfct import LossConfig
    >>> cfg = LossConfig.from_name("l2+s+f-nonlinear")
    >>> cfg.spatial, cfg.frequency, cfg.mode
    ('nonlinear', 'nonlinear', 'paper')
    >>> LossConfig(loss="l1", spatial="linear").name
    'l1+s-linear'
    """

    loss: str = "l2"
    spatial: str = "none"
    frequency: str = "none"
    order: str = "sf"
    mode: str | None = None
    normalize: bool = False
    scale: float = 1.0
    directional: str = "none"
    oracle: bool = False

    def __post_init__(self) -> None:
        from . import weights as _w  # torch: only once a configuration is made
        from .directional import DC_IDENTITY

        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen)
        set_("loss", _norm_choice(self.loss, LOSSES, "loss"))
        set_("spatial", _norm_choice(self.spatial, _w.PROFILES, "spatial profile"))
        set_("frequency", _norm_choice(self.frequency, _w.FREQUENCY_PROFILES, "frequency profile"))
        set_(
            "directional",
            _norm_choice(self.directional, _w.FREQUENCY_PROFILES, "directional profile"),
        )
        d_on = self.directional != "none"
        if d_on and self.frequency != "none":
            raise ValueError(
                "directional (D) and frequency (F) amplification do not "
                "combine: D already carries a radial frequency profile"
            )
        second = self.frequency != "none" or d_on
        order = _norm_choice(self.order, ORDERS, "order")
        set_("order", order if (self.spatial != "none" and second) else "sf")
        mode = self.mode if self.mode is not None else ("spectral" if d_on else "paper")
        set_("mode", _norm_choice(mode, MODES, "mode"))
        if d_on and self.mode == "paper":
            raise ValueError(DC_IDENTITY)
        if not isinstance(self.oracle, (bool, np.bool_)):
            raise ValueError(f"oracle must be a bool, got {self.oracle!r}")
        set_("oracle", bool(self.oracle))
        if self.oracle and not d_on:
            raise ValueError(
                "the oracle (the simulator's known error energy per view) "
                "sets the directional weight's angular part: it needs a "
                "directional configuration (D, S+D or D+S)"
            )
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
        """``"none"``, ``"S"``, ``"F"``, ``"S+F"``, ``"F+S"``, ``"D"``, ``"S+D"`` or
        ``"D+S"``."""
        s, f = self.spatial != "none", self.frequency != "none"
        k = "D" if self.directional != "none" else "F"
        f = f or k == "D"
        if s and f:
            return f"S+{k}" if self.order == "sf" else f"{k}+S"
        return "S" if s else (k if f else "none")

    @property
    def profile(self) -> str:
        """The weights' profile when they share one (``"none"`` for the baseline).

        ``"mixed"`` when spatial and frequency profiles differ.
        """
        on = {p for p in (self.spatial, self.frequency, self.directional) if p != "none"}
        return "none" if not on else (on.pop() if len(on) == 1 else "mixed")

    @property
    def name(self) -> str:
        """Canonical name, the inverse of :meth:`from_name`."""
        sch = self.scheme
        if sch == "none":
            core = self.loss
        elif sch == "S":
            core = f"{self.loss}+s-{self.spatial}"
        elif sch in ("F", "D"):
            core = f"{self.loss}+{sch.lower()}-{self._second}"
        else:
            k = sch.replace("S", "").replace("+", "").lower()
            first, second = ("s", k) if sch.startswith("S") else (k, "s")
            prof = {"s": self.spatial, k: self._second}
            if self.spatial == self._second:
                core = f"{self.loss}+{first}+{second}-{self.spatial}"
            else:
                core = f"{self.loss}+{first}-{prof[first]}+{second}-{prof[second]}"
        if self.mode == "spectral" and self.directional == "none":
            core += "-spectral"
        if self.oracle:
            core += "-oracle"
        if self.normalize:
            core += "-norm"
        if self.scale != 1.0:
            core += f"@{self.scale:g}"
        return core

    @property
    def _second(self) -> str:
        """The profile of the frequency-domain weight (F or D)."""
        return self.directional if self.directional != "none" else self.frequency

    @property
    def plain(self) -> LossConfig:
        """The un-amplified loss of the same kind (L1 or L2, scale 1): the selection
        criterion that every configuration shares."""
        return LossConfig(loss=self.loss)

    @property
    def trains_as(self) -> LossConfig:
        """The simplest configuration that trains identically (same loss value and
        gradient), by the DC identity (:mod:`napari_dfct.losses`).

        In mode ``paper`` with un-normalised weights (``A_F(DC) = 1``) the frequency
        weight acts on the loss map and only its DC bin survives the mean: ``F`` trains as
        the plain loss and ``S+F`` as ``S`` (the scale kept). Every other configuration
        (``F+S``, which smooths ``A_S``; normalised weights, whose ``A_F(DC)`` is not 1;
        the spectral mode) trains as itself. Two configurations with equal ``trains_as``
        give the same runs seed for seed: comparing them compares nothing.
        """
        if self.mode != "paper" or self.normalize or self.frequency == "none":
            return self
        if self.scheme not in ("F", "S+F"):
            return self
        return LossConfig(
            loss=self.loss, spatial=self.spatial, normalize=self.normalize, scale=self.scale
        )

    def __str__(self) -> str:
        return self.name

    @classmethod
    def from_name(cls, name: str, **overrides: Any) -> LossConfig:
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
    def from_dict(cls, d: dict) -> LossConfig:
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


_TERM = re.compile(r"^(s|f|d)(?:-(linear|nonlinear|sqrt))?$")


def _invalid(name: object) -> ValueError:
    valid = ", ".join(paper_names())
    return ValueError(
        f"unknown loss configuration {name!r}. Valid names: {valid} "
        "(append '-spectral' and/or '-norm' for the spectral mode / normalised weights, "
        "'@X' for a constant loss scale X; directional terms, always spectral: "
        "l2+d-nonlinear, l2+s+d-nonlinear, l2+d+s-linear, l1+d-sqrt, and with the "
        "simulator's truth for the angular part, l2+d-nonlinear-oracle)"
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
    normalize = mode_spectral = oracle = False
    if s.endswith("-norm"):
        normalize, s = True, s[: -len("-norm")]
    if s.endswith("-oracle"):
        oracle, s = True, s[: -len("-oracle")]
    if s.endswith("-spectral"):
        mode_spectral, s = True, s[: -len("-spectral")]
    parts = s.split("+")
    loss, terms = parts[0], parts[1:]
    if loss not in LOSSES:
        raise _invalid(name)
    matches = [m for m in (_TERM.match(t) for t in terms) if m is not None]
    if len(matches) < len(terms) or len(terms) > 2:
        raise _invalid(name)
    kinds = [m.group(1) for m in matches]
    profs = [m.group(2) for m in matches]
    prof = {"s": "none", "f": "none", "d": "none"}
    order = "sf"
    if len(terms) == 1:
        if profs[0] is None:
            raise _invalid(name)
        prof[kinds[0]] = profs[0]
    elif len(terms) == 2:
        if kinds[0] == kinds[1] or "s" not in kinds or profs[1] is None:
            raise _invalid(name)
        prof[kinds[0]] = profs[0] if profs[0] is not None else profs[1]
        prof[kinds[1]] = profs[1]
        order = "sf" if kinds[0] == "s" else "fs"
    directional = prof["d"] != "none"
    if oracle and not directional:
        raise _invalid(name)
    return LossConfig(
        loss=loss,
        spatial=prof["s"],
        frequency=prof["f"],
        order=order,
        mode="spectral" if (mode_spectral or directional) else "paper",
        normalize=normalize,
        scale=scale,
        directional=prof["d"],
        oracle=oracle,
    )


def build_loss_config(
    loss: str = "l2",
    *,
    spatial: str = "none",
    frequency: str = "none",
    directional: str = "none",
    order: str = "sf",
    mode: str | None = None,
    normalize: bool = False,
    scale: float = 1.0,
) -> LossConfig:
    """The :class:`LossConfig` of a loss (or a full name) and options.

    The one rule of ``dfct train`` (``--loss``, ``--mode``, ``--normalize-weights``,
    ``--loss-scale``), ``dfct grid`` (:func:`napari_dfct.experiment.make_configs`), the
    widgets and :func:`paper_configs`.

    Parameters
    ----------
    loss : str
        ``"l1"`` or ``"l2"``, amplified as the profile options say; or a full name
        (``"l2+s+f-nonlinear"``, ``"l2+d-nonlinear-norm"``, ``"l2@1.47"``), which carries
        its own profiles, order, mode, normalisation and scale.
    spatial, frequency, directional : str
        Profiles of ``A_S``, ``A_F``, ``A_D`` for a plain ``loss``.
    order : {"sf", "fs"}
        Order of two weights for a plain ``loss``. A full name refuses profiles and an
        order (``ValueError``) rather than ignore them.
    mode : {"paper", "spectral"} or None
        None: each configuration's own (a name's; else ``"paper"``, and ``"spectral"``
        with a directional weight). ``"spectral"`` makes the configuration spectral.
        ``"paper"`` leaves a name's own mode (``-spectral`` stays spectral), and is
        refused (``ValueError``, one line) with a directional weight (D), which works in
        mode ``spectral`` only.
    normalize : bool
        True normalises the weights to mean 1 (a ``-norm`` name is normalised either way).
    scale : float
        A constant factor on the loss; other than 1 it replaces a name's ``@X``.

    Returns
    -------
    LossConfig

    Raises
    ------
    ValueError
        An unknown loss or name, options that do not go together (one line).

    Examples
    --------
    >>> build_loss_config("l2", spatial="nonlinear", frequency="nonlinear").name
    'l2+s+f-nonlinear'
    >>> build_loss_config("l2+f-linear", mode="spectral", normalize=True).name
    'l2+f-linear-spectral-norm'
    >>> build_loss_config("l2+d-nonlinear").mode
    'spectral'
    """
    from .directional import DC_IDENTITY

    name = str(loss).strip().lower()
    if name in LOSSES:  # a plain loss: the options say the rest
        cfg = LossConfig(
            loss=name,
            spatial=spatial,
            frequency=frequency,
            directional=directional,
            order=order,
            normalize=normalize,
            scale=scale,
        )
    else:
        cfg = LossConfig.from_name(name)  # an unknown name: the valid ones listed
        given = [
            k
            for k, v, unset in (
                ("spatial", spatial, "none"),
                ("frequency", frequency, "none"),
                ("directional", directional, "none"),
                ("order", order, "sf"),
            )
            if str(v).strip().lower() != unset
        ]
        if given:
            raise ValueError(
                f"{loss!r} is a full loss name, with its own profiles and order: leave out "
                f"{', '.join(given)}, or give the plain loss (l1, l2) with them"
            )
        over: dict[str, Any] = {
            **({"normalize": True} if normalize else {}),
            **({"scale": scale} if scale != 1.0 else {}),
        }
        if over:
            cfg = dataclasses.replace(cfg, **over)
    if mode is not None:
        mode = _norm_choice(mode, MODES, "mode")
        if mode == "paper" and cfg.directional != "none":
            raise ValueError(f"{cfg.name} in mode 'paper': {DC_IDENTITY}")
        if mode == "spectral":
            cfg = dataclasses.replace(cfg, mode=mode)
    return cfg


def paper_configs(
    losses: Sequence[str] = LOSSES,
    schemes: Sequence[str] = SCHEMES,
    profiles: Sequence[str] = _PROFILES_ON,
    *,
    mode: str | None = None,
    normalize: bool = False,
) -> list[LossConfig]:
    """The paper's grid: per loss, the baseline once and every scheme x profile.

    Parameters
    ----------
    losses : sequence of {"l1", "l2"}
    schemes : sequence of {"none", "S", "F", "S+F", "F+S", "D", "S+D", "D+S"}
    profiles : sequence of {"linear", "nonlinear"}
    mode : {"paper", "spectral"} or None
        Applied to every configuration (:func:`build_loss_config`). None (the paper's):
        ``"paper"``, except the directional schemes, which are always ``"spectral"``;
        ``"paper"`` with a directional scheme raises ``ValueError``.
    normalize : bool
        Applied to every configuration (``False`` reproduces the paper).

    Returns
    -------
    list of LossConfig
        18 for the defaults: 2 losses x (1 baseline + 4 schemes x 2 profiles).
    """
    out: list[LossConfig] = []
    valid = SCHEMES + DIRECTIONAL_SCHEMES
    for sch in schemes:
        if sch not in valid:
            raise ValueError(f"unknown scheme {sch!r}; valid: {', '.join(valid)}")
    for p in profiles:
        if p not in _PROFILES_ON:
            raise ValueError(f"unknown profile {p!r}; valid: {', '.join(_PROFILES_ON)}")
    losses = [_norm_choice(loss, LOSSES, "loss") for loss in losses]
    for loss in losses:
        if "none" in schemes:
            out.append(build_loss_config(loss, mode=mode, normalize=normalize))
        for sch in schemes:
            if sch == "none":
                continue
            for p in profiles:
                out.append(
                    build_loss_config(
                        loss,
                        spatial=p if "S" in sch else "none",
                        frequency=p if "F" in sch else "none",
                        directional=p if "D" in sch else "none",
                        order="fs" if sch in ("F+S", "D+S") else "sf",
                        mode=mode,
                        normalize=normalize,
                    )
                )
    return out


def paper_names() -> list[str]:
    """Names of the 18 paper configurations."""
    return [c.name for c in paper_configs()]


def coerce_config(config: LossConfig | str | dict) -> LossConfig:
    """A :class:`LossConfig` from a config, a name or a dict."""
    if isinstance(config, LossConfig):
        return config
    if isinstance(config, str):
        return LossConfig.from_name(config)
    if isinstance(config, dict):
        return LossConfig.from_dict(config)
    raise ValueError(f"expected a LossConfig, a name or a dict, got {type(config).__name__}")
