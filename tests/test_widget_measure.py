"""Tests of the Measure CNR / FWHM dock widget (run under ``xvfb-run -a``)."""

from __future__ import annotations

import csv
import importlib.util
import json
import math

import numpy as np
import pytest
from scipy.special import erf

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from napari_dfct import metrics  # noqa: E402
from napari_dfct.widgets.measure import (  # noqa: E402
    EXPORT_COLUMNS,
    ROI_LAYER_NAME,
    MeasureWidget,
)

Z, H, W = 4, 120, 160
SIG, BG, SIZE = (60.0, 120.0), (60.0, 40.0), 30


def _square(c, size=SIZE):
    h = size / 2
    return np.array(
        [[c[0] - h, c[1] - h], [c[0] - h, c[1] + h], [c[0] + h, c[1] + h], [c[0] + h, c[1] - h]]
    )


def _roi_data(sig=SIG, bg=BG, size=SIZE, line=None):
    line = np.array([sig, bg]) if line is None else np.asarray(line, float)
    return [_square(sig, size), _square(bg, size), line]


@pytest.fixture(scope="module")
def stacks():
    """A (Z, Y, X) stack: air (0.2) left, tissue (1.0) right of a blurred edge at col 80;
    the noise grows with z, so the CNR falls from slice to slice."""
    rng = np.random.default_rng(0)
    c = np.arange(W, dtype=np.float64)
    clean2d = np.broadcast_to(0.2 + 0.8 * 0.5 * (1 + erf((c - 80) / (np.sqrt(2) * 3.0))), (H, W))
    noisy = np.stack([clean2d + rng.normal(0, 0.04 * (z + 1), (H, W)) for z in range(Z)])
    truth = np.stack([clean2d] * Z)
    return noisy.astype(np.float32), truth.astype(np.float32)


def _add_rois(viewer, data=None, **kw):
    data = _roi_data() if data is None else data
    return viewer.add_shapes(
        data,
        shape_type=["rectangle", "rectangle", "line"],
        features={"role": ["signal", "background", "line"]},
        name=ROI_LAYER_NAME,
        ndim=2,
        **kw,
    )


@pytest.fixture
def setup(make_napari_viewer, stacks, qtbot):
    noisy, truth = stacks
    viewer = make_napari_viewer()
    viewer.add_image(noisy, name="input")
    viewer.add_image(truth, name="truth")
    rois = _add_rois(viewer)
    viewer.dims.set_current_step(0, 1)
    widget = MeasureWidget(viewer)
    qtbot.addWidget(widget)
    return viewer, widget, rois


def _row(widget, name):
    for r in widget.rows:
        if r.layer == name:
            return r
    raise KeyError(name)


def _cell(widget, name, metric):
    """The table cell of layer ``name`` (a column) and ``metric`` (a row)."""
    from napari_dfct.widgets.measure import METRICS

    j = [r.layer for r in widget.rows].index(name)
    return widget.table.item(METRICS.index(metric), j)


