"""The public API (napari_dfct.api): a cheap import, real signatures, docstring examples that
run, the walkthrough of docs/api.md, and a training result that predict, measure and export
take as the model."""

from __future__ import annotations

import doctest
import importlib
import inspect
import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import napari_dfct
from napari_dfct import api

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
API_NAMES = {
    "LossConfig",
    "TrainConfig",
    "cnr",
    "error_cnr",
    "export",
    "fwhm",
    "load_model",
    "measure",
    "predict",
    "recipe",
    "simulate",
    "train",
}
#: Modules whose docstring examples document the API (the facade and the homes of the
#: names it re-exports).
DOC_MODULES = (
    "napari_dfct.api",
    "napari_dfct.metrics.cnr",
    "napari_dfct.metrics.edge",
    "napari_dfct.metrics.truth",
    "napari_dfct.loss_config",
    "napari_dfct.train.config",
)
SLOW_DOCTESTS = {"napari_dfct.api.export"}  # bioimage.io packaging and validation


def _modules_after(code: str) -> set[str]:
    """Top-level packages in sys.modules after running ``code`` in a fresh interpreter."""
    probe = (
        code
        + "\nimport json, sys\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


# --------------------------------------------------------------------------- the import
def test_importing_the_package_loads_no_torch_napari_or_qt():
    loaded = _modules_after("import napari_dfct\nnapari_dfct.__version__")
    assert "napari_dfct" in loaded
    heavy = {"torch", "napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui"}
    assert not loaded & heavy, loaded & heavy


def test_measuring_an_image_through_the_api_loads_no_torch():
    code = (
        "import numpy as np\n"
        "import napari_dfct as dfct\n"
        "img = np.zeros((64, 64), np.float32); img[:, 32:] = 1\n"
        "img += np.random.default_rng(0).normal(0, 0.1, img.shape).astype(np.float32)\n"
        "rois = {'signal_center': (32, 48), 'background_center': (32, 16), 'roi_size': 8}\n"
        "m = dfct.measure(img, rois)\n"
        "assert m.cnr.cnr > 5 and m.fwhm.reason is None, m.reason\n"
    )
    assert "torch" not in _modules_after(code)


def test_all_lists_the_api_and_every_name_resolves():
    assert set(napari_dfct.__all__) == API_NAMES | {"__version__"}
    for name in API_NAMES:
        assert getattr(napari_dfct, name) is not None
    assert set(api.__all__) <= API_NAMES
    assert set(dir(napari_dfct)) >= API_NAMES
    with pytest.raises(AttributeError, match="no attribute 'fit'"):
        napari_dfct.fit  # noqa: B018 - internals are not advertised at the top level


def test_the_functions_have_real_signatures_and_examples():
    for name in sorted(API_NAMES):
        obj = getattr(napari_dfct, name)
        target = obj if inspect.isfunction(obj) or inspect.isclass(obj) else getattr(api, name)
        params = inspect.signature(obj).parameters.values()
        kinds = {p.kind for p in params}
        assert inspect.Parameter.VAR_POSITIONAL not in kinds, name
        assert inspect.Parameter.VAR_KEYWORD not in kinds, name
        doc = inspect.getdoc(target) or ""
        assert re.search(r"^Examples\n-+\n", doc, re.M), f"{name} has no Examples section"
        assert ">>> " in doc, name


def test_simulate_train_and_export_are_callable_packages():
    """The names are both the subpackages (whose modules stay importable) and the API
    functions: calling the package calls the function, with the function's signature."""
    from napari_dfct import simulate as sim_pkg
    from napari_dfct.train import TrainConfig, fit, run_fit  # the loop is still there

    assert sim_pkg is napari_dfct.simulate is sys.modules["napari_dfct.simulate"]
    assert callable(sim_pkg.simulate_dfct) and callable(fit) and callable(run_fit)
    assert napari_dfct.TrainConfig is TrainConfig
    for name in ("simulate", "train", "export"):
        pkg = importlib.import_module(f"napari_dfct.{name}")
        assert inspect.ismodule(pkg) and callable(pkg)
        assert inspect.signature(pkg) == inspect.signature(getattr(api, name))
    a = napari_dfct.simulate(32, slices=2, rotations=1, views=16, seed=3)
    b = sim_pkg.simulate_dfct(2, 32, 16, 1, 3)
    np.testing.assert_array_equal(a.input, b.input)


def test_simulate_maps_its_options_to_the_simulator():
    from napari_dfct.simulate import preset_physics, simulate_dfct

    got = api.simulate(32, specimens=2, rotations=1, views=16, seed=5, preset="benchmark")
    want = simulate_dfct(2, 32, 16, 1, 5, specimens=True, **preset_physics("benchmark"))
    np.testing.assert_array_equal(got.target, want.target)
    assert got.meta["specimen_seeds"] == want.meta["specimen_seeds"]
    with pytest.raises(ValueError, match="not both"):
        api.simulate(32, slices=2, specimens=2)


def test_train_options_and_recipe_reach_the_config():
    from napari_dfct.losses import LossConfig

    cfg = api._train_config(
        None, "paper", {"loss": "l2+s-linear", "epochs": 3, "window": (0.0, 2.0), "lr": None}
    )
    assert (cfg.recipe, cfg.bn_recalibrate, cfg.epochs) == ("paper", 0, 3)
    assert cfg.loss == LossConfig.from_name("l2+s-linear")
    assert (cfg.window.low, cfg.window.high) == (0.0, 2.0)
    assert cfg.lr == api.recipe("paper").lr  # None keeps the recipe's value
    base = api.recipe("stable")
    assert api._train_config(base, None, {"preset": "tiny"}).preset == "tiny"
    assert base.preset == "paper"  # the given config is not changed
    with pytest.raises(ValueError, match="not both"):
        api._train_config(base, "paper", {})
    with pytest.raises(ValueError, match="unknown recipe"):
        api.recipe("fast")
    with pytest.raises(ValueError, match="epochs"):
        api._train_config(None, None, {"epochs": 0})


# --------------------------------------------------------------------------- one result
@pytest.fixture(scope="module")
def trained(small_sim, tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "model"
    res = api.train(
        small_sim.input,
        small_sim.target,
        out,
        loss="l2+s-nonlinear",
        recipe="paper",
        epochs=1,
        preset="tiny",
        patch=32,
        batch_size=4,
        device="cpu",
    )
    return res


def test_train_returns_a_result_saved_as_dfct_train_saves_it(trained):
    from napari_dfct.checkpoint import load_config

    assert trained.stopped == "completed" and trained.best_epoch == 1
    cfg = load_config(trained.model_dir)
    assert cfg["loss"]["name"] == "l2+s-nonlinear" and cfg["preset"] == "tiny"
    assert cfg["train"]["recipe"] == "paper" and cfg["train"]["patch"] == 32


def test_predict_takes_the_result_a_loaded_model_and_a_folder(trained, small_sim):
    from napari_dfct.infer import predict as infer_predict

    want = infer_predict(trained.model, small_sim.input, window=trained.window, device="cpu")
    np.testing.assert_array_equal(api.predict(trained, small_sim.input, device="cpu"), want)
    for model in (trained.model_dir, str(trained.model_dir), api.load_model(trained.model_dir)):
        got = api.predict(model, small_sim.input, slices=[1, -1], device="cpu")
        np.testing.assert_allclose(got, want[[1, -1]], atol=1e-6)
    with pytest.raises(TypeError, match="training result"):
        api.predict(42, small_sim.input)


def test_measure_with_a_model_measures_its_prediction(trained, small_sim):
    from napari_dfct.metrics import measure_all
    from napari_dfct.roi import ROISet

    rois = ROISet.from_meta(small_sim.meta, len(small_sim.input), image_size=64)
    k = rois.slice
    pred = api.predict(trained, small_sim.input, device="cpu")[k]
    want = measure_all(
        pred,
        rois.signal_center,
        rois.background_center,
        line=rois.line,
        size=rois.roi_size,
        reference=small_sim.truth[k],
        mask=small_sim.mask[k],
    ).to_dict()
    got = api.measure(small_sim, model=trained).to_dict()
    assert got.keys() == want.keys()
    for key, value in want.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-7), key
        else:
            assert got[key] == value, key
    # the input itself, with explicit ROIs and another slice: the same as the metrics
    z = (k + 1) % len(small_sim.input)
    own = small_sim.meta["rois"][z]
    m = api.measure(small_sim.input, {"rois": small_sim.meta["rois"]}, slice_index=z)
    c = api.cnr(
        small_sim.input[z], own["signal_center"], own["background_center"], own["roi_size"]
    )
    assert m.cnr.cnr == c.cnr and not m.has_reference


def test_measure_takes_the_rois_in_every_form(small_sim, tmp_path):
    from napari_dfct.roi import ROISet

    z = len(small_sim.input) // 2  # the default slice of a volume: the central one
    own = small_sim.meta["rois"][z]
    want = api.cnr(
        small_sim.input[z], own["signal_center"], own["background_center"], own["roi_size"]
    ).cnr
    (tmp_path / "meta.json").write_text(json.dumps(small_sim.meta))
    forms = {
        "dict": {k: own[k] for k in ("signal_center", "background_center", "roi_size")},
        "ROISet": ROISet(own["signal_center"], own["background_center"], None, own["roi_size"]),
        "simulation": small_sim,
        "folder": tmp_path,
        "file": str(tmp_path / "meta.json"),
    }
    for name, rois in forms.items():
        assert api.measure(small_sim.input, rois).cnr.cnr == want, name
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no ROIs"):
        api.measure(small_sim.input, tmp_path / "empty")


def test_measure_refuses_missing_rois_and_mismatched_shapes(small_sim):
    with pytest.raises(ValueError, match="ROIs"):
        api.measure(small_sim.input)
    with pytest.raises(ValueError, match="reference shape"):
        api.measure(small_sim, reference=np.zeros((3, 5, 5)))
    with pytest.raises(ValueError, match="outside the volume"):
        api.measure(small_sim, slice_index=len(small_sim.input))


@pytest.mark.slow
def test_export_takes_a_result_in_memory_and_on_disk(trained, small_sim, tmp_path):
    in_memory = api.train(
        small_sim.input,
        small_sim.target,
        recipe="paper",
        epochs=1,
        preset="tiny",
        patch=32,
        batch_size=4,
        device="cpu",
    )
    import torch

    for name, res in (("memory", in_memory), ("disk", trained)):
        out = api.export(res, tmp_path / f"{name}.zip", sample=small_sim.input)
        with zipfile.ZipFile(out) as zf:
            assert "rdf.yaml" in zf.namelist()
            zf.extract("weights.pt", tmp_path / name)
        packaged = torch.load(tmp_path / name / "weights.pt", weights_only=True)
        own = res.model.state_dict()
        assert packaged.keys() == own.keys()
        for key, value in own.items():
            assert torch.equal(packaged[key], value), key
    assert in_memory.model_dir is None  # exported from a temporary folder


# --------------------------------------------------------------------------- the docs
def _doctests():
    finder = doctest.DocTestFinder()
    out = []
    for name in DOC_MODULES:
        for test in finder.find(importlib.import_module(name)):
            if test.examples:
                marks = [pytest.mark.slow] if test.name in SLOW_DOCTESTS else []
                out.append(pytest.param(test, id=test.name, marks=marks))
    return out


@pytest.mark.parametrize("test", _doctests())
def test_docstring_examples_run(test):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = io.StringIO()
    runner.run(test, out=report.write)
    assert runner.failures == 0, report.getvalue()


def test_every_api_function_has_a_doctest():
    names = {p.id for p in _doctests()}
    for name in api.__all__:
        home = getattr(api, name).__module__
        assert f"{home}.{name}" in names, name


def _walkthrough_blocks() -> list[str]:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def test_the_walkthrough_covers_the_flow():
    code = "\n".join(_walkthrough_blocks())
    for call in ("simulate(", "train(", "predict(", "measure(", "export(", "load_model("):
        assert f"dfct.{call}" in code, call
    for block in _walkthrough_blocks():
        compile(block, "docs/api.md", "exec")


@pytest.mark.slow
def test_the_walkthrough_runs(tmp_path, monkeypatch, capsys):
    """docs/api.md's code blocks, in order, in one namespace (as a notebook runs them)."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__walkthrough__"}
    for block in _walkthrough_blocks():
        exec(compile(block, "docs/api.md", "exec"), namespace)
    assert (tmp_path / "models" / "l2-sf" / "model.safetensors").is_file()
    with zipfile.ZipFile(tmp_path / "l2-sf.zip") as zf:
        assert "rdf.yaml" in zf.namelist()
    printed = capsys.readouterr().out
    assert "completed after 2 epochs" in printed and "prediction CNR" in printed
