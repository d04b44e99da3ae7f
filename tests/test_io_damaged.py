"""Damaged and wrong input files are refused with one line, before anything is allocated.

Truncated TIFF stacks (this tool's writer, ImageJ, OME), headers that declare more data than
the file holds or than memory can take, float stacks of 3 or 4 slices that tifffile stores
as RGB samples, real colour images, and data sets that list one scan twice or hold arrays
the single-file reader refuses. The files are real files, written by tifffile and NumPy or
byte by byte after the TIFF and ``.npy`` specifications; the CLI runs in a real process.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_dfct import io
from napari_dfct._memory import host_available_memory
from napari_dfct.cli import main
from napari_dfct.io.dataset import load_scans

RNG = np.random.default_rng(27)
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _stack(shape=(16, 64, 64)) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _write(kind: str, path: Path, data: np.ndarray) -> Path:
    if kind == "dfct":  # this tool's writer (an ImageJ hyperstack with the scale)
        io.write_volume(path, data, scale=(2.0, 0.5, 0.5))
    elif kind == "imagej":
        tifffile.imwrite(path, data, imagej=True, metadata={"axes": "ZYX"})
    elif kind == "ome":
        tifffile.imwrite(path, data, ome=True, metadata={"axes": "ZYX"})
    elif kind == "bigtiff":  # how this tool writes volumes beyond 4 GiB
        tifffile.imwrite(path, data, ome=True, bigtiff=True, metadata={"axes": "ZYX"})
    else:  # pragma: no cover
        raise AssertionError(kind)
    return path


def _refusal(path, reader=io.read_volume) -> str:
    with pytest.raises(ValueError) as info:
        reader(path)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    assert Path(path).name in message
    return message


def _cut(src: Path, dst: Path, n: int) -> Path:
    dst.write_bytes(src.read_bytes()[:n])
    return dst


# --------------------------------------------------------------------------------------
# truncated TIFF stacks
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["dfct", "imagej", "ome", "bigtiff"])
@pytest.mark.parametrize("shape", [(16, 64, 64), (12, 128, 128)])
def test_a_truncated_tiff_is_refused_at_every_cut(tmp_path, kind, shape):
    data = _stack(shape)
    whole = _write(kind, tmp_path / "whole.tif", data)
    back, _ = io.read_volume(whole)
    np.testing.assert_array_equal(back, data)  # the intact file reads back exactly
    size = whole.stat().st_size
    for cut in (20, 120000, size // 2, int(size * 0.95)):
        part = _cut(whole, tmp_path / f"cut{cut}.tif", cut)
        message = _refusal(part)
        assert f"ends at byte {cut} but page " in message, message
        assert "needs bytes up to" in message and "truncated or damaged" in message
        # the napari reader and the data-set loader give the same line
        assert _refusal(part, io.read_layers) == message
        assert _refusal(part, lambda p: load_scans([_pair(p, whole)])) == message
    # any other cut: refused, or (only padding lost) the very same data, never less
    for cut in [*range(8, size, size // 23), *range(size - 40, size)]:
        part = _cut(whole, tmp_path / "any.tif", cut)
        try:
            back, _ = io.read_volume(part)
        except ValueError as exc:
            assert "\n" not in str(exc) and "any.tif" in str(exc)
        else:
            np.testing.assert_array_equal(back, data, err_msg=f"cut at {cut} of {size}")


def _pair(inp: Path, tgt: Path):
    from napari_dfct.io.dataset import ScanPair

    return ScanPair("s", inp, tgt, "all")


def test_a_stack_that_ends_before_the_images_its_metadata_declare(tmp_path):
    """An ImageJ file with one directory and the other images stored after it (how
    ImageJ writes big stacks): cut inside those images, the first missing one is named."""
    data = _stack((8, 32, 32))
    whole = tmp_path / "whole.tif"
    tifffile.imwrite(whole, data, imagej=True, metadata={"axes": "ZYX"}, truncate=True)
    with tifffile.TiffFile(whole) as tif:
        assert len(tif.pages) == 1  # one directory for 8 images
        start = tif.pages[0].dataoffsets[0]
    np.testing.assert_array_equal(io.read_volume(whole)[0], data)
    cut = start + 5 * 32 * 32 * 4 + 100  # images 1-5 complete, image 6 partial
    message = _refusal(_cut(whole, tmp_path / "cut.tif", cut))
    assert f"ends at byte {cut} but image 6 of the 8 its ImageJ metadata declares" in message
    assert f"needs bytes up to {start + 6 * 32 * 32 * 4}" in message


def test_a_stack_with_fewer_pages_than_its_ome_metadata_declare(tmp_path):
    """Every page whole, but the OME-XML declares 5 planes and the file holds 3."""
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06"><Image ID="Image:0">'
        '<Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="float" SizeX="32" SizeY="32" '
        'SizeZ="{z}" SizeC="1" SizeT="1"><Channel ID="Channel:0:0" SamplesPerPixel="1"/>'
        "<TiffData/></Pixels></Image></OME>"
    )
    data = _stack((3, 32, 32))
    for z in (5, 3):
        path = tmp_path / f"ome{z}.tif"
        with tifffile.TiffWriter(path) as tif:
            for k in range(3):
                desc = xml.format(z=z) if k == 0 else None
                tif.write(data[k], photometric="minisblack", description=desc, metadata=None)
    message = _refusal(tmp_path / "ome5.tif")
    assert "its OME metadata declares 5 images but it holds 3 pages" in message
    np.testing.assert_array_equal(io.read_volume(tmp_path / "ome3.tif")[0], data)


# --------------------------------------------------------------------------------------
# headers that declare more than the file or the memory holds
# --------------------------------------------------------------------------------------
def _tiff_bytes(width, height, *, count=None, compression=1, data=b"", size=150) -> bytes:
    """A little-endian classic TIFF of one float32 page, built field by field."""
    entries = [(256, 4, width), (257, 4, height), (258, 3, 32), (259, 3, compression)]
    entries += [(262, 3, 1), (273, 4, 0), (277, 3, 1), (278, 4, height)]
    if count is not None:
        entries.append((279, 4, count))
    entries.append((339, 3, 3))
    start = 8 + 2 + 12 * len(entries) + 4
    out = b"II*\x00" + struct.pack("<IH", 8, len(entries))
    for tag, typ, value in entries:
        value = start if tag == 273 else value
        packed = struct.pack("<HH", value, 0) if typ == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, typ, 1) + packed
    out += struct.pack("<I", 0) + data
    return out + b"\x00" * max(0, size - len(out))


def _peak_while(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize(
    "count,match",
    [
        (None, "pixels of 1x32 bits) needs bytes up to 160000000122"),
        (2**31, "its strip 1 of 1) needs bytes up to"),
        (16, "holds only 16 bytes of uncompressed data"),
    ],
)
def test_a_tiny_tiff_declaring_200000_squared_is_one_line(tmp_path, count, match):
    path = tmp_path / "huge.tif"
    path.write_bytes(_tiff_bytes(200000, 200000, count=count))
    assert path.stat().st_size == 150
    messages = []
    peak = _peak_while(lambda: messages.append(_refusal(path)))
    assert match in messages[0], messages[0]
    assert peak < 16 * 2**20  # nothing near the declared 149 GiB was allocated


def test_a_compressed_page_bigger_than_memory_is_refused_before_decoding(tmp_path):
    import zlib

    blob = zlib.compress(b"\x00" * 4096)
    path = tmp_path / "bomb.tif"
    path.write_bytes(
        _tiff_bytes(1_000_000, 1_000_000, count=len(blob), compression=8, data=blob, size=0)
    )
    messages = []
    peak = _peak_while(lambda: messages.append(_refusal(path)))
    assert "is too big to load" in messages[0] and "available" in messages[0]
    assert peak < 16 * 2**20


def _npy_header(path: Path, shape, descr="<f4", data=b"") -> Path:
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": descr, "fortran_order": False, "shape": tuple(shape)}
        )
        fh.write(data)
    return path


def test_an_npy_header_declaring_10_to_the_12_values_is_one_line(tmp_path):
    path = _npy_header(tmp_path / "huge.npy", (10**6, 10**6), data=b"\x00" * 64)
    messages = []
    peak = _peak_while(lambda: messages.append(_refusal(path)))
    assert "ends at byte" in messages[0] and "(1000000, 1000000) float32" in messages[0]
    assert peak < 16 * 2**20
    # inside an .npz archive: the member's declared size is checked the same way
    npz = tmp_path / "huge.npz"
    with zipfile.ZipFile(npz, "w") as zf:
        zf.writestr("vol.npy", path.read_bytes())
    assert "ends at byte" in _refusal(npz)


def test_a_file_bigger_than_the_available_memory_is_refused(tmp_path):
    have = host_available_memory()
    if have is None:
        pytest.skip("the available memory is unknown here")
    per_slice = 4096 * 4096 * 4
    shape = (2 * have // per_slice + 1, 4096, 4096)  # twice the available memory
    path = _npy_header(tmp_path / "sparse.npy", shape)
    try:  # a sparse file: its size matches the header, its blocks are never written
        os.truncate(path, path.stat().st_size + shape[0] * per_slice)
    except OSError as exc:
        pytest.skip(f"no sparse file of that size here: {exc}")
    try:
        message = _refusal(path)
    finally:
        path.unlink()
    assert "is too big to load" in message and "available" in message


def test_the_memory_check_uses_the_available_memory(tmp_path, monkeypatch):
    npy = tmp_path / "small.npy"
    np.save(npy, _stack((4, 32, 32)))
    tif = io.write_volume(tmp_path / "small.tif", _stack((4, 32, 32)))
    monkeypatch.setattr(io._common, "host_available_memory", lambda: 4 * 32 * 32 * 4 - 1)
    for path in (npy, tif):
        assert "is too big to load" in _refusal(path)
    monkeypatch.setattr(io._common, "host_available_memory", lambda: 4 * 32 * 32 * 4)
    for path in (npy, tif):
        assert io.read_volume(path)[0].shape == (4, 32, 32)


# --------------------------------------------------------------------------------------
# stacks of 3 or 4 float slices, colour images
# --------------------------------------------------------------------------------------
_RGB_PLANES = {"photometric": "rgb", "planarconfig": "separate"}
# plain tifffile.imwrite stores (3|4, Y, X) data as RGB planes today and warns that it will
# not in future versions; the explicit variant keeps that file whatever the version
_FUTURE = "ignore:.*stored as RGB with separate component planes:DeprecationWarning"


@pytest.mark.filterwarnings(_FUTURE)
@pytest.mark.parametrize("n", [3, 4])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("how", ["plain", "rgb-planes"])
def test_a_stack_of_3_or_4_float_slices_is_read_as_slices(tmp_path, n, dtype, how):
    data = _stack((n, 40, 48)).astype(dtype)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, data, **(_RGB_PLANES if how == "rgb-planes" else {}))
    if how == "rgb-planes":
        with tifffile.TiffFile(path) as tif:
            assert tif.pages[0].samplesperpixel == n  # the premise: tagged as colour
    back, info = io.read_volume(path)
    np.testing.assert_array_equal(back, data.astype(np.float32))
    assert info["scale"] == (1.0, 1.0, 1.0)
    (layer,) = io.read_layers(str(path))
    assert layer[0].shape == (n, 40, 48)


def test_an_all_nan_4_slice_stack_is_reported_as_holding_no_values(tmp_path):
    path = tmp_path / "nan.tif"
    tifffile.imwrite(path, np.full((4, 32, 32), np.nan, np.float32), **_RGB_PLANES)
    message = _refusal(path)
    assert "no finite values" in message and "colour" not in message


@pytest.mark.parametrize(
    "data,words",
    [
        (RNG.integers(0, 255, (48, 64, 3), dtype=np.uint8), "3 samples of uint8 per pixel"),
        (RNG.integers(0, 255, (48, 64, 4), dtype=np.uint8), "4 samples of uint8 per pixel"),
        (RNG.integers(0, 9999, (48, 64, 3), dtype=np.uint16), "3 samples of uint16 per pixel"),
    ],
)
def test_a_real_colour_image_is_refused(tmp_path, data, words):
    path = tmp_path / "photo.tif"
    tifffile.imwrite(path, data, photometric="rgb")
    message = _refusal(path)
    assert "is a colour image" in message and words in message
    assert "planes" not in message  # interleaved samples: no hint about slices


def test_integer_planes_tagged_rgb_are_refused_with_a_hint(tmp_path):
    path = tmp_path / "planes.tif"
    tifffile.imwrite(path, RNG.integers(0, 9999, (3, 48, 64), dtype=np.uint16), **_RGB_PLANES)
    message = _refusal(path)
    assert "is a colour image (3 samples of uint16 per pixel" in message
    assert "photometric='minisblack'" in message


# --------------------------------------------------------------------------------------
# data sets
# --------------------------------------------------------------------------------------
def _scan(folder: Path, seed: int, shape=(5, 32, 32)) -> None:
    """A scan folder holding input.tif and target.tif (random data of ``shape``)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    tifffile.imwrite(folder / "input.tif", rng.standard_normal(shape).astype(np.float32))
    tifffile.imwrite(folder / "target.tif", rng.standard_normal(shape).astype(np.float32))


