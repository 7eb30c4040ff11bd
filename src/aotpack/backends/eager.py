"""The eager backend: the captured graph as Python source that calls aten ops.

No compiler runs at build or load time. The package stores the fx graph's generated
Python code (``graph.py``), which is readable, diffable and loads in microseconds, and
runs it op by op. Useful as a reference for the compiled backends, for debugging, and
for hosts without a C++ compiler.

Why source and not a pickled GraphModule: source has no loader-side code execution
beyond the graph itself, reads the same on every torch version, and is what a person
wants to see (torch.fx pickles its generated source for the same reason).
"""

from __future__ import annotations

import math
import operator
import re

import torch

from ..errors import CaptureError
from . import Compiled

# The names generated graph code may refer to; anything else is refused at compile time.
_GLOBALS = {"torch": torch, "math": math, "operator": operator, "inf": math.inf, "nan": math.nan,
            "device": torch.device, "builtins": __builtins__}


class Eager:
    """Runs the graph op by op (``backend="eager"``)."""

    name = "eager"

    def compile(self, captured, options: dict) -> Compiled:
        gm = captured.graph_module
        for node in gm.graph.nodes:
            if node.op in ("get_attr", "call_module"):
                raise CaptureError(
                    f"the eager backend cannot store graph node {node.name} ({node.op} {node.target}); "
                    "the program uses a higher-order op (cond/map/scan) or a submodule call",
                    hint="use backend='aoti'",
                )
        code = gm.graph.python_code(root_module="self")
        # fx lists every global it *may* emit; refuse only the ones the code uses.
        used = {n for n in code.globals if re.search(rf"\b{re.escape(n)}\b", code.src)}
        unknown = sorted(used - set(_GLOBALS) - {"NoneType", "__builtins__"})
        if unknown:
            raise CaptureError(f"the eager backend cannot store graph code that refers to {unknown}",
                               hint="use backend='aoti'")
        return Compiled(files={"graph.py": code.src.encode()}, meta={"entry": "forward"})

    def load(self, files):
        namespace = dict(_GLOBALS, NoneType=type(None))
        source = files.read("graph.py").decode()
        exec(compile(source, "<aotpack eager graph>", "exec"), namespace)  # noqa: S102 - verified member
        forward = namespace[files.meta.get("entry", "forward")]

        def run(flat):
            # Inference packages: no autograd graph, as with the compiled backends.
            with torch.no_grad():
                return forward(None, *flat)

        return run
