"""bioimage.io export: the package passes bioimage.io's own model test offline, its
standalone architecture file reproduces our network, and bad requests are one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import torch

from napari_dfct.cli import main
from napari_dfct.export import ExportError, export_bioimageio, sample_input
from napari_dfct.model import build_model


def _error_line(capsys) -> str:
    err = [
        line
        for line in capsys.readouterr().err.strip().splitlines()
        if not line.startswith("dfct export: ") or "error" in line
    ]
    assert len(err) == 1, err
    assert err[0].startswith("dfct export: error: ")
    return err[0]


@pytest.mark.slow
def test_the_standalone_architecture_file_reproduces_the_model(tmp_path):
    """The shipped architecture file (napari_dfct/model.py as dfct_unet.py), copied alone
    and imported where napari_dfct cannot be imported, loads our state dict
    (weights_only) and gives our model's output."""
    from napari_dfct.export.package import architecture_source

    torch.manual_seed(3)
    for preset, extra in (("tiny", {}), ("tiny", {"bilinear": False})):
        model = build_model(preset, zero_init=False, **extra)
        with torch.no_grad():  # non-trivial BatchNorm statistics
            for name, buf in model.named_buffers():
                if name.endswith("running_mean"):
                    buf.normal_(0, 0.1)
                elif name.endswith("running_var"):
                    buf.uniform_(0.5, 1.5)
        model.eval()
        x = torch.rand(2, 1, 37, 50)  # not a multiple of 2**depth: padding and crop
        with torch.no_grad():
            expected = model(x).numpy()
        folder = tmp_path / f"pkg-{len(extra)}"
        folder.mkdir()
        (folder / "dfct_unet.py").write_text(architecture_source().read_text())
        torch.save(model.state_dict(), folder / "weights.pt")
        np.save(folder / "x.npy", x.numpy())
        kwargs = {
            "base_channels": model.base_channels,
            "depth": model.depth,
            "bilinear": model.bilinear,
        }
        script = (
            "import sys, json, numpy as np, torch\n"
            "sys.modules['napari_dfct'] = None  # any import of the package fails\n"
            f"sys.path.insert(0, {str(folder)!r})\n"
            "from dfct_unet import ResidualUNet\n"
            f"net = ResidualUNet(**json.loads({json.dumps(kwargs)!r}))\n"
            f"net.load_state_dict(torch.load({str(folder / 'weights.pt')!r}, "
            "weights_only=True))\n"
            "net.eval()\n"
            "with torch.no_grad():\n"
            f"    y = net(torch.from_numpy(np.load({str(folder / 'x.npy')!r})))\n"
            f"np.save({str(folder / 'y.npy')!r}, y.numpy())\n"
        )
        subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
        np.testing.assert_allclose(np.load(folder / "y.npy"), expected, rtol=0, atol=1e-6)


def test_sample_input_is_a_central_crop_of_a_multiple():
    a = np.arange(300 * 410, dtype=np.float32).reshape(300, 410)
    crop, words = sample_input(a, 16)
    assert crop.shape == (256, 256) and "256x256" in words and "padded" not in words
    assert crop[0, 0] == a[22, 77]
    crop, _ = sample_input(a, 16, smallest=288)  # at least the package's smallest input
    assert crop.shape == (288, 288)
    assert crop[0, 0] == a[6, 61]


def test_a_slice_smaller_than_the_smallest_input_is_padded_by_reflection():
    a = np.arange(256 * 256, dtype=np.float32).reshape(256, 256)
    tile, words = sample_input(a, 16, smallest=288)
    assert tile.shape == (288, 288) and tile.dtype == np.float32
    np.testing.assert_array_equal(tile[16:272, 16:272], a)  # the slice, centred
    np.testing.assert_array_equal(tile[15, 16:272], a[1])  # reflected, not repeated
    np.testing.assert_array_equal(tile[16:272, 0], a[:, 16])
    assert "256x256, smaller than the package's smallest input (288x288" in words
    assert words.endswith("padded by reflection to 288x288")
    # wider than the tile in one axis, too short in the other: cropped there, padded here
    b = np.arange(200 * 410, dtype=np.float32).reshape(200, 410)
    tile, words = sample_input(b, 16, smallest=288)
    assert tile.shape == (288, 288) and "200x410" in words and "cropped and padded" in words
    np.testing.assert_array_equal(tile[44:244], b[:, 61:349])
    with pytest.raises(ExportError, match="NaN"):
        sample_input(np.full((8, 8), np.nan, np.float32), 16, smallest=32)


