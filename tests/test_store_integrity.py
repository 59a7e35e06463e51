"""The store never lies: every chunk proves itself, a damaged store is named, never read as data.

Checked here, on a cheap polynomial sweep (no solver; 5 chunks of 3 points):

* **Fill values** of a never-written chunk cannot pass for data: NaN (floats), the most negative
  integer (signed), and the chunk fails verification.
* **A deleted data chunk** of a finished store (its done flag kept: zarr would read zeros or the
  fill value) is found by ``store.verify`` / ``jaxflow verify`` (exit 1, one line naming the
  chunk), recomputed by ``resume=True`` (only that chunk) and the dataset is bitwise the
  uninterrupted one. The same for a **corrupted** chunk (garbage bytes), a **truncated** one, a
  deleted checksum and a deleted done flag.
* **Damaged metadata**: bad JSON in ``zarr.json``, a removed ``done`` array, a changed dtype:
  ``resume`` refuses with one line naming the store and the remedy; ``jaxflow verify`` prints
  one line and exits 1; nothing raises a raw traceback (no JSONDecodeError, KeyError, codec
  RuntimeError).
* **A foreign directory** at the store path (no ``zarr.json``) is refused by ``resume`` and its
  contents are left untouched (it used to be emptied).
* A fresh store is laid out beside its path and renamed into place; leftovers of a layout
  killed midway are removed (a planted symbolic link with such a name is not followed).
* A store corrupted *after* the sweep verified it at start is still caught by the final read
  (every export is verified): the chunk is recomputed.
"""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from jaxflow import cli, sweep
from jaxflow.sweep import runner as sweep_runner
from jaxflow.sweep import store

AXES = {"x": np.linspace(-2.0, 3.0, 5).tolist(), "y": [0.5, -1.0, 4.0]}  # 15 points
CHUNK = 3  # 5 chunks


def _poly(p):
    return {
        "value": p["x"] ** 3 - 2.0 * p["x"] * p["y"],
        "sign": p["x"] > p["y"],
        "count": (10.0 * p["x"]).astype("int32"),
    }


def _run(path, resume=False, runner=None, **kw):
    return sweep.run(_poly, AXES, chunk_size=CHUNK, store=path, resume=resume, quiet=True,
                     runner=runner, **kw)


@pytest.fixture(scope="module")
def reference():
    return sweep.run(_poly, AXES, chunk_size=CHUNK, quiet=True)


@pytest.fixture
def finished(tmp_path):
    path = tmp_path / "out" / "sweep.zarr"
    _run(path)
    assert store.verify(path) == []
    return path


def _counting_runner():
    runner = sweep.Runner(_poly, chunk_size=CHUNK)
    calls = []
    original = runner.chunk
    runner.chunk = lambda points: (calls.append(len(points["x"])), original(points))[1]
    return runner, calls


def _assert_bitwise(a, b):
    for name in ("value", "sign", "count"):
        assert a[name].dtype == b[name].dtype
        assert np.array_equal(a[name].values, b[name].values), name


def _chunk_file(path, array, index):
    return Path(path) / array / "c" / str(index)


def test_fill_values_cannot_pass_for_data(tmp_path):
    layout = store.Layout(chunk_size=2, n_chunks=2, outputs={
        "f": ((), np.dtype("float64")), "i": ((), np.dtype("int32")), "b": ((), np.dtype(bool))})
    s = store.Store.open(tmp_path / "s.zarr", layout=layout, fingerprint="x", resume=False)
    s.write(0, {"f": [1.0, 2.0], "i": [3, 4], "b": [True, False]})
    data, ok = s.read()
    assert ok.tolist() == [True, False]
    assert np.isnan(data["f"][2:]).all()
    assert (data["i"][2:] == np.iinfo(np.int32).min).all()


@pytest.mark.parametrize("damage", ["delete-data", "garbage-data", "truncate-data",
                                    "delete-checksum", "delete-done"])
