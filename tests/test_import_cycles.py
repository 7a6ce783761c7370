"""No import cycle among the product's modules (module-level imports; imports under
`TYPE_CHECKING` or inside functions are not edges). A cycle means two modules that cannot be
understood, or changed, one without the other."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("clients", "store", "tasks", "flows", "mappings", "deployments", "sandbox")
ENTRY_POINTS = {"mappings.__main__", "sandbox.__main__"}  # run as scripts, never imported


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top_level_imports(tree: ast.Module, name: str, is_package: bool) -> set[str]:
    found: set[str] = set()
    base = name if is_package else name.rpartition(".")[0]
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in [node] if not isinstance(node, ast.Try) else node.body:
            if isinstance(sub, ast.Import):
                found.update(alias.name for alias in sub.names)
            elif isinstance(sub, ast.ImportFrom):
                module = sub.module or ""
                if sub.level:
                    anchor = base.split(".")[: len(base.split(".")) - sub.level + 1]
                    module = ".".join([*anchor, module] if module else anchor)
                found.add(module)
                found.update(f"{module}.{alias.name}" for alias in sub.names)
    return found


def _graph() -> dict[str, set[str]]:
    modules: dict[str, tuple[Path, bool]] = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            modules[_module_name(path)] = (path, path.name == "__init__.py")
    graph: dict[str, set[str]] = {}
    for name, (path, is_package) in modules.items():
        if name in ENTRY_POINTS:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = _top_level_imports(tree, name, is_package)
        graph[name] = {m for m in imported if m in modules and m != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_product_modules_import_each_other_without_a_cycle() -> None:
    graph = _graph()
    assert len(graph) > 60  # the graph really holds the product
    assert _cycle(graph) is None, " → ".join(_cycle(graph) or [])


def test_the_checker_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
