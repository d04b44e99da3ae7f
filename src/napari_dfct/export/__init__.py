"""Model export: bioimage.io model packages (spec 0.5).

:func:`export_bioimageio` writes one ``.zip`` from a napari-dfct model folder (details in
:mod:`napari_dfct.export.package`); every package ships the source of
:mod:`napari_dfct.model` as its standalone architecture file. Building a package needs the
optional extra ``[bioimageio]`` (``bioimageio.spec``); importing this module does not.

The package is also the public API's :func:`napari_dfct.api.export`: calling it,
``napari_dfct.export(model, "model.zip")``, writes a package (:mod:`napari_dfct._callable`).
"""

from .._callable import make_callable as _make_callable
from .package import (
    ARCHITECTURE_FILE,
    ExportError,
    bioimageio_missing,
    check_export_target,
    check_license,
    export_bioimageio,
    input_channel_names,
    model_context,
    model_input_sizes,
    read_sample,
    sample_input,
    tile_plan,
)
from .volume import model_patch_depth

__all__ = [
    "ARCHITECTURE_FILE",
    "ExportError",
    "bioimageio_missing",
    "check_export_target",
    "check_license",
    "export_bioimageio",
    "input_channel_names",
    "model_context",
    "model_input_sizes",
    "model_patch_depth",
    "read_sample",
    "sample_input",
    "tile_plan",
]

# napari_dfct.export(...) calls napari_dfct.api.export: the package is also that function
_make_callable(__name__)
