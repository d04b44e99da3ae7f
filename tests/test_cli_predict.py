"""``dfct predict`` never overwrites silently and never writes over its own input.

An existing ``--out`` is refused (one line, exit 2, the file untouched) unless
``--overwrite`` is given; an ``--out`` that names the input file (the same path, another
spelling of it, a symbolic or a hard link) is refused even with ``--overwrite``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile

from napari_dfct.cli import main
from napari_dfct.io import write_volume


@pytest.fixture(scope="module")
def setup(small_sim, tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict")
    write_volume(folder / "in.tif", small_sim.input)
    write_volume(folder / "gt.tif", small_sim.target)
    model = folder / "model"
    assert (
        main(
            [
                "train",
                "--input",
                str(folder / "in.tif"),
                "--target",
                str(folder / "gt.tif"),
                "--out",
                str(model),
                "--epochs",
                "1",
                "--preset",
                "tiny",
                "--patch",
                "32",
                "--batch-size",
                "4",
                "--no-progress",
            ]
        )
        == 0
    )
    return folder, model


def _predict(model, source, out, *extra) -> int:
    return main(
        [
            "predict",
            "--model",
            str(model),
            "--input",
            str(source),
            "--out",
            str(out),
            "--no-progress",
            *extra,
        ]
    )


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("dfct predict: error: ")
    return err[0]


@pytest.mark.parametrize("name", ["pred.tif", "pred.npy"])
def test_an_existing_out_needs_overwrite(setup, tmp_path, capsys, name):
    folder, model = setup
    out = tmp_path / name
    out.write_bytes(b"somebody's file")
    assert _predict(model, folder / "in.tif", out) == 2
    line = _error_line(capsys)
    assert "already exists" in line and "--overwrite" in line
    assert out.read_bytes() == b"somebody's file"
    # with --overwrite the prediction replaces it
    assert _predict(model, folder / "in.tif", out, "--overwrite") == 0
    capsys.readouterr()
    pred = tifffile.imread(out) if name.endswith(".tif") else np.load(out)
    assert pred.shape == (4, 64, 64) and pred.dtype == np.float32
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


def test_a_new_out_is_written_without_overwrite(setup, tmp_path, capsys):
    folder, model = setup
    assert _predict(model, folder / "in.tif", tmp_path / "new.tif") == 0
    assert tifffile.imread(tmp_path / "new.tif").shape == (4, 64, 64)


def _spellings(folder, tmp_path):
    """Ways to name ``in.tif`` as ``--out``: the path itself, with ``..``, relative to
    the working folder, through a symbolic link and through a hard link."""
    src = tmp_path / "input.tif"
    src.write_bytes((folder / "in.tif").read_bytes())
    sym = tmp_path / "link.tif"
    sym.symlink_to(src)
    hard = tmp_path / "hard.tif"
    os.link(src, hard)
    (tmp_path / "sub").mkdir()
    return src, [src, tmp_path / "sub" / ".." / "input.tif", os.path.relpath(src), sym, hard]


@pytest.mark.parametrize("overwrite", [False, True])
def test_out_may_never_be_the_input(setup, tmp_path, capsys, overwrite):
    folder, model = setup
    src, names = _spellings(folder, tmp_path)
    before = src.read_bytes()
    extra = ["--overwrite"] if overwrite else []
    for out in names:
        assert _predict(model, src, out, *extra) == 2, out
        assert "is the input file" in _error_line(capsys), out
        assert src.read_bytes() == before
    # the other way round: the input named through a link, --out the real file
    assert _predict(model, tmp_path / "link.tif", src, *extra) == 2
    assert "is the input file" in _error_line(capsys)
    assert src.read_bytes() == before


def test_out_may_not_be_a_folder(setup, tmp_path, capsys):
    folder, model = setup
    (tmp_path / "p.tif").mkdir()
    assert _predict(model, folder / "in.tif", tmp_path / "p.tif", "--overwrite") == 2
    assert "is a folder" in _error_line(capsys)
