"""mkdocs hook: one API page per public module of jaxflow, generated, and the nav to them.

A module is public when no part of its dotted name starts with ``_``. Each gets the page
``api/<dotted name>.md`` holding ``::: <dotted name>`` (mkdocstrings renders it; private names
are filtered out by the handler's options in mkdocs.yml), and the nav entry "API reference"
lists them by layer (engine, oracles, models, ...). A module added to the package gets its page
without any edit here; tests/test_docs.py checks that every public module has one.
"""

import pathlib

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = pathlib.Path(__file__).resolve().parents[2]
NAV_TITLE = "API reference"


def public_modules(root: pathlib.Path = ROOT) -> list[str]:
    """Dotted names of jaxflow's public modules and packages, sorted, the package first."""
    names = []
    for path in sorted((root / "jaxflow").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(part.startswith("_") for part in parts):
            continue
        names.append(".".join(parts))
    return sorted(names, key=lambda name: (name.count(".") > 0, name))


def _page(name: str) -> str:
    return f"api/{name}.md"


def _content(name: str) -> str:
    return f"# {name}\n\n::: {name}\n    options:\n      show_root_heading: false\n"


def _nav(names: list[str]) -> list:
    """``jaxflow`` first, then per layer: the layer package, then its modules."""
    nav, layers = [{"jaxflow": _page("jaxflow")}], {}
    for name in names[1:]:
        parts = name.split(".")
        layer = parts[1]
        if len(parts) == 2 and not (ROOT / "jaxflow" / layer).is_dir():
            nav.append({name: _page(name)})  # a top-level module (jaxflow.cli)
            continue
        layers.setdefault(layer, []).append({name: _page(name)})
    for layer, pages in layers.items():
        nav.append({f"jaxflow.{layer}": pages})
    return nav


@event_priority(100)
def on_config(config):
    names = public_modules()
    for i, entry in enumerate(config["nav"]):
        if isinstance(entry, dict) and NAV_TITLE in entry:
            config["nav"][i] = {NAV_TITLE: _nav(names)}
            break
    else:
        config["nav"].append({NAV_TITLE: _nav(names)})
    return config


def on_files(files, config):
    for name in public_modules():
        files.append(File.generated(config, _page(name), content=_content(name)))
    return files
