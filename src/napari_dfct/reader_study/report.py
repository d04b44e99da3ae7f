"""The report of a reader study: scores, tests, agreement, consistency, metrics.

What the numbers are (docs/reader-study.md explains them for readers of a paper):

**Bradley-Terry score** (per candidate): the log-strength ``s`` of the model
``P(a preferred to b) = 1 / (1 + exp(-(s_a - s_b)))``, fitted by maximum likelihood with
``choix.ilsr_pairwise_dense`` on the matrix of wins, to which :data:`BT_PRIOR` virtual wins
are added in each direction of every pair (a virtual tie: it keeps the scores finite when a
candidate won or lost every comparison, and pulls scores of candidates compared rarely
towards each other). Scores are centred to mean 0; rank 1 is the highest score.

**Bootstrap interval**: the 2.5th and 97.5th percentiles of the score over ``n_boot``
resamplings that draw the readers with replacement and, independently, the trials with
replacement (every judgment of a drawn reader on a drawn trial counts once per draw of
each), so the interval holds the variation between readers and between images.

**Pairwise win rates**: for every pair, the share of judgments preferring the first, with
an exact two-sided binomial (sign) test against 1/2 and Holm's correction over the pairs;
pooled over readers (which treats every judgment as independent: read the bootstrap
intervals for the between-reader variation) and per reader.

**Krippendorff's alpha** (nominal): coders are the readers, units are the trials, the value
is the side chosen (``left`` or ``right``). Within a trial every reader saw the same sides,
so agreeing on the side is agreeing on the candidate; the sides were randomised, so the
chance model (values drawn from all answers pooled) is the coin of a reader who cannot
tell the images apart. 1 is perfect agreement, 0 agreement at chance level.

**Kendall's W**: the agreement of the readers' rankings (each reader's own Bradley-Terry
scores, ranked with ties averaged), with the correction for ties; 1 when every reader
ranks the candidates the same way, 0 for no common trend.

**Consistency**: for each reader, the share of repeated trials (shown again with the sides
swapped) on which the same candidate was preferred both times.

**Metrics** (with a truth): the error CNR, the PSNR in the body and the CNR of every
candidate (:mod:`napari_dfct.metrics`, on the study's slices with the ROIs of the truth's
``meta.json`` and its body mask, averaged over the slices), and Spearman's rank
correlation between them and the Bradley-Terry scores over the candidates.

This module imports neither Qt nor napari; the statistics need the ``reader`` extra.
"""

from __future__ import annotations

import importlib
import math
import os
import warnings
from itertools import combinations
from typing import Any

import numpy as np

from .judgments import latest, read_judgments
from .study import Study

__all__ = [
    "BT_PRIOR",
    "METRICS",
    "bt_scores",
    "format_report",
    "holm",
    "kendall_w",
    "krippendorff_alpha",
    "report",
]

#: Virtual wins added in each direction of every pair before the Bradley-Terry fit.
BT_PRIOR = 0.5
#: The objective metrics correlated with the readers' scores, as reported.
METRICS = ("error_cnr", "psnr_body", "cnr")
_INSTALL = 'pip install "napari-dfct[reader]"'


def _require(module: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"the reader study's statistics need the {module} package: {_INSTALL}"
        ) from None


# --------------------------------------------------------------------------------------
# the statistics, each checked against an independent computation in the tests
# --------------------------------------------------------------------------------------
def bt_scores(wins: np.ndarray, prior: float = BT_PRIOR) -> np.ndarray:
    """Bradley-Terry log-strengths (mean 0) from ``wins[i, j]`` = times i beat j, with
    ``prior`` virtual wins added in both directions of every pair."""
    choix = _require("choix")
    wins = np.asarray(wins, dtype=float)
    n = wins.shape[0]
    mat = wins + prior * (1.0 - np.eye(n))
    params = choix.ilsr_pairwise_dense(mat, alpha=0.0, max_iter=1000, tol=1e-10)
    return np.asarray(params) - np.mean(params)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def kendall_w(ranks: np.ndarray) -> float:
    """Kendall's W of ``ranks`` (readers x candidates, ties as average ranks) with the
    tie correction: ``12 S / (m^2 (n^3 - n) - m sum T)``, ``T = sum (t^3 - t)`` over each
    reader's groups of ties. NaN for fewer than 2 readers or when every reader ties all."""
    ranks = np.asarray(ranks, dtype=float)
    m, n = ranks.shape
    if m < 2 or n < 2:
        return math.nan
    totals = ranks.sum(axis=0)
    s = float(np.sum((totals - totals.mean()) ** 2))
    ties = 0.0
    for row in ranks:
        _, counts = np.unique(row, return_counts=True)
        ties += float(np.sum(counts**3 - counts))
    denominator = m**2 * (n**3 - n) - m * ties
    return 12.0 * s / denominator if denominator > 0 else math.nan