def test_damaged_chunk_is_found_and_recomputed(finished, reference, damage, capsys):
    victim = 2
    if damage == "delete-data":
        _chunk_file(finished, "out_value", victim).unlink()
    elif damage == "garbage-data":
        _chunk_file(finished, "out_count", victim).write_bytes(os.urandom(40))
    elif damage == "truncate-data":
        f = _chunk_file(finished, "out_value", victim)
        f.write_bytes(f.read_bytes()[:7])
    elif damage == "delete-checksum":
        _chunk_file(finished, "checksum", victim).unlink()
    else:
        _chunk_file(finished, "done", victim).unlink()

    problems = store.verify(finished)
    assert len(problems) == 1 and "\n" not in problems[0]
    assert f"chunk {victim} is corrupt" in problems[0] or f"({victim})" in problems[0]
    assert "--resume" in problems[0]
    code = cli.main(["verify", str(finished.parent)])
    out = capsys.readouterr().out
    assert code == 1 and out.strip() == problems[0]

    runner, calls = _counting_runner()
    resumed = _run(finished, resume=True, runner=runner)
    assert calls == [CHUNK]  # only the damaged chunk
    if damage != "delete-done":  # a lost flag is a missing chunk, not a corrupt one
        assert f"recomputing 1 corrupt chunk(s) [{victim}]" in capsys.readouterr().err
    _assert_bitwise(resumed, reference)
    assert store.verify(finished) == []
    assert cli.main(["verify", str(finished)]) == 0
    assert "every chunk verified" in capsys.readouterr().out


def _edit_json(path, edit):
    import json

    meta = json.loads(Path(path).read_text())
    edit(meta)
    Path(path).write_text(json.dumps(meta))


@pytest.mark.parametrize("damage", ["bad-json", "no-done-array", "dtype-changed", "no-layout"])
def test_damaged_metadata_is_one_line_never_a_traceback(finished, damage, capsys):
    if damage == "bad-json":
        (finished / "zarr.json").write_text('{"zarr_format": 3, "node_type": "gro')
    elif damage == "no-done-array":
        shutil.rmtree(finished / "done")
    elif damage == "dtype-changed":
        _edit_json(finished / "out_value" / "zarr.json",
                   lambda m: m.update(data_type="float32", fill_value=0.0))
    else:
        _edit_json(finished / "zarr.json", lambda m: m["attributes"].pop("layout"))

    with pytest.raises(sweep.SweepError) as info:
        _run(finished, resume=True)
    message = str(info.value)
    assert "\n" not in message and str(finished) in message
    assert "move it away" in message

    problems = store.verify(finished)
    assert len(problems) == 1 and "\n" not in problems[0] and str(finished) in problems[0]
    assert cli.main(["verify", str(finished)]) == 1
    captured = capsys.readouterr()
    assert captured.out.strip() == problems[0] and "Traceback" not in captured.err


def test_a_foreign_directory_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "phase_diagram.zarr"
    path.mkdir()
    (path / "precious.txt").write_text("keep me")
    for resume in (True, False):
        with pytest.raises(sweep.SweepError, match="not a jaxflow store"):
            _run(path, resume=resume)
    assert (path / "precious.txt").read_text() == "keep me"
    assert sorted(os.listdir(path)) == ["precious.txt"]


def test_corruption_after_the_start_check_is_caught_by_the_final_read(tmp_path, reference,
                                                                        monkeypatch):
    path = tmp_path / "sweep.zarr"
    _run(path)
    # Clear one flag (so the resume computes chunk 1), and damage chunk 3 only once the resume
    # has passed its start check: the final verified read must find and recompute it.
    group = zarr.open_group(str(path), mode="r+")
    group["done"][1] = False
    original = sweep_runner._write

    def write_then_damage(backing, index, outputs):
        original(backing, index, outputs)
        _chunk_file(path, "out_value", 3).unlink(missing_ok=True)

    monkeypatch.setattr(sweep_runner, "_write", write_then_damage)
    runner, calls = _counting_runner()
    resumed = _run(path, resume=True, runner=runner)
    assert calls == [CHUNK, CHUNK]  # chunk 1, then chunk 3 again at the final read
    _assert_bitwise(resumed, reference)


def test_a_fresh_store_is_laid_out_atomically(tmp_path):
    path = tmp_path / "sweep.zarr"
    stale = tmp_path / ".sweep.zarr.layout-killed"  # a run killed while laying out
    (stale / "out_value").mkdir(parents=True)
    target = tmp_path.parent / f"{tmp_path.name}-outside"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    os.symlink(target, tmp_path / ".sweep.zarr.layout-planted")
    _run(path)
    assert not stale.exists()
    assert (target / "keep.txt").read_text() == "keep"  # a planted link is not followed
    os.unlink(tmp_path / ".sweep.zarr.layout-planted")
    # Nothing but the store and its lock file: the layout directory was renamed into place.
    assert sorted(os.listdir(tmp_path)) == ["sweep.zarr", "sweep.zarr.writer-0.lock"]


def test_verify_without_a_store_is_a_one_line_error(tmp_path, capsys):
    assert cli.main(["verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("jaxflow: error: verify: no jaxflow store") and err.count("\n") == 1
