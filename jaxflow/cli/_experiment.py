"""``jaxflow experiment NAME`` (and its short name ``jaxflow phase-diagram``): one parser and one
run per registered experiment (:data:`jaxflow.experiments.EXPERIMENTS`).
"""

import argparse
import math
import os

from jaxflow import provenance
from jaxflow.cli import _process
from jaxflow.cli._errors import NOT_ANSWERED, CliError, DamagedError, exit_status_help
from jaxflow.cli._files import FIGURE_FORMATS, _check_out_dir, _export, _prepare_store
from jaxflow.cli._options import (
    _add_config_flags,
    _flag_values,
    _list_counts,
    _load_config,
    _Removed,
)
from jaxflow.cli._process import _init_distributed

# Private: what the other modules of jaxflow.cli use.
__all__ = [
    "_add_experiment", "_answered", "_check_size", "cmd_experiment", "_cost", "_experiment",
    "_experiment_config", "_header", "_run",
]


def _add_experiment(sub, e, help: str) -> None:
    """The parser of experiment ``e`` under ``sub``: ``jaxflow experiment NAME``, and the same
    parser again as ``jaxflow phase-diagram`` (one route, whatever the name it is reached by).

    Every experiment takes --config, --out, --smoke, --quiet, --format and one flag per config
    field (``--dtype`` where its config has a ``dtype``); one that keeps a store (its ``run``
    takes ``store``: every registered one) also --resume, one that checks its size
    --no-size-check, one that runs on several processes --distributed and its three flags.
    """
    options = e.run_options
    q = sub.add_parser(e.name, help=help, description=f"{e.name}: {e.summary}.\n\n"
                       "Precedence: defaults (smoke sizes with --smoke) < --config < flags.\n"
                       f"The resolved config is stored in {e.file_stem}.nc (attribute "
                       "'config') and can be\npassed back as --config.",
                       epilog=exit_status_help())
    q.add_argument("--config", metavar="FILE.toml", help="TOML file setting any option below")
    q.add_argument("--out", metavar="DIR", help=f"output directory (default: {e.default_out})")
    q.add_argument("--smoke", action="store_true", help="reduced sizes (seconds), for tests and CI")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.add_argument("--format", choices=FIGURE_FORMATS, default="png", help="figure files' format")
    if "store" in options:
        q.add_argument("--resume", action="store_true",
                       help=f"continue an interrupted run from its store {e.store_name} in --out "
                            "(finished parts are verified, missing or corrupt ones recomputed)")
    if "store" in options:
        q.add_argument("--ray", metavar="ADDRESS",
                       help="compute every chunk as a Ray task on the cluster at ADDRESS "
                            "(HOST:PORT, or auto: the running one, else a local one; also the "
                            "config key ray); workers return arrays, this process writes the "
                            "store, so --resume works with or without --ray")
    if "size_check" in options or hasattr(e.module, "check_size"):
        q.add_argument("--no-size-check", action="store_false", dest="size_check",
                       help="run even if the estimated memory or disk exceeds the machine's")
    if "process_index" in options:
        q.add_argument("--distributed", action="store_true",
                       help="one process per host via jax.distributed (no other flag needed on "
                            "SLURM, TPU pods)")
        q.add_argument("--coordinator", metavar="HOST:PORT",
                       help="HOST:PORT of process 0 (implies --distributed)")
        q.add_argument("--num-processes", type=int, dest="num_processes", metavar="P",
                       help="number of processes")
        q.add_argument("--process-id", type=int, dest="process_id", metavar="I",
                       help="this process, 0 .. P-1")
    if e.name == "phase-diagram":
        q.add_argument("--model", action=_Removed, help=argparse.SUPPRESS, message=(
            "--model was removed: the factor diagram is `jaxflow experiment factor-diagram` "
            "(its --ratio is the ratio between consecutive targets)"))
    _add_config_flags(q, e.config)
    q.set_defaults(func=cmd_experiment, name=e.name, size_check=True)


def _experiment(name: str):
    """The registry line of ``name`` (:data:`jaxflow.experiments.EXPERIMENTS`), else a CliError."""
    from jaxflow import experiments

    try:
        return experiments.get(name)
    except KeyError:
        known = ", ".join(experiments.names())
        raise CliError(f"experiment must be one of {known}, got {name!r}") from None


