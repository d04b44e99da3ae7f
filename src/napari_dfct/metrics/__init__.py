"""Image-quality metrics for dark-field CT slices: CNR, edge FWHM, PSNR and SSIM, and the
truth-based error CNR and body-masked PSNR/SSIM/RMSE.

The paper judges streak reduction by two numbers measured on one axial slice:

* the **contrast-to-noise ratio** between a lung-tissue ROI (signal) and an air ROI
  (background), ``CNR = (mu_s - mu_b) / sqrt(sigma_s**2 + sigma_b**2)``;
* the **FWHM** (pixels) of the line spread function (LSF), the derivative of the edge
  spread function sampled along the line between the two ROI centres.

With a streak-free truth (simulations), PSNR and SSIM against it are reported as well,
and two truth-based metrics that the classic ones lack (:mod:`.truth`):

* the **error CNR**, ``(mu_s - mu_b) / sqrt(var(e_s) + var(e_b))`` with
  ``e = image - truth`` in each ROI: the paper's CNR with the lung's real texture taken out
  of the noise term, so smoothing texture is penalised instead of rewarded;
* **PSNR, SSIM and RMSE inside a body mask** (``body.tif`` of a simulation), since the
  whole-slice values are dominated by the air around the body.

Every function takes one 2-D slice. Data- or geometry-dependent degeneracies (an ROI
partly outside the image, NaNs, zero noise, a line that is too short or leaves the image,
a flat profile, an edge at the end of the line, a failed fit, a non-2-D array) never raise
and never produce a misleading number: the value is NaN and ``reason`` says why. Only
malformed arguments (a centre that is not a pair of numbers, an unknown option) raise
``ValueError``.

Only the two ROIs and the pixels next to the line are read, so CNR and FWHM cost well
under a few milliseconds on an 800x800 slice. PSNR and SSIM read the whole slice (SSIM is
by far the most expensive metric): :func:`measure` computes them only when a reference is
given, and interactive callers should cache them per slice, since they do not depend on
the ROIs.

The package is split by concern: :mod:`.cnr` (ROIs and CNR), :mod:`.edge` (line profile,
erf fit, FWHM), :mod:`.image` (PSNR, SSIM), :mod:`.truth` (error CNR, body-masked PSNR,
SSIM, RMSE) and :mod:`.measurement` (everything at once);
every public name is available from ``napari_dfct.metrics`` itself.

This package imports neither Qt nor napari.
"""

from __future__ import annotations

from .cnr import CNRResult, ROIStats, cnr, cnr_stderr, roi_bounds, roi_stats
from .edge import FWHM_PER_SIGMA, FWHMResult, erf_edge, fwhm, line_profile
from .image import psnr, reference_metrics, ssim
from .measurement import Measurement, measure, measure_all
from .truth import ErrorCNRResult, body_metrics, error_cnr, psnr_body, rmse_body, ssim_body

__all__ = [
    "FWHM_PER_SIGMA",
    "CNRResult",
    "ErrorCNRResult",
    "FWHMResult",
    "Measurement",
    "ROIStats",
    "body_metrics",
    "cnr",
    "cnr_stderr",
    "erf_edge",
    "error_cnr",
    "fwhm",
    "line_profile",
    "measure",
    "measure_all",
    "psnr",
    "psnr_body",
    "reference_metrics",
    "rmse_body",
    "roi_bounds",
    "roi_stats",
    "ssim",
    "ssim_body",
]
