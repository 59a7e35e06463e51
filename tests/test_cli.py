"""The ``jaxflow`` command, run in-process through ``cli.main`` with its output captured.

Checked here:

* ``phase-diagram`` on a tiny grid exits 0, writes phase_diagram.nc, phase_diagram.png and
  thresholds.png (a real netCDF file with the grid asked for, real PNG files) and names them on
  stdout.
* ``--config FILE.toml`` with flags: flags win over the file, the file sets the rest; the
  resolved configuration stored in the .nc says so.
* Bad input exits with status 2 and one line on stderr that names the option, without a
  traceback: --ratios 0.5, --depths 0.5, --depths '' (empty axis), --scales 2, an unwritable
  --out, an existing store without --resume, a malformed TOML config.
* ``info`` reports float64 on and the jax version; ``threshold --depth 3 --ratio 1.5`` prints
  theory.incremental_threshold(3, 1.5) to 8 digits; ``threshold --ratio 1`` exits 2.
* ``--version`` prints ``jaxflow X.Y.Z``; an abbreviated option (``--dep``) is refused, naming
  the option it may mean; every ``--help`` shows the defaults.
* ``experiment NAME`` takes one flag per config field: smoke sizes < ``--config`` < flags, the
  result stored in the dataset's ``config``, which fed back as ``--config`` reproduces the run;
  a misspelt flag or TOML key is one line with "did you mean".

In-process runs share the session's compiled programs (a subprocess costs an import of jax and
a compilation) and the run's persistent compilation cache (tests/conftest.py); the commands that
simulate run two programs in all: one tiny phase diagram (also the file ``jaxflow plot`` redraws)
and one matrix-sensing experiment (also the one its stored config reruns).
"""

import dataclasses
import math
import os
import re
import sys
import tomllib

import numpy as np
import pytest
import xarray as xr

from jaxflow.experiments import phase_diagram as pd
from jaxflow.oracles import theory