def test_rows_match_the_metrics_of_the_displayed_slice(setup, stacks):
    viewer, widget, _ = setup
    noisy, truth = stacks
    assert [r.layer for r in widget.rows] == ["truth", "input"]  # as in the layer list
    assert widget.table.columnCount() == 2
    m = _row(widget, "input").measurement
    expected_c = metrics.cnr(noisy[1], SIG, BG, SIZE)
    expected_f = metrics.fwhm(noisy[1], SIG, BG)
    assert m.cnr.cnr == pytest.approx(expected_c.cnr, rel=1e-12)
    assert m.cnr.stderr == pytest.approx(expected_c.stderr, rel=1e-12)
    assert m.fwhm.fwhm == pytest.approx(expected_f.fwhm, rel=1e-9)
    assert m.cnr.signal.n == 900
    # the reference defaults to the layer named "truth"
    assert widget.reference_combo.currentText() == "truth"
    assert m.psnr == pytest.approx(metrics.psnr(noisy[1], truth[1]))
    assert m.ssim == pytest.approx(metrics.ssim(noisy[1], truth[1]))
    assert _cell(widget, "input", "CNR").text().startswith(f"{expected_c.cnr:.3g}")
    assert "\u00b1" in _cell(widget, "input", "FWHM (px)").text()
    # the noise-free truth: CNR undefined (zero noise) with a visible reason
    t = _row(widget, "truth")
    assert math.isnan(t.measurement.cnr.cnr)
    assert _cell(widget, "truth", "CNR").text() == "n/a"
    assert "zero noise" in _cell(widget, "truth", "CNR").toolTip()
    assert "zero noise" in _cell(widget, "truth", "Note").text()
    assert _cell(widget, "truth", "PSNR (dB)").text() == "\u221e"
    # the plot shows the selected row's profile and fit
    widget.select_layer("input")
    x, y = widget.plot.esf.line("profile")
    np.testing.assert_allclose(x, expected_f.distance)
    np.testing.assert_allclose(y, expected_f.profile)
    xf, yf = widget.plot.esf.line("fit")  # the fitted erf, on a finer grid over the line
    assert xf[0] == 0.0 and xf[-1] == pytest.approx(x[-1]) and len(xf) > len(x)
    np.testing.assert_allclose(
        yf,
        metrics.erf_edge(
            xf,
            expected_f.offset,
            expected_f.amplitude,
            expected_f.edge_position,
            expected_f.sigma_profile,
        ),
    )
    assert widget.plot.esf.vline == pytest.approx(expected_f.edge_position)
    assert widget.plot.esf.title.startswith("input")
    assert widget.plot.lsf.title.startswith(f"FWHM {expected_f.fwhm:.2f}")
    # the FWHM bar spans the fitted Gaussian's width at half its maximum
    fx, _ = widget.plot.lsf.line("fwhm")
    assert fx[1] - fx[0] == pytest.approx(expected_f.sigma_profile * metrics.FWHM_PER_SIGMA)
    widget.plot.grab()  # paints


def test_live_updates_move_drag_slice_and_off_image(setup, stacks, qtbot):
    viewer, widget, rois = setup
    noisy, _ = stacks

    def cnr_is(value):
        qtbot.waitUntil(
            lambda: _row(widget, "input").measurement.cnr.cnr == pytest.approx(value), timeout=3000
        )

    # 1. a new position set programmatically (events.data)
    before = _row(widget, "input").measurement.cnr.cnr
    new_sig = (40.0, 110.0)
    rois.data = _roi_data(sig=new_sig)
    expected = metrics.cnr(noisy[1], new_sig, BG, SIZE).cnr
    assert expected != pytest.approx(before)
    cnr_is(expected)

    # 2. a drag: napari shifts the shape and refreshes (events.set_data, no data event);
    #    three steps are coalesced by the throttling timer
    for _ in range(3):
        rois._data_view.shift(1, np.array([0.0, 4.0]))
        rois.refresh()
    new_bg = (BG[0], BG[1] + 12.0)
    cnr_is(metrics.cnr(noisy[1], new_sig, new_bg, SIZE).cnr)
    assert _row(widget, "input").measurement.cnr.background.center == pytest.approx(new_bg)

    # 3. another slice
    viewer.dims.set_current_step(0, 3)
    expected3 = metrics.cnr(noisy[3], new_sig, new_bg, SIZE).cnr
    cnr_is(expected3)
    assert expected3 < expected  # more noise on slice 3
    assert _row(widget, "input").slice == "3"

    # 4. the background ROI dragged off the image: NaN with a visible reason
    rois.data = _roi_data(bg=(60.0, -5.0))
    qtbot.waitUntil(lambda: math.isnan(_row(widget, "input").measurement.cnr.cnr), timeout=3000)
    cell = _cell(widget, "input", "CNR")
    assert cell.text() == "n/a"
    assert "outside" in cell.toolTip()
    assert "outside" in _cell(widget, "input", "Note").text()
    assert _cell(widget, "input", "Background").text() == "n/a"
    # the valid ROI stays
    assert _cell(widget, "input", "Signal").text().startswith("\u03bc ")
    # the line now ends outside as well: FWHM undefined too, with its reason
    assert "leaves the image" in _row(widget, "input").reason


