"""Imports run downward only: cli, serve → builtin → run → families, backends, sinks → plan → errors, step.

Every `import diffcli.X` / `from diffcli.X import ...` in the package (function-level ones included) is read
from the source with `ast`, so a new upward import fails here, not in review.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "diffcli"
RANK = {"cli": 5, "serve": 5, "builtin": 4, "run": 3, "families": 2, "backends": 2, "sinks": 2, "plan": 1,
        "errors": 0, "step": 0, "__init__": 0, "__main__": 6}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("diffcli"):
            names = [node.module] if node.module != "diffcli" else [f"diffcli.{a.name}" for a in node.names]
            found += [(node.lineno, name) for name in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("diffcli")]
    return found


def test_no_upward_imports():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = layer("diffcli." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        for line, name in imports(path):
            target = layer(name)
            if target in RANK and own in RANK and RANK[target] > RANK[own]:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {own} imports {name}")
    assert upward == [], "\n".join(upward)


def test_every_module_is_at_most_300_lines():
    long = [f"{p.relative_to(PACKAGE.parent)}: {n}" for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 300]
    assert long == [], long
