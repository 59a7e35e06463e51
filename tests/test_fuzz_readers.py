"""Property-based fuzzing of everything jaxflow reads: every input ends in a result or one line.

Four targets, each given arbitrary input by hypothesis:

* the **config parser** (``PhaseDiagramConfig.from_toml`` on arbitrary text, and on arbitrary
  TOML-like tables): a config, or a one-line ``ConfigError``;
* the **command-line list syntax** (``2,3``, ``2 3``, ``MIN:MAX:NUM``, ln-sigma0 ranges): the
  values, or a one-line ``CliError``; counting a ``MIN:MAX:NUM`` never builds it;
* the **store reader** (``store.verify`` and ``Store.open(resume=True)`` + ``read``) on a small
  finished store with arbitrary damage (bytes flipped, files truncated, replaced, deleted): one
  line per problem, or a one-line ``StoreError``; every chunk it calls intact holds the
  original values;
* the **.nc reader** (``jaxflow.sweep.checksum.read``) on a sealed dataset with arbitrary byte
  edits or truncation: the original values (when the checksum passes), or a one-line
  ``DatasetError``.

Never a traceback or a hang. Two profiles: CI runs a few examples per target
(``JAXFLOW_FUZZ`` unset); ``JAXFLOW_FUZZ=offline`` runs 10^4 per target (the counts are
printed with ``pytest -s``).
"""

import functools
import os
import shutil
import tempfile

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jaxflow import cli, sweep
from jaxflow.experiments.config import ConfigError
from jaxflow.experiments.phase_diagram import PhaseDiagramConfig
from jaxflow.sweep import checksum, store

OFFLINE = os.environ.get("JAXFLOW_FUZZ") == "offline"
FUZZ = settings(max_examples=10_000 if OFFLINE else 25, deadline=None, derandomize=not OFFLINE,
                database=None, suppress_health_check=list(HealthCheck))
COUNTS: dict[str, int] = {}


def _count(target: str) -> None:
    COUNTS[target] = COUNTS.get(target, 0) + 1


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    if COUNTS:
        print("\nfuzz cases per target:", dict(sorted(COUNTS.items())))


def _one_line(err: BaseException) -> None:
    text = str(err)
    assert text and "\n" not in text and "Traceback" not in text, text


# ------------------------------------------------------------------------------ config parser

_SCRATCH = tempfile.mkdtemp(prefix="jaxflow-fuzz-")
KEYS = ["depths", "ratios", "log_scales", "scales", "start", "finish", "rtol", "atol", "dtype",
        "max_steps", "chunk_size", "seed", "solver", "model", "refine_iterations", "unknown"]
SCALARS = (st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.booleans()
           | st.text(max_size=8))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=12)


@FUZZ
@given(text=st.text(max_size=300) | st.sampled_from(
    ["depths = [2, 3]\n", "ratios = [1.5, inf]\n", "[a]\nb = 1\n", "x = " + "[" * 3000]))
def test_config_text(text):
    _count("config text")
    path = os.path.join(_SCRATCH, "config.toml")
    with open(path, "w", encoding="utf-8", errors="surrogatepass") as fh:
        fh.write(text)
    try:
        PhaseDiagramConfig.from_toml(path)
    except ConfigError as err:
        _one_line(err)


@FUZZ
@given(table=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=5))
def test_config_tables(table):
    _count("config table")
    try:
        config = PhaseDiagramConfig.from_mapping(table)
    except ConfigError as err:
        _one_line(err)
    else:
        assert PhaseDiagramConfig.from_toml(None, **{k: v for k, v in vars(config).items()
                                                      if v is not None}) == config


# ------------------------------------------------------------------------- command-line lists

LIST_TEXT = st.text(alphabet="0123456789.,:-+e inf na ", max_size=24)


@FUZZ
@given(text=LIST_TEXT, log=st.booleans())
def test_list_syntax(text, log):
    _count("cli lists")
    option = "--log-scales" if log else "--scales"
    parts = text.strip().split(":")
    if len(parts) == 3 and parts[2].strip().isdigit() and int(parts[2]) > 10_000:
        return  # a long range is the size guard's (tests/test_size_guard.py), not built here
    try:
        values = (cli._log_numbers if log else cli._numbers)(text, option)
    except cli.CliError as err:
        _one_line(err)
    else:
        assert values and all(isinstance(v, float) for v in values)
        if ":" not in text:
            assert len(values) == len(text.replace(",", " ").split())


