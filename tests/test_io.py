"""Readers and writers: round trips, bad input, DICOM series (synthetic and a real CT file)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_dfct import io

RNG = np.random.default_rng(0)


def _layers(path):
    reader = io.napari_get_reader(str(path))
    assert callable(reader), f"no reader for {path}"
    return reader(str(path))


# --------------------------------------------------------------------------------------
# module hygiene
# --------------------------------------------------------------------------------------
def test_io_imports_neither_napari_nor_qt():
    code = (
        "import sys, napari_dfct.io\n"
        "bad = [m for m in sys.modules if m == 'napari' or m.startswith('napari.') "
        "or m.split('.')[0] in ('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'pydicom')]\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


# --------------------------------------------------------------------------------------
# TIFF
# --------------------------------------------------------------------------------------
def test_tiff_2d_round_trip_keeps_values_and_scale(tmp_path):
    data = RNG.normal(size=(12, 17))  # float64 in, float32 out
    path = io.write_volume(tmp_path / "slice.tif", data, scale=(0.25, 0.5), unit="mm")
    assert path == tmp_path / "slice.tif"
    out, info = io.read_volume(path)
    assert out.dtype == np.float32 and out.shape == (12, 17)
    np.testing.assert_array_equal(out, data.astype(np.float32))
    np.testing.assert_allclose(info["scale"], (0.25, 0.5), rtol=1e-7)
    assert info["name"] == "slice"
    assert info["metadata"]["unit"] == "mm"
    assert info["metadata"]["source"] == str(path)


def test_tiff_3d_round_trip_through_npe2_writer_and_reader(tmp_path):
    data = RNG.integers(-1000, 3000, size=(5, 9, 11)).astype(np.int16)
    attributes = {"name": "vol", "scale": (2.5, 0.661468, 0.75), "metadata": {"unit": "mm"}}
    written = io.write_tiff(str(tmp_path / "vol.tiff"), data, attributes)
    assert written == [str(tmp_path / "vol.tiff")]
    ((out, kwargs, layer_type),) = _layers(written[0])
    assert layer_type == "image"
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, data.astype(np.float32))
    np.testing.assert_allclose(kwargs["scale"], attributes["scale"], rtol=1e-7)
    assert kwargs["name"] == "vol" and kwargs["colormap"] == "gray"
    assert kwargs["metadata"]["source"] == written[0]
    # the file is a plain ImageJ hyperstack that other tools read too
    with tifffile.TiffFile(written[0]) as tif:
        assert tif.is_imagej and tif.imagej_metadata["spacing"] == pytest.approx(2.5)
        assert tif.series[0].dtype == np.float32


def test_tiff_writer_appends_extension_and_reads_pint_units(tmp_path):
    class Unit:  # stands in for napari's pint units (str() gives the unit name)
        def __init__(self, name):
            self.name = name

        def __str__(self):
            return self.name

    attrs = {"scale": [1.0, 2.0, 3.0], "units": (Unit("millimeter"),) * 3, "metadata": {}}
    (written,) = io.write_tiff(str(tmp_path / "noext"), np.ones((2, 3, 4)), attrs)
    assert written.endswith("noext.tif")
    _, info = io.read_volume(written)
    assert info["scale"] == pytest.approx((1.0, 2.0, 3.0))
    assert info["metadata"]["unit"] == "mm"


def test_tiff_ome_physical_size_becomes_scale(tmp_path):
    data = RNG.random((3, 6, 7)).astype(np.float32)
    path = tmp_path / "scan.ome.tif"
    tifffile.imwrite(
        path,
        data,
        ome=True,
        metadata={
            "axes": "ZYX",
            "PhysicalSizeX": 0.3,
            "PhysicalSizeY": 0.4,
            "PhysicalSizeZ": 1.5,
        },
    )
    out, info = io.read_volume(path)
    np.testing.assert_array_equal(out, data)
    assert info["scale"] == pytest.approx((1.5, 0.4, 0.3))
    assert info["name"] == "scan"


def test_tiff_plain_resolution_tags_in_centimetres_give_mm(tmp_path):
    path = tmp_path / "res.tif"
    # 20 px/cm along x -> 0.5 mm, 40 px/cm along y -> 0.25 mm
    tifffile.imwrite(
        path, np.zeros((4, 5), np.uint16), resolution=(20, 40), resolutionunit="CENTIMETER"
    )
    _, info = io.read_volume(path)
    assert info["scale"] == pytest.approx((0.25, 0.5))
    assert info["metadata"]["unit"] == "mm"


def test_tiff_without_calibration_has_unit_scale(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.arange(30, dtype=np.uint8).reshape(2, 3, 5))
    out, info = io.read_volume(path)
    assert out.shape == (2, 3, 5) and info["scale"] == (1.0, 1.0, 1.0)


def test_multipage_tiff_written_page_by_page_is_a_stack(tmp_path):
    pages = RNG.random((4, 6, 5)).astype(np.float32)
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tw:
        for page in pages:
            tw.write(page)
    out, info = io.read_volume(path)
    np.testing.assert_array_equal(out, pages)


def test_bigtiff_fallback_keeps_scale(tmp_path, monkeypatch):
    monkeypatch.setattr(io, "BIGTIFF_THRESHOLD", 16)  # force the large-volume path
    data = RNG.random((3, 4, 5)).astype(np.float32)
    path = io.write_volume(tmp_path / "big.tif", data, scale=(3.0, 0.5, 0.25), unit="mm")
    with tifffile.TiffFile(path) as tif:
        assert tif.is_bigtiff and tif.is_ome
    out, info = io.read_volume(path)
    np.testing.assert_array_equal(out, data)
    assert info["scale"] == pytest.approx((3.0, 0.5, 0.25))


def test_singleton_axes_are_squeezed_with_their_scale(tmp_path):
    path = io.write_volume(tmp_path / "one.tif", np.ones((1, 4, 5)), scale=(9.0, 0.5, 0.25))
    out, info = io.read_volume(path)
    assert out.shape == (4, 5) and info["scale"] == pytest.approx((0.5, 0.25))


# --------------------------------------------------------------------------------------
# NumPy
# --------------------------------------------------------------------------------------
def test_npy_round_trip(tmp_path):
    data = RNG.integers(0, 60000, size=(3, 8, 9)).astype(np.uint16)
    (written,) = io.write_npy(str(tmp_path / "vol.npy"), data, {"scale": (1, 1, 1)})
    raw = np.load(written, allow_pickle=False)
    assert raw.dtype == np.float32
    ((out, kwargs, _),) = _layers(written)
    np.testing.assert_array_equal(out, data.astype(np.float32))
    assert kwargs["name"] == "vol" and kwargs["scale"] == (1.0, 1.0, 1.0)


def test_npz_gives_one_layer_per_array(tmp_path):
    a = RNG.random((6, 7)).astype(np.float64)
    b = RNG.integers(0, 9, size=(2, 6, 7)).astype(np.int32)
    path = tmp_path / "pair.npz"
    np.savez(path, input=a, target=b)
    layers = _layers(path)
    names = [kw["name"] for _, kw, _ in layers]
    assert names == ["pair:input", "pair:target"]
    np.testing.assert_array_equal(layers[0][0], a.astype(np.float32))
    np.testing.assert_array_equal(layers[1][0], b.astype(np.float32))
    assert all(d.dtype == np.float32 for d, _, _ in layers)
    assert layers[1][1]["metadata"]["key"] == "target"
    # read_volume needs one array: it asks for a key, and the key picks it
    with pytest.raises(ValueError, match=r"holds 2 images .*key="):
        io.read_volume(path)
    out, info = io.read_volume(path, key="target")
    np.testing.assert_array_equal(out, b.astype(np.float32))
    with pytest.raises(ValueError, match="no array named 'nope'"):
        io.read_volume(path, key="nope")


def test_npz_skips_non_image_arrays_with_a_warning(tmp_path):
    path = tmp_path / "with_meta.npz"
    np.savez(path, volume=np.ones((3, 4, 5)), spacing=np.array([1.0, 0.5, 0.5]))
    with pytest.warns(UserWarning, match=r"Skipped 1 array.*'spacing'.*1-D"):
        layers = _layers(path)
    assert [kw["name"] for _, kw, _ in layers] == ["with_meta:volume"]


def test_numpy_files_are_never_unpickled(tmp_path, monkeypatch):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    seen = []
    real_load = np.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("allow_pickle"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(io.np, "load", spy)
    with pytest.raises(ValueError, match=r"obj\.npy holds Python objects"):
        io.read_volume(path)
    assert seen == []  # refused from its header: np.load never sees the file


# --------------------------------------------------------------------------------------
# bad input: a ValueError naming the file and the problem, never a crash
# --------------------------------------------------------------------------------------
def _write_bad(tmp_path, case):
    if case == "empty-tif":
        p = tmp_path / "empty.tif"
        p.write_bytes(b"")
    elif case == "empty-npy":
        p = tmp_path / "empty.npy"
        p.write_bytes(b"")
    elif case == "corrupt-tif":
        p = tmp_path / "corrupt.tif"
        p.write_bytes(b"II*\x00" + bytes(range(256)) * 4)
    elif case == "text-as-tif":
        p = tmp_path / "notes.tif"
        p.write_text("this is not an image\n")
    elif case == "corrupt-npy":
        p = tmp_path / "corrupt.npy"
        p.write_bytes(b"\x93NUMPY garbage" * 10)
    elif case == "truncated-npy":
        p = tmp_path / "truncated.npy"
        np.save(p, np.ones((64, 64)))
        p.write_bytes(p.read_bytes()[:500])
    elif case == "text-as-npy":
        p = tmp_path / "notes.npy"
        p.write_text("1 2 3\n4 5 6\n")
    elif case == "text-as-npz":
        p = tmp_path / "notes.npz"
        p.write_text("a,b\n1,2\n")
    elif case == "corrupt-npz":
        p = tmp_path / "corrupt.npz"
        p.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    elif case == "empty-npz":
        p = tmp_path / "nothing.npz"
        np.savez(p)
    elif case == "rgb-tif":
        p = tmp_path / "photo.tif"
        tifffile.imwrite(p, RNG.integers(0, 255, (16, 16, 3), dtype=np.uint8), photometric="rgb")
    elif case == "rgba-npy":
        p = tmp_path / "photo.npy"
        np.save(p, np.zeros((16, 16, 4), np.uint8))
    elif case == "channels-tif":
        p = tmp_path / "channels.tif"
        data = np.zeros((2, 3, 8, 8), np.float32)
        tifffile.imwrite(p, data, imagej=True, metadata={"axes": "ZCYX"})
    elif case == "complex-npy":
        p = tmp_path / "complex.npy"
        np.save(p, np.ones((8, 8), np.complex64))
    elif case == "1d-npy":
        p = tmp_path / "line.npy"
        np.save(p, np.arange(10.0))
    elif case == "row-npy":
        p = tmp_path / "row.npy"
        np.save(p, np.arange(10.0)[None, :, None])
    elif case == "4d-npy":
        p = tmp_path / "4d.npy"
        np.save(p, np.zeros((2, 3, 4, 5)))
    elif case == "4d-tif":
        p = tmp_path / "4d.tif"
        tifffile.imwrite(p, np.zeros((2, 6, 4, 5), np.float32))
    elif case == "string-npy":
        p = tmp_path / "words.npy"
        np.save(p, np.array([["a", "b"], ["c", "d"]]))
    elif case == "zero-size-npy":
        p = tmp_path / "zero.npy"
        np.save(p, np.zeros((0, 5)))
    elif case == "all-nan-npy":
        p = tmp_path / "allnan.npy"
        np.save(p, np.full((4, 4), np.nan))
    elif case == "npz-as-npy":
        p = tmp_path / "archive.npy"
        with open(p, "wb") as fh:
            np.savez(fh, a=np.ones((3, 3)))
    elif case == "empty-dcm":
        p = tmp_path / "empty.dcm"
        p.write_bytes(b"")
    elif case == "garbage-dcm":
        p = tmp_path / "garbage.dcm"
        p.write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 50)
    else:  # pragma: no cover
        raise AssertionError(case)
    return p


BAD_CASES = {
    "empty-tif": "empty",
    "empty-npy": "empty",
    "corrupt-tif": "not a readable TIFF",
    "text-as-tif": "not a readable TIFF",
    "corrupt-npy": "not a readable NumPy",
    "truncated-npy": "not a readable NumPy",
    "corrupt-npz": "not a readable .npz",
    "text-as-npy": "is not a NumPy .npy file",
    "text-as-npz": "is not a NumPy .npz archive",
    "empty-npz": "empty .npz",
    "rgb-tif": "colour",
    "rgba-npy": "RGB",
    "channels-tif": "3 channels",
    "complex-npy": "complex",
    "1d-npy": "1-D",
    "row-npy": "1-D",
    "4d-npy": "4 non-singleton axes",
    "4d-tif": "4 non-singleton axes",
    "string-npy": "non-numeric",
    "zero-size-npy": "empty array",
    "all-nan-npy": "no finite values",
    "npz-as-npy": ".npz archive",
    "empty-dcm": "empty",
    "garbage-dcm": "DICOM",
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_gives_a_clear_value_error(tmp_path, case):
    path = _write_bad(tmp_path, case)
    reader = io.napari_get_reader(str(path))
    assert callable(reader)  # accepted by extension: the problem is reported on read
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no stray warnings on the way to the error
        with pytest.raises(ValueError) as info:
            reader(str(path))
    message = str(info.value)
    assert path.name in message
    assert BAD_CASES[case] in message
    assert "\n" not in message and len(message) < 400
    with pytest.raises(ValueError, match=path.name):
        io.read_volume(path)


def test_missing_and_unsupported_paths(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        io.read_volume(tmp_path / "missing.tif")
    other = tmp_path / "notes.txt"
    other.write_text("x")
    assert io.napari_get_reader(str(other)) is None
    with pytest.raises(ValueError, match=r"unsupported format.*\.tif"):
        io.read_volume(other)
    assert io.napari_get_reader([]) is None


def test_nan_and_inf_load_with_a_counted_warning(tmp_path):
    data = RNG.random((4, 5, 6)).astype(np.float32)
    data[0, 0, :3] = np.nan
    data[2, 1, 1] = np.inf
    data[3, 4, 5] = -np.inf
    path = tmp_path / "holes.npy"
    np.save(path, data)
    msg = r"holes\.npy holds 5 non-finite value\(s\).*3 NaN, 2 Inf"
    with pytest.warns(UserWarning, match=msg):
        ((out, kwargs, _),) = _layers(path)
    np.testing.assert_array_equal(out, data)  # kept, not altered
    finite = data[np.isfinite(data)]
    assert kwargs["contrast_limits"] == pytest.approx((finite.min(), finite.max()))


def test_float64_overflow_is_reported_as_non_finite(tmp_path):
    path = tmp_path / "huge.npy"
    np.save(path, np.array([[1.0, 1e300], [np.inf, 3.0]]))
    msg = r"2 non-finite.*0 NaN, 2 Inf, 1 of them beyond the float32 range"
    with pytest.warns(UserWarning, match=msg):
        out, _ = io.read_volume(path)
    assert np.isinf(out[0, 1]) and np.isinf(out[1, 0]) and out[1, 1] == 3.0


# --------------------------------------------------------------------------------------
# stacking a list of files (napari's "open as stack")
# --------------------------------------------------------------------------------------
def test_list_of_2d_files_is_stacked(tmp_path):
    slices = RNG.random((3, 5, 4)).astype(np.float32)
    paths = [str(io.write_volume(tmp_path / f"s{i}.tif", s)) for i, s in enumerate(slices)]
    reader = io.napari_get_reader(paths)
    ((out, kwargs, _),) = reader(paths)
    np.testing.assert_array_equal(out, slices)
    assert kwargs["metadata"]["source"] == paths
    io.write_volume(tmp_path / "odd.tif", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="different shapes"):
        reader([*paths, str(tmp_path / "odd.tif")])
    np.save(tmp_path / "other.npy", slices[0])
    mixed = [paths[0], str(tmp_path / "other.npy")]
    assert [kw["name"] for _, kw, _ in reader(mixed)] == ["s0", "other"]  # formats not mixed


# --------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------
def test_writes_are_atomic(tmp_path, monkeypatch):
    target = tmp_path / "keep.tif"
    io.write_volume(target, np.full((3, 3), 7.0))
    before = target.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", broken)
    with pytest.raises(OSError, match="disk full"):
        io.write_volume(target, np.zeros((3, 3)))
    assert target.read_bytes() == before  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tif"]  # no temp file left
    monkeypatch.undo()
    io.write_volume(target, np.zeros((3, 3)))
    np.testing.assert_array_equal(io.read_volume(target)[0], np.zeros((3, 3)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.tif"]
    mode = target.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_writer_rejects_bad_targets_and_data(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        io.write_volume(tmp_path / "no" / "such.tif", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="unsupported extension '.png'"):
        io.write_volume(tmp_path / "x.png", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="RGB layer"):
        io.write_tiff(str(tmp_path / "rgb.tif"), np.zeros((4, 4, 3)), {"rgb": True})
    with pytest.raises(ValueError, match="complex"):
        io.write_npy(str(tmp_path / "c.npy"), np.zeros((4, 4), complex), {})
    with pytest.raises(ValueError, match="positive"):
        io.write_volume(tmp_path / "s.tif", np.zeros((2, 2)), scale=(0.0, 1.0))
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------
pydicom = pytest.importorskip("pydicom")


def _ct_file(
    path,
    raw,
    *,
    position=None,
    orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    slope=1.0,
    intercept=-1024.0,
    spacing=(0.7, 0.8),
    series_uid="1.2.826.0.1.3680043.8.498.1",
    description="Thorax DFCT",
    instance=1,
    photometric="MONOCHROME2",
    window=None,
):
    """Write one small CT slice with pydicom's own dataset and file APIs."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    raw = np.asarray(raw)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.100"
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "CT"
    ds.PatientName = "Phantom^Test"
    ds.SeriesDescription = description
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance
    if position is not None:
        ds.ImagePositionPatient = [float(v) for v in position]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(v) for v in spacing]
    ds.SliceThickness = 1.0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    ds.Rows, ds.Columns = raw.shape[-2:]
    if raw.ndim == 3 and photometric == "RGB":
        ds.SamplesPerPixel = 3
        ds.PlanarConfiguration = 0
    else:
        ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = raw.astype("<i2").tobytes()
    if int(pydicom.__version__.split(".")[0]) >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:  # pragma: no cover - pydicom 2.x
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
    return path


