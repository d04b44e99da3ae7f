"""``dfct predict`` without torch (:mod:`napari_dfct._fast_predict`): with the model's ONNX
export in the disk cache and the CPU as the device, a real ``dfct predict`` process never
imports torch and writes what torch predicts; a cache miss, a damaged export, a context
model, ``--backend eager`` and ``--device cuda`` take the torch path as before. The key
computed without torch is the key of the loaded model, for a trained and an initialised
network; ``auto`` means the CPU without torch only where no GPU can be.

The processes skip without onnx and onnxruntime; the key and the device rule do not.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from napari_dfct import _fast_predict, _onnx, device
from napari_dfct._onnx import _disk_key, _multiple
from napari_dfct.checkpoint import load_model, save_checkpoint
from napari_dfct.infer import predict
from napari_dfct.model import build_model
from test_onnx_cache import _reference  # eager fp32, NCHW; tests/ is on sys.path

#: Largest difference from eager fp32, a fraction of the intensity window (issue 28).
TOLERANCE = 1e-4
WINDOW = {"low": -1.0, "high": 2.0}

needs_ort = pytest.mark.skipif(
    _onnx.missing() is not None, reason="needs the extra napari-dfct[onnx]"
)

#: ``napari_dfct.cli.main(argv)`` in a fresh interpreter; prints its exit status and
#: whether torch got imported.
_RUN = """\
import json, sys
from napari_dfct.cli import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "torch": "torch" in sys.modules}))
"""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty disk cache of exports for the test (child processes inherit it)."""
    monkeypatch.setenv("NAPARI_DFCT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(_onnx, "_CACHE", __import__("weakref").WeakKeyDictionary())
    monkeypatch.setattr(_onnx, "_FAILED", __import__("weakref").WeakKeyDictionary())
    return tmp_path / "cache" / "onnx"


def _saved(tmp_path, name: str, **overrides) -> tuple:
    """A randomly initialised ``tiny`` network (output conv included), saved with a window:
    its folder and the loaded model."""
    torch.manual_seed(3)
    net = build_model("tiny", zero_init=False, **overrides).eval()
    folder = save_checkpoint(tmp_path / name, net, {"window": WINDOW, "name": name})
    return folder, load_model(folder)


def _predict(folder, src, out, *extra: str) -> tuple[dict, subprocess.CompletedProcess]:
    argv = ["predict", "--model", str(folder), "--input", str(src), "--out", str(out)]
    res = subprocess.run(
        [sys.executable, "-c", _RUN, *argv, "--no-progress", "--overwrite", *extra],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    lines = res.stdout.strip().splitlines()
    assert lines, res.stderr
    return json.loads(lines[-1]), res


def _units(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max()) / (WINDOW["high"] - WINDOW["low"])


# --- the key ------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["trained", "initialised small", "initialised 3 channels"])
def test_the_key_without_torch_is_the_key_of_the_loaded_model(which, trained_model, tmp_path):
    if which == "trained":
        folder = trained_model
    else:
        torch.manual_seed(0)
        extra = {"in_channels": 3, "out_channels": 3} if "3" in which else {}
        net = build_model("small" if "small" in which else "tiny", zero_init=False, **extra)
        folder = save_checkpoint(tmp_path / "m", net, {"window": WINDOW})
    net = load_model(folder).model.eval()
    cfg = json.loads((folder / "config.json").read_text())
    arch = _fast_predict.architecture(cfg["model"])
    assert arch is not None
    digest = _fast_predict.weights_digest(folder / "model.safetensors")
    fast = _onnx.saved_key(arch, digest, importlib.metadata.version("torch"))
    assert fast == _disk_key(net, net.in_channels, _multiple(net))
    # another weight: another key
    with torch.no_grad():
        net.inc[0].weight[0, 0, 0, 0] += 1e-3
    assert fast != _disk_key(net, net.in_channels, _multiple(net))


def test_only_plain_2d_architectures_are_described_without_torch():
    arch = _fast_predict.architecture
    assert arch({"base_channels": 4, "depth": 2}) == {
        "base_channels": 4,
        "depth": 2,
        "in_channels": 1,
        "out_channels": 1,
        "bilinear": True,
    }
    assert arch({"base_channels": 4, "context": 0, "dims": 2, "zero_init": False}) is not None
    for bad in (
        {"context": 1},
        {"dims": 3},
        {"depth": 2.0},
        {"depth": True},
        {"bilinear": 1},
        {"colour": 3},
        [4, 2],
    ):
        assert arch(bad) is None, bad


# --- auto means the CPU, without torch, only where no GPU can be ---------------------------


def _machine(root, pci=(), dev=(), proc=()):
    for i, (vendor, cls) in enumerate(pci):
        d = root / "sys/bus/pci/devices" / f"0000:00:0{i}.0"
        d.mkdir(parents=True)
        (d / "vendor").write_text(vendor + "\n")
        (d / "class").write_text(cls + "\n")
    (root / "sys/bus/pci/devices").mkdir(parents=True, exist_ok=True)
    (root / "dev").mkdir(exist_ok=True)
    for name in dev:
        (root / "dev" / name).write_text("")
    for name in proc:
        (root / name).mkdir(parents=True)
    return str(root)


@pytest.mark.parametrize(
    "pci, dev, proc, gpu",
    [
        ([("0x8086", "0x060000"), ("0x1af4", "0x020000")], ["null", "tty"], [], False),
        ([("0x10de", "0x030200")], [], [], True),  # an NVIDIA 3-D controller, no driver
        ([("0x1002", "0x030000")], [], [], True),  # an AMD display device
        ([("0x10de", "0x040300")], [], [], False),  # an NVIDIA sound device: no GPU
        ([], ["nvidia0", "nvidiactl"], [], True),  # a container's passed-through GPU
        ([], ["nvhost-ctrl-gpu"], [], True),  # Jetson
        ([], ["dxg"], [], True),  # WSL
        ([], [], ["proc/driver/nvidia"], True),
    ],
)
def test_gpu_traces_on_linux(tmp_path, pci, dev, proc, gpu):
    root = _machine(tmp_path, pci, dev, proc)
    assert device._gpu_traces(root) is gpu


def test_without_a_pci_listing_a_gpu_cannot_be_ruled_out(tmp_path):
    assert device._gpu_traces(str(tmp_path)) is True


def test_auto_is_cpu_agrees_with_torch_here():
    """With torch loaded it asks torch; on this machine the rule without torch agrees."""
    assert device.auto_is_cpu() is (device.resolve_device("auto").type == "cpu")
    if sys.platform.startswith("linux") and device._torch_build_has_gpu() is False:
        assert not torch.cuda.is_available()


# --- real processes -----------------------------------------------------------------------


@needs_ort
@pytest.mark.slow
def test_a_cached_export_predicts_without_torch(tmp_path, cache, small_sim):
    folder, loaded = _saved(tmp_path, "fast")
    assert _onnx.warm(loaded.model)
    volume = np.ascontiguousarray(small_sim.input[:3, :40, :52])  # padded to 4s
    src = tmp_path / "vol.npy"
    np.save(src, volume)
    ref = _reference(loaded, volume)

    got, res = _predict(folder, src, tmp_path / "a.npy", "--batch-size", "2")
    assert got == {"rc": 0, "torch": False}, res.stderr
    assert res.stdout.startswith(f"wrote {tmp_path / 'a.npy'} (3x40x52, float32) with fast")
    assert _units(np.load(tmp_path / "a.npy"), ref) <= TOLERANCE

    # tiles and chosen slices: what the torch path's ONNX Runtime gives, without torch
    got, res = _predict(
        folder, src, tmp_path / "t.npy", "--tile", "16", "--overlap", "8", "--slices", "2,0"
    )
    assert got == {"rc": 0, "torch": False}, res.stderr
    expected = predict(
        loaded, volume, slices=[2, 0], tile=16, overlap=8, device="cpu", backend="onnx"
    )
    assert _units(np.load(tmp_path / "t.npy"), expected) <= TOLERANCE

    # a 2-D input, the same checks and messages as before
    np.save(tmp_path / "one.npy", volume[1])
    got, _ = _predict(folder, tmp_path / "one.npy", tmp_path / "o.npy", "--device", "CPU")
    assert got == {"rc": 0, "torch": False}
    assert _units(np.load(tmp_path / "o.npy"), ref[1]) <= TOLERANCE
    got, res = _predict(folder, src, tmp_path / "x.npy", "--slices", "7")
    assert got == {"rc": 2, "torch": False}
    assert "--slices 7 is out of range: the volume has 3 slices (0-2)" in res.stderr
    volume[1, 3, 4] = np.nan
    np.save(src, volume)
    got, res = _predict(folder, src, tmp_path / "x.npy")
    assert got == {"rc": 2, "torch": False}
    assert "input slice(s) [1] contain NaN or infinite values" in res.stderr
    assert not (tmp_path / "x.npy").exists()


@needs_ort
@pytest.mark.slow
@pytest.mark.parametrize("case", ["miss", "damaged", "eager", "cuda", "context"])
def test_the_torch_path_runs_otherwise(case, tmp_path, cache, small_sim):
    folder, loaded = _saved(tmp_path, case, **({"context": 1} if case == "context" else {}))
    if case != "miss":
        assert _onnx.warm(loaded.model)
    if case == "damaged":  # the graph no longer matches its record
        [graph] = cache.glob("*.onnx")
        data = bytearray(graph.read_bytes())
        data[len(data) // 2] ^= 0xFF
        graph.write_bytes(bytes(data))
    volume = np.ascontiguousarray(small_sim.input[:3, :32, :32])
    src = tmp_path / "vol.npy"
    np.save(src, volume)
    extra = {"eager": ["--backend", "eager"], "cuda": ["--device", "cuda"]}.get(case, [])
    got, res = _predict(folder, src, tmp_path / "p.npy", *extra)
    assert got["torch"] is True
    if case == "cuda" and not torch.cuda.is_available():
        assert got["rc"] == 2 and "device 'cuda' was chosen but CUDA is not available" in (
            res.stderr
        )
        return
    assert got["rc"] == 0, res.stderr
    if case == "context":
        expected = predict(loaded, volume, device="cpu", backend="eager")
    else:
        expected = _reference(loaded, volume)
    assert _units(np.load(tmp_path / "p.npy"), expected) <= TOLERANCE
