"""Intensity window, train/validation split and the on-device patch sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_dfct.data import (
    IntensityWindow,
    PatchSampler,
    sample_coordinates,
    split_slices,
    validate_pair,
    window_from_percentiles,
)
from napari_dfct.weights import spatial_weight


# ------------------------------------------------------------------ window
def test_window_normalize_clips_scales_and_inverts():
    w = IntensityWindow(-2.0, 6.0)
    x = np.array([-5.0, -2.0, 0.0, 2.0, 6.0, 9.0], dtype=np.float32)
    n = w.normalize(x)
    assert n.dtype == np.float32
    np.testing.assert_allclose(n, [0, 0, 0.25, 0.5, 1, 1], atol=1e-7)
    # inverse of the scaling inside the window; clipped values map to the window edges
    np.testing.assert_allclose(w.denormalize(n), np.clip(x, -2, 6), atol=1e-6)
    # torch and numpy agree, and so do scalars
    t = w.normalize(torch.from_numpy(x))
    np.testing.assert_allclose(t.numpy(), n, atol=1e-7)
    assert w.normalize(2.0) == pytest.approx(0.5)
    assert w.denormalize(0.25) == pytest.approx(0.0)
    # predictions outside [0, 1] are not clipped on the way back
    assert w.denormalize(np.float32(1.5)) == pytest.approx(10.0)
    assert IntensityWindow.from_dict(w.to_dict()) == w


@pytest.mark.parametrize(
    "low,high", [(1.0, 1.0), (2.0, 1.0), (0.0, float("nan")), (float("-inf"), 0)]
)
def test_window_rejects_degenerate(low, high):
    with pytest.raises(ValueError, match="window"):
        IntensityWindow(low, high)


def test_window_from_percentiles_pools_volumes():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 20, 20)).astype(np.float32)
    b = rng.normal(3.0, 2.0, size=(3, 20, 20)).astype(np.float32)
    w = window_from_percentiles(a, b, lower=2, upper=97)
    lo, hi = np.percentile(np.concatenate([a.ravel(), b.ravel()]), [2, 97])
    assert w.low == pytest.approx(lo, rel=1e-6)
    assert w.high == pytest.approx(hi, rel=1e-6)
    const = window_from_percentiles(np.full((2, 4, 4), 5.0))
    assert (const.low, const.high) == (5.0, 6.0)


# ------------------------------------------------------------------ split
@pytest.mark.parametrize("n,expected_val", [(2, 1), (3, 1), (10, 2), (16, 3), (89, 18)])
def test_split_sizes_cover_and_disjoint(n, expected_val):
    tr, va = split_slices(n, 0.2, seed=3)
    assert len(va) == expected_val and len(tr) == n - expected_val
    assert set(tr).isdisjoint(va)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(n))


def test_split_seeded():
    a = split_slices(20, 0.2, seed=1)
    b = split_slices(20, 0.2, seed=1)
    c = split_slices(20, 0.2, seed=2)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    # a large fraction still leaves one training slice
    tr, va = split_slices(3, 0.9)
    assert len(tr) == 1 and len(va) == 2


def test_split_errors():
    with pytest.raises(ValueError, match="at least 2 slices"):
        split_slices(1)
    with pytest.raises(ValueError, match="val_fraction"):
        split_slices(5, 0.0)


def test_validate_pair_messages():
    ok = np.zeros((2, 16, 16), np.float32)
    validate_pair(ok, ok, patch=16)
    with pytest.raises(ValueError, match="shapes differ"):
        validate_pair(ok, np.zeros((2, 16, 15), np.float32))
    with pytest.raises(ValueError, match="3-D"):
        validate_pair(ok[0], ok[0])
    with pytest.raises(ValueError, match="at least 2"):
        validate_pair(ok[:1], ok[:1])
    with pytest.raises(ValueError, match="larger than the slices"):
        validate_pair(ok, ok, patch=17)
    bad = ok.copy()
    bad[1, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        validate_pair(ok, bad)


# ------------------------------------------------------------------ sampler
def _coordinate_stack(n, h, w):
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.repeat(rows[None], n, 0), np.repeat(cols[None], n, 0)


def test_sampler_shapes_ranges_and_epoch():
    rng = np.random.default_rng(0)
    x = rng.random((5, 48, 40)).astype(np.float32)
    s = PatchSampler(x, x * 0.5, patch=24, patches_per_slice=3, seed=0)
    batches = list(s.epoch(4))
    assert len(batches) == s.steps_per_epoch(4) == 4  # 15 patches in batches of 4
    sizes = [b[0].shape[0] for b in batches]
    assert sizes == [4, 4, 4, 3]
    for xb, yb, wb in batches:
        assert xb.shape[1:] == (1, 24, 24) and xb.dtype == torch.float32
        assert wb is None
        assert float(xb.min()) >= 0.0 and float(xb.max()) <= 1.0  # bilinear stays in range
        torch.testing.assert_close(yb, xb * 0.5)  # same transform on input and target


def test_sampler_each_slice_patches_per_slice_times():
    n, h, w = 6, 32, 32
    x = np.stack([np.full((h, w), float(i), np.float32) for i in range(n)])
    s = PatchSampler(x, x, patch=16, patches_per_slice=2, seed=5)
    seen = torch.cat([xb[:, 0, 0, 0] for xb, _, _ in s.epoch(5)])
    counts = torch.bincount(seen.round().long(), minlength=n)
    assert counts.tolist() == [2] * n


def test_no_augment_crop_equals_slicing():
    rng = np.random.default_rng(1)
    x = rng.random((3, 40, 50)).astype(np.float32)
    a_s = spatial_weight((40, 50), "nonlinear")
    rows, cols = _coordinate_stack(3, 40, 50)
    s = PatchSampler(rows, cols, a_s, patch=16, augment=False, seed=2)
    s_img = PatchSampler(x, x, a_s, patch=16, augment=False, seed=2)
    idx = [0, 1, 2, 1, 0]
    r, c, wgt = s.sample(idx)
    xi, _, wi = s_img.sample(idx)
    for k, z in enumerate(idx):
        top, left = int(r[k, 0, 0, 0]), int(c[k, 0, 0, 0])
        # integer positions, unit steps: an exact crop
        ramp = torch.arange(16, dtype=torch.float32)
        assert torch.equal(r[k, 0], (top + ramp)[:, None].expand(16, 16))
        assert torch.equal(c[k, 0], (left + ramp)[None, :].expand(16, 16))
        np.testing.assert_array_equal(xi[k, 0].numpy(), x[z, top : top + 16, left : left + 16])
        torch.testing.assert_close(wi[k, 0], a_s[top : top + 16, left : left + 16], rtol=0, atol=0)
        torch.testing.assert_close(wgt[k, 0], wi[k, 0], rtol=0, atol=0)


def test_flips_without_rotation_are_exact_flipped_crops():
    rng = np.random.default_rng(2)
    img = torch.from_numpy(rng.random((30, 30)).astype(np.float32))
    g = torch.Generator().manual_seed(0)
    rows, cols, p = sample_coordinates(64, (30, 30), 10, g, p_flip=0.5, p_rotate=0.0)
    assert torch.all(p["angle"] == 0)
    for k in range(64):
        r0, c0 = int(rows[k].min()), int(cols[k].min())
        ref = img[r0 : r0 + 10, c0 : c0 + 10]
        if p["flip_v"][k]:
            ref = ref.flip(0)
        if p["flip_h"][k]:
            ref = ref.flip(1)
        got = img[rows[k].long(), cols[k].long()]
        assert torch.equal(rows[k], rows[k].round()) and torch.equal(cols[k], cols[k].round())
        assert torch.equal(got, ref)


def test_augmentation_probabilities_and_angle_range():
    g = torch.Generator().manual_seed(0)
    rows, cols, p = sample_coordinates(4000, (200, 200), 64, g)
    for key in ("flip_h", "flip_v"):
        assert 0.46 < p[key].double().mean() < 0.54
    rotated = p["angle"] != 0
    assert 0.46 < rotated.double().mean() < 0.54
    assert float(p["angle"].abs().max()) <= 15.0
    assert float(p["angle"][rotated].abs().mean()) == pytest.approx(7.5, abs=0.6)
    # rotated patches stay inside the slice, all patches are rigid unit grids
    assert float(rows.min()) >= 0 and float(rows.max()) <= 199
    assert float(cols.min()) >= 0 and float(cols.max()) <= 199
    step = torch.hypot(rows[:, :, 1:] - rows[:, :, :-1], cols[:, :, 1:] - cols[:, :, :-1])
    torch.testing.assert_close(step, torch.ones_like(step), atol=1e-4, rtol=0)


def test_input_target_weight_share_the_transform():
    """Coordinate images as input/target reveal where each patch pixel came from; the A_S
    crop must equal A_S interpolated (scipy, independently) at exactly those points."""
    h, w = 56, 60
    rows, cols = _coordinate_stack(2, h, w)
    a_s = spatial_weight((h, w), "nonlinear")
    s = PatchSampler(rows, cols, a_s, patch=32, seed=11)
    r, c, wgt = s.sample([0, 1] * 16)
    coords = np.stack([r[:, 0].numpy().ravel(), c[:, 0].numpy().ravel()])
    ref = ndimage.map_coordinates(a_s.numpy().astype(np.float64), coords, order=1, mode="nearest")
    np.testing.assert_allclose(wgt[:, 0].numpy().ravel(), ref, atol=2e-5)
    # some patches were actually rotated (non-integer source positions) and flipped
    assert np.any(np.abs(coords - np.round(coords)) > 1e-3)
    dr = r[:, 0, :, 1:] - r[:, 0, :, :-1]  # row change along a patch row
    dc = c[:, 0, :, 1:] - c[:, 0, :, :-1]
    assert (dc.mean((1, 2)) < 0).any() and (dc.mean((1, 2)) > 0).any()  # horizontal flips
    assert (dr.abs().amax((1, 2)) > 0.05).any()  # rotations


def test_sampler_seeded_and_state_roundtrip():
    rng = np.random.default_rng(3)
    x = rng.random((4, 40, 40)).astype(np.float32)
    a = PatchSampler(x, x, patch=20, seed=7)
    b = PatchSampler(x, x, patch=20, seed=7)
    c = PatchSampler(x, x, patch=20, seed=8)
    xa = torch.cat([t[0] for t in a.epoch(3)])
    xb = torch.cat([t[0] for t in b.epoch(3)])
    xc = torch.cat([t[0] for t in c.epoch(3)])
    assert torch.equal(xa, xb)
    assert not torch.equal(xa, xc)
    state = a.get_state()
    first = torch.cat([t[0] for t in a.epoch(3)])
    a.set_state(state)
    again = torch.cat([t[0] for t in a.epoch(3)])
    assert torch.equal(first, again)


def test_sampler_patch_too_large():
    x = np.zeros((2, 20, 30), np.float32)
    with pytest.raises(ValueError, match="larger than the slices"):
        PatchSampler(x, x, patch=21)
    # a patch as large as the slice works, also rotated (border-clamped)
    s = PatchSampler(x + 1, x + 1, patch=20, seed=0)
    xb, _, _ = s.sample([0, 1, 0, 1, 0, 1])
    assert xb.shape == (6, 1, 20, 20) and torch.all(xb == 1)