def _load_error(path) -> str:
    with pytest.raises(ValueError) as info:
        load_scans(path, patch=16)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_the_same_files_listed_twice_are_refused(tmp_path):
    root = tmp_path / "set"
    _scan(root / "a", 1)
    _scan(root / "b", 2)
    (root / "pairs.csv").write_text(
        "input,target\na/input.tif,a/target.tif\nb/input.tif,b/target.tif\n"
        "a/input.tif,a/target.tif\n"
    )
    message = _load_error(root)
    assert "scans 'a' and 'a-4' use the same file" in message and "listed once" in message
    # another spelling of the same file
    (root / "pairs.csv").write_text(
        "input,target\na/input.tif,a/target.tif\nb/input.tif,b/target.tif\n"
        "b/../a/input.tif,b/target.tif\n"
    )
    assert "use the same file" in _load_error(root)


def test_links_to_one_scan_are_refused(tmp_path):
    root = tmp_path / "set"
    _scan(root / "a", 1)
    _scan(root / "c", 3)
    (root / "b").mkdir()
    os.link(root / "a" / "input.tif", root / "b" / "input.tif")
    try:
        os.symlink(root / "a" / "target.tif", root / "b" / "target.tif")
    except OSError:  # pragma: no cover - no symbolic links here
        os.link(root / "a" / "target.tif", root / "b" / "target.tif")
    message = _load_error(root)
    assert "scans 'a' and 'b' use the same file (input of 'a', input of 'b'" in message


