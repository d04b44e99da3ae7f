"""The intensity window is stored with the model and used again at prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_dfct.checkpoint import load_model
from napari_dfct.data import IntensityWindow
from napari_dfct.infer import predict
from napari_dfct.train import TrainConfig, run_fit


@pytest.mark.parametrize("window", [None, {"low": -0.5, "high": 0.75}])
def test_the_window_round_trips_through_a_saved_model(tmp_path, window):
    rng = np.random.default_rng(0)
    y = rng.standard_normal((3, 32, 32)).astype(np.float32)
    x = (y + 0.3 * rng.standard_normal(y.shape)).astype(np.float32)
    cfg = TrainConfig(
        loss="l2",
        preset="tiny",
        epochs=1,
        batch_size=2,
        patch=16,
        device="cpu",
        window=window,
        bn_recalibrate=1,
    )
    result = run_fit(x, y, cfg, tmp_path / "m", preview=False)
    used = result.window
    if window is not None:
        assert used == IntensityWindow(-0.5, 0.75)
    loaded = load_model(tmp_path / "m")
    assert loaded.window == used  # stored in config.json, read back exactly
    assert loaded.config["window"] == used.to_dict()
    # prediction applies the stored window: normalise, network, back to input units
    pred = predict(loaded, x, device="cpu")
    with torch.no_grad():
        net = loaded.model.eval()
        manual = net(torch.from_numpy(used.normalize(x))[:, None])[:, 0].numpy()
    np.testing.assert_allclose(pred, used.denormalize(manual), rtol=1e-5, atol=1e-6)
    # another window gives another prediction: the stored one is what was used
    other = predict(loaded, x, device="cpu", window=IntensityWindow(-5.0, 5.0))
    assert not np.allclose(other, pred)
