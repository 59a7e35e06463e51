"""The zarr store of a sweep: chunks that prove themselves, laid out atomically.

A sweep's store holds its outputs flat, in shuffled order, cut into chunks of a fixed number of
points, plus two small arrays per chunk:

* ``checksum[i]``: a 64-bit BLAKE2b digest of chunk ``i``'s outputs, written after its data;
* ``done[i]``: the completion flag, written last.

A chunk counts as finished only when its flag is set **and** its data hash to its checksum. So a
deleted data file (zarr would read it back as the fill value), a truncated or garbage file, or a
chunk half-rewritten by a killed process is caught, never read as data. The fill values cannot
pass for data either: NaN for floats, the most negative integer for signed integers, the largest
for unsigned ones.

The checksum is bound to **place** as well as content: it is keyed by the store's identity
(:func:`store_key`: the sweep's fingerprint, the jaxflow version that wrote the store and a
random id drawn when the store was laid out) and covers the chunk's index. So two chunks swapped
inside a store, or a chunk (with its checksum) copied in from another store of the same shape,
fail their checks like any damaged chunk and are recomputed on resume. NaN is hashed as one
canonical NaN: a chunk of all-NaN lanes, which zarr leaves unwritten (it equals the fill value)
and reads back with the fill value's NaN bits, verifies as the NaN it was.

A store written by another jaxflow version is refused on resume, in one line (its layout and
numerics may differ); ``jaxflow verify`` still checks it.

The layout (array names, dtypes, shapes, chunking, format version) is stored in the group's
attributes next to the sweep's fingerprint, and checked on every open: a changed dtype or a
removed array is reported, not read. A new store is laid out in a fresh temporary directory
beside its path and renamed into place, so a store path either does not exist or holds a complete
layout; a directory at the store path that is not a jaxflow store is refused, never emptied.

:func:`verify` checks a store without writing anything (``jaxflow verify DIR``).

Where each part lives: what a store holds and how a chunk proves itself (layout, fill values,
keyed checksums) in :mod:`jaxflow.sweep.store_layout`; finding stores and removing zarr's partial
files in :mod:`jaxflow.sweep.store_files`; the open :class:`Store` (laying out, opening,
reading, verifying and writing chunks) and :func:`verify` here. Every public name of the three is
importable from this module.

Example:
    >>> import os, tempfile
    >>> import numpy as np
    >>> from jaxflow.sweep import store
    >>> layout = store.Layout(chunk_size=2, n_chunks=2, outputs={"y": ((), np.dtype("float64"))})
    >>> path = os.path.join(tempfile.mkdtemp(), "demo.zarr")
    >>> s = store.Store.open(path, layout=layout, fingerprint="abc", resume=False)
    >>> s.write(0, {"y": np.array([1.0, 2.0])})
    >>> s.verified().tolist()          # chunk 1 was never written
    [True, False]
    >>> store.verify(path)  # doctest: +ELLIPSIS
    ['store ...: chunks not computed yet: 1 of 2 (1); rerun with --resume to compute them']
"""

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Mapping

import numpy as np

from jaxflow.sweep.store_files import find_stores as find_stores
from jaxflow.sweep.store_files import remove_partial_files as remove_partial_files
from jaxflow.sweep.store_layout import FORMAT as FORMAT
from jaxflow.sweep.store_layout import Layout as Layout
from jaxflow.sweep.store_layout import StoreDamagedError as StoreDamagedError
from jaxflow.sweep.store_layout import StoreError as StoreError
from jaxflow.sweep.store_layout import _one_line, _version
from jaxflow.sweep.store_layout import checksum as checksum
from jaxflow.sweep.store_layout import fill_value as fill_value
from jaxflow.sweep.store_layout import layout_problem as layout_problem
from jaxflow.sweep.store_layout import store_key as store_key

__all__ = [
    "FORMAT", "Layout", "Store", "StoreError", "StoreDamagedError", "checksum", "describe",
    "fill_value", "find_stores", "layout_problem", "remove_partial_files", "store_key",
    "verify",
]


def _read_chunks(array, chunk_size: int, n_chunks: int):
    """Read a whole array; chunks that cannot be decoded come back as fill values, and listed.

    A damaged chunk file raises whatever its codec raises (zstd RuntimeError, ValueError, ...):
    any exception while decoding one chunk marks that chunk unreadable, never the whole store.
    """
    try:
        return np.asarray(array[:]), set()
    except Exception:  # noqa: BLE001 -- codecs raise many types; read chunk by chunk below
        pass
    out = np.empty(array.shape, dtype=array.dtype)
    unreadable = set()
    for i in range(n_chunks):
        rows = slice(i * chunk_size, (i + 1) * chunk_size)
        try:
            out[rows] = np.asarray(array[rows])
        except Exception:  # noqa: BLE001 -- see above
            out[rows] = fill_value(array.dtype)
            unreadable.add(i)
    return out, unreadable


