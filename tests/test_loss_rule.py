"""One home per rule: the loss configuration of names and options, and the training options.

``dfct train``, ``dfct grid`` and the widgets build a loss configuration with
:func:`napari_dfct.losses.build_loss_config`; the choices and bounds of the training
options come from the :class:`~napari_dfct.train.TrainConfig` field metadata in the CLI,
in ``validate`` and in the Train widget (tests/test_widget_train_form.py for the widget).
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import pytest

from napari_dfct.cli import CLIError, build_parser, main
from napari_dfct.commands import grid as grid_cmd
from napari_dfct.commands import train as train_cmd
from napari_dfct.losses import LossConfig, build_loss_config
from napari_dfct.train import TrainConfig, recipe_config
from napari_dfct.train import config as config_mod
from napari_dfct.train.config import option_fields

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _train_loss(*options):
    args = build_parser().parse_args(["train", "--out", "unused", *options])
    return train_cmd._loss_config(args)


def _grid_losses(*options):
    args = build_parser().parse_args(["grid", "unused", *options])
    return grid_cmd.loss_configs(args)[0]


# (dfct train options, dfct grid options, the name both give, or None: both refuse)
CASES = [
    ([], ["--losses", "l2", "--schemes", "none"], "l2"),
    (["--loss", "l1+s+f-nonlinear"], ["--configs", "l1+s+f-nonlinear"], "l1+s+f-nonlinear"),
    (
        ["--spatial", "nonlinear", "--frequency", "nonlinear", "--order", "fs"],
        ["--losses", "l2", "--schemes", "F+S", "--profiles", "nonlinear"],
        "l2+f+s-nonlinear",
    ),
    (
        ["--loss", "l2+f-linear", "--mode", "spectral", "--normalize-weights"],
        ["--configs", "l2+f-linear", "--mode", "spectral", "--normalize-weights"],
        "l2+f-linear-spectral-norm",
    ),
    (
        ["--frequency", "linear", "--mode", "spectral"],
        ["--losses", "l2", "--schemes", "F", "--profiles", "linear", "--mode", "spectral"],
        "l2+f-linear-spectral",
    ),
    # a name says its own mode: a -spectral name stays spectral with --mode paper
    (
        ["--loss", "l2+s+f-nonlinear-spectral", "--mode", "paper"],
        ["--configs", "l2+s+f-nonlinear-spectral", "--mode", "paper"],
        "l2+s+f-nonlinear-spectral",
    ),
    # D is spectral without --mode, and with --mode spectral ...
    (["--loss", "l2+d-nonlinear"], ["--configs", "l2+d-nonlinear"], "l2+d-nonlinear"),
    (
        ["--directional", "nonlinear", "--spatial", "nonlinear", "--mode", "spectral"],
        ["--losses", "l2", "--schemes", "S+D", "--profiles", "nonlinear", "--mode", "spectral"],
        "l2+s+d-nonlinear",
    ),
    (
        ["--loss", "l1+d+s-linear", "--normalize-weights"],
        ["--configs", "l1+d+s-linear", "--normalize-weights"],
        "l1+d+s-linear-norm",
    ),
    # ... and refused with --mode paper, by train and grid alike
    (["--loss", "l2+d-nonlinear", "--mode", "paper"], ["--configs", "l2+d-nonlinear"], None),
    (
        ["--directional", "nonlinear", "--mode", "paper"],
        ["--losses", "l2", "--schemes", "D", "--profiles", "nonlinear"],
        None,
    ),
]


@pytest.mark.parametrize("train_opts, grid_opts, name", CASES)
def test_train_and_grid_build_the_same_loss(train_opts, grid_opts, name):
    if name is None:  # the same refusal, in one line, from both commands
        grid_opts = [*grid_opts, "--mode", "paper"]
        with pytest.raises(CLIError) as t_err:
            _train_loss(*train_opts)
        with pytest.raises(CLIError) as g_err:
            _grid_losses(*grid_opts)
        for err in (t_err, g_err):
            assert "\n" not in str(err.value) and "A(DC) = 1" in str(err.value)
        return
    from_train = _train_loss(*train_opts)
    (from_grid,) = _grid_losses(*grid_opts)
    assert from_train == from_grid
    assert from_train.name == name
    assert LossConfig.from_name(name) == from_train  # the name round-trips


def test_the_rule():
    # plain loss plus options; mode None: paper, spectral with D
    assert build_loss_config("l2", frequency="linear").mode == "paper"
    assert build_loss_config("l2", directional="linear").mode == "spectral"
    # options switch a name's settings on, never off
    assert build_loss_config("l2+s-linear-norm", normalize=False).normalize
    assert build_loss_config("l2@1.47").scale == pytest.approx(1.47)
    assert build_loss_config("l2@1.47", scale=2.0).scale == 2.0
    # a full name does not silently drop profile options
    with pytest.raises(ValueError, match="full loss name.*spatial"):
        build_loss_config("l2+f-linear", spatial="nonlinear")
    with pytest.raises(ValueError, match="unknown loss configuration"):
        build_loss_config("l2+x-linear")
    with pytest.raises(ValueError, match="unknown mode"):
        build_loss_config("l2", mode="other")
    # the grid product follows the rule too
    from napari_dfct.experiment import make_configs

    assert [c.mode for c in make_configs(["l2"], ["none", "D"], ["linear"])] == [
        "paper",
        "spectral",
    ]
    with pytest.raises(ValueError, match=r"l2\+d-linear in mode 'paper'"):
        make_configs(["l2"], ["none", "D"], ["linear"], mode="paper")


def test_grid_refuses_d_in_paper_mode_before_any_run(tmp_path, capsys):
    out = tmp_path / "grid"
    base = ["grid", str(out), "--simulate", "--sim-size", "32", "--sim-slices", "2"]
    base += ["--seeds", "0", "--preset", "tiny", "--epochs", "1"]
    for configs in (["--configs", "l2,l2+d-nonlinear"], ["--schemes", "none,S+D"]):
        capsys.readouterr()
        assert main([*base, *configs, "--mode", "paper"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert err[0].startswith("dfct grid: error: l") and "+d" in err[0]
        assert "in mode 'paper'" in err[0] and "A(DC) = 1" in err[0]
        assert not out.exists()  # no data simulated, no run folder


def _study_grid_commands() -> list[list[str]]:
    text = (DOCS / "study.md").read_text(encoding="utf-8")
    block = text[text.index("**Reproduce**") :]
    block = block[block.index("```bash") + len("```bash") : block.index("```\n", 10)]
    block = block.replace("\\\n", "")  # the shell's line continuations
    common = re.search(r'^COMMON="([^"]*)"', block, re.M).group(1)
    out = []
    for line in block.splitlines():
        if line.startswith("dfct grid "):
            out.append(shlex.split(line.replace("$COMMON", common))[1:])
    return out


def test_study_reproduce_commands_still_parse_and_build():
    commands = _study_grid_commands()
    assert len(commands) == 3
    names = set()
    for argv in commands:
        args = build_parser().parse_args(argv)
        configs, seeds = grid_cmd.loss_configs(args)
        assert seeds
        names.update(c.name for c in configs)
        for c in configs:
            if c.directional != "none":
                assert c.mode == "spectral", c.name
    assert {"l2+d-nonlinear", "l2+s+d-nonlinear", "l2+d-nonlinear-oracle"} <= names
    assert "l2+f-nonlinear-spectral" in names and "l2+f-nonlinear" in names


# ------------------------------------------------------------------- training options
def test_choices_have_one_home():
    from napari_dfct.model import PRESETS
    from napari_dfct.train import DECAY_SCOPES, SELECT_CHOICES

    meta = {f.name: f.metadata for f in option_fields()}
    assert meta["select"]["choices"] == SELECT_CHOICES
    assert meta["decay_scope"]["choices"] == DECAY_SCOPES
    assert meta["preset"]["choices"] == tuple(PRESETS)
    # the CLI offers exactly the metadata's choices
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["train"]
    flags = {a.dest: a for a in sub._actions}
    for f in option_fields():
        assert f.name in flags, f.name
        assert tuple(flags[f.name].choices or ()) == f.metadata.get("choices", ())
        assert f.metadata["help"] in flags[f.name].help


def _outside(f):
    """A value just outside the field's choices or bounds."""
    meta = f.metadata
    if "choices" in meta:
        return "not-a-choice"
    if "min" in meta:
        return meta["min"] - 1
    if "above" in meta:
        return meta["above"]
    return None


