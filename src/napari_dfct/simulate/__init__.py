"""Physics-based simulation of X-ray dark-field CT (DFCT) with vibration streaks.

The simulator builds a thorax phantom, projects it in a parallel-beam geometry over one
full gantry rotation, adds the errors of a rotating Talbot-Lau interferometer and
reconstructs by filtered back-projection (FBP). It returns three co-registered float32
volumes ``(Z, Y, X)`` in units of 1/m (linear diffusion coefficient):

``input``
    one rotation: strong view-dependent streaks plus photon noise;
``target``
    the mean of ``rotations`` rotations (20 as in the paper; the first of them is the
    input rotation): weaker streaks and less noise, but fine streaks remain because a small
    part of the vibration is locked to the gantry angle and repeats in every rotation;
``truth``
    the clean dark-field map through the very same projector and FBP (no errors, no noise).

All slices of one :func:`simulate_dfct` volume share one acquisition's vibration (the
same view series in every detector row, as in a real cone-beam volume); only the smooth
error profiles drift slowly along z, and the photon noise is drawn per slice.

Modules
-------
:mod:`.phantom`
    Materials, labels and the thorax phantom (:func:`thorax_phantom`).
:mod:`.projector`
    Geometry, Joseph forward projection, FBP filter and back-projection
    (:func:`forward_project`, :func:`filter_sinogram`, :func:`back_project`,
    :func:`fbp`, :func:`view_angles`, :func:`detector_bins`).
:mod:`.acquisition`
    Physical parameters (:class:`Physics`), grating vibration and error fields, photon
    noise, :func:`simulate_dfct` and :class:`Simulation`.
:mod:`.rois`
    Lung and air ROIs (:func:`roi_size_for`, :func:`suggest_rois`).
:mod:`.files`
    :func:`save_simulation` and :func:`load_simulation`.

Nothing here imports Qt or napari.
"""

from __future__ import annotations

from .acquisition import Physics, Simulation, simulate_dfct
from .files import load_simulation, save_simulation
from .phantom import LABELS, MATERIALS, Phantom, thorax_phantom
from .projector import _Geometry as _Geometry  # private, used by the projector tests
from .projector import (
    back_project,
    detector_bins,
    fbp,
    filter_sinogram,
    forward_project,
    view_angles,
)
from .rois import roi_size_for, suggest_rois

__all__ = [
    "LABELS",
    "MATERIALS",
    "Phantom",
    "Physics",
    "Simulation",
    "back_project",
    "detector_bins",
    "fbp",
    "filter_sinogram",
    "forward_project",
    "load_simulation",
    "roi_size_for",
    "save_simulation",
    "simulate_dfct",
    "suggest_rois",
    "thorax_phantom",
    "view_angles",
]
