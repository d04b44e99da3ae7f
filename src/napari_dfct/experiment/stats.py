"""Paired statistics for comparing loss configurations seed by seed.

Runs of a grid with the same seed share the train/validation split, the initial weights
and the sequence of patches: a configuration and its baseline trained with seed ``k``
differ only by the loss. So they are compared **paired by seed**: the differences
``d_k = value(configuration, k) - value(baseline, k)`` over the seeds both have (with a
finite value) carry the comparison, and the seed-to-seed spread common to both cancels.

For each comparison:

* the **median difference** and its **95 % bootstrap confidence interval** (percentile
  interval of the median over ``n_boot`` resamples of the ``d_k`` with replacement, from a
  seeded generator, so a report is reproducible), and from the same resamples the **90 %**
  interval (``1 - 2 alpha``), the interval form of the equivalence test;
* a **Wilcoxon signed-rank test** of "the differences are symmetric around 0"
  (:func:`scipy.stats.wilcoxon`, two-sided; zero differences are dropped, ``"wilcox"``;
  scipy uses the exact null distribution for small samples): the superiority test;
* an **equivalence test** against the metric's declared margin ``delta``
  (:data:`EQUIVALENCE_MARGINS`): two one-sided Wilcoxon tests (TOST, :func:`tost_test`),
  ``d + delta > 0`` and ``d - delta < 0``; ``p_tost`` is the larger of their p-values;
* the p-values of the comparisons of one table and one metric (the **Holm family**) are
  corrected by **Holm**'s step-down method (:func:`holm`), the superiority p-values and
  the TOST p-values each as a family of their own. Rows that are no comparison (a
  configuration against one that trains identically, every difference exactly 0) are
  left out of the family and marked :data:`IDENTITY` (:func:`with_holm`);
* a **verdict** (:func:`verdict`): ``"better"`` / ``"worse"`` when the 95 % interval
  excludes zero on the good (bad) side of the metric **and** the Holm-corrected
  superiority p is below 0.05; else ``"equivalent"`` when the Holm-corrected TOST p is
  below 0.05; else ``"inconclusive"``. Which side is good is a property of the metric
  (:data:`HIGHER_IS_BETTER`: higher CNR, error CNR, PSNR, SSIM; lower FWHM, RMSE).

With ``n`` non-zero differences the smallest two-sided exact Wilcoxon p-value is
``2 / 2**n``: 0.0625 for 5 seeds, 0.031 for 6, and the smallest one-sided one (each half
of TOST) ``1 / 2**n``. Five seeds or fewer can therefore never be "better" or "worse",
four or fewer never "equivalent" (and with Holm over m comparisons more seeds are
needed); that is a property of the data, not of the code. :func:`tost_power` and
:func:`seeds_for_power` say how many seeds an equivalence test needs.

This module is pure NumPy/SciPy and reads no files.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

__all__ = [
    "DUPLICATE",
    "EQUIVALENCE_MARGINS",
    "HIGHER_IS_BETTER",
    "IDENTITY",
    "OUTSIDE",
    "VERDICTS",
    "PairedResult",
    "bootstrap_median_ci",
    "equivalence_margins",
    "holm",
    "paired_comparison",
    "paired_differences",
    "parse_margins",
    "seeds_for_power",
    "tost_power",
    "tost_test",
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
#: Equivalence margins, in the metric's units: a paired difference inside ``±margin``
#: counts as no difference that matters. Declared before the runs; ``dfct grid-report
#: --margins`` overrides them (:func:`equivalence_margins`). A metric without a margin
#: gets no equivalence test (its verdict is never "equivalent").
EQUIVALENCE_MARGINS = {"cnr": 0.5, "fwhm": 0.3, "error_cnr": 0.5, "psnr_body": 0.3}
#: The four verdicts of a comparison in its Holm family.
VERDICTS = ("better", "worse", "equivalent", "inconclusive")
#: The verdict of a row outside the family: the configuration trains identically to its
#: reference (by the loss algebra, or every paired difference exactly 0).
IDENTITY = "identity"
#: The verdict of a row outside the family: its configuration trains identically to the
#: configuration of another row of the same table, against the same reference.
DUPLICATE = "duplicate"
#: The verdict of a row outside the family by the design of the study: a scale-matched
#: control against the baseline, when the baseline's family holds only the amplified
#: configurations (``dfct grid-report --baseline-family amplified``).
OUTSIDE = "outside"
#: Simulated samples per power estimate (Monte-Carlo error about 0.006 at power 0.8).
POWER_SIMULATIONS = 4000

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
        ``p`` after Holm's correction over the comparisons of its family
        (:func:`with_holm`); equal to ``p`` for a lone comparison, NaN outside a family.
    verdict : str
        One of :data:`VERDICTS` (:func:`verdict`), or :data:`IDENTITY` /
        :data:`DUPLICATE` / :data:`OUTSIDE` for a row outside the family.
    higher_is_better : bool
        The metric's good direction.
    confidence : float
        Level of the interval.
    alpha : float
        Significance level of the verdict.
    margin : float
        Equivalence margin (NaN: no equivalence test).
    p_tost : float
        TOST p-value (:func:`tost_test`); NaN without a margin or pairs.
    p_tost_holm : float
        ``p_tost`` after Holm's correction over its family (NaN outside a family).
    eq_low, eq_high : float
        The ``1 - 2 alpha`` (90 %) bootstrap interval of the median, from the same
        resamples: inside ``(-margin, margin)`` it is the interval form of TOST.
    excluded : str
        ``""`` for a row of the Holm family, else why it is not: :data:`IDENTITY`,
        :data:`DUPLICATE` or :data:`OUTSIDE`.
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
    margin: float = _NAN
    p_tost: float = _NAN
    p_tost_holm: float = _NAN
    eq_low: float = _NAN
    eq_high: float = _NAN
    excluded: str = ""

    @property
    def n(self) -> int:
        """Number of pairs."""
        return len(self.seeds)

    @property
    def interval_within_margin(self) -> bool:
        """Whether the 90 % interval lies inside ``(-margin, margin)`` (the interval form
        of TOST at ``alpha``, the cross-check of the test)."""
        return bool(-self.margin < self.eq_low and self.eq_high < self.margin)

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
            "margin": self.margin,
            "p_tost": self.p_tost,
            "p_tost_holm": self.p_tost_holm,
            "eq_low": self.eq_low,
            "eq_high": self.eq_high,
            "excluded": self.excluded,
        }


# --------------------------------------------------------------------------- margins
def _margin_value(metric: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = _NAN
    if not (math.isfinite(v) and v > 0):
        raise ValueError(
            f"the equivalence margin of {metric} must be a positive number, got {value!r}"
        )
    return v


def equivalence_margins(overrides: Mapping[str, Any] | None = None) -> dict[str, float]:
    """:data:`EQUIVALENCE_MARGINS` with ``overrides`` (metric -> positive margin) applied.

    Raises
    ------
    ValueError
        An unknown metric or a margin that is not a positive finite number.
    """
    out = dict(EQUIVALENCE_MARGINS)
    for metric, value in (overrides or {}).items():
        if metric not in HIGHER_IS_BETTER:
            raise ValueError(
                f"no equivalence margin for unknown metric {metric!r}; "
                f"metrics: {', '.join(HIGHER_IS_BETTER)}"
            )
        out[metric] = _margin_value(metric, value)
    return out


def parse_margins(text: str | None) -> dict[str, float]:
    """``"cnr=0.5,fwhm=0.3"`` as ``{"cnr": 0.5, "fwhm": 0.3}`` (validated; not merged
    with the defaults: :func:`equivalence_margins` does that)."""
    out: dict[str, Any] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        metric, sep, value = item.partition("=")
        metric = metric.strip()
        if not sep or not metric or not value.strip():
            raise ValueError(f"a margin is METRIC=VALUE (e.g. cnr=0.5), got {item.strip()!r}")
        out[metric] = value.strip()
    equivalence_margins(out)  # validates
    return {m: float(v) for m, v in out.items()}


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


def _bootstrap_medians(d: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(int(n_boot), d.size))
    return np.median(d[idx], axis=1)


def _percentile_interval(medians: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(medians, [tail, 1.0 - tail])
    return float(lo), float(hi)


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
    return _percentile_interval(_bootstrap_medians(d, n_boot, seed), confidence)


def wilcoxon_test(differences: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Wilcoxon signed-rank test of paired differences: ``(statistic, p)``, two-sided.

    :func:`scipy.stats.wilcoxon` with zero differences dropped (``"wilcox"``); the exact
    null distribution for small samples. Every difference zero: ``(0, 1)`` (nothing
    tells the two apart); no differences: ``(nan, nan)``.
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


def _one_sided_wilcoxon(x: np.ndarray, alternative: str) -> float:
    """One-sided Wilcoxon signed-rank p of ``x`` (zeros dropped; all zero: p = 1).

    What :func:`scipy.stats.wilcoxon` returns; where scipy enumerates all sign patterns
    (up to 50 values without ties or zeros, up to 13 with them) the same exact
    distribution is counted here directly, over doubled mid-ranks (scipy's enumeration of
    tied samples is slow).
    """
    from scipy.stats import rankdata, wilcoxon

    nonzero = x[x != 0]
    n = nonzero.size
    if n == 0:
        return 1.0
    ranks2 = np.rint(2.0 * rankdata(np.abs(nonzero))).astype(np.int64)
    tied = n < x.size or np.unique(ranks2).size < n
    if x.size <= (13 if tied else 50):
        counts = np.zeros(int(ranks2.sum()) + 1)
        counts[0] = 1.0
        for r in ranks2:
            counts[r:] = counts[r:] + counts[:-r].copy()
        w2 = int(ranks2[nonzero > 0].sum())
        tail = counts[w2:] if alternative == "greater" else counts[: w2 + 1]
        return float(min(1.0, tail.sum() / 2.0**n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = wilcoxon(x, zero_method="wilcox", alternative=alternative)
    return float(res.pvalue)


def tost_test(differences: Sequence[float], margin: float) -> tuple[float, float, float]:
    """Two one-sided Wilcoxon signed-rank tests of equivalence within ``±margin``.

    ``p_lower``: :func:`scipy.stats.wilcoxon` of ``d + margin`` with
    ``alternative="greater"`` (H0: the differences sit at or below ``-margin``);
    ``p_upper``: of ``d - margin`` with ``alternative="less"`` (H0: at or above
    ``+margin``). Both rejected at alpha means the differences lie within the margin:
    ``p_tost = max(p_lower, p_upper)``. Returns ``(p_lower, p_upper, p_tost)``; NaN
    without differences or without a positive margin.
    """
    d = np.asarray(differences, dtype=np.float64)
    m = _finite(margin)
    if d.size == 0 or not (m > 0):
        return _NAN, _NAN, _NAN
    lo = _one_sided_wilcoxon(d + m, "greater")
    hi = _one_sided_wilcoxon(d - m, "less")
    return lo, hi, max(lo, hi)


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
    p_tost_adjusted: float = _NAN,
) -> str:
    """``"better"``, ``"worse"``, ``"equivalent"`` or ``"inconclusive"``.

    ``"better"``: the interval lies entirely on the good side of zero (above it when
    higher is better, below it when lower is better) **and** ``p_adjusted < alpha``;
    ``"worse"``: the interval lies entirely on the other side and ``p_adjusted < alpha``;
    else ``"equivalent"`` when the (Holm-corrected) TOST p-value ``p_tost_adjusted`` is
    below alpha: the differences lie within the margin; otherwise (the test cannot tell,
    or a value is NaN) ``"inconclusive"`` — not "no effect".
    """
    if math.isfinite(ci_low) and math.isfinite(ci_high) and _finite(p_adjusted) < alpha:
        above, below = ci_low > 0, ci_high < 0
        if above or below:
            return "better" if above == bool(higher_is_better) else "worse"
    if _finite(p_tost_adjusted) < alpha:
        return "equivalent"
    return "inconclusive"


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
    margin: float | None = None,
    excluded: str | None = None,
) -> PairedResult:
    """Compare ``a`` with ``b`` paired by seed: median of ``a - b``, bootstrap intervals,
    Wilcoxon and TOST p-values and verdict.

    Parameters
    ----------
    values_by_seed_a, values_by_seed_b : mapping of seed to value
        One value per seed (e.g. the run's median CNR over the test slices); seeds in only
        one mapping or with a non-finite value are left out.
    higher_is_better : bool
        The metric's good direction (:data:`HIGHER_IS_BETTER`).
    confidence, n_boot, seed
        The bootstrap interval (:func:`bootstrap_median_ci`); the ``1 - 2 alpha``
        interval comes from the same resamples.
    alpha : float
        Significance level of the verdict.
    margin : float, optional
        Equivalence margin (:data:`EQUIVALENCE_MARGINS`); None or NaN: no TOST.
    excluded : str, optional
        Whether the row stays out of a Holm family: ``""`` (it is a comparison),
        :data:`IDENTITY`, :data:`DUPLICATE` or :data:`OUTSIDE` (its verdict). Default:
        :data:`IDENTITY` when every difference is exactly 0, else ``""``.

    Returns
    -------
    PairedResult
        With ``p_holm = p`` and ``p_tost_holm = p_tost`` (one comparison);
        :func:`with_holm` corrects a table of them.
    """
    seeds, d = paired_differences(values_by_seed_a, values_by_seed_b)
    median = float(np.median(d)) if d.size else _NAN
    lo = hi = eq_lo = eq_hi = _NAN
    if d.size:
        if not 0 < confidence < 1:
            raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
        medians = _bootstrap_medians(d, n_boot, seed)
        lo, hi = _percentile_interval(medians, confidence)
        eq_lo, eq_hi = _percentile_interval(medians, 1.0 - 2.0 * alpha)
    stat, p = wilcoxon_test(d)
    m = _finite(margin) if margin is not None else _NAN
    p_tost = tost_test(list(d), m)[2]
    if excluded is None:
        excluded = IDENTITY if d.size and not np.any(d != 0) else ""
    return _decide(
        PairedResult(
            tuple(seeds),
            tuple(float(x) for x in d),
            median,
            lo,
            hi,
            stat,
            p,
            p,
            "",
            bool(higher_is_better),
            float(confidence),
            float(alpha),
            m,
            p_tost,
            p_tost,
            eq_lo,
            eq_hi,
            str(excluded),
        )
    )


def _decide(r: PairedResult) -> PairedResult:
    if r.excluded:
        return replace(r, p_holm=_NAN, p_tost_holm=_NAN, verdict=r.excluded)
    v = verdict(r.ci_low, r.ci_high, r.p_holm, r.higher_is_better, r.alpha, r.p_tost_holm)
    return replace(r, verdict=v)


def with_holm(results: Sequence[PairedResult]) -> list[PairedResult]:
    """The results with Holm-corrected p-values over their family and verdicts from them.

    Use one call per table: the comparisons of one kind for one metric. The family is the
    results with ``excluded == ""``; the superiority p-values and the TOST p-values are
    corrected each over the family (two corrections, one per question). Excluded rows get
    NaN corrected p-values and their exclusion as the verdict.
    """
    family = [i for i, r in enumerate(results) if not r.excluded]
    adjusted = holm([results[i].p for i in family])
    adjusted_tost = holm([results[i].p_tost for i in family])
    out = list(results)
    for i, q, qt in zip(family, adjusted, adjusted_tost):
        out[i] = replace(results[i], p_holm=float(q), p_tost_holm=float(qt))
    return [_decide(r) for r in out]


# --------------------------------------------------------------------------- power
@functools.lru_cache(maxsize=64)
def _signed_rank_cdf(n: int) -> np.ndarray:
    """``P(W+ <= w)``, ``w = 0 .. n(n+1)/2``, of the signed-rank statistic under H0 (n
    distinct non-zero values): the exact distribution, counted by dynamic programming."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for k in range(1, n + 1):
        counts[k:] = counts[k:] + counts[:-k].copy()
    return np.cumsum(counts) / 2.0**n


def _signed_rank_p(w_plus: np.ndarray, n: int, alternative: str) -> np.ndarray:
    """One-sided p of observed ``W+`` values: exact for ``n <= 50``, else the normal
    approximation (what :func:`scipy.stats.wilcoxon`'s ``method="auto"`` does)."""
    if n <= 50:
        cdf = _signed_rank_cdf(n)
        w = w_plus.astype(np.int64)
        if alternative == "greater":  # P(W+ >= w)
            return np.where(w > 0, 1.0 - cdf[np.maximum(w - 1, 0)], 1.0)
        return cdf[w]
    from scipy.stats import norm

    mean = n * (n + 1) / 4.0
    sd = math.sqrt(n * (n + 1) * (2 * n + 1) / 24.0)
    z = (w_plus - mean) / sd
    return norm.sf(z) if alternative == "greater" else norm.cdf(z)


def _rank_sum_positive(x: np.ndarray) -> np.ndarray:
    """``W+`` of each row of ``x``: the sum of the ranks of ``|x|`` where ``x > 0``."""
    order = np.argsort(np.abs(x), axis=1)
    positive = np.take_along_axis(x, order, axis=1) > 0
    return positive @ np.arange(1, x.shape[1] + 1)


def _check_power_args(sd: float, margin: float, alpha: float) -> None:
    if not (math.isfinite(sd) and sd >= 0):
        raise ValueError(f"the spread of the differences must be finite and >= 0, got {sd}")
    if not (math.isfinite(margin) and margin > 0):
        raise ValueError(f"the margin must be positive, got {margin}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must lie in (0, 0.5), got {alpha}")


def tost_power(
    sd: float,
    margin: float,
    n: int,
    alpha: float = 0.05,
    *,
    method: str = "wilcoxon",
    n_sim: int = POWER_SIMULATIONS,
    seed: int = 0,
) -> float:
    """Probability that TOST declares equivalence when the true difference is 0.

    Parameters
    ----------
    sd : float
        Spread (standard deviation) of the paired differences.
    margin : float
        Equivalence margin.
    n : int
        Number of pairs (seeds).
    alpha : float
        Level of each one-sided test (use ``alpha / m`` to plan for Holm over ``m``
        comparisons: Holm's first step).
    method : {"wilcoxon", "t"}
        ``"wilcoxon"``: simulation of ``n_sim`` samples of ``n`` normal differences
        (mean 0, SD ``sd``, ``numpy.random.default_rng(seed)``), each tested as
        :func:`tost_test` does (exact signed-rank null distribution up to ``n = 50``, the
        normal approximation beyond, as scipy). ``"t"``: the t-approximation of the
        paired t-test TOST, ``2 T_{n-1}(margin sqrt(n) / sd - t_{1-alpha, n-1}) - 1``
        (clipped at 0); for large ``n`` it becomes ``2 Phi(margin sqrt(n) / sd -
        z_{1-alpha}) - 1``, whence ``n = (z_{1-alpha} + z_{1-beta/2})^2 sd^2 / margin^2``.
    n_sim, seed
        The simulation (Monte-Carlo error ``sqrt(power (1 - power) / n_sim)``).

    Returns
    -------
    float
        The power, in ``[0, 1]``.
    """
    sd, margin, n = float(sd), float(margin), int(n)
    _check_power_args(sd, margin, alpha)
    if n < 2:
        return 0.0
    if method == "t":
        from scipy.stats import t

        df = n - 1
        if sd == 0:
            return 1.0
        return max(
            0.0, float(2.0 * t.cdf(margin * math.sqrt(n) / sd - t.ppf(1 - alpha, df), df) - 1.0)
        )
    if method != "wilcoxon":
        raise ValueError(f"unknown power method {method!r}; valid: wilcoxon, t")
    if n_sim < 1:
        raise ValueError(f"n_sim must be at least 1, got {n_sim}")
    d = np.random.default_rng(seed).normal(0.0, sd, size=(int(n_sim), n))
    p_lower = _signed_rank_p(_rank_sum_positive(d + margin), n, "greater")
    p_upper = _signed_rank_p(_rank_sum_positive(d - margin), n, "less")
    return float(np.mean(np.maximum(p_lower, p_upper) < alpha))


def seeds_for_power(
    sd: float,
    margin: float,
    power: float = 0.8,
    alpha: float = 0.05,
    *,
    method: str = "wilcoxon",
    n_max: int = 1000,
    n_sim: int = POWER_SIMULATIONS,
    seed: int = 0,
) -> int | None:
    """The smallest number of seeds whose TOST has ``power`` at ``margin`` (true
    difference 0, differences of spread ``sd``; :func:`tost_power`), or None when even
    ``n_max`` seeds fall short.

    The search starts from the t-approximation's ``n`` divided by the Wilcoxon test's
    efficiency on normal data (``3 / pi``), brackets the answer and bisects (the power
    grows with ``n``; the simulation uses the same ``seed`` for every ``n``).
    """
    if not 0 < power < 1:
        raise ValueError(f"power must lie in (0, 1), got {power}")
    sd, margin, n_max = float(sd), float(margin), int(n_max)
    _check_power_args(sd, margin, alpha)
    if method not in ("wilcoxon", "t"):
        raise ValueError(f"unknown power method {method!r}; valid: wilcoxon, t")

    def enough(k: int) -> bool:
        return tost_power(sd, margin, k, alpha, method=method, n_sim=n_sim, seed=seed) >= power

    if method == "t":
        guess = 2
    else:
        n_t = seeds_for_power(sd, margin, power, alpha, method="t", n_max=n_max)
        guess = min(n_max, max(2, math.ceil((n_t or n_max) * math.pi / 3)))
    if enough(guess):
        lo, hi = max(1, int(guess * 0.8)), guess
        while lo > 1 and enough(lo):
            lo, hi = max(1, int(lo * 0.8)), lo
    else:
        lo, hi = guess, guess
        while not enough(hi):
            if hi >= n_max:
                return None
            lo, hi = hi, min(n_max, max(hi + 1, math.ceil(hi * 1.25)))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if enough(mid):
            hi = mid
        else:
            lo = mid
    return hi
