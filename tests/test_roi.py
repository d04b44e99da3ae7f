"""The ROI convention (napari_dfct.roi): resolution rules, defaults, shapes, messages."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from napari_dfct import roi
from napari_dfct.roi import ROISet

META = {
    "signal_center": [40, 70],
    "background_center": [44, 20],
    "line": [[48, 30], [48, 66]],
    "roi_size": 20,
    "slice": 1,
}


# --------------------------------------------------------------------------------------
# resolution rules
# --------------------------------------------------------------------------------------
def test_meta_alone_gives_its_values_as_plain_json():
    d = ROISet.from_meta(META, 5).to_dict()
    assert d == {
        "signal_center": [40.0, 70.0],
        "background_center": [44.0, 20.0],
        "line": [[48.0, 30.0], [48.0, 66.0]],
        "roi_size": 20,
        "slice": 1,
    }
    assert all(isinstance(v, float) for v in d["signal_center"] + d["line"][1])
    assert isinstance(d["roi_size"], int) and isinstance(d["slice"], int)
    assert json.loads(json.dumps(d)) == d


def test_explicit_values_override_meta():
    r = ROISet.from_meta(
        META,
        5,
        signal_center="10,12",
        background_center=(30, 32),
        line="1,2,3,4",
        roi_size=8,
        slice=3,
    )
    assert r.signal_center == (10.0, 12.0) and r.background_center == (30.0, 32.0)
    assert r.line == ((1.0, 2.0), (3.0, 4.0))
    assert r.roi_size == 8 and r.slice == 3


def test_none_means_not_given():
    assert ROISet.from_meta(
        META, 5, signal_center=None, roi_size=None, slice=None, line=None
    ) == ROISet.from_meta(META, 5)


@pytest.mark.parametrize("key", ["signal_center", "background_center"])
def test_an_explicit_roi_moves_the_default_line_with_it(key):
    r = ROISet.from_meta(META, 5, **{key: [10, 10]})
    # meta.json's line belongs to meta.json's ROIs: the line now joins the centres in use
    assert r.line == (r.signal_center, r.background_center)
    assert (10.0, 10.0) in r.line
    # the other centre, the size and the slice still come from meta.json
    other = "background_center" if key == "signal_center" else "signal_center"
    assert list(getattr(r, other)) == [float(v) for v in META[other]]
    assert r.roi_size == 20 and r.slice == 1


def test_an_explicit_line_stays_with_an_explicit_roi():
    r = ROISet.from_meta(META, 5, signal_center=[10, 10], line=[[0, 0], [9, 9]])
    assert r.line == ((0.0, 0.0), (9.0, 9.0))


def test_defaults_without_meta():
    r = ROISet.from_meta(None, 16, signal_center=[100, 60], background_center=[100, 140])
    assert r.line == ((100.0, 60.0), (100.0, 140.0))  # signal centre -> background centre
    assert r.roi_size == 30 == roi.DEFAULT_ROI_SIZE
    assert r.slice == 8  # the central slice
    assert ROISet.from_meta(None, 15, signal_center=[1, 2], background_center=[3, 4]).slice == 7
    # without a slice count the slice is only what was given
    assert ROISet.from_meta({}, signal_center=[1, 2], background_center=[3, 4]).slice is None
    assert ROISet.from_meta(META).slice == 1


def test_negative_slices_count_from_the_end():
    assert ROISet.from_meta(META, 5, slice=-1).slice == 4
    assert ROISet.from_meta(META, 5, slice=-5).slice == 0


def test_default_roi_size_follows_the_simulator_for_small_images():
    base = {"signal_center": [10, 10], "background_center": [20, 20]}
    assert ROISet.from_meta(base, image_size=64).roi_size == 8  # round(30 * 64 / 256)
    assert ROISet.from_meta(base, image_size=16).roi_size == 4  # at least 4
    assert ROISet.from_meta(base, image_size=256).roi_size == 30
    assert ROISet.from_meta(base, image_size=800).roi_size == 30
    assert ROISet.from_meta({**base, "roi_size": 12}, image_size=64).roi_size == 12
    assert roi.default_roi_size() == 30


# --------------------------------------------------------------------------------------
# per-slice ROIs (independent specimens: each slice has its own anatomy)
# --------------------------------------------------------------------------------------
PER_SLICE = {
    **META,  # the top level: the ROIs of meta's own slice (1), for readers of one set
    "rois": [
        {
            "signal_center": [10, 11],
            "background_center": [20, 21],
            "line": [[1, 2], [3, 4]],
            "roi_size": 6,
        },
        {
            "signal_center": [40, 70],
            "background_center": [44, 20],
            "line": [[48, 30], [48, 66]],
            "roi_size": 20,
        },
        {"signal_center": [30, 31], "background_center": [50, 51], "roi_size": 8},
    ],
}


def test_each_slice_gets_its_own_rois():
    for k, entry in enumerate(PER_SLICE["rois"]):
        r = ROISet.from_meta(PER_SLICE, 3, slice=k)
        assert r.slice == k
        assert list(r.signal_center) == [float(v) for v in entry["signal_center"]]
        assert list(r.background_center) == [float(v) for v in entry["background_center"]]
        assert r.roi_size == entry["roi_size"]
        # an entry without a line gets the default line, not another slice's
        expected = entry.get("line", [entry["signal_center"], entry["background_center"]])
        assert [list(p) for p in r.line] == [[float(v) for v in p] for p in expected]
    # negative slices count from the end; without a slice, meta's own slice
    assert ROISet.from_meta(PER_SLICE, 3, slice=-1) == ROISet.from_meta(PER_SLICE, 3, slice=2)
    assert ROISet.from_meta(PER_SLICE, 3).signal_center == (40.0, 70.0)
    no_slice = {k: v for k, v in PER_SLICE.items() if k != "slice"}
    assert ROISet.from_meta(no_slice, 3).signal_center == (40.0, 70.0)  # central: 3 // 2


def test_explicit_values_still_win_over_a_slice_entry():
    r = ROISet.from_meta(PER_SLICE, 3, slice=0, signal_center=[5, 5], roi_size=4)
    assert r.signal_center == (5.0, 5.0) and r.roi_size == 4
    assert r.background_center == (20.0, 21.0)  # the slice's own
    assert r.line == (r.signal_center, r.background_center)  # entry's line discarded
    r = ROISet.from_meta(PER_SLICE, 3, slice=0, line="0,0,9,9")
    assert r.line == ((0.0, 0.0), (9.0, 9.0)) and r.signal_center == (10.0, 11.0)


def test_without_a_slice_count_the_top_level_rois_apply():
    # e.g. a 2-D image next to the meta.json of a volume: no slice to pick an entry by
    r = ROISet.from_meta(PER_SLICE, None, slice=0)
    assert r.signal_center == (40.0, 70.0) and r.roi_size == 20


@pytest.mark.parametrize(
    "rois, n, message",
    [
        (PER_SLICE["rois"], 4, "'rois' holds the ROIs of 3 slice(s), but the volume has 4"),
        ({"signal_center": [1, 2]}, 3, "'rois' must be a list"),
        ([1, 2, 3], 3, "'rois' must be a list"),
    ],
)
def test_bad_per_slice_rois(rois, n, message):
    with pytest.raises(ValueError) as exc:
        ROISet.from_meta({**PER_SLICE, "rois": rois}, n)
    assert message in str(exc.value)


def test_a_bad_slice_is_reported_as_before_with_per_slice_rois():
    with pytest.raises(ValueError, match="slice 3 is outside the volume"):
        ROISet.from_meta(PER_SLICE, 3, slice=3)
    with pytest.raises(ValueError, match="slice must be an integer"):
        ROISet.from_meta(PER_SLICE, 3, slice="mid")


def test_direct_construction_normalises_and_defaults_the_line():
    r = ROISet("5,6", [7, 8], roi_size="12")
    assert r.signal_center == (5.0, 6.0) and r.line == ((5.0, 6.0), (7.0, 8.0))
    assert r.roi_size == 12 and r.slice is None


# --------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "meta,overrides,message",
    [
        (None, {}, "no ROIs: give the signal and background ROI centres"),
        ({"signal_center": [1, 2]}, {}, "no ROIs"),
        (None, {"signal_center": [1, 2]}, "no ROIs"),
        (META, {"signal_center": "a,b"}, "bad point 'a,b': use ROW,COL"),
        ({**META, "background_center": [1, 2, 3]}, {}, "bad point [1, 2, 3]: use ROW,COL"),
        ({**META, "background_center": 5}, {}, "bad point 5: use ROW,COL"),
        (META, {"line": "1,2,3"}, "bad line '1,2,3': use R0,C0,R1,C1"),
        ({**META, "line": [[1, 2]]}, {}, "bad line [[1, 2]]: give two points"),
        ({**META, "line": 7}, {}, "bad line 7: give two points"),
        (META, {"roi_size": 1}, "ROI size must be at least 2 pixels, got 1"),
        ({**META, "roi_size": "big"}, {}, "ROI size must be an integer, got 'big'"),
        (META, {"slice": 5}, "slice 5 is outside the volume (5 slices)"),
        (META, {"slice": -6}, "slice -6 is outside the volume (5 slices)"),
        ({**META, "slice": "mid"}, {}, "slice must be an integer, got 'mid'"),
    ],
)
def test_bad_input_says_what_is_wrong(meta, overrides, message):
    with pytest.raises(ValueError) as exc:
        ROISet.from_meta(meta, 5, **overrides)
    assert message in str(exc.value)


def test_unknown_field_is_a_type_error():
    with pytest.raises(TypeError, match="linewidth"):
        ROISet.from_meta(META, 5, linewidth=3)


def test_read_meta(tmp_path):
    image = tmp_path / "input.tif"
    assert roi.read_meta(image) == (None, tmp_path / "meta.json")
    (tmp_path / "meta.json").write_text(json.dumps(META))
    assert roi.read_meta(image) == (META, tmp_path / "meta.json")
    assert roi.read_meta(tmp_path)[0] == META  # a folder: its own meta.json
    (tmp_path / "meta.json").write_text("{broken")
    with pytest.raises(ValueError, match="cannot read"):
        roi.read_meta(image)
    (tmp_path / "meta.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="does not hold a JSON object"):
        roi.read_meta(image)


# --------------------------------------------------------------------------------------
# shapes of the napari layer
# --------------------------------------------------------------------------------------
def test_shapes_follow_the_layer_convention():
    r = ROISet.from_meta(META)
    data, types, features = r.shapes()
    assert roi.LAYER_NAME == "DFCT ROIs"
    assert types == ["rectangle", "rectangle", "line"]
    assert features == {"role": ["signal", "background", "line"]}
    for square, (cr, cc) in ((data[0], (40, 70)), (data[1], (44, 20))):
        assert square.shape == (4, 2)
        np.testing.assert_allclose(square.min(0), [cr - 10, cc - 10])
        np.testing.assert_allclose(square.max(0), [cr + 10, cc + 10])
        np.testing.assert_allclose(square.mean(0), [cr, cc])
    np.testing.assert_allclose(data[2], [[48, 30], [48, 66]])


def test_shape_indices_by_role_then_by_order_and_type():
    types = ["line", "rectangle", "ellipse", "rectangle"]
    assert roi.shape_indices(types, ["line", "background", "x", "signal"]) == {
        "signal": 3,
        "background": 1,
        "line": 0,
    }
    # no roles (or not one per shape): the first two boxes and the first line
    assert roi.shape_indices(types) == {"signal": 1, "background": 2, "line": 0}
    assert roi.shape_indices(types, ["signal"]) == {"signal": 1, "background": 2, "line": 0}
    # roles that name only some shapes: the rest by order and type
    assert roi.shape_indices(["rectangle", "rectangle", "path"], ["a", "b", "c"]) == {
        "signal": 0,
        "background": 1,
        "line": 2,
    }
    assert roi.shape_indices(["rectangle", "line"]) == {"line": 1}


def test_roi_module_stays_light():
    code = (
        "import sys, napari_dfct.roi\n"
        "print(sorted(m for m in ('torch', 'napari', 'qtpy', 'napari_dfct.simulate')"
        " if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
