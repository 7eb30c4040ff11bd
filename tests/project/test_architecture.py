"""The architecture as the imports show it (DESIGN.md): no import cycle among aotpack's
modules, counting imports inside functions; the load side imports nothing of the build
side but its one rebuild entry point; private torch only in _torch_compat.py (see
test_private_torch.py)."""

import ast
import os

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "src")


def import_graph() -> dict[str, set[str]]:
    """module -> the aotpack modules it imports (any import statement, anywhere in it)."""
    mods = {}
    for folder, _, files in os.walk(os.path.join(SRC, "aotpack")):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                name = os.path.relpath(path, SRC)[:-3].replace(os.sep, ".")
                mods[name.removesuffix(".__init__")] = path
    graph = {m: set() for m in mods}
    for m, path in mods.items():
        package = m if path.endswith("__init__.py") else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.ImportFrom):
                parts = package.split(".")
                base = parts[: len(parts) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                found = [f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target for a in node.names]
            elif isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            else:
                continue
            graph[m] |= {t for t in found if t in mods and t != m}
    return graph


def test_no_import_cycles():
    graph = import_graph()
    seen, path_stack, cycles = set(), [], []

    def visit(m):
        if m in path_stack:
            cycles.append(path_stack[path_stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        path_stack.append(m)
        for n in sorted(graph[m]):
            visit(n)
        path_stack.pop()

    for m in sorted(graph):
        visit(m)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_load_side_imports_the_build_side_only_to_rebuild():
    graph = import_graph()
    crossing = {(m, n) for m, ns in graph.items() if m.startswith("aotpack.load") for n in ns
                if n.startswith("aotpack.build")}
    assert crossing == {("aotpack.load.runtime", "aotpack.build.rebuild")}, crossing
