"""``dfct measure``: CNR and edge FWHM (and, against a reference, PSNR/SSIM, the error CNR
and the body-masked PSNR/SSIM/RMSE) on one slice."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from ._errors import CLIError

NAME = "measure"
HELP = "measure CNR and edge FWHM (truth-based metrics with a reference) on one slice"
DESCRIPTION = (
    "Measure the paper's image-quality figures on one slice of IMAGE: the CNR between a "
    "signal (lung) ROI and a background (air) ROI, and the FWHM in pixels of the line "
    "spread function along a line across the edge (erf fit; default line: from the signal "
    "centre to the background centre). With --reference (e.g. the simulation's truth.tif), "
    "PSNR and SSIM as well, and the error CNR: the same contrast over the standard "
    "deviations of IMAGE - REF in the two ROIs (texture removed by smoothing counts as "
    "error). With a body mask as well (--mask, or by default the simulation's body.tif "
    "next to IMAGE), PSNR, SSIM and RMSE inside the body. Coordinates are (row, col) pixels "
    "of the slice. When --signal/--background are not given and IMAGE's folder holds a "
    "meta.json written by 'dfct simulate', its ROIs, line, ROI size and slice are used."
)
ORDER = 40


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="TIFF, .npy/.npz or DICOM image or volume")
    # defaults are resolved in run() (options, then meta.json, then built-ins): SUPPRESS
    # keeps the help formatter from printing "(default: None)"
    parser.add_argument(
        "--signal",
        metavar="R,C",
        default=argparse.SUPPRESS,
        help="signal (lung) ROI centre, row,col (default: from meta.json)",
    )
    parser.add_argument(
        "--background",
        metavar="R,C",
        default=argparse.SUPPRESS,
        help="background (air) ROI centre, row,col (default: from meta.json)",
    )
    parser.add_argument(
        "--roi-size",
        type=int,
        default=argparse.SUPPRESS,
        metavar="N",
        help="ROI side length in pixels (default: meta.json's roi_size, else 30)",
    )
    parser.add_argument(
        "--line",
        metavar="R0,C0,R1,C1",
        default=argparse.SUPPRESS,
        help="FWHM line (default: meta.json's line, else signal -> background centre)",
    )
    parser.add_argument(
        "--slice",
        type=int,
        default=argparse.SUPPRESS,
        metavar="K",
        help="slice index of a volume (default: meta.json's slice, else the central slice)",
    )
    parser.add_argument(
        "--reference",
        metavar="REF",
        default=argparse.SUPPRESS,
        help="reference image or volume (same shape) for PSNR, SSIM and the error CNR",
    )
    parser.add_argument(
        "--mask",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="body mask (same shape as IMAGE, or one slice; non-zero inside) "
        "for PSNR, SSIM and RMSE inside the body; needs --reference "
        "(default: the mask named in meta.json, else body.tif next to "
        "IMAGE, when present)",
    )
    parser.add_argument(
        "--linewidth",
        type=int,
        default=1,
        metavar="W",
        help="width in pixels of the profile across the edge (averaged)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (strict JSON: undefined and infinite "
        "values, such as the PSNR of identical images, are null)",
    )


# --------------------------------------------------------------------------------------
def _numbers(text: str, n: int, option: str) -> list[float]:
    parts = [p for p in str(text).replace(";", ",").split(",") if p.strip() != ""]
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        raise CLIError(f"{option} expects {n} comma-separated numbers, got {text!r}") from None
    if len(vals) != n or not all(math.isfinite(v) for v in vals):
        raise CLIError(f"{option} expects {n} comma-separated finite numbers, got {text!r}")
    return vals


def _read(path: str, what: str) -> tuple[np.ndarray, dict]:
    from ..io import read_volume

    p = Path(path)
    if not p.exists():
        raise CLIError(f"{what} {path!r} does not exist")
    try:
        data, info = read_volume(p)
    except (ValueError, OSError) as exc:
        raise CLIError(f"cannot read {what} {path!r}: {exc}") from None
    data = np.asarray(data)
    if data.ndim not in (2, 3):
        raise CLIError(f"{what} {path!r} has shape {data.shape}; expected (Y, X) or (Z, Y, X)")
    return data, info


def _check_slice(data: np.ndarray, k: int | None, what: str) -> None:
    """The --slice option against the image (2-D: only 0; 3-D: a valid index)."""
    if data.ndim == 2:
        if k not in (None, 0):
            raise CLIError(f"--slice {k}: {what} is a single 2-D slice")
        return
    z = data.shape[0]
    if k is not None and not -z <= k < z:
        raise CLIError(f"--slice {k} is out of range for {what} with {z} slices")


def _num(v, fmt="{:.4g}") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return fmt.format(v)


# --------------------------------------------------------------------------------------
def _rois(args: argparse.Namespace, volume: np.ndarray):
    """The ROIs (:class:`napari_dfct.roi.ROISet`): the options, else the meta.json next
    to the image (of ``dfct simulate``), which is then the source of every default."""
    from ..roi import ROISet, read_meta

    meta = meta_path = None
    if args.signal is None and args.background is None:
        try:
            meta, meta_path = read_meta(Path(args.image))
        except ValueError as exc:
            raise CLIError(str(exc)) from None
        if meta is None:
            raise CLIError(
                f"give --signal R,C and --background R,C (no meta.json next to {args.image})"
            )
    elif args.signal is None or args.background is None:
        raise CLIError("give both --signal R,C and --background R,C")
    options = {
        "signal_center": _numbers(str(args.signal), 2, "--signal") if meta is None else None,
        "background_center": (
            _numbers(str(args.background), 2, "--background") if meta is None else None
        ),
        "roi_size": args.roi_size,
        "line": None,
        # a 2-D image has one slice: meta.json's slice does not apply to it
        "slice": args.slice if volume.ndim == 3 else 0,
    }
    if args.roi_size is not None and args.roi_size < 2:
        raise CLIError(f"--roi-size must be at least 2, got {args.roi_size}")
    if args.line is not None:
        v = _numbers(args.line, 4, "--line")
        options["line"] = [[v[0], v[1]], [v[2], v[3]]]
    if args.linewidth < 1:
        raise CLIError(f"--linewidth must be at least 1, got {args.linewidth}")
    _check_slice(volume, args.slice, f"image {args.image!r}")
    n_slices = volume.shape[0] if volume.ndim == 3 else None
    try:
        rois = ROISet.from_meta(meta, n_slices, **options)
    except ValueError as exc:  # only meta.json's values are left unchecked here
        raise CLIError(f"{meta_path}: {exc}") from None
    return rois, meta_path


def run(args: argparse.Namespace) -> int:
    from .. import metrics

    for name in ("signal", "background", "roi_size", "line", "slice", "reference", "mask"):
        if not hasattr(args, name):
            setattr(args, name, None)
    if args.mask is not None and args.reference is None:
        raise CLIError(
            "--mask needs --reference (the body metrics compare IMAGE with a "
            "reference inside the mask)"
        )
    volume, _info = _read(args.image, "image")
    rois, meta_path = _rois(args, volume)
    k = rois.slice if volume.ndim == 3 else None
    image2d = volume if k is None else volume[k]

    reference2d = None
    if args.reference is not None:
        ref_volume, _ = _read(args.reference, "reference")
        if ref_volume.shape != volume.shape:
            raise CLIError(
                f"reference shape {ref_volume.shape} differs from image shape {volume.shape}"
            )
        reference2d = ref_volume if ref_volume.ndim == 2 else ref_volume[k]
    mask2d, mask_path = _mask(args, volume, k) if reference2d is not None else (None, None)

    m = metrics.measure_all(
        image2d,
        rois.signal_center,
        rois.background_center,
        line=rois.line,
        size=rois.roi_size,
        reference=reference2d,
        mask=mask2d,
        linewidth=args.linewidth,
    )
    result = m.to_dict()
    if args.json:
        out = {
            "image": str(args.image),
            "slice": k,
            "shape": list(image2d.shape),
            "roi_size": rois.roi_size,
            "reference": args.reference,
            "mask": str(mask_path) if mask_path is not None else None,
            "rois_from": str(meta_path) if meta_path is not None else "options",
            **result,
        }
        print(json.dumps(out, allow_nan=False))
        return 0

    print(_table(args, result, m, image2d.shape, k, volume, rois.roi_size, meta_path, mask_path))
    return 0


def _default_mask(image: str) -> Path | None:
    """The body mask of a simulation folder (:func:`napari_dfct.roi.default_mask_path`)."""
    from ..roi import default_mask_path

    return default_mask_path(image)


def _mask(
    args: argparse.Namespace, volume: np.ndarray, k: int | None
) -> tuple[np.ndarray | None, Path | None]:
    """The body mask's slice and its path: --mask, else the simulation's default."""
    path = Path(args.mask) if args.mask is not None else _default_mask(args.image)
    if path is None:
        return None, None
    data, _ = _read(str(path), "mask")
    if data.shape == volume.shape:
        mask2d = data if data.ndim == 2 else data[k]
    elif data.ndim == 2 and volume.ndim == 3 and data.shape == volume.shape[1:]:
        mask2d = data  # one mask for every slice
    else:
        raise CLIError(f"mask shape {data.shape} differs from image shape {volume.shape}")
    return np.asarray(mask2d) != 0, path


def _table(args, r: dict, m, shape, k, volume, size, meta_path, mask_path=None) -> str:
    where = f"slice {k} of {volume.shape[0]}" if k is not None else "2-D image"
    rows = [
        ("image", f"{args.image}  ({where}, {shape[0]}x{shape[1]})"),
        ("ROIs", f"{size}x{size} px" + (f", from {meta_path}" if meta_path else "")),
    ]
    for role in ("signal", "background"):
        c = r[f"{role}_center"]
        rows.append(
            (
                role,
                (
                    f"centre ({c[0]:g}, {c[1]:g})   mean {_num(r[f'{role}_mean'])}   "
                    f"std {_num(r[f'{role}_std'])}   n {r[f'{role}_n']}"
                ),
            )
        )
    reasons = r["reasons"]
    cnr = (
        f"{r['cnr']:.3f} +/- {r['cnr_stderr']:.3f}"
        if r["cnr"] is not None
        else f"n/a ({reasons.get('cnr')})"
    )
    rows.append(("CNR", cnr))
    (r0, c0), (r1, c1) = r["line"]
    if r["fwhm"] is not None:
        extra = f"edge at {r['edge_position']:.1f} px along the line"
        if r["fwhm_halfmax"] is not None:
            extra += f"; half-max check {r['fwhm_halfmax']:.2f} px"
        fwhm = f"{r['fwhm']:.2f} +/- {r['fwhm_stderr']:.2f} px   ({extra})"
    else:
        fwhm = f"n/a ({reasons.get('fwhm')})"
    rows.append(("FWHM", fwhm))
    rows.append(("line", f"({r0:g}, {c0:g}) -> ({r1:g}, {c1:g})"))
    if args.reference is not None:
        # from the Measurement: the dict has None for an infinite PSNR too
        rows.append(
            (
                "PSNR",
                f"{_num(m.psnr, '{:.2f}')} dB"
                if not math.isnan(m.psnr)
                else f"n/a ({reasons.get('psnr')})",
            )
        )
        rows.append(
            (
                "SSIM",
                _num(r["ssim"], "{:.4f}")
                if r["ssim"] is not None
                else f"n/a ({reasons.get('ssim', reasons.get('psnr'))})",
            )
        )
        ecnr = m.error_cnr.error_cnr if m.error_cnr is not None else float("nan")
        rows.append(
            (
                "error CNR",
                _num(ecnr, "{:.3f}")
                if not math.isnan(ecnr)
                else f"n/a ({reasons.get('error_cnr')})",
            )
        )
        rows.append(("reference", str(args.reference)))
    if mask_path is not None:
        why = reasons.get("psnr_body")
        rows.append(
            (
                "PSNR body",
                f"{_num(m.psnr_body, '{:.2f}')} dB"
                if not math.isnan(m.psnr_body)
                else f"n/a ({why})",
            )
        )
        rows.append(
            (
                "SSIM body",
                _num(m.ssim_body, "{:.4f}")
                if not math.isnan(m.ssim_body)
                else f"n/a ({reasons.get('ssim_body', why)})",
            )
        )
        rows.append(
            ("RMSE body", _num(m.rmse_body) if not math.isnan(m.rmse_body) else f"n/a ({why})")
        )
        rows.append(("mask", str(mask_path)))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
