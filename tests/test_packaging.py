"""The wheel a user installs with ``pip install .``: package modules, ``py.typed``, the licence."""

import importlib.util
import pathlib
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(out)]
    # Without isolation the build needs no network (hatchling is in the test extra); with it,
    # pip fetches hatchling first.
    if importlib.util.find_spec("hatchling") is not None:
        command.append("--no-build-isolation")
    subprocess.run(command, check=True, timeout=120)
    (path,) = out.glob("jaxflow-*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def test_wheel_holds_every_module_and_the_typed_marker(wheel):
    names = set(wheel.namelist())
    assert "jaxflow/py.typed" in names
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "jaxflow").rglob("*.py")}
    assert sources <= names, sorted(sources - names)


def test_wheel_metadata_carries_the_mit_licence(wheel):
    names = wheel.namelist()
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    text = wheel.read(metadata).decode()
    assert "License-Expression: MIT" in text or "License: MIT" in text
    licences = [n for n in names if ".dist-info/" in n and n.endswith("LICENSE")]
    assert licences, names
    assert "MIT License" in wheel.read(licences[0]).decode()


def _modules() -> list[str]:
    return sorted(
        ".".join(("jaxflow", *p.relative_to(ROOT / "jaxflow").with_suffix("").parts))
        .removesuffix(".__init__")
        for p in (ROOT / "jaxflow").rglob("*.py")
    )


@pytest.mark.parametrize("name", _modules())
def test_every_module_declares_what_it_exports(name):
    """``__all__`` in every module (private ones list what their siblings use), naming only
    what the module defines or re-exports, so ``from module import *`` and the API reference
    show the module's own names, not ``jax`` and ``jnp``."""
    module = importlib.import_module(name)
    assert isinstance(getattr(module, "__all__", None), list | tuple), f"{name} has no __all__"
    assert all(isinstance(n, str) for n in module.__all__)
    assert len(set(module.__all__)) == len(module.__all__), f"{name}: repeated names"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it lacks: {missing}"
