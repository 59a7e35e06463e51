"""Chunks bound to their place: a store cannot be fooled by moved, foreign or edited chunks.

Checked on a cheap polynomial sweep (5 chunks of 3 points). Each damage below is found by
``store.verify`` (and ``jaxflow verify``: exit 1), and ``resume=True`` recomputes exactly the
damaged chunks, giving the uninterrupted dataset bitwise:

* **swapped**: two chunks exchanged with their checksums (each chunk intact, in the wrong place);
* **transplanted**: a chunk and its checksum copied in from another store of the same shape
  (another sweep, or the very same sweep laid out again);
* **truncated**, **bit-flipped** (one bit of the stored file), **value-edited** (a value
  rewritten through zarr, the checksum left as it was).

Also: a chunk whose float lanes are all NaN (zarr leaves it unwritten and reads it back with the
fill value's NaN bits) verifies and resumes (it used to stop the sweep with a false checksum
mismatch); a store written by another jaxflow version is refused on resume in one line;
the writer lock follows the store's real path (a symbolic link is the same store); a lock file
left by a dead run is taken over; an interrupt while a chunk is written leaves no ``*.partial``
file in the store, and leftovers of a killed run are removed on resume.
"""

import json
import os
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import zarr

from jaxflow import cli, sweep
from jaxflow.sweep import lock as _store_lock
from jaxflow.sweep import store

AXES = {"x": np.linspace(-2.0, 3.0, 5).tolist(), "y": [0.5, -1.0, 4.0]}  # 15 points
OTHER = {"x": np.linspace(-1.0, 4.0, 5).tolist(), "y": [0.5, -1.0, 4.0]}  # same shape
CHUNK = 3
ARRAYS = ("out_value", "out_count", "checksum", "done")


def _poly(p):
    return {"value": p["x"] ** 3 - 2.0 * p["x"] * p["y"],
            "count": (10.0 * p["x"]).astype("int32")}


def _run(path, axes=AXES, resume=False, runner=None):
    return sweep.run(_poly, axes, chunk_size=CHUNK, store=path, resume=resume, quiet=True,
                     runner=runner)


def _file(path, array, index):
    return Path(path) / array / "c" / str(index)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("pristine")
    ds = _run(root / "a.zarr")
    _run(root / "other.zarr", axes=OTHER)
    _run(root / "twin.zarr")  # the same sweep, laid out again
    return root, ds


@pytest.fixture
def finished(pristine, tmp_path):
    root, _ = pristine
    for name in ("a.zarr", "other.zarr", "twin.zarr"):
        shutil.copytree(root / name, tmp_path / name)
    return tmp_path / "a.zarr"


def _swap(path):
    for array in ARRAYS:
        a, b = _file(path, array, 1), _file(path, array, 3)
        data_a, data_b = a.read_bytes(), b.read_bytes()
        a.write_bytes(data_b)
        b.write_bytes(data_a)
    return [1, 3]


def _transplant(path, source):
    for array in ARRAYS:
        shutil.copyfile(_file(path.parent / source, array, 2), _file(path, array, 2))
    return [2]


def _truncate(path):
    f = _file(path, "out_value", 4)
    f.write_bytes(f.read_bytes()[:-3])
    return [4]


def _flip_bit(path):
    f = _file(path, "out_count", 0)
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x10
    f.write_bytes(bytes(data))
    return [0]


def _edit_value(path):
    zarr.open_group(str(path), mode="r+")["out_value"][7] = 42.0  # chunk 2, checksum kept
    return [2]


