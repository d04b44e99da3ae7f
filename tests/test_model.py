"""Residual U-Net: shapes, identity at init, parameter counts, gradients, determinism."""

from __future__ import annotations

import json

import pytest
import torch

from napari_dfct.model import PRESETS, ResidualUNet, build_model, count_parameters, model_config

#: Trainable parameter counts per preset (the README table). Filled in from
#: ``count_parameters(build_model(p))`` after the tiny preset was checked by hand below and
#: every preset against the closed-form count ``_unet_count``.
EXPECTED_COUNTS = {"paper": 31_383_681, "small": 1_963_809, "tiny": 7_545}


def _double_conv(cin: int, cout: int) -> int:
    # two bias-free 3x3 convs + two BatchNorms (weight + bias)
    return 9 * cin * cout + 2 * cout + 9 * cout * cout + 2 * cout


def _unet_count(base: int, depth: int, cin: int = 1, cout: int = 1) -> int:
    ch = [base * 2**i for i in range(depth + 1)]
    n = _double_conv(cin, ch[0])
    n += sum(_double_conv(ch[i], ch[i + 1]) for i in range(depth))  # down path
    n += sum(_double_conv(ch[i + 1] + ch[i], ch[i]) for i in range(depth))  # bilinear up path
    return n + ch[0] * cout + cout  # 1x1 output conv with bias


def test_tiny_count_by_hand():
    # tiny: base 4, depth 2 -> channels 4, 8, 16
    inc = 1 * 4 * 9 + 8 + 4 * 4 * 9 + 8  # 196
    down1 = 4 * 8 * 9 + 16 + 8 * 8 * 9 + 16  # 896
    down2 = 8 * 16 * 9 + 32 + 16 * 16 * 9 + 32  # 3520
    up1 = (16 + 8) * 8 * 9 + 16 + 8 * 8 * 9 + 16  # 2336
    up0 = (8 + 4) * 4 * 9 + 8 + 4 * 4 * 9 + 8  # 592
    out = 4 * 1 + 1  # 5
    hand = inc + down1 + down2 + up1 + up0 + out
    assert hand == 7545
    assert count_parameters(build_model("tiny")) == hand


@pytest.mark.parametrize("preset", list(PRESETS))
def test_parameter_counts(preset):
    cfg = PRESETS[preset]
    n = count_parameters(build_model(preset))
    print(f"{preset}: {n:,} parameters")
    assert n == _unet_count(cfg["base_channels"], cfg["depth"])
    assert n == EXPECTED_COUNTS[preset]


def test_paper_preset_channels_64_to_1024():
    m = build_model("paper")
    assert m.inc[0].in_channels == 1 and m.inc[0].out_channels == 64
    assert [d[1][0].out_channels for d in m.downs] == [128, 256, 512, 1024]
    assert [u.conv[0].in_channels for u in m.ups] == [1024 + 512, 512 + 256, 256 + 128, 128 + 64]
    assert all(isinstance(u.up, torch.nn.Upsample) and u.up.mode == "bilinear" for u in m.ups)
    assert m.outc.kernel_size == (1, 1) and m.outc.out_channels == 1
    assert sum(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules()) == 2 * (1 + 4 + 4)


@pytest.mark.parametrize("shape", [(37, 53), (64, 64), (3, 5), (1, 1), (800, 800)])
def test_output_shape_equals_input(shape):
    torch.manual_seed(0)
    m = build_model("tiny", zero_init=False).eval()
    x = torch.rand(1, 1, *shape)
    with torch.no_grad():
        y = m(x)
    assert y.shape == x.shape
    assert not torch.equal(y, x)  # the net contributes


def test_small_preset_odd_size():
    m = build_model("small").eval()
    with torch.no_grad():
        assert m(torch.rand(2, 1, 37, 53)).shape == (2, 1, 37, 53)


def test_identity_at_init():
    m = build_model("tiny")  # zero-initialised output conv
    x = torch.rand(2, 1, 37, 53)
    assert torch.equal(m(x), x)
    assert torch.equal(m.eval()(x), x)


def test_forward_is_input_plus_residual():
    torch.manual_seed(1)
    m = build_model("tiny", zero_init=False).eval()
    x = torch.rand(1, 1, 20, 28)
    with torch.no_grad():
        torch.testing.assert_close(m(x), x + m.residual(x))


def test_padding_crops_back_in_place():
    """A 62x62 crop of a 64x64 image is padded by one pixel per side (tiny: multiple of 4),
    so its padded input equals the original except on the outer rows/columns. Far from the
    border (beyond the tiny net's receptive half-width, 20 px) the two outputs must agree
    pixel for pixel; an off-by-one crop-back would not."""
    torch.manual_seed(2)
    m = build_model("tiny", zero_init=False).eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        full = m.residual(x)
        part = m.residual(x[..., 1:63, 1:63])
    assert part.shape[-2:] == (62, 62)
    centre = part[..., 22:40, 22:40]
    torch.testing.assert_close(centre, full[..., 23:41, 23:41], rtol=0, atol=1e-5)
    assert (centre - full[..., 24:42, 23:41]).abs().max() > 1e-3


