"""The grid report's paired comparisons: each configuration against its baseline, by seed.

Runs with the same seed share the split, the initialisation and the patch order, so each
configuration is compared with its family's baseline **paired by seed**
(:func:`napari_dfct.experiment.stats.paired_comparison`): the median of the per-seed
differences ``configuration - baseline`` (of each run's median over the test slices) with
a 95 % bootstrap interval, a Wilcoxon signed-rank p-value, the two one-sided tests of
equivalence (TOST) against the metric's declared margin, both p-values after Holm's
correction over the table's family, and a verdict (better / worse / equivalent /
inconclusive, :func:`~.stats.verdict`).

* The baseline of a configuration is the plain loss of its family (same loss, mode and
  normalisation, no amplification, scale 1); a family without one (e.g. a spectral-mode
  grid that trained only amplified configurations) uses the plain loss of the same kind
  (``l2``), since mode and normalisation do not change an un-amplified loss.
* Scale-matched controls (``l2@1.47``: the plain loss times a configuration's effective
  loss scale; ``grid.json``'s ``controls``) are rows of their own against the baseline. A
  second table compares each amplified configuration with its control: what the
  amplification's structure does beyond its loss scale.
* One table per metric and comparison kind; Holm's correction runs over the rows of one
  table (one metric, one kind) that are real comparisons: a row whose configuration trains
  identically to its reference (the DC identity, :attr:`~napari_dfct.losses.LossConfig.
  trains_as`, or every paired difference exactly 0) is marked ``identity``, and a row whose
  configuration trains identically to that of another row with the same reference is
  marked ``duplicate``; both stay out of the family. Each table states its family.
* :func:`power_table`: per metric, the spread of the paired differences and the seeds an
  equivalence test needs for 80 % power at the margin (:func:`~.stats.seeds_for_power`).

Files: ``paired.md`` (the tables), ``paired.csv`` (one row per comparison and metric),
``paired.png`` (the paired differences with their intervals, one panel per metric) and
``power.md`` / ``power.csv``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._tables import METRICS, csv_text, md_table, num, plt
from .stats import (
    DUPLICATE,
    HIGHER_IS_BETTER,
    IDENTITY,
    OUTSIDE,
    PairedResult,
    equivalence_margins,
    paired_comparison,
    paired_differences,
    seeds_for_power,
    with_holm,
)

__all__ = [
    "BASELINE_FAMILIES",
    "PAIRED_METRICS",
    "baseline_of",
    "check_baseline_family",
    "paired_figure",
    "paired_results",
    "paired_tables",
    "parse_compare",
    "power_table",
]

#: Which comparisons against the baseline form its Holm family
#: (:func:`paired_results`): every configuration's, or the amplified configurations' only.
BASELINE_FAMILIES = ("all", "amplified")
#: Metrics compared by seed in the report.
PAIRED_METRICS = ("cnr", "fwhm", "error_cnr", "psnr_body")
_KINDS = {
    "baseline": "vs the baseline",
    "control": "vs the scale-matched control",
    "pair": "for the chosen pairs",
}
_VERDICT_COLORS = {
    "better": "#2ca02c",
    "worse": "#d62728",
    "equivalent": "#1f77b4",
    "inconclusive": "0.45",
    IDENTITY: "0.7",
    DUPLICATE: "0.82",
    OUTSIDE: "0.6",
}
_UNITS = {"fwhm": " px", "psnr_body": " dB", "psnr": " dB", "psnr_target": " dB"}


def check_baseline_family(baseline_family: str) -> None:
    """Raise ValueError unless ``baseline_family`` is one of :data:`BASELINE_FAMILIES`."""
    if baseline_family not in BASELINE_FAMILIES:
        raise ValueError(
            f"the baseline's family is one of {', '.join(BASELINE_FAMILIES)}, "
            f"got {baseline_family!r}"
        )


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


def _trains_as(entry: dict) -> str:
    return entry.get("trains_as") or entry["name"]


def _common_seeds(summary: dict, a: str, b: str) -> int:
    return len(set(summary[a]["seeds"]) & set(summary[b]["seeds"]))


def _all_zero(summary: dict, a: str, b: str, metrics: Sequence[str]) -> bool:
    """Whether every paired difference of every metric with pairs is exactly 0."""
    diffs = [
        paired_differences(_by_seed(summary[a], m), _by_seed(summary[b], m))[1]
        for m in metrics
        if m in summary[a] and m in summary[b]
    ]
    diffs = [d for d in diffs if d.size]
    return bool(diffs) and all(not np.any(d != 0) for d in diffs)


def _exclusions(
    summary: dict, pairs: Sequence[tuple[str, str]], metrics: Sequence[str]
) -> dict[tuple[str, str], tuple[str, str]]:
    """The rows of one kind that are no comparison: ``{(a, b): (verdict, why)}``.

    ``identity``: ``a`` trains as ``b`` (:attr:`~napari_dfct.losses.LossConfig.trains_as`)
    or every paired difference is exactly 0. ``duplicate``: ``a`` trains as the
    configuration of another row with the same reference; of such a group the row whose
    configuration is the simplest form stays (else the one with the most pairs).
    """
    out: dict[tuple[str, str], tuple[str, str]] = {}
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for a, b in pairs:
        ta, tb = _trains_as(summary[a]), _trains_as(summary[b])
        if ta == tb:
            out[(a, b)] = (IDENTITY, f"identity: trains as {b}, the DC identity")
        elif _all_zero(summary, a, b, metrics):
            out[(a, b)] = (IDENTITY, "identity: every paired difference is exactly 0")
        else:
            groups.setdefault((ta, b), []).append((a, b))
    for (ta, _), rows in groups.items():
        if len(rows) < 2:
            continue
        keep = max(rows, key=lambda r: (r[0] == ta, _common_seeds(summary, *r)))
        for a, b in rows:
            if (a, b) != keep:
                out[(a, b)] = (DUPLICATE, f"duplicate: trains as {keep[0]}, a row of this table")
    return out


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
    margins: dict[str, float] | None = None,
    baseline_family: str = "all",
) -> list[dict]:
    """Every paired comparison of a grid summary (:func:`~.report.summarize`).

    ``compare`` adds chosen pairs ``(configuration, reference)`` (e.g. a directional
    weight against the isotropic one) as a third kind of table, ``"pair"``. ``margins``
    overrides equivalence margins (:func:`~.stats.equivalence_margins`).
    ``baseline_family`` (:data:`BASELINE_FAMILIES`): ``"all"``, every configuration's
    comparison with the baseline is in the baseline table's Holm family; ``"amplified"``,
    the scale-matched controls' rows (the values of ``controls``) stay outside it, shown
    with the verdict :data:`~.stats.OUTSIDE`, for a design whose questions are the
    amplified configurations only.

    Returns
    -------
    list of dict
        ``{"configuration", "reference", "kind" ("baseline", "control" or "pair"),
        "metric", "result": PairedResult, "excluded_why": str}``, by kind, then metric,
        then configuration (grid order); ``result.p_holm`` and ``result.p_tost_holm``
        are corrected over the family of the same kind and metric (the rows that are
        comparisons; ``excluded_why`` says why a row is not). Metrics that no run has
        (e.g. ``psnr_body`` without a body mask) are left out.

    Raises
    ------
    ValueError
        A configuration of ``compare`` without finished runs; an invalid margin or
        ``baseline_family``.
    """
    check_baseline_family(baseline_family)
    pairs = _pairs(summary, controls, compare)
    margin_of = equivalence_margins(margins)
    control_names = set((controls or {}).values())
    rows: list[dict] = []
    for kind in _KINDS:
        kind_pairs = [(a, b) for a, b, k in pairs if k == kind]
        excluded = _exclusions(summary, kind_pairs, metrics)
        if kind == "baseline" and baseline_family == "amplified":
            for a, b in kind_pairs:
                if a in control_names and (a, b) not in excluded:
                    excluded[(a, b)] = (
                        OUTSIDE,
                        (
                            "outside: a scale-matched control; the family holds the "
                            "amplified configurations (--baseline-family amplified)"
                        ),
                    )
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
                    margin=margin_of.get(m),
                    excluded=excluded.get((a, b), ("", ""))[0],
                )
                for a, b in kind_pairs
            ]
            for (a, b), r in zip(kind_pairs, with_holm(results)):
                rows.append(
                    {
                        "configuration": a,
                        "reference": b,
                        "kind": kind,
                        "metric": m,
                        "result": r,
                        "excluded_why": excluded.get((a, b), ("", ""))[1],
                    }
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


def _margin_text(metric: str, margin: float) -> str:
    if not math.isfinite(margin):
        return "none"
    return f"±{margin:g}{_UNITS.get(metric, '')}"


def _verdict_cell(res: PairedResult) -> str:
    """The verdict as the table shows it: decisions in bold, rows outside the family in
    italics; a "better"/"worse" that TOST also finds inside the margin, and an
    "equivalent" whose 90 % interval reaches past the margin, say so."""
    v = res.verdict
    if res.excluded:
        return f"*{v}*"
    if v == "inconclusive":
        return v
    text = f"**{v}**"
    if v in ("better", "worse") and res.p_tost_holm < res.alpha:
        text += f" (within ±{res.margin:g})"
    if v == "equivalent" and not res.interval_within_margin:
        text += f" (90 % CI past ±{res.margin:g})"
    return text


def _family_line(table_rows: list[dict]) -> str:
    members = [r["configuration"] for r in table_rows if not r["result"].excluded]
    res = table_rows[0]["result"]
    line = (
        f"Equivalence margin {_margin_text(table_rows[0]['metric'], res.margin)}. "
        f"Holm family (m = {len(members)}): {', '.join(members) or 'none'}."
    )
    out = [f"{r['configuration']} ({r['excluded_why']})" for r in table_rows if r["excluded_why"]]
    if out:
        line += " Outside it: " + "; ".join(out) + "."
    return line + "\n"


def _table_md(table_rows: list[dict], label: str) -> str:
    table = []
    for r in table_rows:
        res: PairedResult = r["result"]
        table.append(
            [
                r["configuration"],
                r["reference"],
                str(res.n),
                _fmt_diff(res.median),
                f"[{_fmt_diff(res.ci_low)}, {_fmt_diff(res.ci_high)}]",
                _p(res.p),
                _p(res.p_holm),
                _p(res.p_tost_holm),
                _verdict_cell(res),
            ]
        )
    conf = table_rows[0]["result"].confidence
    header = [
        "configuration",
        "compared with",
        "n seeds",
        f"median Δ {label}",
        f"{conf:.0%} CI",
        "p (Wilcoxon)",
        "p (Holm)",
        "p TOST (Holm)",
        "verdict",
    ]
    return md_table(header, table) + "\n" + _family_line(table_rows)


_CSV_HEADER = [
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
    "margin",
    "p_tost",
    "p_tost_holm",
    "ci90_low",
    "ci90_high",
    "family_size",
    "excluded_why",
]


def paired_tables(rows: list[dict]) -> dict:
    """Markdown (one table per kind and metric, each with its margin and Holm family) and
    CSV (one line per row) of :func:`paired_results`: ``{"markdown": str, "csv": str}``."""
    md_parts, lines = [], []
    for kind, title in _KINDS.items():
        for m in dict.fromkeys(r["metric"] for r in rows if r["kind"] == kind):
            label = METRICS.get(m, (m,))[0]
            good = "higher" if HIGHER_IS_BETTER.get(m, True) else "lower"
            table_rows = [r for r in rows if r["kind"] == kind and r["metric"] == m]
            md_parts.append(
                f"### {label} {title} ({good} is better)\n\n" + _table_md(table_rows, label)
            )
            family = sum(not r["result"].excluded for r in table_rows)
            for r in table_rows:
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
                        res.margin,
                        res.p_tost,
                        res.p_tost_holm,
                        res.eq_low,
                        res.eq_high,
                        family,
                        r.get("excluded_why", ""),
                    ]
                )
    return {"markdown": "\n".join(md_parts), "csv": csv_text(_CSV_HEADER, lines)}


def power_table(rows: list[dict], power: float = 0.8, n_max: int = 1000) -> dict:
    """Per metric, the spread of the paired differences and the seeds TOST needs.

    The spread is the pooled standard deviation of the per-seed differences over the rows
    of the metric's families (``sqrt(sum (n_i - 1) s_i^2 / sum (n_i - 1))``, rows with at
    least two pairs). With it, :func:`~.stats.seeds_for_power` gives the smallest number of
    seeds for ``power`` at the margin when the true difference is 0: the Wilcoxon TOST by
    simulation at ``alpha`` (one comparison) and at ``alpha / m`` (Holm over the largest
    family ``m`` of the metric: its first step), and the t-approximation at ``alpha``.

    Returns
    -------
    dict
        ``{"markdown": str, "csv": str, "rows": [dict per metric]}``.
    """
    out = []
    for m in dict.fromkeys(r["metric"] for r in rows):
        mrows = [r for r in rows if r["metric"] == m and not r["result"].excluded]
        res0 = next((r["result"] for r in rows if r["metric"] == m), None)
        sds = [
            (r["result"].n, float(np.std(r["result"].differences, ddof=1)))
            for r in mrows
            if r["result"].n >= 2
        ]
        dof = sum(n - 1 for n, _ in sds)
        sd = math.sqrt(sum((n - 1) * v**2 for n, v in sds) / dof) if dof else float("nan")
        families = [
            sum(1 for r in mrows if r["kind"] == k)
            for k in dict.fromkeys(r["kind"] for r in mrows)
        ]
        m_size = max(families, default=1)
        assert res0 is not None  # the family holds this metric
        alpha, margin = res0.alpha, res0.margin
        need = need_holm = need_t = None
        if math.isfinite(sd) and math.isfinite(margin):
            need = seeds_for_power(sd, margin, power, alpha, n_max=n_max)
            need_holm = seeds_for_power(sd, margin, power, alpha / m_size, n_max=n_max)
            need_t = seeds_for_power(sd, margin, power, alpha, method="t", n_max=n_max)
        out.append(
            {
                "metric": m,
                "margin": margin,
                "n_rows": len(sds),
                "sd_pooled": sd,
                "sd_min": min((v for _, v in sds), default=float("nan")),
                "sd_max": max((v for _, v in sds), default=float("nan")),
                "n_seeds": max((r["result"].n for r in mrows), default=0),
                "family_size": m_size,
                "alpha": alpha,
                "power": power,
                "seeds_needed": need,
                "seeds_needed_holm": need_holm,
                "seeds_needed_t": need_t,
            }
        )

    def seeds(v):
        return f"> {n_max}" if v is None else str(v)

    md_rows = []
    for o in out:
        have = math.isfinite(o["sd_pooled"]) and math.isfinite(o["margin"])
        md_rows.append(
            [
                METRICS.get(o["metric"], (o["metric"],))[0],
                _margin_text(o["metric"], o["margin"]),
                str(o["n_rows"]),
                num(o["sd_pooled"], ".3g"),
                f"{num(o['sd_min'], '.3g')}–{num(o['sd_max'], '.3g')}",
                str(o["n_seeds"]),
                seeds(o["seeds_needed"]) if have else "n/a",
                seeds(o["seeds_needed_holm"]) if have else "n/a",
                seeds(o["seeds_needed_t"]) if have else "n/a",
            ]
        )
    header = [
        "metric",
        "margin",
        "rows",
        "SD of Δ (pooled)",
        "SD range",
        "seeds run",
        f"seeds for {power:.0%} power",
        "with Holm (α/m)",
        "t-approx.",
    ]
    keys = list(out[0]) if out else ["metric"]
    csv_rows = [[o[k] if o[k] is not None else "" for k in keys] for o in out]
    return {"markdown": md_table(header, md_rows), "csv": csv_text(keys, csv_rows), "rows": out}


def paired_figure(rows: list[dict], path: str | os.PathLike, title: str | None = None) -> Path:
    """The paired differences with their intervals, one panel per metric.

    Each comparison is one line: the per-seed differences (dots), their median (marker,
    coloured by the verdict) and the bootstrap interval (bar); zero and the equivalence
    margin (shaded band) are marked. The x axis says which direction is good.
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
        margin = next(r["result"].margin for r in rows if r["metric"] == m)
        if math.isfinite(margin):
            ax.axvspan(-margin, margin, color="#1f77b4", alpha=0.08, lw=0, zorder=1)
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

    present = {r["result"].verdict for r in rows}
    handles = [
        Line2D([], [], color=c, marker="o", lw=2, label=v)
        for v, c in _VERDICT_COLORS.items()
        if v in present
    ]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=7, frameon=False)
    fig.suptitle(
        title
        or "Paired differences by seed: median and 95 % bootstrap interval; shaded: the "
        "equivalence margin",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path)
    pyplot.close(fig)
    return Path(path)


def _row_label(r: dict) -> str:
    return f"{r['configuration']} − {r['reference']}"
