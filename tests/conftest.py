import contextlib
import gc
import io
import os
import signal
import tempfile

import jax

# The suite runs on one CPU device (jaxflow would otherwise ask for one per core): tests that
# count chunks and traces assume it; tests/test_multidevice.py checks 4 devices explicitly.
os.environ.setdefault("JAXFLOW_CPU_DEVICES", "1")

# The suite compiles fast rather than well, as it is mostly compilation (3000 small programs):
# * XLA's classic CPU emitters: measured on the 2-core machine, they compile the suite's
#   programs in about half the time of the default fusion emitters (suite 469 s -> 374 s, user
#   CPU 856 s -> 675 s);
# * LLVM without optimisation (JAX's `jax_disable_most_optimizations`: XLA's backend level 0,
#   no expensive LLVM passes): backend compilation of the notebooks' 552 programs takes 14 s
#   instead of 30 s; the suite went from 222 s to 190 s (summed test time 425 s -> 361 s; level
#   1 saved nothing: 216 s). The few tests whose programs run long rather than compile long
#   (they ran up to 3x slower unoptimised) compile them inside `optimized()`.
# Every test passes under these settings and under the defaults; only the last bits of some
# results differ, within every tolerance here. The one property that holds under the default
# optimisation only is bitwise equality of programs built for different device counts (at
# level 0 they differ in their last bits, measured), so tests/test_multidevice.py compiles at
# the default level (`CLASSIC_EMITTERS` alone). The subprocesses the tests start get the same
# settings (`subprocess_env`), so a result computed in a subprocess and one computed here are
# comparable bitwise (tests/test_fault_tolerance.py kills and resumes in both). Set before any
# computation: XLA reads XLA_FLAGS once, at backend start.
CLASSIC_EMITTERS = "--xla_cpu_use_fusion_emitters=false"
TEST_XLA_FLAGS = CLASSIC_EMITTERS
if "xla_cpu_use_fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS"), TEST_XLA_FLAGS]))
UNOPTIMISED = "JAX_DISABLE_MOST_OPTIMIZATIONS"  # read by jax at import: the subprocesses too
os.environ.setdefault(UNOPTIMISED, "1")
jax.config.update("jax_disable_most_optimizations", os.environ[UNOPTIMISED] == "1")


@contextlib.contextmanager
def optimized():
    """Programs compiled inside are optimised as by default (a program compiled before keeps
    how it was compiled): for the few tests whose programs run long, 3x faster so."""
    before = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)


# Same numerics policy as diffrax's test-suite: float64, and no silent dtype promotion.
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")

import pytest  # noqa: E402

import jaxflow  # noqa: E402,F401

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_compilation_cache() -> str:
    """One persistent XLA compilation cache for the whole test run, shared by both pytest-xdist
    workers, the notebook kernel and every ``jaxflow`` subprocess: a program one of them
    compiled (a smoke run's, a phase diagram's) is loaded by the others instead of compiled
    again. A fresh directory per run (keyed by xdist's run id), so a run never reads an earlier
    run's programs. The cache stores compiled code only: results are the same bits."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
    path = os.path.join(tempfile.gettempdir(), f"jaxflow-tests-xla-{run}")
    os.makedirs(path, exist_ok=True)
    return path


XLA_CACHE = _run_compilation_cache()
# the CLI (in-process and in subprocesses) and notebook kernels read these; the workers
# themselves use the cache from here on
os.environ["JAXFLOW_CACHE_DIR"] = XLA_CACHE
os.environ["JAX_COMPILATION_CACHE_DIR"] = XLA_CACHE
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.5"
jax.config.update("jax_compilation_cache_dir", XLA_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture(scope="session")
def subprocess_env(tmp_path_factory):
    """Environment for ``python -m jaxflow.cli`` subprocesses: this checkout first on the path,
    one CPU device, no forced device count, the suite's compiler (``TEST_XLA_FLAGS`` and
    ``UNOPTIMISED``), the run's XLA compilation cache."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([REPO, *filter(None, [env.get("PYTHONPATH")])])
    env["JAXFLOW_CACHE_DIR"] = XLA_CACHE
    env["JAXFLOW_CPU_DEVICES"] = "1"
    env["XLA_FLAGS"] = TEST_XLA_FLAGS
    env.pop("JAX_NUM_CPU_DEVICES", None)
    return env


@pytest.fixture(scope="session")
def run_cli():
    """``run_cli(argv, **environ) -> (exit code, stdout, stderr)``: ``jaxflow ARGV`` in this
    process through ``jaxflow.cli.main``, its output captured (a subprocess would add an import
    of jax and a compilation each). ``environ`` sets variables for the call (``None`` unsets
    one); they, and JAX's compilation-cache directory, which the commands set, are put back
    afterwards. Session-scoped, so module fixtures can run commands too."""
    from jaxflow import cli

    def run(argv, **environ):
        saved = jax.config.jax_compilation_cache_dir
        out, err = io.StringIO(), io.StringIO()
        with pytest.MonkeyPatch.context() as mp:
            for name, value in environ.items():
                if value is None:
                    mp.delenv(name, raising=False)
                else:
                    mp.setenv(name, str(value))
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = cli.main([str(a) for a in argv])
                except SystemExit as exit_:  # --version and --help leave through argparse
                    code = exit_.code
        jax.config.update("jax_compilation_cache_dir", saved)
        return code, out.getvalue(), err.getvalue()

    return run


