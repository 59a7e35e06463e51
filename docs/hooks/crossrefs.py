"""Griffe extension: Sphinx roles in jaxflow's docstrings become links of the API reference.

The docstrings write cross-references as Sphinx roles (``:func:`run```, ``:class:`~jaxflow.
engine.trajectory.Trajectory```, ``:mod:`jaxflow.plot.style```), which read well in
``help()``. Before mkdocstrings renders a docstring, each role is rewritten as an autorefs link
``[`run`][jaxflow.sweep.runner.run]``:

* the target is resolved where the docstring stands: the object's own scope and its parents',
  then the names its module imports, then as an absolute path (the public short paths such as
  ``jaxflow.theory`` are read as the modules they alias);
* a public name defined in a private module (``jaxflow.oracles._theory_times``) links to the
  public module that re-exports it, where its documentation is rendered;
* a target that resolves to a private name (one that starts with ``_``) or lies outside jaxflow
  (``jax.jit``) is shown as code: it has no page to link to;
* a target that resolves to nothing is still written as a link, to its name as written: autorefs
  cannot find it and warns, so ``mkdocs build --strict`` fails on it.

``~`` shows the last part of the name only, as in Sphinx.
"""

import re

import griffe

_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|obj|exc|const):`(~?)([^`]+)`")
# jaxflow/__init__.py makes these short paths importable (sys.modules aliases)
_SHORT_PATHS = {
    "jaxflow.descent": "jaxflow.engine.descent",
    "jaxflow.flow": "jaxflow.engine.flow",
    "jaxflow.status": "jaxflow.engine.status",
    "jaxflow.trajectory": "jaxflow.engine.trajectory",
    "jaxflow.incremental": "jaxflow.oracles.incremental",
    "jaxflow.jump_process": "jaxflow.oracles.jump_process",
    "jaxflow.saddles": "jaxflow.oracles.saddles",
    "jaxflow.theory": "jaxflow.oracles.theory",
}


def _canonical(path: str) -> str:
    for short, full in _SHORT_PATHS.items():
        if path == short or path.startswith(short + "."):
            return full + path[len(short):]
    return path


def _lookup(package: griffe.Module, path: str):
    """The object at ``path`` (aliases followed), or None."""
    parts = path.split(".")
    if parts[0] != package.name:
        return None
    node = package
    for part in parts[1:]:
        try:
            node = node.members[part]
            if isinstance(node, griffe.Alias):
                node = node.final_target
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None
    return node


def _resolve(obj, package: griffe.Module, target: str):
    """The canonical path of ``target`` as seen from ``obj``, or None."""
    target = _canonical(target.rstrip("()"))
    head, _, rest = target.partition(".")
    candidates = []
    scope = obj
    while scope is not None:
        candidates.append(f"{scope.path}.{target}")
        scope = scope.parent
    module = obj.module
    if head in module.imports:
        candidates.append(_canonical(module.imports[head]) + (f".{rest}" if rest else ""))
    candidates.append(target)
    for path in candidates:
        found = _lookup(package, path)
        if found is not None:
            # A public name re-exported from a private module (``theory.learning_time``, defined
            # in ``_theory_times``) is documented, and linked to, where it is public.
            return path if _public(path) and not _public(found.path) else found.path
    return None


def _public(path: str) -> bool:
    return not any(part.startswith("_") for part in path.split("."))


def rewrite(text: str, obj, package: griffe.Module) -> str:
    """``text`` with every Sphinx role replaced by an autorefs link or inline code."""

    def link(match: re.Match) -> str:
        short, target = match.group(1) == "~", match.group(2).strip()
        shown = target.rsplit(".", 1)[-1] if short else target
        path = _resolve(obj, package, target)
        if path is None:
            outside = target.split(".")[0] not in (package.name, "") and "." in target
            if outside or not _public(target):
                return f"`{shown}`"
            return f"[`{shown}`][{target}]"  # unresolved: autorefs warns, strict fails
        if not _public(path):
            return f"`{shown}`"
        return f"[`{shown}`][{path}]"

    return _ROLE.sub(link, text)


class SphinxRoles(griffe.Extension):
    """Rewrites the roles of every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        def visit(obj) -> None:
            if obj.docstring is not None:
                obj.docstring.value = rewrite(obj.docstring.value, obj, pkg)
            for member in obj.members.values():
                if not isinstance(member, griffe.Alias):
                    visit(member)

        visit(pkg)
