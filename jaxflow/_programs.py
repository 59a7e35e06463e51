"""Compiled programs that start fast: how a program jaxflow compiles on every run is compiled
(XLA's classic CPU emitters) and kept (whole executables beside JAX's compilation cache).

A warm run of ``jaxflow phase-diagram`` (JAX's persistent compilation cache filled) still traced
its work-queue program (0.4-0.5 s) and lowered it to StableHLO (0.4-0.5 s) before the cache could
be asked for the compiled code: the cache's key is the lowered program. :func:`executable`
keeps the whole compiled executable (``jax.experimental.serialize_executable``) under a key
computed without tracing: the program's name, the values it was built from, its inputs'
shapes, the jaxflow source, the versions of jax and jaxlib, the XLA flags and JAX settings that
change a program, the devices and the host CPU's features. Loading it takes 0.08 s; the
executable computes the same bits as a freshly compiled one (tests/test_programs.py). Any
failure to read or load an entry falls back to compiling (and rewrites the entry); no entry is
written unless JAX's compilation cache directory is set (the ``jaxflow`` command sets it,
``JAXFLOW_CACHE_DIR``), and only a run that really compiles the program writes it (one that
JAX's cache served cannot: see :func:`executable`).

On CPUs those programs compile with XLA's classic emitters (:func:`compiler_options`): the work
queue of the default phase diagram compiled in 0.9 s instead of 1.8 s, and ran its chunk in
0.046 s instead of 0.040 s (measured on the 2-core machine), so a cold run (empty cache) gains
0.9 s and a warm one loses 0.08 s over its 13 chunks. The test-suite compiles everything so
(tests/conftest.py).
"""

import contextlib
import functools
import hashlib
import os
import pathlib
import pickle
from collections.abc import Sequence

import jax
from jax.experimental import serialize_executable

__all__ = ["CLASSIC_CPU_EMITTERS", "compiler_options", "executable"]

# XLA's classic CPU emitters, as a per-program compiler option (jax.jit(compiler_options=...))
CLASSIC_CPU_EMITTERS = {"xla_cpu_use_fusion_emitters": False}

_SUBDIRECTORY = "jaxflow-executables"
# The JAX settings that change a compiled program: those a trace reads, and the optimisation
# switch that compilation reads (the test suite compiles unoptimised: tests/conftest.py).
_SETTINGS = ("jax_enable_x64", "jax_numpy_dtype_promotion", "jax_default_matmul_precision",
             "jax_numpy_rank_promotion", "jax_default_prng_impl",
             "jax_disable_most_optimizations")


def compiler_options(devices: Sequence) -> dict:
    """The options jaxflow compiles its often-compiled programs with on ``devices``: XLA's
    classic emitters on CPUs, the defaults elsewhere.

    >>> import jax
    >>> compiler_options(jax.devices("cpu"))
    {'xla_cpu_use_fusion_emitters': False}
    """
    if all(d.platform == "cpu" for d in devices):
        return dict(CLASSIC_CPU_EMITTERS)
    return {}


def executable(jitted, args, *, name: str, built_from, options=None) -> jax.stages.Compiled:
    """``jitted`` compiled for ``args`` (arrays or ``jax.ShapeDtypeStruct``) with the compiler
    ``options``, loaded from the executable cache when an entry for the same program is there
    (no trace, no lowering), and kept for the rest of the process.

    ``name`` names the program and ``built_from`` holds every value its Python function reads
    besides its arguments (a runner's tolerances, its slots, its devices): both are part of
    the key, with the jaxflow source, so a program is never loaded for another.

    >>> import jax, jax.numpy as jnp
    >>> double = executable(jax.jit(lambda x: 2 * x), (jnp.ones(3),), name="doc", built_from=())
    >>> double(jnp.arange(3.0)).tolist()
    [0.0, 2.0, 4.0]
    """
    shapes = jax.tree.map(lambda a: (tuple(a.shape), str(a.dtype)), args)
    options = dict(options or {})
    # in this process: the program as asked (the settings a trace reads included)
    here = (name, repr(built_from), repr(jax.tree.structure(args)), repr(shapes),
            repr(sorted(options.items())), tuple(jax.config.values.get(s) for s in _SETTINGS))
    if here not in _LOADED:
        _LOADED[here] = _load_or_compile(jitted, args, options, here)
    return _LOADED[here]


_LOADED: dict = {}  # the programs this process has compiled or loaded, by what was asked