@pytest.fixture
def cli_refuses(capsys):
    """``cli_refuses(argv, *words)``: run ``jaxflow`` in-process and check it exits 2 with one
    line ``jaxflow: error: ...`` containing every word, and no traceback; returns that line."""
    from jaxflow import cli

    def refuses(argv, *words):
        code = cli.main(argv)
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert code == 2, (code, captured.err[-2000:])
        assert len(lines) == 1 and lines[0].startswith("jaxflow: error: "), captured.err
        assert "Traceback" not in captured.err + captured.out
        for word in words:
            assert word in lines[0], (word, lines[0])
        return lines[0]

    return refuses


@pytest.fixture
def ctrl_c():
    """``ctrl_c()``: Ctrl-C in the middle of whatever calls it (SIGINT sent to this process),
    its handler run right there. The garbage collector is paused meanwhile: a collection could
    otherwise run a gc callback (hypothesis installs one) just when the signal is handled, and
    the KeyboardInterrupt raised inside that callback would be swallowed as an unraisable
    exception instead of reaching the code under test.

    Only the first call of a test sends it; later ones do nothing. Python runs signal handlers
    in the main thread: a hook called from another thread (zarr writes chunks from its I/O
    threads) on every later write sent more, and a second Ctrl-C after the code under test had
    stopped deferring them would raise KeyboardInterrupt at a random point.

    (The PytestUnraisableExceptionWarning, a KeyboardInterrupt in hypothesis's gc callback, that
    a full ``-n 2`` run prints at its very end comes from elsewhere: execnet sends each xdist
    worker a SIGINT when the worker is still finishing 5 s after it was asked to stop, and the
    worker is then busy in the final garbage collection of its heap.)"""

    sent = []

    def interrupt():
        if sent:
            return
        sent.append(True)
        enabled = gc.isenabled()
        gc.disable()
        try:
            os.kill(os.getpid(), signal.SIGINT)
        finally:
            if enabled:
                gc.enable()

    return interrupt


# The smoke runs whose programs run long rather than compile long (measured unoptimised: 5.7 s
# of a 6.8 s run, 1.6 s optimised); tests/test_experiments.py and notebook 03 run it again.
RUN_LONG = {"matrix-sensing-generalization"}


@pytest.fixture(scope="session")
def smoke_run():
    """``smoke_run(name)``: the registered experiment ``name`` run once per session at its smoke
    size (``Config.smoke()``), shared by every test file that checks it: the smoke runs are the
    suite's costliest fixtures, so none is computed twice."""
    from jaxflow import experiments

    cache = {}

    def get(name: str):
        if name not in cache:
            experiment = experiments.get(name)
            with optimized() if name in RUN_LONG else contextlib.nullcontext():
                cache[name] = experiment.run(experiment.config.smoke())
        return cache[name]

    return get


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under ``pytest -n 2 --dist loadgroup`` (README's test command) every file's tests go to
    one worker, so module fixtures run once; files that share conftest's ``smoke_run`` name one
    group (``xdist_group("smoke_runs")``) and go to one worker together. Without xdist the
    marks change nothing."""
    for item in items:
        if not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
        if "smoke_run" in getattr(item, "fixturenames", ()) and _group(item) != "smoke_runs":
            # on another worker the shared smoke run would be computed a second time
            raise pytest.UsageError(f"{item.nodeid} uses smoke_run: mark its file "
                                    'pytestmark = pytest.mark.xdist_group("smoke_runs")')
    # The longest groups first: xdist hands out groups in collection order, so a long group
    # collected last would run alone at the end while the other worker sits idle.
    rank = {group: k for k, group in enumerate(LONGEST_GROUPS)}
    items.sort(key=lambda item: rank.get(_group(item), len(rank)))  # stable: the rest keep order


# The groups that take longest (measured with --durations=0), longest first.
LONGEST_GROUPS = ("smoke_runs", "tests/test_fault_tolerance.py", "tests/test_ray.py",
                  "tests/test_engine.py", "tests/test_rkc.py", "tests/test_contract.py")


def _group(item) -> str:
    mark = item.get_closest_marker("xdist_group")
    return mark.args[0] if mark.args else mark.kwargs.get("name", "")


# Full collections of the test process's heap cost more than a second each once the tests have
# traced and compiled a few thousand programs (measured: 37 and 29 automatic full collections,
# 20 s and 13 s of the two workers' time, and 13 s more of explicit ones in the notebooks' resets).
# The heap that the imports and the collection built (jax, jaxflow, every test module) is frozen
# out of the collector's reach, and a full collection runs after every 100 young ones instead of
# 10 (Python's default); what the tests build stays in its reach (tests/test_notebooks.py
# collects, then freezes the live heap once more before the notebooks). Measured after: about
# 10 s of full collections in both workers together.
FULL_COLLECTION_EVERY = 100


def pytest_collection_finish(session):
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_EVERY)


def pytest_unconfigure(config):
    """The end of a test process (each pytest-xdist worker, or a plain run): the garbage
    collector is frozen and switched off. At exit it would walk the whole heap the tests built
    (thousands of traced programs), seconds on a worker: execnet interrupts a worker still
    finishing 5 s after it was asked to stop, and the run's wall time waited for it. Nothing
    left needs collecting; exit handlers still run. (``jaxflow.cli.command`` does the same for
    the ``jaxflow`` executable.)"""
    gc.freeze()
    gc.disable()
