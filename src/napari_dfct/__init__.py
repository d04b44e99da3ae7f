"""napari-dfct: streak reduction for X-ray dark-field CT with amplified-loss U-Nets.

The core modules (``simulate``, ``io``, ``weights``, ``losses``, ``model``, ``data``,
``train``, ``checkpoint``, ``infer``, ``metrics``, ``experiment``) import neither Qt nor
napari; ``napari_dfct.widgets`` holds the napari dock widgets.
"""

from ._threads import configure_openmp as _configure_openmp

try:  # written from the git tag when the package is built or installed (hatch-vcs)
    from ._version import __version__
except ImportError:  # a source tree that was not installed this way
    from importlib.metadata import PackageNotFoundError, version

    try:
        __version__ = version("napari-dfct")
    except PackageNotFoundError:
        __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

# before anything imports torch: a short OpenMP spin, so that waiting threads do not
# burn the CPU that other jobs on a shared machine need (napari_dfct._threads; a
# GOMP_SPINCOUNT or OMP_WAIT_POLICY of the user's own is kept)
_configure_openmp()