def _load_or_compile(jitted, args, options, here) -> jax.stages.Compiled:
    directory = jax.config.jax_compilation_cache_dir
    if not directory:
        return jitted.lower(*args).compile(compiler_options=options or None)
    path = pathlib.Path(directory) / _SUBDIRECTORY / f"{_key(here)}.bin"
    try:
        with open(path, "rb") as fh:
            serialized, in_tree, out_tree, device_ids = pickle.load(fh)
        with contextlib.suppress(OSError):  # a read-only cache still serves its entries
            os.utime(path)  # used now: the last to be evicted (see _evict)
        by_id = {d.id: d for d in jax.devices()}
        return serialize_executable.deserialize_and_load(
            serialized, in_tree, out_tree,
            execution_devices=[by_id[i] for i in device_ids])  # a one-device program's device
    except Exception:  # noqa: BLE001 -- absent, damaged or from another jaxlib: compile it
        pass
    hits = _jax_cache_hits()
    compiled = jitted.lower(*args).compile(compiler_options=options or None)
    # An executable that JAX's own cache served cannot be serialized again: its copy lacks
    # the compiled kernels (loading it in a new process fails, "Function ... not found";
    # jaxlib 0.10.2). Only a program XLA has just compiled is kept.
    if _jax_cache_hits() == hits:
        _write(path, compiled)
    return compiled


_HITS = []  # one entry per program JAX's persistent cache served in this process


def _jax_cache_hits() -> int:
    """How many programs JAX's persistent compilation cache has served in this process (its
    listener registered on the first call: importing jaxflow registers nothing)."""
    if not _HITS:
        _HITS.append(0)
        jax.monitoring.register_event_listener(
            lambda event, **_: event == "/jax/compilation_cache/cache_hits" and _HITS.append(1))
    return len(_HITS)


def _write(path: pathlib.Path, compiled) -> None:
    """Store ``compiled`` at ``path`` whole or not at all (the exports' temporary file, renamed
    into place, so concurrent processes never read half an entry; what a killed writer left is
    removed here); a full or read-only disk only costs the next run a compilation."""
    # the sweep layer's temporary files (exclusive, never through a link, named after their
    # process): imported here, as the layers below import this module
    from jaxflow.sweep import atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.remove_stale_temporaries(path.parent)
        fd, temporary = atomic.temporary_file(path)
        try:
            shardings = jax.tree.leaves(compiled.input_shardings)
            device_ids = sorted({d.id for sharding in shardings for d in sharding.device_set})
            with os.fdopen(fd, "wb") as fh:
                pickle.dump((*serialize_executable.serialize(compiled), device_ids), fh)
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
        _evict(path.parent)
    except Exception:  # noqa: BLE001 -- the cache is an optimisation, never a failure
        pass


MAX_BYTES = 256 * 2**20  # the executables kept: the default phase diagram's two take 1.2 MB


def _evict(directory: pathlib.Path, max_bytes: int = MAX_BYTES) -> None:
    """Remove the least recently used entries until ``directory`` holds at most ``max_bytes``
    (every edit of the source makes new keys, so old entries would otherwise pile up).

    >>> import tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for k, name in enumerate(["old.bin", "new.bin"]):
    ...     _ = (d / name).write_bytes(b"x" * 10); os.utime(d / name, (k, k))
    >>> _evict(d, max_bytes=15); sorted(p.name for p in d.iterdir())
    ['new.bin']
    """
    # entries only: another writer's temporary file (".<key>.<pid>-...partial.bin") is not one
    entries = sorted((e.stat().st_mtime, e.stat().st_size, e)
                     for e in directory.glob("[!.]*.bin"))
    total = sum(size for _, size, _ in entries)
    for _, size, entry in entries:
        if total <= max_bytes:
            break
        entry.unlink(missing_ok=True)
        total -= size


def _key(here: tuple) -> str:
    """The entry's name: the program as asked, and what makes one compiled program run right
    or wrong in another process (the source, the versions, the flags, the devices, the CPU)."""
    devices = [(d.platform, d.device_kind, d.id, d.process_index) for d in jax.devices()]
    # this process's own devices too: a one-device program runs on the process's first
    # device, which differs between the processes of a distributed run
    local = [d.id for d in jax.local_devices()]
    parts = (here, _source_hash(), jax.__version__, jax.lib.__version__,
             os.environ.get("XLA_FLAGS", ""), devices, local, _cpu_features())
    return hashlib.sha256(repr(parts).encode()).hexdigest()


@functools.cache
def _source_hash() -> str:
    """A hash of the content of every Python file of the installed jaxflow (3 ms): an edit
    anywhere makes new keys."""
    root = os.path.dirname(os.path.abspath(__file__))
    paths = sorted(os.path.join(directory, name) for directory, _, files in os.walk(root)
                   for name in files if name.endswith(".py"))
    digest = hashlib.sha256()
    for path in paths:
        digest.update(os.path.relpath(path, root).encode())
        with open(path, "rb") as fh:
            digest.update(fh.read())
    return digest.hexdigest()


@functools.cache
def _cpu_features() -> str:
    """The host CPU's model and feature flags: an executable compiled for one CPU's vector
    instructions must not be loaded on another (a cache directory shared across machines)."""
    try:
        text = pathlib.Path("/proc/cpuinfo").read_text()
    except OSError:
        import platform

        return platform.processor() or platform.machine()
    lines = [line for line in text.splitlines()
             if line.startswith(("model name", "flags", "Features", "CPU part"))]
    return "\n".join(dict.fromkeys(lines))