def krippendorff_alpha(data: np.ndarray) -> float:
    """Nominal Krippendorff's alpha of ``data`` (coders x units, NaN where missing) with
    the ``krippendorff`` package; NaN when undefined (fewer than two pairable values, or a
    single value throughout)."""
    kd = _require("krippendorff")
    data = np.asarray(data, dtype=float)
    pairable = np.sum(np.sum(np.isfinite(data), axis=0) >= 2)
    if data.shape[0] < 2 or pairable == 0:
        return math.nan
    try:
        return float(kd.alpha(reliability_data=data, level_of_measurement="nominal"))
    except (ValueError, ZeroDivisionError):
        return math.nan


def _ranks(scores: np.ndarray) -> np.ndarray:
    """Rank 1 = highest score, ties averaged (scores equal to 1e-9)."""
    from scipy.stats import rankdata

    return rankdata(-np.round(scores, 9), method="average")


# --------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------
class _Data:
    """The judgments as index arrays: one entry per (reader, trial)'s last answer."""

    def __init__(self, study: Study, rows: list[dict]) -> None:
        self.study = study
        self.names = list(study.candidates)
        idx = {n: i for i, n in enumerate(self.names)}
        kept, skipped = [], 0
        for r in rows:
            t = study.trials[r["trial"]] if 0 <= r["trial"] < len(study.trials) else None
            if t is None or (t.slice, t.left, t.right) != (r["slice"], r["left"], r["right"]):
                skipped += 1
                continue
            kept.append(r)
        kept = latest(kept)
        if skipped:
            warnings.warn(
                f"skipped {skipped} judgment(s) that match no trial of the study", stacklevel=3
            )
        self.skipped = skipped
        self.readers = sorted({r["reader"] for r in kept})
        rid = {n: i for i, n in enumerate(self.readers)}
        self.reader = np.array([rid[r["reader"]] for r in kept], dtype=int)
        self.trial = np.array([r["trial"] for r in kept], dtype=int)
        self.right = np.array([r["choice"] == "right" for r in kept], dtype=bool)
        left = np.array([idx[r["left"]] for r in kept], dtype=int)
        right = np.array([idx[r["right"]] for r in kept], dtype=int)
        self.winner = np.where(self.right, right, left)
        self.loser = np.where(self.right, left, right)

    def __len__(self) -> int:
        return len(self.trial)

    def wins(self, weights: np.ndarray | None = None) -> np.ndarray:
        n = len(self.names)
        mat = np.zeros((n, n))
        w = np.ones(len(self)) if weights is None else weights
        np.add.at(mat, (self.winner, self.loser), w)
        return mat

    def subset(self, mask: np.ndarray) -> np.ndarray:
        return self.wins(mask.astype(float))


