"""The package's layering: no module imports from a layer above its own (README, Layout).

Imports are read with `ast` from every module under src/antispoof, those inside functions too,
so a lazy import cannot hide an upward dependency. A new module must be placed in a layer here.
"""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS = [  # lowest first; a module may import from its own layer and the ones before it
    ("antispoof.utils", "antispoof.config", "antispoof.schema", "antispoof.console", "antispoof.locks",
     "antispoof.signals", "antispoof.allocator"),
    ("antispoof.metrics",),
    ("antispoof.data", "antispoof.runs"),
    ("antispoof.features", "antispoof.augment", "antispoof.losses"),
    ("antispoof.models",),
    ("antispoof.inference",),
    ("antispoof.train",),
    ("antispoof.ensemble",),
    ("antispoof.submit",),
    ("antispoof.spoofbench", "antispoof.importers"),  # write data sets through data.layout; only commands read them
    ("antispoof.commands",),
]


def layer_of(module: str) -> int | None:
    for i, names in enumerate(LAYERS):
        if any(module == name or module.startswith(name + ".") for name in names):
            return i
    return None


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, module) of every antispoof import; `from antispoof import x` names antispoof.x."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "antispoof":
                found += [(node.lineno, f"antispoof.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name.split(".")[0] == "antispoof"]


def test_no_module_imports_from_a_higher_layer():
    modules = sorted((SRC / "antispoof").rglob("*.py"))
    assert modules, f"no modules under {SRC}"
    unplaced, upward = [], []
    for path in modules:
        name = module_name(path)
        own = layer_of(name)
        if own is None:
            if name != "antispoof":
                unplaced.append(name)
            continue
        for line, target in imported_modules(ast.parse(path.read_text(encoding="utf-8"))):
            theirs = layer_of(target)
            if theirs is None or theirs > own:
                upward.append(f"{path.relative_to(SRC)}:{line} imports {target}")
    assert not unplaced, f"modules in no layer (add them to LAYERS): {unplaced}"
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def import_graph() -> dict[str, set[str]]:
    """module -> the antispoof modules it imports (a package import names its __init__)."""
    modules = {module_name(path): path for path in sorted((SRC / "antispoof").rglob("*.py"))}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for _, target in imported_modules(ast.parse(path.read_text(encoding="utf-8"))):
            while target not in modules and "." in target:  # `from pkg.mod import name` where name is no module
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (a -> b -> ... -> a) found by depth-first search, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_find_cycle_sees_a_circle_and_a_clean_graph():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circle():
    """No module reaches itself through imports, lazy ones included (a package's __init__ counts
    as the module `pkg`, so `from pkg import x` inside pkg's own modules is a circle too)."""
    graph = import_graph()
    assert len(graph) > 50, f"too few modules read under {SRC}"
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)
