"""Paired statistics for comparing loss configurations seed by seed.

Runs of a grid with the same seed share the train/validation split, the initial weights
and the sequence of patches: a configuration and its baseline trained with seed ``k``
differ only by the loss. So they are compared **paired by seed**: the differences
``d_k = value(configuration, k) - value(baseline, k)`` over the seeds both have (with a
finite value) carry the comparison, and the seed-to-seed spread common to both cancels.

For each comparison:

* the **median difference** and its **95 % bootstrap confidence interval** (percentile
  interval of the median over ``n_boot`` resamples of the ``d_k`` with replacement, from a
  seeded generator, so a report is reproducible);
* a **Wilcoxon signed-rank test** of "the differences are symmetric around 0"
  (:func:`scipy.stats.wilcoxon`, two-sided; zero differences are dropped, ``"wilcox"``;
  scipy uses the exact null distribution for small samples);
* the p-values of all comparisons of one table and one metric are corrected for multiple
  comparisons by **Holm**'s step-down method (:func:`holm`);
* a **verdict**: ``"better"`` when the interval excludes zero on the good side of the
  metric **and** the Holm-corrected p is below 0.05, ``"worse"`` for the other side, else
  ``"no evidence"``. Which side is good is a property of the metric
  (:data:`HIGHER_IS_BETTER`: higher CNR, error CNR, PSNR, SSIM; lower FWHM, RMSE).

With ``n`` non-zero differences the smallest two-sided exact Wilcoxon p-value is
``2 / 2**n``: 0.0625 for 5 seeds, 0.031 for 6. Five seeds or fewer can therefore never give
a verdict other than "no evidence" (and with Holm over m comparisons even more seeds are
needed); that is a property of the data, not of the code.

This module is pure NumPy/SciPy and reads no files.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

__all__ = [
    "HIGHER_IS_BETTER",
    "VERDICTS",
    "PairedResult",
    "bootstrap_median_ci",
    "holm",
    "paired_comparison",
    "paired_differences",
    "verdict",
    "wilcoxon_test",
    "with_holm",
]

#: Whether a higher value is better, per metric key of ``metrics.json``.
HIGHER_IS_BETTER = {
    "cnr": True,
    "error_cnr": True,
    "psnr": True,
    "ssim": True,
    "psnr_body": True,
    "ssim_body": True,
    "psnr_target": True,
    "ssim_target": True,
    "fwhm": False,
    "rmse_body": False,
}
#: The three verdicts.
VERDICTS = ("better", "worse", "no evidence")

_NAN = float("nan")


@dataclass(frozen=True)
class PairedResult:
    """One paired comparison, ``a - b`` by seed.

    Attributes
    ----------
    seeds : tuple of int
        The seeds with a finite value in both ``a`` and ``b`` (sorted).
    differences : tuple of float
        ``a[seed] - b[seed]`` for those seeds.
    median : float
        Median of the differences (NaN without pairs).
    ci_low, ci_high : float
        Bootstrap percentile interval of the median at ``confidence``.
    statistic, p : float
        Wilcoxon signed-rank statistic (the smaller rank sum) and two-sided p-value;
        p is 1 when every difference is zero, NaN without pairs.
    p_holm : float
        ``p`` after Holm's correction over the comparisons it was corrected with
        (:func:`with_holm`); equal to ``p`` for a lone comparison.
    verdict : str
        One of :data:`VERDICTS`, from the interval and ``p_holm`` (:func:`verdict`).
    higher_is_better : bool
        The metric's good direction.
    confidence : float
        Level of the interval.
    alpha : float
        Significance level of the verdict.
    """

    seeds: tuple[int, ...]
    differences: tuple[float, ...]
    median: float
    ci_low: float
    ci_high: float
    statistic: float
    p: float
    p_holm: float
    verdict: str
    higher_is_better: bool = True
    confidence: float = 0.95
    alpha: float = 0.05

    @property
    def n(self) -> int:
        """Number of pairs."""
        return len(self.seeds)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (NaN stays NaN; :func:`napari_dfct._files.json_safe` for JSON)."""
        return {
            "n": self.n,
            "seeds": list(self.seeds),
            "differences": list(self.differences),
            "median": self.median,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "statistic": self.statistic,
            "p": self.p,
            "p_holm": self.p_holm,
            "verdict": self.verdict,
            "good": "higher" if self.higher_is_better else "lower",
            "confidence": self.confidence,
            "alpha": self.alpha,
        }


