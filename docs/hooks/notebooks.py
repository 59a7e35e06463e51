"""mkdocs hooks of the jaxflow site.

* ``notebooks/*.ipynb`` (outside ``docs/``) become pages ``notebooks/NAME/``. The notebooks stay
  at the repository root, where the tests execute them; ``on_files`` hands them to mkdocs-jupyter
  as if they were in ``docs/notebooks/``, before the plugin's own ``on_files`` (higher priority)
  so that it converts them.
* The notebook renderer loads and configures its own MathJax (version 2) in every notebook
  page; ``on_post_page`` takes that block out, so that the site's one MathJax 3
  (``docs/javascripts/mathjax.js``, ``$`` for inline math) typesets notebooks and pages alike.
* Docstring examples (``>>>`` lines outside a code block) are shown as code: the docstrings are
  doctests first, and Markdown would otherwise read their printed lists as reference links.
"""

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


@event_priority(100)
def on_config(config):
    # before mkdocstrings reads the extensions for its docstring renderer
    config["markdown_extensions"].append(_DoctestExtension())
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
