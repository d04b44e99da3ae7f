"""Named presets of the simulator's realism options.

:data:`PRESETS` names sets of the realism options of ``dfct simulate`` (``--noise``,
``--texture``, ``--tiles``); :func:`preset_physics` turns them into keyword arguments
of :func:`simulate_dfct`. ``noise`` and ``texture`` are multipliers of the default
photon-noise level and lung-texture amplitude; ``tiles`` is the number of grating
tiles across the detector (0: one seamless grating).

``"default"`` is the plain simulator. ``"benchmark"`` halves the lung texture and adds an
8-tile grating (rings), so that streaks (vibration, tile errors and photon noise) dominate
the input's lung-ROI noise more clearly (:func:`~.realism.variance_shares`, median over
the specimens of a set, measured on sets of 8 independent specimens, seeds 0 to 2):

=========  =============  ==============
size       ``default``    ``benchmark``
=========  =============  ==============
128 px     0.67 to 0.81   0.87 to 0.90
256 px     0.64 to 0.68   0.77 to 0.81
800 px     0.76           0.88 (2 specimens, seed 0)
=========  =============  ==============

In the 20-rotation target the share is 0.16 to 0.26 by default and 0.23 to 0.47 with the
benchmark (texture dominates there, as it should in a reference). The vessels are
anatomy, not texture: ``texture`` leaves them alone, so they bound the share from above.

The acquisition model can change a preset (:data:`MODEL_PRESETS`). At the fringe level
(``--physics fringe``) the same photon dose gives 1.2 to 1.4 times the first-order model's
noise variance in the lung ROI (the phase-stepping fit's own variance) and 0.37 to 0.70
times its vibration error, so at the first-order benchmark's dose noise and streaks are of
one order and streaks do not dominate (streak share 0.41 to 0.52). The fringe-level
``benchmark`` therefore takes four times the dose (``noise`` 0.5: half the noise standard
deviation): streak share 0.54 to 0.67, as in the first-order benchmark (0.56 to 0.69),
keeping the paper's premise, one rotation's images dominated by streaks (measured in
docs/simulator.md, "The fringe-level benchmark's dose"). ``--physics first-order`` is
unchanged.
"""

from __future__ import annotations

from typing import Any

from .acquisition import Physics

__all__ = ["MODEL_PRESETS", "PRESETS", "preset_physics"]

#: Named realism options: ``noise`` and ``texture`` multiply the default photon-noise
#: standard deviation and lung-texture amplitude, ``tiles`` is the number of grating tiles
#: (0: none). ``benchmark``: streaks dominate the input's lung-ROI variance.
PRESETS: dict[str, dict[str, float | int]] = {
    "default": {"noise": 1.0, "texture": 1.0, "tiles": 0},
    "benchmark": {"noise": 1.0, "texture": 0.5, "tiles": 8},
}

#: What a preset changes for one acquisition model, on top of :data:`PRESETS`:
#: ``(preset, model) -> options``. The fringe-level benchmark takes four times the dose.
MODEL_PRESETS: dict[tuple[str, str], dict[str, float | int]] = {
    ("benchmark", "fringe"): {"noise": 0.5},
}


def preset_physics(
    preset: str = "default",
    *,
    model: str = "first-order",
    noise: float | None = None,
    texture: float | None = None,
    tiles: int | None = None,
) -> dict[str, Any]:
    """Keyword arguments of :func:`simulate_dfct` for a preset of :data:`PRESETS`.

    Parameters
    ----------
    preset : str
        A name of :data:`PRESETS`.
    model : str
        The acquisition model (``"first-order"`` or ``"fringe"``) the options are for: its
        entry in :data:`MODEL_PRESETS`, if any, changes the preset's options.
    noise, texture : float, optional
        Multipliers of the default photon-noise standard deviation and of the default
        lung texture (the fine texture and the coarse modulation of the lung's
        dark-field signal); None takes the preset's.
    tiles : int, optional
        Grating tiles across the detector (0: none); None takes the preset's.

    Returns
    -------
    dict
        ``noise``, ``texture``, ``coarse_texture`` and ``tiles`` as :class:`Physics`
        fields; with the default preset and no options these are the defaults, so the
        simulation is that of plain :func:`simulate_dfct`.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    p = dict(PRESETS[preset])
    p.update(MODEL_PRESETS.get((preset, model), {}))
    for name, value in (("noise", noise), ("texture", texture), ("tiles", tiles)):
        if value is not None:
            p[name] = value
    if not float(p["noise"]) >= 0 or not float(p["texture"]) >= 0:
        raise ValueError(f"noise and texture must be >= 0, got {p['noise']} and {p['texture']}")
    base = Physics()
    m = float(p["texture"])
    return {
        "noise": float(p["noise"]),
        "texture": base.texture * m,
        "coarse_texture": base.coarse_texture * m,
        "tiles": int(p["tiles"]),
    }
