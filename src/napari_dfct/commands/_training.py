"""Training options shared by ``dfct train`` and ``dfct grid``, generated from
:class:`napari_dfct.train.TrainConfig`.

Every option whose field carries help text (``TrainConfig`` field metadata) becomes a flag
(``batch_size`` -> ``--batch-size``). Options left out keep the chosen recipe's value
(:data:`napari_dfct.train.RECIPES`), so no default is restated here: the help shows each
recipe's value instead. Every option (``--recipe`` and ``--device`` included) is absent
from the parsed arguments unless given, so that resuming a run (``dfct train --resume``)
can take the saved value of each option left out and compare each option given.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

from ._errors import CLIError


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


#: TrainConfig fields not named by a ``--<name>`` option (None: no option).
_OPTIONS = {
    "augment": "augmentation (--no-augment)",
    "amp": "bf16 autocast (--no-amp)",
    "keep_state": None,
    "model_kwargs": None,
}


def option_name(name: str) -> str | None:
    """A :class:`TrainConfig` field as the command line names it: its option (with what
    it switches off, for ``--no-...`` options), or None when it has none."""
    return _OPTIONS[name] if name in _OPTIONS else _flag(name)


def _field_default(name: str):
    from ..train.config import TrainConfig

    return next(f.default for f in fields(TrainConfig) if f.name == name)


def _recipe_values(name: str) -> dict:
    """The value of option ``name`` in every recipe: the recipe's own, else the field's
    default (what :func:`~napari_dfct.train.recipe_config` gives, without building a
    config, whose default loss would load torch for the help text)."""
    from ..train.config import RECIPES

    default = _field_default(name)
    return {r: RECIPES[r].get(name, default) for r in RECIPES}


def _default_text(name: str) -> str:
    from ..train import DEFAULT_RECIPE

    values = _recipe_values(name)
    if len(set(map(repr, values.values()))) == 1:
        return f"(default: {values[DEFAULT_RECIPE]})"
    return "(" + "; ".join(f"recipe {r}: {v}" for r, v in values.items()) + ")"


def recipe_help() -> str:
    """One paragraph per recipe: what it is and how it differs from the paper's."""
    import textwrap

    from ..train import DEFAULT_RECIPE, RECIPE_NOTES, RECIPES

    lines = []
    for name in RECIPES:
        mark = " (default)" if name == DEFAULT_RECIPE else ""
        lines.append(
            textwrap.fill(
                f"{name}{mark}: {RECIPE_NOTES[name]}",
                width=88,
                initial_indent="  ",
                subsequent_indent="    ",
            )
        )
    return "\n".join(lines)


def add_training_arguments(parser: argparse.ArgumentParser, *, seed: bool = False) -> None:
    """Add ``--recipe`` and one flag per :class:`TrainConfig` option to ``parser``."""
    from ..train import DEFAULT_RECIPE, RECIPES
    from ..train.config import option_fields

    g = parser.add_argument_group(
        "training (options left out take the recipe's value; --recipe paper is the paper's "
        "protocol)"
    )
    g.add_argument(
        "--recipe",
        default=argparse.SUPPRESS,
        choices=tuple(RECIPES),
        help=f"training recipe; see the description (default: {DEFAULT_RECIPE})",
    )
    for f in option_fields():
        typ = type(f.default)
        kw = {"choices": f.metadata["choices"]} if "choices" in f.metadata else {}
        g.add_argument(
            _flag(f.name),
            dest=f.name,
            type=typ,
            default=argparse.SUPPRESS,
            metavar=f.name.upper() if not kw else None,
            help=f"{f.metadata['help']} {_default_text(f.name)}",
            **kw,
        )
    if seed:
        g.add_argument(
            "--seed",
            type=int,
            default=argparse.SUPPRESS,
            help="seed of the split, the initial weights and the patch order (default: 0)",
        )
    g.add_argument(
        "--window",
        default=argparse.SUPPRESS,
        metavar="LOW,HIGH",
        help="intensity clip window (default: the 0.1/99.9 percentiles of the "
        "training slices, input and target pooled, widened by 20 %% on each "
        "side)",
    )
    g.add_argument(
        "--no-augment",
        dest="augment",
        action="store_false",
        default=argparse.SUPPRESS,
        help="train without flips and rotations (augmentation is on by default)",
    )
    g.add_argument(
        "--no-amp",
        dest="amp",
        action="store_false",
        default=argparse.SUPPRESS,
        help="no bf16 autocast on CUDA (on by default)",
    )
    g.add_argument(
        "--tensorboard",
        action="store_true",
        default=argparse.SUPPRESS,
        help="also write TensorBoard event files (losses, learning rate, a preview "
        "image per epoch) to MODEL_DIR/tensorboard; needs the tensorboard "
        "package (pip install 'napari-dfct[tensorboard]')",
    )
    g.add_argument(
        "--device",
        default=argparse.SUPPRESS,
        help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps "
        f"(default: {_field_default('device')})",
    )


def given_options(args: argparse.Namespace) -> dict:
    """The :class:`TrainConfig` fields given on the command line, by name (``--recipe``
    and ``--device`` included; a ``--window`` as a dict)."""
    from ..train.config import option_fields

    names = [f.name for f in option_fields()]
    kw = {
        n: getattr(args, n)
        for n in names + ["seed", "augment", "amp", "tensorboard", "recipe", "device"]
        if hasattr(args, n)
    }
    if hasattr(args, "window"):
        try:
            low, high = (float(v) for v in str(args.window).split(","))
        except ValueError:
            raise CLIError(f"bad --window {args.window!r}: use LOW,HIGH with LOW < HIGH") from None
        kw["window"] = {"low": low, "high": high}
    return kw


def train_config_from_args(args: argparse.Namespace, **extra):
    """A :class:`~napari_dfct.train.TrainConfig`: the recipe, then the given options."""
    from ..train import DEFAULT_RECIPE, recipe_config

    kw = given_options(args)
    kw.update(extra)
    try:
        config = recipe_config(kw.pop("recipe", DEFAULT_RECIPE), **kw)
        config.validate()
        if config.tensorboard:
            from ..train.logs import check_tensorboard

            check_tensorboard()  # before any work, not in every run
    except (TypeError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    return config
