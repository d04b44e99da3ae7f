"""The Train widget's training options are generated from the TrainConfig field metadata,
as the CLI's flags are, and its loss follows the CLI's rule (build_loss_config)."""

from __future__ import annotations

import dataclasses

import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui


@pytest.fixture
def widget(make_napari_viewer):
    from napari_dfct.widgets.train import TrainWidget

    viewer = make_napari_viewer()
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w, name="Train")
    return w


def _other(f, widget_field, *avoid):
    """A valid value of option ``f`` other than the form's and than ``avoid``."""
    value = _shown(f, widget_field)
    avoid = (value, *avoid)
    meta = f.metadata
    choices = meta.get("choices") or getattr(widget_field, "choices", None)
    if choices:  # an option's choices, or a number offered as a choice of words
        return next(c for c in choices if not any(_same(c, a) for a in avoid))
    if type(f.default) is bool:
        return not value
    if type(f.default) is int:
        step = getattr(widget_field, "step", 1) or 1
        for k in range(1, 4):
            for v in (value + k * step, value - k * step):
                if widget_field.min <= v <= widget_field.max and v not in avoid:
                    return v
    # floats: inside every bound of the metadata (a zero value has no half: the default)
    for v in (round(value * 0.5, 4), round(value * 0.25, 4), f.default, 0.05):
        if not any(_same(v, a) for a in avoid):
            return v
    raise AssertionError(f"no other value for {f.name}")


def _put(widget_field, value) -> None:
    from magicgui.widgets import LineEdit

    widget_field.value = f"{value:g}" if isinstance(widget_field, LineEdit) else value


def _same(a, b) -> bool:
    return a == pytest.approx(b) if isinstance(b, float) else a == b


def _shown(f, widget_field):
    """The value the form field holds, as the TrainConfig type."""
    value = widget_field.value
    return type(f.default)(value) if "choices" not in f.metadata else value


def test_every_option_has_a_form_field_with_its_help_as_tooltip(widget):
    from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, LineEdit, SpinBox

    from napari_dfct.train.config import option_fields

    fields = option_fields()
    assert {"base_channels", "decay_scope", "bn_recalibrate", "select"} <= {f.name for f in fields}
    for f in fields:
        w = getattr(widget.fields, f.name, None)
        assert w is not None, f"no form field for TrainConfig.{f.name}"
        # the option's help, and for a few options what it means in the viewer
        assert w.tooltip.lower().startswith(f.metadata["help"].lower())
        if "choices" in f.metadata:
            assert isinstance(w, ComboBox) and tuple(w.choices) == f.metadata["choices"]
        elif f.name == "dims":  # its values, in words: 2-D / 2.5-D (slices), 3-D (volume)
            bounds = (f.metadata["min"], f.metadata["max"])
            assert isinstance(w, ComboBox) and tuple(w.choices) == bounds
        elif f.name == "lr":
            assert isinstance(w, LineEdit)  # decades: typed as text
        elif type(f.default) is int:
            assert isinstance(w, SpinBox)
            assert w.min >= f.metadata.get("min", w.min)
            assert w.max <= f.metadata.get("max", w.max)
        elif type(f.default) is float:
            assert isinstance(w, FloatSpinBox)
        else:
            assert isinstance(w, (CheckBox, LineEdit))
    # the special fields keep their widgets
    assert isinstance(widget.fields.weight_decay, FloatSpinBox)
    assert isinstance(widget.fields.val_fraction, FloatSpinBox)


def test_a_recipe_change_refreshes_every_option(widget):
    from napari_dfct.train import RECIPES, recipe_config
    from napari_dfct.train.config import option_fields
    from napari_dfct.widgets.train import _default_preset

    f = widget.fields
    assert f.recipe.value == "stable" and set(RECIPES) == {"stable", "paper", "converge", "quick"}
    for name in ("paper", "converge", "stable"):
        for opt in option_fields():  # every option edited away from the recipe's value
            w = getattr(f, opt.name)
            _put(w, _other(opt, w, getattr(recipe_config(name), opt.name), _default_preset()))
            assert not _same(_shown(opt, w), getattr(recipe_config(name), opt.name))
        f.recipe.value = name
        # the model preset, which no recipe names, is this machine's default
        expected = recipe_config(name, preset=_default_preset())
        for opt in option_fields():
            shown, want = _shown(opt, getattr(f, opt.name)), getattr(expected, opt.name)
            assert _same(shown, want), (name, opt.name, shown, want)


