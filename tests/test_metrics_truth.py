"""Truth-based metrics: the error CNR and PSNR/SSIM/RMSE inside a body mask, against hand
computations, scikit-image and their intended behaviour (smoothing real texture raises the
classic CNR but lowers the error CNR)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from napari_dfct import metrics as M


# --------------------------------------------------------------------------------------
# error CNR
# --------------------------------------------------------------------------------------
def test_error_cnr_by_hand():
    """2x2 ROIs: signal rows/cols 1-2 (centre (2, 2)), background rows/cols 5-6 (centre
    (6, 6)). Signal image 5 6 / 7 8 (mean 6.5), reference 5 5 / 7 7: e = 0 1 0 1, sum of
    squared deviations 1, var 1/3. Background image 1 1 / 2 2 (mean 1.5), reference
    1 2 / 2 1: e = 0 -1 0 1, ss 2, var 2/3. error CNR = (6.5 - 1.5) / sqrt(1/3 + 2/3) = 5."""
    img = np.zeros((8, 8))
    ref = np.zeros((8, 8))
    img[1:3, 1:3] = [[5, 6], [7, 8]]
    ref[1:3, 1:3] = [[5, 5], [7, 7]]
    img[5:7, 5:7] = [[1, 1], [2, 2]]
    ref[5:7, 5:7] = [[1, 2], [2, 1]]
    res = M.error_cnr(img, ref, (2, 2), (6, 6), 2)
    assert res.reason is None
    assert res.error_cnr == pytest.approx(5.0, rel=1e-12)
    assert res.contrast == pytest.approx(5.0)
    assert res.signal_error.var == pytest.approx(1 / 3)
    assert res.background_error.var == pytest.approx(2 / 3)
    # ddof=0: variances 1/4 and 2/4, error CNR 5 / sqrt(3/4)
    assert M.error_cnr(img, ref, (2, 2), (6, 6), 2, ddof=0).error_cnr == pytest.approx(
        5.0 / math.sqrt(0.75)
    )
    # the sign is kept, as in the classic CNR
    assert M.error_cnr(img, ref, (6, 6), (2, 2), 2).error_cnr == pytest.approx(-5.0)


def _textured_scene(seed=0, size=96, texture=1.0, contrast=3.0):
    """Air (0) on the left, lung (``contrast``) with white texture of std ``texture`` on
    the right: a streak-free truth with real fine-grained texture."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((size, size))
    truth[:, size // 2 :] = contrast + rng.normal(0, texture, (size, size - size // 2))
    return truth


SIG, BG = (48, 72), (48, 20)


def test_error_cnr_falls_with_noise_and_equals_the_contrast_over_the_noise():
    truth = _textured_scene()
    rng = np.random.default_rng(1)
    values = []
    for sd in (0.1, 0.3, 1.0):
        noisy = truth + rng.normal(0, sd, truth.shape)
        res = M.error_cnr(noisy, truth, SIG, BG, 30)
        values.append(res.error_cnr)
        # the noise term is the added noise alone: the truth's texture is not error
        assert res.signal_error.std == pytest.approx(sd, rel=0.1)
        assert res.error_cnr == pytest.approx(3.0 / (sd * math.sqrt(2)), rel=0.1)
    assert values[0] > values[1] > values[2]
    # a constant offset of the image is no error: only the error's fluctuations count
    noisy = truth + rng.normal(0, 0.3, truth.shape)
    assert M.error_cnr(noisy + 2.0, truth, SIG, BG, 30).error_cnr == pytest.approx(
        M.error_cnr(noisy, truth, SIG, BG, 30).error_cnr
    )


def test_blurring_raises_the_classic_cnr_but_lowers_the_error_cnr():
    """The failure the error CNR removes: smoothing the lung's real texture lowers the ROI
    standard deviations (classic CNR up), but the removed texture is error."""
    truth = _textured_scene()
    noisy = truth + np.random.default_rng(2).normal(0, 0.2, truth.shape)
    blurred = gaussian_filter(noisy, 2.0)
    classic = M.cnr(noisy, SIG, BG, 30).cnr, M.cnr(blurred, SIG, BG, 30).cnr
    err = (
        M.error_cnr(noisy, truth, SIG, BG, 30).error_cnr,
        M.error_cnr(blurred, truth, SIG, BG, 30).error_cnr,
    )
    assert classic[1] > 2 * classic[0]
    assert err[1] < err[0] / 2
    # the truth blurred: classic CNR above the truth's own, error CNR finite (the truth
    # against itself has no error: infinite)
    tb = gaussian_filter(truth, 2.0)
    assert M.cnr(tb, SIG, BG, 30).cnr > M.cnr(truth, SIG, BG, 30).cnr
    assert M.error_cnr(truth, truth, SIG, BG, 30).error_cnr == math.inf
    assert math.isfinite(M.error_cnr(tb, truth, SIG, BG, 30).error_cnr)


def test_error_cnr_degenerate_cases_are_nan_with_a_reason():
    truth = _textured_scene()
    res = M.error_cnr(truth, truth[:, :90], SIG, BG, 30)
    assert math.isnan(res.error_cnr) and "shape" in res.reason
    res = M.error_cnr(truth, truth, (48, 90), BG, 30)
    assert math.isnan(res.error_cnr) and "outside" in res.reason
    bad_ref = truth.copy()
    bad_ref[48, 72] = np.nan
    res = M.error_cnr(truth + 0.1, bad_ref, SIG, BG, 30)
    assert math.isnan(res.error_cnr) and "non-finite" in res.reason
    flat = np.zeros((64, 64))
    res = M.error_cnr(flat, flat, (20, 20), (40, 40), 10)
    assert math.isnan(res.error_cnr) and "zero contrast" in res.reason
    res = M.error_cnr(np.zeros((2, 64, 64)), flat, (20, 20), (40, 40), 10)
    assert math.isnan(res.error_cnr) and "2-D" in res.reason


# --------------------------------------------------------------------------------------
# body-masked PSNR / SSIM / RMSE
# --------------------------------------------------------------------------------------
def _body_scene():
    rng = np.random.default_rng(3)
    ref = rng.random((64, 64)) + 1.0  # values in [1, 2) inside the body
    mask = np.zeros((64, 64), np.uint8)
    mask[10:50, 12:54] = 1
    ref[mask == 0] = -5.0  # air far outside the body's range
    return ref, mask


def test_body_psnr_and_rmse_by_hand_ignore_the_outside():
    ref, mask = _body_scene()
    c = 0.05
    img = ref + c
    img[mask == 0] = 100.0  # anything outside the body does not count
    inside = ref[mask == 1]
    dr = inside.max() - inside.min()
    assert M.rmse_body(img, ref, mask) == pytest.approx(c, rel=1e-9)
    assert M.psnr_body(img, ref, mask) == pytest.approx(20 * math.log10(dr / c), rel=1e-9)
    assert M.psnr_body(img, ref, mask, data_range=2.0) == pytest.approx(
        20 * math.log10(2.0 / c), rel=1e-9
    )
    both = M.body_metrics(img, ref, mask)
    assert both["rmse_body"] == pytest.approx(c) and both["body_reason"] is None
    # identical inside the body: infinite PSNR, zero RMSE, SSIM 1
    same = ref.copy()
    same[mask == 0] = 0.0
    assert M.psnr_body(ref, ref, mask) == math.inf
    assert M.rmse_body(ref, ref, mask) == 0.0
    assert M.ssim_body(ref, ref, mask) == pytest.approx(1.0)


def test_body_ssim_is_the_masked_mean_of_the_full_slice_map():
    from skimage.metrics import structural_similarity

    ref, mask = _body_scene()
    img = ref + np.random.default_rng(4).normal(0, 0.1, ref.shape)
    inside = ref[mask == 1]
    dr = inside.max() - inside.min()
    _, smap = structural_similarity(ref, img, data_range=dr, full=True)
    assert M.ssim_body(img, ref, mask) == pytest.approx(smap[mask == 1].mean(), rel=1e-9)
    # a mask covering the slice gives scikit-image's mean SSIM with the same data range
    full = np.ones_like(mask)
    assert M.ssim_body(img, ref, full, data_range=3.0) == pytest.approx(
        structural_similarity(ref, img, data_range=3.0), rel=1e-9
    )
    assert M.ssim_body(img, ref, full, data_range=3.0) == pytest.approx(
        M.ssim(img, ref, data_range=3.0), rel=1e-6
    )


def test_body_metrics_degenerate_cases():
    ref, mask = _body_scene()
    for fn in (M.psnr_body, M.ssim_body):
        v, why = fn(ref, ref, np.zeros_like(mask), return_reason=True)
        assert math.isnan(v) and "empty" in why
        v, why = fn(ref, ref, mask[:, :60], return_reason=True)
        assert math.isnan(v) and "mask shape" in why
        flat = np.where(mask == 1, 1.5, 0.0)
        v, why = fn(flat + 0.1, flat, mask, return_reason=True)
        assert math.isnan(v) and "constant" in why
    v, why = M.rmse_body(ref, ref[:, :60], mask, return_reason=True)
    assert math.isnan(v) and "shape" in why
    border = np.zeros_like(mask)
    border[0, :] = 1
    v, why = M.ssim_body(ref + 0.1, ref, border, data_range=1.0, return_reason=True)
    assert math.isnan(v) and "border" in why


# --------------------------------------------------------------------------------------
# measure()
# --------------------------------------------------------------------------------------
def test_measure_adds_the_truth_metrics_and_keeps_the_classic_ones():
    truth = _textured_scene()
    img = truth + np.random.default_rng(5).normal(0, 0.3, truth.shape)
    mask = np.zeros(truth.shape, np.uint8)
    mask[8:88, 8:88] = 1
    plain = M.measure(img, SIG, BG)
    ref_only = M.measure(img, SIG, BG, reference=truth)
    full = M.measure(img, SIG, BG, reference=truth, mask=mask)
    json.dumps(full, allow_nan=False)
    for key in ("cnr", "cnr_stderr", "fwhm", "signal_std", "background_std"):
        assert plain[key] == ref_only[key] == full[key]
    assert ref_only["psnr"] == full["psnr"] and ref_only["ssim"] == full["ssim"]
    # without a reference: no truth metrics; without a mask: no body metrics, no reason
    for key in ("error_cnr", "psnr_body", "ssim_body", "rmse_body"):
        assert plain[key] is None
    assert ref_only["error_cnr"] == pytest.approx(M.error_cnr(img, truth, SIG, BG).error_cnr)
    assert ref_only["psnr_body"] is None and "psnr_body" not in ref_only["reasons"]
    assert full["psnr_body"] == pytest.approx(M.psnr_body(img, truth, mask))
    assert full["ssim_body"] == pytest.approx(M.ssim_body(img, truth, mask))
    assert full["rmse_body"] == pytest.approx(0.3, rel=0.05)
    assert full["signal_error_std"] == pytest.approx(0.3, rel=0.1)
    # an empty mask: the body metrics are undefined, with a reason
    empty = M.measure(img, SIG, BG, reference=truth, mask=np.zeros_like(mask))
    assert empty["psnr_body"] is None and "empty" in empty["reasons"]["psnr_body"]
    assert "PSNR_BODY" in empty["reason"]
    # the reference itself: infinite error CNR and PSNR (None in JSON, no reason)
    same = M.measure_all(truth, SIG, BG, reference=truth, mask=mask)
    assert same.error_cnr.error_cnr == math.inf and same.psnr_body == math.inf
    assert "error_cnr" not in same.reasons and "psnr_body" not in same.reasons
