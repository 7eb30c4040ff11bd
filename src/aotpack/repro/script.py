"""``save_repro``: a graph and its inputs -> one standalone folder anyone can run.

    path/repro.py        needs only torch: the graph as readable code, load_args(), a CLI
    path/storages/<sha>  the inputs' storages (content-addressed; optional)

``python repro.py run [--backend B]`` runs the graph once with backend B (eager,
aot_eager, inductor) and fails as the original failed. ``python repro.py accuracy``
compares B and eager against a float64 eager reference, prints each output's max
error, and exits 1 when B is further from the reference than eager allows.

Known failures of torch's after_aot reproducers that this avoids (tested): config
lines that are not valid Python (every config line is compiled before it is written),
graphs returning a single tensor or nothing, and repros that need the storages folder
(missing storages become deterministic random data).

Example:
    >>> save_repro(gm, [x, w], "repro_dir")                     # doctest: +SKIP
    $ python repro_dir/repro.py accuracy --backend inductor
"""

from __future__ import annotations

import datetime
import inspect
import os
import platform
import textwrap

import torch

from .. import _torch_compat as compat
from .._version import __version__
from . import accuracy
from .inputs import InputReader, InputWriter

__all__ = ["save_repro"]

_HEADER = '''\
"""Reproducer written by aotpack {aotpack} on {date}.

    python repro.py run [--backend eager|aot_eager|inductor|module:function]
    python repro.py accuracy [--backend inductor]
    python repro.py minify --failure exception|accuracy|REGEX [--backend ...]   (needs aotpack)

Needs only torch. Inputs come from storages/ beside this file; without it, from
deterministic random data of the same dtypes, shapes and strides.
"""
# written with: torch {torch}, aotpack {aotpack}, Python {python}, {machine}
import argparse
import math
import operator
import os
import sys
from math import inf, nan

import torch
from torch import device

{config}
'''

_MAIN = '''
def _inputs():
    return load_args(InputReader(os.path.join(os.path.dirname(os.path.abspath(__file__)))))


def _compiled(mod, backend):
    if backend == "eager":
        return mod
    if ":" in backend:  # module:function, any torch.compile backend importable here
        import importlib

        module, _, name = backend.partition(":")
        backend = getattr(importlib.import_module(module), name)
    return torch.compile(mod, backend=backend, fullgraph=True)


def main(argv=None):
    p = argparse.ArgumentParser(description="aotpack reproducer")
    p.add_argument("mode", nargs="?", default="run", choices=["run", "accuracy", "minify"])
    p.add_argument("--failure", default="exception", help="minify: exception, accuracy, or a regex")
    p.add_argument("--backend", default=DEFAULT_BACKEND,
                   help="eager, aot_eager, inductor, or module:function naming a torch.compile backend")
    p.add_argument("--tol", type=float, default=None, help="absolute tolerance on top of eager's own error")
    a = p.parse_args(argv)
    if a.mode == "minify":
        try:
            from aotpack.repro.minify import minify_repro
        except ImportError:
            print("error: minify needs aotpack (pip install aotpack); run and accuracy need only torch")
            return 2
        minify_repro(os.path.dirname(os.path.abspath(__file__)), backend=a.backend, failure=a.failure)
        return 0
    args = _inputs()
    mod = Repro()
    if a.mode == "run":
        with torch.no_grad():
            out = _compiled(mod, a.backend)(*args)
        for i, o in enumerate(flat(out)):
            desc = f"{o.dtype}{list(o.shape)}" if isinstance(o, torch.Tensor) else repr(o)
            print(f"output {i}: {desc}")
        print(f"ran with backend {a.backend}: ok")
        return 0
    with torch.no_grad():
        ref = flat(Repro().to(torch.float64)(*[to_float64(x) for x in args]))
        eager = flat(mod(*args))
        res = flat(_compiled(Repro(), a.backend)(*args))
    results = compare(ref, eager, res, a.tol)
    for i, (ok, what) in enumerate(results):
        print(f"output {i}: {what}: {'ok' if ok else 'MISMATCH'} ({a.backend})")
    bad = sum(not ok for ok, _ in results)
    print("accuracy: " + ("ok" if not bad else f"FAIL ({bad} outputs)"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
'''


def _plain_graph(gm: torch.fx.GraphModule, args: list) -> torch.fx.GraphModule:
    """A graph whose code calls only functions and methods (submodule calls retraced to aten)."""
    if any(n.op == "call_module" for n in gm.graph.nodes):
        from torch.fx.experimental.proxy_tensor import make_fx

        gm = make_fx(gm)(*args)
    return compat.plain_graph_module(gm)


_SCRIPT_GLOBALS = {"torch", "math", "operator", "inf", "nan", "device", "NoneType", "builtins", "os", "sys",
                   "argparse"}


def _global_imports(gm: torch.fx.GraphModule) -> str:
    """Import lines for the globals the graph's code refers to beyond the script's own
    (fx names them after their module and qualname, e.g. a dynamo helper
    ``torch__dynamo_variables_tensor_prim_redistribute``)."""
    import re
    import types

    lines = []
    code = gm.graph.python_code(root_module="self")
    for name, obj in sorted(code.globals.items()):
        if name in _SCRIPT_GLOBALS or name.startswith("__") or not re.search(rf"\b{re.escape(name)}\b", code.src):
            continue  # fx lists every global it may emit; only the used ones matter
        module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if isinstance(obj, types.ModuleType):
            lines.append(f"import {obj.__name__} as {name}")
        elif obj is type(None):
            lines.append(f"{name} = type(None)")
        elif module and qualname and "<" not in qualname:
            lines += [f"import {module}", f"{name} = {module}.{qualname}"]
        else:
            lines.append(f"# not importable, the graph's code needs it: {name} = {obj!r}".replace("\n", " "))
    return "\n".join(lines)


