"""Shared fixtures. Test data is made by the simulator: nothing is downloaded."""

from __future__ import annotations

import os

import pytest

# Keep the suite predictable on small CI machines.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def small_sim():
    """A tiny simulated DFCT set: 4 slices of 64x64, shared by the whole session.

    Treat it as read-only (copy before modifying).
    """
    from napari_dfct.simulate import simulate_dfct

    return simulate_dfct(n_slices=4, size=64, n_views=96, rotations=4, seed=1)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's torch work on one thread (tiny convolutions are faster that way,
    above all on a shared CI machine); the previous count is restored afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def registry():
    """The widgets' session model registry, emptied before and after the test."""
    from napari_dfct.widgets import _models

    _models.clear()
    yield _models
    _models.clear()


@pytest.fixture
def capture_notifications(monkeypatch):
    """``capture(module)`` records a widget module's ``show_error/show_warning/show_info``
    calls instead of showing them and returns ``{"error": [...], "warning": [...],
    "info": [...]}``."""

    def capture(module) -> dict[str, list[str]]:
        seen: dict[str, list[str]] = {"error": [], "warning": [], "info": []}
        for kind in seen:
            monkeypatch.setattr(module, f"show_{kind}", lambda m, k=kind: seen[k].append(str(m)))
        return seen

    return capture


@pytest.fixture(scope="module")
def pair():
    """A tiny noisy/clean training pair: 4 slices of 32x32 (input, target), float32."""
    import numpy as np

    rng = np.random.default_rng(0)
    y = rng.standard_normal((4, 32, 32)).astype(np.float32)
    return (y + 0.3 * rng.standard_normal(y.shape)).astype(np.float32), y
