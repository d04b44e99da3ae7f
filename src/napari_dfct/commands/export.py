"""``dfct export``: write a bioimage.io model package of a model folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._errors import CLIError

NAME = "export"
HELP = "write a bioimage.io model package (.zip, spec 0.5) of a trained model"
DESCRIPTION = """\
Write a bioimage.io model package (spec 0.5) of a model folder written by `dfct train`:
pytorch_state_dict weights (weights.pt, a plain state dict), the U-Net as one standalone
source file (dfct_unet.py: the package runs without napari-dfct), test input/output
tensors, the intensity window as pre-processing (clip, scale_linear to [0, 1]) and
post-processing (scale_linear back to the input's units), a README with the loss
configuration and the training recipe, and a cover image. Needs the extra
napari-dfct[bioimageio]. Check a package with `bioimageio test OUT.zip`.

The output declares a halo of the network's receptive radius (for tools that predict in
tiles), so inputs are at least 60 x 60 (preset tiny) or 288 x 288 (small, paper). The test
tensors are a central crop of --data, at least that size and otherwise at most 256 x 256:
--data is a volume or slice file (--slice picks the slice, default the central one), a
`dfct simulate` folder (its input.tif) or a data set of scans (the first scan's slice);
without --data, a simulated slice. Give the model's own training data where you can.

A 2.5-D model (dfct train --context K) takes the slice and its 2K neighbours of one scan
as 2K+1 input channels (z_minus_1, z, z_plus_1 for K = 1; reflected at the scan's ends):
its test input is the chosen slice of --data with its neighbours, so --data must be a
volume or a data set of volumes (docs/context.md).

A 3-D model (dfct train --dims 3, patch depth d) takes a volume: axes batch, channel, z,
y, x, z at least d slices, the output with a z halo of e = d // 4 slices. Its test input
is one z-chunk of napari-dfct's prediction: d - 2e consecutive slices of --data around
--slice (default the central ones; 4 for d = 8) with e slices reflected at each end, so
--data must be a volume or a data set of volumes (docs/context.md).

Examples:
  dfct export models/l2-s l2-s.zip --data data/sim
  dfct export models/l2-s l2-s.zip --data scan.tif --slice 120 --author "A. Researcher"
"""
ORDER = 35


def register(parser: argparse.ArgumentParser) -> None:
    """Add the ``dfct export`` arguments."""
    parser.add_argument("model", metavar="MODEL_DIR", help="model folder from `dfct train`")
    parser.add_argument("out", metavar="OUT.zip", help="the package to write")
    parser.add_argument(
        "--data",
        metavar="FILE|DIR",
        help="data to cut the test tensors from (default: a simulated slice)",
    )
    parser.add_argument(
        "--slice",
        type=int,
        metavar="K",
        help="slice of a --data volume (default: the central one)",
    )
    parser.add_argument(
        "--author", default="napari-dfct user", help="the package's author: who trained the model"
    )
    parser.add_argument(
        "--license", default="CC-BY-4.0", help="SPDX licence of the model (default CC-BY-4.0)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT.zip")


def run(args: argparse.Namespace) -> int:
    """Export; print the package path; exit status 0 (2 on bad input)."""
    from ..export import (
        ExportError,
        check_export_target,
        export_bioimageio,
        model_context,
        model_patch_depth,
        read_sample,
    )

    model = Path(args.model).expanduser()
    try:
        out = check_export_target(args.out, overwrite=bool(args.overwrite))
        sample, words = (None, None)
        if args.data:
            # a 2.5-D model's test input is the slice and its neighbours; a 3-D model's, the
            # slices around it
            context, depth = model_context(model), model_patch_depth(model)
            sample, words = read_sample(args.data, args.slice, context, depth)
        elif args.slice is not None:
            raise ExportError("--slice needs --data")
        export_bioimageio(
            model,
            out,
            sample=sample,
            sample_source=words,
            overwrite=bool(args.overwrite),
            author=args.author,
            license=args.license,
            progress=lambda step: print(f"dfct export: {step}", file=sys.stderr),
        )
    except ExportError as exc:
        raise CLIError(str(exc)) from None
    except OSError as exc:
        raise CLIError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    print(f"bioimage.io package written: {out}")
    return 0
