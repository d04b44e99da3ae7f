"""Inference backends on the CPU: the channels-last eager path and ONNX Runtime give eager
fp32's output within 1e-4 of the intensity window on a trained model and a simulated
slice; ``backend`` is checked; ONNX Runtime missing or failing falls back to eager with
one logged line; ``dfct predict --backend`` works.

No timing is asserted: the speed is ``benchmarks/bench_infer.py``'s (docs/performance.md).
"""

from __future__ import annotations

import logging
import weakref

import numpy as np
import pytest
import torch

from napari_dfct import _onnx, infer
from napari_dfct.checkpoint import load_model
from napari_dfct.cli import main
from napari_dfct.infer import predict

#: Largest difference from eager fp32 in the default memory format, in window units.
TOLERANCE = 1e-4
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def loaded(trained_model):
    return load_model(trained_model, device="cpu")


@pytest.fixture
def fresh_notes(monkeypatch):
    """Every test sees its own fallback messages (logged once per process), sessions and
    failed exports (remembered per network)."""
    monkeypatch.setattr(_onnx, "_NOTED", set())
    monkeypatch.setattr(_onnx, "_CACHE", weakref.WeakKeyDictionary())
    monkeypatch.setattr(_onnx, "_FAILED", weakref.WeakKeyDictionary())


def _reference(loaded, image: np.ndarray) -> np.ndarray:
    """Eager fp32 in the default (NCHW) format, computed here without :mod:`infer`."""
    win, net = loaded.window, loaded.model.eval()
    x = torch.from_numpy(np.ascontiguousarray(win.normalize(image), dtype=np.float32))
    with torch.no_grad():
        y = net(x[:, None]).numpy()[:, 0]
    return win.denormalize(y)


def _window_units(a: np.ndarray, b: np.ndarray, loaded) -> float:
    return float(np.abs(a - b).max()) / loaded.window.width


def test_channels_last_on_the_cpu_equals_eager_fp32(loaded, small_sim):
    image = small_sim.input[:3]
    ref = _reference(loaded, image)
    out = predict(loaded, image, device="cpu", backend="eager")
    assert infer._channels_last(CPU)
    assert _window_units(out, ref, loaded) <= TOLERANCE
    # the trained network is no identity, so the comparison has substance
    win = loaded.window
    assert _window_units(ref, np.clip(image, win.low, win.high), loaded) > 100 * TOLERANCE
    # the caller's network keeps its default memory format
    weights = [p for p in loaded.model.parameters() if p.ndim == 4]
    assert all(p.is_contiguous() for p in weights)
    assert not all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)


def test_channels_last_equals_eager_fp32_for_the_small_preset(small_sim):
    """The preset users predict with, in the format the runner switches to: random weights
    with BatchNorm statistics of the slice (activations at a trained network's scale)."""
    from napari_dfct.data import window_from_percentiles
    from napari_dfct.model import build_model

    torch.manual_seed(0)
    net = build_model("small", zero_init=False)
    win = window_from_percentiles(small_sim.input, small_sim.target)
    xn = torch.from_numpy(win.normalize(small_sim.input[:2]).astype(np.float32))[:, None]
    with torch.no_grad():
        net.train()(xn)
    net.eval()
    with torch.no_grad():
        ref = win.denormalize(net(xn).numpy()[:, 0])
    out = predict(net, small_sim.input[:2], window=win, device="cpu", backend="eager")
    assert float(np.abs(out - ref).max()) / win.width <= TOLERANCE


def test_unknown_backend_is_one_clear_error(loaded, small_sim):
    with pytest.raises(ValueError, match=r"unknown backend 'tensorrt': choose auto, eager, onnx"):
        predict(loaded, small_sim.input[0], device="cpu", backend="tensorrt")
    with pytest.raises(ValueError, match="runs on the CPU, not on CUDA"):
        infer._check_backend("onnx", torch.device("cuda"))
    assert infer._check_backend(" ONNX ", CPU) == "onnx"


def test_auto_exports_only_for_enough_slices(loaded, monkeypatch, tmp_path, fresh_notes):
    monkeypatch.setattr(_onnx, "missing", lambda: None)
    monkeypatch.setenv("NAPARI_DFCT_CACHE_DIR", str(tmp_path))  # no export cached on disk
    net = loaded.model
    n = infer.ONNX_MIN_SLICES
    assert infer._choose_backend("auto", CPU, n - 1, net) == "eager"
    assert infer._choose_backend("auto", CPU, n, net) == "onnx"
    assert infer._choose_backend("eager", CPU, n, net) == "eager"
    assert infer._choose_backend("auto", torch.device("cuda"), n, net) == "eager"


