"""napari-dfct: streak reduction for X-ray dark-field CT with amplified-loss U-Nets.

The public API (:mod:`napari_dfct.api`; ``docs/api.md``) is loaded on first use, so
``import napari_dfct`` imports neither torch nor napari nor Qt::

    import napari_dfct as dfct

    sim = dfct.simulate(64, specimens=8)
    res = dfct.train(sim.input, sim.target, epochs=2, preset="tiny", patch=32)
    m = dfct.measure(sim, model=res)

``simulate``, ``train`` and ``export`` are also subpackages (the simulator, the training
loop, the exporter); calling one calls the API function (:mod:`napari_dfct._callable`).
The core modules (``simulate``, ``io``, ``weights``, ``losses``, ``model``, ``data``,
``train``, ``checkpoint``, ``infer``, ``metrics``, ``experiment``) import neither Qt nor
napari; ``napari_dfct.widgets`` holds the napari dock widgets.
"""

import importlib

from ._threads import configure_openmp as _configure_openmp


def _installed_version() -> str:
    """The installed distribution's version when it is this very source tree; otherwise
    (a source tree imported from elsewhere, e.g. through PYTHONPATH, while another copy is
    installed) "0.0.0+unknown": another copy's version would be recorded in every saved
    model as the code that made it."""
    from importlib.metadata import PackageNotFoundError, distribution
    from pathlib import Path

    try:
        dist = distribution("napari-dfct")
    except PackageNotFoundError:
        return "0.0.0+unknown"
    here = Path(__file__).resolve()
    for f in dist.files or ():
        is_init = f.name == "__init__.py" and f.parent.name == "napari_dfct"
        if is_init and Path(str(dist.locate_file(f))).resolve() == here:
            return dist.version
    return "0.0.0+unknown"


try:  # written from the git tag when the package is built or installed (hatch-vcs)
    from ._version import __version__
except ImportError:  # a source tree that was not installed this way
    __version__ = _installed_version()

#: The public API: each name and the module it comes from, imported on first use.
_API = {
    "LossConfig": "loss_config",
    "TrainConfig": "train.config",
    "cnr": "metrics",
    "error_cnr": "metrics",
    "export": "api",
    "fwhm": "metrics",
    "load_model": "api",
    "measure": "api",
    "predict": "api",
    "recipe": "api",
    "simulate": "api",
    "train": "api",
}
#: Public names that are also subpackages: the (callable) package is the attribute.
_PACKAGES = ("export", "simulate", "train")

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _PACKAGES:
        return importlib.import_module(f"{__name__}.{name}")  # sets the attribute
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


# before anything imports torch: a short OpenMP spin, so that waiting threads do not
# burn the CPU that other jobs on a shared machine need (napari_dfct._threads; a
# GOMP_SPINCOUNT or OMP_WAIT_POLICY of the user's own is kept)
_configure_openmp()