DAMAGES = {
    "swapped": _swap,
    "transplanted-other-sweep": lambda p: _transplant(p, "other.zarr"),
    "transplanted-same-sweep": lambda p: _transplant(p, "twin.zarr"),
    "truncated": _truncate,
    "bit-flipped": _flip_bit,
    "value-edited": _edit_value,
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_each_damage_is_detected_and_recomputed(finished, pristine, damage, capsys):
    victims = DAMAGES[damage](finished)
    problems = store.verify(finished)
    assert [f"chunk {i} is corrupt" in line for line, i in zip(problems, victims)] == \
        [True] * len(victims), problems
    assert cli.main(["verify", str(finished)]) == 1
    capsys.readouterr()

    runner = sweep.Runner(_poly, chunk_size=CHUNK)
    calls = []
    original = runner.chunk
    runner.chunk = lambda points: (calls.append(len(points["x"])), original(points))[1]
    resumed = _run(finished, resume=True, runner=runner)
    assert calls == [CHUNK] * len(victims)
    assert f"recomputing {len(victims)} corrupt chunk(s) {victims}" in capsys.readouterr().err
    for name in ("value", "count"):
        assert np.array_equal(resumed[name].values, pristine[1][name].values), name
    assert store.verify(finished) == []


def _nan_lanes(p):
    zero = p["x"] - p["x"]
    return {"value": zero / zero, "count": (10.0 * p["x"]).astype("int32")}  # NaN, sign bit set


def test_an_all_nan_chunk_verifies_and_resumes(tmp_path):
    path = tmp_path / "nan.zarr"
    first = sweep.run(_nan_lanes, AXES, chunk_size=CHUNK, store=path, quiet=True)
    assert np.isnan(first["value"].values).all()
    assert store.verify(path) == []
    again = sweep.run(_nan_lanes, AXES, chunk_size=CHUNK, store=path, resume=True, quiet=True)
    assert np.array_equal(again["count"].values, first["count"].values)


def _set_attr(path, **attrs):
    meta_path = Path(path) / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"].update(attrs)
    meta_path.write_text(json.dumps(meta))


def test_a_store_of_another_version_is_refused_in_one_line(finished):
    _set_attr(finished, jaxflow_version="0.0.1")
    with pytest.raises(sweep.SweepError) as info:
        _run(finished, resume=True)
    message = str(info.value)
    assert "jaxflow 0.0.1" in message and "\n" not in message and "--resume" in message
    assert not isinstance(info.value, sweep.StoreDamagedError)  # exit 2 in the CLI, not 1


def test_the_lock_follows_the_real_path(finished):
    alias = finished.parent / "alias.zarr"
    os.symlink(finished, alias)
    with _store_lock.WriterLock(finished, process_index=0):
        with pytest.raises(sweep.SweepError, match="being written by another run"):
            _run(alias, resume=True)
    _run(alias, resume=True)  # released: the alias is usable


def test_a_lock_file_left_by_a_dead_run_is_taken_over(finished):
    lock = Path(_store_lock.lock_path(os.path.realpath(finished), 0))
    lock.write_text("pid 999999 host gone\n")  # what a killed holder leaves behind
    _run(finished, resume=True)
    with _store_lock.WriterLock(finished, process_index=0) as held:
        assert _store_lock.holder(held.path) == f"pid {os.getpid()} host {os.uname().nodename}"


def test_an_interrupt_during_a_chunk_write_leaves_no_partial_file(tmp_path, monkeypatch, ctrl_c):
    from zarr.storage import _local

    original = _local._put
    calls = []

    def interrupted_put(path, value, exclusive=False):
        if "out_value" in str(path) and "/c/" in str(path):
            calls.append(path)
            if len(calls) == 2:  # inside the second chunk's write, once
                ctrl_c()
        return original(path, value, exclusive)

    monkeypatch.setattr(_local, "_put", interrupted_put)
    path = tmp_path / "s.zarr"
    with pytest.raises(KeyboardInterrupt):
        _run(path)
    monkeypatch.undo()
    assert not [p for p in path.rglob("*") if p.name.endswith(".partial")]
    leftover = _file(path, "out_value", 0).with_suffix("." + "ab" * 16 + ".partial")
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"killed mid-write")
    _run(path, resume=True)
    assert not leftover.exists() and store.verify(path) == []


def test_the_checksum_covers_index_and_store():
    layout = store.Layout(2, 2, {"y": ((), np.dtype("float64"))})
    chunk = {"y": np.asarray(jnp.array([1.0, 2.0]))}
    key = store.store_key("fingerprint", "0.1.0", "a" * 32)
    sums = {store.checksum(chunk, layout, i, k) for i in (0, 1)
            for k in (key, store.store_key("fingerprint", "0.1.0", "b" * 32))}
    assert len(sums) == 4
