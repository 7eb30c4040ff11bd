"""The eager backend: the captured graph as Python source that calls aten ops.

No compiler runs at build or load time. The package stores the fx graph's generated
Python code (``graph.py``), which is readable, diffable and loads in microseconds, and
runs it op by op. Useful as a reference for the compiled backends, for debugging, and
for hosts without a C++ compiler.

Higher-order ops (grad-mode and autocast regions, ``torch.cond``, ``map``) hold their
bodies as nested graph modules; each becomes a function of its own in ``graph.py``,
and at load a small object per module carries them under the attribute names the
graph code reads (``self.submod_1``), so the op calls them as it calls a graph module.

Why source and not a pickled GraphModule: source has no loader-side code execution
beyond the graph itself, reads the same on every torch version, and is what a person
wants to see (torch.fx pickles its generated source for the same reason).
"""

from __future__ import annotations

import functools
import math
import operator
import re
import types

import torch

from ..errors import BackendError, FormatError
from .protocol import Compiled

# The names generated graph code may refer to; anything else is refused at compile time.
_GLOBALS = {"torch": torch, "math": math, "operator": operator, "inf": math.inf, "nan": math.nan,
            "device": torch.device, "builtins": __builtins__}


class Eager:
    """Runs the graph op by op (``backend="eager"``)."""

    name = "eager"
    runs_aten_ops = True  # the guards leave negative/conjugate bits and tangents to aten
    supports_training = True

    def compile(self, captured, options: dict) -> Compiled:
        if options:
            raise BackendError(f"the eager backend takes no options; got {sorted(options)}",
                               hint="drop options=, or use backend='aoti' (inductor's options)")
        gm = captured.graph_module
        modules = {name: m for name, m in gm.named_modules() if isinstance(m, torch.fx.GraphModule)}
        sources, functions = [], {}
        for i, (name, module) in enumerate(modules.items()):
            for node in module.graph.nodes:
                if node.op == "call_module" or (node.op == "get_attr" and not isinstance(
                        _attr(module, node.target), torch.fx.GraphModule)):
                    raise BackendError(
                        f"the eager backend cannot store graph node {node.name} ({node.op} {node.target}): "
                        "the graph reads a submodule or attribute that is not a graph", hint="use backend='aoti'")
            code = module.graph.python_code(root_module="self")
            # fx lists every global it *may* emit; refuse only the ones the code uses.
            used = {n for n in code.globals if re.search(rf"\b{re.escape(n)}\b", code.src)}
            unknown = sorted(used - set(_GLOBALS) - {"NoneType", "__builtins__"})
            if unknown:
                raise BackendError(f"the eager backend cannot store graph code that refers to {unknown}",
                                   hint="use backend='aoti'")
            function = "forward" if not name else f"graph_{i}"
            sources.append(code.src.replace("def forward(self", f"def {function}(self", 1))
            functions[name] = function
        meta = {"entry": "forward"}
        if len(functions) > 1:
            meta["modules"] = functions
        return Compiled(files={"graph.py": "\n".join(sources).encode()}, meta=meta)

    def check(self, files) -> list[str]:
        """What load would fail on, read from graph.py's syntax tree (nothing is run)."""
        import ast

        try:
            tree = ast.parse(files.read("graph.py").decode(), _FILENAME)
            defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
            _entry_points(files.meta, defined)
        except (SyntaxError, UnicodeDecodeError) as e:
            return [f"graph.py does not parse: {e}"]
        except FormatError as e:
            return [e.message]
        return []

    def load(self, files):
        namespace = dict(_GLOBALS, NoneType=type(None))
        source = files.read("graph.py").decode()
        exec(compile(source, _FILENAME, "exec"), namespace)  # noqa: S102 - verified member
        # only functions graph.py defines: the meta names them, and the meta is the
        # package's word, not the code's (a name like __builtins__ is in the namespace too)
        graph_functions = {k: v for k, v in namespace.items()
                           if isinstance(v, types.FunctionType) and v.__code__.co_filename == _FILENAME}
        entry, modules = _entry_points(files.meta, graph_functions)
        forward = graph_functions[entry]
        root = _module_objects(graph_functions, modules)

        def run(flat):
            # Inference packages: no autograd graph, as with the compiled backends.
            with torch.no_grad():
                return forward(root, *flat)

        return run


_FILENAME = "<aotpack eager graph>"


def _entry_points(meta: dict, defined) -> tuple[str, dict]:
    """(the root function's name, graph module name -> function name) from ``meta``;
    FormatError unless each names one of ``defined`` (graph.py's functions) and every
    nested graph module has its parent."""
    entry, modules = meta.get("entry", "forward"), meta.get("modules", {})
    if not isinstance(modules, dict) or not all(isinstance(k, str) for k in modules):
        raise FormatError("the eager variant's meta.modules is not an object of graph module names",
                          hint="rebuild the package")
    for name in (entry, *modules.values()):
        if not isinstance(name, str) or name not in defined:
            raise FormatError(f"the eager variant's graph code defines no function {name!r}",
                              hint="rebuild the package")
    for name in modules:
        parent = name.rpartition(".")[0]
        if name and parent not in modules:
            raise FormatError(f"the eager variant's graph module {name!r} has no parent {parent!r}",
                              hint="rebuild the package")
    if modules and "" not in modules:
        raise FormatError("the eager variant's meta.modules has no root graph ('')", hint="rebuild the package")
    return entry, modules


def _attr(module, target: str):
    for part in target.split("."):
        module = getattr(module, part, None)
    return module


class _Module:
    """Stands in for a graph module at load: its nested graphs as attributes."""


def _module_objects(namespace: dict, functions: dict) -> _Module | None:
    """The ``self`` of the root graph: an object per graph module, each nested graph a
    callable attribute of its parent (``self.submod_1(*args)``)."""
    if not functions:
        return None
    objects = {name: _Module() for name in functions}
    for name, function in functions.items():
        if not name:
            continue
        parent, _, attr = name.rpartition(".")
        setattr(objects[parent], attr, functools.partial(namespace[function], objects[name]))
    return objects[""]
