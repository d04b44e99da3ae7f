"""``dfct reader-study``: make a blinded pairwise reader study, report it, simulate readers."""

from __future__ import annotations

import argparse
import json

from ._errors import CLIError

NAME = "reader-study"
HELP = "blinded pairwise reader studies: make a study, report the readers' judgments, simulate"
DESCRIPTION = """\
A blinded pairwise reader study. `make` writes a self-contained study folder from candidate
volumes of one shape (e.g. the input, the target and models' predictions): every pair of
candidates on every chosen slice (or a balanced subset, --trials), sides and order drawn from
the seed, a fraction repeated later with the sides swapped, one intensity window per slice
for every candidate, images stored under neutral names with their SHA-256. Readers answer
in napari's Reader study widget; every answer is appended to STUDY_DIR/judgments.csv.
`report` prints the Bradley-Terry scores with bootstrap intervals, pairwise sign tests
(Holm), agreement (Krippendorff's alpha, Kendall's W), each reader's consistency and, with a
truth, the rank correlation with the error CNR, the PSNR in the body and the CNR.
`simulate` lets model observers answer every trial (for tests and planning).

examples:
  dfct reader-study make study --image input=sim/input.tif --image l2=pred-l2.tif \\
      --image target=sim/target.tif --slices 10-14 --reference sim/truth.tif
  dfct reader-study report study --json
  dfct reader-study simulate study --readers 5 --noise 0.01
"""
ORDER = 60


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    make = sub.add_parser("make", help="make a study folder", description="Make a study folder.")
    make.add_argument("study_dir", metavar="STUDY_DIR", help="new (or empty) study folder")
    make.add_argument(
        "--image",
        action="append",
        required=True,
        metavar="NAME=FILE",
        help="a candidate volume (TIFF, .npy/.npz, DICOM); repeat for each (at least 2)",
    )
    make.add_argument(
        "--slices", default=None, metavar="SPEC", help="center (default), all, 120-130 or 3,5,7"
    )
    make.add_argument(
        "--trials",
        type=int,
        default=None,
        metavar="N",
        help="a balanced subset of N trials (default: every pair on every slice)",
    )
    make.add_argument(
        "--repeats",
        type=float,
        default=0.1,
        metavar="F",
        help="fraction of trials repeated later with the sides swapped (default: 0.1)",
    )
    make.add_argument(
        "--seed", type=int, default=0, metavar="S", help="seed of the randomisation (default: 0)"
    )
    make.add_argument(
        "--window",
        default=None,
        metavar="LOW,HIGH",
        help=(
            "one intensity window for every slice (default: 1st-99th percentile of all "
            "candidates per slice)"
        ),
    )
    make.add_argument(
        "--reference",
        default=None,
        metavar="TRUTH",
        help=(
            "the truth, stored for the report's metrics and the model observer (with "
            "meta.json's ROIs and body.tif next to it)"
        ),
    )
    make.add_argument("--question", default=None, help="the question shown to readers")
    make.add_argument(
        "--allow-back", action="store_true", help="let readers go back and change answers"
    )
    rep = sub.add_parser(
        "report", help="report the judgments", description="Report a study's judgments."
    )
    rep.add_argument("study_dir", metavar="STUDY_DIR")
    rep.add_argument("--json", action="store_true", help="print one JSON object")
    rep.add_argument(
        "--reference",
        default=None,
        metavar="TRUTH",
        help="truth for the metrics (default: the one stored in the study)",
    )
    rep.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="bootstrap resamples (default: 1000)",
    )
    rep.add_argument(
        "--seed", type=int, default=0, metavar="S", help="bootstrap seed (default: 0)"
    )
    sim = sub.add_parser(
        "simulate",
        help="let model observers answer every trial",
        description=(
            "Model observers answer every trial they have not answered (readers observer-1..N)."
        ),
    )
    sim.add_argument("study_dir", metavar="STUDY_DIR")
    sim.add_argument("--readers", type=int, required=True, metavar="N")
    sim.add_argument(
        "--noise",
        type=float,
        required=True,
        metavar="X",
        help="decision noise in units of the window's width",
    )
    sim.add_argument(
        "--reference",
        default=None,
        metavar="TRUTH",
        help="truth (default: the one stored in the study)",
    )
    sim.add_argument("--seed", type=int, default=0, metavar="S")


def _images(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        name, sep, path = v.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise CLIError(f"--image wants NAME=FILE, got {v!r}")
        if name.strip() in out:
            raise CLIError(f"duplicate candidate name {name.strip()!r}")
        out[name.strip()] = path.strip()
    return out


def _window(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    try:
        lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise CLIError(f"--window wants LOW,HIGH, got {text!r}") from None
    return lo, hi


def run(args: argparse.Namespace) -> int:
    if args.action is None:
        raise CLIError("choose an action: make, report or simulate (see dfct reader-study -h)")
    try:
        return {"make": _make, "report": _report, "simulate": _simulate}[args.action](args)
    except (ValueError, ImportError, OSError) as exc:
        raise CLIError(str(exc)) from None


def _make(args: argparse.Namespace) -> int:
    from ..reader_study.study import DEFAULT_QUESTION, make_study

    study = make_study(
        args.study_dir,
        _images(args.image),
        slices=args.slices,
        trials=args.trials,
        repeats=args.repeats,
        seed=args.seed,
        window=_window(args.window),
        question=args.question or DEFAULT_QUESTION,
        reference=args.reference,
        allow_back=args.allow_back,
    )
    repeats = sum(t.repeat_of is not None for t in study.trials)
    print(
        f"{study.dir}: {len(study.candidates)} candidates, {len(study.slices)} slice(s), "
        f"{len(study.trials)} trials ({repeats} repeated with the sides swapped)"
    )
    return 0


def _report(args: argparse.Namespace) -> int:
    from ..reader_study.report import format_report, report

    result = report(
        args.study_dir, reference=args.reference, n_boot=args.bootstrap, seed=args.seed
    )
    if args.json:
        from .._files import json_safe

        print(json.dumps(json_safe(result), allow_nan=False))
    else:
        print(format_report(result))
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from ..reader_study.observer import simulate_readers

    n = simulate_readers(
        args.study_dir,
        readers=args.readers,
        noise=args.noise,
        reference=args.reference,
        seed=args.seed,
    )
    print(f"{args.study_dir}: {n} answers written by {args.readers} model observer(s)")
    return 0