def test_a_copy_of_a_scan_is_refused_by_its_content(tmp_path):
    root = tmp_path / "set"
    _scan(root / "a", 1)
    _scan(root / "c", 3)
    (root / "b").mkdir()
    for name in ("input.tif", "target.tif"):  # other files, the same bytes
        (root / "b" / name).write_bytes((root / "a" / name).read_bytes())
    message = _load_error(root)
    assert "scan 'a' slice 2 and scan 'b' slice 2 hold the same input and target data" in message


def test_distinct_scans_sharing_a_blank_slice_are_accepted(tmp_path):
    root = tmp_path / "set"
    for name, seed in (("a", 1), ("b", 2)):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((5, 32, 32)).astype(np.float32)
        x[0] = 0.0  # padding: the same blank slice in both scans
        (root / name).mkdir(parents=True)
        tifffile.imwrite(root / name / "input.tif", x)
        tifffile.imwrite(root / name / "target.tif", x.copy())
    (root / "pairs.csv").write_text(
        "input,target,slices\na/input.tif,a/target.tif,all\nb/input.tif,b/target.tif,all\n"
    )
    assert len(load_scans(root, patch=16)) == 10


@pytest.mark.parametrize(
    "array",
    [
        np.ones((64, 64), np.complex64),
        RNG.integers(0, 255, (64, 64, 3), dtype=np.uint8).astype(np.float32),
        np.ones((2, 3, 32, 32), np.float32),
        np.ones((5,), np.float32),
    ],
    ids=["complex", "colour", "4-d", "1-d"],
)
def test_a_data_set_refuses_arrays_as_the_single_file_reader_does(tmp_path, array):
    root = tmp_path / "set"
    _scan(root / "a", 1)
    (root / "b").mkdir()
    bad = root / "b" / "input.npy"
    np.save(bad, array)
    np.save(root / "b" / "target.npy", np.ones(array.shape, np.float32))
    expected = _refusal(bad)
    assert _load_error(root) == expected


