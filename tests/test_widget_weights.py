"""The loss amplification widget in a real viewer."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

SCALE = (2.0, 0.5, 0.5)
TRANSLATE = (1.0, -3.0, 4.0)


@pytest.fixture
def viewer_with_pair(make_napari_viewer, small_sim):
    viewer = make_napari_viewer()
    viewer.add_image(
        small_sim.input.copy(), name="input (1 rotation)", scale=SCALE, translate=TRANSLATE
    )
    viewer.add_image(
        small_sim.target.copy(), name="target (4 rotations)", scale=SCALE, translate=TRANSLATE
    )
    return viewer


@pytest.fixture
def errors(monkeypatch):
    from napari_dfct.widgets import weights as mod

    seen = []
    monkeypatch.setattr(mod, "show_error", lambda msg: seen.append(str(msg)))
    return seen


def _widget(viewer, qtbot):
    from napari_dfct.widgets.weights import WeightsWidget

    widget = WeightsWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Loss amplification")
    return widget


def _layer(viewer, key):
    from napari_dfct.widgets.weights import LAYER_NAMES

    return viewer.layers[LAYER_NAMES[key]]


def _set(widget, qtbot, **values):
    for name, value in values.items():
        getattr(widget.form, name).value = value
    widget.update_maps()  # what the debounce timer calls


def test_builds_layers_on_the_current_slice(viewer_with_pair, qtbot, errors, small_sim):
    from napari_dfct.data import window_from_percentiles
    from napari_dfct.widgets.weights import LAYER_NAMES

    viewer = viewer_with_pair
    widget = _widget(viewer, qtbot)
    assert widget.form.input.value.name == "input (1 rotation)"
    assert widget.form.target.value.name == "target (4 rotations)"
    _set(
        widget,
        qtbot,
        spatial="linear",
        frequency="none",
        loss="l2",
        mode="paper",
        normalize=False,
        size="full",
    )
    for key, name in LAYER_NAMES.items():  # A_D only with a directional profile
        assert (name in viewer.layers) == (key != "directional")
    a_s = _layer(viewer, "spatial").data
    assert a_s.shape == small_sim.input.shape[1:]
    assert a_s.max() == pytest.approx(2.0)
    assert a_s.min() == pytest.approx(1.0)
    h, w = a_s.shape
    assert a_s[h // 2, w // 2] == pytest.approx(2.0)  # peak at the iso-centre
    # maps sit on the input's pixel grid
    for key in (k for k in LAYER_NAMES if k != "directional"):
        np.testing.assert_allclose(_layer(viewer, key).scale, SCALE[1:])
        np.testing.assert_allclose(_layer(viewer, key).translate, TRANSLATE[1:])

    # the plain map is the L2 error of the windowed slice the viewer shows
    z = 2
    viewer.dims.set_point(0, TRANSLATE[0] + z * SCALE[0])
    widget.update_maps()
    win = window_from_percentiles(small_sim.input, small_sim.target)
    expected = (win.normalize(small_sim.input[z]) - win.normalize(small_sim.target[z])) ** 2
    np.testing.assert_allclose(_layer(viewer, "loss").data, expected, rtol=1e-5, atol=1e-7)
    # spatial only: the amplified map is A_S times the plain map
    np.testing.assert_allclose(
        _layer(viewer, "amplified").data, a_s * expected, rtol=1e-5, atol=1e-7
    )
    assert "A_F(DC)" in widget.info.text()
    assert errors == []


def test_options_update_layers_in_place(viewer_with_pair, qtbot, errors):
    viewer = viewer_with_pair
    widget = _widget(viewer, qtbot)
    _set(widget, qtbot, spatial="linear", frequency="linear", size="full")
    n_layers = len(viewer.layers)
    a_s_layer = _layer(viewer, "spatial")
    a_s_lin = a_s_layer.data.copy()
    a_f_lin = _layer(viewer, "frequency").data.copy()
    amp_lin = _layer(viewer, "amplified").data.copy()

    _set(widget, qtbot, spatial="nonlinear", frequency="nonlinear")
    assert len(viewer.layers) == n_layers  # reused, not piled up
    assert _layer(viewer, "spatial") is a_s_layer
    a_s_non = a_s_layer.data
    assert not np.allclose(a_s_non, a_s_lin)
    assert a_s_non.max() == pytest.approx(2.0) and a_s_non.min() == pytest.approx(1.0)
    a_f_non = _layer(viewer, "frequency").data
    assert not np.allclose(a_f_non, a_f_lin)
    # the non-linear frequency weight lies on or above the linear one (raises mid bands)
    assert np.all(a_f_non >= a_f_lin - 1e-6)
    # DC sits in the middle of the shifted view and weighs 1
    h, w = a_f_non.shape
    assert a_f_non[h // 2, w // 2] == pytest.approx(1.0)
    assert not np.allclose(_layer(viewer, "amplified").data, amp_lin)

    # a patch: maps shrink to the centred patch (clamped to the slice) and move with it
    _set(widget, qtbot, size="patch")
    assert len(viewer.layers) == n_layers
    assert _layer(viewer, "loss").data.shape == a_s_lin.shape  # 64x64 slice < 128 patch
    assert errors == []


def test_paper_mode_frequency_only_rescales(viewer_with_pair, qtbot, errors):
    """DC identity: with F alone in paper mode, mean(L_F) = A_F(DC) * mean(L) = mean(L)."""
    viewer = viewer_with_pair
    widget = _widget(viewer, qtbot)
    _set(widget, qtbot, spatial="none", frequency="nonlinear", mode="paper", size="full")
    plain = _layer(viewer, "loss").data.astype(np.float64)
    amp = _layer(viewer, "amplified").data.astype(np.float64)
    assert not np.allclose(amp, plain)  # the map changes ...
    assert amp.mean() == pytest.approx(plain.mean(), rel=1e-4)  # ... its mean does not
    # spectral mode changes the mean (white-ish error gains > 1)
    _set(widget, qtbot, mode="spectral")
    assert _layer(viewer, "amplified").data.mean() > 1.05 * plain.mean()
    assert "Spectral mode" in widget.info.text()
    assert errors == []


def test_slice_change_updates_maps(viewer_with_pair, qtbot, errors):
    viewer = viewer_with_pair
    widget = _widget(viewer, qtbot)
    _set(widget, qtbot, size="full")
    viewer.dims.set_point(0, TRANSLATE[0] + 0 * SCALE[0])
    qtbot.waitUntil(lambda: not widget._timer.isActive(), timeout=2000)
    widget.update_maps()
    first = _layer(viewer, "loss").data.copy()
    viewer.dims.set_point(0, TRANSLATE[0] + 3 * SCALE[0])
    # the debounced update follows the slider by itself
    qtbot.waitUntil(lambda: not np.allclose(_layer(viewer, "loss").data, first), timeout=3000)
    assert errors == []


def test_bad_inputs_notify(make_napari_viewer, qtbot, errors, small_sim):
    viewer = make_napari_viewer()
    viewer.add_image(small_sim.input.copy(), name="input")
    viewer.add_image(small_sim.target[:, :32, :32].copy(), name="target")
    widget = _widget(viewer, qtbot)
    widget.update_maps()
    assert errors and "shape" in errors[-1]
    # said in the widget too, and no map of the mismatched pair is drawn
    assert not widget.status.isHidden() and "shape" in widget.status.text()
    from napari_dfct.widgets.weights import LAYER_NAMES

    assert not any(name in viewer.layers for name in LAYER_NAMES.values())


def test_partly_predicted_layer_gives_no_nan_maps(viewer_with_pair, qtbot, errors, small_sim):
    """A prediction still filling its slices (NaN placeholders, the predicted slices in
    its metadata): loss maps on a predicted slice, a message and the weights only on a
    placeholder slice, never NaN maps."""
    from napari_dfct.widgets import _layers
    from napari_dfct.widgets.weights import LAYER_NAMES

    viewer = viewer_with_pair
    partial = np.full(small_sim.input.shape, np.nan, np.float32)
    partial[1] = small_sim.target[1]
    viewer.add_image(
        partial,
        name="input [prediction: m]",
        scale=SCALE,
        translate=TRANSLATE,
        metadata={_layers.OWNER_KEY: "prediction", _layers.PREDICTED_KEY: [1]},
    )
    widget = _widget(viewer, qtbot)
    for name in LAYER_NAMES.values():  # no maps of the pair before
        if name in viewer.layers:
            viewer.layers.remove(name)
    viewer.dims.set_point(0, TRANSLATE[0] + 2 * SCALE[0])
    _set(widget, qtbot, target=viewer.layers["input [prediction: m]"], size="full")
    assert "Slice 2 of 'input [prediction: m]' is not predicted" in widget.info.text()
    assert _layer(viewer, "spatial").data.min() == pytest.approx(1.0)
    assert LAYER_NAMES["loss"] not in viewer.layers
    viewer.dims.set_point(0, TRANSLATE[0] + 1 * SCALE[0])
    widget.update_maps()
    assert "not predicted" not in widget.info.text()
    for key in ("loss", "amplified"):
        assert np.isfinite(_layer(viewer, key).data).all()
    assert errors == []


def test_directional_weight_and_its_angular_profile(viewer_with_pair, qtbot, errors, small_sim):
    """A directional profile adds the A_D layer of the shown slice (DC centred) and plots
    its angular part; both follow the estimator in napari_dfct.directional."""
    from napari_dfct import directional as D
    from napari_dfct import weights as W
    from napari_dfct.data import window_from_percentiles
    from napari_dfct.widgets.weights import LAYER_NAMES

    viewer = viewer_with_pair
    widget = _widget(viewer, qtbot)
    _set(widget, qtbot, spatial="none", frequency="linear", size="full")
    assert LAYER_NAMES["directional"] not in viewer.layers
    _set(widget, qtbot, frequency="none", directional="nonlinear", mode="spectral")
    assert errors == []
    a_d = _layer(viewer, "directional").data
    z = int(viewer.dims.current_step[0])
    win = window_from_percentiles(small_sim.input, small_sim.target)
    x, y = win.normalize(small_sim.input[z]), win.normalize(small_sim.target[z])
    want = W.fftshift(D.directional_weight_np(x, y, "nonlinear"))
    np.testing.assert_allclose(a_d, want, atol=1e-6)
    h, w = a_d.shape
    assert a_d[h // 2, w // 2] == pytest.approx(1.0) and a_d.max() <= 2.0
    line = widget.plot.line("G", axes=2)
    angles, g = D.angular_profile(x, y)
    np.testing.assert_allclose(line.get_xdata(), angles)
    np.testing.assert_allclose(line.get_ydata(), g, atol=1e-12)
    assert "l2+d-nonlinear" in widget.info.text()
    # back to no D: the layer goes, the profile empties
    _set(widget, qtbot, directional="none")
    assert LAYER_NAMES["directional"] not in viewer.layers
    assert len(widget.plot.line("G", axes=2).get_xdata()) == 0


def test_directional_in_paper_mode_notifies(viewer_with_pair, qtbot, errors):
    viewer = viewer_with_pair
    widget = _widget(viewer, qtbot)
    _set(widget, qtbot, frequency="none", directional="linear", mode="paper")
    assert len(errors) == 1 and "A(DC) = 1" in errors[0] and "\n" not in errors[0]


def _curves(widget, axes):
    """The plotted profile curves of one panel: ``{label: (x, y)}`` of the lines with data."""
    out = {}
    for line in widget.plot.axes[axes].get_lines():
        x = np.asarray(line.get_xdata(), float)
        if x.size:
            out[line.get_label()] = (x, np.asarray(line.get_ydata(), float))
    return out


def test_invalid_combination_clears_maps_and_says_so(viewer_with_pair, qtbot, errors):
    """A refused configuration after a valid one: the maps, the profiles and the info go,
    the reason is in the widget (one notification however often it is recomputed), and
    a valid configuration brings everything back."""
    from napari_dfct.widgets.weights import LAYER_NAMES

    viewer = viewer_with_pair
    widget = _widget(viewer, qtbot)
    _set(widget, qtbot, spatial="linear", frequency="linear", size="full")
    assert LAYER_NAMES["amplified"] in viewer.layers and widget.status.isHidden()
    assert _curves(widget, 0) and widget.info.text()

    _set(widget, qtbot, frequency="none", directional="linear", mode="paper")
    widget.update_maps()  # recomputed (the slider, the timer): still one notification
    assert not any(name in viewer.layers for name in LAYER_NAMES.values())
    assert not widget.status.isHidden()
    assert "A(DC) = 1" in widget.status.text() and widget.status.text() == errors[-1]
    assert widget.info.text() == ""
    assert _curves(widget, 0) == {} and _curves(widget, 1) == {}
    assert widget.plot.figure.legends == []
    assert len(errors) == 1

    _set(widget, qtbot, mode="spectral")
    assert widget.status.isHidden() and widget.status.text() == ""
    for key in ("spatial", "frequency", "directional", "loss", "amplified"):
        assert np.isfinite(_layer(viewer, key).data).all()
    assert _curves(widget, 0)
    assert len(errors) == 1


def test_all_nan_input_says_so_and_draws_no_nan_maps(viewer_with_pair, qtbot, errors, small_sim):
    """An input without a finite value: a message in the widget, the weights only (finite),
    no loss maps and no ratio; input == target: the ratio is said to be undefined."""
    from napari_dfct.widgets.weights import LAYER_NAMES

    viewer = viewer_with_pair
    widget = _widget(viewer, qtbot)
    _set(widget, qtbot, size="full")
    assert LAYER_NAMES["loss"] in viewer.layers
    nan = viewer.add_image(
        np.full(small_sim.input.shape, np.nan, np.float32),
        name="all NaN",
        scale=SCALE,
        translate=TRANSLATE,
    )
    _set(widget, qtbot, input=nan)
    assert "'all NaN' has no finite values" in widget.status.text()
    assert not widget.status.isHidden()
    assert LAYER_NAMES["loss"] not in viewer.layers
    assert LAYER_NAMES["amplified"] not in viewer.layers
    for key in ("spatial", "frequency"):
        assert np.isfinite(_layer(viewer, key).data).all()
    assert "nan" not in widget.info.text().lower() and "mean plain" not in widget.info.text()

    # a few NaN pixels are counted; an identical pair has no defined ratio
    holes = small_sim.input.copy()
    holes[:, :2, :3] = np.nan
    viewer.add_image(holes, name="holes", scale=SCALE, translate=TRANSLATE)
    _set(widget, qtbot, input=viewer.layers["holes"])
    assert "has 6 NaN or infinite values of 4096" in widget.status.text()
    same = viewer.add_image(small_sim.target.copy(), name="same", scale=SCALE, translate=TRANSLATE)
    _set(widget, qtbot, input=same)
    assert widget.status.isHidden()
    assert "undefined" in widget.info.text() and "nan" not in widget.info.text().lower()
    assert np.isfinite(_layer(viewer, "amplified").data).all()
    assert errors == []


def test_every_profile_is_drawn(viewer_with_pair, qtbot, errors):
    """One curve per profile in each panel (sqrt included), each the closed form of
    napari_dfct.weights at its radii when nothing is normalised; the chosen one bold."""
    from napari_dfct import weights as W

    widget = _widget(viewer_with_pair, qtbot)
    _set(widget, qtbot, spatial="nonlinear", frequency="sqrt", normalize=False, size="full")
    spatial, frequency = _curves(widget, 0), _curves(widget, 1)
    assert len(spatial) == len(W.PROFILES)
    assert len(frequency) == len(W.FREQUENCY_PROFILES)
    assert "sqrt (0.1)" in frequency
    r, y = frequency["sqrt (0.1)"]
    np.testing.assert_allclose(y, 1.0 + np.sqrt(r), atol=1e-6)  # 1 + sqrt(rho)
    assert r[0] == 0.0 and r[-1] == pytest.approx(1.0)
    r, y = spatial["linear"]
    np.testing.assert_allclose(y, 2.0 - r, atol=1e-6)
    widths = {ln.get_label(): ln.get_linewidth() for ln in widget.plot.axes[1].get_lines()}
    assert widths["sqrt (0.1)"] == max(widths.values()) > widths["linear"]
    assert errors == []


@pytest.mark.parametrize("size", ["full", "patch"])
def test_normalised_plot_shows_the_weights_used(make_napari_viewer, qtbot, errors, size):
    """With "normalise" the chosen curves span exactly the range of the maps the widget
    shows (A_S over the full slice, A_F over the maps' shape), not [1, 2]."""
    rng = np.random.default_rng(0)
    viewer = make_napari_viewer()
    shape = (2, 150, 140)  # larger than the patch: the patch's A_F has its own shape
    viewer.add_image(rng.random(shape, dtype=np.float32), name="input")
    viewer.add_image(rng.random(shape, dtype=np.float32), name="target")
    widget = _widget(viewer, qtbot)
    _set(widget, qtbot, spatial="linear", frequency="nonlinear", normalize=True, size=size)
    for axes, key, label in ((1, "frequency", "non-linear"), (0, "spatial", "linear")):
        _, y = _curves(widget, axes)[label]
        shown = _layer(viewer, key).data
        if key == "spatial" and size == "patch":
            break  # a patch shows a crop of A_S; its curve spans the whole slice
        assert y.min() == pytest.approx(float(shown.min()), rel=1e-5)
        assert y.max() == pytest.approx(float(shown.max()), rel=1e-5)
        assert y.max() < 1.9 and y.min() < 1.0  # normalised, not the raw [1, 2]
        lo, hi = widget.plot.axes[axes].get_ylim()
        assert lo < y.min() and y.max() < hi
    assert errors == []


def test_legend_hides_no_curve(viewer_with_pair, qtbot, errors):
    widget = _widget(viewer_with_pair, qtbot)
    _set(widget, qtbot, frequency="sqrt", size="full")
    canvas = widget.plot.canvas
    canvas.draw()
    renderer = canvas.get_renderer()
    (legend,) = widget.plot.figure.legends
    box = legend.get_window_extent(renderer)
    labels = [t.get_text() for t in legend.get_texts()]
    assert "sqrt (0.1)" in labels and "linear" in labels
    for ax in widget.plot.axes:
        assert not box.overlaps(ax.get_window_extent(renderer))
        assert ax.get_legend() is None
    fig = widget.plot.figure.bbox
    assert box.x0 >= fig.x0 and box.x1 <= fig.x1 and box.y0 >= fig.y0  # not cut off


def test_layers_go_below_the_rois_and_keep_the_selection(viewer_with_pair, qtbot, errors):
    from napari_dfct.widgets.weights import LAYER_NAMES

    viewer = viewer_with_pair
    shapes = viewer.add_shapes([[[2, 2], [2, 9], [9, 9], [9, 2]]], name="ROIs")
    points = viewer.add_points([[5, 5]], name="line ends")
    chosen = viewer.layers["target (4 rotations)"]
    viewer.layers.selection = [chosen]
    widget = _widget(viewer, qtbot)
    _set(widget, qtbot, size="full", directional="linear", frequency="none", mode="spectral")
    names = [layer.name for layer in viewer.layers]
    assert names[-2:] == ["ROIs", "line ends"]  # ROIs still on top, in their order
    for name in LAYER_NAMES.values():
        assert names.index(name) < viewer.layers.index(shapes)
    assert names.index(LAYER_NAMES["spatial"]) > names.index("target (4 rotations)")
    assert set(viewer.layers.selection) == {chosen}
    assert viewer.layers.selection.active is chosen

    # later updates and a map removed and drawn again keep both
    viewer.layers.selection = [points]
    _set(widget, qtbot, directional="none", frequency="linear")
    _set(widget, qtbot, directional="linear", frequency="none")
    assert viewer.layers.index(LAYER_NAMES["directional"]) < viewer.layers.index(shapes)
    assert set(viewer.layers.selection) == {points}
    assert errors == []


def test_no_image_left_removes_the_maps(viewer_with_pair, qtbot, errors):
    from napari_dfct.widgets.weights import LAYER_NAMES

    viewer = viewer_with_pair
    widget = _widget(viewer, qtbot)
    _set(widget, qtbot, size="full")
    assert LAYER_NAMES["loss"] in viewer.layers
    for name in ("input (1 rotation)", "target (4 rotations)"):
        viewer.layers.remove(name)
    widget.update_maps()
    assert not any(name in viewer.layers for name in LAYER_NAMES.values())
    assert "Add an input" in widget.info.text() and _curves(widget, 0) == {}
    assert errors == []
