"""The minifier: shrink a failing graph to the few nodes that still fail.

Delta debugging (ddmin) over the graph's computing nodes, then input shrinking. A candidate keeps a subset of
the nodes; a value a kept node needs from a dropped node becomes a graph *input*, fed
the exact value eager computed for it, so the kept nodes see what they saw in the full
graph. The candidate's outputs are its kept nodes that no kept node uses. The failure
test compiles the candidate with the backend and runs it. Last, the inputs are halved along each
dimension while the failure persists. The failure kinds:

- ``"exception"``: compiling or running raises,
- ``"accuracy"``: the backend's outputs are less accurate than eager's against a float64
  run (``accuracy.compare``: the same test as the repro script's ``accuracy`` mode),
- any other string: a regular expression the exception message must match.

Example:
    >>> small_gm, small_args, stats = minify(gm, args, backend=my_backend, failure="exception")  # doctest: +SKIP
    >>> stats["nodes_before"], stats["nodes_after"], stats["trials"]  # doctest: +SKIP
    (201, 1, 23)
"""

from __future__ import annotations

import copy
import operator
import re
from collections.abc import Callable

import torch
import torch.fx

from .. import _torch_compat as compat
from . import accuracy

__all__ = ["minify", "fails"]


def _compile(backend, gm: torch.fx.GraphModule, args: list) -> Callable:
    if callable(backend):
        return backend(gm, args)
    if backend == "eager":
        return gm
    return compat.dynamo_backend(backend)(gm, args)


def fails(backend, failure: str, gm: torch.fx.GraphModule, args: list) -> bool:
    """Does ``gm(*args)`` fail the way ``failure`` says with ``backend``? (``"accuracy"``:
    as the repro script's accuracy mode judges it, ``accuracy.compare``.)"""
    if failure == "accuracy":
        with torch.no_grad():
            eager = accuracy.flat(gm(*[a.clone() if isinstance(a, torch.Tensor) else a for a in args]))
            try:
                ref = accuracy.flat(copy.deepcopy(gm).to(torch.float64)(*[accuracy.to_float64(a) for a in args]))
            except Exception:  # noqa: BLE001 - a graph that cannot run in float64: against eager itself
                ref = [accuracy.to_float64(e) for e in eager]
    try:
        with torch.no_grad():
            # A copy: backends may rewrite the graph they are given.
            fn = _compile(backend, copy.deepcopy(gm), [a.clone() if isinstance(a, torch.Tensor) else a for a in args])
            out = fn(*[a.clone() if isinstance(a, torch.Tensor) else a for a in args])
    except Exception as e:  # noqa: BLE001 - any failure of the backend counts
        if failure == "exception":
            return True
        if failure == "accuracy":
            return False
        return re.search(failure, f"{type(e).__name__}: {e}") is not None
    if failure != "accuracy":
        return False
    return not all(ok for ok, _ in accuracy.compare(ref, eager, accuracy.flat(out)))


def _values(gm: torch.fx.GraphModule, args: list) -> dict:
    """Every node's eager value (the inputs candidates are fed)."""
    env: dict = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            env[n] = out
            return out

    with torch.no_grad():
        Recorder(gm).run(*args)
    return env


def _candidate(gm: torch.fx.GraphModule, keep: list, env: dict):
    """(GraphModule, args) computing only ``keep``; other values needed become inputs."""
    keep_set = set(keep)
    graph = torch.fx.Graph()
    mapping: dict = {}
    inputs: list = []

    def lookup(n):
        if n in mapping:
            return mapping[n]
        value = env[n]
        if isinstance(value, torch.Tensor):
            p = graph.placeholder(f"in{len(inputs)}")
            inputs.append(value.detach().clone())
            mapping[n] = p
            return p
        return value  # ints, shapes, None: inlined as constants

    for n in gm.graph.nodes:
        if n in keep_set:
            mapping[n] = graph.node_copy(n, lookup)
    sinks = [mapping[n] for n in keep if not any(u in keep_set for u in n.users)
             and isinstance(env.get(n), torch.Tensor)]
    graph.output(tuple(sinks))
    graph.lint()
    return torch.fx.GraphModule(gm, graph), inputs


