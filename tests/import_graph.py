"""Our own import-cycle finder for the package, read from the source (nothing is imported).

Every ``import`` and ``from ... import`` statement counts, wherever it stands: at the top of a module,
inside a function (a lazy import is still a dependency, only a later one), or under ``if TYPE_CHECKING:``
(it never runs, but the types it names are a dependency all the same: a circle of them is a circle in the
design, and the layers contract counts them too, ``exclude_type_checking_imports = false``).
"""

from __future__ import annotations

import ast
from pathlib import Path


def modules_of(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file under ``package_dir`` (a package's
    ``__init__.py`` is the package itself)."""
    root = package_dir.parent
    found: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _import_statements(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree``."""
    return [node for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)]


def _owner(name: str, known: dict[str, Path]) -> str | None:
    """The module of ours that ``name`` (a module, or a name inside one) refers to."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ours that ``module`` imports."""
    here = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: list[str] = []
    for stmt in _import_statements(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(stmt, ast.Import):
            names += [alias.name for alias in stmt.names]
            continue
        base = stmt.module or ""
        if stmt.level:  # relative: climb level - 1 packages up from this one
            up = here.split(".")[: len(here.split(".")) - stmt.level + 1]
            base = ".".join([*up, base] if base else up)
        # `from pkg import sub` imports the module pkg.sub; `from mod import name` imports mod
        names += [f"{base}.{alias.name}" for alias in stmt.names] + [base]
    return {owner for n in names if (owner := _owner(n, known)) and owner != module}


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    known = modules_of(package_dir)
    return {module: imports_of(module, path, known) for module, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``), or None when there is none.

    Modules that import nothing still in play are peeled off until none is left; whatever remains
    lies on or leads into a cycle, and walking from one of them must come back round.
    """
    remaining = {m: set(deps) & graph.keys() for m, deps in graph.items()}
    peeled = True
    while peeled:
        leaves = [m for m, deps in remaining.items() if not deps]
        peeled = bool(leaves)
        for leaf in leaves:
            del remaining[leaf]
        for deps in remaining.values():
            deps.difference_update(leaves)
    if not remaining:
        return None
    walk = [min(remaining)]
    while walk[-1] not in walk[:-1]:
        walk.append(min(remaining[walk[-1]]))
    return walk[walk.index(walk[-1]) :]
