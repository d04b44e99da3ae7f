"""Where the simulator's streaks sit in the spectrum, and which A_F profile follows them.

For independent simulated specimens it prints, per band of the normalised radial frequency
rho (the layout of ``weights.frequency_radius``), the power of the streak error
(input - truth), of the target's residual error (target - truth) and of the truth itself,
and the streak-to-truth ratio. The "streak emphasis" curve is log10 of that ratio,
rescaled to [0, 1] between the lowest band and its maximum and held at 1 beyond it; the
candidate frequency profiles ``A_F - 1`` are compared with it (RMS distance, and where
each lies above the linear profile most).

Usage::

    python docs/streak_spectrum.py                     # 16 specimens of 256x256
    python docs/streak_spectrum.py --size 512 --specimens 8
"""

from __future__ import annotations

import argparse

import numpy as np

from napari_dfct import weights as W
from napari_dfct.simulate import simulate_dfct


def band_powers(size: int, specimens: int, seed: int, bins: int) -> dict:
    sim = simulate_dfct(n_slices=specimens, size=size, seed=seed, specimens=True)
    inp, tgt, tru = (np.asarray(a, dtype=np.float64) for a in (sim.input, sim.target, sim.truth))
    rho = W.frequency_radius(inp.shape[1:])
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(rho, edges) - 1, 0, bins - 1)
    count = np.bincount(idx.ravel(), minlength=bins)
    out = {k: np.zeros(bins) for k in ("streak", "target", "truth")}
    for i in range(inp.shape[0]):
        for key, img in (
            ("streak", inp[i] - tru[i]),
            ("target", tgt[i] - tru[i]),
            ("truth", tru[i] - tru[i].mean()),
        ):
            p = np.abs(np.fft.fft2(img)) ** 2
            out[key] += np.bincount(idx.ravel(), weights=p.ravel(), minlength=bins) / count
    out["centre"] = 0.5 * (edges[:-1] + edges[1:])
    return out


def emphasis(ratio: np.ndarray) -> np.ndarray:
    """log10 ratio rescaled to [0, 1] from the first band to the maximum, held after it."""
    lg = np.log10(ratio)
    top = int(np.argmax(lg))
    e = (lg - lg[0]) / (lg[top] - lg[0])
    e[top:] = 1.0
    return np.clip(e, 0.0, 1.0)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--specimens", type=int, default=16)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--bins", type=int, default=20)
    a = ap.parse_args(argv)
    p = band_powers(a.size, a.specimens, a.seed, a.bins)
    ratio = p["streak"] / p["truth"]
    e = emphasis(ratio)
    rho = p["centre"]
    print(f"{a.specimens} specimens of {a.size}x{a.size} (seed {a.seed})")
    print("| rho | streak power share | streak/truth | target error/truth | emphasis |")
    print("| --- | --- | --- | --- | --- |")
    share = p["streak"] / p["streak"].sum()
    for i in range(a.bins):
        print(
            f"| {rho[i]:.3f} | {share[i]:.4f} | {ratio[i]:.3g} | "
            f"{p['target'][i] / p['truth'][i]:.3g} | {e[i]:.2f} |"
        )
    print()
    print("| profile | RMS distance to the emphasis | largest lift over linear at rho |")
    print("| --- | --- | --- |")
    fine = np.linspace(0.0, 1.0, 1001)
    for name in W.FREQUENCY_PROFILES:
        if name == "none":
            continue
        a_f = W.frequency_profile(rho, name) - 1.0
        lift = W.frequency_profile(fine, name) - (1.0 + fine)
        where = fine[int(np.argmax(lift))] if lift.max() > 1e-12 else float("nan")
        print(f"| {name} | {np.sqrt(np.mean((a_f - e) ** 2)):.3f} | {where:.2f} |")


if __name__ == "__main__":
    main()
