"""Data sets of many scans: pairs CSV and folder convention, slices, split by scan."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_dfct.cli import main
from napari_dfct.io.dataset import describe_scans, load_scans, parse_slice_spec, read_pairs
from napari_dfct.scans import GroupedSampler, split_by_scan


def _scan(rng, n, h, w):
    t = rng.standard_normal((n, h, w)).astype(np.float32)
    return (t + 0.3 * rng.standard_normal(t.shape)).astype(np.float32), t


@pytest.fixture
def study(tmp_path):
    """Three scans of different sizes and slice counts, in three formats."""
    rng = np.random.default_rng(0)
    root = tmp_path / "study"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "c").mkdir()
    x, y = _scan(rng, 5, 40, 48)
    tifffile.imwrite(root / "a" / "input.tif", x)
    tifffile.imwrite(root / "a" / "target.tif", y)
    x, y = _scan(rng, 3, 32, 36)
    np.save(root / "b" / "input.npy", x)
    np.save(root / "b" / "target.npy", y)
    x, y = _scan(rng, 1, 36, 32)
    tifffile.imwrite(root / "c" / "input.tif", x[0])
    tifffile.imwrite(root / "c" / "target.tif", y[0])
    return root


def test_parse_slice_spec():
    assert parse_slice_spec("center", 5) == [2] and parse_slice_spec(None, 4) == [2]
    assert parse_slice_spec("all", 3) == [0, 1, 2]
    assert parse_slice_spec("1-3", 5) == [1, 2, 3] and parse_slice_spec("3,0, 4", 5) == [3, 0, 4]
    for bad in ("middle", "3-1", "1-9", "x,2"):
        with pytest.raises(ValueError, match="slices"):
            parse_slice_spec(bad, 5)


def test_csv_dataset_reads_the_chosen_slices(study):
    (study / "pairs.csv").write_text(
        "input,target,slices\na/input.tif,a/target.tif,1-3\nb/input.npy,b/target.npy,all\n"
        "c/input.tif,c/target.tif,\n"
    )
    data = load_scans(study / "pairs.csv", patch=16)
    assert data.origins == [("a", 1), ("a", 2), ("a", 3), ("b", 0), ("b", 1), ("b", 2), ("c", 0)]
    assert data.scans.tolist() == [0, 0, 0, 1, 1, 1, 2]
    assert data.shapes[0] == (40, 48) and data.shapes[3] == (32, 36)
    a = tifffile.imread(study / "a" / "input.tif")
    np.testing.assert_array_equal(data.inputs[1], a[2])
    assert describe_scans(data) == "3 scans, 7 slices, sizes 32x36, 36x32, 40x48"


def test_folder_convention_takes_the_central_slices(study):
    pairs = read_pairs(study)
    assert [p.name for p in pairs] == ["a", "b", "c"]
    data = load_scans(pairs)
    assert data.origins == [("a", 2), ("b", 1), ("c", 0)]


def test_split_is_by_scan_never_by_slice():
    scans = np.repeat(np.arange(6), [3, 1, 2, 4, 1, 2])
    for seed in range(5):
        train, val = split_by_scan(scans, 0.34, seed)
        assert set(scans[train]).isdisjoint(scans[val])
        assert len(set(scans[val])) == 2 and sorted([*train, *val]) == list(range(13))
    with pytest.raises(ValueError, match="2 scans"):
        split_by_scan(np.zeros(4), 0.2, 0)


def test_grouped_sampler_mixes_sizes_reproducibly():
    rng = np.random.default_rng(1)
    xs = [
        rng.random((20, 24), dtype=np.float32),
        rng.random((30, 18), dtype=np.float32),
        rng.random((20, 24), dtype=np.float32),
    ]
    a = GroupedSampler(xs, xs, lambda s: None, patch=16, seed=3, augment=True)
    b = GroupedSampler(xs, xs, lambda s: None, patch=16, seed=3, augment=True)
    batches = [list(s.epoch(2)) for s in (a, b)]
    assert [x.shape[0] for x, _, _ in batches[0]] == [2, 1]
    for (xa, ya, wa), (xb, _, _) in zip(*batches):
        assert xa.shape[1:] == (1, 16, 16) and wa is None
        assert np.array_equal(xa.numpy(), xb.numpy()) and np.array_equal(xa, ya)


def test_cli_trains_on_a_csv_dataset_of_different_sizes(study, tmp_path, capsys):
    (study / "pairs.csv").write_text(
        "input,target,slices\na/input.tif,a/target.tif,all\nb/input.npy,b/target.npy,0-1\n"
        "c/input.tif,c/target.tif,center\n"
    )
    out = tmp_path / "m"
    rc = main(
        [
            "train",
            "--pairs",
            str(study / "pairs.csv"),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--preset",
            "tiny",
            "--patch",
            "16",
            "--batch-size",
            "4",
            "--val-fraction",
            "0.34",
            "--device",
            "cpu",
            "--no-progress",
            "--spatial",
            "nonlinear",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "3 scans, 8 slices" in err
    cfg = json.loads((out / "config.json").read_text())
    ds = cfg["dataset"]
    val = set(ds["val_scans"])
    assert len(val) == 1
    held = [i for i, (name, _) in enumerate(ds["slices"]) if name in val]
    assert sorted(cfg["split"]["val"]) == held  # every slice of the held-out scan, only
    assert len(json.loads((out / "history.json").read_text())) == 2


def test_cli_trains_on_a_dataset_folder(study, tmp_path, capsys):
    rc = main(
        [
            "train",
            "--pairs",
            str(study),
            "--out",
            str(tmp_path / "m"),
            "--epochs",
            "1",
            "--preset",
            "tiny",
            "--patch",
            "16",
            "--batch-size",
            "2",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "m" / "config.json").read_text())["dataset"]["scans"] == [
        "a",
        "b",
        "c",
    ]


@pytest.mark.parametrize(
    "table,patch,match",
    [
        (
            "input,target\na/input.tif,a/missing.tif\nb/input.npy,b/target.npy\n",
            16,
            "target file not found",
        ),
        (
            "input,target,slices\na/input.tif,a/target.tif,middle\nb/input.npy,b/target.npy,all\n",
            16,
            "scan 'a': bad slices value 'middle'",
        ),
        (
            "input,target\na/input.tif,a/target.tif\nb/input.npy,b/target.npy\n",
            34,
            "scan 'b' slice 1 is 32x36, smaller than the 34x34 patch",
        ),
        ("input,output\na/input.tif,a/target.tif\n", 16, "needs the columns input,target"),
        ("input,target\na/input.tif,a/target.tif\n", 16, "at least 2 scans"),
    ],
)
def test_dataset_errors_are_one_line(study, tmp_path, capsys, table, patch, match):
    (study / "pairs.csv").write_text(table)
    rc = main(
        [
            "train",
            "--pairs",
            str(study / "pairs.csv"),
            "--out",
            str(tmp_path / "m"),
            "--preset",
            "tiny",
            "--patch",
            str(patch),
            "--no-progress",
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
    assert not (tmp_path / "m").exists()


def test_grid_trains_and_tests_on_pairs_tables(study, tmp_path, capsys):
    (study / "train.csv").write_text(
        "input,target,slices\na/input.tif,a/target.tif,all\nb/input.npy,b/target.npy,all\n"
    )
    x, y = _scan(np.random.default_rng(5), 1, 36, 32)  # a second test scan of c's size
    (study / "d").mkdir()
    tifffile.imwrite(study / "d" / "input.tif", x[0])
    tifffile.imwrite(study / "d" / "target.tif", y[0])
    (study / "test.csv").write_text(
        "input,target\nc/input.tif,c/target.tif\nd/input.tif,d/target.tif\n"
    )
    out = tmp_path / "grid"
    argv = [
        "grid",
        str(out),
        "--train",
        str(study / "train.csv"),
        "--test",
        str(study / "test.csv"),
        "--configs",
        "l2",
        "--seeds",
        "0",
        "--preset",
        "tiny",
        "--epochs",
        "1",
        "--patch",
        "16",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--quiet",
        "--no-report",
        "--signal",
        "10,10",
        "--background",
        "26,22",
        "--roi-size",
        "8",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    grid = json.loads((out / "grid.json").read_text())
    assert grid["train_data"] == {"pairs": str((study / "train.csv").resolve())}
    assert [s[0] for s in grid["data"]["train_scans"]] == ["a", "b"]
    cfg = json.loads((out / "runs" / "l2" / "seed-0" / "model" / "config.json").read_text())
    assert cfg["dataset"]["scans"] == ["a", "b"] and len(cfg["dataset"]["val_scans"]) == 1
    assert (out / "runs" / "l2" / "seed-0" / "metrics.json").is_file()
    # test scans of different sizes cannot be one stack: one line
    (study / "test2.csv").write_text(
        "input,target\nc/input.tif,c/target.tif\nb/input.npy,b/target.npy\n"
    )
    argv[5] = str(study / "test2.csv")
    argv[1] = str(tmp_path / "grid2")
    assert main(argv) == 2
    assert "differ in slice size" in capsys.readouterr().err
