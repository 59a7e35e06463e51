"""The documentation site builds with ``mkdocs build --strict``: a broken reference, a module that
fails to render or a missing page fails this test (and so CI, which installs the docs extra)."""

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
    html = (site / "api" / "theory" / "index.html").read_text()
    for name in ("learning_time", "incremental_threshold", "incremental_margin"):
        assert f'id="jaxflow.oracles.theory.{name}"' in html, name


def test_science_pages_never_point_outside_the_repository():
    for page in (ROOT / "docs").rglob("*.md"):
        assert "PAPER" not in page.read_text(), page