def test_a_damaged_file_in_a_data_set_gives_the_readers_line(tmp_path):
    root = tmp_path / "set"
    _scan(root / "a", 1)
    _scan(root / "b", 2)
    whole = (root / "b" / "input.tif").read_bytes()
    (root / "b" / "input.tif").write_bytes(whole[: len(whole) * 95 // 100])
    expected = _refusal(root / "b" / "input.tif")
    assert "ends at byte" in expected
    assert _load_error(root) == expected
    huge = _npy_header(root / "b" / "target.npy", (10**6, 10**6))
    (root / "b" / "target.tif").unlink()
    (root / "b" / "input.tif").write_bytes(whole)
    assert _load_error(root) == _refusal(huge)


def test_a_page_that_does_not_decode_is_one_line(tmp_path):
    """Whole, but its compressed data are garbage: the reader and the data set say so."""
    root = tmp_path / "set"
    _scan(root / "a", 1)
    _scan(root / "b", 2)
    bad = root / "b" / "input.tif"
    tifffile.imwrite(bad, _stack((5, 32, 32)), compression="zlib")
    with tifffile.TiffFile(bad) as tif:  # the central slice, the one the data set reads
        start, n = tif.pages[2].dataoffsets[0], tif.pages[2].databytecounts[0]
    raw = bytearray(bad.read_bytes())
    raw[start : start + n] = b"\xff" * n
    bad.write_bytes(bytes(raw))
    assert "input.tif is not a readable TIFF file" in _refusal(bad)
    message = _load_error(root)
    assert message.startswith(f"cannot read slice 2 of {bad}"), message


# --------------------------------------------------------------------------------------
# the commands: exit 2, one line, no traceback
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model(tmp_path_factory):
    import torch

    from napari_dfct.checkpoint import save_checkpoint
    from napari_dfct.model import build_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model") / "m"
    config = {"preset": "tiny", "window": {"low": -3.0, "high": 3.0}, "loss": {"name": "l2"}}
    return save_checkpoint(folder, build_model("tiny"), config)


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    folder = tmp_path_factory.mktemp("damaged")
    whole = io.write_volume(folder / "whole.tif", _stack())
    return {
        "truncated": _cut(whole, folder / "tr.tif", 120000),
        "huge-npy": _npy_header(folder / "huge.npy", (10**6, 10**6)),
    }


def test_dfct_predict_on_a_truncated_tiff_exits_2_with_one_line(model, damaged, tmp_path):
    """In a real process: one line on its stderr, nothing else (no traceback, no
    warnings of the TIFF library)."""
    out = tmp_path / "o.tif"
    argv = ["predict", "--model", str(model), "--input", str(damaged["truncated"])]
    env = {**os.environ, "PYTHONPATH": SRC}
    res = subprocess.run(
        [sys.executable, "-m", "napari_dfct", *argv, "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr
    assert len(lines) == 1 and lines[0].startswith("dfct predict: error: "), lines
    assert "tr.tif is not a readable TIFF file: it ends at byte 120000 but page 2" in lines[0]
    assert not out.exists()


def test_dfct_predict_on_a_huge_npy_header_exits_2_with_one_line(model, damaged, tmp_path, capsys):
    out = tmp_path / "o.tif"
    argv = ["predict", "--model", str(model), "--input", str(damaged["huge-npy"])]
    assert main([*argv, "--out", str(out), "--no-progress"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dfct predict: error: "), lines
    assert "huge.npy is not a readable NumPy file: it ends at byte" in lines[0]
    assert "Traceback" not in captured.err + captured.out and not out.exists()


@pytest.mark.parametrize("case", ["truncated", "huge-npy"])
def test_dfct_train_and_export_on_a_damaged_file_exit_2(model, damaged, tmp_path, capsys, case):
    good = io.write_volume(tmp_path / "good.tif", _stack())
    rc = main(
        ["train", "--input", str(damaged[case]), "--target", str(good), "--out",
         str(tmp_path / "m"), "--preset", "tiny", "--no-progress"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "dfct train: error:" in err[0], err
    assert damaged[case].name in err[0] and not (tmp_path / "m").exists()
    rc = main(["export", str(model), str(tmp_path / "p.zip"), "--data", str(damaged[case])])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "dfct export: error:" in err[0], err
    assert damaged[case].name in err[0]


def test_dfct_train_on_a_data_set_listing_a_scan_twice_exits_2(tmp_path, capsys):
    root = tmp_path / "set"
    _scan(root / "a", 1)
    _scan(root / "b", 2)
    (root / "pairs.csv").write_text(
        "input,target\na/input.tif,a/target.tif\nb/input.tif,b/target.tif\n"
        "a/input.tif,a/target.tif\n"
    )
    rc = main(["train", "--pairs", str(root / "pairs.csv"), "--out", str(tmp_path / "m"),
               "--preset", "tiny", "--patch", "16", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "use the same file" in err[0], err
