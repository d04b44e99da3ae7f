"""Amplified losses: the DC identity, hand-computed values, gradients, names, scales."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from napari_dfct import weights as W
from napari_dfct.losses import (
    AmplifiedLoss,
    LossConfig,
    effective_scale,
    frequency_filter,
    paper_configs,
    paper_names,
)

SHAPES = [(16, 16), (17, 23), (9, 32), (1, 8)]
ON = ("linear", "nonlinear")


def _pair(shape, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(batch, 1, *shape, generator=g)
    t = torch.rand(batch, 1, *shape, generator=g)
    return p, t


def _plain(p, t, loss):
    d = (p - t).double()
    return (d.abs() if loss == "l1" else d**2).mean().item()


def _filter_np(x, a_f):
    """Independent float64 NumPy reference of Re{IFFT2(A_F FFT2(x))}."""
    return np.real(np.fft.ifft2(a_f * np.fft.fft2(x, axes=(-2, -1)), axes=(-2, -1)))


# ------------------------------------------------------------------- the DC identity
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("loss", ["l1", "l2"])
@pytest.mark.parametrize("profile", ON)
@pytest.mark.parametrize("normalize", [False, True])
def test_f_alone_rescales_plain_loss_by_dc(shape, loss, profile, normalize):
    p, t = _pair(shape)
    cfg = LossConfig(loss=loss, frequency=profile, normalize=normalize)
    dc = 1.0 / W.frequency_weight_np(shape, profile).mean() if normalize else 1.0
    got = AmplifiedLoss(cfg)(p, t).item()
    assert got == pytest.approx(dc * _plain(p, t, loss), rel=2e-5)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("loss", ["l1", "l2"])
@pytest.mark.parametrize("profile", ON)
def test_s_plus_f_equals_s(shape, loss, profile):
    p, t = _pair(shape, seed=1)
    s = AmplifiedLoss(LossConfig(loss=loss, spatial=profile))(p, t).item()
    sf = AmplifiedLoss(LossConfig(loss=loss, spatial=profile, frequency=profile))(p, t).item()
    assert sf == pytest.approx(s, rel=2e-5)
    # with normalised weights S+F = A_F(DC) * S, A_F(DC) = 1 / mean(A_F)
    s_n = AmplifiedLoss(LossConfig(loss=loss, spatial=profile, normalize=True))(p, t).item()
    sf_n = AmplifiedLoss(
        LossConfig(loss=loss, spatial=profile, frequency=profile, normalize=True)
    )(p, t).item()
    assert sf_n == pytest.approx(s_n / W.frequency_weight_np(shape, profile).mean(), rel=2e-5)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("loss", ["l1", "l2"])
@pytest.mark.parametrize("profile", ON)
def test_f_plus_s_equals_s_with_filtered_weight(shape, loss, profile):
    p, t = _pair(shape, seed=2)
    a_s = W.spatial_weight_np(shape, profile)
    a_f = W.frequency_weight_np(shape, profile)
    d = (p - t).double().numpy()
    lmap = np.abs(d) if loss == "l1" else d**2
    expected = np.mean(_filter_np(a_s, a_f) * lmap)
    cfg = LossConfig(loss=loss, spatial=profile, frequency=profile, order="fs")
    assert cfg.scheme == "F+S"
    assert AmplifiedLoss(cfg)(p, t).item() == pytest.approx(expected, rel=2e-5)
    # and the map itself is A_S * F(L)
    np.testing.assert_allclose(
        AmplifiedLoss(cfg).loss_map(p, t).double().numpy(),
        a_s * _filter_np(lmap, a_f),
        rtol=1e-4,
        atol=1e-5,
    )


@pytest.mark.parametrize("shape", [(16, 16), (17, 23)])
def test_lf_imaginary_part_negligible(shape):
    p, t = _pair(shape, seed=3)
    lmap = (p - t) ** 2
    a_f = W.frequency_weight(shape, "nonlinear")
    full = torch.fft.ifft2(a_f * torch.fft.fft2(lmap))
    assert full.imag.abs().max().item() < 1e-6 * full.real.abs().max().item()
    np.testing.assert_allclose(frequency_filter(lmap, a_f).numpy(), full.real.numpy(), atol=1e-7)


# ------------------------------------------------------------ hand-computed values
def test_plain_l1_l2_hand_values():
    p = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    t = torch.tensor([[[[0.0, 0.0], [1.0, 6.0]]]])
    # differences 1, 2, 2, -2
    assert AmplifiedLoss("l1")(p, t).item() == pytest.approx((1 + 2 + 2 + 2) / 4)
    assert AmplifiedLoss("l2")(p, t).item() == pytest.approx((1 + 4 + 4 + 4) / 4)
    np.testing.assert_allclose(AmplifiedLoss("l2").loss_map(p, t)[0, 0].numpy(), [[1, 4], [4, 4]])


def test_spatial_hand_value_3x3():
    # 3x3, centre (1, 1), farthest pixel at sqrt(2): A_S = 2 - d / sqrt(2)
    p, t = torch.ones(1, 1, 3, 3), torch.zeros(1, 1, 3, 3)  # L = 1 everywhere
    expected = (2 + 4 * (2 - 1 / math.sqrt(2)) + 4 * 1) / 9
    assert AmplifiedLoss("l1+s-linear")(p, t).item() == pytest.approx(expected, rel=1e-6)
    assert AmplifiedLoss("l2+s-linear")(2 * p, t).item() == pytest.approx(4 * expected, rel=1e-6)


def test_frequency_hand_value_2x2():
    # L = delta at [0, 0] -> FFT2(L) = 1 -> L_F = IFFT2(A_F).
    # 2x2 A_F (linear): rho = 0, 1/sqrt2, 1/sqrt2, 1 -> [[1, 1 + 1/sqrt2], [1 + 1/sqrt2, 2]]
    a = 1 + 1 / math.sqrt(2)
    # IFFT2 of [[A, B], [C, D]] (2x2): [[A+B+C+D, A-B+C-D], [A+B-C-D, A-B-C+D]] / 4
    expected = np.array([[1 + a + a + 2, 1 - a + a - 2], [1 + a - a - 2, 1 - a - a + 2]]) / 4
    p = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    got = AmplifiedLoss("l1+f-linear").loss_map(p, torch.zeros_like(p))[0, 0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert got.mean() == pytest.approx(0.25)  # A_F(DC) * mean(L)


# ------------------------------------------------------------------------ gradients
def _grad(cfg, p, t):
    x = p.clone().requires_grad_(True)
    AmplifiedLoss(cfg)(x, t).backward()
    return x.grad.double()


@pytest.mark.parametrize("loss", ["l1", "l2"])
def test_paper_f_gradient_is_plain_times_dc(loss):
    p, t = _pair((12, 20), seed=4)
    g0 = _grad(LossConfig(loss=loss), p, t)
    for profile in ON:
        g1 = _grad(LossConfig(loss=loss, frequency=profile), p, t)
        torch.testing.assert_close(g1, g0, rtol=1e-4, atol=1e-7)
        dc = 1 / W.frequency_weight_np((12, 20), profile).mean()
        g2 = _grad(LossConfig(loss=loss, frequency=profile, normalize=True), p, t)
        torch.testing.assert_close(g2, dc * g0, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("loss", ["l1", "l2"])
@pytest.mark.parametrize(
    "scheme",
    [("none", "linear", "sf"), ("linear", "linear", "sf"), ("nonlinear", "nonlinear", "fs")],
)
def test_spectral_gradient_differs_from_plain(loss, scheme):
    spatial, frequency, order = scheme
    p, t = _pair((16, 16), seed=5)
    plain = _grad(LossConfig(loss=loss, spatial=spatial, order=order), p, t).ravel()
    spec = _grad(
        LossConfig(loss=loss, spatial=spatial, frequency=frequency, order=order, mode="spectral"),
        p,
        t,
    ).ravel()
    # not merely a rescaled plain gradient: the best scalar fit leaves a large residual
    alpha = (spec @ plain) / (plain @ plain)
    residual = (spec - alpha * plain).norm() / spec.norm()
    assert residual > 0.05


def test_spectral_l2_is_parseval_weighted_mse():
    shape = (12, 17)
    p, t = _pair(shape, seed=6)
    a_f = W.frequency_weight_np(shape, "nonlinear")
    e = (p - t).double().numpy()
    spec = np.fft.fft2(e, axes=(-2, -1))
    n = shape[0] * shape[1]
    expected = np.sum(a_f**2 * np.abs(spec) ** 2) / n**2 / e.shape[0]
    got = AmplifiedLoss("l2+f-nonlinear-spectral")(p, t).item()
    assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("loss", ["l1", "l2"])
def test_spectral_orders(loss):
    shape = (10, 14)
    p, t = _pair(shape, seed=7)
    e = (p - t).double().numpy()
    a_s = W.spatial_weight_np(shape, "linear")
    a_f = W.frequency_weight_np(shape, "linear")
    ell = np.abs if loss == "l1" else np.square
    w_s = a_s if loss == "l1" else np.sqrt(a_s)
    sf = AmplifiedLoss(f"{loss}+s+f-linear-spectral")(p, t).item()
    fs = AmplifiedLoss(f"{loss}+f+s-linear-spectral")(p, t).item()
    assert sf == pytest.approx(np.mean(ell(_filter_np(w_s * e, a_f))), rel=1e-5)
    assert fs == pytest.approx(np.mean(a_s * ell(_filter_np(e, a_f))), rel=1e-5)
    # the orders differ, though only slightly: A_S is smooth and F nearly local, so the
    # two nearly commute (about 0.5-1 % here); far above float32 rounding (~1e-7)
    m_sf = AmplifiedLoss(f"{loss}+s+f-linear-spectral").loss_map(p, t)
    m_fs = AmplifiedLoss(f"{loss}+f+s-linear-spectral").loss_map(p, t)
    assert (m_sf - m_fs).norm() > 1e-3 * m_fs.norm()
    g_sf = _grad(f"{loss}+s+f-linear-spectral", p, t)
    g_fs = _grad(f"{loss}+f+s-linear-spectral", p, t)
    assert (g_sf - g_fs).norm() > 1e-4 * g_fs.norm()
    # without F, spectral equals paper; without S, both orders reduce to spectral F
    assert AmplifiedLoss(f"{loss}+s-linear-spectral")(p, t).item() == pytest.approx(
        AmplifiedLoss(f"{loss}+s-linear")(p, t).item(), rel=1e-6
    )
    plain = _plain(p, t, loss)
    assert AmplifiedLoss(f"{loss}-spectral")(p, t).item() == pytest.approx(plain, rel=1e-6)


# ---------------------------------------------------------------- weights handling
def test_normalize_gives_mean_one_weights():
    fn = AmplifiedLoss("l2+s+f-nonlinear-norm")
    assert float(fn.full_spatial_weight((40, 60)).double().mean()) == pytest.approx(1, abs=1e-6)
    assert float(fn.frequency_weight((40, 60)).double().mean()) == pytest.approx(1, abs=1e-6)
    assert AmplifiedLoss("l2").full_spatial_weight((4, 4)) is None
    assert AmplifiedLoss("l2").frequency_weight((4, 4)) is None


def test_spatial_weight_crop_used_as_given():
    p, t = _pair((8, 10), batch=3, seed=8)
    g = torch.Generator().manual_seed(9)
    sw = 1 + 2 * torch.rand(3, 1, 8, 10, generator=g)  # not a valid A_S: used as given anyway
    lmap = (p - t) ** 2
    fn = AmplifiedLoss("l2+s-linear")
    assert fn(p, t, spatial_weight=sw).item() == pytest.approx((sw * lmap).mean().item(), rel=1e-6)
    assert fn(p, t, spatial_weight=sw).item() != pytest.approx(fn(p, t).item(), rel=1e-3)
    # broadcast forms
    one = sw[:1]
    expected = (one * lmap).mean().item()
    assert fn(p, t, spatial_weight=one).item() == pytest.approx(expected, rel=1e-6)
    assert fn(p, t, spatial_weight=one[0, 0]).item() == pytest.approx(expected, rel=1e-6)
    # also with normalize=True: no renormalisation of a given crop
    fn_n = AmplifiedLoss("l2+s-linear-norm")
    expected = (sw * lmap).mean().item()
    assert fn_n(p, t, spatial_weight=sw).item() == pytest.approx(expected, rel=1e-6)
    # ignored when S is off
    plain = lmap.mean().item()
    assert AmplifiedLoss("l2")(p, t, spatial_weight=sw).item() == pytest.approx(plain, rel=1e-6)
    with pytest.raises(ValueError, match="spatial_weight"):
        fn(p, t, spatial_weight=torch.ones(3, 1, 8, 9))
    with pytest.raises(ValueError, match="spatial_weight"):
        fn(p, t, spatial_weight=torch.ones(2, 1, 8, 10))


def test_shape_errors():
    fn = AmplifiedLoss("l1")
    with pytest.raises(ValueError):
        fn(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))
    with pytest.raises(ValueError):
        fn(torch.zeros(4, 4), torch.zeros(4, 4))


def test_float32_under_autocast():
    p, t = _pair((16, 16), seed=10)
    pb, tb = p.bfloat16(), t.bfloat16()
    for name in ["l2+s+f-nonlinear", "l1+f-linear-spectral"]:
        ref = AmplifiedLoss(name)(pb.float(), tb.float())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = AmplifiedLoss(name)(pb, tb)
        assert out.dtype == torch.float32
        assert out.item() == pytest.approx(ref.item(), rel=1e-6)


# --------------------------------------------------------------------------- names
def test_paper_configs_18_names_round_trip():
    cfgs = paper_configs()
    names = [c.name for c in cfgs]
    assert len(cfgs) == 18 and len(set(names)) == 18 and len(set(cfgs)) == 18
    assert names == paper_names()
    schemes = {c.scheme for c in cfgs}
    assert schemes == {"none", "S", "F", "S+F", "F+S"}
    for c in cfgs:
        assert LossConfig.from_name(c.name) == c
        d = json.loads(json.dumps(c.to_dict()))
        assert LossConfig.from_dict(d) == c
    assert sum(c.scheme == "none" for c in cfgs) == 2
    assert {c.name for c in paper_configs(losses=("l2",), schemes=("F+S",))} == {
        "l2+f+s-linear",
        "l2+f+s-nonlinear",
    }


def test_variant_names_round_trip():
    for cfg in [
        LossConfig("l2", "linear", "nonlinear", "fs", "spectral", True),
        LossConfig("l1", "nonlinear", "linear", "sf"),
        LossConfig("l2", frequency="linear", mode="spectral"),
        LossConfig("l1", normalize=True),
        LossConfig("l2", "nonlinear", "nonlinear", "fs", "spectral", False),
    ]:
        assert LossConfig.from_name(cfg.name) == cfg, cfg.name
    assert LossConfig.from_name("l2+f+s-linear").scheme == "F+S"
    assert LossConfig.from_name("l2+s-linear", mode="spectral").name == "l2+s-linear-spectral"
    assert LossConfig.from_dict({"name": "l1+s+f-nonlinear"}).scheme == "S+F"
    # order is canonical when only one weight is on
    assert LossConfig(spatial="linear", order="fs") == LossConfig(spatial="linear")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "l3",
        "L2+x-linear",
        "l2+s",
        "l2+s+s-linear",
        "l2+s-cubic",
        "l2+s-linear-foo",
        "l2+s+f+s-linear",
        "l2+s-linear+",
        "s-linear",
    ],
)
def test_unknown_names_rejected(bad):
    with pytest.raises(ValueError, match="Valid names: l1, "):
        LossConfig.from_name(bad)


def test_invalid_fields_rejected():
    with pytest.raises(ValueError):
        LossConfig(loss="huber")
    with pytest.raises(ValueError):
        LossConfig(mode="fancy")
    with pytest.raises(ValueError):
        LossConfig.from_dict({"loss": "l2", "weight": 3})


# -------------------------------------------------------------------------- scales
@pytest.mark.parametrize("name", paper_names() + ["l2+s+f-linear-norm", "l1+f+s-nonlinear-norm"])
def test_effective_scale_matches_constant_error(name):
    shape = (24, 30)
    p = torch.full((1, 1, *shape), 0.7)
    t = torch.full((1, 1, *shape), 0.2)
    plain = AmplifiedLoss(LossConfig.from_name(name).loss)(p, t).item()
    ratio = AmplifiedLoss(name)(p, t).item() / plain
    assert ratio == pytest.approx(effective_scale(name, shape)["scale"], rel=1e-5)


def test_effective_scale_spectral_white_noise():
    shape = (128, 128)
    g = torch.Generator().manual_seed(11)
    e = torch.randn(4, 1, *shape, generator=g)
    zero = torch.zeros_like(e)
    for name in ["l2+f-linear-spectral", "l1+f-nonlinear-spectral", "l2+f+s-nonlinear-spectral"]:
        plain = AmplifiedLoss(name.split("+")[0])(e, zero).item()
        ratio = AmplifiedLoss(name)(e, zero).item() / plain
        assert ratio == pytest.approx(effective_scale(name, shape)["scale"], rel=0.03)
    info = effective_scale("l2+f-linear", shape)
    assert info["a_f_dc"] == 1.0 and info["frequency_factor"] == 1.0 and info["scale"] == 1.0
    assert 1 < effective_scale("l2+s-nonlinear", (800, 800))["spatial_factor"] < 2


def test_effective_scale_patch_mean_by_enumeration():
    shape, patch = (20, 24), 7
    a_s = W.spatial_weight_np(shape, "nonlinear")
    means = [
        a_s[r : r + patch, c : c + patch].mean()
        for r in range(shape[0] - patch + 1)
        for c in range(shape[1] - patch + 1)
    ]
    info = effective_scale("l2+s+f-nonlinear", shape, patch=patch)
    assert info["a_s_patch_mean"] == pytest.approx(np.mean(means), rel=1e-12)
    assert info["spatial_factor"] == info["a_s_patch_mean"]
    assert info["patch"] == [7, 7]
    # A_F is built for the patch
    assert info["a_f_mean"] == pytest.approx(W.frequency_weight_np((7, 7), "nonlinear").mean())
    with pytest.raises(ValueError):
        effective_scale("l2", shape, patch=25)


@pytest.mark.parametrize(
    "name",
    ["l2+s-linear", "l1+f-nonlinear", "l2+s+f-nonlinear", "l2+f+s-linear-spectral", "l2@1.5"],
)
@pytest.mark.parametrize("patch", [None, 16, 64])
def test_loss_maps_match_loss_map(name, patch):
    from napari_dfct.losses import loss_maps

    shape = (40, 52)
    rng = np.random.default_rng(3)
    x = rng.random(shape, dtype=np.float32)
    y = rng.random(shape, dtype=np.float32)
    cfg = LossConfig.from_name(name)
    maps = loss_maps(x, y, cfg, patch=patch)

    side = None if patch is None else min(patch, *shape)
    if side is None:
        crop, offset = (slice(None), slice(None)), (0, 0)
    else:
        r0, c0 = (shape[0] - side) // 2, (shape[1] - side) // 2
        crop, offset = (slice(r0, r0 + side), slice(c0, c0 + side)), (r0, c0)
    assert maps.offset == offset
    amp = AmplifiedLoss(cfg)
    a_s_full = amp.full_spatial_weight(shape)
    a_s = (torch.ones(shape) if a_s_full is None else a_s_full)[crop]
    a_f = amp.frequency_weight(tuple(a_s.shape))
    a_f = torch.ones(tuple(a_s.shape)) if a_f is None else a_f
    p = torch.from_numpy(x[crop].copy())[None, None]
    t = torch.from_numpy(y[crop].copy())[None, None]
    expected = amp.loss_map(p, t, spatial_weight=a_s[None, None])[0, 0].numpy()
    plain = AmplifiedLoss(LossConfig(loss=cfg.loss, mode=cfg.mode)).loss_map(p, t)[0, 0]

    assert maps.shape == tuple(a_s.shape)
    for arr in (maps.a_s, maps.a_f, maps.loss, maps.amplified):
        assert arr.dtype == np.float32 and arr.shape == maps.shape
    np.testing.assert_allclose(maps.a_s, a_s.numpy(), rtol=1e-6)
    np.testing.assert_allclose(maps.a_f, np.fft.fftshift(a_f.numpy()), rtol=1e-6)
    h, w = maps.shape
    assert maps.a_f_dc == pytest.approx(float(a_f[0, 0]))
    assert maps.a_f[h // 2, w // 2] == pytest.approx(maps.a_f_dc)  # DC in the centre
    np.testing.assert_allclose(maps.amplified, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(maps.loss, plain.numpy(), rtol=1e-5, atol=1e-7)
    assert maps.ratio == pytest.approx(float(expected.mean()) / float(plain.mean()), rel=1e-5)


def test_loss_maps_without_target_and_bad_input():
    from napari_dfct.losses import loss_maps

    maps = loss_maps(np.zeros((30, 20), np.float32), None, "l2+s+f-linear", patch=128)
    assert maps.loss is None and maps.amplified is None and maps.ratio is None
    assert maps.shape == (20, 20) and maps.offset == (5, 0)  # clamped to the slice
    assert maps.a_s.max() <= 2.0 and maps.a_f_dc == pytest.approx(1.0)
    plain = loss_maps(np.zeros((8, 8)), None, "l1")
    assert np.all(plain.a_s == 1.0) and np.all(plain.a_f == 1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        loss_maps(np.zeros((8, 8)), np.zeros((8, 9)), "l2")
    with pytest.raises(ValueError, match="2-D"):
        loss_maps(np.zeros((2, 8, 8)), None, "l2")
