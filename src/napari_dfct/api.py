"""The public API: simulate, train, predict, measure and export in a notebook or a script.

Every name here is also an attribute of :mod:`napari_dfct` itself, loaded on first use
(``import napari_dfct`` stays cheap and loads no torch)::

    import napari_dfct as dfct

    sim = dfct.simulate(64, specimens=8)                   # input, target, truth, ROIs
    res = dfct.train(sim.input, sim.target, epochs=2, preset="tiny", patch=32)
    pred = dfct.predict(res, sim.input)                    # the input's units
    m = dfct.measure(sim, model=res)                       # CNR, FWHM, error CNR, ...
    dfct.export(res, "model.zip", sample=sim.input)        # a bioimage.io package

:func:`train` returns the training run's :class:`~napari_dfct.train.FitResult`, which
:func:`predict`, :func:`measure` and :func:`export` take as the model, as they take a
model folder or a model loaded with :func:`load_model`. The metrics :func:`cnr`,
:func:`fwhm` and :func:`error_cnr` and the configurations :class:`TrainConfig` and
:class:`LossConfig` come from their own modules (:mod:`napari_dfct.metrics`,
:mod:`napari_dfct.train`, :mod:`napari_dfct.losses`). ``docs/api.md`` walks through it.

``napari_dfct.simulate``, ``napari_dfct.train`` and ``napari_dfct.export`` are also the
subpackages that hold the simulator, the training loop and the exporter: calling one of
them calls the function of the same name here, and their modules stay importable
(``from napari_dfct.train import fit``).

This module imports torch only where a function needs it (training, prediction, loading
and exporting a model): :func:`simulate`, :func:`recipe` and :func:`measure` of an image
do not.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .metrics import cnr, error_cnr, fwhm
from .train.config import DEFAULT_RECIPE, TrainConfig

if TYPE_CHECKING:
    from .checkpoint import LoadedModel
    from .loss_config import LossConfig
    from .metrics import Measurement
    from .roi import ROISet
    from .scans import ScanSlices
    from .simulate import Simulation
    from .train import EpochEvent, FitResult

__all__ = [
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
]

#: What the functions below take as a model: a training result, a loaded model folder, or
#: the path of a model folder.
ModelLike = Any


# --------------------------------------------------------------------------- simulate
def simulate(
    size: int = 256,
    *,
    slices: int | None = None,
    specimens: int | None = None,
    seed: int = 0,
    preset: str = "default",
    rotations: int = 20,
    views: int | None = None,
    noise: float | None = None,
    texture: float | None = None,
    tiles: int | None = None,
    fbp_filter: str = "hann",
) -> Simulation:
    """Simulate a thorax dark-field CT set: single-rotation input, multi-rotation target,
    clean truth, body mask and suggested ROIs (``dfct simulate``).

    Parameters
    ----------
    size : int
        Slice width and height in pixels (>= 32).
    slices : int, optional
        Axial slices of one acquisition of one specimen (default 16). Its slices share the
        vibration, so their streaks are alike.
    specimens : int, optional
        Instead of ``slices``: this many independent specimens, one slice each (their own
        anatomy, vibration and noise), as the paper's training data. Use these to train
        and test models.
    seed : int
        Random seed (>= 0).
    preset : {"default", "benchmark"}
        Realism options (:data:`napari_dfct.simulate.PRESETS`); ``noise``, ``texture`` and
        ``tiles`` override the preset's.
    rotations : int
        Rotations averaged into the target (>= 1); the input is the first of them.
    views : int, optional
        Views per 360-degree rotation (>= 8); default three per pixel of ``size``.
    noise, texture : float, optional
        Multipliers of the photon-noise level and of the lung texture.
    tiles : int, optional
        Grating tiles across the detector (ring and band artefacts; 0: none).
    fbp_filter : {"hann", "ramp"}
        The filter of the filtered back-projection.

    Returns
    -------
    Simulation
        ``input``, ``target``, ``truth`` (float32 ``(Z, Y, X)`` in 1/m), ``mask`` (uint8
        body mask) and ``meta`` (the parameters and the lung/air ROIs and line of every
        slice, which :func:`measure` reads).

    Raises
    ------
    ValueError
        Out-of-range values, both ``slices`` and ``specimens``, or more memory than is
        available.

    See Also
    --------
    napari_dfct.simulate.simulate_dfct : the simulator, with every physical parameter.
    napari_dfct.simulate.save_simulation : write a set as ``dfct simulate`` does.

    Examples
    --------
    >>> import napari_dfct as dfct
    >>> sim = dfct.simulate(64, specimens=4, rotations=2, seed=0)
    >>> sim.input.shape, sim.input.dtype
    ((4, 64, 64), dtype('float32'))
    >>> sim.target.shape == sim.truth.shape == sim.mask.shape
    True
    >>> rois = sim.meta["rois"][0]  # the lung and air ROIs of the first slice
    >>> {"signal_center", "background_center", "line", "roi_size"} <= set(rois)
    True
    """
    from .simulate import preset_physics, simulate_dfct

    if slices is not None and specimens is not None:
        raise ValueError("give either slices or specimens, not both")
    n = specimens if specimens is not None else (16 if slices is None else slices)
    physics = preset_physics(preset, noise=noise, texture=texture, tiles=tiles)
    return simulate_dfct(
        n_slices=n,
        size=size,
        n_views=views,
        rotations=rotations,
        seed=seed,
        specimens=specimens is not None,
        filter=fbp_filter,
        **physics,
    )


# --------------------------------------------------------------------------- train
def recipe(name: str = DEFAULT_RECIPE) -> TrainConfig:
    """The training configuration of a named recipe.

    Parameters
    ----------
    name : {"stable", "paper"}
        ``"paper"``: the paper's protocol exactly; ``"stable"`` (the default): the same,
        with BatchNorm's running statistics re-estimated before every validation
        (:data:`napari_dfct.train.RECIPES`, ``docs/training-stability.md``).

    Returns
    -------
    TrainConfig
        A new configuration; change its fields before passing it to :func:`train`.

    Raises
    ------
    ValueError
        An unknown recipe.

    Examples
    --------
    >>> import napari_dfct as dfct
    >>> cfg = dfct.recipe("paper")
    >>> cfg.recipe, cfg.bn_recalibrate, cfg.epochs, cfg.lr
    ('paper', 0, 100, 0.001)
    >>> cfg.epochs = 20
    >>> dfct.recipe("paper").epochs  # every call gives a fresh configuration
    100
    """
    from .train.config import recipe_config

    return recipe_config(name)


def _train_config(
    config: TrainConfig | None, recipe_name: str | None, options: dict[str, Any]
) -> TrainConfig:
    """The configuration of :func:`train`: ``config`` or the recipe's, then the options
    that were given (not None)."""
    if config is not None and recipe_name is not None:
        raise ValueError("give either a recipe or a config, not both")
    if config is None:
        config = recipe(recipe_name or DEFAULT_RECIPE)
    elif not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    given = {k: v for k, v in options.items() if v is not None}
    if "window" in given and not isinstance(given["window"], dict):
        low, high = given["window"]
        given["window"] = {"low": low, "high": high}
    config = replace(config, **given)  # __post_init__ turns a loss name into a LossConfig
    config.validate()
    return config


def train(
    inputs: np.ndarray | ScanSlices,
    targets: np.ndarray | None,
    out_dir: str | os.PathLike | None = None,
    *,
    loss: str | LossConfig | None = None,
    recipe: str | None = None,
    config: TrainConfig | None = None,
    epochs: int | None = None,
    preset: str | None = None,
    patch: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int | None = None,
    window: tuple[float, float] | None = None,
    device: str | None = None,
    callback: Callable[[EpochEvent], object] | None = None,
) -> FitResult:
    """Train a residual U-Net on single-rotation inputs and multi-rotation targets.

    Parameters
    ----------
    inputs, targets : numpy.ndarray
        float32 ``(Z, Y, X)`` volumes of the same shape, at least 2 slices; 20 % of the
        slices are held out for validation. Or ``inputs`` a
        :class:`napari_dfct.scans.ScanSlices` (slices of several scans, any sizes) and
        ``targets`` None.
    out_dir : path, optional
        A new model folder: the best model is saved there whenever the validation loss
        improves (``model.safetensors``, ``config.json``, ``history.json``). None keeps
        the model in memory only.
    loss : str or LossConfig, optional
        The loss: a name such as ``"l2"``, ``"l2+s-nonlinear"`` or ``"l2+s+f-nonlinear"``
        (:class:`LossConfig`), or a :class:`LossConfig`. Default: the configuration's
        (plain L2).
    recipe : {"stable", "paper"}, optional
        Start from this recipe (:func:`recipe`; default ``"stable"``).
    config : TrainConfig, optional
        Start from this configuration instead of a recipe.
    epochs, preset, patch, batch_size, lr, seed, device : optional
        Override the configuration's at most ``epochs`` epochs, model preset
        (``"paper"``, ``"small"``, ``"tiny"``), patch side, patches per step, learning
        rate, seed and device (``"auto"``, ``"cpu"``, ``"cuda"``, ...).
    window : (float, float), optional
        The intensity clip window ``(low, high)`` of input and target; default: from
        percentiles of the training slices.
    callback : callable, optional
        Called with an :class:`~napari_dfct.train.EpochEvent` after every epoch.

    Returns
    -------
    FitResult
        The best ``model`` (in memory), its intensity ``window``, ``config``,
        ``history``, ``best_epoch``, ``stopped`` and ``model_dir``. :func:`predict`,
        :func:`measure` and :func:`export` take it as the model.

    Raises
    ------
    ValueError
        Bad data or options, or an ``out_dir`` that already holds files.

    See Also
    --------
    napari_dfct.train.fit : the training loop as a generator of epoch events.

    Examples
    --------
    >>> import napari_dfct as dfct
    >>> sim = dfct.simulate(64, specimens=4, rotations=2)
    >>> res = dfct.train(sim.input, sim.target, loss="l2+s-nonlinear", recipe="paper",
    ...                  epochs=1, preset="tiny", patch=32, batch_size=4, device="cpu")
    >>> res.stopped, res.best_epoch, res.config["loss"]["name"]
    ('completed', 1, 'l2+s-nonlinear')
    >>> res.model_dir is None  # no out_dir: the model stays in memory
    True
    """
    from .train import run_fit

    cfg = _train_config(
        config,
        recipe,
        {
            "loss": loss,
            "epochs": epochs,
            "preset": preset,
            "patch": patch,
            "batch_size": batch_size,
            "lr": lr,
            "seed": seed,
            "window": window,
            "device": device,
        },
    )
    return run_fit(inputs, targets, cfg, out_dir, callback=callback)


# --------------------------------------------------------------------------- models
def load_model(path: str | os.PathLike, device: str = "cpu") -> LoadedModel:
    """Load a model folder written by :func:`train` (or ``dfct train``).

    Parameters
    ----------
    path : path
        The model folder (``model.safetensors`` + ``config.json``); nothing is unpickled.
    device : str
        Where the network goes (``"auto"``: CUDA, then MPS, then CPU).

    Returns
    -------
    LoadedModel
        ``model`` (eval mode), ``config``, ``history``, ``window``, ``path`` and ``name``.

    Raises
    ------
    napari_dfct.checkpoint.CheckpointError
        Missing or corrupt files (a :class:`ValueError`).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> import napari_dfct as dfct
    >>> sim = dfct.simulate(64, specimens=4, rotations=2)
    >>> tmp = tempfile.TemporaryDirectory()
    >>> folder = pathlib.Path(tmp.name) / "model"
    >>> _ = dfct.train(sim.input, sim.target, folder, recipe="paper", epochs=1,
    ...                preset="tiny", patch=32, batch_size=4, device="cpu")
    >>> model = dfct.load_model(folder)
    >>> model.name, model.config["preset"], model.window is not None
    ('l2', 'tiny', True)
    >>> dfct.predict(model, sim.input[0], device="cpu").shape
    (64, 64)
    >>> tmp.cleanup()
    """
    from .checkpoint import load_model as _load

    return _load(path, device=device)


def _network(model: ModelLike) -> tuple[Any, Any]:
    """``(model for napari_dfct.infer, window)`` of a training result, a loaded model, a
    model folder or a torch module (window None: the loaded model's own)."""
    from .checkpoint import LoadedModel
    from .train import FitResult

    if isinstance(model, FitResult):
        if model.model is None:
            raise ValueError("this training run finished no epoch: there is no model to use")
        return model.model, model.window
    if isinstance(model, (str, os.PathLike)):
        return load_model(model), None
    if isinstance(model, LoadedModel):
        return model, None
    import torch

    if isinstance(model, torch.nn.Module):
        return model, None
    raise TypeError(
        "model must be a training result, a loaded model or a model folder, got "
        f"{type(model).__name__}"
    )


def predict(
    model: ModelLike,
    image: np.ndarray,
    *,
    slices: Sequence[int] | int | None = None,
    tile: int | None = None,
    batch_size: int = 4,
    device: str = "auto",
    backend: str = "auto",
) -> np.ndarray:
    """Reduce the streaks of a slice or a volume with a trained model.

    Parameters
    ----------
    model : FitResult or LoadedModel or path
        What :func:`train` returned, a model from :func:`load_model`, or a model folder.
    image : numpy.ndarray
        ``(Y, X)`` or ``(Z, Y, X)`` in the units of the model's training data.
    slices : int or sequence of int, optional
        For a volume: which slices, in this order (negative counts from the end);
        default all.
    tile : int, optional
        Predict in overlapping tiles of this side (for large slices on a small device);
        default whole slices.
    batch_size : int
        Slices (or tiles) per forward pass.
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ...
    backend : str
        ``"auto"``, ``"eager"`` (torch) or ``"onnx"`` (ONNX Runtime on the CPU, the extra
        ``napari-dfct[onnx]``): :mod:`napari_dfct.infer`.

    Returns
    -------
    numpy.ndarray
        float32 in the input's units: ``(Y, X)`` for a slice, ``(len(slices), Y, X)``
        for a volume.

    Examples
    --------
    >>> import napari_dfct as dfct
    >>> sim = dfct.simulate(64, specimens=4, rotations=2)
    >>> res = dfct.train(sim.input, sim.target, recipe="paper", epochs=1, preset="tiny",
    ...                  patch=32, batch_size=4, device="cpu")
    >>> pred = dfct.predict(res, sim.input, device="cpu")
    >>> pred.shape, pred.dtype
    ((4, 64, 64), dtype('float32'))
    >>> dfct.predict(res, sim.input, slices=[0, -1], device="cpu").shape
    (2, 64, 64)
    """
    from .infer import predict as _predict

    net, window = _network(model)
    return _predict(
        net,
        image,
        window=window,
        slices=slices,
        tile=tile,
        batch_size=batch_size,
        device=device,
        backend=backend,
    )


def export(
    model: ModelLike,
    path: str | os.PathLike,
    *,
    sample: np.ndarray | None = None,
    overwrite: bool = False,
    author: str = "napari-dfct user",
    license_id: str = "CC-BY-4.0",
) -> Path:
    """Write a bioimage.io model package (``.zip``, spec 0.5) of a trained model.

    Needs the ``bioimageio`` extra (``pip install 'napari-dfct[bioimageio]'``).

    Parameters
    ----------
    model : FitResult or LoadedModel or path
        What :func:`train` returned (kept in memory or saved), a model from
        :func:`load_model`, or a model folder.
    path : path
        The ``.zip`` to write.
    sample : numpy.ndarray, optional
        A slice or volume in the input's units (e.g. the training input) to cut the
        package's test tensors from; default: a simulated slice. For a 2.5-D model
        (context ``K``), a volume: its central slice and that slice's ``2K``
        neighbours are the package's ``2K + 1`` input channels (docs/context.md); for a
        3-D model, a volume: its central slices are the test input's (docs/context.md).
    overwrite : bool
        Replace an existing ``path``.
    author, license_id : str
        The package's author and licence (an SPDX identifier).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    napari_dfct.export.ExportError
        The extra is missing, the model has no intensity window, ``path`` exists (without
        ``overwrite``) or cannot be written, or the sample is unusable (a
        :class:`ValueError`).

    Examples
    --------
    >>> import pathlib, tempfile, zipfile
    >>> import napari_dfct as dfct
    >>> sim = dfct.simulate(64, specimens=4, rotations=2)
    >>> res = dfct.train(sim.input, sim.target, recipe="paper", epochs=1, preset="tiny",
    ...                  patch=32, batch_size=4, device="cpu")
    >>> tmp = tempfile.TemporaryDirectory()
    >>> out = pathlib.Path(tmp.name) / "model.zip"
    >>> dfct.export(res, out, sample=sim.input) == out
    True
    >>> "rdf.yaml" in zipfile.ZipFile(out).namelist()
    True
    >>> tmp.cleanup()
    """
    from .checkpoint import LoadedModel, save_checkpoint
    from .export import export_bioimageio
    from .train import FitResult

    kwargs: dict[str, Any] = {
        "sample": sample,
        "overwrite": overwrite,
        "author": author,
        "license": license_id,
    }
    if isinstance(model, LoadedModel) and model.path is not None:
        return export_bioimageio(model.path, path, **kwargs)
    if isinstance(model, FitResult) and model.model_dir is None:
        if model.model is None:
            raise ValueError("this training run finished no epoch: there is no model to export")
        with tempfile.TemporaryDirectory(prefix="dfct-export-") as tmp:
            folder = save_checkpoint(Path(tmp) / "model", model.model, model.config)
            return export_bioimageio(folder, path, **kwargs)
    if isinstance(model, FitResult) and model.model_dir is not None:
        return export_bioimageio(model.model_dir, path, **kwargs)
    if isinstance(model, (str, os.PathLike)):
        return export_bioimageio(model, path, **kwargs)
    raise TypeError(
        "model must be a training result, a loaded model or a model folder, got "
        f"{type(model).__name__}"
    )


# --------------------------------------------------------------------------- measure
def _roi_set(rois: Any, n_slices: int | None, size: int, slice_index: int | None) -> ROISet:
    """The :class:`~napari_dfct.roi.ROISet` of ``rois`` (an ROISet, a dict such as
    ``meta.json``'s, a simulation, or the path of a ``meta.json`` or its folder)."""
    from .roi import ROISet, read_meta
    from .simulate import Simulation

    if isinstance(rois, ROISet):
        rois = rois.to_dict()
    elif isinstance(rois, Simulation):
        rois = rois.meta
    elif isinstance(rois, (str, os.PathLike)):
        meta, meta_path = read_meta(Path(rois))
        if meta is None:
            raise ValueError(f"no ROIs: {meta_path} does not exist")
        rois = meta
    if not isinstance(rois, dict):
        raise TypeError(
            "rois must be an ROISet, a dict of ROIs, a simulation or the path of a "
            f"meta.json, got {type(rois).__name__}"
        )
    return ROISet.from_meta(rois, n_slices, image_size=size, slice=slice_index)


def measure(
    image: np.ndarray | Simulation,
    rois: Any = None,
    *,
    model: ModelLike = None,
    reference: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    slice_index: int | None = None,
    linewidth: int = 1,
) -> Measurement:
    """The paper's image-quality figures of one slice: CNR, edge FWHM and, with a
    reference, the error CNR, PSNR and SSIM (``dfct measure``).

    Parameters
    ----------
    image : numpy.ndarray or Simulation
        A slice ``(Y, X)`` or a volume ``(Z, Y, X)``; or a simulation from
        :func:`simulate`, whose input is measured, with its ROIs, its truth as the
        reference and its body mask unless given.
    rois : dict or Simulation or ROISet or path, optional
        The lung (signal) and air (background) ROIs and the FWHM line: a dict with
        ``signal_center``, ``background_center`` ((row, col) pixels) and optionally
        ``roi_size``, ``line`` and ``slice``, or per-slice ``rois`` (as in the
        ``meta.json`` of ``dfct simulate``); a simulation; an
        :class:`~napari_dfct.roi.ROISet`; or a ``meta.json`` (or its folder).
    model : FitResult or LoadedModel or path, optional
        Measure this model's prediction of the slice instead of the image itself.
    reference : numpy.ndarray, optional
        Same shape as the image (e.g. the simulation's truth): adds the error CNR,
        PSNR and SSIM.
    mask : numpy.ndarray, optional
        Body mask (same shape, non-zero inside): adds PSNR, SSIM and RMSE inside the
        body; used with a reference only.
    slice_index : int, optional
        The slice of a volume; default the ROIs' slice, else the central one.
    linewidth : int
        Width in pixels of the profile across the edge (averaged).

    Returns
    -------
    Measurement
        ``cnr`` (a :class:`~napari_dfct.metrics.CNRResult`), ``fwhm``, ``error_cnr``,
        ``psnr``, ``ssim``, ...; :meth:`~napari_dfct.metrics.Measurement.to_dict` gives
        them as one JSON-friendly dict, as ``dfct measure --json`` prints it.

    Raises
    ------
    ValueError
        Missing or malformed ROIs, a slice outside the volume, or shapes that differ.

    See Also
    --------
    cnr, fwhm, error_cnr : one figure at a time.

    Examples
    --------
    >>> import napari_dfct as dfct
    >>> sim = dfct.simulate(64, specimens=4, rotations=2)
    >>> m = dfct.measure(sim)  # the input, with the simulation's ROIs and truth
    >>> bool(m.cnr.cnr > 0), m.has_reference, m.has_mask
    (True, True, True)
    >>> row = m.to_dict()  # one flat dict, as ``dfct measure --json`` prints it
    >>> [k for k in ("cnr", "fwhm", "error_cnr", "psnr_body") if k in row]
    ['cnr', 'fwhm', 'error_cnr', 'psnr_body']

    ROIs of your own, on one slice (here 2-D: no slice to choose):

    >>> rois = {"signal_center": (37, 22), "background_center": (26, 22), "roi_size": 6}
    >>> dfct.measure(sim.input[1], rois).cnr.signal.n
    36
    """
    from .metrics import measure_all
    from .simulate import Simulation

    if isinstance(image, Simulation):
        sim = image
        image = sim.input
        rois = sim if rois is None else rois
        reference = sim.truth if reference is None else reference
        mask = sim.mask if mask is None else mask
    volume = np.asarray(image)
    if volume.ndim not in (2, 3):
        raise ValueError(f"expected a slice (Y, X) or a volume (Z, Y, X), got {volume.shape}")
    if rois is None:
        raise ValueError("give the ROIs (rois=...): a dict, a simulation or a meta.json")
    n_slices = volume.shape[0] if volume.ndim == 3 else None
    roi_set = _roi_set(rois, n_slices, volume.shape[-1], slice_index if n_slices else None)
    k = roi_set.slice if n_slices else None
    if model is not None:
        net, window = _network(model)
        from .infer import predict as _predict

        # a volume's slice through the volume: a context model reads its neighbours
        image2d = (
            _predict(net, volume, window=window)
            if k is None
            else _predict(net, volume, slices=[k], window=window)[0]
        )
    else:
        image2d = volume if k is None else volume[k]

    def one_slice(a: np.ndarray | None, what: str) -> np.ndarray | None:
        if a is None:
            return None
        a = np.asarray(a)
        if a.shape == volume.shape:
            return a if k is None else a[k]
        if a.shape == volume.shape[-2:]:
            return a
        raise ValueError(f"{what} shape {a.shape} differs from image shape {volume.shape}")

    result = measure_all(
        image2d,
        roi_set.signal_center,
        roi_set.background_center,
        line=roi_set.line,
        size=roi_set.roi_size,
        reference=one_slice(reference, "reference"),
        mask=one_slice(mask, "mask"),
        linewidth=linewidth,
    )
    return result
