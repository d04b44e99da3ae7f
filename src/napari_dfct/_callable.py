"""Packages that are also functions of the public API.

``napari_dfct.simulate``, ``napari_dfct.train`` and ``napari_dfct.export`` are
subpackages (the simulator, the training loop, the exporter) and, in the public API
(:mod:`napari_dfct.api`), functions of the same names. Each of these packages is
therefore callable: ``napari_dfct.train(inputs, targets, ...)`` calls
:func:`napari_dfct.api.train`, while ``from napari_dfct.train import fit`` and
``napari_dfct.train.TrainConfig`` keep working. :func:`inspect.signature` of the package
gives the function's signature.

Nothing here imports torch; the API module is imported on the first call.
"""

from __future__ import annotations

import importlib
import sys
import types

__all__ = ["ApiPackage", "make_callable"]


class ApiPackage(types.ModuleType):
    """A package whose call is the API function of the same name (:mod:`napari_dfct.api`)."""

    def _api_function(self):
        api = importlib.import_module("napari_dfct.api")
        return getattr(api, self.__name__.rpartition(".")[2])

    def __call__(self, *args, **kwargs):
        return self._api_function()(*args, **kwargs)

    @property
    def __signature__(self):
        import inspect

        return inspect.signature(self._api_function())


def make_callable(name: str) -> None:
    """Make the (imported) package ``name`` an :class:`ApiPackage`."""
    sys.modules[name].__class__ = ApiPackage