def test_onnx_without_the_package_falls_back_with_one_message(
    loaded, small_sim, monkeypatch, caplog, fresh_notes
):
    monkeypatch.setattr(
        _onnx, "missing", lambda: "ONNX Runtime is not installed (missing: onnxruntime)"
    )
    image = small_sim.input[:2]
    with caplog.at_level(logging.WARNING, logger="napari_dfct.infer"):
        out = predict(loaded, image, device="cpu", backend="onnx")
        predict(loaded, image, device="cpu", backend="onnx")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert "not installed" in lines[0] and "napari-dfct[onnx]" in lines[0]
    assert "eager" in lines[0]
    np.testing.assert_array_equal(out, predict(loaded, image, device="cpu", backend="eager"))


def test_a_failed_export_falls_back_to_eager(loaded, small_sim, monkeypatch, caplog, fresh_notes):
    monkeypatch.setattr(_onnx, "missing", lambda: None)
    calls = []

    def broken(*args):
        calls.append(1)
        raise RuntimeError("exporter broke\nsecond line")

    monkeypatch.setattr(_onnx, "_export", broken)
    image = small_sim.input[:2]
    net = loaded.model
    with caplog.at_level(logging.WARNING, logger="napari_dfct.infer"):
        out = predict(net, image, window=loaded.window, device="cpu", backend="onnx")
        predict(net, image, window=loaded.window, device="cpu", backend="onnx")
    assert len(calls) == 1  # the failure is remembered for these weights
    [line] = [r.getMessage() for r in caplog.records]
    assert "the export failed (RuntimeError: exporter broke)" in line
    assert _window_units(out, _reference(loaded, image), loaded) <= TOLERANCE


def test_a_failing_batch_falls_back_to_eager(loaded, small_sim, monkeypatch, caplog, fresh_notes):
    """ONNX Runtime's own errors (its allocation failures among them) end in eager, whose
    out-of-memory handling then applies."""
    monkeypatch.setattr(_onnx, "missing", lambda: None)

    def failing(x):
        raise RuntimeError("Failed to allocate memory for requested buffer")

    failing.release_memory = lambda: None
    monkeypatch.setattr(_onnx, "session", lambda *args: failing)
    image = small_sim.input[:2]
    with caplog.at_level(logging.WARNING, logger="napari_dfct.infer"):
        out = predict(loaded, image, device="cpu", backend="onnx")
    [line] = [r.getMessage() for r in caplog.records]
    assert "ONNX Runtime failed on a batch of shape (2, 1, 64, 64) (RuntimeError)" in line
    np.testing.assert_array_equal(out, predict(loaded, image, device="cpu", backend="eager"))


def test_onnx_runtime_equals_eager_fp32(loaded, small_sim, monkeypatch, fresh_notes):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    image = small_sim.input
    ref = _reference(loaded, image)
    net = loaded.model
    released = []
    original = _onnx.OnnxSession.release_memory
    monkeypatch.setattr(
        _onnx.OnnxSession, "release_memory", lambda self: released.append(original(self))
    )
    out = predict(net, image, window=loaded.window, device="cpu", backend="onnx")
    assert _onnx.cached(net) and len(released) == 1  # the arena is shrunk afterwards
    assert _window_units(out, ref, loaded) <= TOLERANCE
    # odd sizes are padded as the network pads them; tiles go through the same session
    odd = image[:, 3:, 5:]
    got = predict(net, odd, window=loaded.window, device="cpu", backend="onnx")
    assert _window_units(got, _reference(loaded, odd), loaded) <= TOLERANCE
    tiled = predict(net, image, window=loaded.window, device="cpu", backend="onnx", tile=32)
    eager = predict(net, image, window=loaded.window, device="cpu", backend="eager", tile=32)
    assert _window_units(tiled, eager, loaded) <= TOLERANCE

    # a cached session serves auto even for one slice; changed weights need a new export
    def no_eager(self, x):
        raise AssertionError("the eager backend ran")

    with monkeypatch.context() as patch:
        patch.setattr(infer._Runner, "_eager", no_eager)
        predict(net, image[0], window=loaded.window, device="cpu")
    assert _onnx.cached(net)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    try:
        with torch.no_grad():
            net.inc[0].weight.mul_(1.5)
        assert not _onnx.cached(net)
    finally:
        net.load_state_dict(state)


@pytest.mark.parametrize("backend", ["eager", "auto", "onnx"])
def test_cli_predict_backend(trained_model, small_sim, tmp_path, backend, fresh_notes):
    src = tmp_path / "in.npy"
    np.save(src, small_sim.input[:2])
    out = tmp_path / "out.npy"
    argv = ["predict", "--model", str(trained_model), "--input", str(src), "--out", str(out)]
    assert main([*argv, "--no-progress", "--backend", backend]) == 0
    got = np.load(out)
    ref = _reference(load_model(trained_model), small_sim.input[:2])
    assert _window_units(got, ref, load_model(trained_model)) <= TOLERANCE


def test_cli_predict_unknown_backend_exits_2(trained_model, small_sim, tmp_path, capsys):
    src = tmp_path / "in.npy"
    np.save(src, small_sim.input[:1])
    argv = ["predict", "--model", str(trained_model), "--input", str(src)]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path / "o.npy"), "--backend", "fast"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'fast'" in err and "Traceback" not in err
