"""The loss scale measured on the real error (:func:`napari_dfct.losses.measured_scale`),
checked against cases with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_dfct.losses import effective_scale, measured_scale


@pytest.fixture(scope="module")
def white():
    rng = np.random.default_rng(0)
    y = rng.uniform(0.2, 0.8, (4, 64, 64)).astype(np.float32)
    return (y + 0.05 * rng.standard_normal(y.shape)).astype(np.float32), y


def test_plain_is_one_and_a_constant_factor_is_itself(white):
    assert measured_scale("l2", *white, 32)["scale"] == pytest.approx(1.0, abs=1e-12)
    assert measured_scale("l2@1.47", *white, 32)["scale"] == pytest.approx(1.47, rel=1e-6)


def test_paper_frequency_weight_keeps_only_dc(white):
    """DC identity: mean(Re IFFT(A_F FFT(L))) = A_F(DC) mean(L) = mean(L)."""
    m = measured_scale("l2+f-nonlinear", *white, 32)
    assert m["scale"] == pytest.approx(1.0, abs=1e-5)
    assert m["q25"] == pytest.approx(1.0, abs=1e-5) and m["q75"] == pytest.approx(1.0, abs=1e-5)


def test_spectral_weight_on_a_white_error_is_the_white_bound(white):
    """On a white error the measured gain is mean(A_F^2), the bound effective_scale states;
    the margin is the Monte-Carlo spread of the per-patch ratios over 1024 patches."""
    m = measured_scale("l2+f-nonlinear-spectral", *white, 32, n_patches=1024)
    bound = effective_scale("l2+f-nonlinear-spectral", (64, 64), 32)["scale"]
    spread = (m["q75"] - m["q25"]) / 1.349  # robust standard deviation of one ratio
    assert abs(m["scale"] - bound) < 4 * spread / np.sqrt(1024) + 0.02 * bound


def test_spectral_weight_on_a_smooth_error_is_far_below_the_bound():
    """A low-frequency error (like a broad streak) gets little of a high-pass weight."""
    yy, xx = np.mgrid[:64, :64] / 64.0
    y = np.zeros((2, 64, 64), np.float32) + 0.5
    x = y + (0.1 * np.sin(2 * np.pi * xx)).astype(np.float32)
    m = measured_scale("l2+f-nonlinear-spectral", x, y, 32)
    assert (
        1.0 <= m["scale"] < 0.5 * effective_scale("l2+f-nonlinear-spectral", (64, 64), 32)["scale"]
    )


def test_bad_shapes_are_refused(white):
    with pytest.raises(ValueError, match="one shape"):
        measured_scale("l2", white[0], white[1][:2], 32)
