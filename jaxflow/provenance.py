"""Provenance: who ran what, when, with which versions; written by this module alone.

Every dataset jaxflow makes carries the same attributes: the versions of jaxflow and its
numerical stack (``*_version``), the git commit of the checkout (``git_commit``), the command
line (``command``), the dtype computed in, the devices, the creation time (``created``) and, for
an experiment, its resolved config (``config``, TOML that ``Config.from_toml`` reads back) and
whether it is the smoke size (``smoke``). :func:`run_metadata` makes them (the sweep, the
experiments' shared layout and the back-ends' runner call it), and :func:`stamp` puts the
``jaxflow`` command's own line and ``--smoke`` on a finished dataset. A benchmark's JSON record
starts with :func:`benchmark_record`.

Example:
    >>> import xarray as xr
    >>> from jaxflow import provenance
    >>> ds = xr.Dataset(attrs=provenance.run_metadata())
    >>> provenance.stamp(ds, command="jaxflow experiment omp --smoke", smoke=True).attrs["smoke"]
    1
"""

import datetime
import functools
import os
import shlex
import subprocess
import sys
from typing import Any

import jax

__all__ = ["benchmark_record", "git_commit", "package_versions", "run_metadata", "stamp"]


def package_versions() -> dict[str, str]:
    """Versions of jaxflow and its numerical stack (stored with every dataset).

    >>> from jaxflow import provenance
    >>> sorted(provenance.package_versions())[:4]
    ['diffrax', 'equinox', 'jax', 'jaxflow']
    """
    import importlib.metadata as md

    versions = {}
    for pkg in ("jaxflow", "jax", "jaxlib", "diffrax", "equinox", "optax", "numpy", "xarray",
                "zarr"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = "unknown"
    return versions


@functools.cache
def git_commit() -> str:
    """The commit of the jaxflow checkout this process imported, ``-dirty`` appended when
    tracked files differ from it; ``"unknown"`` for an installed package (no checkout) or
    without git.

    >>> from jaxflow import provenance
    >>> commit = provenance.git_commit()
    >>> commit == "unknown" or len(commit.removesuffix("-dirty")) == 40
    True
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # Only the checkout jaxflow itself lives in: a wheel installed inside some other
    # repository (a virtual environment in a project) must not report that project's commit.
    if not os.path.exists(os.path.join(root, ".git")):
        return "unknown"
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        changed = subprocess.run(["git", "-C", root, "status", "--porcelain",
                                  "--untracked-files=no"], capture_output=True, text=True,
                                 timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if changed else "") if head else "unknown"


def benchmark_record(benchmark: str, command: str, load: list[float], **machine) -> dict:
    """The head of a benchmark's JSON record (``benchmarks/``): its name, the command that
    reproduces it, when, at which commit, and on which machine (platform, cores, the load
    average read before the run, and ``machine``'s extra entries).

    >>> from jaxflow import provenance
    >>> head = provenance.benchmark_record("toy", "python benchmarks/toy.py", [0.5, 0.4, 0.3],
    ...                                    devices=2)
    >>> list(head), head["machine"]["devices"]
    (['benchmark', 'command', 'created', 'commit', 'machine'], 2)
    """
    import platform
    import time

    return {
        "benchmark": benchmark,
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "commit": git_commit(),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), **machine,
                    "load_average": list(load)},
    }


def run_metadata(config=None) -> dict[str, Any]:
    """Provenance attributes: versions, git commit, command line, dtype, devices, creation
    time; with an experiment's ``config``, also ``config`` (its resolved TOML, which
    ``Config.from_toml`` reads back) and ``smoke`` (1 when it is the config's ``smoke()`` sizes,
    else 0; ``jaxflow experiment --smoke`` sets 1 whatever ``--config`` adds).

    ``command`` is this process's command line (the ``jaxflow`` command replaces it by its own
    arguments). netCDF has no booleans: ``smoke`` is an integer.

    >>> from jaxflow import provenance
    >>> from jaxflow.experiments.quadratic import QuadraticConfig
    >>> attrs = provenance.run_metadata(QuadraticConfig.smoke())
    >>> attrs["dtype"], "jax_version" in attrs, "created" in attrs, attrs["smoke"]
    ('float64', True, True, 1)
    >>> sorted({"git_commit", "command", "config"} - set(attrs))
    []
    """
    devices = jax.local_devices()
    attrs = {f"{k}_version": v for k, v in package_versions().items()}
    attrs.update(
        git_commit=git_commit(),
        command=shlex.join(sys.argv),
        dtype="float64" if jax.config.read("jax_enable_x64") else "float32",
        device_kind=devices[0].device_kind,
        device_count=len(devices),
        platform=devices[0].platform,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
    if config is not None:
        attrs.update(config=config.to_toml(), smoke=int(config == type(config).smoke()))
    return attrs


def stamp(ds, *, command: str, smoke: bool):
    """``ds`` with the ``jaxflow`` command's provenance: ``command`` as typed (whether run as
    ``jaxflow``, ``python -m jaxflow.cli`` or ``cli.main(argv)``) and ``smoke`` (1 with
    ``--smoke``, whatever ``--config`` adds). The attributes are set in place; returns ``ds``."""
    ds.attrs.update(command=command, smoke=int(smoke))
    return ds
