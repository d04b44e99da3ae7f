"""Paired statistics (napari_dfct.experiment.stats) against hand-computed small cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_dfct.experiment.stats import (
    PairedResult,
    bootstrap_median_ci,
    holm,
    paired_comparison,
    paired_differences,
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
    # the interval covers zero: no evidence, whatever the p-value
    assert verdict(-0.1, 0.5, 0.001) == "no evidence"
    # the interval excludes zero but the corrected p does not pass
    assert verdict(0.1, 0.5, 0.05) == "no evidence"
    assert verdict(float("nan"), 0.5, 0.01) == "no evidence"


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
    # differences of both signs around zero: the interval covers it, no evidence
    mixed = {s: b[s] + (-1) ** s * (s + 1) for s in b}
    m = paired_comparison(mixed, b)
    assert m.ci_low < 0 < m.ci_high and m.verdict == "no evidence"
    d = m.to_dict()
    assert d["good"] == "higher" and d["n"] == 8 and d["verdict"] == "no evidence"


def test_holm_over_a_table_can_remove_a_verdict():
    """Two comparisons with 6 all-positive differences each: p = 2/64 = 0.03125 alone
    ("better"), 0.0625 after Holm over both ("no evidence")."""
    base = dict.fromkeys(range(6), 0.0)
    up = {s: 1.0 + s for s in range(6)}
    lone = paired_comparison(up, base)
    assert lone.p == pytest.approx(2 / 64) and lone.verdict == "better"
    both = with_holm([lone, paired_comparison(up, base)])
    assert [r.p_holm for r in both] == [pytest.approx(0.0625)] * 2
    assert [r.verdict for r in both] == ["no evidence"] * 2
