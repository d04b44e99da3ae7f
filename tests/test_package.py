"""Packaging: the manifest, the console command, and the core/GUI boundary."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys

import pytest

CORE_MODULES = [
    "napari_dfct.simulate",
    "napari_dfct.io",
    "napari_dfct.weights",
    "napari_dfct.losses",
    "napari_dfct.model",
    "napari_dfct.data",
    "napari_dfct.train",
    "napari_dfct.checkpoint",
    "napari_dfct.infer",
    "napari_dfct.metrics",
    "napari_dfct.experiment",
    "napari_dfct.cli",
]


def test_npe2_validate_passes():
    exe = shutil.which("npe2", path=os.path.dirname(sys.executable)) or shutil.which("npe2")
    assert exe, "npe2 command not found"
    res = subprocess.run([exe, "validate", "napari-dfct"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "valid" in res.stdout.lower()


def _manifest_path():
    from importlib.resources import files

    return files("napari_dfct") / "napari.yaml"


def test_manifest_ships_inside_the_package():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(str(_manifest_path()))
    assert manifest.name == "napari-dfct"
    assert {w.display_name for w in manifest.contributions.widgets} >= {
        "Measure CNR / FWHM",
        "Loss amplification",
        "Train",
        "Predict",
        "Reader study",
    }


def test_every_manifest_command_imports():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(str(_manifest_path()))
    assert manifest.contributions.commands, "the manifest declares no commands"
    for cmd in manifest.contributions.commands:
        module, _, attr = cmd.python_name.partition(":")
        obj = getattr(importlib.import_module(module), attr)
        assert callable(obj), cmd.python_name


def test_core_modules_import_neither_qt_nor_napari():
    code = (
        "import importlib, json, sys\n"
        f"mods = {CORE_MODULES!r}\n"
        "for m in mods: importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in "
        "('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui', 'vispy'))\n"
        "print(json.dumps(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []


def test_dfct_help_for_every_subcommand(capsys):
    from napari_dfct.cli import _command_modules, main

    names = [m.NAME for m in _command_modules()]
    assert names, "no subcommands found"
    for name in names:
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        assert f"dfct {name}" in capsys.readouterr().out


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "napari_dfct", "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    import napari_dfct

    assert napari_dfct.__version__ in out


def test_a_source_tree_imported_from_elsewhere_does_not_claim_the_installed_version(tmp_path):
    """A copy of the package without ``_version.py`` (a source tree that was never
    installed), imported while another copy is installed: its version is unknown, not the
    installed copy's, which would be recorded in every model it saves."""
    from pathlib import Path

    import napari_dfct

    src = Path(napari_dfct.__file__).parent
    shutil.copytree(
        src, tmp_path / "napari_dfct", ignore=shutil.ignore_patterns("_version.py", "__pycache__")
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import napari_dfct; print(napari_dfct.__file__, napari_dfct.__version__)",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    ).stdout.split()
    assert Path(out[0]).parent == tmp_path / "napari_dfct"
    assert out[1] == "0.0.0+unknown"