@pytest.mark.slow
def test_export_passes_the_bioimageio_model_test_offline(
    trained_model, small_sim, tmp_path, monkeypatch
):
    pytest.importorskip(
        "bioimageio.core", reason="the bioimage.io test needs the extra napari-dfct[bioimageio]"
    )
    import httpx
    from bioimageio.core import test_model

    requests = []

    def no_network(*args, **kwargs):
        requests.append(args[:2])
        raise httpx.ConnectError("no network in this test")

    for name in ("request", "stream", "get", "head", "post"):
        monkeypatch.setattr(httpx, name, no_network)
    out = export_bioimageio(
        trained_model,
        tmp_path / "model.zip",
        sample=small_sim.input,
        sample_source="the training input",
    )
    assert requests == []  # building the package asks nothing of the network

    summary = test_model(out, devices=["cpu"])
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failed
    # the only request the model test tries is the HEAD of the citation URL, which fails
    # softly (a warning): nothing is downloaded
    assert {url for _, url in requests} <= {"https://github.com/napari-dfct/napari-dfct"}

    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        assert {
            "rdf.yaml",
            "weights.pt",
            "dfct_unet.py",
            "test_input.npy",
            "test_output.npy",
            "README.md",
            "cover.png",
        } <= names
        rdf = zf.read("rdf.yaml").decode()
        zf.extract("weights.pt", tmp_path)
    sd = torch.load(tmp_path / "weights.pt", weights_only=True)
    from napari_dfct.checkpoint import load_model

    loaded = load_model(trained_model)
    ours = loaded.model.state_dict()
    assert set(sd) == set(ours) and all(torch.equal(sd[k], ours[k]) for k in ours)
    low, high = loaded.window.low, loaded.window.high
    for expected in (
        "format_version: 0.5",
        "pytorch_state_dict",
        "id: clip",
        "id: scale_linear",
        "l2",
        "recipe: stable",
        "napari_dfct:",
    ):
        assert expected in rdf, expected
    assert f"{low!r}"[:6] in rdf and f"{high!r}"[:6] in rdf


def test_an_existing_package_needs_overwrite(trained_model, tmp_path, capsys):
    out = tmp_path / "model.zip"
    out.write_bytes(b"somebody's file")
    assert main(["export", str(trained_model), str(out)]) == 2
    line = _error_line(capsys)
    assert "exists" in line and "--overwrite" in line
    assert out.read_bytes() == b"somebody's file"


@pytest.mark.parametrize("case", ["missing", "not a model", "corrupt config"])
def test_a_bad_model_folder_is_one_line(tmp_path, capsys, case):
    folder = tmp_path / "model"
    if case != "missing":
        folder.mkdir()
        (folder / "notes.txt").write_text("hello")
    if case == "corrupt config":
        (folder / "model.safetensors").write_bytes(b"\0" * 16)
        (folder / "config.json").write_text("{not json")
    assert main(["export", str(folder), str(tmp_path / "m.zip")]) == 2
    line = _error_line(capsys)
    assert str(folder) in line
    assert not (tmp_path / "m.zip").exists()


def test_bad_output_names_and_test_data(trained_model, tmp_path, capsys):
    assert main(["export", str(trained_model), str(tmp_path / "m.tar")]) == 2
    assert ".zip" in _error_line(capsys)
    assert (
        main(
            [
                "export",
                str(trained_model),
                str(tmp_path / "m.zip"),
                "--data",
                str(tmp_path / "nope.tif"),
            ]
        )
        == 2
    )
    assert "not found" in _error_line(capsys)


@pytest.mark.parametrize(
    "license, words",
    [
        ("MTI", "did you mean MIT, "),
        ("cc-by-4.0", "did you mean CC-BY-4.0?"),
        ("GPL3", "GPL-3.0"),
        ("no such licence at all", "use one such as CC-BY-4.0, MIT or BSD-3-Clause"),
    ],
)
def test_a_bad_license_is_one_short_line_with_close_matches(
    trained_model, tmp_path, capsys, license, words
):
    pytest.importorskip("bioimageio.spec")
    out = tmp_path / "m.zip"
    assert main(["export", str(trained_model), str(out), "--license", license]) == 2
    line = _error_line(capsys)
    assert f"unknown licence {license!r}" in line and words in line
    assert len(line) < 200  # a few close matches, not every SPDX identifier
    assert line.count(", ") <= 3
    assert not out.exists() and not list(tmp_path.glob(".dfct-export-*"))
    # a valid identifier passes the check (MIT is not the default)
    from napari_dfct.export import check_license

    assert check_license("MIT") == "MIT"


_KILLED_EXPORT = """
import os, signal, sys
import napari_dfct.export.package as package
from napari_dfct.cli import main

real = package._write_files

def write_then_die(folder, *args, **kwargs):
    real(folder, *args, **kwargs)
    print(folder, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # killed half-way through the export

package._write_files = write_then_die
main(["export", sys.argv[1], sys.argv[2]])
"""


def test_a_killed_export_leaves_a_folder_that_the_next_export_removes(
    trained_model, tmp_path, capsys
):
    pytest.importorskip("bioimageio.spec", reason="export needs napari-dfct[bioimageio]")
    script = tmp_path / "killed.py"
    script.write_text(_KILLED_EXPORT)
    out = tmp_path / "pkg" / "model.zip"
    out.parent.mkdir()
    killed = subprocess.run(
        [sys.executable, str(script), str(trained_model), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr
    (left,) = [p for p in out.parent.iterdir() if p.name.startswith(".dfct-export-")]
    assert str(left) == killed.stdout.strip() and (left / "weights.pt").is_file()
    assert not out.exists()
    # another export's work folder whose process still runs, and one of another host
    # (recent), are left alone
    from napari_dfct._procs import owner_tag

    alive = out.parent / f".dfct-export-{owner_tag()}-abc"
    foreign = out.parent / ".dfct-export-otherhost-1-abc"
    alive.mkdir()
    foreign.mkdir()
    assert main(["export", str(trained_model), str(out)]) == 0, capsys.readouterr().err
    assert zipfile.is_zipfile(out)
    assert sorted(p.name for p in out.parent.iterdir()) == sorted(
        ["model.zip", alive.name, foreign.name]
    )
    old = time.time() - 2 * 86400  # another host's, untouched for two days: left behind
    os.utime(foreign, (old, old))
    from napari_dfct.export.package import clean_stale_exports

    assert clean_stale_exports(out.parent) == [foreign]
    assert alive.is_dir()