def test_scaled_layer_measures_like_unscaled(make_napari_viewer, stacks, qtbot):
    """Same pixels, then scale 2 and an offset: ROIs drawn at the corresponding world
    place (twice as large in world units) give the same numbers."""
    noisy, _ = stacks
    viewer = make_napari_viewer()
    layer = viewer.add_image(noisy, name="img")
    rois = _add_rois(viewer)
    viewer.dims.set_current_step(0, 2)
    widget = MeasureWidget(viewer)
    qtbot.addWidget(widget)
    plain = _row(widget, "img").measurement

    scale, shift = np.array([2.0, 2.0]), np.array([10.0, -30.0])
    layer.scale = (1.0, 2.0, 2.0)
    layer.translate = (0.0, 10.0, -30.0)
    rois.data = [d * scale + shift for d in _roi_data()]  # unscaled Shapes: world coords
    qtbot.waitUntil(
        lambda: _row(widget, "img").measurement.cnr.signal.center == pytest.approx(SIG),
        timeout=3000,
    )
    widget.refresh()  # make sure both changes are in
    scaled = _row(widget, "img").measurement
    assert scaled.cnr.signal.n == 900
    assert scaled.cnr.cnr == pytest.approx(plain.cnr.cnr, rel=1e-9)
    assert scaled.fwhm.fwhm == pytest.approx(plain.fwhm.fwhm, rel=1e-6)
    # FWHM is in pixels of the layer, not world units
    assert scaled.fwhm.fwhm == pytest.approx(2.3548 * 3.0, rel=0.25)
    # and the unscaled ROIs now sit elsewhere on the scaled image: different numbers
    rois.data = _roi_data()
    qtbot.waitUntil(
        lambda: _row(widget, "img").measurement.cnr.cnr != pytest.approx(plain.cnr.cnr),
        timeout=3000,
    )


def test_csv_export_and_clipboard(setup, tmp_path, qtbot):
    from qtpy.QtWidgets import QApplication

    viewer, widget, _ = setup
    path = widget.export_csv(str(tmp_path / "m.csv"))
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0].keys()) == list(EXPORT_COLUMNS)
    rows = {r["layer"]: r for r in rows}
    assert set(rows) == {"input", "truth"}
    m = _row(widget, "input").measurement
    assert float(rows["input"]["cnr"]) == m.cnr.cnr  # full precision
    assert float(rows["input"]["fwhm"]) == m.fwhm.fwhm
    assert int(rows["input"]["signal_n"]) == 900
    assert rows["truth"]["cnr"] == "" and "zero noise" in rows["truth"]["reason"]
    assert rows["truth"]["psnr"] == "inf" and rows["input"]["reference"] == "truth"
    widget.copy_to_clipboard()
    text = QApplication.clipboard().text()
    assert text.splitlines()[0].split("\t") == list(EXPORT_COLUMNS)
    assert len(text.strip().splitlines()) == 3


def test_layers_added_renamed_removed_and_reference(setup, stacks, qtbot):
    viewer, widget, _ = setup
    noisy, truth = stacks
    layer = viewer.add_image(noisy[::-1].copy(), name="prediction")
    qtbot.waitUntil(lambda: "prediction" in [r.layer for r in widget.rows], timeout=3000)
    layer.name = "renamed"
    qtbot.waitUntil(lambda: "renamed" in [r.layer for r in widget.rows], timeout=3000)
    assert widget.reference_combo.findText("renamed") >= 0
    widget.set_reference(None)
    qtbot.waitUntil(lambda: not _row(widget, "input").measurement.has_reference, timeout=3000)
    assert _cell(widget, "input", "PSNR (dB)").text() == ""
    viewer.layers.remove(layer)
    qtbot.waitUntil(lambda: [r.layer for r in widget.rows] == ["truth", "input"], timeout=3000)
    # the ROI layer removed: reported, not silently re-created; "Reset ROIs" brings it back
    viewer.layers.remove(ROI_LAYER_NAME)
    qtbot.waitUntil(lambda: _row(widget, "input").measurement is None, timeout=3000)
    assert "Reset ROIs" in _row(widget, "input").reason
    assert _cell(widget, "input", "CNR").text() == "n/a"
    widget.reset_rois()
    qtbot.waitUntil(lambda: _row(widget, "input").measurement is not None, timeout=3000)
    assert ROI_LAYER_NAME in viewer.layers