def test_the_form_gives_every_option_to_the_train_config(widget):
    from napari_dfct.train.config import option_fields

    f = widget.fields
    set_to = {}
    for opt in option_fields():
        if opt.name == "dims":  # a 3-D model takes no context: below
            continue
        w = getattr(f, opt.name)
        _put(w, _other(opt, w, opt.default))
        set_to[opt.name] = _shown(opt, w)
        assert not _same(set_to[opt.name], opt.default), opt.name
    cfg = widget.train_config()
    for name, value in set_to.items():
        assert _same(getattr(cfg, name), value), name
    f.lr.value = "fast"
    with pytest.raises(ValueError, match="learning rate 'fast' is not a number"):
        widget.train_config()
    f.lr.value = "0.001"
    f.dims.value = 3  # the context field is hidden and does not count
    cfg = widget.train_config()
    assert (cfg.dims, cfg.context, cfg.patch_depth) == (3, 0, set_to["patch_depth"])


def test_a_new_option_appears_in_the_form_without_edits(make_napari_viewer, monkeypatch):
    from napari_dfct.train import config as config_mod
    from napari_dfct.widgets.train import TrainWidget

    knobbed = dataclasses.make_dataclass(
        "Knobbed",
        [
            ("extra_knob", int, config_mod._option(7, "a new knob", min=0)),
            ("extra_mode", str, config_mod._option("a", "a new choice", choices=("a", "b"))),
        ],
        bases=(config_mod.TrainConfig,),
    )
    monkeypatch.setattr(config_mod, "TrainConfig", knobbed)
    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    f = widget.fields
    assert (f.extra_knob.value, f.extra_mode.value) == (7, "a")
    assert f.extra_knob.tooltip == "A new knob"
    f.extra_knob.value, f.extra_mode.value = 3, "b"
    cfg = widget.train_config()
    assert (cfg.extra_knob, cfg.extra_mode) == (3, "b")
    f.recipe.value = "paper"  # the recipe refresh sets it back
    assert (f.extra_knob.value, f.extra_mode.value) == (7, "a")


# (widget loss form, the same as dfct train options)
LOSS_CASES = [
    (dict(spatial="nonlinear", mode="paper"), ["--spatial", "nonlinear", "--mode", "paper"]),
    (
        dict(loss="l1", frequency="linear", mode="spectral", normalize=True),
        ["--loss", "l1", "--frequency", "linear", "--mode", "spectral", "--normalize-weights"],
    ),
    (
        dict(spatial="linear", directional="nonlinear", order="fs", mode="spectral"),
        [
            "--spatial",
            "linear",
            "--directional",
            "nonlinear",
            "--order",
            "fs",
            "--mode",
            "spectral",
        ],
    ),
    (
        dict(directional="nonlinear", mode="paper"),
        ["--directional", "nonlinear", "--mode", "paper"],
    ),
]


def test_the_loss_widgets_build_the_cli_loss(widget, monkeypatch):
    from napari_dfct.cli import CLIError, build_parser
    from napari_dfct.commands import train as train_cmd
    from napari_dfct.widgets import weights as weights_mod
    from napari_dfct.widgets.weights import WeightsWidget

    shown = []  # the weights widget's own display of a refused loss
    monkeypatch.setattr(weights_mod, "show_error", shown.append)
    weights = WeightsWidget(widget._viewer)
    unset = dict(
        loss="l2",
        spatial="none",
        frequency="none",
        directional="none",
        order="sf",
        mode="paper",
        normalize=False,
    )
    for form, options in LOSS_CASES:
        args = build_parser().parse_args(["train", "--out", "unused", *options])
        try:
            expected, refusal = train_cmd._loss_config(args), None
        except CLIError as exc:
            expected, refusal = None, str(exc)
        for w, fields in ((widget, widget.fields), (weights, weights.form)):
            for key, value in {**unset, **form}.items():
                getattr(fields, key).value = value
            if refusal is None:
                assert w.loss_config() == expected, (form, type(w).__name__)
            else:
                with pytest.raises(ValueError) as err:
                    w.loss_config()
                assert str(err.value) == refusal and "A(DC) = 1" in refusal


def test_the_quick_cpu_recipe_fills_small_fast_settings(widget):
    """Quick (CPU), next to the paper's: a small network, 64x64 patches, batch 8, 4
    patches per slice, at most 20 epochs with patience 5, whatever the machine."""
    f = widget.fields
    f.recipe.value = "paper"
    assert (f.preset.value, f.patch.value, f.batch_size.value) != ("small", 64, 8)
    f.recipe.value = "quick"
    shown = (f.preset.value, f.patch.value, f.batch_size.value, f.patches_per_slice.value)
    assert shown == ("small", 64, 8, 4)
    assert (f.epochs.value, f.patience.value) == (20, 5)
    assert f.recipe_note.value.startswith("Quick (CPU)")
    cfg = widget.train_config()
    assert (cfg.recipe, cfg.preset, cfg.patch, cfg.batch_size, cfg.epochs) == (
        "quick",
        "small",
        64,
        8,
        20,
    )
    assert cfg.bn_recalibrate == 8 and cfg.weight_decay == 0.1  # stable's protocol
