"""The store of an experiment run as cells: one file per finished cell, each proving itself.

An experiment that is not one grid of points (:mod:`jaxflow.sweep.store`) is a list of
independent **cells**: one (back-end, depth) run, one repeat seed, one (depth, scale) pair. Its
store is a directory ``STEM.cells`` holding

* ``manifest.json``: what the store is for: the run's config (TOML), each cell's name and the
  shapes and dtypes of its outputs, the run's fingerprint (config, cells, outputs), the jaxflow
  version that wrote it and a random id drawn when the store was laid out;
* ``cell-000017.npz``: cell 17's outputs and their checksum, written whole or not at all
  (:func:`jaxflow.sweep.atomic.write_atomically`: a temporary file, fsynced, renamed into
  place), so a killed run leaves finished cells and nothing half-written.

A cell counts as finished only when its file reads back with the manifest's names, shapes and
dtypes **and** its outputs hash to its checksum, keyed by the store's identity and the cell's
index (:func:`jaxflow.sweep.store_layout.checksum` and :func:`~jaxflow.sweep.store_layout.
store_key`, as the chunks of a sweep's store): a truncated or garbled file, or a cell copied in
from another store or another index, is caught and recomputed on resume, never read as data.

A store is laid out in a fresh directory beside its path and renamed into place, so a store
path either does not exist or holds a complete manifest. Resuming a store made by another config
is refused naming the options that differ; one written by another jaxflow version is refused
too (its numerics may differ). :func:`verify` checks a store without writing anything
(``jaxflow verify DIR``).

Example:
    >>> import os, tempfile
    >>> import numpy as np
    >>> from jaxflow.sweep import cell_store
    >>> outputs = {"y": ((2,), np.dtype("float64"))}
    >>> cells = [("a", outputs), ("b", outputs)]
    >>> path = os.path.join(tempfile.mkdtemp(), "demo.cells")
    >>> s = cell_store.CellStore.open(path, cells=cells, config="x = 1\\n", resume=False)
    >>> s.write(0, {"y": np.array([1.0, 2.0])})
    >>> s.verified().tolist()          # cell 1 was never written
    [True, False]
    >>> cell_store.verify(path)  # doctest: +ELLIPSIS
    ['cell store ...: cells not computed yet: 1 of 2 (1 b); rerun with --resume to compute them']
"""

import hashlib
import io
import json
import os
import shutil
import tempfile
import time
import tomllib
import uuid
from collections.abc import Mapping, Sequence

import numpy as np

from jaxflow.sweep import atomic as _atomic
from jaxflow.sweep.store_layout import Layout, StoreDamagedError, StoreError, _version
from jaxflow.sweep.store_layout import checksum as _checksum
from jaxflow.sweep.store_layout import store_key as _store_key

__all__ = [
    "FORMAT", "MANIFEST", "SUFFIX", "CellStore", "config_difference", "describe",
    "find_cell_stores", "fingerprint", "verify",
]

FORMAT = 1
MANIFEST = "manifest.json"
SUFFIX = ".cells"

Shapes = Mapping[str, tuple[tuple[int, ...], np.dtype]]


def _shapes_json(shapes: Shapes) -> dict:
    return {k: [list(s), np.dtype(d).str] for k, (s, d) in sorted(shapes.items())}


def _shapes_from_json(table) -> dict:
    return {k: (tuple(int(x) for x in s), np.dtype(d)) for k, (s, d) in table.items()}


def fingerprint(cells: Sequence[tuple[str, Shapes]], config: str) -> str:
    """The SHA-256 by which a store knows its run: the config, each cell's name and outputs,
    and the jaxflow version that computes them.

    >>> a = fingerprint([("c", {"y": ((), np.dtype("f8"))})], "x = 1\\n")
    >>> a == fingerprint([("c", {"y": ((), np.dtype("f4"))})], "x = 1\\n")
    False
    """
    blob = json.dumps({"config": config, "jaxflow": _version(),
                       "cells": [[name, _shapes_json(shapes)] for name, shapes in cells]},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def config_difference(stored: str, given: str) -> str:
    """The options two TOML configs set differently, in one line ("" when none).

    >>> config_difference("depths = [1, 2]\\nseed = 0\\n", "depths = [1, 2, 3]\\nseed = 0\\n")
    'depths = [1, 2] there, [1, 2, 3] here'
    """
    try:
        old, new = tomllib.loads(stored), tomllib.loads(given)
    except tomllib.TOMLDecodeError:
        return "its config cannot be read" if stored != given else ""
    missing = object()
    said = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, missing), new.get(key, missing)
        if a != b:
            show = lambda v: "unset" if v is missing else json.dumps(v)  # noqa: E731
            said.append(f"{key} = {show(a)} there, {show(b)} here")
    return "; ".join(said)