def test_gradient_flows():
    torch.manual_seed(3)
    m = build_model("tiny")
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    x, t = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    loss = ((m(x) - t) ** 2).mean()
    loss.backward()
    # zero-init: only the output conv learns in the first step
    assert m.outc.weight.grad.abs().sum() > 0 and m.outc.bias.grad.abs().sum() > 0
    assert m.inc[0].weight.grad.abs().sum() == 0
    opt.step()
    opt.zero_grad()
    ((m(x) - t) ** 2).mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_deterministic_with_seed():
    torch.manual_seed(4)
    a = build_model("tiny", zero_init=False)
    torch.manual_seed(4)
    b = build_model("tiny", zero_init=False)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    x = torch.rand(1, 1, 24, 24)
    with torch.no_grad():
        assert torch.equal(a.eval()(x), b.eval()(x))
    torch.manual_seed(5)
    c = build_model("tiny", zero_init=False)
    assert not torch.equal(a.inc[0].weight, c.inc[0].weight)


def test_config_round_trip():
    torch.manual_seed(6)
    m = build_model("tiny", base_channels=6, bilinear=False, zero_init=False)
    cfg = json.loads(json.dumps(model_config(m)))
    assert cfg == {
        "base_channels": 6,
        "depth": 2,
        "in_channels": 1,
        "out_channels": 1,
        "bilinear": False,
    }
    for rebuilt in (ResidualUNet(**cfg), build_model(**cfg)):
        rebuilt.load_state_dict(m.state_dict())  # strict: same architecture
        x = torch.rand(1, 1, 13, 17)
        with torch.no_grad():
            assert torch.equal(rebuilt.eval()(x), m.eval()(x))
    expected = {**PRESETS["paper"], "in_channels": 1, "out_channels": 1}
    assert model_config(build_model("paper")) == expected


def test_channels_last():
    torch.manual_seed(7)
    m = build_model("tiny", zero_init=False).eval()
    x = torch.rand(2, 1, 20, 24)
    with torch.no_grad():
        ref = m(x)
        m_cl = m.to(memory_format=torch.channels_last)
        out = m_cl(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="valid presets"):
        build_model("huge")
    with pytest.raises(ValueError, match="unknown model arguments"):
        build_model("tiny", width=3)
    with pytest.raises(ValueError):
        ResidualUNet(in_channels=1, out_channels=2)
    with pytest.raises(ValueError):
        build_model("tiny")(torch.rand(1, 2, 8, 8))
    with pytest.raises(ValueError):
        build_model("tiny")(torch.rand(8, 8))
    with pytest.raises(ValueError):
        model_config(torch.nn.Linear(2, 2))


@pytest.mark.parametrize(
    "kw",
    [
        {"base_channels": 4, "depth": 2},
        {"base_channels": 3, "depth": 3, "bilinear": False},
        {"base_channels": 2, "depth": 1, "in_channels": 3, "out_channels": 3},
        {"base_channels": 16, "depth": 4},
    ],
)
def test_the_parameter_count_is_known_before_building(kw):
    from napari_dfct.model import architecture_parameters

    assert architecture_parameters(**kw) == count_parameters(ResidualUNet(**kw))


def test_sizes_beyond_the_bounds_are_refused_before_building():
    from napari_dfct.model import MAX_PARAMETERS, architecture_parameters

    assert architecture_parameters(64, 4) < MAX_PARAMETERS  # the paper preset fits
    for kw, words in [
        ({"depth": 9}, "depth must be in 1..8"),
        ({"base_channels": 257}, "base_channels must be in 1..256"),
        ({"base_channels": 128, "depth": 6}, "M parameters"),
        ({"depth": True}, "depth must be an integer"),
    ]:
        with pytest.raises(ValueError, match=words):
            build_model("tiny", **kw)


@pytest.mark.parametrize("shape", [(37, 50), (16, 16), (5, 3), (2, 9), (1, 6)])
def test_the_network_pads_as_prediction_pads(shape):
    """The exported network keeps its own copy of the padding rule (it imports nothing of
    the package); it pads exactly as napari_dfct._tiling does for the torch-free path,
    reflecting where it can and replicating where the image is too small."""
    import numpy as np

    from napari_dfct._tiling import pad_like_model
    from napari_dfct.model import build_model

    net = build_model("tiny")
    x = torch.rand(1, 1, *shape, generator=torch.Generator().manual_seed(1))
    padded, pad = net._pad(x)
    want, want_pad = pad_like_model(x.numpy(), net.multiple)
    assert pad == want_pad
    np.testing.assert_array_equal(padded.numpy(), want)
