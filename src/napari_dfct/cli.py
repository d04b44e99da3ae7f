"""The ``dfct`` command.

Each subcommand lives in a module of :mod:`napari_dfct.commands` that defines

``NAME``
    the subcommand name as typed (``"simulate"``),
``HELP``
    a one-line description,
``ORDER``
    an integer that places it in ``dfct --help`` (optional),
``register(parser)``
    adds the subcommand's arguments to its ``argparse`` parser,
``run(args) -> int``
    does the work and returns the exit status.

Any :class:`CLIError` (defined in :mod:`napari_dfct.commands._errors`, re-exported here)
raised by ``run`` becomes one ``dfct <cmd>: error: ...`` line on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from . import __version__, commands
from .commands._errors import CLIError
from .commands._help import HelpFormatter

__all__ = ["CLIError", "build_parser", "main"]


def _command_modules():
    mods = []
    for info in pkgutil.iter_modules(commands.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{commands.__name__}.{info.name}")
        if hasattr(mod, "register") and hasattr(mod, "run"):
            mods.append(mod)
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.NAME))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dfct",
        description=(
            "Dark-field CT streak reduction with amplified-loss U-Nets: simulate data, "
            "train, predict, measure CNR/FWHM and run the paper's experiment grid."
        ),
    )
    parser.add_argument("--version", action="version", version=f"napari-dfct {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(
            mod.NAME,
            help=mod.HELP,
            description=getattr(mod, "DESCRIPTION", mod.HELP),
            formatter_class=HelpFormatter,
        )
        mod.register(p)
        p.set_defaults(_run=mod.run, _name=mod.NAME)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        status = args._run(args)
    except CLIError as exc:
        print(f"dfct {args._name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dfct {args._name}: interrupted", file=sys.stderr)
        return 130
    return int(status or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
