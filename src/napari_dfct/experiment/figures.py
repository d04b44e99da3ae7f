"""Figures of a grid report: violin plots per metric and Fig.-3-like image panels with the
ROIs and the FWHM line (matplotlib, Agg)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._tables import METRICS
from ._tables import plt as _plt
from ._util import to_float

__all__ = ["violin_figure"]

_SCHEME_COLORS = {
    "none": "0.55",
    "S": "#1f77b4",
    "F": "#ff7f0e",
    "S+F": "#2ca02c",
    "F+S": "#9467bd",
    "D": "#d62728",
    "S+D": "#8c564b",
    "D+S": "#e377c2",
}


def _violin_ax(
    ax, summary: dict, metric: str, reference: dict | None, rotate: bool = True
) -> None:
    names = list(summary)
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        e = summary[name]
        vals = np.asarray(e[metric]["values"], dtype=float)
        vals = vals[np.isfinite(vals)]
        color = _SCHEME_COLORS.get(e["scheme"], "0.3")
        if vals.size >= 2 and np.ptp(vals) > 0:
            parts = ax.violinplot(
                [vals], positions=[i], widths=0.8, showmedians=True, showextrema=False
            )
            for body in parts["bodies"]:
                body.set_facecolor(color)
                body.set_edgecolor("k")
                body.set_alpha(0.45 if e["profile"] != "linear" else 0.25)
            parts["cmedians"].set_color("k")
        elif vals.size:
            ax.hlines(np.median(vals), i - 0.3, i + 0.3, color="k", lw=1.5)
        if vals.size:
            ax.scatter(
                i + rng.uniform(-0.08, 0.08, vals.size),
                vals,
                s=12,
                color=color,
                edgecolor="k",
                linewidths=0.4,
                zorder=3,
            )
    # the truth's own CNR can be far off the scale (no noise), and it is the PSNR/SSIM
    # reference itself: only the input and the target are drawn
    styles = {"input": ("--", "C3"), "target": (":", "0.2")}
    for key, (ls, col) in styles.items():
        v = to_float(((reference or {}).get(key) or {}).get(metric))
        if math.isfinite(v):
            ax.axhline(v, ls=ls, color=col, lw=1.2, label=key)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(
        names, rotation=40 if rotate else 0, ha="right" if rotate else "center", fontsize=8
    )
    ax.set_xlim(-0.7, len(names) - 0.3)
    ax.set_ylabel(METRICS[metric][0])
    ax.grid(axis="y", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")


def _violin(summary: dict, metric: str, reference: dict | None, path: Path) -> Path:
    plt = _plt()
    fig_w = max(4.5, 0.55 * len(summary) + 2.0)
    fig, ax = plt.subplots(figsize=(fig_w, 4.2), dpi=110)
    _violin_ax(ax, summary, metric, reference)
    ax.set_title(f"{METRICS[metric][0]} per configuration (over seeds)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def violin_figure(
    summary: dict,
    metrics: Sequence[str],
    reference: dict | None,
    path: str | os.PathLike,
    title: str | None = None,
) -> Path:
    """Violin plots of several metrics side by side, one panel per metric.

    Each configuration is a violin over its seeds (points: the seeds), the input's value a
    dashed line and the target's a dotted one.
    """
    plt = _plt()
    n = len(metrics)
    width = max(2.6, 0.5 * len(summary) + 1.4)
    fig, axes = plt.subplots(1, n, figsize=(width * n, 3.9), dpi=110, squeeze=False)
    for ax, m in zip(axes[0], metrics):
        _violin_ax(ax, summary, m, reference)
        ax.set_title(METRICS[m][0], fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def _read2d(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    from ..io import read_volume

    data, _ = read_volume(path)
    data = np.asarray(data, dtype=np.float32)
    return data if data.ndim == 2 else data[data.shape[0] // 2]


def _draw_rois(ax, roi: dict) -> None:
    from matplotlib.patches import Rectangle

    size = float(roi["roi_size"])
    for key, color in (("signal_center", "#ff3b30"), ("background_center", "#00c7ff")):
        r, c = roi[key]
        ax.add_patch(
            Rectangle(
                (c - size / 2, r - size / 2), size, size, fill=False, edgecolor=color, lw=1.0
            )
        )
    (r0, c0), (r1, c1) = roi["line"]
    ax.plot([c0, c1], [r0, r1], color="#ffd60a", lw=1.0)


def _panel(images: list[tuple[str, np.ndarray]], roi: dict, path: Path, title: str) -> Path:
    plt = _plt()
    n = len(images)
    ncols = n if n <= 6 else (math.ceil(n / 2) if n <= 12 else 6)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(2.6 * ncols, 2.85 * nrows + 0.3), dpi=110, squeeze=False
    )
    ref = next((img for label, img in images if label.startswith("target")), images[0][1])
    vmin, vmax = (float(v) for v in np.nanpercentile(ref, [1, 99]))
    if not vmax > vmin:
        vmax = vmin + 1.0
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (label, img) in zip(axes.ravel(), images):
        ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        _draw_rois(ax, roi)
        ax.set_title(label, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