def _module_of(key: str) -> str | None:
    """The longest importable module prefix of a dotted config key:
    ``torch._inductor.config.trace.enabled`` -> ``torch._inductor.config`` (``trace``
    is a class inside it, so ``import torch._inductor.config.trace`` would fail)."""
    import importlib.util

    parts = key.split(".")[:-1]
    while parts:
        name = ".".join(parts)
        try:
            if importlib.util.find_spec(name) is not None:
                return name
        except (ImportError, ValueError):
            pass
        parts.pop()
    return None


def _config_lines(config: dict | None) -> str:
    """``import module`` + ``module.key = value`` lines; a value whose repr is not a
    Python literal (an object, a path, a function) becomes a comment, so the script
    always runs."""
    import ast

    lines = []
    for key, value in sorted((config or {}).items()):
        module = _module_of(key)
        try:
            ast.literal_eval(repr(value))  # invalid or non-literal values never reach the code
            ok = module is not None
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            ok = False
        if ok:
            lines += [f"import {module}", f"{key} = {value!r}"]
        else:
            lines.append(f"# not representable as Python: {key} = {value!r}".replace("\n", " "))
    return "\n".join(lines)


def _module_init(gm: torch.fx.GraphModule, attrs: InputWriter) -> tuple[list[str], str]:
    """The script's ``Repro.__init__`` lines, which register the graph's tensor attributes
    as buffers, and the source of ``load_attrs`` reading them (stored through ``attrs``)."""
    attr_names = []
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            value = gm
            for part in node.target.split("."):
                value = getattr(value, part)
            if isinstance(value, torch.Tensor):
                attr_names.append(node.target)
                attrs.tensor(f"a{len(attr_names) - 1}", value.detach())
    init = ["    def __init__(self):", "        super().__init__()",
            "        values = load_attrs(InputReader(os.path.dirname(os.path.abspath(__file__))))"]
    for i, name in enumerate(attr_names):
        owner = "self"
        *parents, leaf = name.split(".")
        for part in parents:
            init.append(f"        if not hasattr({owner}, {part!r}):")
            init.append(f"            {owner}.add_module({part!r}, torch.nn.Module())")
            owner = f"getattr({owner}, {part!r})"
        init.append(f"        {owner}.register_buffer({leaf!r}, values[{i}])")
    return init, attrs.load_args_source().replace("def load_args(", "def load_attrs(")


def save_repro(gm: torch.fx.GraphModule, args, path: str | os.PathLike, *, config: dict | None = None,
               save_inputs: bool = True, filename: str = "repro.py", preamble: str = "",
               default_backend: str = "inductor") -> str:
    """Write ``path/repro.py`` (+ ``path/storages/``) reproducing ``gm(*args)``.

    Args:
      gm: an fx GraphModule (aten or torch-level; submodule calls are retraced).
      args: its inputs (tensors, ints, Python constants).
      path: the folder to write (created).
      config: ``{"torch._inductor.config.max_autotune": True, ...}`` set at the top of
        the script; only lines that are valid Python are written.
      save_inputs: False writes no storages (the script then uses random inputs).
      filename: the script's name in ``path``.
      preamble: code run after the config lines (e.g. a fake process group's setup).
      default_backend: the backend of a bare ``python SCRIPT`` (``run`` mode).
    Returns:
      the path of the script.
    """
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    args = list(args)
    gm = _plain_graph(gm, args)
    writer = InputWriter(path if save_inputs else None)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(args):
        raise ValueError(f"the graph takes {len(placeholders)} inputs, {len(args)} were given")
    for i, a in enumerate(args):
        writer.value(f"arg{i}", a)
    init, load_attrs = _module_init(gm, InputWriter(path if save_inputs else None))
    forward = gm.code.strip()
    source = "\n".join([
        _HEADER.format(aotpack=__version__, torch=torch.__version__, python=platform.python_version(),
                       machine=f"{platform.system()} {platform.machine()}",
                       date=datetime.date.today().isoformat(), config=_config_lines(config)),
        preamble,
        _global_imports(gm),
        f"DEFAULT_BACKEND = {default_backend!r}",
        textwrap.dedent(inspect.getsource(InputReader)),
        "",
        *(inspect.getsource(f) for f in (accuracy.flat, accuracy.to_float64, accuracy.compare)),
        "",
        "class Repro(torch.nn.Module):",
        *init,
        "",
        textwrap.indent(forward, "    "),
        "",
        "",
        writer.load_args_source(),
        "",
        load_attrs,
        _MAIN,
    ])
    target = os.path.join(path, filename)
    compile(source, target, "exec")  # never write a script that does not parse
    with open(target, "w") as f:
        f.write(source)
    return target


def package_repro(package: str | os.PathLike, path: str | os.PathLike, *, variant: str | None = None) -> str:
    """Write a reproducer of one variant of a saved package, with its recorded example
    inputs and its weights as inputs (content-addressed storages).

    Example:
        >>> package_repro("mlp.aot", "mlp_repro")                  # doctest: +SKIP
        $ python mlp_repro/repro.py accuracy --backend inductor
    """
    from ..build.rebuild import captured_from_reader
    from ..package import fmt
    from ..package.reader import PackageReader

    with PackageReader(package) as r:
        r.verify([fmt.WEIGHTS])
        captured = captured_from_reader(r, r.variant(variant), r.weights())
    return save_repro(captured.graph_module, [t.detach().clone() for t in captured.graph_args()], path)
