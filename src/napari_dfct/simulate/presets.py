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
"""

from __future__ import annotations

from typing import Any

from .acquisition import Physics

__all__ = ["PRESETS", "preset_physics"]

#: Named realism options: ``noise`` and ``texture`` multiply the default photon-noise
#: standard deviation and lung-texture amplitude, ``tiles`` is the number of grating tiles
#: (0: none). ``benchmark``: streaks dominate the input's lung-ROI variance.
PRESETS: dict[str, dict[str, float | int]] = {
    "default": {"noise": 1.0, "texture": 1.0, "tiles": 0},
    "benchmark": {"noise": 1.0, "texture": 0.5, "tiles": 8},
}


def preset_physics(
    preset: str = "default",
    *,
    noise: float | None = None,
    texture: float | None = None,
    tiles: int | None = None,
) -> dict[str, Any]:
    """Keyword arguments of :func:`simulate_dfct` for a preset of :data:`PRESETS`.

    Parameters
    ----------
    preset : str
        A name of :data:`PRESETS`.
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
