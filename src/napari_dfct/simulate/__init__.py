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

Two kinds of stack:

* **one acquisition** (the default, and the napari sample): all slices of one
  :func:`simulate_dfct` volume share that acquisition's vibration (the same view series
  in every detector row, as in a real cone-beam volume); only the smooth error profiles
  drift slowly along z, and the photon noise is drawn per slice. The streaks of
  neighbouring slices are therefore strongly correlated (about 0.8), so such a volume
  holds about one streak pattern, however many slices it has;
* **independent specimens** (``specimens=True``, ``dfct simulate --specimens N``): each
  slice is the central slice of its own scan of its own specimen (its own anatomy,
  vibration and noise), as the paper's training set of central slices of 89 independent
  scans. Use these to train and test a model;
* **volumes of many specimens** (:func:`save_volumes`, ``dfct simulate OUT --specimens N
  --slices Z``): a data set ``OUT/<specimen>/`` (each a volume of one acquisition of its
  own specimen) with ``OUT/pairs.csv``, for ``dfct train --pairs OUT``.

The anatomy is ``fixed`` by default (specimens differ by about 3 per cent) or ``varied``
(``anatomy="varied"``: body, lungs, heart, position and rotation vary by 15 per cent and
more), optionally with ``lesions`` (:mod:`.anatomy`).

The number of views defaults to three per pixel of width (2400 at 800 px, the paper's
shots per rotation); tiled gratings (ring artefacts), the noise level and the lung
texture are options (:class:`Physics`, :data:`PRESETS`); :func:`variance_shares` reports
how much of the input's lung-ROI variance streaks make up, against texture.

Modules
-------
:mod:`.phantom`
    Materials, labels and the thorax phantom (:func:`thorax_phantom`).
:mod:`.anatomy`
    The ``fixed`` and ``varied`` anatomy (:data:`ANATOMIES`) and lesions.
:mod:`.projector`
    Geometry, Joseph forward projection, FBP filter and back-projection
    (:func:`forward_project`, :func:`filter_sinogram`, :func:`back_project`,
    :func:`fbp`, :func:`view_angles`, :func:`detector_bins`).
:mod:`.acquisition`
    Physical parameters (:class:`Physics`), grating vibration and error fields, photon
    noise, :func:`simulate_dfct` and :class:`Simulation`.
:mod:`.rois`
    Lung and air ROIs (:func:`roi_size_for`, :func:`suggest_rois`).
:mod:`.realism`
    Default views (:func:`views_for`), specimen seeds (:func:`specimen_seeds`), the body
    mask (:func:`body_mask`), the streak share of the ROI variance
    (:func:`variance_shares`) and the anatomy's spread (:func:`anatomy_spread`).
:mod:`.presets`
    Named realism options (:data:`PRESETS`, :func:`preset_physics`).
:mod:`.budget`
    Memory estimate and check (:func:`estimate_memory`, :func:`check_memory`).
:mod:`.files`
    :func:`save_simulation` (input, target, truth, ``body.tif``, ``meta.json``; a set is
    replaced as a whole), :func:`load_simulation`, :func:`dataset_files`,
    :func:`check_dataset` (refuses files not written together) and
    :func:`recover_dataset` (cleans what a killed write left); :func:`save_dataset` (a
    data set of many specimens, replaced as a whole).
:mod:`.volumes`
    Volumes of many specimens (:func:`simulate_volumes`, :func:`save_volumes`).
:mod:`.oracle`
    The error energy of every view of a simulated slice (:func:`view_error_energy`), the
    truth behind the directional weight's angular part, and that angular part per slice
    (:func:`slice_angular`, :func:`folder_angular`) for an ``oracle`` directional loss.

The package is also the public API's :func:`napari_dfct.api.simulate`: calling it,
``napari_dfct.simulate(64, specimens=8)``, simulates a set (:mod:`napari_dfct._callable`).

Nothing here imports Qt or napari.
"""

from __future__ import annotations

from .._callable import make_callable as _make_callable
from .acquisition import Physics, Simulation, simulate_dfct
from .anatomy import ANATOMIES
from .budget import check_memory, estimate_memory
from .files import (
    check_dataset,
    dataset_files,
    load_simulation,
    recover_dataset,
    save_dataset,
    save_simulation,
)
from .oracle import folder_angular, oracle_folder, slice_angular, view_error_energy
from .phantom import LABELS, MATERIALS, Phantom, thorax_phantom
from .presets import MODEL_PRESETS, PRESETS, preset_physics
from .projector import _Geometry as _Geometry  # private, used by the projector tests
from .projector import (
    back_project,
    detector_bins,
    fbp,
    filter_sinogram,
    forward_project,
    view_angles,
)
from .realism import (
    MASK_FILE,
    anatomy_spread,
    body_mask,
    specimen_seeds,
    variance_shares,
    views_for,
)
from .rois import roi_size_for, suggest_rois
from .volumes import save_volumes, simulate_volumes

__all__ = [
    "ANATOMIES",
    "LABELS",
    "MASK_FILE",
    "MATERIALS",
    "MODEL_PRESETS",
    "PRESETS",
    "Phantom",
    "Physics",
    "Simulation",
    "anatomy_spread",
    "back_project",
    "body_mask",
    "check_dataset",
    "check_memory",
    "dataset_files",
    "detector_bins",
    "estimate_memory",
    "fbp",
    "filter_sinogram",
    "forward_project",
    "load_simulation",
    "preset_physics",
    "recover_dataset",
    "roi_size_for",
    "save_dataset",
    "save_simulation",
    "save_volumes",
    "simulate_dfct",
    "simulate_volumes",
    "specimen_seeds",
    "suggest_rois",
    "thorax_phantom",
    "variance_shares",
    "view_angles",
    "view_error_energy",
    "slice_angular",
    "folder_angular",
    "oracle_folder",
    "views_for",
]

# napari_dfct.simulate(...) calls napari_dfct.api.simulate: the package is also that function
_make_callable(__name__)