class CellStore:
    """An open cell store. Build it with :meth:`open` (process 0) or :meth:`attach` (others)."""

    def __init__(self, path: str, manifest: dict):
        self.path = path
        self.manifest = manifest
        self.names = [c["name"] for c in manifest["cells"]]
        self.shapes = [_shapes_from_json(c["outputs"]) for c in manifest["cells"]]
        self.key = _store_key(manifest["fingerprint"], manifest["jaxflow_version"],
                              manifest["store_id"])

    def __len__(self) -> int:
        return len(self.names)

    # ---------------------------------------------------------------- opening

    @classmethod
    def open(cls, path, *, cells: Sequence[tuple[str, Shapes]], config: str,
             resume: bool) -> "CellStore":
        """Create the store at ``path``, or open it to resume (``resume=True``).

        ``cells``: each cell's name and ``{output: (shape, dtype)}``. The caller holds the
        store's writer lock (:class:`jaxflow.sweep.lock.WriterLock`).

        Raises:
            StoreError: the store exists and ``resume`` is False; it was made by another config
                (the message names the options that differ), other cells or another jaxflow;
                it is damaged; or ``path`` is a directory that is not a cell store.
        """
        path = os.fspath(path)
        if os.path.isdir(path) and not os.listdir(path):
            os.rmdir(path)  # an empty directory holds nothing to protect
        if not os.path.lexists(path):
            return cls._create(path, cells, config)
        if not os.path.exists(os.path.join(path, MANIFEST)):
            raise StoreError(f"{path} exists but is not a jaxflow cell store (no {MANIFEST}); it "
                             "is left as it is: move it away or choose another --out")
        if not resume:
            raise StoreError(f"store {path} already exists: pass resume=True (--resume) to "
                             "continue it, or choose another output directory")
        store = cls.read(path)
        store._check_same_run(cells, config)
        _atomic.remove_stale_temporaries(path)  # cells a killed writer left half-written
        return store

    @classmethod
    def attach(cls, path, *, cells, config: str, wait_timeout: float) -> "CellStore":
        """Wait (at most ``wait_timeout`` s) for process 0 to lay the store out, then open it."""
        path = os.fspath(path)
        wanted = fingerprint(cells, config)
        deadline = time.monotonic() + wait_timeout
        found = None
        while time.monotonic() < deadline:
            try:
                store = cls.read(path)
                found = store.manifest["fingerprint"]
            except (OSError, StoreError):
                found = None
            if found == wanted:
                return store
            time.sleep(0.05)
        detail = "it does not exist" if found is None else "it holds another run"
        raise StoreError(
            f"store {path} was not laid out by process 0 within wait_timeout={wait_timeout:g} s "
            f"({detail}); is process 0 running on the same config and a shared file system?")

    @classmethod
    def read(cls, path) -> "CellStore":
        """Open an existing store read-only (its manifest checked, its cells not)."""
        path = os.fspath(path)
        try:
            with open(os.path.join(path, MANIFEST), "rb") as fh:
                manifest = json.loads(fh.read(1 << 26))
            if manifest.get("format") != FORMAT:
                raise StoreDamagedError(
                    f"store {path} has format {manifest.get('format')!r}, expected {FORMAT}; "
                    "move it away and rerun without --resume")
            store = cls(path, manifest)
            _ = [np.dtype(d) for shapes in store.shapes for _, d in shapes.values()]
        except FileNotFoundError:
            raise StoreError(f"{path} is not a jaxflow cell store (no {MANIFEST})") from None
        except (OSError, StoreError):
            raise
        except Exception as err:  # noqa: BLE001 -- bad JSON, missing keys, foreign files
            reason = (str(err).strip() or type(err).__name__).splitlines()[0][:200]
            raise StoreDamagedError(
                f"store {path} is damaged: its manifest cannot be read ({reason}); run "
                "`jaxflow verify` on it, then move it away and rerun without --resume") from None
        return store

    @classmethod
    def _create(cls, path: str, cells, config: str) -> "CellStore":
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        prefix = f".{os.path.basename(path)}.layout-"
        # Layouts of runs killed mid-layout (the caller holds the writer lock: none is running).
        for entry in os.scandir(parent):
            if entry.name.startswith(prefix) and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
        manifest = {
            "format": FORMAT, "fingerprint": fingerprint(cells, config), "config": config,
            "jaxflow_version": _version(), "store_id": uuid.uuid4().hex,
            "cells": [{"name": name, "outputs": _shapes_json(shapes)} for name, shapes in cells],
        }
        tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
        try:
            _atomic.write_atomically(os.path.join(tmp, MANIFEST),
                                     json.dumps(manifest, indent=1).encode())
            os.rename(tmp, path)  # fails (never replaces) if something appeared at path
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls(path, manifest)

    def _check_same_run(self, cells, config: str) -> None:
        version = self.manifest["jaxflow_version"]
        if version != _version():
            raise StoreError(
                f"store {self.path} was written by jaxflow {version}, this is jaxflow "
                f"{_version()}: resume it with that version, or move it away and rerun without "
                "--resume")
        if self.manifest["fingerprint"] == fingerprint(cells, config):
            return
        difference = config_difference(self.manifest["config"], config)
        if difference:
            raise StoreError(f"store {self.path} was made by another config ({difference}); "
                             "cannot resume it: rerun with that config, or choose another --out")
        raise StoreError(f"store {self.path} was made by another run (its cells or their "
                         "outputs differ); cannot resume it: choose another --out")

    # ---------------------------------------------------------------- cells

    def cell_path(self, index: int) -> str:
        return os.path.join(self.path, f"cell-{int(index):06d}.npz")

    def _layout(self, index: int) -> Layout:
        return Layout(chunk_size=1, n_chunks=len(self), outputs=self.shapes[index])

    def write(self, index: int, outputs: Mapping[str, np.ndarray]) -> None:
        """Write cell ``index`` (its outputs and checksum) whole or not at all."""
        shapes = self.shapes[index]
        arrays = {f"out_{k}": np.asarray(outputs[k], dtype=d).reshape(s)
                  for k, (s, d) in shapes.items()}
        digest = _checksum({k[4:]: v for k, v in arrays.items()}, self._layout(index), index,
                           self.key)
        buffer = io.BytesIO()
        np.savez(buffer, checksum=np.uint64(digest), **arrays)
        _atomic.write_atomically(self.cell_path(index), buffer.getbuffer())

    def read_cell(self, index: int) -> dict[str, np.ndarray] | None:
        """Cell ``index``'s outputs, or None when it is missing, unreadable or fails its check."""
        try:
            with np.load(self.cell_path(index), allow_pickle=False) as npz:
                stored = {k: npz[k] for k in npz.files}
        except FileNotFoundError:
            return None
        except Exception:  # noqa: BLE001 -- zip, zlib and format errors of a damaged file
            return None
        shapes = self.shapes[index]
        if set(stored) != {"checksum", *(f"out_{k}" for k in shapes)}:
            return None
        outputs = {k: stored[f"out_{k}"] for k in shapes}
        if any(outputs[k].shape != s or outputs[k].dtype != d for k, (s, d) in shapes.items()):
            return None
        if stored["checksum"].shape != () or int(stored["checksum"]) != _checksum(
                outputs, self._layout(index), index, self.key):
            return None
        return outputs

    def present(self) -> np.ndarray:
        """Which cells have a file (finished or not: checked by :meth:`verified`)."""
        return np.array([os.path.exists(self.cell_path(i)) for i in range(len(self))], bool)

    def verified(self) -> np.ndarray:
        """Which cells are finished and intact."""
        return np.array([self.read_cell(i) is not None for i in range(len(self))], dtype=bool)

    def clear(self, index: int) -> None:
        """Remove cell ``index``'s file (a corrupt cell, before it is recomputed)."""
        try:
            os.unlink(self.cell_path(index))
        except FileNotFoundError:
            pass