class Store:
    """An open store. Build it with :meth:`open` (process 0) or :meth:`attach` (the others)."""

    def __init__(self, path: str, group, layout: Layout):
        self.path = path
        self.group = group
        self.layout = layout
        attrs = group.attrs
        self.version = str(attrs.get("jaxflow_version", ""))
        self.key = store_key(attrs.get("fingerprint", ""), self.version,
                             attrs.get("store_id", ""))

    # ---------------------------------------------------------------- opening

    @classmethod
    def open(cls, path, *, layout: Layout, fingerprint: str, resume: bool) -> "Store":
        """Create the store at ``path``, or open it to resume (``resume=True``).

        The caller holds the store's writer lock (:class:`jaxflow.sweep.lock.WriterLock`), as
        :func:`jaxflow.sweep.run` does.

        Raises:
            StoreError: the store exists and ``resume`` is False; it holds another sweep; it is
                damaged; or ``path`` is a directory that is not a jaxflow store.
        """
        path = os.fspath(path)
        if os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)  # an empty directory holds nothing to protect
        if os.path.lexists(path):
            if not os.path.exists(os.path.join(path, "zarr.json")):
                raise StoreError(
                    f"{path} exists but is not a jaxflow store (no zarr.json); it is left as it "
                    "is: move it away or choose another --out"
                )
            if not resume:
                raise StoreError(
                    f"store {path} already exists: pass resume=True (--resume) to continue it, "
                    "or choose another output directory"
                )
            store = cls._open_existing(path, mode="r+")
            if store.version != _version():
                raise StoreError(
                    f"store {path} was written by jaxflow {store.version or 'an older version'}, "
                    f"this is jaxflow {_version()}: resume it with that version, or move it away "
                    "and rerun without --resume"
                )
            if store.group.attrs.get("fingerprint") != fingerprint:
                raise StoreError(
                    f"store {path} was written by a different sweep (axes, chunk size, seed or "
                    "config differ); cannot resume it"
                )
            store._check_layout(layout)
            return store
        return cls._create(path, layout, fingerprint)

    @classmethod
    def attach(cls, path, *, layout: Layout, fingerprint: str, wait_timeout: float) -> "Store":
        """Wait (at most ``wait_timeout`` s) for process 0 to lay the store out, then open it."""
        path = os.fspath(path)
        deadline = time.monotonic() + wait_timeout
        found = None
        while time.monotonic() < deadline:
            try:
                store = cls._open_existing(path, mode="r+")
                found = store.group.attrs.get("fingerprint")
            except (OSError, StoreError):
                found = None
            if found == fingerprint:
                store._check_layout(layout)
                return store
            time.sleep(0.05)
        detail = "it does not exist" if found is None else "it holds a different sweep"
        raise StoreError(
            f"store {path} was not laid out by process 0 within wait_timeout={wait_timeout:g} s "
            f"({detail}); is process 0 running on the same config and a shared file system?"
        )

    @classmethod
    def _open_existing(cls, path: str, mode: str) -> "Store":
        import zarr

        if not os.path.exists(os.path.join(path, "zarr.json")):
            raise StoreError(f"{path} is not a jaxflow store (no zarr.json)")
        try:
            group = zarr.open_group(path, mode=mode)
            table = group.attrs.get("layout")
            if table is None:
                raise StoreDamagedError(
                    f"store {path} has no layout record (written by an older jaxflow, without "
                    "checksums, or not by jaxflow); move it away and rerun without --resume"
                )
            layout = Layout.from_json(table)
        except (OSError, StoreError):
            raise
        except Exception as err:  # noqa: BLE001 -- bad JSON, missing keys, foreign metadata
            raise StoreDamagedError(
                f"store {path} is damaged: its metadata cannot be read ({_one_line(err)}); run "
                "`jaxflow verify` on it, then move it away and rerun without --resume"
            ) from None
        return cls(path, group, layout)

    @classmethod
    def _create(cls, path: str, layout: Layout, fingerprint: str) -> "Store":
        import zarr

        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        prefix = f".{os.path.basename(path)}.layout-"
        # Layouts of runs killed mid-layout. The caller holds the store's writer lock, so none
        # is in progress; real directories only (a planted link is left alone).
        for entry in os.scandir(parent):
            if entry.name.startswith(prefix) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
        # Laid out beside its path and renamed into place: a kill leaves no half store at path.
        tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
        try:
            group = zarr.open_group(tmp, mode="w")
            for name, (shape, dtype) in layout.outputs.items():
                group.create_array(
                    f"out_{name}",
                    shape=(layout.n_chunks * layout.chunk_size, *shape),
                    chunks=(layout.chunk_size, *shape),
                    dtype=dtype,
                    fill_value=fill_value(dtype),
                )
            group.create_array("checksum", shape=(layout.n_chunks,), chunks=(1,),
                               dtype=np.uint64, fill_value=0)
            group.create_array("done", shape=(layout.n_chunks,), chunks=(1,), dtype=bool,
                               fill_value=False)
            group.attrs.update(layout=layout.to_json(), fingerprint=fingerprint,
                               jaxflow_version=_version(), store_id=uuid.uuid4().hex)
            os.rename(tmp, path)  # fails (never replaces) if something appeared at path
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls._open_existing(path, mode="r+")

    def _check_layout(self, expected: Layout) -> None:
        if self.layout.to_json() != expected.to_json():
            raise StoreError(
                f"store {self.path} was written by a different sweep (its layout differs: chunk "
                "size or outputs); cannot resume it"
            )
        problem = layout_problem(self.group, self.layout)
        if problem:
            raise StoreDamagedError(
                f"store {self.path} is damaged: {problem}; move it away and rerun without --resume"
            )

    # ---------------------------------------------------------------- chunks

    def flags(self) -> np.ndarray:
        """The done flags as written (an unreadable flag counts as not done)."""
        done, unreadable = _read_chunks(self.group["done"], 1, self.layout.n_chunks)
        done = done.astype(bool)
        done[list(unreadable)] = False
        return done

    def read(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Every output, flat, and which chunks are finished **and** match their checksums.

        The flags are read first: a chunk whose flag is set was wholly written before, so a
        sweep writing concurrently (another process) never makes a finished chunk look corrupt.
        """
        n, size = self.layout.n_chunks, self.layout.chunk_size
        ok = self.flags()
        data, unreadable = {}, set()
        for name in self.layout.outputs:
            data[name], bad = _read_chunks(self.group[f"out_{name}"], size, n)
            unreadable |= bad
        sums, bad = _read_chunks(self.group["checksum"], 1, n)
        unreadable |= bad
        for i in np.flatnonzero(ok):
            rows = slice(i * size, (i + 1) * size)
            chunk = {k: v[rows] for k, v in data.items()}
            ok[i] = (i not in unreadable
                     and checksum(chunk, self.layout, i, self.key) == int(sums[i]))
        return data, ok

    def verified(self) -> np.ndarray:
        """Per chunk: finished and intact (flag set, data readable, checksum matches)."""
        return self.read()[1]

    def clear(self, index: int) -> None:
        """Mark a chunk not done (before rewriting a corrupt one)."""
        self.group["done"][index] = False

    def write(self, index: int, outputs: Mapping[str, np.ndarray]) -> None:
        """Write chunk ``index``: data, then its checksum, then its done flag.

        SIGINT is held off until the chunk is written: zarr cleans its temporary file up after
        an error, not after a KeyboardInterrupt, which left ``*.partial`` files in the store.
        """
        from jaxflow.sweep import atomic as _atomic

        size = self.layout.chunk_size
        rows = slice(index * size, (index + 1) * size)
        with _atomic.interrupts_deferred():
            for name, (_, dtype) in self.layout.outputs.items():
                self.group[f"out_{name}"][rows] = np.asarray(outputs[name], dtype=dtype)
            self.group["checksum"][index] = np.uint64(
                checksum(outputs, self.layout, index, self.key))
            self.group["done"][index] = True



def verify(path) -> list[str]:
    """Check a store read-only; return one line per problem (empty when it is intact).

    Problems: unreadable or foreign metadata, a missing or retyped array, chunks not computed
    yet (one line for all of them), each chunk whose data is unreadable or does not match its
    checksum.

    Example: see the module docstring.
    """
    path = os.fspath(path)
    try:
        store = Store._open_existing(path, mode="r")
    except StoreError as err:
        return [str(err)]
    except OSError as err:
        return [f"store {path}: cannot read it: {err.strerror or err}"]
    if store.group.attrs.get("layout", {}).get("format") != FORMAT:
        return [f"store {path} has format {store.group.attrs['layout'].get('format')}, expected "
                f"{FORMAT} (written by an older jaxflow); move it away and rerun without --resume"]
    problem = layout_problem(store.group, store.layout)
    if problem:
        return [f"store {path} is damaged: {problem}; move it away and rerun without --resume"]
    flags = store.flags()
    _, ok = store.read()
    problems = []
    for i in np.flatnonzero(flags & ~ok):
        problems.append(f"store {path}: chunk {i} is corrupt (its data is missing, unreadable or "
                        "does not match its checksum); rerun with --resume to recompute it")
    missing = np.flatnonzero(~flags)
    if missing.size:
        shown = ", ".join(str(i) for i in missing[:10]) + (", ..." if missing.size > 10 else "")
        problems.append(f"store {path}: chunks not computed yet: {missing.size} of "
                        f"{flags.size} ({shown}); rerun with --resume to compute them")
    return problems


def describe(path) -> str:
    """A one-line summary of an intact store (for ``jaxflow verify``)."""
    layout = Store._open_existing(os.fspath(path), mode="r").layout
    return (f"store {os.fspath(path)}: {layout.n_chunks} chunks of {layout.chunk_size} points, "
            f"outputs {', '.join(sorted(layout.outputs))}: every chunk verified")
