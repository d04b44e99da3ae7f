"""Benchmark: simulated DFCT slices per second, ours vs a plain scikit-image pipeline.

Both pipelines simulate the same thorax slices (same phantom, same size, same views over
360 degrees, same vibration-error and noise model, Hann-windowed FBP) and produce the
same three images per slice: ``input`` (one rotation), ``target`` (mean of R rotations)
and ``truth``. Timed in the same run:

* **ours**: :func:`napari_dfct.simulate.simulate_dfct` - the attenuation and dark-field
  maps are projected once (Joseph's method as a batched ``embedding_bag`` gather, half
  of the views from mirror symmetry, a quarter of the index work from the 90-degree
  symmetry); per rotation only the error fields are added; FBP is linear, so the target
  is one FBP of the mean sinogram: 2 projections and 3 back-projections per slice,
  batched over slices.
* **naive** (scikit-image): per slice, ``skimage.transform.radon`` of the attenuation
  and of the dark-field map (2 projections), then ``iradon`` of the clean sinogram
  (truth) and of every rotation's sinogram, the target being the mean of the R
  reconstructions and the input the first of them: **R + 1 iradon per slice** (the input
  is one of the R rotations, so it costs no extra reconstruction). Phantom, error
  fields and noise come from the same code as ours and take the same time in both.
* **fringe**: the same call with ``model="fringe"`` (simulate/fringe.py): fringe
  intensities of every rotation, window and bin for the object and the reference scan,
  photon noise, the sliding-window least-squares retrieval and virtual phase stepping,
  then the same FBP.
* **naive, linear** (for reference): the same scikit-image pipeline using FBP linearity
  as ours does - 2 radon + 3 iradon per slice - to separate the gain from the projector
  and back-projector from the gain from doing fewer reconstructions.

The phantom is built inside each timed region (same function for all). The baselines
run on fewer slices (they cost the same per slice; nothing is batched). Run::

    python benchmarks/bench_simulate.py [--size 256] [--views 360] [--rotations 20]
        [--slices 16] [--baseline-slices 2] [--threads N]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

import numpy as np
import torch
from skimage.transform import iradon, radon

from napari_dfct import simulate as S
from napari_dfct.simulate import acquisition as _acq


def naive_pipeline(n_slices, size, n_views, rotations, seed=0, linear=False):
    """The scikit-image pipeline described in the module docstring."""
    phys = S.Physics()
    ph = S.thorax_phantom(
        size,
        n_slices,
        seed=seed,
        fov_mm=phys.fov_mm,
        z_extent_mm=phys.z_extent_mm,
        texture=phys.texture,
        vessel_fraction=phys.vessel_fraction,
        supersample=phys.supersample,
    )
    pix_m = ph.pixel_size_mm * 1e-3
    theta = np.degrees(S.view_angles(n_views))
    zeta = np.linspace(-1.0, 1.0, n_slices) if n_slices > 1 else np.zeros(1)
    rho = phys.correlated_fraction
    a_ind, a_com = math.sqrt(1 - rho), math.sqrt(rho)

    def recon(sino_vd):
        return iradon(sino_vd.T, theta, circle=False, filter_name="hann", output_size=size) / pix_m

    out = {k: np.empty((n_slices, size, size), np.float32) for k in ("input", "target", "truth")}
    for z in range(n_slices):
        p_mu = radon(ph.mu[z] * pix_m, theta, circle=False).T  # (V, D)
        p_eps = radon(ph.eps[z] * pix_m, theta, circle=False).T
        n_det = p_mu.shape[1]
        grad = np.gradient(p_mu, axis=-1) * (phys.edge_coupling_mm / ph.pixel_size_mm)
        att = phys.offset_coupling + phys.attenuation_coupling * p_mu
        sigma = np.sqrt(2 * np.exp(p_mu + 2 * p_eps) / (phys.n0 * phys.visibility**2))
        com = _acq._rotation_errors(phys, seed, None, n_views, n_det, zeta)
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, z)))

        # err reads this iteration's slice state and is only called within the iteration
        def err(r):
            dv, dp, pv, pp = _acq._rotation_errors(phys, seed, r, n_views, n_det, zeta)  # noqa: B023
            e_v = a_ind * np.outer(dv, pv[z]) + a_com * np.outer(com[0], com[2][z])  # noqa: B023
            e_p = a_ind * np.outer(dp, pp[z]) + a_com * np.outer(com[1], com[3][z])  # noqa: B023
            return e_v * att + e_p * grad + sigma * rng.standard_normal(p_mu.shape)  # noqa: B023

        out["truth"][z] = recon(p_eps)
        if linear:
            errs = [err(r) for r in range(rotations)]
            out["input"][z] = recon(p_eps + errs[0])
            out["target"][z] = recon(p_eps + np.mean(errs, axis=0))
        else:
            acc = np.zeros((size, size))
            for r in range(rotations):
                rec = recon(p_eps + err(r))
                if r == 0:
                    out["input"][z] = rec
                acc += rec
            out["target"][z] = acc / rotations
    return out


def timed(fn, *args, **kwargs):
    """Wall-clock seconds (and the result); the process CPU seconds go to ``CPU``."""
    t0, c0 = time.perf_counter(), time.process_time()
    res = fn(*args, **kwargs)
    CPU[fn.__name__] = time.process_time() - c0
    return time.perf_counter() - t0, res


CPU: dict[str, float] = {}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--views", type=int, default=360)
    ap.add_argument("--rotations", type=int, default=20)
    ap.add_argument("--slices", type=int, default=16, help="slices for ours")
    ap.add_argument("--baseline-slices", type=int, default=2, help="slices for the naive")
    ap.add_argument("--skip-naive", action="store_true", help="only the linear baseline")
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch intra-op threads (0: torch's default); on a machine whose "
        "cores are busy with other work, 1 avoids thread contention",
    )
    ap.add_argument(
        "--skip-fringe-batch", action="store_true", help="time the fringe model on 1 slice only"
    )
    args = ap.parse_args(argv)
    n, v, r = args.size, args.views, args.rotations
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"numpy {np.__version__}"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average at start: {load:.2f} (other processes share the CPUs)")
    print(f"slices {n}x{n}, {v} views over 360 deg, {r} rotations (target), Hann FBP\n")

    S.simulate_dfct(n_slices=1, size=64, n_views=32, rotations=2)  # warm-up (imports)
    t1, _ = timed(S.simulate_dfct, n_slices=1, size=n, n_views=v, rotations=r)
    c1 = CPU["simulate_dfct"]
    tz, ours = timed(S.simulate_dfct, n_slices=args.slices, size=n, n_views=v, rotations=r)
    cz = CPU["simulate_dfct"]
    ours_1 = 1 / t1
    ours_z = args.slices / tz
    print(f"ours     1 slice : {t1:7.2f} s  -> {ours_1:7.2f} slices/s   (CPU {c1:.2f} s)")
    print(
        f"ours    {args.slices:2d} slices: {tz:7.2f} s  -> {ours_z:7.2f} slices/s   "
        f"(CPU {cz:.2f} s)"
    )

    # the fringe-level model (simulate/fringe.py), same slices, same run
    kw = dict(size=n, n_views=v, rotations=r, model="fringe")
    tf1, _ = timed(S.simulate_dfct, n_slices=1, **kw)
    cf1 = CPU["simulate_dfct"]
    print(
        f"fringe   1 slice : {tf1:7.2f} s  -> {1 / tf1:7.2f} slices/s   (CPU {cf1:.2f} s; "
        f"{tf1 / t1:.1f} x first-order)"
    )
    if not args.skip_fringe_batch:
        tfz, _ = timed(S.simulate_dfct, n_slices=args.slices, **kw)
        print(
            f"fringe  {args.slices:2d} slices: {tfz:7.2f} s  -> {args.slices / tfz:7.2f} "
            f"slices/s   (CPU {CPU['simulate_dfct']:.2f} s; {tfz / tz:.1f} x first-order)"
        )

    zb = args.baseline_slices
    tl, lin = timed(naive_pipeline, zb, n, v, r, linear=True)
    lin_rate = zb / tl
    print(
        f"naive, linear (2 radon + 3 iradon / slice), {zb} slices: {tl:7.2f} s  -> "
        f"{lin_rate:7.3f} slices/s"
    )
    if not args.skip_naive:
        tn, naive = timed(naive_pipeline, zb, n, v, r, linear=False)
        naive_rate = zb / tn
        print(
            f"naive (2 radon + {r + 1} iradon / slice), {zb} slices: {tn:7.2f} s  -> "
            f"{naive_rate:7.3f} slices/s"
        )

    # sanity: the clean reconstructions agree (same phantom, same FBP up to the projector)
    same = S.simulate_dfct(n_slices=zb, size=n, n_views=v, rotations=r)  # same z as naive
    t_ours, t_lin = same.truth, lin["truth"]
    rel = float(np.sqrt(np.mean((t_ours - t_lin) ** 2)) / np.abs(t_lin).max())
    print(f"\ntruth, ours vs scikit-image: relative RMS difference {rel:.4f}")
    print("\nratio (ours, batched, slices/s / baseline slices/s):")
    if not args.skip_naive:
        print(f"  vs naive         : {ours_z / naive_rate:8.1f} x")
    print(f"  vs naive, linear : {ours_z / lin_rate:8.1f} x")
    print(f"  single slice vs naive, linear: {ours_1 / lin_rate:8.1f} x")


if __name__ == "__main__":
    main()
