"""A fast ``dfct``: its help, ``dfct measure`` and ``dfct simulate``'s options and checks
import no torch (checked in fresh interpreters), and the modules moved for that keep their
old import paths."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_REPORT = "import json, sys\nprint(json.dumps(sorted(sys.modules)))\n"


def _run_cli(argv: list[str]) -> tuple[int, set[str], str]:
    """``main(argv)`` in a fresh interpreter: its exit status, the modules it loaded and its
    stderr."""
    code = (
        "import sys\n"
        "from napari_dfct.cli import main\n"
        "try:\n"
        f"    rc = main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    rc = exc.code\n"
        "print('RC', rc)\n" + _REPORT
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    rc = int(next(line for line in lines if line.startswith("RC ")).split()[1] or 0)
    return rc, set(json.loads(lines[-1])), res.stderr


def _top(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["--version"],
        ["train", "--help"],
        ["grid", "--help"],
        ["simulate", "--help"],
        ["reader-study", "--help"],
    ],
)
def test_help_imports_no_torch(argv):
    rc, modules, _ = _run_cli(argv)
    assert rc == 0
    assert "napari_dfct.cli" in modules
    assert not _top(modules) & {"torch", "scipy", "napari", "qtpy"}, sorted(
        _top(modules) & {"torch", "scipy", "napari", "qtpy"}
    )


def test_measure_imports_no_torch(small_sim, tmp_path):
    from napari_dfct.simulate import save_simulation

    save_simulation(small_sim, tmp_path / "sim")
    rc, modules, err = _run_cli(
        [
            "measure",
            str(tmp_path / "sim" / "input.tif"),
            "--reference",
            str(tmp_path / "sim" / "truth.tif"),
            "--json",
        ]
    )
    assert rc == 0, err
    assert "napari_dfct.metrics.edge" in modules  # it measured
    assert "torch" not in _top(modules)


def test_simulate_checks_its_options_without_torch(tmp_path):
    """The options and the checks of ``dfct simulate`` need no torch; only the projection
    itself runs on torch's kernels."""
    rc, modules, err = _run_cli(["simulate", str(tmp_path / "s"), "--size", "16"])
    assert rc == 2 and "--size must be >= 32" in err
    assert "torch" not in _top(modules)


def test_moved_names_keep_their_old_homes():
    from napari_dfct import cli, data, device, roi, simulate, window
    from napari_dfct.commands import measure
    from napari_dfct.commands._errors import CLIError
    from napari_dfct.train import config

    assert cli.CLIError is CLIError
    assert measure.CLIError is CLIError
    assert data.IntensityWindow is window.IntensityWindow is config.IntensityWindow
    assert data.window_from_percentiles is window.window_from_percentiles
    assert data.DEFAULT_WINDOW_MARGIN == window.DEFAULT_WINDOW_MARGIN
    assert data.available_memory is device.available_memory
    assert data.format_bytes is device.format_bytes
    assert simulate.roi_size_for is roi.roi_size_for
    assert [roi.roi_size_for(n) for n in (32, 64, 128, 256, 800)] == [4, 8, 15, 30, 30]
    assert device.format_bytes(3 * 1024**3) == "3.0 GiB"
    host = device.available_memory("cpu")
    assert host is None or host > 0


def test_the_window_normalises_tensors_once_torch_is_loaded():
    import numpy as np
    import torch

    from napari_dfct.window import IntensityWindow

    w = IntensityWindow(1.0, 3.0)
    t = w.normalize(torch.tensor([0.0, 2.0, 5.0]))
    assert isinstance(t, torch.Tensor) and t.tolist() == [0.0, 0.5, 1.0]
    a = w.normalize(np.array([0.0, 2.0, 5.0]))
    assert a.dtype == np.float32 and a.tolist() == [0.0, 0.5, 1.0]
    assert isinstance(w.denormalize(torch.tensor([0.5])), torch.Tensor)
