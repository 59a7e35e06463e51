"""Hostile input through the command line and the public API (hypothesis).

Every bad input -- NaN, inf, negative, zero, huge, empty, mismatched shapes, wrong types,
malformed TOML -- must give a clear error naming the argument: exit status 2 and one line
``jaxflow: error: ...`` for the command, ``ValueError``/``TypeError`` (``ConfigError`` and
``SweepError`` are ValueErrors) for the API. Never a traceback from inside JAX, and never a
partial store: an invalid run creates neither its output directory nor its store.

Each strategy generates inputs that are bad by construction (one bad argument among valid
ones), so no example starts a simulation. The commands run in-process (``cli.main(argv)``).
"""

import math
import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxflow import cli, sweep
from jaxflow.engine import flow
from jaxflow.experiments import phase_diagram as pd
from jaxflow.experiments.config import ConfigError
from jaxflow.models import toy
from jaxflow.oracles import theory

# derandomize: the same examples on every run, so CI is reproducible (raise max_examples or
# drop it locally to explore further).
FUZZ = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
OUT = os.path.join(tempfile.mkdtemp(prefix="jaxflow-hostile-"), "never-created")

NOT_A_NUMBER = ["nan", "abc", "", " ", ",", "1e3x", "--", "0x10", "1;2", "[1]", "none"]


def fmt(values) -> str:
    return ",".join(repr(float(v)) for v in values)


# --------------------------------------------------------------------------------------------
# The command line


def bad_option():
    """``(option, value, name in the message)``: one option with a value it must refuse."""
    below_one = st.floats(max_value=1.0, exclude_max=True) | st.sampled_from([float("nan"), -math.inf])
    not_ratio = st.floats(max_value=1.0) | st.sampled_from([float("nan"), math.inf, -math.inf])
    not_fraction = st.floats(min_value=1.0) | st.floats(max_value=0.0) | st.just(float("nan"))
    axis = lambda bad: st.tuples(st.lists(bad, min_size=1, max_size=3), st.lists(  # noqa: E731
        st.sampled_from([2.0, 3.0, math.inf]), max_size=2)).map(lambda p: fmt(p[0] + p[1]))
    junk = st.sampled_from(NOT_A_NUMBER)
    return st.one_of(
        st.tuples(st.just("--depths"), axis(below_one) | junk | st.just("2,2"), st.just("depths")),
        st.tuples(st.just("--ratios"), axis(not_ratio) | junk | st.just("1:2:3"), st.just("ratios")),
        st.tuples(st.just("--scales"), axis(not_fraction) | junk | st.sampled_from(["1e-400", "0:1:3", "1e-3:1e-2:0"]),
                  st.just("scales")),
        st.tuples(st.just("--start"), not_fraction.map(repr) | junk, st.just("start")),
        st.tuples(st.just("--finish"), not_fraction.map(repr) | junk, st.just("finish")),
        st.tuples(st.just("--rtol"), not_fraction.map(repr) | junk, st.just("rtol")),
        st.tuples(st.just("--chunk-size"), st.integers(max_value=0).map(str) | junk | st.just("1.5"),
                  st.just("chunk")),
        st.tuples(st.just("--dtype"), st.sampled_from(["float16", "f32", "", "int8", "float"]), st.just("--dtype")),
        st.tuples(st.just("--num-processes"), st.integers(max_value=0).map(str) | junk, st.just("--num-processes")),
        st.tuples(st.just("--process-id"), st.integers(max_value=-1).map(str) | junk, st.just("--process-id")),
        st.tuples(st.just("--coordinator"), st.sampled_from(["localhost", "a:b", ":80", "h: 1", "x:123456", ""]),
                  st.just("--coordinator")),
        st.tuples(st.just("--model"), st.sampled_from(["", "Toy", "deep"]), st.just("--model")),
    )


def run_cli(capsys, argv):
    """``cli.main(argv)`` in-process: (exit status, stdout, stderr)."""
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own exits (there should be none for bad values)
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, out, err, name):
    assert code == 2, (code, out[-500:], err[-1000:])
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("jaxflow: error: "), lines[0]
    assert name in lines[0], (name, lines[0])
    assert "Traceback" not in err + out


@FUZZ
@given(bad=bad_option())
def test_phase_diagram_refuses_bad_options(capsys, bad):
    option, value, name = bad
    argv = ["phase-diagram", "--depths", "2,3", "--ratios", "1.5", "--scales", "1e-6:1e-2:3",
            "--quiet", "--out", OUT, option, value]
    assert_one_line_error(*run_cli(capsys, argv), name)
    assert not os.path.exists(OUT)  # nothing written: no output directory, no store


