"""Tests of ``dfct measure``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from scipy.special import erf

from napari_dfct import metrics
from napari_dfct.cli import main


def _stack(n=5, size=96, seed=0):
    """A (Z, Y, X) float32 stack: dark air on the left, brighter tissue on the right with a
    Gaussian-blurred edge at col 48; the noise grows with the slice index, so the CNR
    differs between slices."""
    rng = np.random.default_rng(seed)
    c = np.arange(size, dtype=np.float64)
    clean = 0.2 + 0.8 * 0.5 * (1 + erf((c - 48) / (np.sqrt(2) * 2.5)))
    out = np.empty((n, size, size), np.float32)
    for z in range(n):
        out[z] = clean[None, :] + rng.normal(0, 0.05 * (z + 1), (size, size))
    return out, np.broadcast_to(clean, (size, size)).astype(np.float32)


SIG, BG = (48.0, 72.0), (48.0, 22.0)


@pytest.fixture
def stack_files(tmp_path):
    vol, clean = _stack()
    img = tmp_path / "input.tif"
    tifffile.imwrite(img, vol)
    ref = tmp_path / "truth.tif"
    tifffile.imwrite(ref, np.broadcast_to(clean, vol.shape).copy())
    return vol, clean, img, ref


def _json(capsys, argv):
    assert main(argv) == 0
    out = capsys.readouterr().out
    return json.loads(out)


def test_json_matches_the_metrics_on_the_central_slice(stack_files, capsys):
    vol, _, img, _ = stack_files
    res = _json(
        capsys, ["measure", str(img), "--signal", "48,72", "--background", "48,22", "--json"]
    )
    assert res["slice"] == 2
    expected = metrics.measure(vol[2], SIG, BG)
    assert res["cnr"] == pytest.approx(expected["cnr"])
    assert res["cnr_stderr"] == pytest.approx(expected["cnr_stderr"])
    assert res["fwhm"] == pytest.approx(expected["fwhm"])
    assert res["fwhm"] == pytest.approx(2.3548 * 2.5, rel=0.15)
    assert res["reason"] is None
    assert res["line"] == [list(SIG), list(BG)]
    assert res["psnr"] is None and res["ssim"] is None


def test_slice_option_and_reference(stack_files, capsys):
    vol, clean, img, ref = stack_files
    a = _json(
        capsys,
        [
            "measure",
            str(img),
            "--signal",
            "48,72",
            "--background",
            "48,22",
            "--slice",
            "0",
            "--reference",
            str(ref),
            "--json",
        ],
    )
    b = _json(
        capsys,
        [
            "measure",
            str(img),
            "--signal",
            "48,72",
            "--background",
            "48,22",
            "--slice",
            "4",
            "--json",
        ],
    )
    assert a["slice"] == 0 and b["slice"] == 4
    assert a["cnr"] > b["cnr"]  # less noise on slice 0
    assert a["psnr"] == pytest.approx(metrics.psnr(vol[0], clean))
    assert a["ssim"] == pytest.approx(metrics.ssim(vol[0], clean))
    # the reference against itself: the identities. --json writes strict JSON (the
    # package's NaN rule), so the infinite PSNR is null there, without a reason; the
    # table shows it as inf
    argv = [
        "measure",
        str(ref),
        "--signal",
        "48,72",
        "--background",
        "48,22",
        "--reference",
        str(ref),
    ]
    assert main([*argv, "--json"]) == 0
    raw = capsys.readouterr().out
    c = json.loads(raw, parse_constant=lambda name: pytest.fail(f"non-strict JSON: {name}"))
    assert c["psnr"] is None and "psnr" not in c["reasons"]
    assert c["ssim"] == pytest.approx(1.0)
    assert main(argv) == 0
    psnr_row = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("PSNR")]
    assert psnr_row and psnr_row[0].split()[1:] == ["inf", "dB"]


def test_meta_json_supplies_the_default_rois(tmp_path, capsys):
    vol, _ = _stack()
    np.save(tmp_path / "input.npy", vol)
    meta = {
        "signal_center": [40, 70],
        "background_center": [44, 20],
        "line": [[48, 30], [48, 66]],
        "roi_size": 20,
        "slice": 1,
    }
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    res = _json(capsys, ["measure", str(tmp_path / "input.npy"), "--json"])
    assert res["slice"] == 1 and res["roi_size"] == 20
    assert res["signal_center"] == [40.0, 70.0]
    assert res["background_center"] == [44.0, 20.0]
    assert res["line"] == [[48.0, 30.0], [48.0, 66.0]]
    assert res["signal_n"] == 400
    expected = metrics.measure(vol[1], (40, 70), (44, 20), line=[[48, 30], [48, 66]], size=20)
    assert res["cnr"] == pytest.approx(expected["cnr"])
    assert res["fwhm"] == pytest.approx(expected["fwhm"])
    # options win over meta.json
    res = _json(
        capsys,
        [
            "measure",
            str(tmp_path / "input.npy"),
            "--signal",
            "48,72",
            "--background",
            "48,22",
            "--json",
        ],
    )
    assert res["signal_center"] == [48.0, 72.0] and res["roi_size"] == 30
    assert res["slice"] == 2


def test_plain_output_is_a_readable_table(stack_files, capsys):
    _, _, img, ref = stack_files
    assert (
        main(
            [
                "measure",
                str(img),
                "--signal",
                "48,72",
                "--background",
                "48,22",
                "--reference",
                str(ref),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    labels = [ln.split()[0] for ln in lines]
    for label in ("image", "signal", "background", "CNR", "FWHM", "PSNR", "SSIM"):
        assert label in labels
    assert "+/-" in out and "px" in out and "dB" in out


def test_undefined_values_are_null_with_a_reason(stack_files, capsys):
    _, _, img, _ = stack_files
    res = _json(
        capsys,
        [
            "measure",
            str(img),
            "--signal",
            "10,72",
            "--background",
            "48,22",
            "--line",
            "48,30,48,120",
            "--json",
        ],
    )
    assert res["cnr"] is None and res["fwhm"] is None
    assert "outside" in res["reason"] and "leaves the image" in res["reason"]
    assert main(["measure", str(img), "--signal", "10,72", "--background", "48,22"]) == 0
    out = capsys.readouterr().out
    assert "n/a" in out and "outside" in out


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--signal", "48,72"], "both"),
        (["--signal", "a,b", "--background", "48,22"], "--signal"),
        (["--signal", "48,72,3", "--background", "48,22"], "--signal"),
        (["--signal", "48,72", "--background", "48,22", "--slice", "9"], "out of range"),
        (["--signal", "48,72", "--background", "48,22", "--line", "1,2,3"], "--line"),
        (["--signal", "48,72", "--background", "48,22", "--roi-size", "1"], "--roi-size"),
        ([], "meta.json"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(stack_files, capsys, extra, message):
    _, _, img, _ = stack_files
    assert main(["measure", str(img), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("dfct measure: error:") and message in err


def test_bad_files_exit_2(tmp_path, stack_files, capsys):
    _, _, img, _ = stack_files
    assert (
        main(["measure", str(tmp_path / "missing.tif"), "--signal", "1,1", "--background", "2,2"])
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff at all")
    assert main(["measure", str(bad), "--signal", "1,1", "--background", "2,2"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    small = tmp_path / "small.npy"
    np.save(small, np.zeros((5, 50, 50), np.float32))
    assert (
        main(
            [
                "measure",
                str(img),
                "--signal",
                "48,72",
                "--background",
                "48,22",
                "--reference",
                str(small),
            ]
        )
        == 2
    )
    assert "shape" in capsys.readouterr().err
    (tmp_path / "meta.json").write_text("{broken")
    assert main(["measure", str(img)]) == 2
    assert "meta.json" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# truth-based metrics: error CNR and the body mask
# --------------------------------------------------------------------------------------
def _sim_folder(tmp_path, with_meta_mask=True):
    """A simulation-like folder: input (noisy), truth, body.tif (uint8 0/1) and meta.json."""
    vol, clean = _stack()
    truth = np.broadcast_to(clean, vol.shape).copy()
    body = np.zeros(vol.shape, np.uint8)
    body[:, 8:88, 30:90] = 1
    tifffile.imwrite(tmp_path / "input.tif", vol)
    tifffile.imwrite(tmp_path / "truth.tif", truth)
    tifffile.imwrite(tmp_path / "body.tif", body)
    meta = {"signal_center": list(SIG), "background_center": list(BG), "roi_size": 30, "slice": 1}
    if with_meta_mask:
        meta["mask"] = "body.tif"
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    return vol, truth, body


@pytest.mark.parametrize("with_meta_mask", [True, False])
def test_reference_gives_the_error_cnr_and_the_folders_body_mask(tmp_path, capsys, with_meta_mask):
    vol, truth, body = _sim_folder(tmp_path, with_meta_mask)
    res = _json(
        capsys,
        [
            "measure",
            str(tmp_path / "input.tif"),
            "--reference",
            str(tmp_path / "truth.tif"),
            "--json",
        ],
    )
    assert res["slice"] == 1 and res["mask"] == str(tmp_path / "body.tif")
    e = metrics.error_cnr(vol[1], truth[1], SIG, BG, 30)
    assert res["error_cnr"] == pytest.approx(e.error_cnr)
    assert res["psnr_body"] == pytest.approx(metrics.psnr_body(vol[1], truth[1], body[1]))
    assert res["ssim_body"] == pytest.approx(metrics.ssim_body(vol[1], truth[1], body[1]))
    assert res["rmse_body"] == pytest.approx(metrics.rmse_body(vol[1], truth[1], body[1]))
    # the classic metrics stay as they are
    plain = metrics.measure(vol[1], SIG, BG, reference=truth[1])
    for key in ("cnr", "fwhm", "psnr", "ssim"):
        assert res[key] == pytest.approx(plain[key])


def test_mask_option_and_no_mask(tmp_path, capsys):
    vol, truth, _ = _sim_folder(tmp_path)
    other = np.zeros(vol.shape[1:], np.uint8)  # one 2-D mask for every slice
    other[40:60, 10:90] = 1
    np.save(tmp_path / "other.npy", other)
    res = _json(
        capsys,
        [
            "measure",
            str(tmp_path / "input.tif"),
            "--reference",
            str(tmp_path / "truth.tif"),
            "--mask",
            str(tmp_path / "other.npy"),
            "--slice",
            "3",
            "--json",
        ],
    )
    assert res["slice"] == 3 and res["mask"].endswith("other.npy")
    assert res["rmse_body"] == pytest.approx(metrics.rmse_body(vol[3], truth[3], other))
    # a folder without body.tif: no body metrics, and no complaint about them
    (tmp_path / "body.tif").unlink()
    res = _json(
        capsys,
        [
            "measure",
            str(tmp_path / "input.tif"),
            "--reference",
            str(tmp_path / "truth.tif"),
            "--json",
        ],
    )
    assert res["mask"] is None and res["psnr_body"] is None and res["reason"] is None
    assert res["error_cnr"] is not None
    # without a reference there are no truth metrics
    res = _json(capsys, ["measure", str(tmp_path / "input.tif"), "--json"])
    assert res["error_cnr"] is None and res["psnr_body"] is None


def test_table_shows_the_truth_metrics(tmp_path, capsys):
    _sim_folder(tmp_path)
    assert (
        main(["measure", str(tmp_path / "input.tif"), "--reference", str(tmp_path / "truth.tif")])
        == 0
    )
    out = capsys.readouterr().out
    for label in ("error CNR", "PSNR body", "SSIM body", "RMSE body", "mask"):
        assert any(ln.startswith(label) for ln in out.splitlines()), label


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--mask", "body.tif"], "--mask needs --reference"),
        (["--reference", "truth.tif", "--mask", "missing.tif"], "does not exist"),
        (["--reference", "truth.tif", "--mask", "small.npy"], "mask shape"),
    ],
)
def test_mask_errors_are_one_line(tmp_path, capsys, monkeypatch, extra, message):
    _sim_folder(tmp_path)
    np.save(tmp_path / "small.npy", np.ones((4, 4), np.uint8))
    monkeypatch.chdir(tmp_path)
    assert main(["measure", "input.tif", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
