"""Paired statistics (napari_dfct.experiment.stats) against hand-computed small cases:
superiority, equivalence (TOST), Holm families and the power of TOST."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_dfct.experiment.stats import (
    DUPLICATE,
    EQUIVALENCE_MARGINS,
    IDENTITY,
    PairedResult,
    bootstrap_median_ci,
    equivalence_margins,
    holm,
    paired_comparison,
    paired_differences,
    parse_margins,
    seeds_for_power,
    tost_power,
    tost_test,
    verdict,
    wilcoxon_test,
    with_holm,
)


def test_holm_on_a_known_vector():
    """p = (0.01, 0.04, 0.03, 0.005), m = 4. Sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03;
    0.03 x 2 = 0.06; 0.04 x 1 = 0.04, raised to the running maximum 0.06."""
    got = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(got, [0.03, 0.06, 0.06, 0.02], rtol=1e-12)
    # capped at 1; NaN stays NaN and does not count in m (here m = 2)
    got = holm([0.6, float("nan"), 0.2])
    np.testing.assert_allclose(got[[0, 2]], [0.6, 0.4])
    assert math.isnan(got[1])
    np.testing.assert_allclose(holm([0.5, 0.9, 0.7]), [1.0, 1.0, 1.0])
    assert holm([]).size == 0
    # one test: unchanged
    assert holm([0.03])[0] == pytest.approx(0.03)


def test_wilcoxon_against_a_hand_ranked_case():
    """d = (1, 2, -3, 4, 5, 6): |d| ranks 1..6, negative rank sum W- = 3 (the statistic).
    Under H0 each of the 2^6 = 64 sign patterns is equally likely; rank sums <= 3 come from
    {}, {1}, {2}, {3}, {1, 2}: 5 of 64. Two-sided p = 2 x 5/64 = 0.15625."""
    stat, p = wilcoxon_test([1, 2, -3, 4, 5, 6])
    assert stat == 3.0
    assert p == pytest.approx(10 / 64, rel=1e-12)
    # all six positive: p = 2/64; five: 2/32 (never below 0.05)
    assert wilcoxon_test([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])[1] == pytest.approx(2 / 64)
    assert wilcoxon_test([0.1, 0.2, 0.3, 0.4, 0.5])[1] == pytest.approx(2 / 32)
    # zero differences are dropped: (0, 1, 2, 3, 4, 5) is the five-seed case
    assert wilcoxon_test([0, 1, 2, 3, 4, 5])[1] == pytest.approx(2 / 32)
    assert wilcoxon_test([0.0, 0.0, 0.0]) == (0.0, 1.0)
    assert all(math.isnan(v) for v in wilcoxon_test([]))


def test_bootstrap_interval_of_a_constant_difference_is_that_constant():
    assert bootstrap_median_ci([0.7] * 8) == (pytest.approx(0.7), pytest.approx(0.7))
    lo, hi = bootstrap_median_ci([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    assert 1.0 <= lo < 4.0 < hi <= 7.0  # around the median 4, inside the data's range
    # seeded: the same interval twice; another seed may differ
    assert bootstrap_median_ci([1, 5, 2, 8, 3], seed=3) == bootstrap_median_ci(
        [1, 5, 2, 8, 3], seed=3
    )
    assert all(math.isnan(v) for v in bootstrap_median_ci([]))
    with pytest.raises(ValueError):
        bootstrap_median_ci([1.0], confidence=1.5)


def test_pairs_are_matched_by_seed_and_undefined_values_are_left_out():
    a = {0: 2.0, 1: 3.0, 2: None, 3: 5.0, 5: 1.0}
    b = {0: 1.0, 1: 1.0, 2: 1.0, 3: float("nan"), 4: 9.0, 5: 0.5}
    seeds, d = paired_differences(a, b)
    assert seeds == [0, 1, 5]
    np.testing.assert_allclose(d, [1.0, 2.0, 0.5])


def test_verdicts_follow_the_interval_the_holm_p_and_the_good_direction():
    assert verdict(0.1, 0.5, 0.01, higher_is_better=True) == "better"
    assert verdict(0.1, 0.5, 0.01, higher_is_better=False) == "worse"
    assert verdict(-0.5, -0.1, 0.01, higher_is_better=False) == "better"
    assert verdict(-0.5, -0.1, 0.01, higher_is_better=True) == "worse"
    # the interval covers zero: inconclusive, whatever the p-value
    assert verdict(-0.1, 0.5, 0.001) == "inconclusive"
    # the interval excludes zero but the corrected p does not pass
    assert verdict(0.1, 0.5, 0.05) == "inconclusive"
    assert verdict(float("nan"), 0.5, 0.01) == "inconclusive"
    # no superiority, and TOST (Holm) below alpha: equivalent; at alpha: not
    assert verdict(-0.1, 0.2, 0.5, p_tost_adjusted=0.01) == "equivalent"
    assert verdict(-0.1, 0.2, 0.5, p_tost_adjusted=0.05) == "inconclusive"
    # superiority comes first
    assert verdict(0.1, 0.2, 0.01, p_tost_adjusted=0.01) == "better"


def test_paired_comparison_by_hand():
    """Eight seeds; a = b + d with d = 1..8 for CNR: every difference positive, exact
    p = 2/256, median 4.5, the interval within [1, 8] and above 0: "better". For FWHM
    (lower is better) the same numbers are "worse"."""
    b = {s: 10.0 + s for s in range(8)}
    a = {s: b[s] + (s + 1) for s in range(8)}
    r = paired_comparison(a, b, higher_is_better=True)
    assert isinstance(r, PairedResult)
    assert r.n == 8 and r.seeds == tuple(range(8))
    assert r.median == pytest.approx(4.5)
    assert 1.0 <= r.ci_low < 4.5 < r.ci_high <= 8.0
    assert r.p == pytest.approx(2 / 256) and r.p_holm == r.p
    assert r.verdict == "better"
    assert paired_comparison(a, b, higher_is_better=False).verdict == "worse"
    # a constant difference: the interval is that constant; p = 2/256
    c = paired_comparison({s: b[s] + 0.25 for s in b}, b)
    assert (c.ci_low, c.ci_high) == (pytest.approx(0.25), pytest.approx(0.25))
    assert c.verdict == "better"
    # differences of both signs around zero: the interval covers it; no margin: no TOST
    mixed = {s: b[s] + (-1) ** s * (s + 1) for s in b}
    m = paired_comparison(mixed, b)
    assert m.ci_low < 0 < m.ci_high and m.verdict == "inconclusive"
    d = m.to_dict()
    assert d["good"] == "higher" and d["n"] == 8 and d["verdict"] == "inconclusive"
    assert math.isnan(d["p_tost"]) and d["excluded"] == ""


def test_holm_over_a_table_can_remove_a_verdict():
    """Two comparisons with 6 all-positive differences each: p = 2/64 = 0.03125 alone
    ("better"), 0.0625 after Holm over both ("inconclusive")."""
    base = dict.fromkeys(range(6), 0.0)
    up = {s: 1.0 + s for s in range(6)}
    lone = paired_comparison(up, base)
    assert lone.p == pytest.approx(2 / 64) and lone.verdict == "better"
    both = with_holm([lone, paired_comparison(up, base)])
    assert [r.p_holm for r in both] == [pytest.approx(0.0625)] * 2
    assert [r.verdict for r in both] == ["inconclusive"] * 2


# --------------------------------------------------------------------------- equivalence
def test_tost_p_values_by_hand():
    """Ten differences inside ±margin: each one-sided test sees all ten on its side, exact
    p = 1/2^10 for both, so p_TOST = 1/1024. One difference beyond +margin: the upper
    test's signed ranks of d - margin have one positive rank (the smallest |d - margin|
    is rank 1 here), p_upper = P(W+ <= 1) = 2/1024."""
    d = [-0.2, -0.15, -0.1, -0.05, 0.0, 0.03, 0.08, 0.12, 0.18, 0.24]
    lo, hi, p = tost_test(d, 0.5)
    assert lo == pytest.approx(1 / 1024) and hi == pytest.approx(1 / 1024)
    assert p == max(lo, hi)
    lo, hi, p = tost_test([*d[:-1], 0.55], 0.5)
    assert hi == pytest.approx(2 / 1024) and p == hi
    # the same as scipy's one-sided tests on the shifted differences
    from scipy.stats import wilcoxon

    x = np.random.default_rng(3).normal(0.1, 0.4, 9)
    lo, hi, p = tost_test(x, 0.5)
    assert lo == pytest.approx(wilcoxon(x + 0.5, alternative="greater").pvalue)
    assert hi == pytest.approx(wilcoxon(x - 0.5, alternative="less").pvalue)
    # ties and zeros (constant or rounded differences): scipy's enumeration of the signs,
    # counted here directly
    from napari_dfct.experiment.stats import _one_sided_wilcoxon

    for case in ([0.5] * 8, [0.5] * 7 + [0.0], [0.1, 0.1, -0.1, 0.2, 0.2, 0.0], np.round(x, 1)):
        x = np.asarray(case)
        for alt in ("greater", "less"):
            ref = wilcoxon(x, alternative=alt).pvalue
            assert _one_sided_wilcoxon(x, alt) == pytest.approx(ref, rel=1e-9)
    assert all(math.isnan(v) for v in tost_test([], 0.5))
    assert all(math.isnan(v) for v in tost_test(d, float("nan")))


def _pairs(diffs):
    base = {s: 10.0 + 0.7 * s for s in range(len(diffs))}
    return {s: base[s] + diffs[s] for s in base}, base


def test_tost_verdicts_on_constructed_differences():
    """margin 0.5, n = 10: differences within ±margin/2 around 0 -> equivalent; shifted by
    2 x margin -> better (worse when lower is better); a spread of 3 x margin -> neither
    (inconclusive). Holm over the three keeps each verdict."""
    margin, rng = 0.5, np.random.default_rng(7)
    within = rng.uniform(-margin / 2, margin / 2, 10)
    within -= np.median(within)  # centred: no superiority
    shifted = 2 * margin + rng.uniform(-margin / 4, margin / 4, 10)
    wide = rng.normal(0.0, 3 * margin, 10)
    results = [
        paired_comparison(*_pairs(d), margin=margin, n_boot=2000) for d in (within, shifted, wide)
    ]
    assert [r.verdict for r in results] == ["equivalent", "better", "inconclusive"]
    assert results[0].p_tost == pytest.approx(1 / 1024)
    assert results[0].interval_within_margin and not results[2].interval_within_margin
    assert math.isclose(results[1].p, 2 / 1024) and results[1].p_tost == 1.0
    family = with_holm(results)
    assert [r.verdict for r in family] == ["equivalent", "better", "inconclusive"]
    np.testing.assert_allclose([r.p_tost_holm for r in family], holm([r.p_tost for r in results]))
    lower = paired_comparison(*_pairs(shifted), margin=margin, higher_is_better=False)
    assert lower.verdict == "worse"
    # no margin (a metric without one): no TOST, never equivalent
    assert paired_comparison(*_pairs(within)).verdict == "inconclusive"


def test_identity_rows_stay_out_of_the_family():
    """Every difference exactly 0: the row is an identity (NaN corrected p-values) and the
    family of the others is smaller: two rows of 6 positive differences each, p = 2/64,
    Holm over 2 (not 3): 0.0625."""
    base = {s: 1.0 + s for s in range(6)}
    up = {s: base[s] + 0.1 * (s + 1) for s in base}
    same = paired_comparison(dict(base), base, margin=0.5)
    assert same.excluded == IDENTITY and same.verdict == IDENTITY
    assert math.isnan(same.p_holm) and math.isnan(same.p_tost_holm)
    rows = with_holm([paired_comparison(up, base), same, paired_comparison(up, base)])
    assert [r.verdict for r in rows] == ["inconclusive", IDENTITY, "inconclusive"]
    assert rows[0].p_holm == pytest.approx(2 * 2 / 64) and math.isnan(rows[1].p_holm)
    # a row can be declared outside the family whatever its data
    dup = paired_comparison(up, base, excluded=DUPLICATE)
    assert with_holm([dup])[0].verdict == DUPLICATE
    assert paired_comparison(base, base, excluded="").verdict == "inconclusive"


def test_margins_defaults_overrides_and_parsing():
    assert EQUIVALENCE_MARGINS == {"cnr": 0.5, "fwhm": 0.3, "error_cnr": 0.5, "psnr_body": 0.3}
    m = equivalence_margins({"cnr": 1.0, "ssim_body": 0.01})
    assert m["cnr"] == 1.0 and m["fwhm"] == 0.3 and m["ssim_body"] == 0.01
    assert parse_margins("cnr=0.8, psnr_body=0.2") == {"cnr": 0.8, "psnr_body": 0.2}
    assert parse_margins(None) == {} and parse_margins("") == {}
    for bad, words in (
        ("cnr", "METRIC=VALUE"),
        ("cnr=", "METRIC=VALUE"),
        ("cnr=abc", "positive number"),
        ("cnr=-0.5", "positive number"),
        ("cnr=nan", "positive number"),
        ("sharpness=1", "unknown metric"),
    ):
        with pytest.raises(ValueError, match=words):
            parse_margins(bad)


# --------------------------------------------------------------------------- power
def test_signed_rank_p_values_of_the_simulation_are_scipys():
    """The power simulation tests many samples at once; its p-values are scipy's exact
    ones (n <= 50) and its normal approximation beyond."""
    from scipy.stats import wilcoxon

    from napari_dfct.experiment.stats import _rank_sum_positive, _signed_rank_p

    rng = np.random.default_rng(0)
    for n in (5, 12, 60):
        x = rng.normal(0.3, 1.0, (15, n))
        w = _rank_sum_positive(x)
        for alt in ("greater", "less"):
            ref = [wilcoxon(row, alternative=alt).pvalue for row in x]
            np.testing.assert_allclose(_signed_rank_p(w, n, alt), ref, rtol=1e-9)


def test_tost_power_against_known_cases():
    """Known values: (1) n <= 4: the smallest one-sided p is 1/16 > 0.05, power 0; no
    spread: every sample lies inside, power 1 from n = 5 (p = 1/32). (2) The
    t-approximation for paired differences of SD sigma, true difference 0, margin delta:
    n = (z_{1-alpha} + z_{1-beta/2})^2 sigma^2 / delta^2 = 34.26 for sigma = 1, delta = 0.5,
    80 % power; with t quantiles a little more. (3) On normal data the Wilcoxon test has
    the efficiency 3/pi of the t-test: its simulated power at n matches the normal formula
    at 3n/pi within Monte-Carlo error and the finite-n discrepancy (0.035)."""
    from scipy.stats import norm

    assert tost_power(1.0, 0.5, 4) == 0.0 and tost_power(0.0, 0.5, 4) == 0.0
    assert tost_power(0.0, 0.5, 5) == 1.0 and seeds_for_power(0.0, 0.5) == 5
    z = norm.ppf(0.95) + norm.ppf(1 - 0.2 / 2)
    n_formula = z**2 * 1.0**2 / 0.5**2
    assert n_formula == pytest.approx(34.26, abs=0.01)
    n_t = seeds_for_power(1.0, 0.5, method="t")
    assert math.ceil(n_formula) <= n_t <= math.ceil(n_formula) + 3
    assert tost_power(1.0, 0.5, n_t, method="t") >= 0.8 > tost_power(1.0, 0.5, n_t - 1, method="t")
    for n in (36, 50):
        expected = 2 * norm.cdf(0.5 * math.sqrt(3 * n / math.pi) - norm.ppf(0.95)) - 1
        assert tost_power(1.0, 0.5, n, n_sim=4000) == pytest.approx(expected, abs=0.035)
    n_w = seeds_for_power(1.0, 0.5)
    assert n_t <= n_w <= math.ceil(n_t * math.pi / 3) + 2
    assert tost_power(1.0, 0.5, n_w) >= 0.8 > tost_power(1.0, 0.5, n_w - 1)
    # twice the spread needs about four times the seeds; Holm's alpha/m needs more
    assert 3.5 * n_w <= seeds_for_power(2.0, 0.5) <= 4.5 * n_w
    assert seeds_for_power(1.0, 0.5, alpha=0.05 / 10) > n_w
    assert seeds_for_power(5.0, 0.1, n_max=100) is None
    with pytest.raises(ValueError):
        tost_power(1.0, 0.0, 10)
    with pytest.raises(ValueError):
        seeds_for_power(1.0, 0.5, power=1.0)
