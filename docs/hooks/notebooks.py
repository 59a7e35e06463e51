"""mkdocs hooks of the jaxflow site.

* ``notebooks/*.ipynb`` (outside ``docs/``) become pages ``notebooks/NAME/``. The notebooks stay
  at the repository root, where the tests execute them; ``on_files`` hands them to mkdocs-jupyter
  as if they were in ``docs/notebooks/``, before the plugin's own ``on_files`` (higher priority)
  so that it converts them.
* Every notebook is in the navigation: ``on_config`` appends to the "Notebooks" section each
  ``notebooks/*.ipynb`` that mkdocs.yml does not list (a new ``08_...`` included), titled by its
  first Markdown heading, so that no notebook is built without a way to reach it.
* The notebook renderer loads and configures its own MathJax (version 2) in every notebook
  page; ``on_post_page`` takes that block out, so that the site's one MathJax 3
  (``docs/javascripts/mathjax.js``, ``$`` for inline math) typesets notebooks and pages alike.
* Docstring examples (``>>>`` lines outside a code block) are shown as code: the docstrings are
  doctests first, and Markdown would otherwise read their printed lists as reference links.
"""

import json
import pathlib
import re

from markdown import Extension
from markdown.preprocessors import Preprocessor
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = pathlib.Path(__file__).resolve().parents[2]


class _Doctests(Preprocessor):
    """Fence each run of ``>>>`` lines and their printed output (up to a blank line) as pycon."""

    def run(self, lines: list[str]) -> list[str]:
        out, fence, doctest, doctest_indent = [], None, False, ""
        for line in lines:
            stripped = line.lstrip()
            indent = line[: len(line) - len(stripped)]
            if doctest and not stripped:
                out += [doctest_indent + "```", ""]
                doctest = False
            if fence is None and not doctest and (stripped.startswith(">>> ") or stripped == ">>>"):
                if len(indent) < 4:  # deeper: already an indented code block
                    doctest_indent = indent
                    out += ["", indent + "```pycon"]
                    doctest = True
            elif not doctest and stripped.startswith(("```", "~~~")):
                fence = None if fence == stripped[:3] else (fence or stripped[:3])
            out.append(line)
        if doctest:
            out += [doctest_indent + "```", ""]
        return out


class _DoctestExtension(Extension):
    def extendMarkdown(self, md):  # noqa: N802 (Markdown's name)
        md.preprocessors.register(_Doctests(md), "jaxflow_doctests", 40)


NAV_TITLE = "Notebooks"


def notebook_title(path: pathlib.Path) -> str:
    """The first Markdown heading of a notebook, its number taken off ("# 08 · Title" gives
    "Title"); the file's stem without one."""
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return re.sub(r"^\d+\s*[·:.-]\s*", "", line[2:].strip())
    return path.stem


def _listed(entries) -> set[str]:
    """Every page path of a nav (sub)tree."""
    found = set()
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        if isinstance(value, list):
            found |= _listed(value)
        else:
            found.add(value)
    return found


def _add_missing_notebooks(nav: list) -> None:
    section = next((e for e in nav if isinstance(e, dict) and NAV_TITLE in e), None)
    if section is None:
        section = {NAV_TITLE: []}
        nav.append(section)
    listed = _listed(nav)
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        page = f"notebooks/{path.name}"
        if page not in listed:
            section[NAV_TITLE].append({notebook_title(path): page})


@event_priority(100)
def on_config(config):
    # before mkdocstrings reads the extensions for its docstring renderer
    config["markdown_extensions"].append(_DoctestExtension())
    _add_missing_notebooks(config["nav"])
    return config


@event_priority(100)
def on_files(files, config):
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        files.append(
            File(
                f"notebooks/{notebook.name}",
                src_dir=str(ROOT),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files


_NOTEBOOK_MATHJAX = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->",
                               flags=re.S)


def on_post_page(output, page, config):
    if page.file.src_uri.endswith(".ipynb"):
        output = _NOTEBOOK_MATHJAX.sub("", output)
    return output