def cmd_experiment(args) -> int:
    """``jaxflow experiment NAME`` (``jaxflow phase-diagram`` for short): run a registered
    experiment, print its report, write ``STEM.nc`` and its figures.

    Called by :func:`main` with the parsed arguments (``--smoke`` for seconds-long runs: the
    config's ``SMOKE`` sizes, under any ``--config`` file). An experiment that keeps a store
    (its ``run`` takes ``store``) writes ``STEM.zarr`` or ``STEM.cells`` in ``--out`` as it
    goes, continued by ``--resume``; its size is checked first where it says how
    (``check_size``), else by its ``run`` before it starts.

    Its last line says whether every requested answer is ``ok``
    (:func:`jaxflow.engine.status.answer_report`: every lane's ``status`` and every derived
    ``*_status``); the exit status is 3 when one is not, after every output is written.
    """
    experiment = _experiment(args.name)
    options = experiment.run_options
    # From the axis counts, before the axes' values, the config, a folder or a thread exist.
    estimate = _check_size(experiment, args) if "store" in options else None
    config = _experiment_config(experiment, args)
    index, count = _init_distributed(args) if "process_index" in options else (0, 1)
    out = args.out or experiment.default_out
    run_options = {}
    if "store" in options:
        store = _prepare_store(out, experiment.store_name, args.resume, primary=index == 0)
        run_options.update(store=store, resume=args.resume)
    else:
        _check_out_dir(out)
        _process.enable_compilation_cache()
    if "process_index" in options:
        run_options.update(process_index=index, process_count=count)
    if "size_check" in options:
        run_options.update(size_check=args.size_check)
    if "store" in options:
        run_options.update(_executor(args, count))
    print(_header(args, config, run_options.get("store"), index, count, estimate), flush=True)
    ds = _run(experiment, config, args.quiet, run_options)
    if index != 0:
        print(f"process {index}: its chunks are in {run_options['store']}; process 0 writes "
              "the exports")
        return _answered(ds)
    provenance.stamp(ds, command=args.command_line, smoke=args.smoke)
    paths = _export(ds, out, experiment.file_stem, lambda: experiment.figures(ds), args.format)
    print(experiment.report(ds))
    print("\n".join(f"wrote {p}" for p in paths)
          + (f"\nstore {run_options['store']}" if "store" in run_options else ""))
    return _answered(ds)


def _executor(args, count: int) -> dict:
    """``{"executor": RayExecutor}`` with ``--ray`` (or the config file's ``ray`` key; the
    flag wins), else ``{}``."""
    from jaxflow.experiments.config import ConfigError, read_toml

    address = args.ray
    if address is None and args.config is not None:
        try:
            address = read_toml(args.config).get("ray")
        except ConfigError as err:
            raise CliError(str(err)) from None
    if address is None:
        return {}
    if count > 1:
        raise CliError("--ray and --distributed exclude each other: Ray spreads the chunks "
                       "itself, from one process")
    from jaxflow import sweep
    from jaxflow.sweep import ray_executor

    try:
        return {"executor": ray_executor.RayExecutor(address)}
    except sweep.SweepError as err:
        raise CliError(str(err)) from None


def _answered(ds) -> int:
    """Print the run's last line, every answer given or how many not and which; return the
    exit status (0, or 3 when some requested answer is not ok)."""
    from jaxflow.engine import status

    print(status.answer_report(ds), flush=True)
    return NOT_ANSWERED if status.not_answered(ds) else 0


def _experiment_config(experiment, args):
    """The resolved config: the defaults (``SMOKE`` with ``--smoke``) < ``--config`` < flags."""
    cls = experiment.config
    defaults = cls.SMOKE if args.smoke else None
    return _load_config(cls, args.config, _flag_values(args), defaults=defaults)


def _check_size(experiment, args):
    """The experiment's own estimate of its run (``module.check_size(counts, store)``, if it
    has one) from the counts of its lists alone, refused in one line when it does not fit the
    machine. ``--no-size-check`` skips it (the guard of one axis' values stays:
    ``_parsing._check_axis_length``)."""
    from jaxflow import sweep

    check = getattr(experiment.module, "check_size", None)
    if check is None or not args.size_check:
        return None
    counts = _list_counts(experiment.config, args)
    store = os.path.join(args.out or experiment.default_out, experiment.store_name)
    try:
        return check(counts, store)
    except sweep.SweepError as err:
        raise CliError(str(err)) from None


def _header(args, config, store, index: int, count: int, estimate) -> str:
    """``jaxflow NAME: N trajectories (a depths x b ratios x c scales), store S``: what the run
    is about to compute, on which process, at which estimated cost."""
    line = f"jaxflow {args.name}{' (smoke)' if args.smoke else ''}"
    axes = [(name, len(getattr(config, name))) for name in type(config).AXES]
    if axes:
        points = math.prod(n for _, n in axes)
        grid = " x ".join(f"{n} {name.removeprefix('log_')}" for name, n in axes)
        line += f": {points} trajectories ({grid})"
    if store is not None:
        line += f", store {store}"
    if getattr(args, "ray", None):
        line += f", on Ray ({args.ray})"
    if count > 1:
        line += f", process {index} of {count}"
    return line + (_cost(estimate) if estimate is not None else "")


def _run(experiment, config, quiet: bool, options: dict):
    """``experiment.run``, a damaged store a DamagedError and a refused sweep a CliError."""
    from jaxflow import sweep

    try:
        return experiment.run(config, quiet=quiet, **options)
    except sweep.StoreDamagedError as err:
        raise DamagedError(str(err)) from None
    except sweep.SweepError as err:
        raise CliError(str(err)) from None


def _cost(estimate) -> str:
    """``; estimated ...`` for the header line: memory, disk, and compute time on this machine."""
    import jax

    from jaxflow.sweep import resources as _resources

    seconds = estimate.seconds / max(1, jax.local_device_count())
    return (f"; estimated {_resources.format_bytes(estimate.memory)} memory, "
            f"{_resources.format_bytes(estimate.disk)} disk, ~{seconds:.3g} s of solving")
