"""The ``jaxflow`` command.

    jaxflow experiment NAME [--config FILE.toml] [--out DIR] [--smoke] [--quiet]
                            [--format png|pdf|svg] [--FIELD VALUE ...]
                            [--resume] [--no-size-check]            (an experiment with a store)
                            [--distributed [--coordinator HOST:PORT --num-processes P
                                            --process-id I]]        (the phase diagram)
    jaxflow phase-diagram ...     (short for `jaxflow experiment phase-diagram ...`)
    jaxflow plot FILE.nc [--out DIR | --out FIGURE.png|.pdf|.svg] [--format png|pdf|svg]
                         [--salvage]
    jaxflow threshold --depth N --ratio R [--start S --finish F]
    jaxflow verify DIR | STORE.zarr | FILE.nc
    jaxflow info

The experiments (their names, configs, runs, reports and figures) come from the registry
:data:`jaxflow.experiments.EXPERIMENTS`; this module only parses, writes files and prints.

Every command prints where it wrote what, shows a progress bar on long work (on a terminal),
and ends with one of these exit statuses, a one-line reason on stderr for each failure:

    0    done, every output written
    1    a damaged store or dataset (found by ``jaxflow verify`` or any command reading one)
    2    bad input, refused before any work (nothing created)
    130  interrupted (SIGINT); finished chunks are kept for ``--resume``

Each exported dataset comes first, sealed with a checksum of its variables; its figures follow
(a figure that cannot be drawn is skipped with a warning, never the data).

``jaxflow experiment NAME --help`` lists the experiment's options: one flag per field of its
config class (``--depths 2,3``), applied over ``--config`` (which applies over the defaults, or
the smoke sizes with ``--smoke``).
"""

import argparse
import dataclasses
import math
import os
import re
import shlex
import sys
import types
import typing

from jaxflow import __version__, provenance

__all__ = [
    "CACHE_ENV", "CliError", "build_parser", "cache_dir", "cmd_experiment", "cmd_info",
    "cmd_plot", "cmd_threshold", "cmd_verify", "enable_compilation_cache", "main",
]

CACHE_ENV = "JAXFLOW_CACHE_DIR"
FIGURE_FORMATS = ("png", "pdf", "svg")  # jaxflow.plot.FORMATS (plot imports matplotlib)


class CliError(Exception):
    """A user error: printed as one line, exit status 2.

    >>> from jaxflow import cli
    >>> cli.main(["threshold", "--depth", "3", "--ratio", "1"])   # prints one line on stderr
    2
    """

    status = 2


