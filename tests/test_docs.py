"""The documentation site builds with ``mkdocs build --strict``: a broken reference, a module that
fails to render or a missing page fails this test (and so CI, which installs the docs extra)."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return out


def test_every_page_of_the_nav_is_built(site):
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = re.findall(r":\s*(\S+\.(?:md|ipynb))\s*$", nav, flags=re.M)
    assert pages
    for page in pages:
        stem = page.rsplit(".", 1)[0]
        html = site / ("index.html" if stem == "index" else f"{stem}/index.html")
        assert html.is_file(), page


def test_api_reference_documents_the_public_functions(site):
    html = (site / "api" / "jaxflow.oracles.theory" / "index.html").read_text()
    for name in ("learning_time", "incremental_threshold", "incremental_margin"):
        assert f'id="jaxflow.oracles.theory.{name}"' in html, name


def test_science_pages_never_point_outside_the_repository():
    for page in (ROOT / "docs").rglob("*.md"):
        assert "PAPER" not in page.read_text(), page


def test_the_first_ten_minutes_name_every_experiment_and_notebook():
    from jaxflow import experiments

    page = (ROOT / "docs" / "first-ten-minutes.md").read_text()
    next_steps = page[page.index("## Where to go next"):]
    for name in experiments.names():
        # the main job (jaxflow phase-diagram) is run on the page, the others are next steps
        assert f"jaxflow {name}" in page or f"`{name}`" in next_steps, name
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert f"(notebooks/{notebook.name})" in next_steps, notebook.name
    for part in ("Install", "Read the table", "Read the figures", "Change one thing",
                 "jaxflow plot", "xarray"):
        assert part in page, part


def _public_modules() -> list[str]:
    """Every public module of the installed package, found by importing it (pkgutil)."""
    import pkgutil

    import jaxflow

    names = ["jaxflow"]
    for info in pkgutil.walk_packages(jaxflow.__path__, "jaxflow."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def test_every_public_module_has_an_api_page(site):
    import jaxflow

    names = _public_modules()
    # the map in the package's docstring names the modules by their short paths
    for short in re.findall(r"``(\w+)``", jaxflow.__doc__):
        module = getattr(jaxflow, short, None)
        if module is not None and hasattr(module, "__name__"):
            assert module.__name__ in names, short
    for name in names:
        page = site / "api" / name / "index.html"
        assert page.is_file(), name
        assert f'id="{name}' in page.read_text(), name


_RAW_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|obj|exc|const):")


def test_the_site_has_no_raw_roles_and_links_its_references(site):
    pages = list(site.rglob("*.html"))
    raw = [str(p.relative_to(site)) for p in pages if _RAW_ROLE.search(p.read_text())]
    assert not raw, raw
    # a role of the sweep package's docstring (:func:`run`) is a link to the runner's entry
    html = (site / "api" / "jaxflow.sweep" / "index.html").read_text()
    assert re.search(r'<a [^>]*href="[^"]*jaxflow\.sweep\.runner/#jaxflow\.sweep\.runner\.run"',
                     html)


def test_private_names_have_no_entries(site):
    for page in (site / "api").rglob("index.html"):
        ids = re.findall(r'id="(jaxflow\.[^"]+)"', page.read_text())
        private = [i for i in ids if any(p.startswith("_") for p in i.split("."))]
        assert not private, (page, private)


def test_every_notebook_is_in_the_nav_with_its_math_and_figures(site):
    home = (site / "index.html").read_text()  # the navigation, as built
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert re.search(rf'href="notebooks/{notebook.stem}/"', home), notebook.name
        html = (site / "notebooks" / notebook.stem / "index.html").read_text()
        assert "data:image/png;base64" in html, notebook.name  # the stored figures
        # one MathJax: the site's version 3 with its configuration, not the renderer's own
        assert "MathJax.Hub" not in html and "mathjax/2." not in html, notebook.name
        config = html.index("javascripts/mathjax.js")
        assert config < html.index("mathjax@3"), notebook.name
    config = (ROOT / "docs" / "javascripts" / "mathjax.js").read_text()
    assert '["$", "$"]' in config


def _hook(name: str):
    """A module of docs/hooks/, loaded from its file (``notebooks`` is also a folder here)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}",
                                                  ROOT / "docs" / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_notebook_missing_from_the_nav_is_added_with_its_title(tmp_path, monkeypatch):
    notebooks = _hook("notebooks")
    (tmp_path / "notebooks").mkdir()
    for stem, heading in (("01_a", "# 01 · Listed"), ("08_new", "# 08 · A new notebook")):
        cells = [{"cell_type": "markdown", "source": [heading + "\n", "text\n"], "metadata": {}}]
        (tmp_path / "notebooks" / f"{stem}.ipynb").write_text(json.dumps({"cells": cells}))
    monkeypatch.setattr(notebooks, "ROOT", tmp_path)
    nav = [{"Home": "index.md"}, {"Notebooks": [{"Listed": "notebooks/01_a.ipynb"}]}]
    notebooks._add_missing_notebooks(nav)
    assert nav[1]["Notebooks"] == [{"Listed": "notebooks/01_a.ipynb"},
                                   {"A new notebook": "notebooks/08_new.ipynb"}]


def test_an_unresolved_reference_is_left_to_fail_the_strict_build():
    import griffe

    sys.path.insert(0, str(ROOT / "docs" / "hooks"))
    try:
        import crossrefs
    finally:
        sys.path.pop(0)
    package = griffe.load("jaxflow", search_paths=[str(ROOT)])
    runner = package["sweep"]
    text = (":func:`run`, :func:`~jaxflow.theory.learning_time`, :func:`nowhere`, "
            ":func:`jax.jit`")
    out = crossrefs.rewrite(text, runner, package)
    assert "[`run`][jaxflow.sweep.runner.run]" in out
    assert "[`learning_time`][jaxflow.oracles.theory.learning_time]" in out
    assert "[`nowhere`][nowhere]" in out  # autorefs finds no target: a warning, so --strict fails
    assert "`jax.jit`" in out and "[`jax.jit`]" not in out
