"""Inputs at the edges: each a one-line error or an honest result, never a traceback.

* A config file that is not UTF-8: one line naming the file.
* ``JAXFLOW_CPU_DEVICES=abc``: every command exits 2 with one line naming the variable (the
  import itself no longer raises). ``JAXFLOW_ENABLE_X64=0`` (read at import up to 0.1) and a
  float64 run with x64 off are refused too: tests/test_x64.py.
* ``--model factor`` (removed: the factor diagram is ``jaxflow experiment factor-diagram``),
  flags of the phase diagram given to the factor diagram (``--dtype``,
  ``--ratios``), the factor model's ``num_modes`` in a toy config: one line each.
* Experiment configs refuse ``learning_rate=inf``, ``targets=(nan,)``, reversed ``fractions``,
  a negative ``horizon``.
* ``seed = 1e30`` in TOML and ``sweep.run(seed=2**70)``: refused up front, nothing written.
"""

import math
import subprocess
import sys

import pytest

from jaxflow import sweep
from jaxflow.experiments.config import ConfigError


def assert_one_line(code, err, *words):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxflow: error: "), err
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_non_utf8_config(tmp_path, cli_refuses):
    path = tmp_path / "latin1.toml"
    path.write_bytes("depths = [2.0, 3.0]  # profondeur r\xe9elle\n".encode("latin-1"))
    out = tmp_path / "out"
    cli_refuses(["phase-diagram", "--config", str(path), "--out", str(out)], str(path), "UTF-8")
    assert not out.exists()


def test_bad_cpu_device_count_is_one_line(subprocess_env):
    proc = subprocess.run([sys.executable, "-m", "jaxflow.cli", "info"], capture_output=True,
                          text=True, env={**subprocess_env, "JAXFLOW_CPU_DEVICES": "abc"},
                          timeout=120)
    assert_one_line(proc.returncode, proc.stderr, "JAXFLOW_CPU_DEVICES", "'abc'")


@pytest.mark.parametrize("argv, words", [
    (["phase-diagram", "--model", "factor"], ["--model", "experiment factor-diagram"]),
    (["phase-diagram", "--model", "toy"], ["--model", "experiment factor-diagram"]),
    (["experiment", "factor-diagram", "--dtype", "float32"], ["--dtype"]),
    (["experiment", "factor-diagram", "--ratios", "1.5,4"], ["--ratios", "did you mean --ratio"]),
])
def test_flags_of_the_other_diagram(tmp_path, cli_refuses, argv, words):
    out = tmp_path / "out"
    cli_refuses([*argv, "--out", str(out)], *words)
    assert not out.exists()


def test_factor_options_in_a_toy_config(tmp_path, cli_refuses):
    path = tmp_path / "toy.toml"
    path.write_text("depths = [2.0, 3.0]\nnum_modes = 3\n")
    cli_refuses(["phase-diagram", "--config", str(path), "--out", str(tmp_path / "out")],
                "num_modes")


@pytest.mark.parametrize("module, cls, field, value", [
    ("matrix_sensing", "MatrixSensingConfig", "learning_rate", math.inf),
    ("matrix_sensing", "MatrixSensingConfig", "targets", (math.nan, 1.0)),
    ("quadratic", "QuadraticConfig", "fractions", (0.9, 0.5, 0.1)),
    ("quadratic", "QuadraticConfig", "learning_rate", -1.0),
    ("diagonal", "DiagonalConfig", "targets", (8.0, math.inf)),
    ("diagonal", "DiagonalConfig", "late_times", (1e6, math.inf)),
    ("convolutional", "ConvolutionalConfig", "learning_rate", math.nan),
    ("omp", "OMPConfig", "horizon", -1.0),
    ("generalization", "GeneralizationConfig", "learning_rate", math.inf),
    ("generalization", "GeneralizationConfig", "targets", (math.nan,)),
])
def test_experiment_configs_refuse(module, cls, field, value):
    import importlib

    config = getattr(importlib.import_module(f"jaxflow.experiments.{module}"), cls)
    with pytest.raises(ConfigError, match=field):
        config(**{field: value})


def test_huge_seeds_are_refused_up_front(tmp_path, cli_refuses):
    path = tmp_path / "seed.toml"
    path.write_text("seed = 1e30\n")
    out = tmp_path / "out"
    cli_refuses(["phase-diagram", "--config", str(path), "--out", str(out)], "seed")
    assert not out.exists()

    store = tmp_path / "api" / "s.zarr"
    with pytest.raises(sweep.SweepError, match="seed"):
        sweep.run(lambda p: {"y": p["x"]}, {"x": [1.0, 2.0]}, seed=2**70, store=store, quiet=True)
    assert not (tmp_path / "api").exists()