@FUZZ
@given(
    option=st.sampled_from(["--depth", "--ratio", "--start", "--finish"]),
    value=st.sampled_from(["nan", "-1", "0", "1e400", "-inf", "abc", ""]) | st.floats(max_value=0.0).map(repr),
)
def test_threshold_refuses_bad_options(capsys, option, value):
    if option == "--depth" and value == "1e400":
        value = "0.5"  # an infinite depth is valid
    argv = ["threshold", "--depth", "3", "--ratio", "1.5", option, value]
    assert_one_line_error(*run_cli(capsys, argv), option.lstrip("-"))


@FUZZ
@given(text=st.text(max_size=60) | st.sampled_from(
    ["depths = [2.0,\n", "depths = 2.0, 3.0\n", "[[x]]\ny =\n", "scales = [1e-3, 'a']\n",
     "depths = [2.0]\ndepths = [3.0]\n", "start = 0.5\nfinish = 0.2\n", "seed = -1\n",
     "max_steps = inf\n", "max_steps = nan\n", "dtype = 32\n", "solver = ['Tsit5']\n",
     "chunk_size = 1.5\n", "rtol = true\n", "model = 'factor'\n", "ratios = []\n", "\x00"]))
def test_config_file_errors_name_the_file_or_option(capsys, text):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bad.toml")
        with open(path, "w", encoding="utf-8", errors="surrogatepass") as fh:
            fh.write(text)
        try:
            config = pd.PhaseDiagramConfig.from_toml(path)
        except ConfigError as err:
            message = str(err)
            assert "\n" not in message.strip() or "TOML" in message
            assert path in message or any(f in message for f in pd.PhaseDiagramConfig.__dataclass_fields__)
            out = os.path.join(tmp, "out")
            code, stdout, stderr = run_cli(capsys, ["phase-diagram", "--config", path, "--out", out])
            assert code == 2 and stderr.startswith("jaxflow: error: "), stderr
            assert "Traceback" not in stderr and not os.path.exists(out)
        else:
            assert isinstance(config, pd.PhaseDiagramConfig)  # valid TOML with valid values


# --------------------------------------------------------------------------------------------
# The API: configs, theory, flow.solve, sweep.run

HOSTILE = st.one_of(
    st.sampled_from([float("nan"), math.inf, -math.inf, 0.0, -1.0, 1e308, -1e308, 5e-324]),
    st.sampled_from(["1.5", "abc", "", None, b"x", 1 + 2j, [], [[]], {}, {"a": 1}, (1.0, "x"),
                     [1.0, [2.0]], True, object()]),
)


CONFIG_FIELDS = [f.name for f in __import__("dataclasses").fields(pd.PhaseDiagramConfig)]
# Hostile values that are nevertheless valid for some options, replaced by invalid ones there.
STILL_VALID = {"depths": (math.inf, 1e308), "ratios": (1e308,), "scales": (5e-324,),
               "log_scales": (-1.0, -1e308), "start": (5e-324,), "rtol": (5e-324,),
               "atol": (5e-324,), "seed": (0.0, 1e308)}
NONE_VALID = ("scales",)  # unset: log_scales decides
REPLACEMENT = {"log_scales": 1.0}  # an invalid value where -1.0 is valid


@FUZZ
@given(field=st.sampled_from(CONFIG_FIELDS), value=HOSTILE)
def test_config_fields_refuse_hostile_values(field, value):
    if (isinstance(value, float) and value in STILL_VALID.get(field, ())) or (
        value is None and field in NONE_VALID
    ):
        value = REPLACEMENT.get(field, -1.0)
    with pytest.raises(ConfigError) as info:
        pd.PhaseDiagramConfig(**{field: value})
    message = str(info.value)
    assert field in message or (field in ("start", "finish") and "start and finish" in message), message


def _arg_names(fn):
    return {"learning_time": ("depth", "sigma_star", "sigma0", "sigma"),
            "solution": ("depth", "sigma_star", "sigma0", "t"),
            "incremental_margin": ("depth", "ratio", "sigma0", "start", "finish"),
            "incremental_threshold": ("depth", "ratio", "start", "finish"),
            "threshold_asymptotic": ("depth", "ratio", "start", "finish")}[fn]


VALID = {"depth": 3.0, "sigma_star": 1.0, "sigma0": 1e-3, "sigma": 0.5, "t": 1.0, "ratio": 2.0,
         "start": 0.1, "finish": 0.9}
MISMATCHED = [np.ones(2), np.ones(3), np.ones((2, 3)), np.ones((4, 1, 5))]


@FUZZ
@given(fn=st.sampled_from(["learning_time", "solution", "incremental_margin", "incremental_threshold",
                          "threshold_asymptotic"]),
       data=st.data())
