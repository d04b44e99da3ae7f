"""Draw the amplification profiles (docs/images/weights-profiles.png) and print the table of
effective loss scales used in docs/loss-amplification.md.

Usage::

    python docs/make_weights_figure.py            # figure + table
    python docs/make_weights_figure.py --table    # table only
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from napari_dfct import weights as W  # noqa: E402
from napari_dfct.losses import LossConfig, effective_scale, paper_configs  # noqa: E402

OUT = Path(__file__).resolve().parent / "images" / "weights-profiles.png"


def scale_table(shape=(800, 800), patch=128) -> str:
    """Markdown table of the scale factors per configuration (L2 shown; in paper mode L1
    has the same factors)."""
    rows = list(paper_configs(losses=("l2",)))
    rows += [
        LossConfig.from_name(n)
        for n in (
            "l2+s+f-nonlinear-norm",
            "l2+f+s-nonlinear-norm",
            "l2+f-linear-spectral",
            "l2+f-nonlinear-spectral",
            "l1+f-nonlinear-spectral",
            "l2+s+f-nonlinear-spectral",
            "l2+f-nonlinear-spectral-norm",
        )
    ]
    lines = [
        "| configuration | scheme | mode | A_F(DC) | mean A_S (patches) | F factor | scale |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for cfg in rows:
        e = effective_scale(cfg, shape, patch=patch)
        lines.append(
            f"| `{cfg.name}` | {cfg.scheme} | {cfg.mode}{' (norm)' if cfg.normalize else ''} "
            f"| {e['a_f_dc']:.3f} | {e['spatial_factor']:.3f} | {e['frequency_factor']:.3f} "
            f"| {e['scale']:.3f} |"
        )
    return "\n".join(lines)


def draw(path: Path = OUT, slice_shape=(800, 800), patch=128) -> Path:
    fig, ax = plt.subplots(2, 3, figsize=(12, 7.2), constrained_layout=True)
    styles = {"none": ("0.6", ":"), "linear": ("C0", "-"), "nonlinear": ("C3", "-")}
    for kind, row, xlabel in (
        ("spatial", 0, "normalised radius r (0 = iso-centre, 1 = farthest corner)"),
        ("frequency", 1, "normalised radial frequency rho (0 = DC, 1 = highest)"),
    ):
        a = ax[row, 0]
        for prof in W.PROFILES:
            r, w = W.radial_profile(kind, prof, n=501)
            color, ls = styles[prof]
            a.plot(r, w, color=color, ls=ls, lw=2, label=prof)
        a.set(
            xlabel=xlabel,
            ylabel="A_S" if kind == "spatial" else "A_F",
            ylim=(0.95, 2.05),
            xlim=(0, 1),
        )
        a.grid(alpha=0.3)
        a.legend(loc="center left" if kind == "spatial" else "lower right")
        a.set_title("A_S(r)" if kind == "spatial" else "A_F(rho)")
        if kind == "spatial":
            a.axvline(W.SPATIAL_NONLINEAR_R0, color="C3", lw=0.8, ls="--")
            a.text(W.SPATIAL_NONLINEAR_R0 + 0.01, 1.75, "r0", fontsize=8, color="C3")
            a.axvline(2**-0.5, color="0.4", lw=0.8, ls="--")
            a.text(2**-0.5 + 0.01, 1.9, "inscribed\ncircle", fontsize=8, color="0.3")
        for col, prof in ((1, "linear"), (2, "nonlinear")):
            if kind == "spatial":
                img = W.spatial_weight_np(slice_shape, prof)
                title = f"A_S {prof}, {slice_shape[0]}x{slice_shape[1]} slice"
            else:
                img = W.fftshift(W.frequency_weight_np((patch, patch), prof))
                title = f"A_F {prof}, {patch}x{patch} patch, DC centred"
            im = ax[row, col].imshow(img, vmin=1, vmax=2, cmap="viridis")
            ax[row, col].set_title(title, fontsize=10)
            ax[row, col].set_axis_off()
        fig.colorbar(im, ax=ax[row, 1:], shrink=0.85, label="weight")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    # a 256-colour palette keeps the PNG small without visible loss
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", action="store_true", help="print the table only")
    args = ap.parse_args()
    if not args.table:
        print(f"wrote {draw()}")
    print(scale_table())


if __name__ == "__main__":
    main()