class DamagedError(CliError):
    """A damaged store or dataset: printed as one line, exit status 1.

    >>> import os, tempfile
    >>> from jaxflow import cli
    >>> path = os.path.join(tempfile.mkdtemp(), "bad.nc")
    >>> _ = open(path, "wb").write(b"not netCDF")
    >>> cli.main(["plot", path])   # one line on stderr
    1
    """

    status = 1


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the descriptions' line breaks; appends each option's default to its help.

    Flags (``--quiet``) and options whose default is None (a value taken from the config class,
    whose help then names that default itself) say nothing more.
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if (not action.option_strings or action.nargs == 0 or "default" in text
                or action.default in (None, argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """No abbreviated options (``--dep`` is not ``--depths``), defaults in ``--help``,
    argparse's errors (unknown choice, not a number, ...) as one-line CliErrors.

    ``flags`` lists the parser's option strings, for "did you mean" on an unknown one.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", _HelpFormatter)
        self.flags: list[str] = []  # before __init__, which adds --help
        super().__init__(*args, **kwargs)
        self.set_defaults(_flags=self.flags)  # the innermost sub-command's list wins

    def add_argument(self, *args, **kwargs):
        action = super().add_argument(*args, **kwargs)
        self.flags.extend(action.option_strings)
        return action

    def error(self, message):
        raise CliError(message)


def _parse(parser: argparse.ArgumentParser, argv):
    """``parser.parse_args(argv)``, an unknown option a CliError naming the closest known ones."""
    from jaxflow.experiments.config import suggest

    args, extra = parser.parse_known_args(argv)
    if extra:
        unknown = [a.split("=")[0] for a in extra if a.startswith("-")]
        hint = suggest(unknown, getattr(args, "_flags", ()))
        raise CliError(f"unrecognized arguments: {' '.join(extra)}{hint}")
    return args


def cache_dir() -> str:
    """Persistent XLA compilation cache location (``$JAXFLOW_CACHE_DIR`` or ~/.cache/jaxflow).

    >>> import os
    >>> from jaxflow import cli
    >>> os.environ["JAXFLOW_CACHE_DIR"] = "/tmp/jaxflow-xla"
    >>> cli.cache_dir()
    '/tmp/jaxflow-xla'
    >>> del os.environ["JAXFLOW_CACHE_DIR"]
    """
    default = os.path.join(os.path.expanduser("~"), ".cache", "jaxflow", "xla")
    return os.environ.get(CACHE_ENV, default)


def enable_compilation_cache() -> str:
    """Turn on JAX's persistent compilation cache: a second run skips XLA compilation.

    Returns the cache directory, or "" when it cannot be created (then nothing changes).
    The ``jaxflow`` commands call it; call it yourself to share their cache, e.g.
    ``enable_compilation_cache()`` at the top of a script (not run here: it changes JAX's
    global configuration).

    Example (in a fresh process, since it changes JAX's global configuration):
        >>> import subprocess, sys, tempfile
        >>> code = ("import os, jax; from jaxflow import cli; "
        ...         "print(cli.enable_compilation_cache() == os.environ['JAXFLOW_CACHE_DIR'], "
        ...         "jax.config.jax_compilation_cache_dir == os.environ['JAXFLOW_CACHE_DIR'])")
        >>> env = {**os.environ, "JAXFLOW_CACHE_DIR": tempfile.mkdtemp(),
        ...        "JAXFLOW_CPU_DEVICES": "1"}
        >>> subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
        ...                text=True).stdout.strip()
        'True True'
    """
    import jax

    path = cache_dir()
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return ""  # an unwritable home only costs compile time
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path


def _numbers(text: str, option: str) -> list[float]:
    """Parse ``1,2,inf`` / ``1 2 3`` / ``MIN:MAX:NUM`` (log-spaced) into floats."""
    import numpy as np

    text = text.strip()
    try:
        if ":" in text:
            lo, hi, num = text.split(":")
            lo, hi, n = float(lo), float(hi), int(num)
            if not (lo > 0 and hi > 0 and n >= 1):
                raise ValueError
            _check_axis_length(option, n)
            return [float(v) for v in np.geomspace(lo, hi, n)]
        values = [float(v) for v in _items(text, option)]
    except ValueError:
        raise CliError(
            f"{option}: expected numbers like '1,2,inf' or MIN:MAX:NUM (log-spaced), got {text!r}"
        ) from None
    if not values:
        raise CliError(f"{option}: must not be empty")
    return values


def _items(text: str, option: str) -> list[str]:
    """The items of a list flag: ``2,3`` or ``2 3`` (or ``2, 3``); an empty item is refused.

    >>> _items("2, 3 4", "--depths")
    ['2', '3', '4']
    >>> _items("2,,3", "--depths")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    jaxflow.cli.CliError: --depths: item 2 of '2,,3' is empty; separate values by one comma, ...
    """
    pieces = text.split(",")
    for k, piece in enumerate(pieces):
        if len(pieces) > 1 and not piece.strip():
            raise CliError(f"{option}: item {k + 1} of {text!r} is empty; separate values by "
                           "one comma, e.g. '2,3'")
    return [token for piece in pieces for token in piece.split()]


def _cost(estimate) -> str:
    """``; estimated ...`` for the header line: memory, disk, and compute time on this machine."""
    import jax

    from jaxflow.sweep import resources as _resources

    seconds = estimate.seconds / max(1, jax.local_device_count())
    return (f"; estimated {_resources.format_bytes(estimate.memory)} memory, "
            f"{_resources.format_bytes(estimate.disk)} disk, ~{seconds:.3g} s of solving")


def _log_numbers(text: str, option: str) -> list[float]:
    """Parse ``ln sigma0`` values: ``-1e4:-2.3:128`` (log-spaced in ``ln(1/sigma0)``) or a list."""
    import numpy as np

    text = text.strip()
    if ":" not in text:
        return _numbers(text, option)
    try:
        lo, hi, num = text.split(":")
        lo, hi, n = float(lo), float(hi), int(num)
        if not (lo < 0 and hi < 0 and n >= 1):
            raise ValueError
        _check_axis_length(option, n)
    except ValueError:
        raise CliError(
            f"{option}: expected A:B:K with A, B < 0 (ln sigma0; K values log-spaced in "
            f"ln(1/sigma0)) or a list like '-5000,-100,-2.3', got {text!r}"
        ) from None
    return [float(-v) for v in np.geomspace(-lo, -hi, n)]


def _check_axis_length(option: str, n: int) -> None:
    """Refuse an axis whose values alone would not fit in memory (before making them)."""
    from jaxflow.sweep import resources as _resources

    try:
        _resources.check(memory=64 * n)  # a float, its Python object and a tuple slot
    except _resources.SizeError as err:
        raise CliError(f"{option}: {n} values: {err}") from None


# Output directories this process created, removed again if a run fails before writing to them.
_CREATED_DIRS: list[str] = []


def _check_out_dir(out: str) -> None:
    from jaxflow.sweep import atomic as _atomic_write

    try:
        missing = []
        head = os.path.abspath(out)
        while not os.path.exists(head):
            missing.append(head)
            head = os.path.dirname(head)
        os.makedirs(out, exist_ok=True)
        _CREATED_DIRS.extend(missing)  # innermost first: removed in this order
        fd, probe = _atomic_write.temporary_file(os.path.join(out, "write-test"))
        os.close(fd)
        os.remove(probe)
    except OSError as err:
        raise CliError(f"--out: cannot write to {out}: {err.strerror or err}") from None


def _remove_created_dirs() -> None:
    """After a failed run: remove the output directories it created if they are still empty."""
    for path in _CREATED_DIRS:
        try:
            os.rmdir(path)  # only ever removes an empty directory
        except OSError:
            break
    _CREATED_DIRS.clear()


def _load_config(cls, path, overrides, defaults=None):
    """A config from an optional TOML file over ``defaults``, flags (not None) overriding it."""
    from jaxflow.experiments.config import ConfigError

    try:
        return cls.from_toml(path, defaults=defaults, **overrides)
    except ConfigError as err:
        raise CliError(str(err)) from None


def _init_distributed(args) -> tuple[int, int]:
    """``jax.distributed.initialize`` when asked; returns ``(process index, process count)``.

    ``--distributed`` alone lets JAX find the cluster (SLURM, TPU pods, ...); elsewhere
    ``--coordinator HOST:PORT --num-processes P --process-id I`` name it. Any of the three
    implies ``--distributed``.
    """
    explicit = (args.coordinator, args.num_processes, args.process_id)
    if not args.distributed and all(v is None for v in explicit):
        return 0, 1
    if args.num_processes is not None and args.num_processes < 1:
        raise CliError(f"--num-processes must be >= 1, got {args.num_processes}")
    limit = args.num_processes if args.num_processes is not None else float("inf")
    if args.process_id is not None and not 0 <= args.process_id < limit:
        raise CliError(f"--process-id must lie in [0, --num-processes), got {args.process_id}")
    if args.coordinator is not None and not re.fullmatch(r"[^\s:]+:\d{1,5}", args.coordinator):
        raise CliError(f"--coordinator must be HOST:PORT, got {args.coordinator!r}")
    import jax

    try:
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
    except (RuntimeError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CliError(f"--distributed: cannot initialize jax.distributed: {reason}") from None
    return jax.process_index(), jax.process_count()


def _export(ds, out: str, name: str | None, figures, fmt: str = "png") -> list[str]:
    """``NAME.nc`` (unless ``name`` is None), then the figures as ``stem.fmt`` (png, pdf or
    svg), each written whole or not at all; returns the paths written.

    ``figures`` is ``{stem: figure}`` or a function returning it, called only once the dataset
    is written: a figure that cannot be drawn (extreme values) never costs the data. A figure
    that fails to build or to save is skipped with a one-line warning on stderr.

    Each file is made in memory, then written through :mod:`jaxflow.sweep.atomic` (free space
    checked, a unique temporary file created exclusively in ``out``, renamed into place). The
    dataset is sealed with a checksum of its variables (:mod:`jaxflow.sweep.checksum`). Any
    failure, or SIGINT, leaves no partial file; the store is never touched here.
    """
    import io

    from jaxflow import plot
    from jaxflow.sweep import atomic as _atomic_write
    from jaxflow.sweep import checksum as _checksum

    paths = []
    _atomic_write.remove_stale_temporaries(out)
    with _atomic_write.interrupts_deferred():
        try:
            if name is not None:
                try:
                    data = _checksum.seal(ds)  # in memory: HDF5 never writes to disk
                except (TypeError, ValueError, OSError) as err:
                    reason = (str(err).strip() or repr(err)).splitlines()[0]
                    raise CliError(f"cannot write {name}.nc: the dataset cannot be serialized "
                                   f"to netCDF: {reason}") from None
                _atomic_write.check_interrupt()
                paths.append(_atomic_write.write_atomically(os.path.join(out, f"{name}.nc"),
                                                            data))
                del data
            if callable(figures):
                try:
                    figures = figures()
                except Exception as err:  # noqa: BLE001 -- matplotlib raises many types
                    _warn_figure("the figures", err)
                    figures = {}
            for stem, fig in figures.items():
                buffer = io.BytesIO()
                try:
                    plot.save(fig, buffer, format=fmt)
                except Exception as err:  # noqa: BLE001 -- drawing extreme values
                    _warn_figure(f"{stem}.{fmt}", err)
                    continue
                _atomic_write.check_interrupt()
                paths.append(_atomic_write.write_atomically(os.path.join(out, f"{stem}.{fmt}"),
                                                            buffer.getbuffer()))
        except _atomic_write.ExportError as err:
            raise CliError(str(err)) from None
    return paths


def _warn_figure(what: str, err: BaseException) -> None:
    reason = (str(err).strip() or type(err).__name__).splitlines()[0][:200]
    print(f"jaxflow: warning: skipped {what}: cannot be drawn ({type(err).__name__}: {reason})",
          file=sys.stderr)


def _prepare_store(out: str, name: str, resume: bool, primary: bool = True) -> str:
    """Check --out is writable and the store may be (re)used; turn on the compilation cache.

    Only process 0 refuses an existing store: the others may find the one it has just made.
    """
    _check_out_dir(out)
    store = os.path.join(out, name)
    if primary and os.path.exists(store) and not resume:
        raise CliError(f"{store} already exists: pass --resume to continue it, or choose "
                       "another --out")
    enable_compilation_cache()
    return store


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
    (its ``run`` takes ``store``) writes ``STEM.zarr`` in ``--out`` as it goes, continued by
    ``--resume``; its size is checked first where it says how (``check_size``).
    """
    experiment = _experiment(args.name)
    config = _experiment_config(experiment, args)
    options = experiment.run_options
    estimate = _check_size(experiment, config, args) if "store" in options else None
    index, count = _init_distributed(args) if "process_index" in options else (0, 1)
    out = args.out or experiment.default_out
    run_options = {}
    if "store" in options:
        store = _prepare_store(out, f"{experiment.file_stem}.zarr", args.resume,
                               primary=index == 0)
        run_options.update(store=store, resume=args.resume)
    else:
        _check_out_dir(out)
        enable_compilation_cache()
    if "process_index" in options:
        run_options.update(process_index=index, process_count=count)
    if "size_check" in options:
        run_options.update(size_check=args.size_check)
    print(_header(args, config, run_options.get("store"), index, count, estimate), flush=True)
    ds = _run(experiment, config, args.quiet, run_options)
    if index != 0:
        print(f"process {index}: its chunks are in {run_options['store']}; process 0 writes "
              "the exports")
        return 0
    provenance.stamp(ds, command=args.command_line, smoke=args.smoke)
    paths = _export(ds, out, experiment.file_stem, lambda: experiment.figures(ds), args.format)
    print(experiment.report(ds))
    print("\n".join(f"wrote {p}" for p in paths)
          + (f"\nstore {run_options['store']}" if "store" in run_options else ""))
    return 0


def _experiment_config(experiment, args):
    """The resolved config: the defaults (``SMOKE`` with ``--smoke``) < ``--config`` < flags."""
    cls = experiment.config
    overrides = {name[len(_FIELD):]: value for name, value in vars(args).items()
                 if name.startswith(_FIELD) and value is not None}
    return _load_config(cls, args.config, overrides, defaults=cls.SMOKE if args.smoke else None)


def _check_size(experiment, config, args):
    """The experiment's own estimate of its run (``module.check_size``, if it has one), refused
    in one line when it does not fit the machine: before any folder, thread or file exists.
    ``--no-size-check`` skips it (the per-axis guard of :func:`_check_axis_length` stays)."""
    from jaxflow import sweep

    check = getattr(experiment.module, "check_size", None)
    if check is None or not args.size_check:
        return None
    store = os.path.join(args.out or experiment.default_out, f"{experiment.file_stem}.zarr")
    try:
        return check(config, store)
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


_FIELD = "field:"  # namespace prefix of the flags generated from a config's fields


def _field_kind(cls, field: dataclasses.Field):
    """A field's annotation, ``X | None`` read as ``X``."""
    kind = typing.get_type_hints(cls)[field.name]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    return kind


def _field_parser(name: str, kind):
    """The ``type=`` of a field's flag: text to the value a TOML file would hold.

    Lists are ``2,3`` or ``2 3``; lists of numbers also ``MIN:MAX:NUM`` (log-spaced; for
    ``log_scales`` as in ``phase-diagram --log-scales``). What the text holds is checked by the
    config class, exactly as a TOML value is.
    """
    flag = "--" + name.replace("_", "-")

    def scalar(text: str):
        for convert in (int, float):
            try:
                return convert(text)
            except ValueError:
                pass
        return text

    def parse(text: str):
        if typing.get_origin(kind) is tuple:
            if typing.get_args(kind)[0] is float:
                return (_log_numbers if name == "log_scales" else _numbers)(text, flag)
            return [scalar(t) for t in _items(text, flag)]
        if kind is bool:
            return {"true": True, "false": False}.get(text.strip().lower(), text)
        return text if kind is str else scalar(text.strip())

    return parse


def _show(value) -> str:
    """A default, short: long lists by their length and ends."""
    if isinstance(value, tuple):
        if len(value) > 6:
            return f"{len(value)} values, {value[0]:g} .. {value[-1]:g}"
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)


def _add_config_flags(parser: argparse.ArgumentParser, cls) -> None:
    """One flag per field of the config class ``cls``: ``--learning-rate`` sets
    ``learning_rate``; its help is the field's own sentence (:func:`~jaxflow.experiments.config.
    option`), the default and the smoke size. A renamed field's old flag is refused."""
    group = parser.add_argument_group(
        f"options of {cls.__name__} (over --config; a list is '2,3', a list of numbers also "
        "MIN:MAX:NUM, log-spaced; a value starting with '-' is written --option=-1)")
    for field in dataclasses.fields(cls):
        kind = _field_kind(cls, field)
        default = field.default if field.default is not dataclasses.MISSING else None
        said = f"default: {_show(default)}" if default is not None else "default: unset"
        if field.name in cls.SMOKE:
            smoke = cls.SMOKE[field.name]
            said += f"; --smoke: {_show(tuple(smoke) if isinstance(smoke, list) else smoke)}"
        metavar = ("LIST" if typing.get_origin(kind) is tuple
                   else {bool: "true|false", int: "N", float: "X"}.get(kind, "TEXT"))
        text = field.metadata.get("help", "").replace("%", "%%")
        action = group.add_argument(_flag(field.name), dest=_FIELD + field.name,
                                    type=_field_parser(field.name, kind), metavar=metavar,
                                    help=f"{text} ({said})".strip())
        parser.flags.extend(action.option_strings)  # a group's options bypass _Parser
    for old, new in cls.RENAMED.items():
        group.add_argument(_flag(old), action=_Renamed, new=_flag(new), nargs="?",
                           help=argparse.SUPPRESS)


def _flag(name: str) -> str:
    """The flag of a config field: ``learning_rate`` is ``--learning-rate``."""
    return "--" + name.replace("_", "-")


class _Removed(argparse.Action):
    """A flag that was removed: refused with ``message`` (what to do instead)."""

    def __init__(self, *args, message: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.message = message

    def __call__(self, parser, namespace, values, option_string=None):
        raise CliError(self.message)


class _Renamed(argparse.Action):
    """A flag renamed when the configs took one name per concept: refused, naming the new one."""

    def __init__(self, *args, new: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        raise CliError(f"{option_string} was renamed {self.new}")


def cmd_plot(args) -> int:
    """``jaxflow plot FILE.nc``: redraw the figures of a saved experiment dataset.

    The experiment is the dataset's ``experiment`` attribute (``model`` for phase diagrams
    written before it existed). ``--out`` is a directory (default: the file's; figures
    ``stem.png``, or ``--format``) or a figure file ``F.png``, ``F.pdf`` or ``F.svg``: the
    experiment's one figure, or the figure whose name is ``F``'s stem, goes to ``F``; several
    figures go next to it as ``F-stem.suffix``.
    """
    from jaxflow import plot
    from jaxflow.experiments import legacy

    out, fmt, select = args.out or os.path.dirname(os.path.abspath(args.file)), args.format, None
    if args.out and not os.path.isdir(args.out) and os.path.splitext(args.out)[1]:
        try:
            fmt_out = plot.figure_format(args.out)
        except ValueError as err:
            raise CliError(f"--out: a directory or a figure file: {err}") from None
        if fmt not in (None, fmt_out):
            raise CliError(f"--format {fmt} contradicts --out {args.out}")
        out, select = os.path.dirname(os.path.abspath(args.out)), args.out
        fmt = fmt_out
    ds = _read_dataset(args.file, salvage=args.salvage)
    by_model = {"toy": "phase-diagram", "factor": "factor-diagram"}
    name = ds.attrs.get("experiment") or by_model.get(ds.attrs.get("model"))
    if name is None:
        raise CliError(f"{args.file} names no experiment (no 'experiment' attribute)")
    experiment = _experiment(name)
    ds = legacy.upgrade(ds, experiment)  # a dataset written before the names were unified
    _check_out_dir(out)
    try:
        figures = experiment.figures(ds)
    except Exception as err:  # noqa: BLE001 -- a figure of extreme or damaged values
        _warn_figure("the figures", err)
        figures = {}
    if select is not None:
        stem = os.path.splitext(os.path.basename(select))[0]
        if stem in figures or len(figures) == 1:
            keep = stem if stem in figures else next(iter(figures))
            for other in set(figures) - {keep}:
                plot.plt.close(figures[other])
            figures = {stem: figures[keep]}
        else:
            figures = {f"{stem}-{k}": fig for k, fig in figures.items()}
    paths = _export(ds, out, None, figures, fmt or "png")
    print("\n".join(f"wrote {p}" for p in paths))
    return 0


def _read_dataset(path: str, salvage: bool = False):
    """A jaxflow dataset, checked against its checksum (:mod:`jaxflow.sweep.checksum`);
    a warning (no checksum, or salvaged) goes to stderr in one line."""
    from jaxflow.sweep import checksum as _checksum

    try:
        ds, warning = _checksum.read(path, salvage=salvage)
    except _checksum.DatasetDamagedError as err:
        raise DamagedError(str(err)) from None
    except _checksum.DatasetError as err:
        raise CliError(str(err)) from None
    if warning:
        print(f"jaxflow: {warning}", file=sys.stderr)
    return ds


def cmd_threshold(args) -> int:
    """``jaxflow threshold``: print the exact threshold, its log and the asymptote.

    >>> from jaxflow import cli
    >>> args = cli.build_parser().parse_args(["threshold", "--depth", "3", "--ratio", "1.5"])
    >>> cli.cmd_threshold(args)  # doctest: +ELLIPSIS
    depth 3, ratio 1.5, start 0.1, finish 0.9
    threshold sigma0_th / sigma*_j = 4.42369...e-03
    ln threshold                  = -5.420779...
    ln leading-order asymptote    = -5.409674...
    0
    """
    from jaxflow.oracles import theory

    try:
        th = theory.incremental_threshold(args.depth, args.ratio, start=args.start,
                                          finish=args.finish)
        log_th = theory.incremental_threshold(
            args.depth, args.ratio, start=args.start, finish=args.finish, log=True
        )
        asym = theory.threshold_asymptotic(
            args.depth, args.ratio, start=args.start, finish=args.finish, log=True
        )
    except ValueError as err:
        raise CliError(str(err)) from None
    print(f"depth {args.depth:g}, ratio {args.ratio:g}, start {args.start:g}, "
          f"finish {args.finish:g}")
    print(f"threshold sigma0_th / sigma*_j = {float(th):.10e}")
    print(f"ln threshold                  = {float(log_th):.12g}")
    print(f"ln leading-order asymptote    = {float(asym):.12g}")
    return 0


def cmd_verify(args) -> int:
    """``jaxflow verify PATH``: check every store (``*.zarr``) and dataset (``*.nc``) in the
    directory PATH, or the store or dataset PATH; exit 1 on a problem.

    Prints one line per problem (a damaged layout, each corrupt chunk, the chunks not computed
    yet, a dataset that does not match its checksum or cannot be read), or one line per intact
    store or dataset. Reads only; safe while a run writes the store.

    >>> import tempfile
    >>> from jaxflow import cli
    >>> cli.main(["verify", tempfile.mkdtemp()])   # nothing there: one line on stderr
    2
    """
    from jaxflow.sweep import checksum as _checksum
    from jaxflow.sweep import store

    stores = store.find_stores(args.dir)
    if args.dir.endswith(".nc"):
        datasets = [args.dir]
    elif os.path.isdir(args.dir) and not stores[:1] == [args.dir]:
        datasets = sorted(os.path.join(args.dir, e) for e in os.listdir(args.dir)
                          if e.endswith(".nc"))
    else:
        datasets = []
    if not stores and not datasets:
        raise CliError(f"verify: no jaxflow store (*.zarr) or dataset (*.nc) at {args.dir}")
    problems = 0
    for path in stores:
        found = store.verify(path)
        problems += len(found)
        print("\n".join(found) if found else store.describe(path))
    for path in datasets:
        try:
            _, warning = _checksum.read(path)
        except _checksum.DatasetError as err:
            problems += 1
            print(str(err))
            continue
        print(warning or f"dataset {path}: every variable matches its checksum")
    return 1 if problems else 0


def cmd_info(args) -> int:
    """``jaxflow info``: versions, float64, devices, processes, cache directory.

    >>> from jaxflow import cli
    >>> cli.main(["info"])  # doctest: +ELLIPSIS
    jaxflow    ...
    float64    on
    ...
    0
    """
    import jax

    import jaxflow
    from jaxflow import _x64, provenance

    for name, version in provenance.package_versions().items():
        print(f"{name:10s} {version}")
    print(f"float64    {'on' if _x64.x64_enabled() else 'off'}")
    print(f"backend    {jax.default_backend()}")
    for d in jax.devices():
        print(f"device     {d.id}: {d.device_kind} ({d.platform})")
    print(f"processes  {jax.process_count()}")
    print(f"cache dir  {cache_dir()} (set {CACHE_ENV} to move it)")
    del jaxflow
    return 0


def _add_experiment(sub, e, help: str) -> None:
    """The parser of experiment ``e`` under ``sub``: ``jaxflow experiment NAME``, and the same
    parser again as ``jaxflow phase-diagram`` (one route, whatever the name it is reached by).

    Every experiment takes --config, --out, --smoke, --quiet, --format and one flag per config
    field; one that keeps a store (its ``run`` takes ``store``) also --resume and
    --no-size-check, one that runs on several processes --distributed and its three flags.
    """
    options = e.run_options
    q = sub.add_parser(e.name, help=help, description=f"{e.name}: {e.summary}.\n\n"
                       "Precedence: defaults (smoke sizes with --smoke) < --config < flags.\n"
                       f"The resolved config is stored in {e.file_stem}.nc (attribute "
                       "'config') and can be\npassed back as --config.")
    q.add_argument("--config", metavar="FILE.toml", help="TOML file setting any option below")
    q.add_argument("--out", metavar="DIR", help=f"output directory (default: {e.default_out})")
    q.add_argument("--smoke", action="store_true", help="reduced sizes (seconds), for tests and CI")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.add_argument("--format", choices=FIGURE_FORMATS, default="png", help="figure files' format")
    if "store" in options:
        q.add_argument("--resume", action="store_true",
                       help="continue an interrupted run in --out (finished chunks are verified; "
                            "missing or corrupt ones are recomputed)")
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``jaxflow`` command (one sub-parser per command).

    >>> from jaxflow import cli
    >>> args = cli.build_parser().parse_args(["phase-diagram", "--depths", "2,3", "--quiet"])
    >>> args.command, args.name, args.quiet, vars(args)["field:depths"]
    ('phase-diagram', 'phase-diagram', True, [2.0, 3.0])
    """
    from jaxflow import experiments

    parser = _Parser(prog="jaxflow", description=__doc__.split("\n\n")[0])
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

    p = sub.add_parser("verify", help="check stores' chunks and datasets against their checksums")
    p.add_argument("dir", help="a store (*.zarr), a dataset (*.nc) or a directory holding them "
                               "(an --out)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("info", help="versions, devices, float64, cache")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv=None) -> int:
    """Entry point of the ``jaxflow`` command; returns the exit status (2 on bad input).

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
        _CREATED_DIRS.clear()


def _check_environment() -> None:
    """The environment variables jaxflow reads, checked (a bad one is a one-line error)."""
    from jaxflow import _devices

    try:
        _devices.requested_cpu_devices()
    except ValueError as err:
        raise CliError(str(err)) from None
    # Read by jaxflow up to 0.1 (x64 at import); ignored silently, it would promise float32.
    if os.environ.get(_OLD_X64_ENV, "").strip().lower() in ("0", "false", "no", "off"):
        raise CliError(f"{_OLD_X64_ENV} is no longer read: jaxflow computes in float64; "
                       "for float32 use `jaxflow phase-diagram --dtype float32`")


_OLD_X64_ENV = "JAXFLOW_ENABLE_X64"


def _configure_process() -> None:
    """What the command needs, set for its own process. Importing jaxflow sets none of it (a
    notebook or script keeps its own settings): float64 (``jax_enable_x64``), one CPU device per
    core (before JAX starts its backends: nothing before this line made an array), and the Agg
    backend, since the command only writes figures to files and must run without a display."""
    import jax
    import matplotlib

    from jaxflow import _devices

    jax.config.update("jax_enable_x64", True)
    _devices.use_cpu_cores()
    matplotlib.use("Agg")


if __name__ == "__main__":
    sys.exit(main())
