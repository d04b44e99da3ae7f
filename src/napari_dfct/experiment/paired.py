"""The grid report's paired comparisons: each configuration against its baseline, by seed.

Runs with the same seed share the split, the initialisation and the patch order, so each
configuration is compared with its family's baseline **paired by seed**
(:func:`napari_dfct.experiment.stats.paired_comparison`): the median of the per-seed
differences ``configuration - baseline`` (of each run's median over the test slices) with
a 95 % bootstrap interval, a Wilcoxon signed-rank p-value, the p-value after Holm's
correction over the configurations of the table, and a verdict (better / worse / no
evidence) from the interval and the corrected p-value.

* The baseline of a configuration is the plain loss of its family (same loss, mode and
  normalisation, no amplification, scale 1); a family without one (e.g. a spectral-mode
  grid that trained only amplified configurations) uses the plain loss of the same kind
  (``l2``), since mode and normalisation do not change an un-amplified loss.
* Scale-matched controls (``l2@1.47``: the plain loss times a configuration's effective
  loss scale; ``grid.json``'s ``controls``) are rows of their own against the baseline. A
  second table compares each amplified configuration with its control: what the
  amplification's structure does beyond its loss scale.
* One table per metric and comparison kind; Holm's correction runs over the rows of one
  table (one metric, one kind).

Files: ``paired.md`` (the tables), ``paired.csv`` (one row per comparison and metric) and
``paired.png`` (the paired differences with their intervals, one panel per metric).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._tables import METRICS, csv_text, md_table, plt
from .stats import HIGHER_IS_BETTER, PairedResult, paired_comparison, with_holm

__all__ = [
    "PAIRED_METRICS",
    "baseline_of",
    "paired_figure",
    "paired_results",
    "paired_tables",
    "parse_compare",
]

#: Metrics compared by seed in the report.
PAIRED_METRICS = ("cnr", "fwhm", "error_cnr", "psnr_body")
_KINDS = {
    "baseline": "vs the baseline",
    "control": "vs the scale-matched control",
    "pair": "for the chosen pairs",
}
_VERDICT_COLORS = {"better": "#2ca02c", "worse": "#d62728", "no evidence": "0.45"}


def _is_baseline(entry: dict) -> bool:
    return entry["scheme"] == "none" and float(entry.get("scale", 1.0)) == 1.0


def baseline_of(name: str, summary: dict) -> str | None:
    """The baseline a configuration is compared with: the plain loss of its family, else
    the plain loss of its kind (``"l2"``); None for a baseline itself or when the grid has
    neither."""
    e = summary[name]
    if _is_baseline(e):
        return None
    family = next(
        (
            n
            for n, b in summary.items()
            if _is_baseline(b) and b.get("family", b["loss"]) == e.get("family", e["loss"])
        ),
        None,
    )
    if family is not None:
        return family
    return next(
        (
            n
            for n, b in summary.items()
            if _is_baseline(b) and b.get("family", b["loss"]) == e["loss"]
        ),
        None,
    )


def _pairs(
    summary: dict, controls: dict[str, str] | None, compare: Sequence[tuple[str, str]] = ()
) -> list[tuple[str, str, str]]:
    """``(configuration, reference, kind)`` for every comparison of the report."""
    pairs = []
    for name in summary:
        base = baseline_of(name, summary)
        if base is not None:
            pairs.append((name, base, "baseline"))
    for name, ctrl in (controls or {}).items():
        if name in summary and ctrl in summary:
            pairs.append((name, ctrl, "control"))
    for a, b in compare:
        missing = [n for n in (a, b) if n not in summary]
        if missing:
            raise ValueError(
                f"no finished run of {', '.join(map(repr, missing))} to compare; "
                f"configurations with runs: {', '.join(summary)}"
            )
        pairs.append((a, b, "pair"))
    return pairs


def parse_compare(text: str | Sequence[str] | None) -> list[tuple[str, str]]:
    """``"A:B,C:D"`` (or a list of ``"A:B"``) as ``[(A, B), (C, D)]``: compare A with B."""
    if not text:
        return []
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        a, sep, b = str(item).strip().partition(":")
        if not sep or not a.strip() or not b.strip() or a.strip() == b.strip():
            raise ValueError(
                f"a comparison is CONFIG:REFERENCE with two different names, got {item!r}"
            )
        out.append((a.strip(), b.strip()))
    return out


def _by_seed(entry: dict, metric: str) -> dict[int, float]:
    return dict(zip((int(s) for s in entry["seeds"]), entry[metric]["values"]))


def _has_values(summary: dict, metric: str) -> bool:
    return any(metric in e and e[metric]["n"] > 0 for e in summary.values())


def paired_results(
    summary: dict,
    controls: dict[str, str] | None = None,
    metrics: Sequence[str] = PAIRED_METRICS,
    *,
    n_boot: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
    alpha: float = 0.05,
    compare: Sequence[tuple[str, str]] = (),
) -> list[dict]:
    """Every paired comparison of a grid summary (:func:`~.report.summarize`).

    ``compare`` adds chosen pairs ``(configuration, reference)`` (e.g. a directional
    weight against the isotropic one) as a third kind of table, ``"pair"``.

    Returns
    -------
    list of dict
        ``{"configuration", "reference", "kind" ("baseline", "control" or "pair"),
        "metric", "result": PairedResult}``, by kind, then metric, then configuration
        (grid order); ``result.p_holm`` is corrected over the rows of the same kind and
        metric. Metrics that no run has (e.g. ``psnr_body`` without a body mask) are left
        out.

    Raises
    ------
    ValueError
        A configuration of ``compare`` without finished runs.
    """
    pairs = _pairs(summary, controls, compare)
    rows: list[dict] = []
    for kind in _KINDS:
        kind_pairs = [(a, b) for a, b, k in pairs if k == kind]
        for m in metrics:
            if not kind_pairs or not _has_values(summary, m):
                continue
            results = [
                paired_comparison(
                    _by_seed(summary[a], m),
                    _by_seed(summary[b], m),
                    higher_is_better=HIGHER_IS_BETTER.get(m, True),
                    confidence=confidence,
                    n_boot=n_boot,
                    seed=seed,
                    alpha=alpha,
                )
                for a, b in kind_pairs
            ]
            for (a, b), r in zip(kind_pairs, with_holm(results)):
                rows.append(
                    {"configuration": a, "reference": b, "kind": kind, "metric": m, "result": r}
                )
    return rows


def _fmt_diff(v: float) -> str:
    """A difference with three significant digits and its sign (small differences of a
    tiny grid stay visible)."""
    return "n/a" if not math.isfinite(v) else format(v, "+.3g")


def _p(v: float) -> str:
    if not math.isfinite(v):
        return "n/a"
    return f"{v:.2g}" if v < 0.01 else f"{v:.3f}"


def paired_tables(rows: list[dict]) -> dict:
    """Markdown (one table per kind and metric) and CSV (one line per row) of
    :func:`paired_results`: ``{"markdown": str, "csv": str}``."""
    md_parts = []
    for kind, title in _KINDS.items():
        for m in dict.fromkeys(r["metric"] for r in rows if r["kind"] == kind):
            label = METRICS.get(m, (m,))[0]
            good = "higher" if HIGHER_IS_BETTER.get(m, True) else "lower"
            table = []
            for r in rows:
                if r["kind"] != kind or r["metric"] != m:
                    continue
                res: PairedResult = r["result"]
                verdict = res.verdict if res.verdict == "no evidence" else f"**{res.verdict}**"
                table.append(
                    [
                        r["configuration"],
                        r["reference"],
                        str(res.n),
                        _fmt_diff(res.median),
                        f"[{_fmt_diff(res.ci_low)}, {_fmt_diff(res.ci_high)}]",
                        _p(res.p),
                        _p(res.p_holm),
                        verdict,
                    ]
                )
            conf = rows[0]["result"].confidence
            header = [
                "configuration",
                "compared with",
                "n seeds",
                f"median Δ {label}",
                f"{conf:.0%} CI",
                "p (Wilcoxon)",
                "p (Holm)",
                "verdict",
            ]
            md_parts.append(
                f"### {label} {title} ({good} is better)\n\n" + md_table(header, table)
            )
    header = [
        "kind",
        "configuration",
        "reference",
        "metric",
        "good",
        "n",
        "median_diff",
        "ci_low",
        "ci_high",
        "statistic",
        "p",
        "p_holm",
        "verdict",
        "seeds",
        "differences",
    ]
    lines = []
    for r in rows:
        res = r["result"]
        lines.append(
            [
                r["kind"],
                r["configuration"],
                r["reference"],
                r["metric"],
                "higher" if res.higher_is_better else "lower",
                res.n,
                res.median,
                res.ci_low,
                res.ci_high,
                res.statistic,
                res.p,
                res.p_holm,
                res.verdict,
                " ".join(str(s) for s in res.seeds),
                " ".join(repr(float(d)) for d in res.differences),
            ]
        )
    return {"markdown": "\n".join(md_parts), "csv": csv_text(header, lines)}


def paired_figure(rows: list[dict], path: str | os.PathLike, title: str | None = None) -> Path:
    """The paired differences with their intervals, one panel per metric.

    Each comparison is one line: the per-seed differences (dots), their median (marker,
    coloured by the verdict) and the bootstrap interval (bar); zero is marked. The x axis
    says which direction is good.
    """
    pyplot = plt()
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    labels = list(dict.fromkeys(_row_label(r) for r in rows))
    n = max(len(metrics), 1)
    height = max(2.6, 0.32 * len(labels) + 1.4)
    fig, axes = pyplot.subplots(
        1, n, figsize=(3.6 * n + 1.6, height), dpi=110, squeeze=False, sharey=True
    )
    ypos = {label: i for i, label in enumerate(labels)}
    rng = np.random.default_rng(0)
    for ax, m in zip(axes[0], metrics):
        for r in rows:
            if r["metric"] != m:
                continue
            res, y = r["result"], ypos[_row_label(r)]
            d = np.asarray(res.differences, dtype=float)
            if d.size:
                ax.scatter(d, y + rng.uniform(-0.12, 0.12, d.size), s=8, color="0.6", zorder=2)
            color = _VERDICT_COLORS.get(res.verdict, "0.45")
            if math.isfinite(res.ci_low) and math.isfinite(res.ci_high):
                ax.hlines(y, res.ci_low, res.ci_high, color=color, lw=2.2, zorder=3)
            if math.isfinite(res.median):
                ax.plot([res.median], [y], "o", color=color, ms=5, zorder=4)
        ax.axvline(0.0, color="k", lw=0.8, ls="--")
        label = METRICS.get(m, (m,))[0]
        arrow = "higher is better →" if HIGHER_IS_BETTER.get(m, True) else "← lower is better"
        ax.set_xlabel(f"Δ {label}\n({arrow})", fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0][0].set_yticks(range(len(labels)))
    axes[0][0].set_yticklabels(labels, fontsize=7)
    axes[0][0].set_ylim(len(labels) - 0.5, -0.5)
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=c, marker="o", lw=2, label=v) for v, c in _VERDICT_COLORS.items()
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle(
        title or "Paired differences by seed: median and 95 % bootstrap interval", fontsize=9
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path)
    pyplot.close(fig)
    return Path(path)


def _row_label(r: dict) -> str:
    return f"{r['configuration']} − {r['reference']}"
