"""The ``jaxflow`` command's entry: the parser of every command and :func:`main`.
"""

import argparse
import gc
import shlex
import sys

from jaxflow import __version__
from jaxflow.cli import _files
from jaxflow.cli._commands import cmd_info, cmd_plot, cmd_threshold, cmd_verify
from jaxflow.cli._errors import CliError, exit_status_help
from jaxflow.cli._experiment import _add_experiment
from jaxflow.cli._files import FIGURE_FORMATS, _remove_created_dirs
from jaxflow.cli._parsing import _parse, _Parser
from jaxflow.cli._process import _check_environment, _configure_process

__all__ = [
    "build_parser", "main",
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``jaxflow`` command (one sub-parser per command).

    >>> from jaxflow import cli
    >>> args = cli.build_parser().parse_args(["phase-diagram", "--depths", "2,3", "--quiet"])
    >>> args.command, args.name, args.quiet, vars(args)["field:depths"].values()
    ('phase-diagram', 'phase-diagram', True, [2.0, 3.0])
    """
    from jaxflow import experiments

    parser = _Parser(prog="jaxflow", description="The ``jaxflow`` command.",
                     epilog=exit_status_help())
    parser.add_argument("--version", action="version", version=f"jaxflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    short = experiments.get("phase-diagram")
    _add_experiment(sub, short, help=f"{short.summary} (short for `jaxflow experiment "
                    f"{short.name}`)")
    p = sub.add_parser("experiment", help="run one of the registered experiments",
                       description="Run a registered experiment; `jaxflow experiment NAME "
                                   "--help` lists its options\n(one flag per field of its config).")
    names = p.add_subparsers(dest="name", required=True, metavar="NAME")
    for e in experiments.EXPERIMENTS:
        _add_experiment(names, e, help=e.summary)

    p = sub.add_parser("plot", help="redraw the figures of a saved experiment dataset (.nc)")
    p.add_argument("file", help="a dataset written by jaxflow (NAME.nc)")
    p.add_argument("--out", help="output directory (default: the file's), or a figure file "
                   "F.png, F.pdf or F.svg (the experiment's figure, or the one named F; "
                   "several figures as F-NAME.suffix)")
    p.add_argument("--format", choices=FIGURE_FORMATS,
                   help="figure files' format in an --out directory (default png)")
    p.add_argument("--salvage", action="store_true",
                   help="plot a dataset that does not match its checksum anyway (with a warning)")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("threshold", help="theory threshold of one (depth, ratio)")
    p.add_argument("--depth", type=float, required=True, help="depth N >= 1 (inf allowed)")
    p.add_argument("--ratio", type=float, required=True,
                   help="ratio r = sigma*_i / sigma*_j > 1 of the two targets")
    p.add_argument("--start", type=float, default=0.1, help="the start fraction")
    p.add_argument("--finish", type=float, default=0.9, help="the finish fraction")
    p.set_defaults(func=cmd_threshold)

    p = sub.add_parser("verify",
                       help="check stores' chunks and cells and datasets against their checksums")
    p.add_argument("dir", help="a store (*.zarr, *.cells), a dataset (*.nc) or a directory "
                               "holding them (an --out)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("info", help="versions, devices, float64, cache")
    p.set_defaults(func=cmd_info)
    return parser


def command() -> int:
    """The ``jaxflow`` executable (and ``python -m jaxflow.cli``): :func:`main` on
    ``sys.argv``, then a quick exit.

    At exit Python's garbage collector walks every object still alive, the traced programs of
    the run among them: 0.6 s of the default phase diagram's 8-9 s (measured 0.80-0.84 s from
    the command's return to the process's end, 0.20 s with the objects frozen). Nothing left
    needs collecting once the command has returned (its files are written and closed), so they
    are frozen out of the collector's reach (``gc.freeze``); exit handlers still run.
    The same holds for what the imports before :func:`main` made (jax, diffrax, xarray:
    about 180,000 tracked objects, none of them garbage): they are frozen first, so the collector's
    passes during the run walk only what the run makes (measured on the default phase
    diagram, warm: its passes took 0.65 s of the run, 0.25 s frozen).
    :func:`main` itself, called in a longer-lived process (a notebook, a test), changes
    nothing of the collector.
    """
    gc.freeze()
    status = main()
    gc.freeze()
    gc.disable()
    return status


def main(argv=None) -> int:
    """Entry point of the ``jaxflow`` command; returns the exit status, one of
    :data:`jaxflow.cli.EXIT_STATUSES` (2 on bad input, 3 when an answer is not ok).

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    >>> from jaxflow import cli
    >>> cli.main(["threshold", "--depth", "2", "--ratio", "2"])  # doctest: +ELLIPSIS
    depth 2, ratio 2, start 0.1, finish 0.9
    threshold sigma0_th / sigma*_j = 6.85166...e-04
    ln threshold                  = -7.285849...
    ln leading-order asymptote    = -7.284820...
    0
    """
    parser = build_parser()
    try:
        _check_environment()
        _configure_process()
        args = _parse(parser, argv)
        # The datasets' provenance (provenance.stamp): the command as typed, whether run as
        # `jaxflow`, `python -m jaxflow.cli` or cli.main(argv).
        args.command_line = shlex.join(["jaxflow", *(sys.argv[1:] if argv is None else argv)])
        return args.func(args)
    except CliError as err:
        _remove_created_dirs()
        print(f"jaxflow: error: {err}", file=sys.stderr)
        return err.status
    except KeyboardInterrupt:
        _remove_created_dirs()
        print("jaxflow: interrupted (rerun with --resume to continue)", file=sys.stderr)
        return 130
    finally:
        _files._CREATED_DIRS.clear()
