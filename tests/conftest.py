"""Shared fixtures. Test data is made by the simulator: nothing is downloaded."""

from __future__ import annotations

import os

import pytest

# Keep the suite predictable on small CI machines.
os.environ.setdefault("OMP_NUM_THREADS", "2")

# Fixtures that need a Qt application (a display): a test using one is a `gui` test, so
# `-m "not gui"` runs without a display even where a module forgets the marker.
QT_FIXTURES = frozenset({"qtbot", "qapp", "make_napari_viewer", "make_napari_viewer_proxy"})


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config, items):
    for item in items:
        if QT_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.gui)
            # with pytest-xdist (-n 2 --dist loadgroup): the viewer tests share one worker,
            # one display and one napari settings file; the others spread over the rest
            item.add_marker(pytest.mark.xdist_group("gui"))


@pytest.fixture(scope="session", autouse=True)
def no_models_at_home(tmp_path_factory):
    """The widgets' default model folder (which Predict lists) is an empty one of the
    session, not the user's ``~/napari-dfct/models``."""
    import os

    folder = tmp_path_factory.mktemp("models-home")
    old = os.environ.get("NAPARI_DFCT_MODELS_DIR")
    os.environ["NAPARI_DFCT_MODELS_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("NAPARI_DFCT_MODELS_DIR", None)
    else:
        os.environ["NAPARI_DFCT_MODELS_DIR"] = old


@pytest.fixture(scope="session", autouse=True)
def no_cache_at_home(tmp_path_factory):
    """The package's cache folder (ONNX exports, the sample data) is an empty one of the
    session, not the user's ``~/.cache/napari-dfct``: a test never reads what an earlier
    run left there, and leaves nothing there."""
    folder = tmp_path_factory.mktemp("cache-home")
    old = os.environ.get("NAPARI_DFCT_CACHE_DIR")
    os.environ["NAPARI_DFCT_CACHE_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("NAPARI_DFCT_CACHE_DIR", None)
    else:
        os.environ["NAPARI_DFCT_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def small_sim():
    """A tiny simulated DFCT set: 4 slices of 64x64, shared by the whole session.

    Treat it as read-only (copy before modifying).
    """
    from napari_dfct.simulate import simulate_dfct

    return simulate_dfct(n_slices=4, size=64, n_views=96, rotations=4, seed=1)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Every module runs its torch work on one thread (tiny convolutions are faster that
    way, above all on a shared CI machine); the previous count is restored afterwards, so a
    module that changes it leaves the next one unaffected."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def trained_model(small_sim, tmp_path_factory):
    """A tiny model trained for one epoch on :func:`small_sim` by the core loop (not by a
    widget or the CLI), on the CPU: its checkpoint folder, shared by the whole session.

    Treat it as read-only (copy it before changing anything in it).
    """
    from napari_dfct.losses import LossConfig
    from napari_dfct.train import TrainConfig, run_fit

    out = tmp_path_factory.mktemp("models") / "l2+s-linear-test"
    config = TrainConfig(
        loss=LossConfig(spatial="linear"),
        preset="tiny",
        epochs=1,
        batch_size=4,
        patch=32,
        seed=0,
        device="cpu",
    )
    result = run_fit(small_sim.input, small_sim.target, config, out, preview=False)
    assert result.model_dir == out
    return out


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
