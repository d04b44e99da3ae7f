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
