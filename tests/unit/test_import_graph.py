"""The project's modules import one another without a cycle, and the core imports neither the agent nor the provider.

The graph is built from the source with ``ast`` (nothing is imported), over the three packages:
``trl_nats`` (the core), ``trl_nats_agent`` (the GPU node) and ``trl_nats_provider`` (the front doors).
Every import counts, including ones inside functions and under ``TYPE_CHECKING``: a cycle that only
a lazy import hides is still a cycle in the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

from support import REPO

PACKAGES = {
    "trl_nats": REPO / "trl_nats",
    "trl_nats_agent": REPO / "agents" / "trl_nats_agent",
    "trl_nats_provider": REPO / "provider" / "trl_nats_provider",
}


def module_name(package: str, root: Path, path: Path) -> str:
    parts = [package, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    found = {}
    for package, root in PACKAGES.items():
        for path in sorted(root.rglob("*.py")):
            found[module_name(package, root, path)] = path
    return found


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` (at ``path``) imports: each resolved to the longest known module."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            candidates = [f"{stem}.{alias.name}" for alias in node.names] + [stem]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
                break
    return targets


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imported(name, path, known) for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), as sorted lists."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_the_imports_we_know_of():
    edges = graph()
    assert "trl_nats.messages" in edges["trl_nats.store"]
    assert "trl_nats.rows" in edges["trl_nats_provider.rows"]
    assert len(edges) > 40


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(group) for group in found)


def test_the_core_imports_neither_the_agent_nor_the_provider():
    bad = sorted(
        f"{name} imports {target}"
        for name, targets in graph().items()
        if name.split(".")[0] == "trl_nats"
        for target in targets
        if target.split(".")[0] in ("trl_nats_agent", "trl_nats_provider")
    )
    assert not bad, "the core must not import the agent or the provider:\n" + "\n".join(bad)
