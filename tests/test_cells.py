"""Every experiment keeps a store (jaxflow.sweep.cells): --resume, --distributed, --dtype and
the size check, on two experiments that run as cells: matrix sensing (one cell per back-end x
depth, through experiments.backends) and saddle-to-saddle (one per back-end x depth x scale,
its own loop).

Tiny configs, in-process ``cli.main`` (figures stubbed out); each program is compiled once (six
in all, most of the file's ~20 s on 2 cores).
"""

import shutil
import threading

import numpy as np
import pytest
import xarray as xr

from jaxflow import cli, experiments
from jaxflow.sweep import cell_store, cells, resources

SENSING = ["experiment", "matrix-sensing", "--d", "4", "--m", "20", "--targets", "2,1",
           "--num-modes", "2", "--depths", "2", "--learning-rate", "0.05", "--num-steps", "200",
           "--save-every", "50", "--quiet"]  # t = 10: both targets learned
SADDLES = dict(depths=(2,), scales=(1e-4, 1e-8), samples=201, num_steps=2000,
               max_learning_rate=1e-2)  # 3 cells: the descent at 1e-8 would need rate 0.02
RUNS = {"matrix-sensing": SENSING, "saddle-to-saddle": [
    "experiment", "saddle-to-saddle", "--depths", "2", "--scales", "1e-4,1e-8", "--samples",
    "201", "--num-steps", "2000", "--max-learning-rate", "1e-2", "--quiet"]}
MEASURED = {"wall_time"}  # a clock reading: the one variable a rerun may not reproduce


@pytest.fixture(autouse=True)
def quiet_command(monkeypatch):
    """No figures (not what is tested here) and no persistent compilation cache."""
    monkeypatch.setattr(experiments.Experiment, "figures", lambda self, ds: {})
    monkeypatch.setattr(cli._process, "enable_compilation_cache", lambda: "")


def read(out, name):
    with xr.open_dataset(out / f"{experiments.get(name).file_stem}.nc", engine="h5netcdf") as ds:
        return ds.load()


def assert_bitwise_equal(a, b):
    """Every variable (but the measured wall time) with the same dtype and bits."""
    assert set(a.variables) == set(b.variables)
    for key in set(a.variables) - MEASURED:
        x, y = a[key].values, b[key].values
        assert x.dtype == y.dtype, key
        assert x.tobytes() == y.tobytes(), key


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """``uninterrupted(name)``: the output directory of one uninterrupted run (computed once)."""
    done = {}

    def get(name):
        if name not in done:
            out = tmp_path_factory.mktemp(name)
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(experiments.Experiment, "figures", lambda self, ds: {})
                mp.setattr(cli._process, "enable_compilation_cache", lambda: "")
                assert cli.main([*RUNS[name], "--out", str(out)]) == 0
            done[name] = out
        return done[name]

    return get


def copy_of(uninterrupted, name, tmp_path):
    out = tmp_path / name
    shutil.copytree(uninterrupted(name), out)
    return out


def computed_cells(monkeypatch) -> list[str]:
    """The names of the cells computed from now on, in order."""
    names = []
    real = cells._compute

    def counting(cell):
        names.append(cell.name)
        return real(cell)

    monkeypatch.setattr(cells, "_compute", counting)
    return names


@pytest.mark.parametrize("name, finished", [("matrix-sensing", 1), ("saddle-to-saddle", 2)])
def test_interrupted_then_resumed_equals_uninterrupted(name, finished, uninterrupted, tmp_path,
                                                       monkeypatch, capsys):
    """Interrupted after ``finished`` cells (Ctrl-C), then ``--resume``: only the missing
    cells are computed and the dataset is bitwise the uninterrupted run's."""
    expected = read(uninterrupted(name), name)
    out = tmp_path / "out"
    real_write = cells._write
    written = []

    def interrupting(backing, index, outputs):
        if len(written) == finished:
            raise KeyboardInterrupt
        real_write(backing, index, outputs)
        written.append(index)

    monkeypatch.setattr(cells, "_write", interrupting)
    assert cli.main([*RUNS[name], "--out", str(out)]) == 130
    monkeypatch.setattr(cells, "_write", real_write)
    store = out / experiments.get(name).store_name
    total = len(cell_store.CellStore.read(store))
    capsys.readouterr()
    assert cli.main(["verify", str(out)]) == 1
    assert f"cells not computed yet: {total - finished} of {total}" in capsys.readouterr().out
    computed = computed_cells(monkeypatch)
    assert cli.main([*RUNS[name], "--out", str(out), "--resume"]) == 0
    assert len(computed) == total - finished
    assert_bitwise_equal(read(out, name), expected)


