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
    jaxflow verify DIR | STORE.zarr | STORE.cells | FILE.nc
    jaxflow info

The experiments (their names, configs, runs, reports and figures) come from the registry
:data:`jaxflow.experiments.EXPERIMENTS`; this module only parses, writes files and prints.

Every command prints where it wrote what, shows a progress bar on long work (on a terminal),
and ends with one of these exit statuses (:data:`EXIT_STATUSES`, shown by ``jaxflow --help``),
a one-line reason on stderr for each failure:

    0    done: every output written, every requested answer ok
    1    a damaged store or dataset (found by `jaxflow verify` or any command reading one)
    2    bad input, refused before any work (nothing created)
    3    finished and wrote its outputs, but some requested answer is not ok
         (jaxflow.engine.status): the last line says how many and which
    130  interrupted (SIGINT); finished chunks and cells are kept for --resume

An experiment's last line is :func:`jaxflow.engine.status.answer_report` of its dataset: every
lane's ``status`` and every derived ``*_status`` (the phase diagram's thresholds) counts.

Each exported dataset comes first, sealed with a checksum of its variables; its figures follow
(a figure that cannot be drawn is skipped with a warning, never the data).

``jaxflow experiment NAME --help`` lists the experiment's options: one flag per field of its
config class (``--depths 2,3``), applied over ``--config`` (which applies over the defaults, or
the smoke sizes with ``--smoke``).

Where each part lives (private modules of this package): ``_main`` (the parser of every
command and :func:`main`), ``_experiment`` (the experiment commands), ``_options`` (flags from
the config classes' fields), ``_parsing`` (the command line's syntax), ``_commands`` (plot,
threshold, verify, info), ``_files`` (the output directory, the store's place, exports),
``_process`` (environment, devices, compilation cache, several processes), ``_errors``.
"""

from jaxflow.cli._commands import cmd_info, cmd_plot, cmd_threshold, cmd_verify
from jaxflow.cli._errors import EXIT_STATUSES, CliError, DamagedError
from jaxflow.cli._experiment import cmd_experiment
from jaxflow.cli._files import _export as _export  # the private helpers tests reach as cli._NAME
from jaxflow.cli._main import build_parser, command, main
from jaxflow.cli._parsing import _items as _items
from jaxflow.cli._parsing import _log_numbers as _log_numbers
from jaxflow.cli._parsing import _numbers as _numbers
from jaxflow.cli._process import CACHE_ENV, cache_dir, enable_compilation_cache

__all__ = [
    "CACHE_ENV", "EXIT_STATUSES", "CliError", "build_parser", "cache_dir", "cmd_experiment",
    "cmd_info", "cmd_plot", "cmd_threshold", "cmd_verify", "command", "enable_compilation_cache",
    "main",
]

# The errors are raised and documented as jaxflow.cli's (tracebacks, doctests, pickles).
for _error in (CliError, DamagedError):
    _error.__module__ = __name__
del _error