@pytest.mark.parametrize("f", option_fields(), ids=lambda f: f.name)
def test_validate_checks_every_option_from_its_metadata(f):
    meta = f.metadata
    recipe_config().validate()  # every default is valid
    bad = _outside(f)
    if bad is not None:
        with pytest.raises(ValueError, match=rf"^{f.name} must be"):
            recipe_config(**{f.name: bad}).validate()
    for upper in ("max", "below"):
        if upper in meta:
            with pytest.raises(ValueError, match=rf"^{f.name} must be"):
                recipe_config(**{f.name: meta[upper] + 1}).validate()
    for k in ("min", "max"):  # inclusive bounds are valid
        if k in meta:
            recipe_config(**{f.name: meta[k]}).validate()
    if type(f.default) is float:
        with pytest.raises(ValueError, match="must be"):
            recipe_config(**{f.name: float("nan")}).validate()


def test_every_option_is_bounded_or_has_choices():
    for f in option_fields():
        if type(f.default) in (int, float):
            assert {"min", "above"} & set(f.metadata), f.name
        elif type(f.default) is str:
            assert "choices" in f.metadata, f.name


def test_a_new_option_reaches_the_cli_without_edits(monkeypatch, capsys):
    knobbed = dataclasses.make_dataclass(
        "Knobbed",
        [("extra_knob", int, config_mod._option(7, "a new knob of the training", min=0))],
        bases=(TrainConfig,),
    )
    monkeypatch.setattr(config_mod, "TrainConfig", knobbed)
    args = build_parser().parse_args(["train", "--out", "unused", "--extra-knob", "3"])
    from napari_dfct.commands._training import train_config_from_args

    assert train_config_from_args(args).extra_knob == 3
    args = build_parser().parse_args(["train", "--out", "unused", "--extra-knob", "-1"])
    with pytest.raises(CLIError, match="extra_knob must be >= 0"):
        train_config_from_args(args)


def test_train_config_coerces_the_loss_like_coerce_config():
    from napari_dfct.loss_config import coerce_config

    for loss in ("l2+s-linear", {"name": "l1"}, LossConfig(loss="l1", spatial="linear")):
        assert TrainConfig(loss=loss).loss == coerce_config(loss)
    with pytest.raises(ValueError, match="expected a LossConfig"):
        TrainConfig(loss=3)


def test_widget_choices_are_the_core_ones():
    from napari_dfct import weights
    from napari_dfct.loss_config import LOSSES, MODES, ORDERS
    from napari_dfct.widgets import _choices as c

    assert [v for _, v in c.LOSS_CHOICES] == list(LOSSES)
    assert [v for _, v in c.MODE_CHOICES] == list(MODES)
    assert [v for _, v in c.ORDER_CHOICES] == list(ORDERS)
    assert [v for _, v in c.PROFILE_CHOICES] == list(weights.PROFILES)
    assert [v for _, v in c.FREQUENCY_CHOICES] == list(weights.FREQUENCY_PROFILES)
