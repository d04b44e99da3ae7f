"""The profile plot of the Loss amplification widget: the weights the loss uses.

Every profile of a weight is drawn (``A_S``: :data:`napari_dfct.weights.PROFILES`,
``A_F``: :data:`napari_dfct.weights.FREQUENCY_PROFILES`, ``sqrt`` included), the chosen
one bold. A curve is not a closed form: it samples the very map the loss uses
(:func:`napari_dfct.weights.spatial_weight` / :func:`~napari_dfct.weights.frequency_weight`
for the slice or patch shape, normalised when the configuration normalises) along its
own radius (:func:`~napari_dfct.weights.spatial_radius` /
:func:`~napari_dfct.weights.frequency_radius`), so a normalised map is plotted with its
normalised values and the curve's end points are the map's minimum and maximum.

With a directional weight and no frequency weight, the ``A_F`` panel shows the radial
envelope of ``A_D`` (its value where ``G = 1``), which is the frequency map of its profile
(normalised by the same divisor, :func:`napari_dfct.directional.weight_from_angular`).
"""

from __future__ import annotations

import functools

import numpy as np

from ._choices import FREQUENCY_CHOICES

__all__ = ["clear_profiles", "draw_profiles", "profile_curve"]

#: Samples per curve along the radius.
SAMPLES = 129
#: Colour and line style of each profile, the same in both panels.
STYLES = {
    "none": {"color": "#9aa0a6", "linestyle": "--"},
    "linear": {"color": "#4fa3ff", "linestyle": "-"},
    "nonlinear": {"color": "#ff9f40", "linestyle": "-"},
    "sqrt": {"color": "#5fd38d", "linestyle": "-"},
}
_LABELS = {value: label for label, value in FREQUENCY_CHOICES}
_TITLES = ("A_S radial profile", "A_F radial profile")
_YLABELS = {False: "weight", True: "weight (mean 1)"}


@functools.lru_cache(maxsize=8)
def _radial_samples(kind: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Flat pixel indices of about :data:`SAMPLES` radii evenly spread over ``[0, max]``
    (the centre and the farthest pixel included), and those radii (they depend on the
    shape only: cached)."""
    from napari_dfct import weights

    radius = (
        weights.spatial_radius(shape) if kind == "spatial" else weights.frequency_radius(shape)
    )
    flat = np.asarray(radius, dtype=np.float64).ravel()
    order = np.argsort(flat, kind="stable")
    sorted_r = flat[order]
    at = np.searchsorted(sorted_r, np.linspace(0.0, sorted_r[-1], SAMPLES), side="left")
    at = np.unique(np.clip(at, 0, sorted_r.size - 1))
    return order[at], sorted_r[at]


def profile_curve(
    kind: str, profile: str, shape: tuple[int, int], normalize: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``(radius, weight)`` of the map the loss uses for ``shape``, along its radius.

    Parameters
    ----------
    kind : {"spatial", "frequency"}
    profile : str
        A profile of that weight.
    shape : (int, int)
        The full slice (``A_S`` is built and normalised over it) or the maps' shape
        (``A_F``).
    normalize : bool
        The configuration's ``normalize``.
    """
    from napari_dfct import weights

    shape = (int(shape[0]), int(shape[1]))
    build = weights.spatial_weight if kind == "spatial" else weights.frequency_weight
    values = build(shape, profile, normalize=normalize).numpy().ravel()
    index, radius = _radial_samples(kind, shape)
    return radius, values[index].astype(np.float64)


def draw_profiles(plot, config, slice_shape, maps) -> None:
    """Draw every profile of ``A_S`` (axes 0) and ``A_F`` (axes 1) as ``config`` uses
    them, the angular part of ``A_D`` (axes 2), and the legend under the panels.

    Parameters
    ----------
    plot : PlotCanvas
    config : LossConfig
    slice_shape : (int, int)
        The full slice (``A_S``).
    maps : LossMaps
        The maps shown (their shape is ``A_F``'s; their ``A_D`` scales its envelope).
    """
    from napari_dfct import weights

    chosen_f = config.frequency if config.frequency != "none" else config.directional
    panels = (
        (0, "spatial", weights.PROFILES, config.spatial, slice_shape),
        (1, "frequency", weights.FREQUENCY_PROFILES, chosen_f, maps.shape),
    )
    lows, highs = [], []
    for axes, kind, profiles, chosen, shape in panels:
        for profile in profiles:
            r, y = profile_curve(kind, profile, shape, config.normalize)
            lows.append(float(y.min()))
            highs.append(float(y.max()))
            on = chosen == profile
            plot.set_line(
                profile,
                r,
                y,
                axes=axes,
                label=_LABELS.get(profile, profile),
                linewidth=2.6 if on else 1.0,
                alpha=1.0 if on else 0.6,
                zorder=3 if on else 2,
                **STYLES.get(profile, {}),
            )
    lo, hi = min(lows), max(highs)
    pad = 0.05 * max(hi - lo, 1e-3)
    for ax in plot.axes[:2]:
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(lo - pad, hi + pad)
    ylabel = _YLABELS[bool(config.normalize)]
    if plot.axes[0].get_ylabel() != ylabel:
        plot.set_labels(axes=0, ylabel=ylabel)
    directional = config.frequency == "none" and maps.a_d is not None
    plot.set_title(_TITLES[0], axes=0)
    plot.set_title("A_D envelope (G = 1)" if directional else _TITLES[1], axes=1)
    _draw_angular(plot, maps)
    plot.figure_legend(1)
    plot.canvas.draw_idle()


def _draw_angular(plot, maps) -> None:
    ang = maps.angles
    plot.set_line(
        "G",
        [] if ang is None else ang,
        [] if ang is None else maps.angular,
        axes=2,
        color="#e45756",
        linewidth=2.0,
    )
    plot.axes[2].set_xlim(0.0, 180.0)
    plot.axes[2].set_ylim(-0.05, 1.05)


def clear_profiles(plot) -> None:
    """Remove every curve and the legend (nothing stale is plotted after an error)."""
    plot.clear()
    for axes, title in enumerate(_TITLES):
        plot.set_title(title, axes=axes)
    plot.canvas.draw_idle()