# slice normals: axial (+z), sagittal (-x) and an oblique plane
ORIENTATIONS = {
    "axial": (1, 0, 0, 0, 1, 0),
    "sagittal": (0, 1, 0, 0, 0, -1),
    "oblique": (1, 0, 0, 0, np.cos(0.3), np.sin(0.3)),
}


def _make_series(folder, n=6, orientation="axial", dz=2.5, spacing=(0.7, 0.8), seed=0):
    """A shuffled series; returns the expected HU volume in position order."""
    rng = np.random.default_rng(seed)
    iop = np.asarray(ORIENTATIONS[orientation], dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    origin = np.array([-10.0, 20.0, -300.0])
    folder.mkdir(parents=True, exist_ok=True)
    slopes = [1.0, 2.0, 0.5]
    intercepts = [-1024.0, -1000.0, 0.0]
    expected = []
    order = list(range(n))
    random.Random(seed).shuffle(order)  # file names and instance numbers do not follow z
    rr, cc = np.mgrid[0:5, 0:7]
    for k in range(n):
        slope, intercept = slopes[k % 3], intercepts[k % 3]
        raw = (rng.integers(0, 200, size=(5, 7)) * 2 + 10 * k + 3 * rr - cc).astype(np.int16)
        expected.append(raw * slope + intercept)
        position = origin + k * dz * normal + 0.01 * k * iop[:3]  # in-plane jitter is ignored
        _ct_file(
            folder / f"IM{order[k]:04d}.dcm",
            raw,
            position=position,
            orientation=iop,
            slope=slope,
            intercept=intercept,
            spacing=spacing,
            instance=n - order[k],
        )
    return np.stack(expected).astype(np.float32)


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_dicom_folder_is_sorted_rescaled_and_scaled(tmp_path, orientation):
    folder = tmp_path / "series"
    expected = _make_series(folder, orientation=orientation, dz=2.5, spacing=(0.7, 0.8))
    (folder / "notes.txt").write_text("not dicom")
    reader = io.napari_get_reader(str(folder))
    assert callable(reader)
    ((data, kwargs, layer_type),) = reader(str(folder))
    assert layer_type == "image" and data.dtype == np.float32
    np.testing.assert_array_equal(data, expected)
    assert kwargs["scale"] == pytest.approx((2.5, 0.7, 0.8))
    assert kwargs["name"] == "series" and kwargs["colormap"] == "gray"
    meta = kwargs["metadata"]
    assert meta["source"] == str(folder)
    assert meta["modality"] == "CT" and meta["series_description"] == "Thorax DFCT"
    assert meta["rescale_slope"] == [1.0, 2.0, 0.5, 1.0, 2.0, 0.5]
    assert meta["rescale_type"] == "HU" and meta["slice_order"] == "ImagePositionPatient"
    assert "Phantom" not in repr(meta)  # no patient identifiers in layer metadata


def test_dicom_file_list_and_extensionless_files(tmp_path):
    folder = tmp_path / "scan"
    expected = _make_series(folder, n=4, seed=3)
    for p in folder.iterdir():  # scanners often write files without an extension
        p.rename(p.with_suffix(""))
    assert io.napari_get_reader(str(folder)) is not None
    out, info = io.read_volume(folder)
    np.testing.assert_array_equal(out, expected)
    files = sorted(str(p) for p in folder.iterdir())
    random.Random(1).shuffle(files)
    ((data, kwargs, _),) = io.napari_get_reader(files)(files)
    np.testing.assert_array_equal(data, expected)


def test_dicom_instance_number_fallback(tmp_path):
    folder = tmp_path / "noposition"
    folder.mkdir()
    raws = [np.full((3, 4), 100 * k, np.int16) for k in range(4)]
    for k, i in enumerate([2, 0, 3, 1]):
        _ct_file(folder / f"f{k}.dcm", raws[i], instance=i + 1, intercept=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, info = io.read_volume(folder)
    np.testing.assert_array_equal(out, np.stack(raws).astype(np.float32))
    assert info["metadata"]["slice_order"] == "InstanceNumber"
    assert info["scale"] == pytest.approx((1.0, 0.7, 0.8))  # SliceThickness


def test_dicom_folder_with_two_series_is_refused_by_name(tmp_path):
    folder = tmp_path / "mixed"
    _make_series(folder, n=3)
    for k in range(2):
        _ct_file(
            folder / f"other{k}.dcm",
            np.zeros((5, 7), np.int16),
            position=(0, 0, k),
            series_uid="1.2.826.0.1.3680043.8.498.2",
            description="Scout",
        )
    with pytest.raises(ValueError) as info:
        _layers(folder)
    msg = str(info.value)
    assert "2 DICOM series" in msg and "'Thorax DFCT'" in msg and "'Scout'" in msg
    assert "3 image(s)" in msg and "2 image(s)" in msg
    out, meta = io.read_volume(folder, series="1.2.826.0.1.3680043.8.498.2")
    assert out.shape == (2, 5, 7) and meta["metadata"]["series_description"] == "Scout"


def test_dicom_slices_that_do_not_form_a_volume(tmp_path):
    dup = tmp_path / "dup"
    dup.mkdir()
    for k in range(3):
        _ct_file(dup / f"d{k}.dcm", np.zeros((4, 4), np.int16), position=(0, 0, min(k, 1)))
    with pytest.raises(ValueError, match="share the same position"):
        io.read_volume(dup)
    sizes = tmp_path / "sizes"
    sizes.mkdir()
    _ct_file(sizes / "a.dcm", np.zeros((4, 4), np.int16), position=(0, 0, 0))
    _ct_file(sizes / "b.dcm", np.zeros((4, 5), np.int16), position=(0, 0, 1))
    with pytest.raises(ValueError, match="differ in size"):
        io.read_volume(sizes)


def test_dicom_uneven_spacing_warns(tmp_path):
    folder = tmp_path / "gap"
    folder.mkdir()
    for k, z in enumerate([0.0, 1.0, 2.0, 4.0]):  # a missing slice
        _ct_file(folder / f"g{k}.dcm", np.zeros((3, 3), np.int16), position=(0, 0, z))
    with pytest.warns(UserWarning, match="spacing varies from 1 to 2 mm"):
        _, info = io.read_volume(folder)
    assert info["scale"][0] == pytest.approx(1.0)


def test_single_dicom_slice_uses_its_display_window(tmp_path):
    raw = np.arange(12, dtype=np.int16).reshape(3, 4) * 100
    path = _ct_file(
        tmp_path / "w.dcm",
        raw,
        position=(0, 0, 5),
        slope=2.0,
        intercept=-1000.0,
        spacing=(0.4, 0.6),
        window=(-600, 1500),
    )
    ((data, kwargs, _),) = _layers(path)
    np.testing.assert_array_equal(data, raw * 2.0 - 1000.0)
    assert kwargs["scale"] == pytest.approx((0.4, 0.6))
    assert kwargs["contrast_limits"] == pytest.approx((-1350.0, 150.0))  # lung window
    assert kwargs["name"] == "w"


def test_dicom_colour_and_empty_folders(tmp_path):
    path = _ct_file(
        tmp_path / "rgb.dcm", np.zeros((4, 4, 3), np.int16), position=(0, 0, 0), photometric="RGB"
    )
    with pytest.raises(ValueError, match=r"rgb\.dcm is a colour DICOM image"):
        io.read_volume(path)
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "a.tif").write_bytes(b"")
    assert io.napari_get_reader(str(empty)) is None
    with pytest.raises(ValueError, match="holds no DICOM files"):
        io.read_volume(empty)


def test_missing_pydicom_names_the_extra(tmp_path, monkeypatch):
    path = _ct_file(tmp_path / "one.dcm", np.zeros((4, 4), np.int16), position=(0, 0, 0))
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom -> ImportError
    with pytest.raises(ValueError, match=r"pip install napari-dfct\[dicom\]") as info:
        _layers(path)
    assert isinstance(info.value, ImportError)


def _real_ct_file():
    try:
        from pydicom.data import get_testdata_file

        path = get_testdata_file("CT_small.dcm")
    except Exception as exc:  # noqa: BLE001 # pragma: no cover - depends on the pydicom build
        pytest.skip(f"pydicom's CT_small.dcm test file is not available: {exc}")
    if path is None or not Path(path).is_file():  # pragma: no cover
        pytest.skip("pydicom does not ship CT_small.dcm in this installation")
    return str(path)


def test_real_scanner_ct_file_through_the_napari_reader():
    path = _real_ct_file()
    ((data, kwargs, layer_type),) = _layers(path)
    ds = pydicom.dcmread(path)
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    truth = ds.pixel_array.astype(np.float64) * slope + intercept
    assert layer_type == "image" and data.dtype == np.float32 and data.shape == (128, 128)
    np.testing.assert_array_equal(data, truth.astype(np.float32))
    assert kwargs["scale"] == pytest.approx([float(v) for v in ds.PixelSpacing])
    assert kwargs["scale"] == pytest.approx((0.661468, 0.661468))
    # anatomy in Hounsfield units: aerated lung at the top corners, muscle below the spine
    assert -950 < data[:20, :10].mean() < -700
    assert -950 < data[:20, -10:].mean() < -700
    assert -100 < data[100:120, 20:50].mean() < 100
    assert data[30:50, 50:75].mean() > 150  # vertebral bone
    meta = kwargs["metadata"]
    assert meta["modality"] == "CT" and meta["rescale_intercept"] == -1024.0
    assert meta["unit"] == "mm"