def minify(gm: torch.fx.GraphModule, args: list, *, backend, failure: str = "exception",
           max_trials: int = 200, say: Callable[[str], None] = lambda line: None):
    """Shrink ``gm`` while ``fails(backend, failure, ...)`` stays true.

    Args:
      gm: the failing graph.
      args: its inputs.
      backend: a torch.compile backend: a callable ``(gm, example_inputs) -> fn`` or a
        registered name (``"inductor"``, ``"aot_eager"``, ``"eager"``).
      failure: ``"exception"``, ``"accuracy"``, or a regex of the exception message.
      max_trials: stop after this many candidate compiles.
    Returns:
      (minimized GraphModule, its inputs, {"nodes_before", "nodes_after", "trials"}).
    Raises:
      ValueError: the full graph does not fail that way (nothing to minify).
    """
    args = list(args)
    trials = 0

    def test(gm_, args_) -> bool:
        nonlocal trials
        trials += 1
        return fails(backend, failure, gm_, args_)

    if not test(gm, args):
        raise ValueError(f"the graph does not fail with failure={failure!r}; nothing to minify")
    env = _values(gm, args)
    nodes = [n for n in gm.graph.nodes if n.op in ("call_function", "call_method", "call_module", "get_attr")]
    before = len(nodes)
    # getitem plumbing (an element of a tuple result) travels with its producer.
    keep = [n for n in nodes if not (n.op == "call_function" and n.target is operator.getitem)]

    def still_fails(subset: list) -> bool:
        if not subset or trials >= max_trials:
            return False
        full = subset + [n for n in nodes if n.op == "call_function" and n.target is operator.getitem
                         and n.args[0] in set(subset)]
        full.sort(key=lambda n: order[n])
        try:
            cand, cargs = _candidate(gm, full, env)
        except Exception:  # noqa: BLE001 - an invalid candidate simply does not count
            return False
        return test(cand, cargs)

    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    keep = _ddmin(keep, still_fails, lambda: trials >= max_trials)
    full = keep + [n for n in nodes if n.op == "call_function" and n.target is operator.getitem
                   and n.args[0] in set(keep)]
    full.sort(key=lambda n: order[n])
    small, small_args = _candidate(gm, full, env)
    small_args = _shrink_inputs(small, small_args, lambda a: trials < max_trials and test(small, a))
    after = sum(1 for n in small.graph.nodes if n.op in ("call_function", "call_method", "call_module", "get_attr"))
    say(f"minified: {before} nodes -> {after} nodes in {trials} trials")
    return small, small_args, {"nodes_before": before, "nodes_after": after, "trials": trials}


def _ddmin(items: list, still_fails: Callable[[list], bool], out_of_trials: Callable[[], bool]) -> list:
    """Delta debugging (Zeller's ddmin): the smallest sublist of ``items`` found for
    which ``still_fails`` holds, trying chunks alone, then everything but a chunk, at
    ever finer granularity."""
    granularity = 2
    while len(items) >= 2 and not out_of_trials():
        size = max(1, len(items) // granularity)
        chunks = [items[i:i + size] for i in range(0, len(items), size)]
        reduced = False
        for chunk in chunks:  # try a chunk alone
            if still_fails(chunk):
                items, granularity, reduced = chunk, 2, True
                break
        if not reduced:
            for chunk in chunks:  # try everything but a chunk
                rest = [n for n in items if n not in set(chunk)]
                if still_fails(rest):
                    items, granularity, reduced = rest, max(granularity - 1, 2), True
                    break
        if not reduced:
            if granularity >= len(items):
                break
            granularity = min(len(items), granularity * 2)
    return items


def _shrink_inputs(gm, args: list, still_fails: Callable[[list], bool]) -> list:
    """Halve input sizes while the failure persists: every tensor input along the same
    dimension at once (so elementwise partners keep matching shapes), one dim at a time."""
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if not tensors:
        return args
    rank = min(t.dim() for t in tensors)
    for d in range(rank):
        while True:
            sizes = {t.shape[d] for t in tensors}
            if len(sizes) != 1 or next(iter(sizes)) <= 1:
                break
            half = next(iter(sizes)) // 2
            smaller = [a.narrow(d, 0, half).clone() if isinstance(a, torch.Tensor) else a for a in args]
            try:
                ok = still_fails(smaller)
            except Exception:  # noqa: BLE001 - a shape the graph rejects is just not smaller
                ok = False
            if not ok:
                break
            args = smaller
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
    return args


def resolve_backend(name: str):
    """``module:function`` -> that function; any other string is a registered backend name."""
    if ":" in name:
        from ..refs import load_object

        return load_object(name)
    return name


def minify_repro(folder: str, *, backend: str, failure: str = "exception", output: str | None = None,
                 max_trials: int = 200, say: Callable[[str], None] = print) -> dict:
    """Minify the graph of a reproducer folder (written by save_repro); write the
    minimized reproducer to ``output`` (default ``folder/minified``).

    Returns the stats dict of ``minify`` plus ``"path"``: the new repro.py.
    """
    import importlib.util
    import os

    from .script import save_repro

    script = os.path.join(folder, "repro.py")
    spec = importlib.util.spec_from_file_location("aotpack_repro_script", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    gm = torch.fx.symbolic_trace(module.Repro())
    args = module.load_args(module.InputReader(folder))
    small, small_args, stats = minify(gm, args, backend=resolve_backend(backend), failure=failure,
                                      max_trials=max_trials, say=say)
    stats["path"] = save_repro(small, small_args, output or os.path.join(folder, "minified"))
    return stats