def test_creates_default_rois_when_missing(make_napari_viewer, stacks, qtbot, measure_notes):
    """Data without ROIs of their own: generic squares, said so; here the signal square
    lands on the darker side, which is flagged."""
    noisy, _ = stacks
    viewer = make_napari_viewer()
    viewer.add_image(noisy, name="input", scale=(1.0, 0.5, 0.5))
    widget = MeasureWidget(viewer)
    qtbot.addWidget(widget)
    assert ROI_LAYER_NAME in viewer.layers
    rois = viewer.layers[ROI_LAYER_NAME]
    assert list(rois.shape_type) == ["rectangle", "rectangle", "line"]
    assert list(rois.features["role"]) == ["signal", "background", "line"]
    m = _row(widget, "input").measurement
    # 30x30 pixels of the image, on either side of the edge at col 80
    assert m.cnr.signal.n == m.cnr.background.n == 900
    assert math.isfinite(m.cnr.cnr) and math.isfinite(m.fwhm.fwhm)
    assert m.cnr.signal.mean < 0.3 < 0.9 < m.cnr.background.mean
    assert "generic" in widget.status.text()
    assert len(measure_notes["warning"]) == 1 and "below" in measure_notes["warning"][0]


@pytest.mark.skipif(
    importlib.util.find_spec("napari_dfct._sample_data") is None,
    reason="sample data module not available",
)
def test_on_the_sample_data(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-dfct", "thorax")
    widget = MeasureWidget(viewer)
    qtbot.addWidget(widget)
    assert ROI_LAYER_NAME in viewer.layers
    role = {
        ly.metadata.get("role"): ly.name
        for ly in viewer.layers
        if ly.metadata.get("role") in ("input", "target", "truth")
    }
    assert set(role) == {"input", "target", "truth"}
    assert {r.layer for r in widget.rows} >= set(role.values())
    assert widget.reference_combo.currentText() == role["truth"]
    for key in ("input", "target"):
        row = _row(widget, role[key])
        m = row.measurement
        assert m is not None and m.cnr.signal.n > 0, row.reason
        assert math.isfinite(m.cnr.cnr), m.reason
        assert math.isfinite(m.psnr) and 0 < m.ssim < 1
    # the multi-rotation target has less noise than the single-rotation input
    assert (
        _row(widget, role["target"]).measurement.cnr.cnr
        > _row(widget, role["input"]).measurement.cnr.cnr
    )


def _same_shapes(layer, expected):
    data, types, features = expected
    assert list(layer.shape_type) == list(types)
    assert list(layer.features["role"]) == list(features["role"])
    for got, want in zip(layer.data, data, strict=True):
        np.testing.assert_allclose(np.asarray(got)[:, -2:], want)


@pytest.fixture
def measure_notes(capture_notifications):
    from napari_dfct.widgets import measure as mod

    return capture_notifications(mod)


def test_reset_rois_restores_the_datas_own_rois(
    make_napari_viewer, small_sim, qtbot, tmp_path, measure_notes
):
    """The sample's ROIs (layer metadata) and a data folder's meta.json, not generic
    squares; the lung ROI is brighter than the air ROI, so the CNR is positive."""
    from napari_dfct import roi
    from napari_dfct.io import write_volume

    meta = small_sim.meta
    viewer = make_napari_viewer()
    viewer.add_image(small_sim.input.copy(), name="input", metadata={"dfct": meta})
    viewer.dims.set_current_step(0, meta["slice"])
    widget = MeasureWidget(viewer)
    qtbot.addWidget(widget)
    own = roi.ROISet.from_meta(meta, image_size=meta["size"]).shapes()
    _same_shapes(viewer.layers[ROI_LAYER_NAME], own)  # created from the data
    viewer.layers[ROI_LAYER_NAME].data = _roi_data((20.0, 20.0), (40.0, 40.0), 8)
    widget.reset_rois()
    _same_shapes(viewer.layers[ROI_LAYER_NAME], own)
    widget.refresh()
    m = _row(widget, "input").measurement
    assert m.cnr.signal.mean > m.cnr.background.mean and m.cnr.cnr > 0
    assert measure_notes["warning"] == []

    # a volume opened from a folder with a meta.json: its ROIs (moved, to tell them apart)
    folder = tmp_path / "scan"
    folder.mkdir()
    moved = {k: v for k, v in meta.items() if k != "rois"}  # one set for every slice
    moved.update(signal_center=[30, 30], background_center=[12, 50], line=None, roi_size=8)
    (folder / "meta.json").write_text(json.dumps(moved))
    write_volume(folder / "input.tif", small_sim.input)
    viewer.layers.clear()
    viewer.open(str(folder / "input.tif"), plugin="napari-dfct")
    widget.reset_rois()
    _same_shapes(
        viewer.layers[ROI_LAYER_NAME],
        roi.ROISet.from_meta(moved, image_size=meta["size"]).shapes(),
    )


def test_reset_rois_takes_the_slices_own_rois(make_napari_viewer, small_sim, qtbot):
    """Per-slice ROIs in the data's record (independent specimens): those of the slice
    on view."""
    from napari_dfct import roi

    per_slice = [
        {"signal_center": [30 + z, 20], "background_center": [12, 40 + z], "roi_size": 6}
        for z in range(small_sim.input.shape[0])
    ]
    meta = dict(small_sim.meta, rois=per_slice)
    viewer = make_napari_viewer()
    viewer.add_image(small_sim.input.copy(), name="input", metadata={"dfct": meta})
    viewer.dims.set_current_step(0, 3)
    widget = MeasureWidget(viewer)
    qtbot.addWidget(widget)
    widget.reset_rois()
    own = roi.ROISet.from_meta(meta, 4, image_size=meta["size"], slice=3)
    assert own.signal_center == (33.0, 20.0)
    _same_shapes(viewer.layers[ROI_LAYER_NAME], own.shapes())
    assert "slice 3" in widget.status.text() or "slice 3" in widget._roi_source


def test_warns_when_the_signal_is_darker_than_the_background(setup, qtbot, measure_notes):
    """ROIs on the wrong tissues (signal on air): a notification once and a visible note
    in the table, while the values stay shown."""
    _, widget, rois = setup
    assert measure_notes["warning"] == []
    rois.data = _roi_data(sig=BG, bg=SIG)  # swapped: the signal square on air
    qtbot.waitUntil(lambda: _row(widget, "input").measurement.cnr.cnr < 0, timeout=3000)
    assert len(measure_notes["warning"]) == 1
    assert "below" in measure_notes["warning"][0] and "input" in measure_notes["warning"][0]
    assert "below" in _cell(widget, "input", "Note").text()
    assert "below" in widget.warning_label.text() and widget.warning_label.isVisibleTo(widget)
    widget.refresh()  # still swapped: no second notification
    assert len(measure_notes["warning"]) == 1
    rois.data = _roi_data()
    qtbot.waitUntil(lambda: _row(widget, "input").measurement.cnr.cnr > 0, timeout=3000)
    assert "below" not in _cell(widget, "input", "Note").text()
    assert not widget.warning_label.isVisibleTo(widget)


def _hand_error_cnr(img, ref, sig, bg, size=SIZE):
    """(mu_s - mu_b) / sqrt(var(e_s) + var(e_b)) with e = img - ref, computed here."""
    h = size // 2

    def box(a, c):
        r, q = int(round(c[0])), int(round(c[1]))
        return np.asarray(a, np.float64)[r - h : r - h + size, q - h : q - h + size]

    e = np.asarray(img, np.float64) - np.asarray(ref, np.float64)
    return (box(img, sig).mean() - box(img, bg).mean()) / np.sqrt(
        box(e, sig).var(ddof=1) + box(e, bg).var(ddof=1)
    )


def test_error_cnr_and_body_psnr_against_the_reference(setup, stacks, qtbot):
    from scipy.ndimage import gaussian_filter

    viewer, widget, _ = setup
    noisy, truth = stacks
    m = _row(widget, "input").measurement
    assert m.error_cnr is not None
    assert m.error_cnr.error_cnr == pytest.approx(
        _hand_error_cnr(noisy[1], truth[1], SIG, BG), rel=1e-9
    )
    assert float(_cell(widget, "input", "Error CNR").text()) == pytest.approx(
        m.error_cnr.error_cnr, rel=1e-3
    )
    # a textured reference blurred: classic CNR rises (less ROI spread), the error CNR
    # falls (the texture it removed is now error)
    rng = np.random.default_rng(3)
    textured = truth + rng.normal(0, 0.05, truth.shape).astype(np.float32)
    blurred = np.stack([gaussian_filter(t, 2.0) for t in textured]).astype(np.float32)
    viewer.layers["truth"].data = textured
    viewer.add_image(blurred, name="blurred")
    qtbot.waitUntil(lambda: "blurred" in [r.layer for r in widget.rows], timeout=3000)
    widget.refresh()
    b, t = _row(widget, "blurred").measurement, _row(widget, "truth").measurement
    assert b.cnr.cnr > t.cnr.cnr
    assert b.error_cnr.error_cnr < t.error_cnr.error_cnr  # the reference itself: inf
    assert math.isinf(t.error_cnr.error_cnr)
    # no body layer: no body PSNR; a Labels layer named 'body': PSNR inside it
    assert not b.has_mask and _cell(widget, "blurred", "PSNR body (dB)").text() == ""
    mask = np.zeros(truth.shape, np.uint8)
    mask[:, 20:100, 30:150] = 1
    viewer.add_labels(mask, name="body")
    widget.refresh()
    b = _row(widget, "blurred").measurement
    inside = mask[1] > 0
    rmse = np.sqrt(np.mean((blurred[1][inside].astype(np.float64) - textured[1][inside]) ** 2))
    assert b.has_mask and b.rmse_body == pytest.approx(rmse, rel=1e-6)
    assert np.isfinite(b.psnr_body) and _cell(widget, "blurred", "PSNR body (dB)").text()
    rec = _row(widget, "blurred").record()
    assert rec["error_cnr"] == pytest.approx(b.error_cnr.error_cnr)
    assert rec["psnr_body"] == pytest.approx(b.psnr_body)


def test_roi_metrics_are_recomputed_only_when_their_geometry_or_data_change(
    setup, stacks, monkeypatch
):
    """CNR and FWHM are cached by their own geometry: moving the signal ROI refits no
    edge, moving the line recomputes no CNR, new pixel data recompute both; every value
    still equals the metric computed directly."""
    viewer, widget, rois = setup
    noisy, _ = stacks
    calls = {"cnr": 0, "fwhm": 0}
    for name in calls:
        real = getattr(metrics, name)

        def counted(*a, _real=real, _name=name, **k):
            calls[_name] += 1
            return _real(*a, **k)

        monkeypatch.setattr(metrics, name, counted)

    def measured():
        calls.update(cnr=0, fwhm=0)
        widget.refresh()
        return _row(widget, "input").measurement, dict(calls)

    line = np.array([SIG, BG])
    new_sig = (50.0, 115.0)
    rois.data = _roi_data(sig=new_sig, line=line)  # the line stays where it was
    m, n = measured()
    assert n == {"cnr": 2, "fwhm": 0}  # two layers' CNR, no edge refitted
    assert m.cnr.cnr == pytest.approx(metrics.cnr(noisy[1], new_sig, BG, SIZE).cnr, rel=1e-12)
    assert m.fwhm.fwhm == pytest.approx(metrics.fwhm(noisy[1], SIG, BG).fwhm, rel=1e-9)

    new_line = np.array([[60.0, 60.0], [60.0, 100.0]])
    rois.data = _roi_data(sig=new_sig, line=new_line)
    m, n = measured()
    assert n == {"cnr": 0, "fwhm": 2}
    assert m.fwhm.fwhm == pytest.approx(
        metrics.fwhm(noisy[1], new_line[0], new_line[1]).fwhm, rel=1e-9
    )

    rois.data = _roi_data(sig=SIG, line=new_line)  # back to a position seen before
    assert measured()[1] == {"cnr": 0, "fwhm": 0}

    viewer.layers["input"].data = noisy[::-1].copy()  # new pixel data: both recomputed
    m, n = measured()
    assert n == {"cnr": 1, "fwhm": 1}
    assert m.cnr.cnr == pytest.approx(metrics.cnr(noisy[2], SIG, BG, SIZE).cnr, rel=1e-12)
