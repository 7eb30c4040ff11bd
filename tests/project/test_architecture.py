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


def code_lines(node: ast.AST, source: list[str]) -> int:
    """Lines of code in a function: not blank, not a comment, not its docstring."""
    skip = set()
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        skip = set(range(body[0].lineno, body[0].end_lineno + 1))
    return sum(1 for i in range(node.lineno, node.end_lineno + 1)
               if i not in skip and source[i - 1].strip() and not source[i - 1].strip().startswith("#"))


def test_no_function_over_80_lines_of_code():
    long = []
    for folder, _, files in os.walk(os.path.join(SRC, "aotpack")):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                text = open(path).read()
                source = text.splitlines()
                for node in ast.walk(ast.parse(text)):
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and code_lines(node, source) > 80:
                        long.append(f"{os.path.relpath(path, SRC)}:{node.lineno} {node.name} "
                                    f"({code_lines(node, source)} lines)")
    assert not long, "split these functions: " + ", ".join(long)
