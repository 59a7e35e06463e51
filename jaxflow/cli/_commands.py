"""The commands around the experiments: ``plot`` (redraw a saved dataset), ``threshold``
(the theory's), ``verify`` (stores and datasets against their checksums) and ``info``.
"""

import os

from jaxflow.cli._errors import CliError
from jaxflow.cli._experiment import _experiment
from jaxflow.cli._files import _check_out_dir, _export, _read_dataset, _warn_figure
from jaxflow.cli._process import CACHE_ENV, cache_dir

__all__ = [
    "cmd_info", "cmd_plot", "cmd_threshold", "cmd_verify",
]


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
    """``jaxflow verify PATH``: check every store (``*.zarr``, ``*.cells``) and dataset
    (``*.nc``) in the directory PATH, or the store or dataset PATH; exit 1 on a problem.

    Prints one line per problem (a damaged layout or manifest, each corrupt chunk or cell, the
    chunks or cells not computed yet, a dataset that does not match its checksum or cannot be
    read), or one line per intact store or dataset. Reads only; safe while a run writes the
    store.

    >>> import tempfile
    >>> from jaxflow import cli
    >>> cli.main(["verify", tempfile.mkdtemp()])   # nothing there: one line on stderr
    2
    """
    from jaxflow.sweep import cell_store, store
    from jaxflow.sweep import checksum as _checksum

    stores = [(path, store) for path in store.find_stores(args.dir)]
    stores += [(path, cell_store) for path in cell_store.find_cell_stores(args.dir)]
    if args.dir.endswith(".nc"):
        datasets = [args.dir]
    elif os.path.isdir(args.dir) and args.dir not in [path for path, _ in stores]:
        datasets = sorted(os.path.join(args.dir, e) for e in os.listdir(args.dir)
                          if e.endswith(".nc"))
    else:
        datasets = []
    if not stores and not datasets:
        raise CliError(f"verify: no jaxflow store (*.zarr, *.cells) or dataset (*.nc) at "
                       f"{args.dir}")
    problems = 0
    for path, kind in stores:
        found = kind.verify(path)
        problems += len(found)
        print("\n".join(found) if found else kind.describe(path))
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
