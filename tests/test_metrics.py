"""Tests of napari_dfct.metrics against analytic truths, identities and simulations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.special import erf
from skimage.measure import profile_line

from napari_dfct import metrics as M
from napari_dfct.metrics import edge

SQRT2 = math.sqrt(2.0)


# --------------------------------------------------------------------------------------
# synthetic images
# --------------------------------------------------------------------------------------
def erf_edge_image(shape, center, angle_deg, sigma, low=0.0, high=1.0):
    """An edge through ``center`` whose normal points at ``angle_deg`` (0: along +col,
    90: along +row); intensity ``low`` -> ``high`` across it with a Gaussian LSF of
    standard deviation ``sigma``, built from the signed distance to the edge line."""
    r, c = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    th = math.radians(angle_deg)
    d = (r - center[0]) * math.sin(th) + (c - center[1]) * math.cos(th)
    return low + (high - low) * 0.5 * (1.0 + erf(d / (SQRT2 * sigma)))


def line_across(center, angle_deg, half_length):
    th = math.radians(angle_deg)
    dr, dc = half_length * math.sin(th), half_length * math.cos(th)
    return (center[0] - dr, center[1] - dc), (center[0] + dr, center[1] + dc)


# --------------------------------------------------------------------------------------
# ROIs
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "center,expected",
    [
        ((100, 100), (85, 115, 85, 115)),  # corners (85, 85)-(115, 115): pixels 85..114
        ((100.4, 50.6), (86, 116, 36, 66)),  # ceil(85.4) = 86, ceil(35.6) = 36
        ((10, 20.5), (-5, 25, 6, 36)),  # may start outside: the caller checks
    ],
)
def test_roi_bounds_half_open_convention(center, expected):
    assert M.roi_bounds(center, 30) == expected
    r0, r1, c0, c1 = M.roi_bounds(center, 30)
    assert r1 - r0 == 30 and c1 - c0 == 30


def test_roi_bounds_rectangle():
    assert M.roi_bounds((50, 50), (10, 20)) == (45, 55, 40, 60)


def test_constant_roi_has_its_value_and_zero_std():
    img = np.full((64, 64), 3.25, np.float32)
    st = M.roi_stats(img, (32, 32), 30)
    assert st.reason is None
    assert st.mean == pytest.approx(3.25)
    assert st.std == 0.0
    assert st.n == 900


def test_gaussian_roi_statistics():
    rng = np.random.default_rng(3)
    mu, sd = 5.0, 2.0
    img = rng.normal(mu, sd, (200, 200)).astype(np.float32)
    st = M.roi_stats(img, (100, 100), 30)
    # the population values within sampling error (n = 900) ...
    assert abs(st.mean - mu) < 4 * sd / 30
    assert abs(st.std - sd) < 4 * sd / math.sqrt(2 * 900)
    # ... and exactly numpy's sample statistics of the same block (ddof = 1)
    block = img[85:115, 85:115].astype(np.float64)
    assert st.mean == pytest.approx(block.mean(), rel=1e-12)
    assert st.std == pytest.approx(block.std(ddof=1), rel=1e-12)
    st0 = M.roi_stats(img, (100, 100), 30, ddof=0)
    assert st0.std == pytest.approx(block.std(ddof=0), rel=1e-12)
    assert st.n == 900


def test_cnr_known_regions_and_sign():
    rng = np.random.default_rng(4)
    img = np.empty((100, 200))
    img[:, :100] = rng.normal(1.0, 0.5, (100, 100))  # air: background
    img[:, 100:] = rng.normal(4.0, 1.0, (100, 100))  # tissue: signal
    res = M.cnr(img, (50, 150), (50, 50))
    expected = (4.0 - 1.0) / math.sqrt(0.5**2 + 1.0**2)
    assert res.reason is None
    assert abs(res.cnr - expected) < 4 * res.stderr
    assert res.cnr == pytest.approx(
        (res.signal.mean - res.background.mean) / math.hypot(res.signal.std, res.background.std)
    )
    assert res.signal.n == res.background.n == 900
    swapped = M.cnr(img, (50, 50), (50, 150))
    assert swapped.cnr == pytest.approx(-res.cnr)
    assert swapped.stderr == pytest.approx(res.stderr)


def test_cnr_one_noiseless_roi_is_defined():
    img = np.zeros((80, 80))
    img[:, 40:] = np.random.default_rng(5).normal(2.0, 1.0, (80, 40))
    res = M.cnr(img, (40, 60), (40, 19))
    assert res.reason is None
    assert res.background.std == 0.0
    assert res.cnr == pytest.approx(res.signal.mean / res.signal.std)


@pytest.mark.parametrize("dist", ["gaussian", "gamma"])
def test_cnr_stderr_matches_monte_carlo(dist):
    """The delta-method standard error predicts the repeat-to-repeat spread of the CNR."""
    rng = np.random.default_rng(11)
    n_rep, size = 1500, 20
    values, predicted = [], []
    for _ in range(n_rep):
        if dist == "gaussian":
            sig = rng.normal(3.0, 1.5, (size, size))
            bg = rng.normal(1.0, 1.0, (size, size))
        else:  # skewed, heavy-tailed pixels: the third and fourth moments matter
            sig = rng.gamma(2.0, 1.0, (size, size)) + 1.0
            bg = rng.gamma(1.0, 1.0, (size, size))
        img = np.hstack([sig, bg])
        res = M.cnr(img, (size / 2, size / 2), (size / 2, 1.5 * size), size)
        values.append(res.cnr)
        predicted.append(res.stderr)
    mc = float(np.std(values, ddof=1))
    # the MC standard deviation itself is uncertain by ~1/sqrt(2 n_rep) ~ 2 %
    assert float(np.median(predicted)) == pytest.approx(mc, rel=0.08)


def test_cnr_stderr_gaussian_closed_form():
    """For Gaussian statistics the general formula reduces to the textbook one."""
    rng = np.random.default_rng(12)
    img = np.hstack([rng.normal(2.0, 1.0, (30, 30)), rng.normal(0.0, 0.7, (30, 30))])
    res = M.cnr(img, (15, 15), (15, 45))
    s, b = res.signal, res.background
    V = s.var + b.var
    closed = math.sqrt(
        (s.var / s.n + b.var / b.n) / V
        + res.cnr**2 * (s.var**2 / (s.n - 1) + b.var**2 / (b.n - 1)) / (2 * V**2)
    )
    # sample skewness/kurtosis of Gaussian pixels are near 0/3: same to a few percent
    assert res.stderr == pytest.approx(closed, rel=0.05)


# --------------------------------------------------------------------------------------
# CNR: degenerate input
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("center", [(5, 50), (95, 50), (50, 3), (50, 97), (-40, -40)])
def test_cnr_roi_partly_outside_is_nan_not_clipped(center):
    img = np.random.default_rng(0).normal(size=(100, 100))
    res = M.cnr(img, center, (50, 50))
    assert math.isnan(res.cnr) and math.isnan(res.stderr)
    assert "outside" in res.reason and "signal" in res.reason
    assert math.isnan(res.signal.mean) and res.signal.n == 0
    assert res.background.reason is None  # the valid ROI is still reported
    assert res.background.n == 900


def test_cnr_nan_in_roi():
    img = np.random.default_rng(0).normal(size=(100, 100))
    img[50, 20] = np.nan
    res = M.cnr(img, (50, 75), (50, 25))
    assert math.isnan(res.cnr)
    assert "non-finite" in res.reason and "background" in res.reason


def test_cnr_zero_noise_in_both_rois():
    img = np.zeros((100, 100))
    img[:, 50:] = 1.0
    res = M.cnr(img, (50, 75), (50, 25))
    assert math.isnan(res.cnr) and math.isnan(res.stderr)
    assert "zero noise" in res.reason
    assert res.signal.mean == 1.0 and res.background.mean == 0.0


@pytest.mark.parametrize("shape", [(100,), (3, 100, 100), ()])
def test_cnr_not_2d(shape):
    img = np.zeros(shape)
    res = M.cnr(img, (50, 50), (50, 20))
    assert math.isnan(res.cnr)
    assert "2-D" in res.reason


def test_cnr_roi_too_small_and_nonfinite_centre():
    img = np.random.default_rng(0).normal(size=(50, 50))
    assert "too small" in M.cnr(img, (25, 25), (10, 10), size=1).reason
    assert "not finite" in M.cnr(img, (np.nan, 25), (10, 10)).reason


def test_cnr_malformed_centre_raises():
    with pytest.raises(ValueError, match="pair"):
        M.cnr(np.zeros((50, 50)), (1, 2, 3), (10, 10))


# --------------------------------------------------------------------------------------
# line profiles
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "start,end,lw",
    [
        ((10, 10), (10, 70), 1),
        ((5.3, 7.9), (60.2, 41.7), 1),
        ((70, 5), (3, 66), 3),
        ((20.5, 30.25), (50.75, 31.5), 4),
        ((30, 30), (30, 30.6), 1),
    ],
)
def test_line_profile_equals_skimage_profile_line(start, end, lw):
    img = np.random.default_rng(1).random((80, 80)).astype(np.float32)
    d, p = M.line_profile(img, start, end, linewidth=lw, order=1, mode="reflect")
    ref = profile_line(img, start, end, linewidth=lw, order=1, mode="reflect", reduce_func=np.mean)
    np.testing.assert_allclose(p, ref, rtol=1e-6, atol=1e-6)
    # distances are pixels: spacing length / (n - 1) <= 1, the last sample at the end
    length = math.dist(start, end)
    assert d[0] == 0.0
    assert d[-1] == pytest.approx(length)
    assert np.all(np.diff(d) <= 1.0 + 1e-12)
    assert d.size == math.ceil(length + 1)


# --------------------------------------------------------------------------------------
# FWHM
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("angle", [0, 30, 45, 90, 160])
@pytest.mark.parametrize("sigma", [2.0, 3.5])
def test_fwhm_noise_free_edges_at_angles(angle, sigma):
    center = (60.0, 60.0)
    img = erf_edge_image((121, 121), center, angle, sigma)
    start, end = line_across(center, angle, 45.0)
    res = M.fwhm(img, start, end)
    assert res.reason is None
    truth = M.FWHM_PER_SIGMA * sigma
    # bilinear sampling adds ~1/6 px^2 of variance (2 % at sigma 2); it is corrected
    assert res.fwhm == pytest.approx(truth, rel=0.01)
    assert res.edge_position == pytest.approx(45.0, abs=0.05)
    assert res.halfmax_fwhm == pytest.approx(truth, rel=0.05)
    assert res.amplitude == pytest.approx(0.5, rel=0.01)
    assert res.distance[-1] == pytest.approx(90.0)
    assert res.profile.shape == res.derivative.shape == res.fit.shape == res.distance.shape
    np.testing.assert_allclose(res.fit, res.profile, atol=0.01)
    # the LSF peaks at the edge
    assert abs(res.distance[np.argmax(res.derivative)] - 45.0) <= 1.0


def test_fwhm_falling_edge_and_oblique_line():
    """A bright-to-dark edge gives the same width; a line crossing the edge at angle phi
    measures the width stretched by 1/cos(phi)."""
    img = erf_edge_image((121, 121), (60, 60), 0, 3.0, low=2.0, high=0.5)
    res = M.fwhm(img, (60, 15), (60, 105))
    assert res.reason is None
    assert res.amplitude < 0
    assert res.fwhm == pytest.approx(M.FWHM_PER_SIGMA * 3.0, rel=0.02)
    assert np.max(res.derivative) > 0 > np.min(res.fit - 2.5)
    s, e = line_across((60, 60), 30, 45)  # edge normal at 0 deg, line at 30 deg
    tilted = M.fwhm(img, s, e)
    assert tilted.fwhm == pytest.approx(
        M.FWHM_PER_SIGMA * 3.0 / math.cos(math.radians(30)), rel=0.02
    )


def test_fwhm_uses_pixel_spacing_not_sample_index():
    """profile_line samples at length/(n-1) < 1 px; widths must come out in pixels."""
    sigma = 1.2
    img = erf_edge_image((40, 40), (20, 20), 0, sigma)
    start, end = (20.0, 14.0), (20.0, 26.4)  # length 12.4 -> 14 samples, spacing 0.954
    res = M.fwhm(img, start, end)
    assert res.spacing == pytest.approx(12.4 / 13)
    assert res.reason is None
    assert res.fwhm == pytest.approx(M.FWHM_PER_SIGMA * sigma, rel=0.02)
    assert res.edge_position == pytest.approx(6.0, abs=0.05)


def _noisy_fwhm(sigma, cnr, angles, n_each, linewidth, seed):
    """FWHM estimates of erf edges (step 1) in Gaussian noise of pixel-level CNR
    ``1 / sqrt(2 noise**2) = cnr`` (the paper's CNR definition, ROIs of the two sides)."""
    rng = np.random.default_rng(seed)
    noise = 1.0 / (cnr * SQRT2)
    out, stderr, halfmax = [], [], []
    for angle in angles:
        clean = erf_edge_image((110, 110), (55, 55), angle, sigma)
        s, e = line_across((55, 55), angle, 45.0)
        for _ in range(n_each):
            res = M.fwhm(clean + rng.normal(0.0, noise, clean.shape), s, e, linewidth=linewidth)
            if res.reason is None:
                out.append(res.fwhm)
                stderr.append(res.fwhm_stderr)
                halfmax.append(res.halfmax_fwhm)
    return np.array(out), np.array(stderr), np.array(halfmax)


@pytest.mark.parametrize("cnr,linewidth", [(3.0, 5), (5.0, 5), (5.0, 1)])
def test_fwhm_noisy_edges_median_accuracy(cnr, linewidth):
    """Median of many seeded noise realisations within a few percent of 2.3548 sigma.

    Per-realisation spreads here are 8-20 %, so the median of ~200 fits is known to
    about +/-2 %; the tolerance is 5 %.
    """
    sigma = 4.0
    truth = M.FWHM_PER_SIGMA * sigma
    est, stderr, halfmax = _noisy_fwhm(sigma, cnr, (0, 30, 45, 90), 50, linewidth, seed=7)
    assert est.size >= 190  # nearly every fit is valid at these contrasts
    assert np.median(est) == pytest.approx(truth, rel=0.05)
    # and the stated uncertainty has the size of the actual scatter (robust spread)
    spread = 1.4826 * np.median(np.abs(est - np.median(est)))
    assert 0.6 < spread / np.median(stderr) < 1.7


def test_fwhm_naive_halfmax_is_worse_than_the_fit():
    """The smoothed half-max cross-check scatters more than the erf fit on noisy edges."""
    truth = M.FWHM_PER_SIGMA * 4.0
    est, _, halfmax = _noisy_fwhm(4.0, 3.0, (30,), 60, 5, seed=8)
    hm = halfmax[np.isfinite(halfmax)]
    fit_err = np.median(np.abs(est / truth - 1))
    hm_err = np.median(np.abs(hm / truth - 1))
    assert fit_err < hm_err


# --------------------------------------------------------------------------------------
# FWHM: degenerate input
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def edge_img():
    return erf_edge_image((100, 100), (50, 50), 0, 3.0)


def _assert_nan(res, *words):
    assert math.isnan(res.fwhm) and math.isnan(res.fwhm_stderr)
    assert res.reason, "a NaN needs a reason"
    for w in words:
        assert w in res.reason, res.reason


def test_fwhm_zero_length_line(edge_img):
    _assert_nan(M.fwhm(edge_img, (50, 50), (50, 50)), "zero-length")


def test_fwhm_very_short_line(edge_img):
    _assert_nan(M.fwhm(edge_img, (50, 48), (50, 51)), "too short")


@pytest.mark.parametrize(
    "start,end,lw",
    [
        ((50, 10), (50, 100), 1),  # the end point is past the last column
        ((-1, 10), (60, 80), 1),
        ((0, 10), (0, 90), 3),  # the centre line fits, the 3-px band does not
    ],
)
def test_fwhm_line_leaving_image(edge_img, start, end, lw):
    _assert_nan(M.fwhm(edge_img, start, end, linewidth=lw), "leaves the image")


def test_fwhm_flat_profile():
    _assert_nan(M.fwhm(np.full((60, 60), 7.0), (30, 5), (30, 55)), "flat")


def test_fwhm_edge_at_end_of_line(edge_img):
    # the edge at col 50 is only 2 px from the end of the line
    _assert_nan(M.fwhm(edge_img, (50, 10), (50, 52)), "end of the line")
    # or not crossed at all: the line ends before the edge
    res = M.fwhm(edge_img, (50, 5), (50, 40))
    assert math.isnan(res.fwhm) and res.reason


def test_fwhm_pure_noise_has_no_edge():
    img = np.random.default_rng(2).normal(size=(60, 60))
    res = M.fwhm(img, (30, 5), (30, 55))
    assert math.isnan(res.fwhm) and res.reason


def test_fwhm_failed_fit_is_reported(edge_img, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found: maxfev exceeded")

    monkeypatch.setattr(edge, "curve_fit", boom)  # the module whose fit is tested
    res = M.fwhm(edge_img, (50, 10), (50, 90))
    _assert_nan(res, "fit failed")
    assert res.profile.size == res.distance.size > 0  # the profile is still there to plot


def test_fwhm_nan_on_profile(edge_img):
    img = edge_img.copy()
    img[50, 30] = np.nan
    _assert_nan(M.fwhm(img, (50, 10), (50, 90)), "non-finite")


@pytest.mark.parametrize("shape", [(100,), (2, 100, 100)])
def test_fwhm_not_2d(shape):
    _assert_nan(M.fwhm(np.zeros(shape), (50, 10), (50, 90)), "2-D")


# --------------------------------------------------------------------------------------
# PSNR / SSIM
# --------------------------------------------------------------------------------------
def test_psnr_ssim_identities():
    ref = np.random.default_rng(3).random((64, 64)).astype(np.float32)
    assert M.psnr(ref, ref) == math.inf
    assert M.ssim(ref, ref) == pytest.approx(1.0)
    # a constant offset c: MSE = c^2, PSNR = 10 log10(range^2 / c^2)
    c = 0.05
    rng_ = float(ref.max() - ref.min())
    assert M.psnr(ref + c, ref) == pytest.approx(10 * math.log10(rng_**2 / c**2), rel=1e-5)
    assert M.ssim(ref + np.random.default_rng(4).normal(0, 0.2, ref.shape), ref) < 0.9


def test_psnr_ssim_agree_with_scikit_image():
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = np.random.default_rng(5)
    ref = rng.random((50, 60)).astype(np.float32)
    img = (ref + rng.normal(0, 0.1, ref.shape)).astype(np.float32)
    dr = float(ref.max()) - float(ref.min())
    r64, i64 = ref.astype(np.float64), img.astype(np.float64)
    assert M.psnr(img, ref) == pytest.approx(
        peak_signal_noise_ratio(r64, i64, data_range=dr), rel=1e-9
    )
    assert M.ssim(img, ref) == pytest.approx(
        structural_similarity(r64, i64, data_range=dr), rel=1e-6
    )
    both = M.reference_metrics(img, ref)
    assert both["psnr"] == M.psnr(img, ref) and both["ssim"] == M.ssim(img, ref)
    assert M.psnr(img, ref, data_range=2.0) == pytest.approx(
        peak_signal_noise_ratio(r64, i64, data_range=2.0), rel=1e-9
    )


def test_psnr_ssim_degenerate():
    a = np.zeros((32, 32))
    for fn in (M.psnr, M.ssim):
        v, why = fn(a, np.zeros((32, 30)), return_reason=True)
        assert math.isnan(v) and "shape" in why
        v, why = fn(a, a, return_reason=True)  # constant reference: no data range
        assert math.isnan(v) and "constant" in why
        v, why = fn(np.zeros((2, 32, 32)), a, return_reason=True)
        assert math.isnan(v) and "2-D" in why


# --------------------------------------------------------------------------------------
# measure()
# --------------------------------------------------------------------------------------
def test_measure_json_friendly_and_consistent():
    rng = np.random.default_rng(9)
    clean = erf_edge_image((128, 128), (64, 64), 0, 3.0, low=0.2, high=1.2)
    img = (clean + rng.normal(0, 0.1, clean.shape)).astype(np.float32)
    out = M.measure(img, (64, 100), (64, 28), reference=clean)
    json.loads(json.dumps(out, allow_nan=False))
    for key in (
        "cnr",
        "cnr_stderr",
        "fwhm",
        "fwhm_stderr",
        "signal_mean",
        "signal_std",
        "background_mean",
        "background_std",
        "psnr",
        "ssim",
        "reason",
    ):
        assert key in out
    direct = M.cnr(img, (64, 100), (64, 28))
    assert out["cnr"] == pytest.approx(direct.cnr)
    assert out["fwhm"] == pytest.approx(M.fwhm(img, (64, 100), (64, 28)).fwhm)
    assert out["cnr"] > 0  # the signal ROI sits on the bright side
    assert out["reason"] is None and out["reasons"] == {}
    assert out["fwhm"] == pytest.approx(M.FWHM_PER_SIGMA * 3.0, rel=0.15)
    assert out["edge_position"] == pytest.approx(36.0, abs=1.0)
    # noise 0.1 on a reference of range 1.0: PSNR = 10 log10(1 / 0.01) = 20 dB
    assert out["psnr"] == pytest.approx(20.0, abs=0.3)
    assert 0 < out["ssim"] < 1
    assert out["signal_n"] == out["background_n"] == 900
    assert out["line"] == [[64.0, 100.0], [64.0, 28.0]]  # defaults to the ROI centres

    plain = M.measure(img, (64, 100), (64, 28))
    assert plain["psnr"] is None and plain["ssim"] is None and plain["reason"] is None


def test_measure_undefined_values_are_none_with_reason():
    img = erf_edge_image((64, 96), (32, 48), 0, 2.0)
    out = M.measure(img, (32, 70), (32, 2), line=[[32, 70], [32, 100]])
    json.dumps(out, allow_nan=False)
    assert out["cnr"] is None and out["fwhm"] is None
    assert "CNR" in out["reason"] and "FWHM" in out["reason"]
    assert "outside" in out["reasons"]["cnr"] and "leaves" in out["reasons"]["fwhm"]
    assert out["signal_mean"] == pytest.approx(1.0, abs=1e-3)  # the valid ROI is kept


def test_measure_reads_only_the_rois_and_the_line():
    """NaNs everywhere except the two ROIs and the pixels along the line do not matter."""
    rng = np.random.default_rng(10)
    clean = erf_edge_image((200, 200), (100, 100), 0, 3.0)
    img = clean + rng.normal(0, 0.05, clean.shape)
    sparse = np.full_like(img, np.nan)
    sparse[85:115, 125:155] = img[85:115, 125:155]
    sparse[85:115, 45:75] = img[85:115, 45:75]
    sparse[99:102, 58:142] = img[99:102, 58:142]
    a = M.measure(img, (100, 140), (100, 60))
    b = M.measure(sparse, (100, 140), (100, 60))
    assert b["reason"] is None
    for key in ("cnr", "cnr_stderr", "fwhm", "fwhm_stderr", "signal_std"):
        assert a[key] == b[key]


def test_measure_identical_reference():
    ref = erf_edge_image((64, 64), (32, 32), 0, 2.0) + np.random.default_rng(1).normal(
        0, 0.05, (64, 64)
    )
    full = M.measure_all(ref, (32, 48), (32, 16), reference=ref)
    assert full.psnr == math.inf and full.ssim == pytest.approx(1.0)
    assert "psnr" not in full.reasons  # infinite, not undefined
    # the JSON dict follows the package's one NaN rule: non-finite numbers are None, so
    # the infinite PSNR is None there, without a reason, and the dict is strict JSON
    out = M.measure(ref, (32, 48), (32, 16), reference=ref)
    assert out["psnr"] is None and "psnr" not in out["reasons"]
    assert out["ssim"] == pytest.approx(1.0)
    json.dumps(out, allow_nan=False)