# --------------------------------------------------------------------------- pieces
def _finite(value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return _NAN
    return v if math.isfinite(v) else _NAN


def paired_differences(
    values_by_seed_a: Mapping[int, Any], values_by_seed_b: Mapping[int, Any]
) -> tuple[list[int], np.ndarray]:
    """Seeds present in both mappings with finite values, and ``a - b`` for each.

    Values may be None, NaN or infinite (then the seed is left out: a run whose metric is
    undefined gives no pair).
    """
    seeds, diffs = [], []
    for s in sorted(set(values_by_seed_a) & set(values_by_seed_b), key=int):
        a, b = _finite(values_by_seed_a[s]), _finite(values_by_seed_b[s])
        if math.isfinite(a) and math.isfinite(b):
            seeds.append(int(s))
            diffs.append(a - b)
    return seeds, np.asarray(diffs, dtype=np.float64)


def bootstrap_median_ci(
    differences: Sequence[float] | np.ndarray,
    confidence: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of ``differences``.

    ``n_boot`` resamples of size ``n`` with replacement from
    ``numpy.random.default_rng(seed)``; the interval is the ``(1 - confidence) / 2`` and
    ``(1 + confidence) / 2`` quantiles of their medians. A constant sample gives that
    constant twice; an empty one ``(nan, nan)``.
    """
    d = np.asarray(differences, dtype=np.float64)
    if d.size == 0:
        return _NAN, _NAN
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(int(n_boot), d.size))
    medians = np.median(d[idx], axis=1)
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(medians, [tail, 1.0 - tail])
    return float(lo), float(hi)


def wilcoxon_test(differences: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Wilcoxon signed-rank test of paired differences: ``(statistic, p)``, two-sided.

    :func:`scipy.stats.wilcoxon` with zero differences dropped (``"wilcox"``); the exact
    null distribution for small samples. Every difference zero: ``(0, 1)`` (no evidence
    of any difference); no differences: ``(nan, nan)``.
    """
    from scipy.stats import wilcoxon

    d = np.asarray(differences, dtype=np.float64)
    if d.size == 0:
        return _NAN, _NAN
    if not np.any(d != 0):
        return 0.0, 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = wilcoxon(d, zero_method="wilcox", alternative="two-sided")
    return float(res.statistic), float(res.pvalue)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down correction of ``pvalues`` for multiple comparisons.

    With the ``m`` finite p-values sorted, ``p_(1) <= ... <= p_(m)``, the adjusted values
    are ``max_{j <= i} min(1, (m - j + 1) p_(j))``, returned in the input order. NaN
    entries stay NaN and do not count in ``m``. Rejecting where the adjusted p is below
    alpha controls the family-wise error rate at alpha.
    """
    p = np.asarray(pvalues, dtype=np.float64).reshape(-1)
    out = np.full(p.shape, _NAN)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def verdict(
    ci_low: float,
    ci_high: float,
    p_adjusted: float,
    higher_is_better: bool = True,
    alpha: float = 0.05,
) -> str:
    """``"better"``, ``"worse"`` or ``"no evidence"``.

    ``"better"``: the interval lies entirely on the good side of zero (above it when
    higher is better, below it when lower is better) **and** ``p_adjusted < alpha``;
    ``"worse"``: the interval lies entirely on the other side and ``p_adjusted < alpha``;
    otherwise (the interval covers zero, the test is not significant, or a value is
    NaN) ``"no evidence"``.
    """
    if not (math.isfinite(ci_low) and math.isfinite(ci_high) and math.isfinite(p_adjusted)):
        return "no evidence"
    if p_adjusted >= alpha:
        return "no evidence"
    above, below = ci_low > 0, ci_high < 0
    if above or below:
        return "better" if above == bool(higher_is_better) else "worse"
    return "no evidence"


# --------------------------------------------------------------------------- comparisons
def paired_comparison(
    values_by_seed_a: Mapping[int, Any],
    values_by_seed_b: Mapping[int, Any],
    *,
    higher_is_better: bool = True,
    confidence: float = 0.95,
    n_boot: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
) -> PairedResult:
    """Compare ``a`` with ``b`` paired by seed: median of ``a - b``, bootstrap interval,
    Wilcoxon p-value and verdict.

    Parameters
    ----------
    values_by_seed_a, values_by_seed_b : mapping of seed to value
        One value per seed (e.g. the run's median CNR over the test slices); seeds in only
        one mapping or with a non-finite value are left out.
    higher_is_better : bool
        The metric's good direction (:data:`HIGHER_IS_BETTER`).
    confidence, n_boot, seed
        The bootstrap interval (:func:`bootstrap_median_ci`).
    alpha : float
        Significance level of the verdict.

    Returns
    -------
    PairedResult
        With ``p_holm = p`` (one comparison); :func:`with_holm` corrects a table of them.
    """
    seeds, d = paired_differences(values_by_seed_a, values_by_seed_b)
    median = float(np.median(d)) if d.size else _NAN
    lo, hi = bootstrap_median_ci(d, confidence, n_boot, seed)
    stat, p = wilcoxon_test(d)
    return PairedResult(
        tuple(seeds),
        tuple(float(x) for x in d),
        median,
        lo,
        hi,
        stat,
        p,
        p,
        verdict(lo, hi, p, higher_is_better, alpha),
        bool(higher_is_better),
        float(confidence),
        float(alpha),
    )


def with_holm(results: Sequence[PairedResult]) -> list[PairedResult]:
    """The results with Holm-corrected p-values over all of them and verdicts from those.

    Use one call per family of tests: the comparisons of one table for one metric.
    """
    adjusted = holm([r.p for r in results])
    return [
        replace(
            r,
            p_holm=float(q),
            verdict=verdict(r.ci_low, r.ci_high, float(q), r.higher_is_better, r.alpha),
        )
        for r, q in zip(results, adjusted)
    ]
