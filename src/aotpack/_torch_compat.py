"""The only module that touches private torch APIs.

Each function names the private API it uses and the torch versions it was checked on.
aotpack supports torch >= 2.11 (checked: 2.11 on the GPU machine, 2.13 on CPU).

Import cost matters here: the compile side imports this module, the load path of a plain
package does not (the torch version it checks lives in ``_torch_version``); where a load
needs a wrapper (an AOTInductor runner, a custom pytree node) it imports this module
then. Heavy imports (``torch._inductor``, ``torch._dynamo``) are inside the functions
that need them.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable
from contextlib import contextmanager, redirect_stderr

import torch

from ._torch_version import MIN_TORCH, TORCH_VERSION, torch_version  # noqa: F401 - here for callers


@contextmanager
def without_fake_tensor_cache():
    """torch.export without FakeTensor's dispatch cache, for programs with empty tensors.

    On a cache hit for a view of a zero-element tensor, torch (2.11-2.13) builds the
    output on a new storage at the cached entry's offset, not as a view of the input
    (pytorch/pytorch#159151): the traced output no longer shares the input's memory, or
    sits at another offset of it. Capture reads outputs' aliasing from those values, so a
    package returned a fresh empty tensor where eager returns a view, or refused the
    program (the differential fuzzer, seed 51: ``y.flatten()`` of a 0-row ``y`` at offset
    6 traced at offset 0). The cache only saves trace time (7-14% of capturing an
    8-layer Llama), so capture turns it off only where an example input is empty
    (``has_empty_tensor``). An empty tensor made inside the program (``x[2:2]``) did not
    show the fault in a test (after the same view traced before), so outputs are not checked.

    Private: ``torch._dynamo.config.fake_tensor_cache_enabled``, read by each FakeTensorMode
    torch.export creates.
    """
    import torch._dynamo.config as dynamo_config

    if not hasattr(dynamo_config, "fake_tensor_cache_enabled"):  # (a torch without the cache or the option)
        yield
        return
    with dynamo_config.patch(fake_tensor_cache_enabled=False):
        yield


def has_empty_tensor(values) -> bool:
    """Whether any of ``values`` (a program's flat inputs: tensors and other objects) is a
    tensor with a size of 0 (a symbolic size counts as nonzero)."""
    return any(isinstance(v, torch.Tensor) and any(type(s) is int and s == 0 for s in v.shape) for v in values)


@contextmanager
def as_torch_export_traces():
    """``torch.compiler.is_compiling()`` and ``is_exporting()`` say True, as while torch.export
    traces: a program traced again (a training package's joint graph, traced from the
    program itself) takes the branches torch.export's trace took. transformers' masks
    skip a data-dependent check then (``find_packed_sequence_indices``), which would stop
    AOT autograd's trace.

    Private: ``torch.compiler._is_compiling_flag``, ``_is_exporting_flag`` (2.11-2.13; what
    ``torch._export.utils._compiling_state_context`` sets).
    """
    import torch.compiler

    saved = torch.compiler._is_compiling_flag, torch.compiler._is_exporting_flag
    torch.compiler._is_compiling_flag = torch.compiler._is_exporting_flag = True
    try:
        yield
    finally:
        torch.compiler._is_compiling_flag, torch.compiler._is_exporting_flag = saved


@contextmanager
def quiet_export_logs():
    """Hold back the graph dumps torch prints while an export fails.

    When export fails, torch (2.11-2.13) logs whole graphs from
    ``torch.fx.experimental.symbolic_shapes`` and ``print``s the partial graph to stderr
    (``torch/export/_trace.py``). We turn the failure into one CaptureError, so those
    dumps are noise: stderr is buffered and replayed only if export succeeds.
    """
    names = ["torch.fx.experimental.symbolic_shapes", "torch._export", "torch.export"]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    buffer = io.StringIO()
    try:
        with redirect_stderr(buffer), quiet_torch_deprecations():
            yield
        sys.stderr.write(buffer.getvalue())  # only when export succeeded
    finally:
        for lg, lvl in zip(loggers, levels):
            lg.setLevel(lvl)


class ProgramNotSerializable(Exception):
    """torch.export's serializer refused the program's graph (torch 2.11 refuses the
    functorch calls its trace of ``vmap`` inside a program keeps); the first line of its
    reason is the message."""


def serialize_program(ep) -> bytes:
    """torch.export's own JSON serialization of the program graph (no weights, no pickle).
    Raises ProgramNotSerializable where torch's serializer refuses it.

    Private: ``torch._export.serde.serialize.serialize`` (2.11-2.13). We keep only the
    ``exported_program`` JSON; its state_dict/constants parts are torch.save pickles, and
    the weights live in our safetensors file instead.
    """
    from torch._export.serde.serialize import SerializeError, serialize

    # serialize() also torch.saves the weights (a full copy in memory, thrown away here):
    # give it meta tensors of the same shapes instead, restored after
    def meta(v):
        if not isinstance(v, torch.Tensor):
            return v
        m = v.detach().to("meta")
        return torch.nn.Parameter(m, requires_grad=v.requires_grad) if isinstance(v, torch.nn.Parameter) else m

    state, constants = ep._state_dict, ep._constants
    try:
        ep._state_dict = {k: meta(v) for k, v in state.items()}
        ep._constants = {k: meta(v) for k, v in constants.items()}
        try:
            return serialize(ep).exported_program
        except SerializeError as e:
            raise ProgramNotSerializable(str(e).strip().splitlines()[0] if str(e).strip() else "SerializeError") from e
    finally:
        ep._state_dict, ep._constants = state, constants


def keeps_in_place_ops(ep) -> None:
    """Mark ``ep`` as torch.export's training IR, the dialect that keeps in-place ops,
    after its functional program got its in-place updates back (graphs.updates_in_place):
    the serializer checks ops against the dialect. Private: ``_verifiers`` has no setter;
    ``TrainingIRVerifier`` is the training IR's (2.11-2.13)."""
    from torch._export.verifier import TrainingIRVerifier

    ep._verifiers = [TrainingIRVerifier]


def grad_mode_regions(gm: torch.fx.GraphModule) -> list[tuple[torch.fx.Node, bool, torch.fx.GraphModule]]:
    """The regions of ``gm`` that torch.export traced under a grad mode of their own
    (``with torch.no_grad():``, ``torch.set_grad_enabled(False)`` and what follows it):
    ``(node, enabled, the region's graph)`` per region, its outputs the node's
    ``getitem`` users. Private: the ``wrap_with_set_grad_enabled`` higher-order op of
    torch.export's training IR (2.11-2.13)."""
    hop = getattr(torch.ops.higher_order, "wrap_with_set_grad_enabled", None)
    return [(n, bool(n.args[0]), getattr(gm, n.args[1].target)) for n in gm.graph.nodes
            if hop is not None and n.target is hop]


@contextmanager
def quiet_torch_deprecations():
    """torch 2.13 warns (FutureWarning) about its own use of a deprecated pytree class
    when it copies graphs; nothing a user of aotpack can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
        yield


def aoti_compile(ep, so_dir: str, options: dict | None) -> dict:
    """AOTInductor-compile ``ep`` into a shared library; return {"so": path, "metadata": {...}}.

    Private: ``torch._inductor.aoti_compile_and_package`` (2.11-2.13) writes a .pt2 zip;
    we take the wrapper .so and its metadata json out of it. Weights are graph inputs in
    our programs, so the .so holds no constants.

    AOTInductor writes a graph's files into inductor's shared cache under a lock, then
    zips them after it: a process compiling the same graph at that moment (two test
    workers, two services) rewrites them, and the zip gets an empty json. Once compiled,
    the files are there: a second try reads them whole.
    """
    import torch._inductor

    configs = {"aot_inductor.package_constants_in_so": False}
    configs.update(options or {})
    pt2 = os.path.join(so_dir, "model.pt2")
    for attempt in range(2):
        with quiet_torch_deprecations():
            torch._inductor.aoti_compile_and_package(ep, package_path=pt2, inductor_configs=configs)
        try:
            return _aoti_package_parts(pt2, so_dir)
        except ValueError:  # (json's error: a member rewritten while it was zipped)
            if attempt:
                raise RuntimeError("AOTInductor packaged an unreadable json twice: another process was compiling "
                                   "the same graph at the same time; compile again") from None


def _aoti_package_parts(pt2: str, so_dir: str) -> dict:
    """The model .so (written to ``so_dir``), its metadata and its proxy-executor ops,
    out of AOTInductor's package ``pt2``. ValueError where a json member does not parse."""
    import json
    import zipfile

    out = {}
    with zipfile.ZipFile(pt2) as z:
        names = z.namelist()
        libs = [n for n in names if n.endswith(".so")]
        lib = next((n for n in libs if n.endswith("wrapper.so")), libs[0] if len(libs) == 1 else None)
        if lib is None:  # pragma: no cover - layout change in a future torch
            raise RuntimeError(f"AOTInductor wrote no single model .so into {pt2}; members: {names}")
        for name in names:
            if name.endswith("metadata.json") and "wrapper" in name:
                out["metadata"] = json.loads(z.read(name))
            elif name.endswith("wrapper.json"):
                # ops without a C shim, which the .so calls back through torch's proxy
                # executor; the runner reads them from <model>.json beside the .so
                extern = json.loads(z.read(name))
                if extern.get("nodes"):
                    out["extern_json"] = z.read(name)
                    out["extern_ops"] = sorted({n["node"]["target"] for n in extern["nodes"]})
        # Kernel binaries outside the .so would be missing at load (and crash it).
        loose = [n for n in names if n.endswith((".cubin", ".fatbin", ".spv", ".hsaco"))]
        if loose:
            raise RuntimeError(f"AOTInductor left kernel binaries outside the .so ({loose[:3]}); "
                               "aotpack needs aot_inductor.embed_kernel_binary=True")
        out["so"] = os.path.join(so_dir, "model.so")
        with open(out["so"], "wb") as f:
            f.write(z.read(lib))
    out.setdefault("metadata", {})
    return out


def _promote_libstdcxx() -> None:
    """Put the process's libstdc++ into the global symbol scope before a model .so loads.

    Diagnosed on the H100 machine (torch 2.11+cu130, Python 3.12): inductor there builds
    model.so with /opt/gcc's g++, which links its own copy of libstdc++ into the .so.
    The process's libstdc++ (loaded by libtorch, not globally) then coexists with that
    copy, and the model's constructor crashes in ``std::regex`` (called from
    ``torch::aot_inductor::parse_device_str``) on mixed locale state. torch's own
    ``aoti_load_package`` crashes the same way. With the process's libstdc++ in the
    global scope first (what LD_PRELOAD does), the .so binds to it and runs. RTLD_NOLOAD:
    promote the copy already loaded, never load another.
    """
    import ctypes

    try:
        ctypes.CDLL("libstdc++.so.6", mode=os.RTLD_NOLOAD | os.RTLD_GLOBAL)
    except OSError:  # not loaded under that name (static torch build, macOS): nothing to promote
        pass


def aoti_runner(so_path: str, device: str):
    """Load an AOTInductor .so with torch's C++ runner, without importing torch._inductor.

    Returns ``(runner, single_threaded)``. On CUDA the runner is single-threaded where
    this torch offers it (2.11-2.13): the default container run waits on CUDA events
    between runs, which a CUDA graph capture refuses ("operation not permitted when
    stream is capturing"); the single-threaded run is torch's own variant for capture.
    It takes no lock: the caller serializes calls.

    Private: ``torch._C._aoti.AOTIModelContainerRunnerCpu/Cuda`` (2.11-2.13). This is the
    9 ms path: the Python loader (``aoti_load_package``) imports inductor and probes the CPU.
    """
    if hasattr(os, "RTLD_NOLOAD"):
        _promote_libstdcxx()
    if device == "cpu":
        return torch._C._aoti.AOTIModelContainerRunnerCpu(so_path, 1), False
    if device == "cuda":
        runner = torch._C._aoti.AOTIModelContainerRunnerCuda
        for args, single in (((so_path, 1, "cuda", "", True), True), ((so_path, 1, "cuda"), False),
                             ((so_path, 1), False)):  # newest signature first
            try:
                return runner(*args), single
            except TypeError:
                continue
    raise ValueError(f"no AOTInductor runner for device {device!r}")


@contextlib.contextmanager
def math_attention():
    """While tracing, ``F.scaled_dot_product_attention`` is aten's math composite
    (``_scaled_dot_product_attention_math``): export then records matmuls and a softmax,
    which inductor fuses, instead of one fused attention op whose kernel is chosen at
    compile time. For any model that calls ``F.scaled_dot_product_attention`` (transformers
    does, by attribute, at each call). Restored on exit; compiles take turns (BUILD_LOCK)."""
    import torch.nn.functional as F

    def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if attn_mask is not None and attn_mask.dtype == torch.bool:  # as the composite does first: True attends
            attn_mask = torch.zeros_like(attn_mask, dtype=query.dtype).masked_fill(~attn_mask, float("-inf"))
        return torch.ops.aten._scaled_dot_product_attention_math(
            query, key, value, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa)[0]

    with replaced_in_this_thread(F, "scaled_dot_product_attention", lambda fused: sdpa):
        yield


@contextlib.contextmanager
def attention_deciding_symbolic_bools():
    """While capture traces, ``F.scaled_dot_product_attention`` decides a symbolic bool it
    is given (``is_causal=q_len > 1``, as transformers' attention passes it) as eager
    does: ``bool()``, a guard on the size. SDPA's argument parser takes no ``SymBool``,
    which a trace makes where the size is not known to be 1 or more (an example of 1
    traced size-obliviously): a raw TypeError. Restored on exit; other threads keep
    torch's."""
    import torch.nn.functional as F

    def deciding(sdpa):
        def attention(*args, **kwargs):
            args = [bool(a) if isinstance(a, torch.SymBool) else a for a in args]
            return sdpa(*args, **{k: bool(v) if isinstance(v, torch.SymBool) else v for k, v in kwargs.items()})
        return attention

    with replaced_in_this_thread(F, "scaled_dot_product_attention", deciding):
        yield


@contextlib.contextmanager
def replaced_in_this_thread(module, name: str, replacement):
    """While the context lasts, ``module.name`` is ``replacement(original)`` for calls from
    this thread, and the original for every other thread (another thread's eager model
    keeps its own numbers while a compile traces). Restored on exit.

        >>> import math
        >>> with replaced_in_this_thread(math, "floor", lambda floor: lambda x: floor(x) + 1):
        ...     math.floor(2.5)
        3
    """
    import threading

    original, owner = getattr(module, name), threading.get_ident()
    ours = replacement(original)

    def dispatch(*args, **kwargs):
        return (ours if threading.get_ident() == owner else original)(*args, **kwargs)

    setattr(module, name, dispatch)
    try:
        yield
    finally:
        setattr(module, name, original)


@contextlib.contextmanager
def capture_mode(is_user_frame, properties: list | None = None, defaults: list | None = None):
    """The torch function mode capture traces the program under. It writes ``t[:, n] = v``
    with a traced int ``n`` through the view ``t[:, n]`` (``_symbolic_basic_index``), and
    records the tensors whose ``.requires_grad`` the program reads (from a frame
    ``is_user_frame`` accepts): yields the list of (tensor, "file:line");
    into ``properties``, given, (tensor, name, "file:line") for each of
    ``manifest.TENSOR_PROPERTIES`` it asks (``x.is_inference()``, ``x.grad_fn`` as
    ``is_leaf``: whether the caller's autograd made it); into ``defaults``, given, the
    "file:line" of each call that makes a tensor on the default device (``torch.ones(3)``
    with no ``device=``: what ``torch.set_default_device`` changes), from any frame, torch's
    own modules' included, as the default device reaches those calls too.

    Private: a ``TorchFunctionMode`` sees the property's getter
    (``TensorBase.requires_grad.__get__``) and those methods on the FakeTensors
    torch.export traces with (2.11-2.13), and the factory functions
    ``torch.utils._device._device_constructors`` lists, as its ``DeviceContext`` does;
    every other function passes straight through."""
    import sys

    from torch.overrides import TorchFunctionMode
    from torch.utils._device import _device_constructors

    base = torch._C.TensorBase.__dict__
    getter = base["requires_grad"]
    # the methods, and the getters of the properties (``x.grad_fn`` tells whether it is a
    # leaf: ``is_leaf``), compared by identity (dynamo traces this mode inside
    # ``torch.cond``: no dictionary of functions)
    inference, conj, neg, leaf, grad_fn = (base[n] for n in ("is_inference", "is_conj", "is_neg", "is_leaf", "grad_fn"))
    reads: list = []

    setitem = torch.Tensor.__setitem__
    constructors = frozenset(_device_constructors()) if defaults is not None else frozenset()
    tracing = torch.compiler.is_dynamo_compiling

    class Reads(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is setitem and _symbolic_basic_index(args):
                return _set_through_view(*args)
            # (not where dynamo traces this mode, inside torch.cond, whose guards cannot take a
            # set of functions: the effect recorder takes such a branch as making one)
            if not tracing() and func in constructors and (kwargs or {}).get("device") is None:
                caller = sys._getframe(1)
                defaults.append(f"{caller.f_code.co_filename}:{caller.f_lineno}")
            owner = getattr(func, "__self__", None)
            asked = None if properties is None else (
                "is_inference" if func is inference else "is_conj" if func is conj else "is_neg" if func is neg
                else "is_leaf" if owner is leaf or owner is grad_fn else None)
            if args and (owner is getter or asked is not None):
                caller = sys._getframe(1)
                if is_user_frame(caller.f_code.co_filename):
                    where = f"{caller.f_code.co_filename}:{caller.f_lineno}"
                    if asked is None:
                        reads.append((args[0], where))
                    else:
                        properties.append((args[0], asked, where))
            return func(*args, **(kwargs or {}))

    with Reads():
        yield reads


def _symbolic_basic_index(args) -> bool:
    """``t[i, ...] = v`` (``Tensor.__setitem__``'s arguments) whose index is a tuple of
    ints, slices, None and Ellipsis, one a traced ``torch.SymInt``: torch.export's
    non-strict trace rewrites such a read (``t[:, n]``) into views, not such a write,
    whose C++ indexing compiles the int in (a dynamic position specialized to the
    example's: a KV cache's ``self.k[:, pos] = kv``)."""
    if len(args) != 3 or not isinstance(args[1], tuple):
        return False
    items = args[1]
    return (any(isinstance(i, torch.SymInt) for i in items)
            and all(i is None or i is Ellipsis or isinstance(i, (int, torch.SymInt, slice)) for i in items)
            and not any(isinstance(i, bool) for i in items))


def _set_through_view(t, index, value):
    """``t[index] = value`` as eager's indexing makes it for a basic index: the view
    ``t[index]`` (which torch.export traces with the symbolic int) takes ``value``, its
    leading sizes of 1 beyond the view's rank dropped (as ``Tensor.__setitem__`` does)."""
    view = t[index]
    if not isinstance(value, torch.Tensor):
        view.fill_(value)
        return None
    while value.dim() > view.dim() and value.shape[0] == 1:
        value = value[0]
    view.copy_(value)
    return None


_PYTHON_TYPE_OF_SYMBOL = {torch.SymInt: int, torch.SymFloat: float, torch.SymBool: bool}
_SYMBOL_TYPING = {"users": 0, "lock": threading.Lock()}  # traces inside symbols_typed_as_python now


@contextlib.contextmanager
def symbols_typed_as_python(is_user_file):
    """While the context lasts, ``isinstance(n, int)`` is True for a traced ``torch.SymInt``
    ``n`` where code in a file ``is_user_file`` accepts asks (``float`` for a ``SymFloat``,
    ``bool`` for a ``SymBool``), as torch.compile's tracer answers and as eager's plain
    ints do; torch's own code keeps seeing the symbol's class.

    Why: torch.export's non-strict trace runs the program's Python on SymInts, which are
    no ints to Python, so a program branching on ``isinstance(x.shape[0], int)`` (or on an
    int argument's type: transformers' ``logits_to_keep``) took another branch traced than
    eager at every size, silently (until 2026-12-07). ``isinstance`` reads an object's
    ``__class__`` where its type does not match (what ``unittest.mock``'s specs rely on),
    so the symbols' classes get a ``__class__`` property answering by the asking code.
    ``type(n) is int`` still sees ``torch.SymInt`` (no hook reaches it).

    Cost: only where a trace has symbols (dynamic sizes, int arguments); torch itself asks
    a symbol's class tens of thousands of times in a transformers model's trace, each
    answered by a cached lookup of the asking code (about +0.1 s on an eager-backend
    compile of a 2-layer Llama with ``dynamic=True``, more with capture's profiler on).
    Private: CPython's class namespace behind ``__dict__`` (``gc.get_referents``) and
    ``PyType_Modified``, as no Python API sets a class's ``__class__`` (assigning it sets
    the metaclass). Nested and concurrent traces share one installation (the first's
    ``is_user_file``). Checked on CPython 3.11-3.12, torch 2.11-2.13."""
    import ctypes
    import gc

    def write(symbol, value):
        namespace = next(iter(gc.get_referents(symbol.__dict__)), None)
        if type(namespace) is not dict:  # (another Python: isinstance answers as torch's, capture's check stands)
            return
        if value is None:
            namespace.pop("__class__", None)
        else:
            namespace["__class__"] = value
        ctypes.pythonapi.PyType_Modified(ctypes.py_object(symbol))  # (the type's attribute cache)

    with _SYMBOL_TYPING["lock"]:
        _SYMBOL_TYPING["users"] += 1
        if _SYMBOL_TYPING["users"] == 1:
            real, frame_of = object.__dict__["__class__"].__get__, sys._getframe
            users: dict = {}  # code object -> whether it is the program's

            def typed(python):
                def answer(self):
                    # (one call a C function here: each is two more events for a profiler,
                    # capture's EffectRecorder among them, and torch asks tens of thousands
                    # of times)
                    code = frame_of(1).f_code
                    if code in users:
                        return python if users[code] else real(self)
                    user = users[code] = is_user_file(code.co_filename)
                    return python if user else real(self)
                return property(answer)

            for symbol, python in _PYTHON_TYPE_OF_SYMBOL.items():
                write(symbol, typed(python))
    try:
        yield
    finally:
        with _SYMBOL_TYPING["lock"]:
            _SYMBOL_TYPING["users"] -= 1
            if not _SYMBOL_TYPING["users"]:
                for symbol in _PYTHON_TYPE_OF_SYMBOL:
                    write(symbol, None)


def op_available(name: str) -> bool:
    """Whether operator ``namespace::name`` is registered in this process (a custom op
    needs its library imported first)."""
    namespace, _, op = name.partition("::")
    try:
        getattr(getattr(torch.ops, namespace), op.split(".")[0])
    except (AttributeError, RuntimeError):
        return False
    return True


def forward_ad_level():
    """``(module, attribute)``: the attribute reads >= 0 while a forward-mode AD level is
    open (``torch.autograd.forward_ad.dual_level``), where tensors may carry tangents
    that compiled code would drop. Read in a guard's generated check (one attribute
    load a call). Private: ``torch.autograd.forward_ad._current_level`` (2.11-2.13)."""
    import torch.autograd.forward_ad as forward_ad

    return forward_ad, "_current_level"


def functorch_level():
    """A callable returning the innermost torch.func transform level active (vmap, grad,
    jvp), or None outside every transform: one C call (the full check skips its walk of the
    inputs outside one).
    Private: ``torch._C._functorch.maybe_current_level`` (2.11-2.13)."""
    return torch._C._functorch.maybe_current_level


def functorch_transforms() -> list[str]:
    """The torch.func transforms active now, innermost first: ``["vmap"]``, ``["grad",
    "vmap"]`` (lower case), or []. Private: ``torch._functorch.pyfunctorch.
    retrieve_all_functorch_interpreters`` and ``TransformType`` (2.11-2.13)."""
    from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters

    return [i.key().name.lower() for i in retrieve_all_functorch_interpreters()]


def outside_transforms():
    """A context in which no torch.func transform is active: reading a package's program
    (torch.export's deserializer makes fake tensors) inside a transform's call gave torch
    2.11's "Expected FakeTensor, got Tensor". Private: ``torch._C._DisableFuncTorch``
    (2.11-2.13)."""
    return torch._C._DisableFuncTorch()


def functorch_wrapped(t: torch.Tensor) -> bool:
    """Whether ``t`` is a torch.func transform's wrapper (vmap, grad, jvp): no storage of
    its own. Private: ``torch._C._functorch.is_functorch_wrapped_tensor`` (2.11-2.13)."""
    return bool(torch._C._functorch.is_functorch_wrapped_tensor(t))


def process_group_by_name(name: str):
    """The process group the c10d functional ops know as ``name`` (a graph's
    ``group_name`` argument), or None where this process has none by that name."""
    from torch.distributed.distributed_c10d import _resolve_process_group

    try:
        return _resolve_process_group(name)
    except (RuntimeError, ValueError, KeyError):
        return None


def is_torch_internal_frame(filename: str) -> bool:
    """True for frames inside torch or aotpack, which a user's error should skip."""
    torch_dir = os.path.dirname(torch.__file__)
    here = os.path.dirname(os.path.abspath(__file__))
    return filename.startswith(torch_dir) or filename.startswith(here) or filename.startswith("<")


def capture_exception_kinds() -> tuple[type, ...]:
    """Exception types that mean "this program cannot be exported" (not a bug in aotpack).

    Private: ``torch._dynamo.exc.{UserError, Unsupported, TorchRuntimeError}`` and
    ``GuardOnDataDependentSymNode`` (2.11-2.13). Imported lazily: capture is not on the
    load path.
    """
    kinds: list[type] = []
    try:
        from torch._dynamo import exc

        kinds += [exc.UserError, exc.Unsupported, exc.TorchRuntimeError]
    except ImportError:  # pragma: no cover
        pass
    try:
        from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

        kinds.append(GuardOnDataDependentSymNode)
    except ImportError:  # pragma: no cover
        pass
    return tuple(kinds)


def deserialize_program(blob: bytes, state_dict: dict, constants: dict):
    """Rebuild an ExportedProgram from ``serialize_program``'s JSON and our weights.

    Private: ``torch._export.serde.serialize._bytes_to_dataclass`` and
    ``ExportedProgramDeserializer`` (2.11-2.13). Weights are passed as dicts of tensors,
    so no pickle is read (``deserialize`` would torch.load them from bytes).
    """
    from torch._export.serde import schema
    from torch._export.serde.serialize import ExportedProgramDeserializer, GraphModuleDeserializer, _bytes_to_dataclass

    program = _bytes_to_dataclass(schema.ExportedProgram, blob)
    with quiet_export_logs(), _DESERIALIZE_LOCK:
        # a higher-order op that returns nothing (a ``torch.no_grad()`` region that only
        # updates a tensor in place) is written with no outputs, and read back without
        # the ``val`` the verifier then demands (torch 2.11-2.13): it gets the empty tuple
        # it had when exported
        original = GraphModuleDeserializer.deserialize_outputs

        def deserialize_outputs(self, serialized_node, fx_node):
            original(self, serialized_node, fx_node)
            if not serialized_node.outputs and "torch.ops.higher_order" in serialized_node.target:
                fx_node.meta.setdefault("val", ())

        GraphModuleDeserializer.deserialize_outputs = deserialize_outputs
        try:
            return ExportedProgramDeserializer().deserialize(program, state_dict, constants, None)
        finally:
            GraphModuleDeserializer.deserialize_outputs = original


_DESERIALIZE_LOCK = threading.Lock()


def inductor_compile(gm, example_inputs: list) -> dict:
    """Compile a functional, decomposed aten graph with inductor (the torch.compile
    backend, not AOT); return {"source": the output code, "constants": {name: tensor}}.

    Private: ``torch._inductor.compile_fx.compile_fx_inner`` and ``CompiledFxGraph``'s
    ``source_code``/``constants`` (2.11-2.13).
    """
    from torch._inductor.compile_fx import compile_fx_inner

    with torch.no_grad():
        compiled = compile_fx_inner(gm, list(example_inputs))
    return {"source": compiled.source_code, "constants": dict(getattr(compiled, "constants", None) or {})}


def inductor_load(source: str, constants: dict):
    """Import inductor output code the way torch.compile's FX graph cache does; return
    its ``call``. Kernels are compiled (or taken from inductor's cache) on import.

    Private: ``torch._inductor.codecache.PyCodeCache.load_by_key_path`` (2.11-2.13).
    """
    import hashlib

    from torch._inductor.codecache import PyCodeCache, get_path, write_atomic

    key = "aotpack" + hashlib.sha256(source.encode()).hexdigest()[:40]
    path = get_path(key, "py")[2]
    if not os.path.exists(path):
        write_atomic(path, source, make_dirs=True)
    module = PyCodeCache.load_by_key_path(key, path, None, constants)
    return module.call


def inductor_decompositions() -> dict:
    """inductor's decomposition table. Private: ``torch._inductor.decomposition
    .select_decomp_table`` (2.11-2.13)."""
    from torch._inductor.decomposition import select_decomp_table

    return select_decomp_table()


def dynamo_backend(name: str):
    """A registered torch.compile backend by name (``"inductor"``, ``"aot_eager"``).

    Private: ``torch._dynamo.backends.registry.lookup_backend`` (2.11-2.13). Used by the
    minifier to compile candidate graphs directly, without dynamo tracing each one.
    """
    from torch._dynamo.backends.registry import lookup_backend

    return lookup_backend(name)


def plain_graph_module(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """A copy of ``gm`` whose forward takes every placeholder positionally (no pytree
    flattening in the generated code), so any caller can pass the flat argument list.

    Private: ``torch.fx.Graph._codegen`` (2.11-2.13); ``fx.graph.CodeGen`` is the plain
    code generator that export's pytree codegen replaces.
    """
    gm = torch.fx.GraphModule(gm, gm.graph)
    gm.graph._codegen = torch.fx.graph.CodeGen()
    gm.recompile()
    return gm


def inductor_cache_dir() -> str:
    """The folder inductor caches compiled code in ($TORCHINDUCTOR_CACHE_DIR, or torch's
    default under the temp folder). Private: ``torch._inductor.runtime.cache_dir_utils``."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    return cache_dir()


def inductor_config_hash() -> str:
    """A hex hash of inductor's global config (what FX graph caching keys on), with the
    values that are paths on this machine left out: ``xpu.cutlass_dir`` defaults to the
    working directory and ``cuda.cutlass_dir`` to where torch is installed, so hashing
    them would make the same compile miss from another folder or machine (issue "fleet").
    ``aot_inductor.metadata`` is left out too: AOTInductor's compile writes its output
    metadata (device key, CPU ISA) into that global dict in place, so after a process's
    first aoti compile the hash changed (once something marked the config dirty) and a
    second process or a Ray worker missed the first one's entries.

    Private: ``torch._inductor.config.get_hash``/``get_config_copy``/``patch``
    (ConfigModule, 2.11-2.13).
    """
    import torch._inductor.config as config

    local = {k: "<machine-local>" for k in machine_local_config_keys()}
    local["aot_inductor.metadata"] = {}  # an output of compiles, not an input (see above)
    with config.patch(local):
        return config.get_hash().hex()


# How inductor schedules its own work (compile_threads defaults to the CPU count): the
# same code comes out whatever they are, and a fleet of different machine sizes, or a
# compile farm worker given fewer threads, must share keys.
_SCHEDULING_CONFIG_KEYS = ("compile_threads", "worker_start_method", "quiesce_async_compile_pool",
                           "compile_worker_wait_timeout", "worker_suppress_logging")


# What inductor found out about this machine and noted in its config: whether the CPU's
# vector ISA works is None until a compile probes it, True after, so a process that had
# compiled (a compile farm's Ray worker, or its caller after another import order) keyed
# the same program apart from one that had not.
_PROBED_CONFIG_KEYS = ("cpp.vec_isa_ok",)


def machine_local_config_keys() -> list[str]:
    """inductor config keys that describe this machine, not the code (left out of keys):
    values that are filesystem paths here, how inductor schedules its compile work, and
    what it probed of the machine."""
    import torch._inductor.config as config

    items = config.get_config_copy()
    return sorted(k for k, v in items.items()
                  if (isinstance(v, str) and (os.path.isabs(v) or k.endswith(("_dir", "_path"))))
                  or k in _SCHEDULING_CONFIG_KEYS or k in _PROBED_CONFIG_KEYS)


def portable_inductor_config() -> dict:
    """This process's inductor config as plain values another process can apply
    (``inductor_config_applied``): what changes the compiled code, without the values
    that describe this machine (``machine_local_config_keys``) or are objects (custom
    passes: a worker cannot take those).

    Private: ``torch._inductor.config.get_config_copy`` (ConfigModule, 2.11-2.13)."""
    import json

    import torch._inductor.config as config

    skip = {*machine_local_config_keys(), "aot_inductor.metadata"}
    out = {}
    for k, v in config.get_config_copy().items():
        if k in skip:
            continue
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            continue
        out[k] = v
    return out


@contextlib.contextmanager
def inductor_config_applied(values: dict):
    """inductor's config set to ``values`` (from ``portable_inductor_config``) inside;
    keys this torch does not have are left out.

    Private: ``torch._inductor.config.patch`` (2.11-2.13)."""
    import torch._inductor.config as config

    known = config.get_config_copy()
    with config.patch({k: v for k, v in values.items() if k in known and known[k] != v}):
        yield


@contextlib.contextmanager
def inductor_compile_threads(n: int):
    """inductor compiles with ``n`` threads (1: in this process, no worker pool) inside.

    Private: ``torch._inductor.config.compile_threads`` (2.11-2.13)."""
    import torch._inductor.config as config

    with config.patch({"compile_threads": n}):
        yield


def standalone_compile(gm, example_inputs: list, options: dict | None) -> bytes:
    """Compile a dynamo graph with inductor the way torch.compile does (AOT autograd
    included, so it trains) and return the serialized artifact (output code + the
    AOT autograd entry, no pickle of user objects).

    Public since 2.8: ``torch._inductor.standalone_compile`` and ``CompiledArtifact``
    (``save(format="binary")`` takes a path only, hence the temporary file).
    A graph is compiled in dynamo's shape environment (``from_tracing_context``), as a
    backend must, so its guards reach dynamo; except a static graph compiled without
    grad, which gets a shape environment of its own (``from_example_inputs``: nothing
    to guard). In dynamo's, a transformers Llama's inference compile left a guard on a
    symbol dynamo has no source for, and torch.compile failed after the backend
    returned (``IndexError`` in ``produce_guards``; torch 2.13, tests/cache/test_cache_fleet.py).
    With grad on, ``from_example_inputs`` saves no AOT-autograd artifact in torch 2.11
    ("CompiledArtifact.save failed ... no aot_autograd artifacts"), so training graphs
    keep dynamo's environment.
    """
    import tempfile

    from torch._inductor import standalone_compile as compile_

    symbolic = any(isinstance(x, torch.SymInt) or (isinstance(x, torch.Tensor) and any(
        isinstance(s, torch.SymInt) for s in (*x.shape, *x.stride()))) for x in example_inputs)
    own = not symbolic and not torch.is_grad_enabled()
    artifact = compile_(gm, list(example_inputs), options=options or {},
                        dynamic_shapes="from_example_inputs" if own else "from_tracing_context")
    with tempfile.TemporaryDirectory(prefix="aotpack-sc-") as d:
        path = os.path.join(d, "artifact.bin")
        artifact.save(path=path, format="binary")
        with open(path, "rb") as f:
            return f.read()


# inductor's C++ kernel libraries: <cache>/<2 chars>/<key>[.main].so, the key a hash of
# the source and the compile command (2.11-2.13).
_KERNEL_NAME = r"[a-z0-9]{2}/[a-z0-9]{20,80}(\.main)?\.so"  # (compiled on first use, not at import)


@contextlib.contextmanager
def cpp_kernels_built():
    """Inside: the C++ kernel libraries inductor builds, as ``{name under its cache
    folder: bytes}`` (filled on exit). A CPU graph's output code compiles them when it is
    loaded, so an artifact without them costs the loading machine about as long as
    compiling. (Found as new files in the cache folder: inductor's worker processes
    build them, so this process records none of them.)

    Private: ``torch._inductor.runtime.cache_dir_utils.cache_dir`` and the layout above.
    """
    import glob

    from torch._inductor.runtime.cache_dir_utils import cache_dir

    root = cache_dir()
    pattern = os.path.join(root, "*", "*.so")
    before = set(glob.glob(pattern))
    built: dict[str, bytes] = {}
    yield built
    for path in sorted(set(glob.glob(pattern)) - before):
        name = os.path.relpath(path, root)
        if re.fullmatch(_KERNEL_NAME, name):
            with open(path, "rb") as f:
                built[name] = f.read()


def install_cpp_kernels(kernels: dict[str, bytes]) -> None:
    """Put kernel libraries from ``cpp_kernels_built`` where inductor looks before it
    builds one. A machine with another compiler setup looks for other names and builds
    its own; names that are not kernel libraries are ignored (an entry is data).

    Private: ``torch._inductor.codecache.write_atomic`` (inductor's own atomic write,
    safe against its other writers) and ``cache_dir`` (2.11-2.13).
    """
    from torch._inductor.codecache import write_atomic
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    root = cache_dir()
    for name, data in kernels.items():
        target = os.path.join(root, name)
        if re.fullmatch(_KERNEL_NAME, name) and not os.path.exists(target):
            write_atomic(target, data, make_dirs=True)


def standalone_load(blob: bytes):
    """Load bytes from ``standalone_compile`` into a callable (no compiling: the output
    code is imported; its kernels come from the artifact)."""
    import tempfile

    from torch._inductor.standalone_compile import CompiledArtifact

    with tempfile.TemporaryDirectory(prefix="aotpack-sc-") as d:
        path = os.path.join(d, "artifact.bin")
        with open(path, "wb") as f:
            f.write(blob)
        return CompiledArtifact.load(path=path, format="binary")


def symint_hint(value) -> int:
    """The concrete value a SymInt had when traced, without adding a guard (``int(s)``
    would specialize the graph being compiled). Private: ``SymNode.hint`` (2.11-2.13)."""
    if isinstance(value, torch.SymInt):
        hint = sym_hint(value)
        if hint is not None:
            return hint
        from torch.fx.experimental.symbolic_shapes import size_hint

        return int(size_hint(value))
    return int(value)


def sym_hint(value) -> int | float | bool | None:
    """The concrete value a SymInt, SymFloat or SymBool had when traced, in its Python
    type, without adding a guard; None where the trace holds none. Private:
    ``SymNode.hint`` (2.11-2.13)."""
    hint = getattr(getattr(value, "node", None), "hint", None)
    if hint is None:
        return None
    return bool(hint) if isinstance(value, torch.SymBool) else float(hint) if isinstance(value, torch.SymFloat) \
        else int(hint)


def config_changes() -> dict:
    """Non-default settings of inductor's and dynamo's configs, by full dotted name.

    Private: ``ConfigModule._get_dict(skip_default=True)`` (2.11-2.13).
    """
    import torch._dynamo.config as dynamo_config
    import torch._inductor.config as inductor_config

    out = {}
    for prefix, module in (("torch._inductor.config", inductor_config), ("torch._dynamo.config", dynamo_config)):
        for key, value in module._get_dict(skip_default=True).items():
            out[f"{prefix}.{key}"] = value
    return out


def trace_logger():
    """torch's structured-trace logger (what TORCH_TRACE writes; tlparse reads). Each
    record carries ``metadata`` (event name -> fields, compile ids) and ``payload``.
    torch only builds events while the logger has a handler. Private name
    ``torch.__trace`` (2.11-2.13)."""
    import logging

    return logging.getLogger("torch.__trace")


def current_compile_id() -> str | None:
    """The id of the compile in progress, as torch's logs write it: ``frame/compile``
    (``frame/compile_attempt`` on a restart). Private: ``torch._guards.CompileContext``."""
    from torch._guards import CompileContext

    trace_id = CompileContext.current_trace_id()
    if trace_id is None:
        return None
    cid = trace_id.compile_id
    base = f"{cid.frame_id}/{cid.frame_compile_id}"
    return base + (f"_{trace_id.attempt}" if trace_id.attempt else "")


def install_compiler_hook(hook) -> Callable[[], None]:
    """Call ``hook(gm, example_inputs, compiler_fn, call)`` for every graph dynamo hands
    to a backend (any backend, whatever torch.compile was given); ``call()`` runs the
    backend. Returns a function that removes the hook.

    Private: ``torch._dynamo.output_graph.OutputGraph.call_user_compiler`` (2.11-2.13).
    """
    from torch._dynamo.output_graph import OutputGraph

    original = OutputGraph.call_user_compiler

    def call_user_compiler(self, gm, example_inputs):
        return hook(gm, example_inputs, self.compiler_fn, lambda: original(self, gm, example_inputs))

    OutputGraph.call_user_compiler = call_user_compiler

    def remove():
        OutputGraph.call_user_compiler = original

    return remove


def interned_path(idx) -> str | None:
    """The file name torch's structured trace interned as ``idx`` (its events name files
    by number). Private: ``torch._logging.structured.INTERN_TABLE`` (2.11-2.13)."""
    from torch._logging import structured

    for path, i in structured.INTERN_TABLE.items():
        if i == idx:
            return path
    return None


def triton_kernel_setup(gm: torch.fx.GraphModule) -> str:
    """Source that re-registers the user-defined Triton kernels a graph calls, under
    the same side-table indices, so its code runs in a fresh process; "" if none.

    Graphs hold user kernels as ``triton_kernel_wrapper_*(kernel_idx=N,
    constant_args_idx=M, ...)``: indices into a process-local table. The script gets
    each kernel's source with its decorators (``@triton.jit``, and ``@triton.autotune``
    when present, so they must be defined in a file) and the constant arguments.

    Private: ``torch._higher_order_ops.triton_kernel_wrap.kernel_side_table`` and its
    ``id_to_kernel``/``constant_args`` dicts (2.11-2.13).
    """
    import inspect
    import textwrap

    targets = [n for n in gm.graph.nodes if n.op == "call_function" and "triton_kernel_wrapper" in str(n.target)]
    if not targets:
        return ""
    from torch._higher_order_ops.triton_kernel_wrap import kernel_side_table

    lines = ["# user-defined Triton kernels, re-registered under the indices the graph uses",
             "import triton", "import triton.language as tl",
             "from torch._higher_order_ops.triton_kernel_wrap import kernel_side_table"]
    seen_k, seen_c = set(), set()
    for node in targets:
        k, c = node.kwargs["kernel_idx"], node.kwargs["constant_args_idx"]
        if k not in seen_k:
            seen_k.add(k)
            kernel = kernel_side_table.get_kernel(k)
            fn = kernel
            while not inspect.isfunction(fn) and hasattr(fn, "fn"):  # Autotuner/Heuristics -> JITFunction -> fn
                fn = fn.fn
            source = textwrap.dedent(inspect.getsource(fn))
            lines += ["", source.rstrip(), f"kernel_side_table.id_to_kernel[{k}] = {fn.__name__}"]
        if c not in seen_c:
            seen_c.add(c)
            args = kernel_side_table.get_constant_args(c)
            lines.append(f"kernel_side_table.constant_args[{c}] = {args!r}")
    return "\n".join(lines) + "\n"


def pytree_node(cls: type):
    """(flatten, unflatten, to_json_context, from_json_context) for a type registered
    as a pytree node in this process (transformers' ModelOutput, dataclasses of
    ``torch.export.register_dataclass``), or None.

    Private: ``torch.utils._pytree.SUPPORTED_NODES`` / ``SUPPORTED_SERIALIZED_TYPES``
    (2.11-2.13): the registry torch.export itself reads.
    """
    from torch.utils import _pytree

    node = _pytree.SUPPORTED_NODES.get(cls)
    if node is None:
        return None
    ser = _pytree.SUPPORTED_SERIALIZED_TYPES.get(cls)
    to_json = getattr(ser, "to_dumpable_context", None) or (lambda context: context)
    from_json = getattr(ser, "from_dumpable_context", None) or (lambda context: context)
    return node.flatten_fn, node.unflatten_fn, to_json, from_json


def pytree_types() -> list[type]:
    """Every type registered as a pytree node in this process (see pytree_node)."""
    from torch.utils import _pytree

    return list(_pytree.SUPPORTED_NODES)


def sym_expr(size):
    """The sympy expression of a SymInt (``s0``, ``2*s0``).

    Private: ``SymInt.node.expr`` (2.11-2.13), the symbolic-shapes node behind a SymInt.
    """
    return size.node.expr


def sym_lower_bound(value) -> int | None:
    """The least value an int or ``torch.SymInt`` can take: the expression bounded over
    its symbols' ranges, each from 0 at most (``s0 - 8`` with ``s0`` in 2..16 is -8: torch
    assumes sizes of 2 and up where a package takes 0 and 1 too), None where it has none.
    Private: ``SymNode.shape_env.var_to_range`` and ``torch.utils._sympy.value_ranges``
    (2.11-2.13)."""
    from torch.utils._sympy.value_ranges import ValueRanges, bound_sympy

    if not isinstance(value, torch.SymInt):
        return int(value)
    node = value.node
    known = node.shape_env.var_to_range
    ranges = {s: ValueRanges(min(known[s].lower, 0), known[s].upper) for s in node.expr.free_symbols if s in known}
    for bound in (lambda: bound_sympy(node.expr, ranges), lambda: node.shape_env.bound_sympy(node.expr)):
        try:  # (torch's own bound where sizes from 0 leave none: ``8 // s``)
            return int(bound().lower)
        except (TypeError, ValueError, AttributeError, OverflowError, ZeroDivisionError):  # (unbounded below: -oo)
            continue
    return None


def is_fake(t: torch.Tensor) -> bool:
    """Whether ``t`` is a FakeTensor of a trace (no data), or wraps one.

    Private: ``torch._subclasses.fake_tensor.is_fake`` (2.11-2.13)."""
    from torch._subclasses.fake_tensor import is_fake as fake

    return fake(t)


def module_tensor_slots(module: torch.nn.Module) -> list[tuple[str, dict, str]]:
    """Where ``module`` and its submodules hold their parameters and buffers: ``(path,
    store, name)`` each, ``path`` the tensor's dotted name in ``module``, ``store`` a dict
    whose item ``name`` is the tensor (item assignment swaps in any tensor, a Parameter
    or not, for as long as a trace needs it).

    Private: ``nn.Module._parameters`` and ``_buffers`` (2.11-2.13).
    """
    return [(f"{prefix}.{name}".lstrip("."), store, name) for prefix, sub in module.named_modules()
            for store in (sub._parameters, sub._buffers) for name, t in store.items() if isinstance(t, torch.Tensor)]


def symbolic_like(gm: torch.fx.GraphModule, primals: list, extra: list = ()) -> list:
    """Fake tensors with the symbolic sizes of ``gm``'s placeholders (torch.export's,
    where the Dims are symbols ``s0, s1``), in the fake mode and shape environment that
    made them, each a fresh leaf with the requires_grad of its primal: what AOT autograd
    traces a joint graph on so its forward and backward keep the Dims. ``extra``: more
    leaves after them, each ``(k, t)``: of placeholder ``k``'s sizes where ``k`` is not
    None, else of tensor ``t``'s static ones; dtype, device and requires_grad ``t``'s.

    Private: ``FakeTensor.fake_mode`` (2.11-2.13).
    """
    vals = [n.meta["val"] for n in gm.graph.nodes if n.op == "placeholder"]
    mode = next(v.fake_mode for v in vals if isinstance(v, torch.Tensor))
    with mode:
        fakes = [torch.empty_strided(v.shape, v.stride(), dtype=v.dtype, device=v.device) for v in vals]
        shapes = [(vals[k].shape, vals[k].stride()) if k is not None else (t.shape, t.stride()) for k, t in extra]
        fakes += [torch.empty_strided(size, stride, dtype=t.dtype, device=t.device)
                  for (size, stride), (_, t) in zip(shapes, extra)]
    for f, p in zip(fakes, [*primals, *(t for _, t in extra)]):
        f.requires_grad_(p.requires_grad)
    return fakes


@contextmanager
def kernel_time_autotuning(repeats: int = 20):
    """Inductor's autotuning (coordinate descent's too) timing each config on CUDA by the
    device time of the kernels it launches (torch.profiler), each run after the L2 cache
    is flushed, as inductor's own benchmarker flushes it. Inductor's own times each launch
    between CUDA events, which adds the launch's CPU cost (12-18 us on an H200 host) to
    kernels of 10-40 us: the differences between configs shrink into noise, and the
    picks of two compiles differ by up to 1.6x per kernel (docs/benchmarks.md).

    Private: ``torch._inductor.runtime.benchmarking.benchmarker`` (2.11-2.13), whose
    ``benchmark_gpu`` the tuner calls; replaced on the instance while the context lasts.
    """
    from torch._inductor.runtime import benchmarking
    from torch.profiler import ProfilerActivity, profile

    bench = benchmarking.benchmarker
    flush = torch.empty(torch.cuda.get_device_properties(torch.cuda.current_device()).L2_cache_size // 4,
                        dtype=torch.int, device="cuda")

    def kernel_ms(_callable, **kwargs):
        _callable()  # (a failing config raises here, as in inductor's own)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(repeats):
                flush.zero_()
                _callable()
            torch.cuda.synchronize()
        total_us = sum(e.device_time for e in prof.events()
                       if e.device_type.name == "CUDA" and "FillFunctor" not in e.name)  # (the flushes' zero_)
        return total_us / repeats / 1e3

    bench.benchmark_gpu = kernel_ms
    try:
        yield
    finally:
        del bench.benchmark_gpu  # the class's method again


def size_oblivious():
    """A context manager in which torch.export reasons about sizes without assuming a
    size is not 0 or 1 (no guard ``s0 - 1 != 1`` where a Dim allows 2): a graph traced for
    every size a Dim allows exports again without specializing.

    Private: ``torch.fx.experimental._config.backed_size_oblivious`` (2.11-2.13).
    """
    import torch.fx.experimental._config as config

    return config.patch(backed_size_oblivious=True)


def fake_empty(like, size: tuple, dtype: torch.dtype, device) -> torch.Tensor:
    """An empty fake tensor of ``size`` (SymInts of ``like``'s shape environment), in the
    fake mode of ``like`` (a fake tensor): a graph node's ``meta["val"]``.

    Private: ``FakeTensor.fake_mode`` (2.11-2.13).
    """
    with like.fake_mode:
        return torch.empty(size, dtype=dtype, device=device)


def aot_export_joint(fn, primals: list):
    """AOT autograd's joint forward + backward graph of ``fn`` on ``primals`` (real
    tensors, or ``symbolic_like``'s fakes).

    Private: ``torch._functorch.aot_autograd.aot_export_joint_simple`` (2.11-2.13).
    """
    from torch._functorch.aot_autograd import aot_export_joint_simple
    from torch._subclasses.fake_tensor import DynamicOutputShapeException, FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    def on_fakes():
        mode = FakeTensorMode(shape_env=ShapeEnv(), allow_non_fake_inputs=True)
        fake = [mode.from_tensor(p, static_shapes=True) for p in primals]
        for f, p in zip(fake, primals):
            f.requires_grad_(p.requires_grad)
        return aot_export_joint_simple(fn, fake, trace_joint=True)

    try:
        return aot_export_joint_simple(fn, primals, trace_joint=True)
    except DynamicOutputShapeException:
        # An op whose output size depends on data (nonzero, unique, masked indexing):
        # trace on fake tensors of a mode with a shape environment, as torch.compile
        # does, so that size becomes an unbacked symbol (the inputs' sizes stay static).
        return on_fakes()
    except AssertionError as e:
        # A program differentiating twice through ``abs`` (a gradient penalty of an L1
        # loss, ``autograd.grad(..., create_graph=True)`` inside): autograd's engine makes
        # the zero derivative of ``sgn`` a real tensor, outside the trace's fake mode, and
        # the trace refuses it. Traced where real tensors are taken, those zeros are a
        # constant of the graph (the shapes are static here); any other real tensor could
        # be the example's data, so the joint is refused as before
        if "convert all Tensors to FakeTensors" not in str(e) or any(is_fake(p) for p in primals):
            raise
        joint = on_fakes()
        constants = [n for n in joint.graph.nodes if n.op == "get_attr"]
        if not all(isinstance(c := getattr(joint, n.target), torch.Tensor) and not is_fake(c) and not c.any()
                   for n in constants):
            raise
        for node in constants:  # (each a zeros op: a graph stores no tensor of its own)
            zeros = getattr(joint, node.target)
            with joint.graph.inserting_before(node):
                made = joint.graph.call_function(torch.ops.aten.zeros.default, (list(zeros.shape),),
                                                 {"dtype": zeros.dtype, "device": zeros.device})
            made.meta.update(node.meta)
            node.replace_all_uses_with(made)
            joint.graph.erase_node(node)
            delattr(joint, node.target)
        joint.recompile()
        return joint


def partition_joint(joint, inputs: list, num_fwd_outputs: int):
    """(forward, backward) cut from a joint graph by torch.compile's min-cut partitioner.

    Private: ``torch._functorch.partitioners.min_cut_rematerialization_partition`` (2.11-2.13).
    """
    from torch._functorch.partitioners import min_cut_rematerialization_partition

    return min_cut_rematerialization_partition(joint, inputs, num_fwd_outputs=num_fwd_outputs)


def inductor_config_patch(options: dict):
    """A context manager setting inductor config values (``{"max_autotune": True}``).

    Private: ``torch._inductor.config.patch`` (2.11-2.13).
    """
    import torch._inductor.config as config

    return config.patch(options)


def fake_process_group_source(rank: int, world_size: int) -> str:
    """Python source that starts torch's fake process group (collectives run locally, no
    communication) as ``rank`` of ``world_size``, for a generated script to run a graph
    that calls collectives on one machine.

    Private: ``torch.testing._internal.distributed.fake_pg`` registers the ``fake``
    backend (2.11-2.13; no public way to get it).
    """
    return ("import torch.distributed as dist\n"
            "import torch.distributed.tensor\n"
            "from torch.testing._internal.distributed.fake_pg import FakeStore\n"
            "if not dist.is_initialized():\n"
            f"    dist.init_process_group('fake', store=FakeStore(), rank={rank}, world_size={world_size})\n")


def global_state_readers() -> dict:
    """C functions that read global state a compiled program depends on, for the guards'
    generated check (one call each; their public wrappers cost 2-3x as much). Private:
    ``torch._C._is_any_autocast_enabled``, ``_is_torch_function_mode_enabled``,
    ``_get_deterministic_algorithms``, ``_get_float32_matmul_precision``,
    ``_len_torch_dispatch_stack`` (2.11-2.13)."""
    c = torch._C
    return {"any_autocast": c._is_any_autocast_enabled, "function_mode": c._is_torch_function_mode_enabled,
            "deterministic": c._get_deterministic_algorithms,
            "matmul_precision": c._get_float32_matmul_precision, "dispatch_modes": c._len_torch_dispatch_stack}


def dispatch_modes() -> list:
    """The torch dispatch modes active now, innermost last. Private:
    ``torch.utils._python_dispatch._get_current_dispatch_mode_stack`` (2.11-2.13)."""
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    return list(_get_current_dispatch_mode_stack())


def function_modes() -> list:
    """The torch function modes active now, innermost last. Private:
    ``torch.overrides._get_current_function_mode_stack`` (2.11-2.13)."""
    from torch.overrides import _get_current_function_mode_stack

    return list(_get_current_function_mode_stack())


def default_device_mode_type() -> type:
    """The torch function mode ``torch.set_default_device`` and ``with torch.device(d):``
    push, which only fills in the ``device`` of factory calls that name none. Private:
    ``torch.utils._device.DeviceContext`` (2.11-2.13)."""
    from torch.utils._device import DeviceContext

    return DeviceContext


# torch.backends' functions a program calls to ask what the machine or the process has,
# by their public names under torch.backends (their flags, ``cudnn.enabled``, are found by
# their type: ``BackendSettings``)
_BACKEND_PROBES = ("cudnn.is_available", "cudnn.version", "mps.is_available", "mps.is_built", "mkldnn.is_available",
                   "mkl.is_available", "openmp.is_available", "cuda.is_built", "cpu.get_cpu_capability",
                   "cuda.flash_sdp_enabled", "cuda.mem_efficient_sdp_enabled", "cuda.math_sdp_enabled",
                   "cuda.cudnn_sdp_enabled", "mha.get_fastpath_enabled", "cusparselt.is_available",
                   "kleidiai.is_available", "nnpack.is_available")
# ``torch.backends.cuda.matmul``'s flags (its class answers them in ``__getattr__``)
_CUBLAS_FLAGS = ("allow_tf32", "allow_fp16_reduced_precision_reduction", "allow_bf16_reduced_precision_reduction",
                 "allow_fp16_accumulation", "fp32_precision")


class BackendSettings:
    """The settings of ``torch.backends`` a program may read, each by its public name
    (``torch.backends.cudnn.enabled``, ``torch.backends.cuda.matmul.allow_tf32``,
    ``torch.backends.mps.is_available()``), with a reader; and how the effect recorder
    tells, from a frame of torch's code, which one the program reads or sets.

    Private: ``torch.backends.ContextProp`` (the flags of a ``PropModule``, read in its
    ``__get__``), ``_FP32Precision`` (``cudnn.conv.fp32_precision``, in its
    ``__getattr__``) and ``torch.backends.cuda.cuBLASModule`` (``cuda.matmul``'s flags, in
    its ``__getattr__``) (2.11-2.13). Only names found here are ever read: a package that
    names another is refused, never resolved.

    >>> settings = backend_settings()
    >>> settings.readers["torch.backends.cudnn.enabled"]() in (True, False)
    True
    """

    def __init__(self):
        import torch.backends as backends
        from torch.backends import ContextProp, PropModule, _FP32Precision
        from torch.backends.cuda import cuBLASModule

        self.readers: dict[str, Callable[[], object]] = {}
        self._props: dict[int, str] = {}  # id(ContextProp) -> public name
        self._precisions: dict[int, str] = {}  # id(_FP32Precision) -> its public name, less the flag
        self._probes: dict = {}  # a probe's code (a C callable for a cached one, mps.is_available) -> name
        for module in [backends] + [getattr(backends, n) for n in dir(backends) if not n.startswith("_")]:
            if not isinstance(module, PropModule):
                continue
            for attr, value in vars(type(module)).items():
                name = f"{module.__name__}.{attr}"
                if isinstance(value, ContextProp):
                    self._props[id(value)] = name
                    self.readers[name] = value.getter
                elif isinstance(value, _FP32Precision):
                    self._precisions[id(value)] = name
                    self.readers[f"{name}.fp32_precision"] = lambda v=value: v.fp32_precision
        matmul = backends.cuda.matmul
        for flag in _CUBLAS_FLAGS:
            with contextlib.suppress(Exception):  # (a flag another torch version lacks)
                getattr(matmul, flag)
                self.readers[f"torch.backends.cuda.matmul.{flag}"] = lambda f=flag: getattr(matmul, f)
        for probe in _BACKEND_PROBES:
            function = backends
            with contextlib.suppress(AttributeError):
                for part in probe.split("."):
                    function = getattr(function, part)
                name = f"torch.backends.{probe}()"
                self.readers[name] = function
                # (a cached one, ``mps.is_available``, by the function it wraps: capture
                # calls that, ``backends_for_the_program``, so that each call runs code)
                plain = getattr(function, "__wrapped__", function)
                plain = getattr(plain, "__func__", plain)
                if hasattr(plain, "__code__"):
                    self._probes[plain.__code__] = name
        self._get, self._set = ContextProp.__get__.__code__, ContextProp.__set__.__code__
        self._precision_get, self._precision_set = (_FP32Precision.__getattr__.__code__,
                                                    _FP32Precision.__setattr__.__code__)
        self._cublas_get, self._cublas_set = cuBLASModule.__getattr__.__code__, cuBLASModule.__setattr__.__code__
        self.codes = frozenset(self._probes) | {self._get, self._precision_get, self._cublas_get}
        self.set_codes = frozenset({self._set, self._precision_set, self._cublas_set})

    def read(self, code, f_locals: dict) -> str | None:
        """The setting a frame of ``code`` (one of ``codes``) reads, or None."""
        if code is self._get:
            return self._props.get(id(f_locals.get("self")))
        if code is self._precision_get:
            prefix = self._precisions.get(id(f_locals.get("self")))
            return f"{prefix}.fp32_precision" if prefix and f_locals.get("name") == "fp32_precision" else None
        if code is self._cublas_get:
            name = f"torch.backends.cuda.matmul.{f_locals.get('name')}"
            return name if name in self.readers else None
        return self._probes.get(code)

    def written(self, code, f_locals: dict) -> str | None:
        """The setting a frame of ``code`` (one of ``set_codes``) sets, or None."""
        if code is self._set:
            return self._props.get(id(f_locals.get("self")))
        name = f_locals.get("name")
        if code is self._precision_set:
            prefix = self._precisions.get(id(f_locals.get("self")))
            return f"{prefix}.{name}" if prefix and name == "fp32_precision" else None
        return f"torch.backends.cuda.matmul.{name}" if f"torch.backends.cuda.matmul.{name}" in self.readers else None


_BACKEND_SETTINGS: list = []


@contextlib.contextmanager
def backends_for_the_program(is_user_frame):
    """Around ``torch.export``, torch.backends as the program reads it in eager:

    - its own reads of ``torch.backends.cudnn.enabled`` and ``torch.backends.mkldnn.enabled``
      (from a frame ``is_user_frame`` accepts) give the caller's values. torch.export's
      trace turns both off so that its ops' C++ decompositions pick no backend's kernel,
      and a program's ``if torch.backends.cudnn.enabled:`` took the other branch there
      (until 2026-12-07: silently); torch's own code and C++ still see them off;
    - a probe torch caches (``torch.backends.mps.is_available``, ``functools.cache``) is
      the function it wraps, so that each call runs code the effect recorder sees
      (another thread's calls too: the same value, uncached).

    Private: ``ContextProp.getter`` and ``torch.export._trace._ignore_backend_decomps``'s
    choice of flags (2.11-2.13)."""
    from torch.backends import ContextProp

    backend_settings()  # (its readers are torch's getters: built before they are replaced here)
    get = ContextProp.__get__.__code__
    props = [vars(type(module)).get("enabled") for module in (torch.backends.cudnn, torch.backends.mkldnn)]
    with contextlib.ExitStack() as stack:
        for probe in _BACKEND_PROBES:
            module_name, _, name = f"torch.backends.{probe}".rpartition(".")
            module = sys.modules.get(module_name)
            cached = getattr(module, name, None) if module is not None else None
            if hasattr(cached, "cache_clear") and hasattr(cached, "__wrapped__"):
                setattr(module, name, cached.__wrapped__)
                stack.callback(setattr, module, name, cached)
        for prop in props:
            if isinstance(prop, ContextProp):
                stack.enter_context(replaced_in_this_thread(prop, "getter", functools.partial(
                    _getter_for_the_program, value=prop.getter(), get=get, is_user_frame=is_user_frame)))
        yield


def _getter_for_the_program(original, *, value, get, is_user_frame):
    def read():
        frame = sys._getframe(1)
        while frame is not None and (frame.f_code is get or frame.f_code.co_filename == __file__):
            frame = frame.f_back
        return value if frame is not None and is_user_frame(frame.f_code.co_filename) else original()
    return read


def backend_settings() -> BackendSettings:
    """The one ``BackendSettings`` of this process (built at the first call).

    (Readers and codes of the flags this torch has; built lazily as they import torch's
    backends, which a load of most packages never needs.)"""
    if not _BACKEND_SETTINGS:
        _BACKEND_SETTINGS.append(BackendSettings())
    return _BACKEND_SETTINGS[0]


def split_reduction_factor(outputs: int, length: int, *, target_outputs: int, min_chunk: int) -> int:
    """How many ways to split a reduction of ``outputs`` rows of ``length`` each (a batch-1
    matrix-vector product: one row per output, the weight's row as the reduction) so that
    the first phase has at least ``target_outputs`` programs' rows, each chunk at least
    ``min_chunk`` long: 1 where no split reaches that. Powers of two, dividing ``length``
    where one does (no masked tail).

    >>> split_reduction_factor(4096, 11264, target_outputs=16384, min_chunk=1024)
    4
    >>> split_reduction_factor(4096, 4096, target_outputs=16384, min_chunk=1024)
    4
    >>> split_reduction_factor(22528, 4096, target_outputs=16384, min_chunk=1024)
    1
    """
    split = 1
    while outputs * split < target_outputs and length // (split * 2) >= min_chunk:
        split *= 2
    return split


@contextmanager
def split_matvec_reductions(*, factor: int | None = None, target_outputs: int = 16384, min_chunk: int = 1024):
    """While active, inductor computes an inner reduction with too few outputs to fill the
    GPU in two phases (chunks of the row, then the chunks' sum): a batch-1 projection of
    4,096 outputs is 4,096 programs for 132 SMs, and the last wave's tail shows
    (bench/matvec_fusion.py). ``factor`` fixes the split (for measuring); otherwise
    :func:`split_reduction_factor` picks it. Inductor's own choice stands where it
    already splits, and for reductions it does not consider splitting at all (those
    with at least 64 outputs per SM).

    For measuring only: bench/matvec_fusion.py's ``split*`` settings. On an H200 the split
    was slower in 15 of 16 settings (docs/benchmarks.md), so ``aotpack.llm.compile`` does
    not use it.

    The choice is not part of inductor's FX-graph cache key (2.11-2.13), so the cache is
    off while this is active: a graph cached without the split would be returned as is.

    Private: ``torch._inductor.choices.InductorChoices.reduction_split_factor`` and
    ``V.set_choices_handler`` (inductor's documented hook for out-of-tree heuristics;
    2.11-2.13).
    """
    import torch._inductor.config as config
    from torch._inductor.choices import InductorChoices
    from torch._inductor.virtualized import V

    class SplitMatvec(InductorChoices):
        @staticmethod
        def reduction_split_factor(device, reduction_numel_hint, numel_hint, inner_reduction):
            chosen = InductorChoices.reduction_split_factor(device, reduction_numel_hint, numel_hint,
                                                            inner_reduction)
            if chosen > 1 or not inner_reduction or device.type != "cuda":
                return chosen
            if factor is not None:
                return factor if reduction_numel_hint // factor >= 256 else 1
            return split_reduction_factor(numel_hint, reduction_numel_hint, target_outputs=target_outputs,
                                          min_chunk=min_chunk)

    with config.patch({"fx_graph_cache": False}), V.set_choices_handler(SplitMatvec()):
        yield



def global_backward_hooks() -> dict:
    """The process-wide module backward hooks (``register_module_full_backward_hook``),
    empty where none is registered. Private: ``torch.nn.modules.module._global_backward_hooks``
    (2.11-2.13; registering one to reach the dict, as guards.py does for the other kinds,
    would set the global full/regular backward-hook flag for good)."""
    from torch.nn.modules import module

    return module._global_backward_hooks


def tensor_properties_check(templates: list, sizes: list[list], strides: list[list],
                            autocast: tuple[str, torch.dtype] | None = None) -> tuple[Callable, ...] | None:
    """Native checks of many tensors' properties at once (dynamo's ``TensorGuards``, what
    torch.compile's guards run): ``check(*tensors)`` is True when each tensor has exactly
    its template's Python type, dispatch keys (device type, layout, negative and
    conjugate bits), dtype, device index and requires_grad, and the given sizes and
    strides (None: any). For 4 tensors it costs about a quarter of reading the same
    properties from Python. None where this torch lacks it (the caller checks in Python).

    The dispatch keys are compared as the thread's state shows them (autocast and
    inference mode include or exclude some, and a tensor made in inference mode has no
    autograd keys), so three checks come back, for: inference mode off; on, with tensors
    made outside it; on, with tensors made in it. Each is made under ``autocast``
    (device type, dtype) where the caller compiled under it. Under any other state (vmap,
    a dispatch mode), or for a mix of those tensors, all are False: the caller's full
    check decides, only slower.
    """
    try:
        from torch._C._dynamo.guards import TensorGuards
    except ImportError:  # pragma: no cover - every torch >= 2.11 has it
        return None
    amp = torch.autocast(autocast[0], dtype=autocast[1]) if autocast else contextlib.nullcontext()
    checks = []
    try:
        for inference, made_in_it in ((False, False), (True, False), (True, True)):
            with torch.inference_mode(inference), amp:
                # (a tensor made in inference mode: empty, since only its type, keys, dtype and
                # device count; a template may be a bound module's weight of gigabytes)
                made = [torch.empty(0, dtype=t.dtype, device=t.device) for t in templates] if made_in_it else templates
                checks.append(TensorGuards(*made, dynamic_dims_sizes=sizes, dynamic_dims_strides=strides).check)
    except (TypeError, RuntimeError):  # pragma: no cover - another signature: the Python check stands
        return None
    return tuple(checks)


def trace_below_transforms(fn, args: list):
    """``fn(*args)`` traced by make_fx below torch's own transforms (``torch.func.grad``,
    ``vjp``, ``jacrev`` run for real, so the graph holds the aten ops they compute), on
    fake tensors whose sizes are symbols, each its own (no "duck" sizing, which would
    assume two inputs of equal example sizes stay equal without a guard). Returns
    (graph module, the fake arguments, the shape environment's guards as sympy
    expressions over the fakes' symbols: the sizes the program branched on).

    ``args``: tensors (traced with symbolic sizes), dicts of tensors (weights: static
    sizes) or other values (passed as they are).

    Private: ``torch.fx.experimental.proxy_tensor.make_fx``, ``FakeTensorMode``,
    ``ShapeEnv(duck_shape=False)``, ``ShapeEnv.guards`` (2.11-2.13).
    """
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.proxy_tensor import make_fx
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    env = ShapeEnv(duck_shape=False)
    mode = FakeTensorMode(shape_env=env, allow_non_fake_inputs=True)  # (globals and closures: constants)

    def fake(value, static: bool):
        if isinstance(value, dict):
            return {k: fake(v, True) for k, v in value.items()}
        if not isinstance(value, torch.Tensor):
            return value
        return mode.from_tensor(value, static_shapes=static)  # (requires_grad kept)

    fakes = [fake(a, False) for a in args]
    with mode, quiet_export_logs():
        gm = make_fx(fn, record_stack_traces=True)(*fakes)
    return gm, fakes, [g.expr for g in env.guards]


def users_function_class(cls: type) -> type:
    """The user's ``torch.autograd.Function`` behind one that torch's transforms generate
    to run it (``VmappedCube`` for ``Cube`` under ``vmap``, ``CubeGenerated`` under
    ``grad``/``jvp``: a new class at each call, whose methods call the user's), else
    ``cls`` itself. Private: torch._functorch.autograd_function's generated classes hold
    the user's class in their ``forward``'s closure (2.11-2.13)."""
    seen = set()
    while cls.__module__ == "torch._functorch.autograd_function" and cls not in seen:
        seen.add(cls)
        cells = getattr(vars(cls).get("forward"), "__func__", vars(cls).get("forward"))
        inner = [c.cell_contents for c in getattr(cells, "__closure__", None) or ()
                 if isinstance(c.cell_contents, type) and issubclass(c.cell_contents, torch.autograd.Function)]
        if not inner:
            break
        cls = inner[0]
    return cls


def size_symbols(t: torch.Tensor) -> dict:
    """The bare symbols among a fake tensor's sizes, strides and storage offset: symbol ->
    ("size" | "stride", dim) or ("offset", 0). Private: ``SymInt.node.expr`` (2.11-2.13)."""
    found: dict = {}
    for kind, values in (("size", t.shape), ("stride", t.stride()), ("offset", (t.storage_offset(),))):
        for d, v in enumerate(values):
            if isinstance(v, torch.SymInt) and v.node.expr.is_Symbol:
                found.setdefault(v.node.expr, (kind, d))
    return found


def assert_size_guard(expr, values: dict) -> None:
    """Assert a shape environment's guard (sympy) on ``values`` (symbol -> int or
    SymInt): where the sizes are symbols of a trace, ``torch._check`` records it as that
    trace's own guard (torch.export then narrows or specializes a Dim by it). Private:
    ``torch.utils._sympy.interp.sympy_interp``, ``PythonReferenceAnalysis``,
    ``torch._check`` (2.11-2.13)."""
    from torch.utils._sympy.interp import sympy_interp
    from torch.utils._sympy.reference import PythonReferenceAnalysis

    torch._check(sympy_interp(PythonReferenceAnalysis, values, expr))


def assert_size_is(size, value: int) -> None:
    """Assert that ``size`` (a size of a tensor in a trace: a SymInt, or an int) is
    ``value``: torch.export records it as its trace's own guard, so a Dim there is
    compiled in at that value. Private: ``torch._check`` (2.11-2.13)."""
    torch._check(size == value)


def replay_keeping_lines(gm: torch.fx.GraphModule, *args, interpreter=torch.fx.Interpreter):
    """Run ``gm`` node by node (with ``interpreter``, a ``torch.fx.Interpreter`` class) so
    a trace around the call gives each op it records the stack trace (the user's
    file:line) the node has, not the line of ``gm``'s generated code. Private:
    ``torch.fx.traceback.preserve_node_meta`` (2.11-2.13)."""
    from torch.fx import traceback as fx_traceback

    with fx_traceback.preserve_node_meta():
        return interpreter(gm).run(*args)
