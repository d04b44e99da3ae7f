"""The default intensity window: one rule for fit, the CLI and the Train widget."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_dfct.data import window_from_percentiles
from napari_dfct.io.dataset import load_scans
from napari_dfct.train import (
    TrainConfig,
    default_window,
    intensity_histogram,
    run_fit,
    training_split,
)


def _pair(rng, n, h, w):
    y = rng.standard_normal((n, h, w)).astype(np.float32)
    return (y + 0.3 * rng.standard_normal(y.shape)).astype(np.float32), y


@pytest.mark.parametrize("seed, val_fraction", [(0, 0.2), (3, 0.5)])
def test_default_window_is_what_fit_uses_on_a_volume(tmp_path, seed, val_fraction):
    x, y = _pair(np.random.default_rng(seed), 5, 32, 32)
    x[0] += 7.0  # slices differ, so the split matters
    expected = default_window(x, y, val_fraction=val_fraction, seed=seed)
    train_idx, _ = training_split(x, val_fraction, seed)
    assert expected == window_from_percentiles(x[train_idx], y[train_idx])
    cfg = TrainConfig(
        preset="tiny", epochs=1, batch_size=2, patch=16, seed=seed, val_fraction=val_fraction
    )
    result = run_fit(x, y, cfg, tmp_path / "m", preview=False)
    assert result.window == expected


def test_default_window_is_what_fit_uses_on_scans(tmp_path):
    rng = np.random.default_rng(1)
    for k, (n, h, w) in enumerate([(3, 32, 40), (2, 36, 32), (1, 32, 32)]):
        x, y = _pair(rng, n, h, w)
        x += 2.0 * k
        (tmp_path / f"s{k}").mkdir()
        tifffile.imwrite(tmp_path / f"s{k}" / "input.tif", x, photometric="minisblack")
        tifffile.imwrite(tmp_path / f"s{k}" / "target.tif", y, photometric="minisblack")
    (tmp_path / "pairs.csv").write_text(
        "input,target,slices\n"
        + "".join(f"s{k}/input.tif,s{k}/target.tif,all\n" for k in range(3))
    )
    scans = load_scans(tmp_path / "pairs.csv")
    expected = default_window(scans, val_fraction=0.34, seed=2)
    cfg = TrainConfig(preset="tiny", epochs=1, batch_size=2, patch=16, seed=2, val_fraction=0.34)
    result = run_fit(scans, None, cfg, tmp_path / "m", preview=False)
    assert result.window == expected


def test_intensity_histogram_counts_the_finite_values():
    a = np.array([0.0, 1.0, 1.0, np.nan, 2.0], np.float32)
    counts, edges = intensity_histogram(a, bins=2, value_range=(0.0, 2.0))
    assert counts.tolist() == [1, 3] and edges.tolist() == [0.0, 1.0, 2.0]
    counts, edges = intensity_histogram(np.ones((10, 10)), np.zeros(5), bins=4)
    assert counts.sum() == 105 and edges[0] <= 0.0 and edges[-1] >= 1.0