def test_theory_refuses_hostile_arguments(fn, data):
    names = _arg_names(fn)
    bad = data.draw(st.sampled_from(names))
    value = data.draw(HOSTILE | st.sampled_from(MISMATCHED) | st.just(np.array(["1.0"])))
    kwargs = {n: VALID[n] for n in names}
    kwargs[bad] = value
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        other = next(n for n in names if n != bad)
        kwargs[other] = np.full(7, VALID[other])  # shape (7,) broadcasts with none of MISMATCHED
    if isinstance(value, float) and not isinstance(value, bool):
        if bad == "depth" and value in (math.inf, 1e308):
            kwargs["depth"] = -1.0  # inf and huge depths are valid
        if bad == "t" and not math.isnan(value) and value >= 0:
            kwargs["t"] = -1.0  # any finite or infinite t >= 0 is valid
        if bad in ("sigma_star", "ratio") and value == 1e308:
            kwargs[bad] = -1e308  # a huge target or ratio is valid
        if bad in ("sigma0", "sigma", "start") and value == 5e-324:
            kwargs[bad] = -5e-324  # the smallest subnormal is a valid sigma0, sigma or start
    try:
        getattr(theory, fn)(**kwargs)
    except (ValueError, TypeError) as err:
        message = str(err)
        assert any(n in message for n in names), message
        assert "\n" not in message, message
    else:
        raise AssertionError(f"{fn}({kwargs}) accepted a hostile {bad}")


def _solve_kwargs(**changes):
    target = np.ones(1)
    kw = dict(modes=toy.reduced_modes, targets=target, fractions=(0.5,), rtol=1e-8, atol=1e-8,
              max_steps=64, time=toy.reduced_speed)
    kw.update(changes)
    return kw


@FUZZ
@given(data=st.data())
def test_solve_refuses_hostile_settings(data):
    name = data.draw(st.sampled_from(["rtol", "atol", "max_steps", "fractions", "time", "save_times"]))
    bad = {
        "rtol": HOSTILE.filter(lambda v: not (isinstance(v, float) and 0 < v < math.inf)),
        "atol": HOSTILE.filter(lambda v: not (isinstance(v, float) and 0 < v < math.inf)),
        "max_steps": HOSTILE | st.integers(max_value=0) | st.just(2.5),
        "fractions": st.sampled_from([(0.5, 0.5), (0.9, 0.1), (0.0,), (1.5,), (float("nan"),),
                                      ("a",), None, 0.5, [[0.5]]]),
        "time": st.sampled_from(["", "ARCLENGTH", 3, None, ["plain"]]),
        "save_times": st.sampled_from([[1.0, 0.5], [-1.0], [math.nan], [[1.0]], ["a"], [math.inf]]),
    }[name]
    value = data.draw(bad)  # fractions=() is valid: no learning time asked (run to stationarity)
    args = toy.ToyArgs(depth=np.float64(2.0), targets=np.ones(1))
    with pytest.raises(ValueError) as info:
        flow.solve(toy.reduced_vector_field, np.log(np.array([1e-3])), args, **_solve_kwargs(**{name: value}))
    assert name in str(info.value), str(info.value)


@FUZZ
@given(data=st.data())
def test_sweep_refuses_hostile_axes_and_settings(data):
    store = os.path.join(OUT, "sweep.zarr")
    case = data.draw(st.sampled_from(["axes", "axis", "chunk_size", "seed", "process"]))
    kwargs = dict(chunk_size=4, seed=0)
    axes = {"x": [1.0, 2.0]}
    if case == "axes":
        axes = data.draw(st.sampled_from([{}, [], None, "x", [("x", [1.0])], {"": [1.0]}, {1: [1.0]}]))
        name = "ax"
    elif case == "axis":
        axes = {"x": [1.0], "bad": data.draw(st.sampled_from(
            [[], [[1.0, 2.0]], [1.0, 1.0], [math.nan], ["a"], "abc", None, [1.0, None], [[1.0], [2.0, 3.0]],
             np.ones((2, 2)), [1 + 1j]]))}
        name = "'bad'"
    elif case in ("chunk_size", "seed"):
        kwargs[case] = data.draw(st.sampled_from([-1, 1.5, "4", None, math.nan, True, math.inf]
                                                 + ([0] if case == "chunk_size" else [])))
        name = case
    else:
        count = data.draw(st.integers(1, 3))
        kwargs.update(process_count=count, process_index=data.draw(st.sampled_from([-1, count, 0.5, "0"])))
        name = "process_index"
    with pytest.raises(sweep.SweepError) as info:
        sweep.run(lambda p: {"y": p[next(iter(p))]}, axes, store=store, quiet=True, **kwargs)
    assert name in str(info.value), str(info.value)
    assert not os.path.exists(OUT)
