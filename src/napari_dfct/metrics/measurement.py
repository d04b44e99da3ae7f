"""All metrics of one slice at once: :class:`Measurement`, :func:`measure_all` and
:func:`measure` (a JSON-friendly dict).

With a reference, the truth-based metrics of :mod:`.truth` come along: the error CNR
(with the ROIs) and, with a body mask as well, PSNR, SSIM and RMSE inside the body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._files import json_safe
from ._common import _NAN, _point
from .cnr import CNRResult, cnr
from .edge import FWHMResult, fwhm
from .image import reference_metrics
from .truth import ErrorCNRResult, body_metrics, error_cnr

__all__ = ["Measurement", "measure", "measure_all"]


@dataclass(frozen=True)
class Measurement:
    """All metrics of one slice: the full results, for plotting; :meth:`to_dict` for JSON.

    ``error_cnr`` (an :class:`~napari_dfct.metrics.truth.ErrorCNRResult`) is there when a
    reference was given, the ``*_body`` values when a body mask was given as well
    (``has_mask``); the classic ``cnr``, ``fwhm``, ``psnr`` and ``ssim`` do not depend on
    either.
    """

    cnr: CNRResult
    fwhm: FWHMResult
    psnr: float = _NAN
    ssim: float = _NAN
    psnr_reason: str | None = None
    ssim_reason: str | None = None
    has_reference: bool = False
    error_cnr: ErrorCNRResult | None = None
    psnr_body: float = _NAN
    ssim_body: float = _NAN
    rmse_body: float = _NAN
    body_reason: str | None = None
    ssim_body_reason: str | None = None
    has_mask: bool = False

    @property
    def reasons(self) -> dict[str, str]:
        out = {}
        if self.cnr.reason:
            out["cnr"] = self.cnr.reason
        if self.fwhm.reason:
            out["fwhm"] = self.fwhm.reason
        if self.has_reference:
            if self.psnr_reason:
                out["psnr"] = self.psnr_reason
            if self.ssim_reason and self.ssim_reason != self.psnr_reason:
                out["ssim"] = self.ssim_reason
        if self.error_cnr is not None and self.error_cnr.reason:
            out["error_cnr"] = self.error_cnr.reason
        if self.has_mask:
            if self.body_reason:
                out["psnr_body"] = self.body_reason
            if self.ssim_body_reason and self.ssim_body_reason != self.body_reason:
                out["ssim_body"] = self.ssim_body_reason
        return out

    @property
    def reason(self) -> str | None:
        r = self.reasons
        return "; ".join(f"{k.upper()}: {v}" for k, v in r.items()) if r else None

    def record(self) -> dict[str, Any]:
        """The flat record of :meth:`to_dict` with plain numbers: undefined values are NaN
        and an infinite PSNR (identical images) stays ``inf`` (e.g. for a CSV table)."""
        c, f, e = self.cnr, self.fwhm, self.error_cnr
        body = self.has_mask and self.has_reference
        return {
            "cnr": c.cnr,
            "cnr_stderr": c.stderr,
            "fwhm": f.fwhm,
            "fwhm_stderr": f.fwhm_stderr,
            "fwhm_halfmax": f.halfmax_fwhm,
            "edge_position": f.edge_position if f.reason is None else _NAN,
            "signal_mean": c.signal.mean,
            "signal_std": c.signal.std,
            "signal_n": int(c.signal.n),
            "background_mean": c.background.mean,
            "background_std": c.background.std,
            "background_n": int(c.background.n),
            "psnr": self.psnr if self.has_reference else _NAN,
            "ssim": self.ssim if self.has_reference else _NAN,
            "error_cnr": e.error_cnr if e is not None else _NAN,
            "signal_error_std": e.signal_error.std if e is not None else _NAN,
            "background_error_std": e.background_error.std if e is not None else _NAN,
            "psnr_body": self.psnr_body if body else _NAN,
            "ssim_body": self.ssim_body if body else _NAN,
            "rmse_body": self.rmse_body if body else _NAN,
            "reason": self.reason,
            "reasons": self.reasons,
            "signal_center": list(c.signal.center),
            "background_center": list(c.background.center),
            "line": [list(f.start), list(f.end)],
            "ddof": c.ddof,
        }

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON dict: :meth:`record` through the package's NaN rule
        (:func:`napari_dfct._files.json_safe`), so every non-finite number, NaN or the
        infinite PSNR of identical images, is None. A None value whose metric has no
        entry in ``reasons`` is infinite, not undefined."""
        return json_safe(self.record())


