"""Every file the package writes honours the umask, as a plain ``open`` does.

Files written through a temporary file and a rename (models, JSON, grid and report files,
TIFF/NPY volumes, simulations, the sample cache) must not keep the private mode of a
temporary file: colleagues on shared storage read them. Under ``umask 022`` every file and
folder written by ``dfct simulate``, ``dfct grid`` (with its report), ``dfct grid-report``,
``dfct train``, ``dfct predict`` (TIFF and .npy) and the sample cache must be 0644 / 0755;
under ``umask 027`` 0640 / 0750. The expected modes are computed from the umask, the way
the operating system applies it to ``open(..., "w")`` and ``mkdir``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from napari_dfct.cli import main

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")

TINY = ["--preset", "tiny", "--epochs", "1", "--patch", "32", "--batch-size", "4"]


def _write_everything(root: Path) -> None:
    """Run every command that writes files, into ``root``."""
    assert (
        main(
            [
                "simulate",
                str(root / "sim"),
                "--slices",
                "2",
                "--size",
                "64",
                "--views",
                "96",
                "--rotations",
                "2",
                "--seed",
                "3",
                "--quiet",
            ]
        )
        == 0
    )
    grid = root / "grid"
    assert (
        main(
            [
                "grid",
                str(grid),
                "--simulate",
                "--sim-size",
                "64",
                "--sim-slices",
                "4",
                "--sim-test-slices",
                "2",
                "--sim-views",
                "96",
                "--sim-rotations",
                "2",
                "--configs",
                "l2",
                "--seeds",
                "0",
                *TINY,
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    assert main(["grid-report", str(grid)]) == 0
    model = root / "model"
    assert (
        main(
            [
                "train",
                "--data",
                str(grid / "data" / "train"),
                "--out",
                str(model),
                *TINY,
                "--no-progress",
            ]
        )
        == 0
    )
    for name in ("pred.tif", "pred.npy"):
        assert (
            main(
                [
                    "predict",
                    "--model",
                    str(model),
                    "--input",
                    str(grid / "data" / "test" / "input.tif"),
                    "--out",
                    str(root / name),
                    "--no-progress",
                ]
            )
            == 0
        )
    from napari_dfct._sample_data import _write_cache

    _write_cache(
        root / "cache", "key", {"input": np.zeros((2, 4, 4), np.float32)}, {"note": "test"}
    )


@pytest.mark.slow
@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_written_files_follow_the_umask(tmp_path, capsys, umask):
    root = tmp_path / "out"
    root.mkdir()
    old = os.umask(umask)
    try:
        _write_everything(root)
    finally:
        os.umask(old)
    capsys.readouterr()
    want_file, want_dir = 0o666 & ~umask, 0o777 & ~umask
    files, wrong = 0, []
    for path in sorted(root.rglob("*")):
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_symlink():
            continue
        want = want_dir if path.is_dir() else want_file
        files += not path.is_dir()
        if mode != want:
            wrong.append(f"{path.relative_to(root)}: {mode:o} (want {want:o})")
    assert not wrong, "\n".join(wrong)
    # the walk saw what each command writes
    names = {p.name for p in root.rglob("*")}
    for expected in (
        "input.tif",
        "meta.json",
        "grid.json",
        "grid-log.jsonl",
        "metrics.json",
        "model.safetensors",
        "config.json",
        "history.json",
        "report.md",
        "pred.tif",
        "pred.npy",
    ):
        assert expected in names, expected
    assert any(n.endswith(".png") for n in names) and any(n.endswith(".csv") for n in names)
    assert any(n.endswith(".npz") for n in names)  # the sample cache
    assert files > 20
