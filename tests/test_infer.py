"""Inference: window round trip, slices, tiling, batching, OOM fallback, cancel."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from napari_dfct.checkpoint import save_checkpoint
from napari_dfct.data import IntensityWindow
from napari_dfct.infer import (
    PredictionCancelled,
    predict,
    predict_iter,
    receptive_radius,
    tile_starts,
)
from napari_dfct.model import build_model


@pytest.fixture(scope="module")
def net():
    """A tiny U-Net with random weights and BatchNorm statistics calibrated on an image,
    in eval mode: a non-trivial, translation-equivariant (away from borders) filter."""
    torch.manual_seed(0)
    m = build_model("tiny", zero_init=False)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.momentum = None  # cumulative average over the calibration pass
    m.train()
    with torch.no_grad():
        m(torch.rand(2, 1, 96, 96))
    return m.eval()


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(0)
    return (rng.random((5, 70, 90)) * 4 - 1).astype(np.float32)


def test_identity_model_window_roundtrip(volume):
    """The untrained residual U-Net is the identity, so a prediction is the input clipped
    to the window and mapped back: normalise/denormalise must be exact inverses."""
    ident = build_model("tiny")  # zero-initialised output conv: y = x
    win = IntensityWindow(0.0, 2.0)
    out = predict(ident, volume, window=win, device="cpu")
    assert out.dtype == np.float32 and out.shape == volume.shape
    np.testing.assert_allclose(out, np.clip(volume, 0.0, 2.0), atol=1e-6)
    # without a window the values go through unchanged
    np.testing.assert_allclose(predict(ident, volume[1], device="cpu"), volume[1], atol=1e-6)


def test_slices_subset_order_and_2d(net, volume):
    win = IntensityWindow(-1.0, 3.0)
    full = predict(net, volume, window=win, device="cpu", batch_size=2)
    part = predict(net, volume, window=win, device="cpu", slices=[3, 0, -1])
    np.testing.assert_allclose(part, full[[3, 0, 4]], rtol=1e-5, atol=3e-5)
    one = predict(net, volume[2], window=win, device="cpu")
    assert one.shape == volume.shape[1:]
    np.testing.assert_allclose(one, full[2], rtol=1e-5, atol=3e-5)
    # batch size does not change the result (eval mode)
    np.testing.assert_allclose(
        predict(net, volume, window=win, device="cpu", batch_size=5), full, rtol=1e-5, atol=3e-5
    )
    with pytest.raises(ValueError, match="out of range"):
        predict(net, volume, window=win, device="cpu", slices=[5])
    with pytest.raises(ValueError, match="2-D"):
        predict(net, volume[0], window=win, device="cpu", slices=[0])


def test_tiled_equals_untiled(net):
    """Every pixel with non-zero blending weight lies at least overlap // 4 pixels from
    the inner edges of its tile. With overlap // 4 >= the receptive radius the tile's zero
    padding cannot reach it, tiles start on the pooling grid, and the image is padded as
    the network pads it: tiled and untiled passes compute the same numbers."""
    rng = np.random.default_rng(1)
    img = rng.random((150, 130)).astype(np.float32)
    full = predict(net, img, device="cpu")
    assert np.std(full - img) > 0.05  # the network really changes the image
    overlap = 4 * receptive_radius(net)
    tiled = predict(net, img, device="cpu", tile=overlap + 16, overlap=overlap)
    np.testing.assert_allclose(tiled, full, atol=2e-5)
    # small overlaps leave only small seams; no overlap at all shows them
    seams = np.abs(predict(net, img, device="cpu", tile=64, overlap=0) - full).max()
    blended = np.abs(predict(net, img, device="cpu", tile=64, overlap=32) - full).max()
    assert blended < seams


def test_tile_starts_cover_and_align():
    cases = [(200, 64, 16, 4), (256, 128, 32, 16), (100, 100, 8, 4), (96, 40, 12, 4)]
    for length, tile, ov, align in cases:
        starts = tile_starts(length, tile, ov, align)
        assert starts[0] == 0 and starts[-1] == max(length - tile, 0)
        assert all(s % align == 0 for s in starts)
        assert all(b - a <= tile - ov for a, b in zip(starts, starts[1:]))


def test_model_folder_and_loaded_model(tmp_path, net, volume):
    win = IntensityWindow(-1.0, 3.0)
    folder = save_checkpoint(tmp_path / "m", net, {"window": win.to_dict(), "name": "x"})
    ref = predict(net, volume[:2], window=win, device="cpu")
    np.testing.assert_allclose(predict(str(folder), volume[:2], device="cpu"), ref, atol=1e-5)
    zs = [z for z, _ in predict_iter(folder, volume, [4, 1], device="cpu")]
    assert zs == [4, 1]


def test_cancel(net, volume):
    stop = threading.Event()
    got = []
    for z, _ in predict_iter(net, volume, batch_size=1, device="cpu", cancel=stop):
        got.append(z)
        stop.set()
    assert got == [0]
    calls = []
    with pytest.raises(PredictionCancelled, match="after 2 of 5"):
        predict(
            net,
            volume,
            batch_size=2,
            device="cpu",
            cancel=lambda: len(calls) > 0,
            progress=lambda done, total: calls.append(done),
        )


def test_oom_falls_back_to_smaller_batches_then_tiles(net, monkeypatch):
    """Simulated out-of-memory for inputs larger than 64 px: batches shrink, then tiles."""
    rng = np.random.default_rng(2)
    img = rng.random((2, 100, 100)).astype(np.float32)
    ref = predict(net, img, device="cpu", tile=64, overlap=32)
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    orig = type(net).forward
    sizes = []

    def limited(self, x):
        sizes.append(tuple(x.shape))
        if x.shape[-1] > 64:
            raise oom("CUDA out of memory (simulated)")
        return orig(self, x)

    monkeypatch.setattr(type(net), "forward", limited)
    out = predict(net, img, device="cpu", batch_size=2)
    assert sizes[0][0] == 2 and any(s[0] == 1 and s[-1] == 100 for s in sizes)
    assert max(s[-1] for s in sizes[-3:]) <= 64  # finished with tiles
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=3e-5)  # = tiles of 64, overlap 32