TINY = ["--depths", "2,3", "--ratios", "1.5,4", "--scales", "1e-10:1e-2:6", "--chunk-size", "16", "--quiet"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def jaxflow(run_cli, *args):
    """``jaxflow ARGS`` in this process (conftest's ``run_cli``: ``cli.main``, its output
    captured; tests/test_input_edges.py runs ``python -m jaxflow.cli`` itself)."""
    return _Result(*run_cli(args))


class _Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def assert_usage_error(result, *names):
    """Exit 2, one line on stderr naming the option, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout[-2000:], result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert lines[0].startswith("jaxflow: error:"), lines[0]
    for name in names:
        assert name in lines[0], (name, lines[0])


# --------------------------------------------------------------------------------------------
# A tiny phase diagram


@pytest.fixture(scope="module")
def tiny_run(run_cli, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "out"
    result = jaxflow(run_cli, "phase-diagram", *TINY, "--out", str(out))
    return result, out


def test_phase_diagram_writes_and_names_its_files(tiny_run):
    result, out = tiny_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for name in ("phase_diagram.nc", "phase_diagram.png", "thresholds.png"):
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, name
        assert str(path) in result.stdout, name
    for name in ("phase_diagram.png", "thresholds.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    assert (out / "phase_diagram.zarr" / "zarr.json").is_file()
    assert "24 trajectories" in result.stdout


def test_phase_diagram_netcdf_contents(tiny_run):
    _, out = tiny_run
    with xr.open_dataset(out / "phase_diagram.nc", engine="h5netcdf") as ds:
        ds = ds.load()
    np.testing.assert_array_equal(ds["depth"].values, [2.0, 3.0])
    np.testing.assert_array_equal(ds["ratio"].values, [1.5, 4.0])
    np.testing.assert_allclose(ds["scale"].values, np.geomspace(1e-10, 1e-2, 6), rtol=1e-15)
    np.testing.assert_allclose(ds["log_scale"].values, np.log(np.geomspace(1e-10, 1e-2, 6)), rtol=1e-15)
    assert ds["margin"].dims == ("depth", "ratio", "log_scale")
    assert ds["incremental"].dtype == bool
    cfg = pd.PhaseDiagramConfig.from_mapping(tomllib.loads(ds.attrs["config"]))
    assert cfg.chunk_size == 16 and cfg.depths == (2.0, 3.0)
    err = pd.threshold_log_error(ds)
    assert float(err.max()) <= 1e-5
    # Provenance: the command as typed (tests/test_labelled_data.py checks the rest).
    assert ds.attrs["command"].startswith("jaxflow phase-diagram --depths 2,3 ")
    assert int(ds.attrs["smoke"]) == 0


def test_existing_store_without_resume(run_cli, tiny_run):
    _, out = tiny_run
    result = jaxflow(run_cli, "phase-diagram", *TINY, "--out", str(out))
    assert_usage_error(result, "--resume", "already exists")


def test_config_file_and_overriding_flags(run_cli, tmp_path):
    config = tmp_path / "pd.toml"
    # Flags below override depths, ratios, scales, chunk_size, rtol and atol; the file alone
    # sets seed and refine_iterations. The compiled program equals tiny_run's.
    config.write_text(
        "depths = [5.0]\nratios = [2.0]\nscales = [1e-3]\nchunk_size = 64\n"
        "rtol = 1e-6\natol = 1e-5\nseed = 3\nrefine_iterations = 12\n"
    )
    rtol = pd.PhaseDiagramConfig().rtol  # the default, as in tiny_run: same compiled program
    atol = pd.PhaseDiagramConfig().atol
    out = tmp_path / "out"
    result = jaxflow(run_cli, "phase-diagram", "--config", str(config), *TINY, "--rtol", repr(rtol),
                     "--atol", repr(atol), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    with xr.open_dataset(out / "phase_diagram.nc", engine="h5netcdf") as ds:
        attrs = dict(ds.attrs)
        depths = ds["depth"].values
    stored = tomllib.loads(attrs["config"])
    assert stored["depths"] == [2.0, 3.0]
    assert stored["ratios"] == [1.5, 4.0]
    np.testing.assert_allclose(stored["scales"], np.geomspace(1e-10, 1e-2, 6), rtol=1e-15)
    assert stored["chunk_size"] == 16
    assert stored["rtol"] == rtol and stored["atol"] == atol
    assert stored["seed"] == 3 and stored["refine_iterations"] == 12
    assert stored["start"] == 0.1 and stored["finish"] == 0.9  # defaults
    assert attrs["rtol"] == rtol and attrs["seed"] == 3
    np.testing.assert_array_equal(depths, [2.0, 3.0])


# --------------------------------------------------------------------------------------------
# Commands that stop before any simulation, run in-process.


def _quick_commands(tmp):
    grid = {"--depths": "2,3", "--ratios": "1.5,4", "--scales": "1e-10:1e-2:6"}

    def phase_diagram(**changes):
        flags = {**grid, **changes}
        out = flags.pop("--out", str(tmp / "unused-out"))
        return ["phase-diagram", *[x for kv in flags.items() for x in kv],
                "--chunk-size", "16", "--quiet", "--out", out]

    blocker = tmp / "a-file"
    blocker.write_text("not a directory")
    broken = tmp / "broken.toml"
    broken.write_text("depths = [2.0,\nratios = ]\n")
    return {
        "ratios-0.5": phase_diagram(**{"--ratios": "0.5"}),
        "depths-0.5": phase_diagram(**{"--depths": "0.5"}),
        # If an empty --depths were silently taken as "the default depths", the unwritable
        # --out stops the run before any simulation (and the message then names --out).
        "depths-empty": phase_diagram(**{"--depths": "", "--out": str(blocker / "sub")}),
        "scales-2": phase_diagram(**{"--scales": "2"}),
        "scales-unparsable": phase_diagram(**{"--scales": "1e-3:oops:4"}),
        "log-scales-positive": phase_diagram(**{"--log-scales": "2:-1:4"}),
        "out-unwritable": phase_diagram(**{"--out": str(blocker / "sub")}),
        "config-malformed": ["phase-diagram", "--config", str(broken), "--out", str(tmp / "o")],
        "info": ["info"],
        "threshold": ["threshold", "--depth", "3", "--ratio", "1.5"],
        "threshold-ratio-1": ["threshold", "--depth", "3", "--ratio", "1"],
        "version": ["--version"],
        "abbreviation": phase_diagram(**{"--dep": "2"}),
    }


@pytest.fixture(scope="module")
def quick(run_cli, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quick")
    return {name: jaxflow(run_cli, *args) for name, args in _quick_commands(tmp).items()}, tmp


@pytest.mark.parametrize(
    "case, names",
    [
        ("ratios-0.5", ["ratios"]),
        ("depths-0.5", ["depths"]),
        ("depths-empty", ["depths"]),
        ("scales-2", ["scales"]),
        ("scales-unparsable", ["--scales"]),
        ("log-scales-positive", ["--log-scales"]),
        ("out-unwritable", ["--out"]),
        ("config-malformed", ["broken.toml", "TOML"]),
        ("threshold-ratio-1", ["ratio"]),
        ("abbreviation", ["unrecognized arguments: --dep 2", "did you mean --depths?"]),
    ],
)
def test_bad_input(quick, case, names):
    results, tmp = quick
    assert_usage_error(results[case], *names)
    assert not (tmp / "unused-out" / "phase_diagram.zarr").exists()


def test_version(quick):
    import jaxflow

    result = quick[0]["version"]
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"jaxflow {jaxflow.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", jaxflow.__version__)


def test_help_shows_defaults(capsys):
    from jaxflow import cli
    from jaxflow.experiments.matrix_sensing import MatrixSensingConfig

    for argv in (["phase-diagram", "--help"], ["experiment", "matrix-sensing", "--help"],
                 ["threshold", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for said in (f"trajectories per compiled call; each finished chunk is stored, so --resume "
                 f"loses at most one (default: {pd.PhaseDiagramConfig.chunk_size}",
                 f"(default: {pd.PhaseDiagramConfig.start:g})",
                 f"--d N W is d x d (default: {MatrixSensingConfig.d}; --smoke: "
                 f"{MatrixSensingConfig.SMOKE['d']})",
                 "--completion true|false", "--start START the start fraction (default: 0.1)"):
        assert said in text, said


def _option_help(capsys, argv) -> dict[str, str]:
    """``{flag: its help}`` from ``jaxflow ARGV --help`` (argparse's wrapped lines joined)."""
    from jaxflow import cli

    with pytest.raises(SystemExit):
        cli.main([*argv, "--help"])
    helps, flag = {}, None
    for line in capsys.readouterr().out.splitlines():
        match = re.match(r"  (--[\w-]+)(?: \S+)?(?:\s{2,}(.*))?$", line)
        if match:
            flag = match.group(1)
            helps[flag] = match.group(2) or ""
        elif flag and line.startswith(" " * 10):
            helps[flag] = (helps[flag] + " " + line.strip()).strip()
        else:
            flag = None
    return helps


def test_each_option_has_its_own_sentence(capsys):
    """Option help comes from each config field's metadata: no two options of an experiment
    share a sentence (saddle-to-saddle's --d, --m, --targets and --seed once did)."""
    from jaxflow import experiments

    for e in experiments.EXPERIMENTS:
        helps = _option_help(capsys, ["experiment", e.name])
        fields = {"--" + f.name.replace("_", "-") for f in dataclasses.fields(e.config)}
        sentences = {flag: re.sub(r" \(default: .*\)$", "", helps[flag]) for flag in fields}
        assert all(sentences.values()), (e.name, sentences)
        assert len(set(sentences.values())) == len(sentences), (e.name, sentences)
    saddle = _option_help(capsys, ["experiment", "saddle-to-saddle"])
    assert saddle["--d"].startswith("dimension of beta")
    assert saddle["--targets"].startswith("the non-zero entries of beta*")


def test_phase_diagram_is_short_for_the_experiment(capsys):
    """`jaxflow phase-diagram` is `jaxflow experiment phase-diagram`: one parser, one route;
    the factor diagram is an experiment of its own, `--model factor` is refused naming it."""
    from jaxflow import cli

    short = _option_help(capsys, ["phase-diagram"])
    long = _option_help(capsys, ["experiment", "phase-diagram"])
    assert short == long
    assert {"--resume", "--dtype", "--distributed", "--no-size-check", "--smoke"} <= set(short)
    parser = cli.build_parser()
    a = vars(parser.parse_args(["phase-diagram", "--depths", "2", "--resume"]))
    b = vars(parser.parse_args(["experiment", "phase-diagram", "--depths", "2", "--resume"]))
    assert {k: v for k, v in a.items() if k != "command"} == {
        k: v for k, v in b.items() if k != "command"}
    factor = _option_help(capsys, ["experiment", "factor-diagram"])
    assert {"--resume", "--no-size-check", "--ratio"} <= set(factor)


def test_info(quick):
    import jax

    result = quick[0]["info"]
    assert result.returncode == 0, result.stderr
    assert re.search(r"^float64\s+on\b", result.stdout, re.M), result.stdout
    assert re.search(rf"^jax\s+{re.escape(jax.__version__)}$", result.stdout, re.M), result.stdout
    assert os.environ["JAXFLOW_CACHE_DIR"] in result.stdout


def test_threshold(quick):
    result = quick[0]["threshold"]
    assert result.returncode == 0, result.stderr
    match = re.search(r"threshold sigma0_th / sigma\*_j = (\S+)", result.stdout)
    assert match, result.stdout
    printed = float(match.group(1))
    expected = float(theory.incremental_threshold(3.0, 1.5))
    assert f"{printed:.8e}" == f"{expected:.8e}"
    assert abs(printed - expected) <= 1e-9 * expected
    log_match = re.search(r"ln threshold\s+= (\S+)", result.stdout)
    assert math.isclose(float(log_match.group(1)), math.log(expected), rel_tol=1e-11)


def test_the_executable_is_main_then_a_frozen_exit(subprocess_env):
    """The ``jaxflow`` script (pyproject) and ``python -m jaxflow.cli`` run ``cli.command``:
    ``main``'s exit status, then the collector frozen and off for the exit (in a process, not
    here: it would freeze the test worker's heap)."""
    import subprocess

    with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "pyproject.toml"),
              "rb") as fh:
        assert tomllib.load(fh)["project"]["scripts"]["jaxflow"] == "jaxflow.cli:command"
    code = ("import gc, sys\n"
            "from jaxflow import cli\n"
            "sys.argv = ['jaxflow', 'threshold', '--depth', '0', '--ratio', '2']\n"
            "status = cli.command()\n"
            "print('RESULT', status, gc.isenabled(), gc.get_freeze_count() > 0)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=subprocess_env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "RESULT 2 False True" in proc.stdout, proc.stdout  # bad input: status 2
    assert "depth" in proc.stderr


@pytest.fixture(scope="module")
def experiment_run(run_cli, tmp_path_factory):
    """``jaxflow experiment matrix-sensing --smoke --config ms.toml --depths 2 --learning-rate
    2e-3``, once for the module: smoke sizes < the file < flags. Its programs (and the persistent
    cache) are the run's, shared by the tests below, which check the command's files, the
    stored config and its rerun."""
    tmp = tmp_path_factory.mktemp("experiment")
    config = tmp / "ms.toml"
    config.write_text("depths = [3]\nnum_steps = 400\nsave_every = 100\nseed = 5\n")
    out = tmp / "first"
    result = jaxflow(run_cli, "experiment", "matrix-sensing", "--smoke", "--config", str(config),
                     "--depths", "2", "--learning-rate", "2e-3", "--quiet", "--out", str(out))
    return result, out


def test_experiment_command_writes_dataset_and_figure(experiment_run, tmp_path, capsys):
    """`jaxflow experiment NAME`: the dataset and the figure, both named on stdout; `jaxflow
    plot FILE.nc` redraws the figure from the file alone; an unknown NAME or --config key is
    refused."""
    import xarray as xr

    from jaxflow import cli

    result, out = experiment_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert "matrix-sensing.nc" in result.stdout and "matrix-sensing.png" in result.stdout
    assert (out / "matrix-sensing.png").read_bytes()[:8] == PNG_MAGIC
    assert (out / "matrix-sensing.png").stat().st_size > 10_000
    with xr.open_dataset(out / "matrix-sensing.nc", engine="h5netcdf") as ds:
        assert ds.attrs["experiment"] == "matrix-sensing"
        assert set(ds["backend"].values) == {"flow", "descent"} and ds.sizes["depth"] == 1
    # `jaxflow plot FILE.nc` redraws the figures from the file alone (no simulation).
    replot = tmp_path / "replot"
    assert cli.main(["plot", str(out / "matrix-sensing.nc"), "--out", str(replot)]) == 0
    assert (replot / "matrix-sensing.png").stat().st_size > 10_000
    assert cli.main(["experiment", "nope", "--out", str(tmp_path)]) == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err
    # --config is checked like every config: an unknown key is one line naming it.
    bad = tmp_path / "bad.toml"
    bad.write_text("nope = 1\n")
    assert cli.main(["experiment", "quadratic", "--smoke", "--config", str(bad)]) == 2
    assert "unknown option(s) nope" in capsys.readouterr().err


def test_experiment_overrides_are_stored_and_reproduce(experiment_run, run_cli, tmp_path):
    """Smoke sizes < --config < flags; the stored config, fed back, reruns the same experiment."""
    from jaxflow.experiments.matrix_sensing import MatrixSensingConfig

    result, first = experiment_run
    assert result.returncode == 0, result.stderr[-3000:]
    assert "reconstruction_error" in result.stdout and "legend:" in result.stdout
    with xr.open_dataset(first / "matrix-sensing.nc", engine="h5netcdf") as ds:
        ds = ds.load()
    stored = tomllib.loads(ds.attrs["config"])
    assert stored["depths"] == [2] and stored["learning_rate"] == 2e-3  # flags
    assert stored["num_steps"] == 400 and stored["seed"] == 5  # the file
    assert stored["d"] == MatrixSensingConfig.SMOKE["d"]  # smoke sizes
    assert stored["scale"] == MatrixSensingConfig.scale  # defaults
    np.testing.assert_array_equal(ds["depth"].values, [2])

    again = tmp_path / "again"
    (tmp_path / "stored.toml").write_text(ds.attrs["config"])
    rerun = jaxflow(run_cli, "experiment", "matrix-sensing", "--config",
                    str(tmp_path / "stored.toml"), "--quiet", "--out", str(again))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    with xr.open_dataset(again / "matrix-sensing.nc", engine="h5netcdf") as rerun:
        rerun = rerun.load()
    assert rerun.attrs["config"] == ds.attrs["config"]
    np.testing.assert_array_equal(rerun["modes"].values, ds["modes"].values)


@pytest.mark.parametrize("argv, said", [
    (["--deptsh", "2"], "unrecognized arguments: --deptsh 2 (did you mean --depths?)"),
    (["--depths", "2.5"], "depths must be a list of integers, got [2.5]"),
    (["--scale", "small"], "scale must be a number, got 'small'"),
    (["--completion", "maybe"], "completion must be true or false, got 'maybe'"),
    (["--config", "{toml}"], "unknown option(s) deptsh (did you mean depths?)"),
])
def test_experiment_override_errors(argv, said, tmp_path, capsys):
    """A bad flag or key: exit 2, one line naming it (as a bad TOML key or value is)."""
    from jaxflow import cli

    toml = tmp_path / "bad.toml"
    toml.write_text("deptsh = [2]\n")
    argv = [a.replace("{toml}", str(toml)) for a in argv]
    assert cli.main(["experiment", "matrix-sensing", "--smoke", *argv,
                     "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and said in err[0], err
    assert not (tmp_path / "out").exists()


def test_progress_bar_on_a_terminal_only(monkeypatch):
    """Long loops draw a bar on a terminal's stderr; --quiet (quiet=True) and pipes get none."""
    import io

    from jaxflow.sweep import progress as _progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for quiet, stream, drawn in ((False, Terminal(), True), (True, Terminal(), False),
                                 (False, io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        with _progress.bar(3, desc="depth x back-end", quiet=quiet) as runs:
            assert list(_progress.counted(range(3), runs)) == [0, 1, 2]
        assert ("depth x back-end: 100%" in stream.getvalue()) == drawn, stream.getvalue()


def test_plot_writes_png_pdf_svg_and_refuses_other_suffixes(tiny_run, tmp_path, capsys):
    """`jaxflow plot FILE.nc --out`: a directory (--format png|pdf|svg) or a figure file whose
    suffix gives the format; its stem picks one of several figures, else each is F-NAME. The
    file: the tiny phase diagram's (two figures)."""
    from jaxflow import cli

    path = tiny_run[1] / "phase_diagram.nc"
    assert cli.main(["plot", str(path), "--out", str(tmp_path / "a" / "thresholds.svg")]) == 0
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["thresholds.svg"]
    assert cli.main(["plot", str(path), "--out", str(tmp_path / "b" / "paper.pdf")]) == 0
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "paper-phase_diagram.pdf", "paper-thresholds.pdf"]
    assert cli.main(["plot", str(path), "--out", str(tmp_path / "c"), "--format", "pdf"]) == 0
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "phase_diagram.pdf", "thresholds.pdf"]
    capsys.readouterr()
    assert cli.main(["plot", str(path), "--out", str(tmp_path / "fig.jpg")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ".png, .pdf or .svg" in err and "'.jpg'" in err, err
    assert cli.main(["plot", str(path), "--out", str(tmp_path / "f.pdf"), "--format", "svg"]) == 2
    assert "contradicts" in capsys.readouterr().err
    assert not (tmp_path / "fig.jpg").exists() and not (tmp_path / "f.pdf").exists()


def test_old_names_are_refused_with_the_new_one(tmp_path, cli_refuses):
    """One name per concept: an old flag or TOML key is one line naming its new name."""
    out = str(tmp_path / "out")
    cli_refuses(["experiment", "saddle-to-saddle", "--alphas", "1e-3", "--out", out],
                "--alphas was renamed --scales")
    cli_refuses(["experiment", "omp", "--flow-time", "100", "--out", out],
                "--flow-time was renamed --horizon")
    old = tmp_path / "old.toml"
    old.write_text("values = [2.0, 1.0]\n")
    cli_refuses(["experiment", "diagonal", "--config", str(old), "--out", out],
                "config key 'values' was renamed 'targets'")
    assert not (tmp_path / "out").exists()


def test_plot_redraws_a_dataset_written_before_the_rename(tmp_path, capsys):
    """`jaxflow plot` reads the names of before the rename: saddle-to-saddle's dimension
    ``alpha`` (now ``scale``) and diagonal's attribute ``values`` (now ``targets``)."""
    from jaxflow import cli, plot
    from jaxflow.sweep import checksum

    saddles = plot.example_dataset("saddles").rename({"scale": "alpha"})
    saddles.attrs.update(experiment="saddle-to-saddle", values=[4.0, -3.0],
                         config="alphas = [1e-06, 0.001]\ndescent_steps = 100\n")
    diagonal = plot.example_dataset("classification")
    diagonal.attrs.update(experiment="diagonal", loss="exponential", d=10, m=20,
                          values=[2.0, 1.0], config="values = [2.0, 1.0]\n")
    for name, ds in (("saddle-to-saddle", saddles), ("diagonal", diagonal)):
        path = tmp_path / f"{name}.nc"
        path.write_bytes(checksum.seal(ds))
        assert cli.main(["plot", str(path), "--out", str(tmp_path / name)]) == 0, (
            capsys.readouterr().err)
        assert "warning" not in capsys.readouterr().err  # every figure drawn, none skipped
        drawn = sorted(p.name for p in (tmp_path / name).iterdir())
        assert drawn and all(p.endswith(".png") for p in drawn), drawn
    assert sorted(p.name for p in (tmp_path / "saddle-to-saddle").iterdir()) == [
        "saddle-to-saddle-jump-times.png", "saddle-to-saddle.png"]