def _shown(store: CellStore, indices) -> str:
    return ", ".join(f"{i} {store.names[i]}" for i in indices[:10]) + (
        ", ..." if len(indices) > 10 else "")


def verify(path) -> list[str]:
    """Check a cell store without writing anything: one line per problem (none: intact)."""
    path = os.fspath(path)
    try:
        store = CellStore.read(path)
    except StoreError as err:
        return [str(err)]
    except OSError as err:
        return [f"store {path}: cannot read it: {err.strerror or err}"]
    present, ok = store.present(), store.verified()
    problems = [f"cell store {path}: cell {i} ({store.names[i]}) is corrupt (unreadable, or "
                "its data do not match its checksum); rerun with --resume to recompute it"
                for i in np.flatnonzero(present & ~ok)]
    missing = np.flatnonzero(~present)
    if missing.size:
        problems.append(f"cell store {path}: cells not computed yet: {missing.size} of "
                        f"{len(store)} ({_shown(store, missing)}); rerun with --resume to "
                        "compute them")
    return problems


def describe(path) -> str:
    """A one-line summary of an intact cell store (for ``jaxflow verify``)."""
    store = CellStore.read(path)
    return f"cell store {os.fspath(path)}: {len(store)} cells: every cell verified"


def find_cell_stores(path) -> list[str]:
    """``path`` itself if it is a cell store, else the ``*.cells`` directories inside it.

    >>> import tempfile
    >>> find_cell_stores(tempfile.mkdtemp())
    []
    """
    path = os.fspath(path)
    if path.endswith(SUFFIX) or os.path.exists(os.path.join(path, MANIFEST)):
        return [path]
    if not os.path.isdir(path):
        return []
    return sorted(os.path.join(path, e) for e in os.listdir(path)
                  if e.endswith(SUFFIX) and os.path.isdir(os.path.join(path, e)))
