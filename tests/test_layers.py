"""The package's layering: no module imports from a layer above its own (README, Layout).

Imports are read with `ast` from every module under src/antispoof, those inside functions too,
so a lazy import cannot hide an upward dependency. A new module must be placed in a layer here.
"""
from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS = [  # lowest first; a module may import from its own layer and the ones before it
    ("antispoof.utils", "antispoof.config", "antispoof.schema"),
    ("antispoof.metrics",),
    ("antispoof.data", "antispoof.runs"),
    ("antispoof.features", "antispoof.augment", "antispoof.losses"),
    ("antispoof.models",),
    ("antispoof.predict", "antispoof.train", "antispoof.embed", "antispoof.infer"),
    ("antispoof.results",),
    ("antispoof.ensemble",),
    ("antispoof.submission", "antispoof.scorer"),
    ("antispoof.run_ensemble", "antispoof.run_predict", "antispoof.compare"),  # compare reads score files too
    ("antispoof.cli",),
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
