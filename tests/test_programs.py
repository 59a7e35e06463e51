"""The executable cache (jaxflow/_programs.py): a program loaded whole in a new process computes
the bits of a freshly compiled one without being traced; a program JAX's own cache served is
never written (its serialized copy lacks the compiled kernels); a damaged entry is compiled
again; a key changes with what the program was built from."""

import json
import os
import pickle
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from conftest import optimized

from jaxflow import _programs

# One process: the toy model's learning times through the oracle (jaxflow.theory routes its
# eager calls through _programs.executable), the entries found, and whether the oracle's jitted
# core was traced here.
SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import jax
    jax.config.update("jax_enable_x64", True)
    from jaxflow import _programs
    from jaxflow.oracles import theory

    traced = []  # the functions traced in this process
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **kw: traced.append(kw.get("fun_name"))
        if event.endswith("jaxpr_trace_duration") else None)

    directory = os.path.join(jax.config.jax_compilation_cache_dir, "jaxflow-executables")
    def entries():
        return sorted(os.listdir(directory)) if os.path.isdir(directory) else []

    times = theory.learning_time([2.0, 3.0, 5.0], 1.0, [1e-3, 1e-30, 1e-200], 0.5)
    out = {"times": [t.hex() for t in times.tolist()], "entries": entries(),
           "traced": traced.count("_learning_time")}
    if sys.argv[1] == "again-without-entries":  # JAX's cache serves it: nothing is written
        for name in entries():
            os.unlink(os.path.join(directory, name))
        _programs._LOADED.clear()
        again = theory.learning_time([2.0, 3.0, 5.0], 1.0, [1e-3, 1e-30, 1e-200], 0.5)
        out["again"] = [t.hex() for t in again.tolist()]
        out["entries_after"] = entries()
    print("RESULT " + json.dumps(out))
    """
)


def _run(env, mode):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, mode], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    return json.loads(line[len("RESULT "):])


def test_a_loaded_program_gives_the_compiled_bits_untraced(subprocess_env, tmp_path):
    env = dict(subprocess_env, JAX_COMPILATION_CACHE_DIR=str(tmp_path),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")  # JAX caches every program
    first = _run(env, "first")
    assert len(first["entries"]) == 1 and first["traced"] == 1  # compiled, and kept
    second = _run(env, "again-without-entries")
    assert second["traced"] == 0  # loaded whole: never traced in this process
    assert second["times"] == first["times"]  # bitwise
    # the same program again with its entry gone: JAX's own cache serves it, and a copy of
    # what it served is not written (it would fail to load in the next process)
    assert second["again"] == first["times"]
    assert second["entries_after"] == []


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """An empty executable cache for this process's next programs."""
    saved = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(tmp_path))
    monkeypatch.setattr(_programs, "_LOADED", {})
    yield tmp_path / "jaxflow-executables"
    jax.config.update("jax_compilation_cache_dir", saved)


def _affine(x, shift):
    return 3.0 * x + shift


def test_a_damaged_entry_is_compiled_again(cache_dir, monkeypatch):
    x = np.linspace(0.0, 1.0, 5)
    args = (x, np.float64(2.0))
    program = _programs.executable(jax.jit(_affine), args, name="test.affine", built_from=())
    want = np.asarray(program(*args))
    [entry] = list(cache_dir.iterdir())
    entry.write_bytes(b"not an executable")
    monkeypatch.setattr(_programs, "_LOADED", {})  # as a new process would
    hits = _programs._jax_cache_hits()
    again = _programs.executable(jax.jit(_affine), args, name="test.affine", built_from=())
    np.testing.assert_array_equal(np.asarray(again(*args)), want)
    np.testing.assert_array_equal(want, 3.0 * x + 2.0)
    if _programs._jax_cache_hits() == hits:  # compiled by XLA (not served): written anew
        assert pickle.loads(entry.read_bytes())  # a whole entry again


def test_what_a_killed_writer_left_is_removed_and_a_live_one_is_not_evicted(cache_dir):
    """A writer killed mid-entry leaves its temporary file (named after its pid): the next
    write removes it. A live writer's temporary file is never taken for an entry to evict."""
    cache_dir.mkdir(parents=True)
    dead = cache_dir / f".{'0' * 64}.999999999-0a1b2c3d.partial.bin"
    live = cache_dir / f".{'1' * 64}.{os.getpid()}-0a1b2c3d.partial.bin"
    dead.write_bytes(b"half an entry")
    live.write_bytes(b"being written")
    # this tiny program compiles in far less than the suite's JAX-cache threshold (0.5 s,
    # tests/conftest.py): XLA compiles it, and the entry is written
    program = _programs.executable(jax.jit(_affine), (np.ones(2), np.float64(0.5)),
                                   name="test.affine", built_from=("stale",))
    np.testing.assert_array_equal(np.asarray(program(np.ones(2), np.float64(0.5))), [3.5, 3.5])
    assert not dead.exists() and live.exists()
    assert len([p for p in cache_dir.iterdir() if not p.name.startswith(".")]) == 1  # the entry
    _programs._evict(cache_dir, max_bytes=0)
    assert live.exists() and [p.name for p in cache_dir.iterdir()] == [live.name]


def test_keys_follow_what_the_program_is_built_from():
    here = ("test.affine", repr((("rtol", 1e-8),)), "tree", "shapes", "options", ())
    other = ("test.affine", repr((("rtol", 1e-9),)), "tree", "shapes", "options", ())
    assert _programs._key(here) == _programs._key(here)
    assert _programs._key(here) != _programs._key(other)
    assert len(_programs._source_hash()) == 64


def test_a_program_compiled_otherwise_is_another_entry(monkeypatch):
    """A setting read at compilation, not at trace (JAX's optimisation switch, which the suite
    turns on: tests/conftest.py) gives another program: not the one kept for the other."""
    monkeypatch.setattr(_programs, "_LOADED", {})
    args = (np.ones(2), np.float64(0.5))
    build = lambda: _programs.executable(jax.jit(_affine), args, name="test.affine",  # noqa: E731
                                         built_from=("otherwise",))
    unoptimised = build()
    with optimized():
        optimised = build()
        assert build() is optimised
    assert optimised is not unoptimised and build() is unoptimised
    assert len(_programs._LOADED) == 2


def test_without_a_cache_directory_nothing_is_written(tmp_path, monkeypatch):
    saved = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", None)
    monkeypatch.setattr(_programs, "_LOADED", {})
    monkeypatch.chdir(tmp_path)
    try:
        program = _programs.executable(jax.jit(_affine), (np.ones(2), np.float64(0.5)),
                                       name="test.affine", built_from=())
        np.testing.assert_array_equal(np.asarray(program(np.ones(2), np.float64(0.5))),
                                      [3.5, 3.5])
    finally:
        jax.config.update("jax_compilation_cache_dir", saved)
    assert os.listdir(tmp_path) == []