# ------------------------------------------------------------------------------- store reader

AXES = {"x": np.linspace(-2.0, 3.0, 4).tolist(), "y": [0.5, -1.0]}  # 8 points, 4 chunks


def _poly(p):
    return {"value": p["x"] ** 3 - 2.0 * p["x"] * p["y"], "count": (10.0 * p["x"]).astype("int32")}


@functools.cache
def _template():
    path = os.path.join(tempfile.mkdtemp(prefix="jaxflow-fuzz-store-"), "s.zarr")
    sweep.run(_poly, AXES, chunk_size=2, store=path, quiet=True)
    files = sorted(os.path.relpath(os.path.join(root, f), path)
                   for root, _, names in os.walk(path) for f in names)
    opened = store.Store._open_existing(path, mode="r")
    return path, files, opened.layout, opened.group.attrs["fingerprint"], opened.read()[0]


DAMAGE = st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(
    ["flip", "truncate", "garbage", "delete", "append"]), st.integers(0, 10**6),
    st.binary(min_size=1, max_size=40)), min_size=1, max_size=3)


def _damage(path, files, edits):
    for which, kind, position, junk in edits:
        target = os.path.join(path, files[which % len(files)])
        if not os.path.exists(target):
            continue
        data = bytearray(open(target, "rb").read())
        if kind == "delete":
            os.unlink(target)
            continue
        if kind == "flip" and data:
            data[position % len(data)] ^= 1 << (position % 8)
        elif kind == "truncate":
            data = data[:position % (len(data) + 1)]
        elif kind == "garbage":
            data = bytearray(junk)
        else:
            data += junk
        with open(target, "wb") as fh:
            fh.write(bytes(data))


@FUZZ
@given(edits=DAMAGE)
def test_store_reader(edits):
    _count("store reader")
    template, files, layout, fingerprint, original = _template()
    root = tempfile.mkdtemp(prefix="jaxflow-fuzz-copy-")
    path = os.path.join(root, "s.zarr")
    try:
        shutil.copytree(template, path)
        _damage(path, files, edits)
        for line in store.verify(path):
            assert line and "\n" not in line
        try:
            opened = store.Store.open(path, layout=layout, fingerprint=fingerprint, resume=True)
        except store.StoreError as err:
            _one_line(err)
            return
        data, ok = opened.read()
        for i in np.flatnonzero(ok):  # intact: the very values first written
            rows = slice(2 * i, 2 * i + 2)
            for name in ("value", "count"):
                assert np.array_equal(data[name][rows], original[name][rows], equal_nan=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------------- .nc reader

MARKER = np.array([1.25, -3.5, np.nan, 7e-300])


@functools.cache
def _sealed() -> bytes:
    ds = xr.Dataset({"margin": (("depth", "ratio"), MARKER.reshape(2, 2)),
                     "status": (("depth", "ratio"), np.array([[0, 1], [2, 0]], dtype=np.int8))},
                    coords={"depth": [2.0, np.inf], "ratio": [1.5, 3.0]},
                    attrs={"experiment": "phase-diagram", "config": "depths = [2.0, inf]\n"})
    return checksum.seal(ds)


NC_EDITS = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4)


@FUZZ
@given(edits=NC_EDITS, cut=st.none() | st.integers(0, 10**6))
def test_nc_reader(edits, cut):
    _count("nc reader")
    data = bytearray(_sealed())
    for position, value in edits:
        data[position % len(data)] = value
    if cut is not None:
        data = data[:cut % (len(data) + 1)]
    path = os.path.join(_SCRATCH, "fuzz.nc")
    with open(path, "wb") as fh:
        fh.write(bytes(data))
    try:
        ds, warning = checksum.read(path)
    except checksum.DatasetError as err:
        _one_line(err)
        return
    if warning == "":  # verified: the values are the original ones
        assert np.array_equal(ds["margin"].values.ravel(), MARKER, equal_nan=True)
        assert ds["status"].values.tolist() == [[0, 1], [2, 0]]