def test_a_garbled_cell_is_reported_and_recomputed(uninterrupted, tmp_path, monkeypatch, capsys):
    out = copy_of(uninterrupted, "matrix-sensing", tmp_path)
    store = cell_store.CellStore.read(out / "matrix-sensing.cells")
    path = store.cell_path(1)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2: len(data) // 2 + 16] = bytes(16)  # zeros inside the stored arrays
    open(path, "wb").write(bytes(data))
    capsys.readouterr()
    assert cli.main(["verify", str(out)]) == 1
    said = capsys.readouterr().out
    assert f"cell 1 ({store.names[1]}) is corrupt" in said, said
    computed = computed_cells(monkeypatch)
    assert cli.main([*SENSING, "--out", str(out), "--resume"]) == 0
    assert computed == [store.names[1]]
    assert_bitwise_equal(read(out, "matrix-sensing"),
                         read(uninterrupted("matrix-sensing"), "matrix-sensing"))
    assert cli.main(["verify", str(out)]) == 0


def test_a_store_of_another_config_is_refused(uninterrupted, tmp_path, cli_refuses):
    out = copy_of(uninterrupted, "matrix-sensing", tmp_path)
    store = out / "matrix-sensing.cells"
    before = {p.name: p.read_bytes() for p in store.iterdir()}
    cli_refuses([*SENSING, "--seed", "1", "--out", str(out), "--resume"],
                "made by another config", "seed = 0 there, 1 here")
    assert {p.name: p.read_bytes() for p in store.iterdir()} == before


def test_two_processes_share_the_cells(uninterrupted, tmp_path, monkeypatch):
    """Process p of 2 computes the cells i % 2 == p, each exactly once; both return the
    whole dataset (threads stand in for the processes of jax.distributed)."""
    experiment = experiments.get("saddle-to-saddle")
    config = experiment.config(**SADDLES)
    computed = computed_cells(monkeypatch)
    by = {}
    real = cells._compute
    monkeypatch.setattr(cells, "_compute", lambda cell: (
        by.setdefault(cell.name, []).append(threading.current_thread().name), real(cell))[1])
    store = tmp_path / experiment.store_name
    results = {}

    def process(index):
        results[index] = experiment.run(config, quiet=True, store=store, process_index=index,
                                        process_count=2)

    threads = [threading.Thread(target=process, args=(i,), name=f"process {i}") for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    names = cell_store.CellStore.read(store).names
    assert sorted(computed) == sorted(names)  # every cell, each once
    assert by == {n: [f"process {i % 2}"] for i, n in enumerate(names)}
    expected = read(uninterrupted("saddle-to-saddle"), "saddle-to-saddle")
    for index in (0, 1):
        for key in set(expected.variables) - MEASURED:
            np.testing.assert_array_equal(results[index][key].values, expected[key].values)


def test_float32_is_stored_as_float32_and_close_to_float64(uninterrupted, tmp_path):
    """--dtype float32: the inputs drawn in float64, rounded once, solved in float32. Measured
    here: singular values within 2.7e-7 of float64's (relative to the largest target), learning
    times within 1.5e-6 relative; the bounds below leave a factor 30 or more."""
    exact = read(uninterrupted("matrix-sensing"), "matrix-sensing")
    out = tmp_path / "f32"
    assert cli.main([*SENSING, "--dtype", "float32", "--out", str(out)]) == 0
    fast = read(out, "matrix-sensing")
    assert fast.attrs["dtype"] == "float32" and exact.attrs["dtype"] == "float64"
    assert 'dtype = "float32"' in fast.attrs["config"]
    for key in ("modes", "learning_time", "reconstruction_error", "train_loss"):
        assert fast[key].dtype == np.float32 and exact[key].dtype == np.float64, key
    np.testing.assert_array_equal(fast["status"].values, exact["status"].values)
    scale = np.abs(exact["targets"].values).max()
    np.testing.assert_allclose(fast["modes"].values, exact["modes"].values, rtol=0,
                               atol=1e-5 * scale)
    t32, t64 = fast["learning_time"].values, exact["learning_time"].values
    assert np.isfinite(t64).all()  # every fraction of both targets reached by t = 10
    np.testing.assert_allclose(t32, t64, rtol=5e-5)


def test_size_check_refuses_naming_the_override(tmp_path, monkeypatch, cli_refuses):
    monkeypatch.setattr(resources, "available_memory", lambda: 1000)
    out = tmp_path / "out"
    cli_refuses([*SENSING, "--out", str(out)], "memory", "--no-size-check")
    assert not out.exists()
    assert cli.main([*SENSING, "--out", str(out), "--no-size-check"]) == 0


def test_every_experiment_offers_the_store_options(capsys):
    """--resume, --distributed and --no-size-check for every experiment, --dtype exactly where
    the numerics allow float32; each with its own help sentence."""
    float32 = {"phase-diagram", "matrix-sensing", "quadratic"}
    for e in experiments.EXPERIMENTS:
        with pytest.raises(SystemExit):
            cli.main(["experiment", e.name, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for said in ["--resume continue an interrupted run from its store",
                     "--distributed one process per host via jax.distributed",
                     "--no-size-check run even if the estimated memory"]:
            assert said in text, (e.name, said)
        assert f"{e.store_suffix} in --out" in text, e.name
        assert ("--dtype TEXT float64 (exact) or float32" in text) == (e.name in float32), e.name
