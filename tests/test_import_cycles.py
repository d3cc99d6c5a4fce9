"""critsym's modules import each other without cycles (module-level imports, and also counting
imports inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import critsym

ROOT = Path(critsym.__file__).resolve().parent


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_level(body):
    """Import statements executed when the module is imported: top level, and inside top-level
    ``try`` and ``if`` blocks (not ``if TYPE_CHECKING``)."""
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.Try):
            for part in (node.body, node.orelse, node.finalbody,
                         *(h.body for h in node.handlers)):
                yield from _module_level(part)
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            yield from _module_level(node.body)
            yield from _module_level(node.orelse)


def import_graph(lazy: bool = False) -> dict[str, set[str]]:
    """module -> the critsym modules it imports (``lazy``: also imports inside functions)."""
    files = {_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        nodes = ast.walk(tree) if lazy else _module_level(tree.body)
        for node in nodes:
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - node.level + 1]
                    src = ".".join(base + ([node.module] if node.module else []))
                else:
                    src = node.module or ""
                # `from pkg import sub` imports the submodule pkg.sub; names come from pkg
                subs = [f"{src}.{a.name}" for a in node.names if f"{src}.{a.name}" in files]
                targets = subs if len(subs) == len(node.names) else subs + [src]
            else:
                continue
            graph[mod] |= {t for t in targets if t in files and t != mod}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first = last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        state[m] = 2
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_graph_sees_relative_and_absolute_imports():
    g = import_graph()
    assert "critsym.theory" in g["critsym.derive"]  # from .theory import Theory
    assert "critsym.fold" in g["critsym.theory"]


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of ``graph`` with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[set[str]] = []

    def visit(m):
        index[m] = low[m] = len(index)
        stack.append(m)
        on.add(m)
        for n in sorted(graph[m]):
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in on:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            comp = set()
            while True:
                n = stack.pop()
                on.discard(n)
                comp.add(n)
                if n == m:
                    break
            if len(comp) > 1:
                out.append(comp)

    for m in sorted(graph):
        if m not in index:
            visit(m)
    return out


def test_strongly_connected_finds_every_cycle():
    g = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c", "f"}, "f": set()}
    assert sorted(map(sorted, strongly_connected(g))) == [["a", "b"], ["c", "d", "e"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_lazy_graph_sees_imports_inside_functions_and_submodules():
    g = import_graph(lazy=True)
    # `from ..derive import derive` inside mixer's derivation_documents
    assert "critsym.derive" in g["critsym.ops.mixer"]
    assert "critsym.derive" not in import_graph()["critsym.ops.mixer"]
    # a package re-exporting a submodule: an edge to the submodule, none back to the package
    assert "critsym.finite_width.api" in g["critsym.finite_width"]
    assert "critsym.finite_width" not in g["critsym.finite_width.api"]
    # `from critsym.finite_width import laws` is an edge to the submodule laws
    assert "critsym.finite_width.laws" in g["critsym.finite_width.api"]


def test_no_import_cycles_counting_imports_inside_functions():
    """No cycle even counting every import statement anywhere in a module (inside functions and
    methods, ``if TYPE_CHECKING`` blocks included)."""
    cycles = strongly_connected(import_graph(lazy=True))
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in cycles)


def test_theory_and_derivation_have_no_lazy_cycles():
    """Also counting imports inside functions, the theory, its derivation and the fold form no
    cycle among themselves."""
    core = {"critsym.theory", "critsym.derive", "critsym.fold", "critsym.symbols",
            "critsym.gaussian.expectation", "critsym.gaussian.closed_form",
            "critsym.gaussian.numeric", "critsym.gaussian.lambdified"}
    g = import_graph(lazy=True)
    assert find_cycle({m: g[m] & core for m in core}) is None


def test_criticality_uses_only_public_theory_attributes():
    """critsym.criticality reads a Theory through its public methods only (no ``theory._x``)."""
    private = []
    for path in sorted((ROOT / "criticality").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                base = node.value
                name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
                if name in ("theory", "th"):
                    private.append(f"{path.name}:{node.lineno} {name}.{node.attr}")
    assert not private, private
