"""Amplification maps: end points, closed forms, symmetry, monotonicity, cache, cropping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_dfct import weights as W

SHAPES = [(8, 8), (7, 9), (33, 33), (64, 48), (15, 40)]
ON = ("linear", "nonlinear")


def _distance(shape):
    """Distance of each pixel from (H // 2, W // 2), computed independently."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    return np.hypot(yy - h // 2, xx - w // 2)


def _freq_radius(shape):
    """|f| in cycles/pixel from numpy's fftfreq, independent of the module."""
    fy = np.fft.fftfreq(shape[0])
    fx = np.fft.fftfreq(shape[1])
    return np.hypot(fy[:, None], fx[None, :])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("profile", ON)
def test_spatial_range_exact(shape, profile):
    a = W.spatial_weight(shape, profile).numpy()
    assert a.shape == shape and a.dtype == np.float32
    assert a.min() == 1.0 and a.max() == 2.0
    assert a[shape[0] // 2, shape[1] // 2] == 2.0
    d = _distance(shape)
    # the farthest pixel(s) weigh exactly 1
    assert np.all(a[d == d.max()] == 1.0)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("profile", ON)
def test_frequency_range_exact(shape, profile):
    a = W.frequency_weight(shape, profile).numpy()
    assert a.min() == 1.0 and a.max() == 2.0
    assert a[0, 0] == 1.0
    f = _freq_radius(shape)
    assert np.all(a[np.isclose(f, f.max())] == 2.0)
    if shape[0] % 2 == 0 and shape[1] % 2 == 0:  # Nyquist corner bin
        assert a[shape[0] // 2, shape[1] // 2] == 2.0


@pytest.mark.parametrize("shape", SHAPES)
def test_linear_closed_forms_match_independent_grids(shape):
    d = _distance(shape)
    np.testing.assert_allclose(W.spatial_weight_np(shape, "linear"), 2 - d / d.max(), atol=1e-12)
    f = _freq_radius(shape)
    np.testing.assert_allclose(W.frequency_weight_np(shape, "linear"), 1 + f / f.max(), atol=1e-12)
    rho = f / f.max()
    np.testing.assert_allclose(
        W.frequency_weight_np(shape, "nonlinear"), 2 - (1 - rho) ** 3, atol=1e-12
    )
    np.testing.assert_allclose(W.frequency_weight_np(shape, "sqrt"), 1 + np.sqrt(rho), atol=1e-12)


def test_none_is_ones():
    assert torch.equal(W.spatial_weight((5, 6), "none"), torch.ones(5, 6))
    assert torch.equal(W.frequency_weight((5, 6), "none"), torch.ones(5, 6))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("profile", ON)
def test_frequency_weight_is_hermitian_symmetric(shape, profile):
    a = W.frequency_weight(shape, profile).numpy()
    h, w = shape
    iy = (-np.arange(h)) % h
    ix = (-np.arange(w)) % w
    assert np.array_equal(a, a[iy][:, ix])  # exact, not approximate


@pytest.mark.parametrize("shape", [(33, 33), (64, 48)])
@pytest.mark.parametrize("profile", ON)
def test_radial_monotonicity(shape, profile):
    a_s = W.spatial_weight_np(shape, profile).ravel()
    d = _distance(shape).ravel()
    order = np.argsort(d, kind="stable")
    assert np.all(np.diff(a_s[order]) <= 1e-12)  # non-increasing with distance
    a_f = W.frequency_weight_np(shape, profile).ravel()
    f = _freq_radius(shape).ravel()
    order = np.argsort(f, kind="stable")
    assert np.all(np.diff(a_f[order]) >= -1e-12)  # non-decreasing with frequency


def test_nonlinear_frequency_raises_mid_and_high_bands():
    r = np.linspace(0, 1, 201)
    lin = W.frequency_profile(r, "linear")
    non = W.frequency_profile(r, "nonlinear")
    assert non[0] == lin[0] == 1.0 and non[-1] == lin[-1] == 2.0
    inner = (r > 0) & (r < 1)
    assert np.all(non[inner] > lin[inner])
    mid_high = (r >= 0.25) & (r <= 0.8)
    assert np.all(non[mid_high] - lin[mid_high] >= 0.05)
    # the lift over linear peaks in the mid band (rho = 1 - 1/sqrt(3) = 0.42); the 0.1
    # profile (sqrt) peaks at 0.25 and lies above the new one below rho = 0.152 only:
    # mid and high bands are raised further, low bands less
    lift = non - lin
    assert r[np.argmax(lift)] == pytest.approx(1 - 3**-0.5, abs=0.006)
    sq = W.frequency_profile(r, "sqrt")
    assert r[np.argmax(sq - lin)] == pytest.approx(0.25, abs=0.006)
    assert np.all(non[(r >= 0.35) & (r < 1)] > sq[(r >= 0.35) & (r < 1)])
    assert np.all(non[(r > 0) & (r <= 0.1)] < sq[(r > 0) & (r <= 0.1)])
    # and on a real spectrum
    shape = (32, 40)
    lin_map = W.frequency_weight_np(shape, "linear")
    assert np.all(W.frequency_weight_np(shape, "nonlinear") >= lin_map)


def test_sqrt_is_a_frequency_profile_only():
    assert W.frequency_weight((8, 8), "sqrt").max() == 2.0
    with pytest.raises(ValueError, match="valid profiles"):
        W.spatial_weight((8, 8), "sqrt")


def test_nonlinear_spatial_smoother_edges_sharper_transition():
    """Criterion: |dA/dr| over the outer fifth of the radius (r >= 0.8) stays below a quarter
    of the linear profile's constant slope (1), and the steepest slope anywhere exceeds twice
    the linear one (a sharper ROI/background transition)."""
    r = np.linspace(0, 1, 2001)
    lin = np.abs(np.gradient(W.spatial_profile(r, "linear"), r))
    non = np.abs(np.gradient(W.spatial_profile(r, "nonlinear"), r))
    np.testing.assert_allclose(lin, 1.0, atol=1e-9)
    assert non[r >= 0.8].max() < 0.25
    assert non.max() > 2.0
    # the same on a 2-D map: mean gradient magnitude near the corners is lower
    shape = (96, 96)
    d = _distance(shape)
    outer = d / d.max() >= 0.85

    def grad_mag(a):
        gy, gx = np.gradient(a)
        return np.hypot(gy, gx)

    g_lin = grad_mag(W.spatial_weight_np(shape, "linear"))[outer].mean()
    g_non = grad_mag(W.spatial_weight_np(shape, "nonlinear"))[outer].mean()
    assert g_non < 0.5 * g_lin


def test_inscribed_edge_clamps_outside_circle():
    shape = (21, 31)
    a = W.spatial_weight_np(shape, "linear", edge="inscribed")
    d = _distance(shape)
    radius = min(shape) // 2
    assert a[10, 15] == 2.0
    assert np.all(a[d >= radius] == 1.0)
    np.testing.assert_allclose(a[d < radius], 2 - d[d < radius] / radius)


def test_normalize_gives_mean_one():
    for prof in ON:
        a_s = W.spatial_weight_np((40, 50), prof, normalize=True)
        assert a_s.mean() == pytest.approx(1, abs=1e-12)
        f = W.frequency_weight((40, 50), prof, normalize=True, dtype=torch.float64)
        assert float(f.mean()) == pytest.approx(1, abs=1e-12)
        assert float(f[0, 0]) == pytest.approx(1 / W.frequency_weight_np((40, 50), prof).mean())


def test_cache_returns_same_object():
    a = W.spatial_weight((30, 31), "nonlinear")
    assert W.spatial_weight((30, 31), "nonlinear") is a
    assert W.spatial_weight([30, 31], "nonlinear", device="cpu") is a
    assert W.spatial_weight((30, 31), "nonlinear", dtype=torch.float64) is not a
    f = W.frequency_weight((30, 31), "linear")
    assert W.frequency_weight((30, 31), "linear") is f
    W.clear_cache()
    assert W.spatial_weight((30, 31), "nonlinear") is not a
    assert torch.equal(W.spatial_weight((30, 31), "nonlinear"), a)


def test_crop_matches_slicing():
    a = W.spatial_weight((40, 50), "linear")
    np.testing.assert_array_equal(W.crop(a, 5, 7, 10, 12).numpy(), a.numpy()[5:15, 7:19])
    np.testing.assert_array_equal(W.crop(a.numpy(), 0, 0, 40, 50), a.numpy())
    corners = [(0, 0), (30, 40), (12, 3)]
    batch = W.crop_batch(a, corners, 10)
    assert batch.shape == (3, 1, 10, 10)
    for i, (top, left) in enumerate(corners):
        np.testing.assert_array_equal(
            batch[i, 0].numpy(), a.numpy()[top : top + 10, left : left + 10]
        )
    rect = W.crop_batch(a, torch.tensor([[1, 2]]), (5, 8))
    np.testing.assert_array_equal(rect[0, 0].numpy(), a.numpy()[1:6, 2:10])
    with pytest.raises(ValueError):
        W.crop(a, 35, 0, 10)
    with pytest.raises(ValueError):
        W.crop_batch(a, [(31, 0)], 10)


def test_fftshift_puts_dc_in_the_middle():
    a = W.frequency_weight((8, 9), "linear")
    assert float(W.fftshift(a)[4, 4]) == 1.0
    assert W.fftshift(a.numpy())[4, 4] == 1.0


def test_radial_profile_and_errors():
    r, w = W.radial_profile("spatial", "linear", n=11)
    np.testing.assert_allclose(w, 2 - r)
    r, w = W.radial_profile("frequency", "nonlinear", n=5)
    assert w[0] == 1 and w[-1] == 2
    with pytest.raises(ValueError, match="valid profiles"):
        W.spatial_weight((4, 4), "cubic")
    with pytest.raises(ValueError):
        W.frequency_weight((0, 4))
    with pytest.raises(ValueError):
        W.radial_profile("time")
    with pytest.raises(ValueError):
        W.spatial_weight((4, 4), edge="square")
