"""Private torch APIs live in _torch_compat.py only (one place to adapt per torch version)."""

from __future__ import annotations

import ast
import pathlib
import re

SRC = pathlib.Path(__file__).parent.parent.parent / "src" / "aotpack"


def _private(dotted: str) -> bool:
    parts = dotted.split(".")
    return parts[0] == "torch" and any(p.startswith("_") and not p.startswith("__") for p in parts[1:])


def _dotted(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def private_uses(path: pathlib.Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [f"{path.name}:{node.lineno} import {a.name}" for a in node.names if _private(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and _private(node.module):
            found.append(f"{path.name}:{node.lineno} from {node.module}")
        elif isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if dotted and _private(dotted) and not isinstance(getattr(node, "ctx", None), ast.Store):
                found.append(f"{path.name}:{node.lineno} {dotted}")
            if node.attr == "expr" and isinstance(node.value, ast.Attribute) and node.value.attr == "node":
                found.append(f"{path.name}:{node.lineno} SymInt .node.expr")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _PRIVATE_IMPORT.search(node.value):
            found.append(f"{path.name}:{node.lineno} generated code imports {_PRIVATE_IMPORT.search(node.value)[0]}")
    return found


# generated code (repro and trace scripts) that imports a private torch module
_PRIVATE_IMPORT = re.compile(r"(?m)^\s*(?:from|import)\s+torch(?:\.\w+)*\._\w+")


def test_private_torch_names_only_in_torch_compat():
    uses = [u for p in sorted(SRC.rglob("*.py")) if p.name != "_torch_compat.py" for u in private_uses(p)]
    assert uses == [], "private torch APIs outside _torch_compat.py:\n" + "\n".join(uses)


def test_the_scan_finds_private_names():
    sample = SRC / "_torch_compat.py"
    assert any("torch._" in u or "import torch._" in u for u in private_uses(sample))
    assert any("generated code imports from torch.testing._internal" in u for u in private_uses(sample))
