"""Exported datasets that prove themselves: a checksum of every variable, checked on reading.

Every ``.nc`` file jaxflow exports is **sealed** (:func:`seal`): its global attribute
``jaxflow_checksum`` holds a BLAKE2b-256 digest of what the file stores, read back *raw*
(``decode_cf=False``: the bytes on disk, before any unit or fill-value decoding, so the digest
does not depend on xarray's decoding rules): every variable and coordinate (name, dims, dtype,
shape, values, attributes) and every other global attribute. :func:`read` opens a dataset for
``jaxflow plot`` and ``jaxflow verify``: a flipped byte that changes a value, a name or an
attribute fails the digest, and a file the netCDF reader cannot parse at all is reported the same
way, each in one line (:class:`DatasetDamagedError`). ``salvage=True`` reads a damaged file
anyway (when it can be parsed) and says so. A dataset written before checksums existed reads
with a one-line warning.

Example:
    >>> import io
    >>> import numpy as np, xarray as xr
    >>> data = seal(xr.Dataset({"margin": ("depth", np.array([1.0, np.nan]))}))
    >>> ds, warning = read(io.BytesIO(data))
    >>> ds["margin"].values.tolist()[0], warning
    (1.0, '')
"""

import contextlib
import gc
import hashlib
import io
import os
import sys

import numpy as np

__all__ = ["ATTR", "DatasetDamagedError", "DatasetError", "digest", "read", "seal"]

ATTR = "jaxflow_checksum"
_PREFIX = "blake2b-256:"


class DatasetError(ValueError):
    """A dataset cannot be read (missing file, not a file): one line naming it."""


class DatasetDamagedError(DatasetError):
    """A dataset is damaged: unreadable, or its variables do not match its checksum."""


def _update(hasher, value) -> None:
    """Hash one value unambiguously: its type, dtype and shape, then its bytes."""
    if isinstance(value, (str, bytes)):
        raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
        hasher.update(f"{type(value).__name__}:{len(raw)}:".encode())
        hasher.update(raw)
        return
    array = np.asarray(value)
    if array.dtype.kind == "O":  # variable-length strings
        for item in array.ravel().tolist():
            _update(hasher, item if isinstance(item, (str, bytes)) else repr(item))
        return
    array = np.ascontiguousarray(array)
    if array.dtype.kind in "fc":
        nan = np.isnan(array)
        if nan.any():
            array = np.where(nan, np.array(np.nan, dtype=array.dtype), array)
    hasher.update(f"{array.dtype.str}:{array.shape}:".encode())
    hasher.update(array.tobytes())


def digest(raw) -> str:
    """``blake2b-256:<hex>`` of a raw (undecoded) dataset, its own checksum attribute left out.

    >>> import xarray as xr
    >>> digest(xr.Dataset({"x": ("a", [1, 2])})) == digest(xr.Dataset({"x": ("a", [1, 3])}))
    False
    """
    hasher = hashlib.blake2b(digest_size=32)
    for name in sorted(map(str, raw.variables)):
        var = raw.variables[name]
        _update(hasher, f"variable {name} {tuple(map(str, var.dims))}")
        _update(hasher, var.values)
        for key in sorted(map(str, var.attrs)):
            _update(hasher, f"attr {key}")
            _update(hasher, var.attrs[key])
    for key in sorted(str(k) for k in raw.attrs if k != ATTR):
        _update(hasher, f"global {key}")
        _update(hasher, raw.attrs[key])
    return _PREFIX + hasher.hexdigest()


def _open(source, *, raw: bool):
    import xarray as xr

    if isinstance(source, io.BytesIO):
        source.seek(0)
    options = dict(decode_cf=False, mask_and_scale=False, decode_times=False) if raw else {}
    with xr.open_dataset(source, engine="h5netcdf", **options) as ds:
        return ds.load()


def seal(ds) -> bytes:
    """The netCDF bytes of ``ds`` with its checksum attribute set (in memory, nothing written).

    The digest is taken from the serialized file read back raw, exactly as :func:`read` takes
    it, and checked once more on the sealed bytes.
    """
    first = ds.to_netcdf(engine="h5netcdf")
    sealed = ds.copy(deep=False)
    sealed.attrs = {**ds.attrs, ATTR: digest(_open(io.BytesIO(bytes(first)), raw=True))}
    data = bytes(sealed.to_netcdf(engine="h5netcdf"))
    if digest(_open(io.BytesIO(data), raw=True)) != sealed.attrs[ATTR]:
        raise ValueError("the dataset does not read back as written (its checksum differs)")
    return data


@contextlib.contextmanager
def _quiet_destructors():
    """Run the block, and collect what it left half-built, destructor errors unprinted.

    h5netcdf's ``File.__del__`` raises on a file it could not open; Python prints that as
    "Exception ignored ... Traceback" when the failed object is freed (here, once the error
    is dropped at the end of the block).
    """
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    failed = []
    try:
        yield failed
        if failed:  # ~0.1 s for a full collection with JAX loaded; young ones suffice
            gc.collect(1)  # the young generations hold what the block made
    finally:
        sys.unraisablehook = hook


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__


def read(source, *, salvage: bool = False):
    """Open a jaxflow dataset (a path or a BytesIO) and check it: ``(dataset, warning)``.

    ``warning`` is "" for a verified file, one line for a file without a checksum (written
    before checksums existed) or, with ``salvage=True``, for a damaged one read anyway.

    Raises:
        DatasetError: the path is missing or not a regular file.
        DatasetDamagedError: the file cannot be parsed, or does not match its checksum (unless
            ``salvage``).
    """
    name = source if isinstance(source, (str, os.PathLike)) else "<dataset>"
    if isinstance(source, (str, os.PathLike)):
        source = os.fspath(source)
        if not os.path.exists(source):
            raise DatasetError(f"{name}: no such file")
        if not os.path.isfile(source):
            raise DatasetError(f"{name} is not a regular file (a jaxflow dataset is a .nc file)")
    failure = ""
    with _quiet_destructors() as failed:
        try:
            raw = _open(source, raw=True)
            stored = raw.attrs.get(ATTR)
            found = digest(raw)
        except Exception as err:  # noqa: BLE001 -- HDF5/netCDF readers raise many types
            failure = _one_line(err)
            failed.append(failure)
    if failure:
        raise DatasetDamagedError(
            f"{name} is damaged or not a netCDF dataset: it cannot be read ({failure})")
    warning = ""
    if stored is None:
        warning = (f"warning: {name} carries no checksum (written before jaxflow sealed its "
                   "datasets): its values cannot be verified")
    elif not isinstance(stored, str) or stored != found:
        if not salvage:
            raise DatasetDamagedError(
                f"{name} is damaged: its variables do not match its checksum; rerun the "
                "experiment (or pass --salvage to use what is left)"
            )
        warning = f"warning: {name} is damaged (checksum mismatch); read anyway (--salvage)"
    with _quiet_destructors() as failed:
        try:
            return _open(source, raw=False), warning
        except Exception as err:  # noqa: BLE001 -- decoding a damaged file: as above
            failure = _one_line(err)
            failed.append(failure)
    raise DatasetDamagedError(f"{name} is damaged: its values cannot be decoded ({failure})")
