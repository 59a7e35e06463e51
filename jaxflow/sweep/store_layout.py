"""What a sweep's store holds, and how a chunk proves itself: layout, fill values, keyed checksums.

Part of :mod:`jaxflow.sweep.store` (whose docstring tells the whole design): the
:class:`Layout` of the arrays (recorded in the store and checked on every open,
:func:`layout_problem`), the :func:`fill_value` no computed output takes, and the
:func:`checksum` of a chunk, keyed by the store's identity (:func:`store_key`) and the chunk's
index so that a chunk moved or copied between stores fails its check.
"""

import dataclasses
import hashlib
from collections.abc import Mapping

import numpy as np

__all__ = [
    "FORMAT", "Layout", "StoreDamagedError", "StoreError", "checksum", "fill_value",
    "layout_problem", "store_key",
]

# 1: no checksums; 2: checksums of content only; 3: checksums keyed by store and chunk index
FORMAT = 3


class StoreError(ValueError):
    """A store cannot be used as asked: damaged, foreign, or written by another sweep.

    The message is one line naming the store (and the chunk, where one is at fault) and what to
    do next.
    """


class StoreDamagedError(StoreError):
    """The store's own records (metadata, layout, arrays) are damaged: not a usage error.

    The ``jaxflow`` commands exit with status 1 on it (status 2 on other StoreErrors).
    """


def _version() -> str:
    from jaxflow import __version__

    return str(__version__)


def store_key(fingerprint: str, version: str, store_id: str) -> bytes:
    """The key of a store's chunk checksums: its sweep, the jaxflow that wrote it, its own id.

    >>> key = store_key("abc", "0.1.0", "0" * 32)
    >>> len(key), key == store_key("abc", "0.2.0", "0" * 32)
    (32, False)
    """
    blob = "\0".join(["jaxflow-store", str(fingerprint), str(version), str(store_id)])
    return hashlib.sha256(blob.encode()).digest()


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where a sweep's outputs live in its store.

    Attributes:
        chunk_size: points per chunk (independent of devices and processes).
        n_chunks: number of chunks (the last one padded).
        outputs: ``{name: (per-point shape, dtype)}``.
    """

    chunk_size: int
    n_chunks: int
    outputs: Mapping[str, tuple[tuple[int, ...], np.dtype]]

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "chunk_size": int(self.chunk_size),
            "n_chunks": int(self.n_chunks),
            "outputs": {k: [list(s), np.dtype(d).str]
                        for k, (s, d) in sorted(self.outputs.items())},
        }

    @classmethod
    def from_json(cls, table) -> "Layout":
        return cls(
            chunk_size=int(table["chunk_size"]),
            n_chunks=int(table["n_chunks"]),
            outputs={k: (tuple(int(x) for x in s), np.dtype(d))
                     for k, (s, d) in table["outputs"].items()},
        )


def fill_value(dtype) -> object:
    """A value no computed output takes: NaN, the most negative (or largest unsigned) integer.

    Booleans have none; their chunks are still covered by the checksum.

    >>> fill_value(np.float64), fill_value(np.int8), fill_value(np.uint16), fill_value(bool)
    (nan, -128, 65535, False)
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "fc":
        return float("nan")
    if dtype.kind == "i":
        return int(np.iinfo(dtype).min)
    if dtype.kind == "u":
        return int(np.iinfo(dtype).max)
    return False


def checksum(chunk: Mapping[str, np.ndarray], layout: Layout, index: int = 0,
             key: bytes = b"") -> int:
    """64-bit BLAKE2b of chunk ``index``'s outputs, in the store's dtypes and name order, keyed
    by the store's :func:`store_key`; every NaN hashes as one canonical NaN.

    >>> layout = Layout(2, 2, {"y": ((), np.dtype("float64"))})
    >>> checksum({"y": np.array([1.0, 2.0])}, layout) == checksum({"y": [1.0, 2.0]}, layout)
    True
    >>> checksum({"y": [1.0, 2.0]}, layout, 0) == checksum({"y": [1.0, 2.0]}, layout, 1)
    False
    >>> minus_nan = -np.array([np.nan, np.nan])      # the sign bit set
    >>> checksum({"y": minus_nan}, layout) == checksum({"y": [np.nan, np.nan]}, layout)
    True
    """
    digest = hashlib.blake2b(digest_size=8, key=bytes(key)[:64])
    digest.update(int(index).to_bytes(8, "little", signed=True))
    for name in sorted(layout.outputs):
        shape, dtype = layout.outputs[name]
        values = np.ascontiguousarray(np.asarray(chunk[name], dtype=dtype))
        if values.dtype.kind in "fc":
            nan = np.isnan(values)
            if nan.any():
                values = np.where(nan, np.array(np.nan, dtype=values.dtype), values)
        digest.update(name.encode())
        digest.update(values.tobytes())
    return int.from_bytes(digest.digest(), "little")


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def layout_problem(group, layout: Layout) -> str:
    """What is wrong with a store's arrays against its layout ("" when nothing).

    A removed array, or one whose dtype, shape or chunking was changed.
    """
    expected = {f"out_{k}": ((layout.n_chunks * layout.chunk_size, *s), (layout.chunk_size, *s), d)
                for k, (s, d) in layout.outputs.items()}
    expected["checksum"] = ((layout.n_chunks,), (1,), np.dtype(np.uint64))
    expected["done"] = ((layout.n_chunks,), (1,), np.dtype(bool))
    for name, (shape, chunks, dtype) in expected.items():
        try:
            array = group[name]
            found = (tuple(array.shape), tuple(array.chunks), np.dtype(array.dtype))
        except Exception as err:  # noqa: BLE001 -- missing or unreadable array metadata
            return f"array {name!r} is missing or unreadable ({_one_line(err)})"
        if found[2] != dtype:
            return f"array {name!r} has dtype {found[2]}, expected {dtype}"
        if found[:2] != (shape, chunks):
            return (f"array {name!r} has shape {found[0]} / chunks {found[1]}, expected "
                    f"{shape} / {chunks}")
    return ""

