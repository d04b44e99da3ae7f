"""napari-dfct: streak reduction for X-ray dark-field CT with amplified-loss U-Nets.

The core modules (``simulate``, ``io``, ``weights``, ``losses``, ``model``, ``data``,
``train``, ``checkpoint``, ``infer``, ``metrics``, ``experiment``) import neither Qt nor
napari; ``napari_dfct.widgets`` holds the napari dock widgets.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
