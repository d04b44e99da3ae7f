"""Benchmark: one full measurement update (CNR + FWHM, and PSNR/SSIM) of five layers.

The measurement widget recomputes every image layer whenever an ROI moves (tens of times
per second while dragging) or the slice changes, so one update must cost a few
milliseconds. This script times one update of five 800x800 float32 slices (the paper's
slice size) two ways, in the same run:

* **ours**: :mod:`napari_dfct.metrics` - only the two ROIs and a crop around the line are
  read; the line coordinates are built vectorised; the erf fit has an analytic Jacobian;
  PSNR/SSIM (which read whole slices and do not depend on the ROIs) are cached per
  (layer, slice, reference) as the widget does, so an ROI drag does not recompute them;
* **naive**: a straightforward implementation - full-image boolean masks and
  ``numpy.ma`` statistics for each ROI, the whole slice converted to float64, a Python
  loop sampling the profile point by point with bilinear interpolation, a numerical-
  Jacobian fit, and PSNR/SSIM recomputed on every update.

Both give the same numbers (checked below). Run::

    python benchmarks/bench_metrics.py [--repeats 20] [--size 800] [--layers 5]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.optimize import curve_fit
from scipy.special import erf
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from napari_dfct import metrics


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------
def make_layers(size: int, n_layers: int, seed: int = 0):
    """``n_layers`` noisy versions of a blurred air/tissue edge (plus the clean truth)."""
    rng = np.random.default_rng(seed)
    c = np.arange(size, dtype=np.float64)
    clean = 0.2 + 0.8 * 0.5 * (1 + erf((c - size / 2) / (math.sqrt(2) * 6.0)))
    truth = np.broadcast_to(clean, (size, size)).astype(np.float32)
    layers = [
        (truth + rng.normal(0, 0.05 * (k + 1), truth.shape)).astype(np.float32)
        for k in range(n_layers)
    ]
    return layers, truth


# --------------------------------------------------------------------------------------
# naive reference implementation
# --------------------------------------------------------------------------------------
def naive_roi(image, center, size):
    mask = np.zeros(image.shape, dtype=bool)
    r0 = int(math.ceil(center[0] - size / 2))
    c0 = int(math.ceil(center[1] - size / 2))
    mask[r0 : r0 + size, c0 : c0 + size] = True
    m = np.ma.masked_array(image.astype(np.float64), mask=~mask)
    return float(m.mean()), float(m.std(ddof=1))


def naive_cnr(image, sig, bg, size=30):
    ms, ss = naive_roi(image, sig, size)
    mb, sb = naive_roi(image, bg, size)
    return (ms - mb) / math.sqrt(ss**2 + sb**2)


def naive_profile(image, start, end):
    img = image.astype(np.float64)
    length = math.hypot(end[0] - start[0], end[1] - start[1])
    n = int(math.ceil(length + 1))
    dist, prof = [], []
    for i in range(n):
        t = i / (n - 1)
        r = start[0] + t * (end[0] - start[0])
        c = start[1] + t * (end[1] - start[1])
        r0, c0 = int(math.floor(r)), int(math.floor(c))
        r1, c1 = min(r0 + 1, img.shape[0] - 1), min(c0 + 1, img.shape[1] - 1)
        fr, fc = r - r0, c - c0
        v = (
            (1 - fr) * (1 - fc) * img[r0, c0]
            + (1 - fr) * fc * img[r0, c1]
            + fr * (1 - fc) * img[r1, c0]
            + fr * fc * img[r1, c1]
        )
        dist.append(t * length)
        prof.append(v)
    return np.array(dist), np.array(prof)


def _erf(x, a, b, x0, s):
    return a + b * erf((x - x0) / (math.sqrt(2) * s))


def naive_fwhm(image, start, end):
    x, p = naive_profile(image, start, end)
    sm = gaussian_filter1d(p, 2.0 / (x[1] - x[0]), mode="nearest")
    d = np.gradient(sm, x)
    k = int(np.argmax(np.abs(d)))
    lo, hi = p[x <= x[k]].mean(), p[x >= x[k]].mean()
    popt, _ = curve_fit(_erf, x, p, p0=[(hi + lo) / 2, (hi - lo) / 2, x[k], 3.0], maxfev=4000)
    # same interpolation-blur correction as ours, computed point by point
    u = (end[0] - start[0]) / x[-1], (end[1] - start[1]) / x[-1]
    v = 0.0
    for xi in x:
        r = start[0] + xi * u[0]
        c = start[1] + xi * u[1]
        tr, tc = r - math.floor(r), c - math.floor(c)
        v += tr * (1 - tr) * u[0] ** 2 + tc * (1 - tc) * u[1] ** 2
    v /= x.size
    return metrics.FWHM_PER_SIGMA * math.sqrt(popt[3] ** 2 - v)


def naive_reference(image, ref):
    dr = float(ref.max() - ref.min())
    a, b = ref.astype(np.float64), image.astype(np.float64)
    return (
        peak_signal_noise_ratio(a, b, data_range=dr),
        structural_similarity(a, b, data_range=dr),
    )


# --------------------------------------------------------------------------------------
def _median_ms(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--size", type=int, default=800)
    ap.add_argument("--layers", type=int, default=5)
    args = ap.parse_args(argv)

    n = args.size
    layers, truth = make_layers(n, args.layers)
    sig = (n / 2, n / 2 + n / 8)
    bg = (n / 2, n / 2 - n / 8)
    line = (sig, bg)

    # the two implementations agree
    for img in layers:
        ours_c = metrics.cnr(img, sig, bg).cnr
        ours_f = metrics.fwhm(img, *line).fwhm
        assert abs(ours_c - naive_cnr(img, sig, bg)) < 1e-9 * max(1, abs(ours_c)), "CNR"
        nf = naive_fwhm(img, *line)
        assert abs(ours_f - nf) < 1e-4 * ours_f, f"FWHM {ours_f} vs {nf}"

    def ours_update():
        for img in layers:
            metrics.cnr(img, sig, bg)
            metrics.fwhm(img, *line)

    def naive_update():
        for img in layers:
            naive_cnr(img, sig, bg)
            naive_fwhm(img, *line)

    cache: dict = {}

    def ours_reference_cached():
        for k, img in enumerate(layers):
            key = (k, 0)  # (layer, slice): unchanged while an ROI is dragged
            if key not in cache:
                cache[key] = metrics.reference_metrics(img, truth)

    def ours_reference_uncached():
        for img in layers:
            metrics.reference_metrics(img, truth)

    def naive_reference_update():
        for img in layers:
            naive_reference(img, truth)

    r = args.repeats
    t_ours = _median_ms(ours_update, r)
    t_naive = _median_ms(naive_update, r)
    t_ref_first = _median_ms(ours_reference_uncached, max(3, r // 4))
    t_ref_cached = _median_ms(ours_reference_cached, r)
    t_ref_naive = _median_ms(naive_reference_update, max(3, r // 4))

    print(
        f"napari-dfct metrics benchmark: {args.layers} layers of {n}x{n} float32, "
        f"30x30 ROIs, {2 * n // 8} px line; median of {r} updates"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), "
        f"numpy {np.__version__}"
    )
    print()
    print(f"{'update':<44}{'ours (ms)':>11}{'naive (ms)':>12}{'ratio':>9}")
    print(
        f"{'CNR + FWHM (ROI drag / slice change)':<44}{t_ours:>11.2f}{t_naive:>12.2f}"
        f"{t_naive / t_ours:>8.1f}x"
    )
    print(
        f"{'PSNR + SSIM, ROI drag (cached in ours)':<44}{t_ref_cached:>11.3f}"
        f"{t_ref_naive:>12.2f}{'cached':>9}"
    )
    print(
        f"{'PSNR + SSIM, new slice (computed)':<44}{t_ref_first:>11.2f}{t_ref_naive:>12.2f}"
        f"{t_ref_naive / t_ref_first:>8.1f}x"
    )
    print(
        f"{'full update while dragging':<44}{t_ours + t_ref_cached:>11.2f}"
        f"{t_naive + t_ref_naive:>12.2f}"
        f"{(t_naive + t_ref_naive) / (t_ours + t_ref_cached):>8.1f}x"
    )
    print(f"\nper layer (ours): CNR + FWHM {t_ours / args.layers:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
