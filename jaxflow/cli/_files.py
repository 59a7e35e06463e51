"""What the command reads and writes: the output directory (removed again if a run fails
before writing to it), the store's place, datasets sealed with their checksum and figures,
each file whole or not at all.
"""

import os
import sys

from jaxflow.cli import _process
from jaxflow.cli._errors import CliError, DamagedError

# Private: what the other modules of jaxflow.cli use.
__all__ = [
    "_check_out_dir", "_CREATED_DIRS", "_export", "FIGURE_FORMATS", "_prepare_store",
    "_read_dataset", "_remove_created_dirs", "_warn_figure",
]

FIGURE_FORMATS = ("png", "pdf", "svg")  # jaxflow.plot.FORMATS (plot imports matplotlib)


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
    _process.enable_compilation_cache()
    return store


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
