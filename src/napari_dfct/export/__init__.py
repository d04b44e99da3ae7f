"""Model export: bioimage.io model packages (spec 0.5).

:func:`export_bioimageio` writes one ``.zip`` from a napari-dfct model folder (details in
:mod:`napari_dfct.export.package`); every package ships the source of
:mod:`napari_dfct.model` as its standalone architecture file. Building a package needs the
optional extra ``[bioimageio]`` (``bioimageio.spec``); importing this module does not.
"""

from .package import (
    ARCHITECTURE_FILE,
    ExportError,
    bioimageio_missing,
    check_export_target,
    check_license,
    export_bioimageio,
    read_sample,
    sample_input,
)

__all__ = [
    "ARCHITECTURE_FILE",
    "ExportError",
    "bioimageio_missing",
    "check_export_target",
    "check_license",
    "export_bioimageio",
    "read_sample",
    "sample_input",
]
