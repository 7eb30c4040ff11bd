"""One variant built: capture, then the backend's compile (through the compile cache).

What ``aotpack.compile``, ``add_variant`` and the compile farm's workers run for each
variant spec; the package is assembled by their callers.
"""

from __future__ import annotations

import contextlib
import threading
import time

import torch

from ..backends import get_backend
from ..errors import NothingToDifferentiate, warn_caller
from .capture import capture

# One program captured, compiled and packaged at a time in a process: torch.export keeps
# module-level state while it traces and while it serializes (two threads at once fail
# with "_EXPORT_MODULE_HIERARCHY must not be None" or "Refusing to stomp on existing
# FakeTensor reducer"), and inductor's config patches are process-wide. Threads that
# compile at once take turns; loading and calling packages never takes this lock.
BUILD_LOCK = threading.RLock()


def build_variant(v: dict, strict_dims: bool, say, cache=None, training: dict | None = None,
                  at_one_apart: bool = False, at_one_covered: dict | None = None):
    """Capture and compile one variant spec (``aotpack.compile``'s dict: name, target,
    args, kwargs, dynamic, backend, options, autocast): (Captured, backend, Compiled),
    through the compile cache where one is asked for or a Context is active. The caller
    holds ``BUILD_LOCK``. ``at_one_apart``, ``at_one_covered``: see ``capture`` (the caller
    compiles the second variant ``Captured.examples_from_two`` asks for)."""
    be = get_backend(v["backend"])
    target = v["target"]
    t0 = time.perf_counter()
    say(f"[{v['name']}] capturing {getattr(target, '__qualname__', type(target).__qualname__)} with torch.export")
    captured = capture(target, v["args"], v["kwargs"], dynamic=v["dynamic"], strict_dims=strict_dims,
                       autocast=v.get("autocast"), allow_mutations=training is not None,
                       at_one_apart=at_one_apart, at_one_covered=at_one_covered)
    if v.get("nothing_differentiable"):
        captured.detach_all()
    say(f"[{v['name']}] captured {captured.name}: {len(captured.graph_module.graph.nodes)} graph nodes, "
        f"{len(captured.weights)} weights ({time.perf_counter() - t0:.1f}s); compiling with {be.name}")
    t1 = time.perf_counter()
    options = dict(v["options"] or {})
    if getattr(be, "compiles_with_inductor", False):
        # Random ops through aten's generator, as eager draws them: the same numbers under
        # the same seed, and the global generator advanced as eager advances it. Inductor's
        # own RNG (torch.compile's default) draws other numbers (aoti), or fails to lower
        # outside torch.compile's passes (inductor: "should have been handled in
        # replace_random.py"). fallback_random=False in options opts out.
        options.setdefault("fallback_random", True)
    if training is None:
        mode = None

        def build():
            return be.compile(captured, options)
    else:
        from .autograd import compile_training

        mode = f"train {_pass_id(training['joint_pass'])}".strip()

        def build():
            with _without_onednn_rnn(captured):
                return compile_training(captured, be, options, joint_pass=training["joint_pass"],
                                        say=lambda line: say(f"[{v['name']}] {line}"))[0]

    # Through the cache when one is asked for or an aotpack.cache.Context is active in
    # this context; otherwise the compile computes no key at all.
    from ..cache.context import active_context

    try:
        if cache in (None, False) and active_context() is None:
            compiled = build()
        else:
            from ..cache.cached import compile_captured

            compiled = compile_captured(captured, be, options, cache, say, build=build, mode=mode)
    except NothingToDifferentiate as e:
        # train=True, and nothing requires grad (a frozen model): eager runs the forward
        # alone, so the package holds it alone, guarded as any inference variant
        warn_caller(f"aotpack: {e.message}: variant {v['name']!r} is compiled as the forward alone "
                    "(an inference variant)", UserWarning)
        return build_variant({**v, "nothing_differentiable": True}, strict_dims, say, cache, None, at_one_apart,
                             at_one_covered)
    say(f"[{v['name']}] compiled with {be.name} in {time.perf_counter() - t1:.1f}s")
    return captured, be, compiled


def _pass_id(joint_pass) -> str:
    """A joint pass in a cache key: its qualified name and a hash of its source (a
    changed pass must not reuse a stale backward)."""
    if joint_pass is None:
        return ""
    import hashlib
    import inspect as pyinspect

    try:
        source = pyinspect.getsource(joint_pass)
    except (OSError, TypeError):
        source = repr(joint_pass)
    name = getattr(joint_pass, "__qualname__", type(joint_pass).__qualname__)
    return f"joint_pass={name}:{hashlib.sha256(source.encode()).hexdigest()[:16]}"


# The ops whose CPU kernels oneDNN replaces with fused ones when it is enabled.
_RNN_OPS = frozenset({"lstm", "gru", "rnn_tanh", "rnn_relu"})


@contextlib.contextmanager
def _without_onednn_rnn(captured):
    """oneDNN off while the joint graph of a program with an RNN op is traced: oneDNN's
    fused RNN kernels keep an opaque workspace between forward and backward that compiled
    code cannot pass on, while the decomposed LSTM/GRU cells compile like any other ops.
    (Only the ``enabled`` switch: ``mkldnn.flags()`` also sets oneDNN's TF32 flag, which
    warns on CPU builds.)

    ATen has one such switch per process, not per thread, so it is touched only for the
    programs that need it (the captured graph, torch.export's training IR, still holds
    ``aten.lstm``): while one is traced, another thread's eager RNN calls run without
    oneDNN too (the reference kernels: the same results to rounding, slower), and the
    switch is put back after. Every other program leaves it alone."""
    from .graphs import op_name

    graphs = [m.graph for m in captured.graph_module.modules() if isinstance(m, torch.fx.GraphModule)]
    if not any(n.op == "call_function" and op_name(n) in _RNN_OPS for g in graphs for n in g.nodes):
        yield
        return
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before