def report(
    study_dir: str | os.PathLike,
    reference: str | os.PathLike | np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """The study's report as a JSON-friendly dict (the module docstring says what each
    number is).

    Keys: ``candidates`` (name -> ``score``, ``ci``, ``rank``, ``wins``, ``comparisons``),
    ``pairs`` (pooled pairwise tests), ``per_reader`` (reader -> ``judgments``,
    ``scores``, ``ranks``, ``pairs``, ``consistency``), ``agreement``
    (``krippendorff_alpha``, ``kendall_w``), ``consistency`` (pooled), ``metrics`` (None
    without a truth), ``readers``, ``judgments``, ``skipped``, ``method``.

    Raises
    ------
    ValueError
        Not a study, or no judgments yet.
    ImportError
        choix or krippendorff missing (the message says how to install them).
    """
    study = Study.open(study_dir)
    data = _Data(study, read_judgments(study.dir))
    if not len(data):
        raise ValueError(f"{study.dir} has no judgments yet")
    names = data.names
    scores = bt_scores(data.wins())
    ci = _bootstrap(data, int(n_boot), int(seed))
    ranks = _ranks(scores)
    wins = data.wins()
    candidates = {
        n: {
            "score": float(scores[i]),
            "ci": [float(ci[0, i]), float(ci[1, i])],
            "rank": float(ranks[i]) if ranks[i] % 1 else int(ranks[i]),
            "wins": int(wins[i].sum()),
            "comparisons": int(wins[i].sum() + wins[:, i].sum()),
        }
        for i, n in enumerate(names)
    }
    per_reader, reader_ranks = {}, []
    for k, name in enumerate(data.readers):
        mine = data.reader == k
        w = data.subset(mine)
        s = bt_scores(w)
        reader_ranks.append(_ranks(s))
        per_reader[name] = {
            "judgments": int(mine.sum()),
            "scores": {n: float(s[i]) for i, n in enumerate(names)},
            "ranks": {n: float(reader_ranks[-1][i]) for i, n in enumerate(names)},
            "pairs": _pairs(w, names),
            "consistency": _consistency(study, data, mine),
        }
    agreement = {
        "krippendorff_alpha": _nan_none(krippendorff_alpha(_choices_by_reader(data))),
        "kendall_w": _nan_none(kendall_w(np.array(reader_ranks))),
        "units": "trials (coders: readers; value: the side chosen)",
    }
    result = {
        "study": str(study.dir),
        "question": study.question,
        "candidates": candidates,
        "pairs": _pairs(wins, names),
        "per_reader": per_reader,
        "agreement": agreement,
        "consistency": _consistency(study, data, np.ones(len(data), dtype=bool)),
        "metrics": _metrics(study, reference, scores),
        "readers": len(data.readers),
        "judgments": len(data),
        "skipped": data.skipped,
        "method": {"bt_prior": BT_PRIOR, "n_boot": int(n_boot), "seed": int(seed), "ci": 0.95},
    }
    return result


def _nan_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _bootstrap(data: _Data, n_boot: int, seed: int) -> np.ndarray:
    """(2, n) percentile interval of the scores: readers and trials drawn with replacement."""
    n = len(data.names)
    if n_boot < 1:
        return np.full((2, n), np.nan)
    rng = np.random.default_rng(seed)
    trials = np.unique(data.trial)
    slot = np.searchsorted(trials, data.trial)
    n_read = len(data.readers)
    draws = np.empty((n_boot, n))
    for b in range(n_boot):
        rw = np.bincount(rng.integers(n_read, size=n_read), minlength=n_read)
        tw = np.bincount(rng.integers(len(trials), size=len(trials)), minlength=len(trials))
        draws[b] = bt_scores(data.wins((rw[data.reader] * tw[slot]).astype(float)))
    return np.percentile(draws, [2.5, 97.5], axis=0)


def _pairs(wins: np.ndarray, names: list[str]) -> list[dict]:
    """Pairwise win rates with exact two-sided sign tests and Holm's correction."""
    from scipy.stats import binomtest

    out: list[dict[str, Any]] = []
    for i, j in combinations(range(len(names)), 2):
        a, n = int(wins[i, j]), int(wins[i, j] + wins[j, i])
        out.append(
            {
                "a": names[i],
                "b": names[j],
                "n": n,
                "wins_a": a,
                "win_rate_a": a / n if n else None,
                "p": float(binomtest(a, n, 0.5).pvalue) if n else None,
            }
        )
    tested = [k for k, row in enumerate(out) if row["p"] is not None]
    adjusted = holm([out[k]["p"] for k in tested]) if tested else []
    for row in out:
        row["p_holm"] = None
    for k, p in zip(tested, adjusted):
        out[k]["p_holm"] = p
    return out


def _consistency(study: Study, data: _Data, mask: np.ndarray) -> dict:
    """Repeated trials answered both times: how many, and how often with the same winner."""
    rows = zip(data.reader[mask], data.trial[mask], data.winner[mask])
    winner = {(int(r), int(t)): int(w) for r, t, w in rows}
    n = same = 0
    for (r, t), w in winner.items():
        first = study.trials[t].repeat_of
        if first is not None and (r, first) in winner:
            n += 1
            same += winner[(r, first)] == w
    return {"repeats": n, "consistent": same, "rate": same / n if n else None}


def _choices_by_reader(data: _Data) -> np.ndarray:
    """Readers x trials: 0 for left, 1 for right, NaN when not answered."""
    out = np.full((len(data.readers), len(data.study.trials)), np.nan)
    out[data.reader, data.trial] = data.right.astype(float)
    return out


def _metrics(study: Study, reference: Any, scores: np.ndarray) -> dict | None:
    """Objective metrics of every candidate against the truth, and their Spearman
    correlation with the scores; None without a truth."""
    if reference is None and not study.has_reference:
        return None
    from scipy.stats import spearmanr

    from .. import metrics
    from .study import reference_slices

    if reference is not None:
        ref = reference_slices(reference, tuple(study.meta["shape"]), study.slices)
        truth = dict(zip(study.slices, ref["stack"]))
        body = dict(zip(study.slices, ref["body"])) if ref["body"] is not None else {}
        rois = dict(zip(study.slices, ref["rois"] or [None] * len(study.slices)))
    else:
        truth = {s: study.reference(s) for s in study.slices}
        body = {s: study.body(s) for s in study.slices if study.body(s) is not None}
        rois = {s: study.rois(s) for s in study.slices}
    values: dict[str, dict[str, float | None]] = {}
    for name in study.candidates:
        per: dict[str, list[float]] = {m: [] for m in METRICS}
        for s in study.slices:
            img, ref2d, roi = study.image(name, s), truth[s], rois.get(s)
            if roi is not None:
                args = (roi["signal_center"], roi["background_center"], roi["roi_size"])
                per["cnr"].append(metrics.cnr(img, *args).cnr)
                per["error_cnr"].append(metrics.error_cnr(img, ref2d, *args).error_cnr)
            if s in body:
                per["psnr_body"].append(metrics.psnr_body(img, ref2d, np.asarray(body[s]) != 0))
        values[name] = {m: (float(np.mean(v)) if v else None) for m, v in per.items()}
    spearman: dict[str, dict[str, float | None]] = {}
    for m in METRICS:
        column = [values[n][m] for n in study.candidates]
        if any(v is None or math.isnan(v) for v in column) or len(set(column)) < 2:
            spearman[m] = {"rho": None, "p": None}
            continue
        res = spearmanr(scores, column)
        spearman[m] = {"rho": _nan_none(res.statistic), "p": _nan_none(res.pvalue)}
    return {
        "reference": str(reference) if reference is not None else "stored in the study",
        "values": values,
        "spearman": spearman,
    }


# --------------------------------------------------------------------------------------
# the text report
# --------------------------------------------------------------------------------------
def _f(x: Any, fmt: str = ".3f") -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float) and not math.isfinite(x):
        return "inf" if x > 0 else ("-inf" if x < 0 else "n/a")
    return format(x, fmt)