def measure_all(
    image2d: Any,
    signal_center: Any,
    background_center: Any,
    line: Any = None,
    size: Any = 30,
    reference: Any = None,
    *,
    mask: Any = None,
    background_size: Any = None,
    data_range: float | None = None,
    ddof: int = 1,
    linewidth: int = 1,
    **fwhm_kwargs,
) -> Measurement:
    """CNR, FWHM and (with a reference) PSNR/SSIM and the error CNR of one slice (with a
    body mask too: PSNR, SSIM and RMSE inside the body), as a :class:`Measurement`.

    Parameters are those of :func:`measure`; ``fwhm_kwargs`` go to :func:`fwhm`.
    """
    c = cnr(
        image2d, signal_center, background_center, size, background_size=background_size, ddof=ddof
    )
    if line is None:
        start, end = (
            _point(signal_center, "signal centre"),
            _point(background_center, "background centre"),
        )
    else:
        try:
            pts = np.asarray(line, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"line must be [[r0, c0], [r1, c1]], got {line!r}") from exc
        if pts.size != 4:
            raise ValueError(f"line must be [[r0, c0], [r1, c1]], got {line!r}")
        pts = pts.reshape(2, 2)
        start, end = pts[0], pts[1]
    f = fwhm(image2d, start, end, linewidth=linewidth, **fwhm_kwargs)
    if reference is None:
        return Measurement(c, f)
    rm = reference_metrics(image2d, reference, data_range)
    e = error_cnr(
        image2d,
        reference,
        signal_center,
        background_center,
        size,
        background_size=background_size,
        ddof=ddof,
    )
    body = {} if mask is None else body_metrics(image2d, reference, mask)
    return Measurement(
        c,
        f,
        rm["psnr"],
        rm["ssim"],
        rm["psnr_reason"],
        rm["ssim_reason"],
        True,
        e,
        body.get("psnr_body", _NAN),
        body.get("ssim_body", _NAN),
        body.get("rmse_body", _NAN),
        body.get("body_reason"),
        body.get("ssim_body_reason"),
        mask is not None,
    )


def measure(
    image2d: Any,
    signal_center: Any,
    background_center: Any,
    line: Any = None,
    size: Any = 30,
    reference: Any = None,
    **kwargs,
) -> dict[str, Any]:
    """All metrics of one slice as a JSON-friendly dict.

    Parameters
    ----------
    image2d : (M, N) array
        The slice.
    signal_center, background_center : (row, col)
        ROI centres (pixels).
    line : [[r0, c0], [r1, c1]], optional
        The FWHM line; defaults to signal centre -> background centre.
    size : int or (int, int), optional
        ROI size in pixels (default 30).
    reference : (M, N) array, optional
        Reference slice (e.g. the simulation's truth) for PSNR, SSIM and the error CNR
        (:func:`~napari_dfct.metrics.error_cnr`). Without it they are not computed (PSNR
        and SSIM read the whole slice; SSIM dominates the cost).
    **kwargs
        ``mask`` (the body mask, (M, N), non-zero inside: PSNR, SSIM and RMSE inside the
        body, :func:`~napari_dfct.metrics.body_metrics`; ignored without a reference),
        ``background_size``, ``data_range`` (of the whole-slice PSNR/SSIM), ``ddof``,
        ``linewidth`` and the keywords of :func:`fwhm`.

    Returns
    -------
    dict
        ``cnr, cnr_stderr, fwhm, fwhm_stderr, fwhm_halfmax, edge_position, signal_mean,
        signal_std, signal_n, background_mean, background_std, background_n, psnr, ssim,
        error_cnr, signal_error_std, background_error_std, psnr_body, ssim_body,
        rmse_body, reason, reasons, signal_center, background_center, line, ddof``. Undefined
        values are None, ``reason`` is None when everything asked for is defined, else a string
        naming each failing metric; ``reasons`` maps metric -> reason. Non-finite numbers
        are None as well (strict JSON): the PSNR of identical images, infinite, is None
        without a reason (:func:`measure_all` keeps ``inf``).
    """
    return measure_all(
        image2d, signal_center, background_center, line, size, reference, **kwargs
    ).to_dict()
