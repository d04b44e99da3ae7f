"""Capacity as an option: ``base_channels`` (``--base-channels``) overrides the preset's
first-level width, is saved in ``config.json`` and counted by ``describe_model``."""

from __future__ import annotations

import pytest

from napari_dfct.checkpoint import describe_model, load_config, load_model
from napari_dfct.model import build_model, count_parameters
from napari_dfct.train import TrainConfig, recipe_config, run_fit

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_base_channels_zero_keeps_the_preset_and_n_sets_the_width():
    assert TrainConfig(preset="tiny").model_args() == {}
    cfg = TrainConfig(preset="tiny", base_channels=6)
    assert cfg.model_args() == {"base_channels": 6}
    # level i of the U-Net has base * 2**i channels: the first conv maps 1 -> 6
    assert build_model("tiny", **cfg.model_args()).inc[0].out_channels == 6


@pytest.mark.parametrize("bad", [-1, 100_000])
def test_base_channels_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="base_channels"):
        TrainConfig(base_channels=bad).validate()


def test_base_channels_is_saved_loaded_and_described(tmp_path, pair):
    x, y = pair
    cfg = recipe_config(
        "stable",
        preset="tiny",
        base_channels=6,
        epochs=1,
        batch_size=2,
        patch=16,
        device="cpu",
        bn_recalibrate=1,
    )
    run_fit(x, y, cfg, out_dir=tmp_path / "m", preview=False)
    saved = load_config(tmp_path / "m")
    assert saved["train"]["base_channels"] == 6 and saved["model"]["base_channels"] == 6
    n = count_parameters(load_model(tmp_path / "m").model)
    assert n == count_parameters(build_model("tiny", base_channels=6))
    assert n != count_parameters(build_model("tiny"))
    text = describe_model(tmp_path / "m")
    assert "base_channels 6" in text and f"{n:,} parameters" in text


def test_cli_has_the_flag():
    from napari_dfct.cli import build_parser

    args = build_parser().parse_args(
        ["train", "--input", "a.tif", "--target", "b.tif", "--out", "m", "--base-channels", "32"]
    )
    assert args.base_channels == 32