def format_report(result: dict) -> str:
    """The plain-text report of :func:`report`'s result (what ``dfct reader-study report``
    prints and the widget's *Report* button shows)."""
    cands = result["candidates"]
    order = sorted(cands, key=lambda n: (cands[n]["rank"], n))
    width = max(9, *(len(n) for n in cands))
    lines = [
        f"Reader study {result['study']}",
        f"{result['readers']} reader(s), {result['judgments']} judgment(s)"
        + (f", {result['skipped']} skipped" if result.get("skipped") else ""),
        "",
        (
            "Bradley-Terry scores (log-strength, mean 0; 95% bootstrap interval over readers "
            "and trials)"
        ),
        f"  {'rank':>4}  {'candidate':<{width}}  {'score':>7}  {'95% interval':<19}  wins",
    ]
    for n in order:
        c = cands[n]
        lo, hi = c["ci"]
        lines.append(
            f"  {c['rank']:>4}  {n:<{width}}  {_f(c['score'], '+.3f'):>7}  "
            f"[{_f(lo, '+.3f')}, {_f(hi, '+.3f')}]  {c['wins']}/{c['comparisons']}"
        )
    lines += ["", "Pairwise (pooled): share preferring A, exact sign test, Holm-corrected"]
    lines += _pair_lines(result["pairs"])
    a = result["agreement"]
    lines += [
        "",
        (
            f"Agreement: Krippendorff's alpha {_f(a['krippendorff_alpha'])} (trials, nominal); "
            f"Kendall's W {_f(a['kendall_w'])} (readers' rankings)"
        ),
        "Consistency on repeated trials (same candidate preferred both times):",
    ]
    for name, r in result["per_reader"].items():
        c = r["consistency"]
        rate = (
            f"{c['consistent']}/{c['repeats']} ({_f(c['rate'], '.0%')})"
            if c["repeats"]
            else "no repeats answered"
        )
        top = sorted(r["ranks"], key=lambda n: r["ranks"][n])
        lines.append(f"  {name}: {rate}; {r['judgments']} judgments; ranking {' > '.join(top)}")
    m = result.get("metrics")
    if m:
        lines += ["", f"Objective metrics (mean over the study's slices; truth {m['reference']})"]
        lines.append(f"  {'candidate':<{width}}  " + "  ".join(f"{k:>10}" for k in METRICS))
        for n in order:
            v = m["values"][n]
            lines.append(f"  {n:<{width}}  " + "  ".join(f"{_f(v[k]):>10}" for k in METRICS))
        rho = ", ".join(f"{k} {_f(m['spearman'][k]['rho'], '+.2f')}" for k in METRICS)
        lines.append(f"  Spearman rho with the readers' scores: {rho}")
    return "\n".join(lines)


def _pair_lines(pairs: list[dict]) -> list[str]:
    out = []
    for p in pairs:
        if not p["n"]:
            out.append(f"  {p['a']} vs {p['b']}: not compared")
            continue
        out.append(
            f"  {p['a']} vs {p['b']}: {p['wins_a']}/{p['n']} ({_f(p['win_rate_a'], '.0%')}), "
            f"p {_f(p['p'], '.3g')}, Holm {_f(p['p_holm'], '.3g')}"
        )
    return out
