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
