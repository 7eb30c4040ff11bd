"""What a program does besides computing tensors, seen while it is captured.

torch.export runs the user's Python once, at capture. Whatever that Python does other
than tensor operations happens then and never again: a ``print`` prints once, a
``list.append`` on a global list appends once, ``torch._dynamo.graph_break()`` does
nothing. torch.compile replays some of these (it re-runs the Python around graph
breaks); a package cannot. So capture watches the program run and reports:

- ``effects``: each Python side effect the package will not replay, with the user's
  ``file:line`` (capture turns them into ``SideEffectWarning``);
- ``functions``: every user function that ran (not torch's, not the standard
  library's), with the globals and closure cells it can read, so that the frozen values
  a package lists are those of every helper the program called, however deep, and of
  the functions torch's own code calls for it (vmap's, a checkpoint's); those
  ``torch.cond``, ``while_loop`` and a nested compile region hand dynamo, which never
  runs them, are recorded from the functions themselves (``_unrun``);
- ``layout_reads``: where the program read a tensor's strides (``x.is_contiguous()``,
  ``x.stride()``...): its result may then depend on the memory layout of its inputs;
- ``transforms``: where it called a ``torch.func`` transform that differentiates
  (``grad``, ``vjp``, ``jacrev``...) or ``torch.autograd.grad``, which capture exports
  through make_fx (desugar.py); ``vmaps``: where it called ``torch.func.vmap``, which
  torch.export traces as it is, but not over a custom ``autograd.Function`` (capture then
  goes through make_fx too); ``autograd_calls``: where it called ``backward()``, which
  accumulates into ``.grad`` (refused);
- ``grad_mode_reads``: where it called ``torch.is_grad_enabled()`` (the package holds
  the branch taken at capture: calls are guarded on grad mode); ``setting_reads``: the
  settings it read (``torch.are_deterministic_algorithms_enabled()``,
  ``torch.get_float32_matmul_precision()``, ``torch.is_inference_mode_enabled()``,
  ``torch.is_anomaly_enabled()``):
  guarded on too;
- ``environ_reads``: the environment variables it read (``os.environ.get("X")``,
  ``os.getenv``, ``"X" in os.environ``) and their values then (None: unset): the package
  holds the branch taken, so calls are guarded on them (a variable the program set
  itself first is not; setting one is a side effect);
- ``module_methods``: each module method that ran on the program's behalf (the user's,
  and the ``forward`` of torch's own modules, which also call the user's modules inside
  an ``nn.Sequential``), with its module: the Python attributes
  its code names (``self.eps``) are values the package holds, which a bound module is
  guarded on (guard_specs.module_attributes).

How: on Python 3.12 and later, ``sys.monitoring`` (``_monitored``): each place in code
that can never matter (torch's own functions and the libraries its tracing runs, sympy,
logging, traceback...; calls made by code not the user's) is switched off the first time
it is seen, so torch's tracing costs little. On Python 3.11, ``sys.setprofile``
(``_profiled``): Python calls the hook for every call and return of torch's own tracing
too (about 6 million events), a few thousand of them the program's; the hook spends one
comparison and one dict test on each of the others. Both see calls of builtins such as
``print`` and ``list.append``, which a tracer does not. An eager-backend capture of a
2-layer transformers Llama with ``dynamic=True`` (2026-12-07, best of 3, ``/tmp``
script): Python 3.11, 1.0 s without a hook, 1.5 s with an empty one, 2.0 s with
``_profiled`` (2.4-2.7 s with the method it replaced); Python 3.12, 1.1 s without, 1.4-1.7 s
with ``_monitored``, 3.1 s with the profiler hook.

Example (capture runs the recorder; each effect becomes a SideEffectWarning):
    >>> import warnings, torch, aotpack
    >>> calls = []
    >>> def counted(x):
    ...     calls.append(1)
    ...     return x * 2
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = aotpack.compile(counted, (torch.ones(2),), backend="eager")
    >>> [str(w.message).split(": ", 2)[-1] for w in caught if w.category is aotpack.SideEffectWarning]
    ['list.append on the global `calls` ran once at capture; the package will not run it again at each call']
"""

from __future__ import annotations

import builtins
import functools
import gc
import operator
import os
import random
import sys
import sysconfig
import time
import types
import warnings
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from .. import _torch_compat as compat

__all__ = ["Effect", "EffectRecorder"]

# Methods of builtin containers that change them. Called on a container the program did
# not create (a global, a closure cell, an attribute of a module), they are side effects.
_MUTATORS = {
    list: {"append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse", "__setitem__", "__delitem__"},
    dict: {"update", "pop", "popitem", "clear", "setdefault", "__setitem__", "__delitem__"},
    set: {"add", "discard", "remove", "pop", "clear", "update"},
}
# torch.func's transforms that differentiate (vmap alone torch.export traces as it is)
_TRANSFORMS = {"grad", "grad_and_value", "vjp", "jacrev", "jacfwd", "hessian", "jvp", "linearize"}
# what the profiler's ``c_call`` reports: functions written in C (sys.monitoring's CALL
# reports every call; a method of a builtin type comes unbound, with its object apart)
_UNBOUND_BUILTINS = (types.MethodDescriptorType, types.WrapperDescriptorType, types.ClassMethodDescriptorType)
_BUILTIN_CALLABLES = (types.BuiltinFunctionType, types.MethodWrapperType, *_UNBOUND_BUILTINS)
# (a warning the program raises is output too: eager warns at each call, as the filters
# let it; the package never does)
_OUTPUT = {builtins.print: "print()", builtins.input: "input()", warnings.warn: "warnings.warn()",
           warnings.warn_explicit: "warnings.warn_explicit()"}
# Values read from the world at capture: the package holds the one read then, where
# eager reads a new one at every call.
_FROZEN_READS = {time.time: "time.time()", time.time_ns: "time.time_ns()", time.perf_counter: "time.perf_counter()",
                 time.monotonic: "time.monotonic()", os.urandom: "os.urandom()", os.getpid: "os.getpid()",
                 torch.get_num_threads: "torch.get_num_threads()"}
# torch's functions that set process-wide state ((file under torch/, name) -> the public
# name): called by the program, each ran once at capture, where eager sets the state at
# every call (a seed reseeds the generator the package's random ops then draw from: other
# numbers), and the builtins that do (a builtin's call is seen as one)
_GLOBAL_SETTERS = {(os.path.join(*path.split("/")), name): f"{public}.{name}()" for path, public, names in (
    ("__init__.py", "torch", ("set_default_dtype", "set_default_tensor_type", "use_deterministic_algorithms",
                              "set_float32_matmul_precision", "set_default_device", "set_deterministic_debug_mode")),
    ("random.py", "torch", ("manual_seed", "seed", "set_rng_state")),
    ("cuda/random.py", "torch.cuda", ("manual_seed", "manual_seed_all", "seed", "seed_all", "set_rng_state",
                                      "set_rng_state_all"))) for name in names}
_SETTER_BUILTINS = {torch.set_num_threads: "torch.set_num_threads()",
                    torch.set_num_interop_threads: "torch.set_num_interop_threads()",
                    torch.set_flush_denormal: "torch.set_flush_denormal()"}
# torch's functions that read a process-wide setting a program may branch on ((file under
# torch/, name) -> the setting): the package is guarded on each one the program reads, on
# every device (``GlobalState.reads``; torch.cuda's too: a package moves between machines,
# where a CPU one may meet a GPU); and the builtins that read one (a builtin's call is seen
# as one)
_SETTING_READS = {("__init__.py", "are_deterministic_algorithms_enabled"): "deterministic",
                  ("__init__.py", "get_float32_matmul_precision"): "matmul_precision",
                  ("__init__.py", "get_default_device"): "default_device",
                  (os.path.join("cuda", "__init__.py"), "is_available"): "cuda_available"}
_SETTING_BUILTINS = {torch.is_inference_mode_enabled: "inference_mode", torch.is_anomaly_enabled: "anomaly"}
# torch functions that hand the program's functions to dynamo, which traces their bytecode
# without running it (``torch.cond``'s branches, ``while_loop``'s body): no frame of theirs
# runs for the recorder to see (``EffectRecorder._unrun``)
_DYNAMO_TRACED = {"cond": "cond.py", "while_loop": "while_loop.py",
                  "inner": "invoke_subgraph.py"}  # (torch.compiler.nested_compile_region's wrapper)
_MODULE_SETATTR = torch.nn.Module.__setattr__.__code__
# ``os.environ``'s methods (``os.environ.get``, ``os.getenv`` and ``key in os.environ``
# all come to ``__getitem__``): a variable the program reads is global state its
# package is guarded on; one it sets or deletes, a side effect; its iteration reads
# every variable (``_environ``)
_ENVIRON = {getattr(type(os.environ), name).__code__: name
            for name in ("__getitem__", "__setitem__", "__delitem__", "__iter__")}
_FUNCTION_APPLY = torch.autograd.Function.apply.__func__.__code__  # (a classmethod: ``cls`` its first local)
# torch's TransformerEncoder: in eval mode without autograd, eager runs a nested-tensor fast
# path that returns 0 at the positions a ``src_key_padding_mask`` pads, which torch's code
# leaves out under tracing (``torch.compiler.is_compiling()``): the package computes them
_NESTED_FAST_PATH = torch.nn.TransformerEncoder.forward.__code__
# builtin iterators over others, whose position is where those stand (``_position``)
_DRAWING_ITERATORS = (map, zip, filter, enumerate, reversed)
# Tensor methods that read a tensor's memory layout: a program that branches on them or
# computes with them gives other results for inputs in other layouts.
_LAYOUT_READS = {"is_contiguous", "stride", "storage_offset", "data_ptr", "is_non_overlapping_and_dense"}


@dataclass(frozen=True)
class Effect:
    """One Python side effect seen at capture: ``what`` (``print()``, ``append to the
    list `log```), ``where`` (``file:line``)."""

    what: str
    where: str
    why: str = "ran once at capture; the package will not run it again at each call"


_TORCH_DIR = os.path.normpath(os.path.dirname(torch.__file__)) + os.sep
_DISABLE_DYNAMO_FILE = os.path.join(_TORCH_DIR, "_compile.py")  # (``torch._disable_dynamo``'s wrapper)
_HERE = os.path.normpath(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + os.sep  # aotpack/
_STDLIB = os.path.normpath(sysconfig.get_paths()["stdlib"]) + os.sep
# torch code that calls the user's code on the program's behalf (module calls, also as
# torch.export's tracer wraps them; custom autograd Functions): file -> function names
# (None: all). The user's code below it is still the program's.
_BRIDGES = {os.path.join(_TORCH_DIR, *path.split("/")): names for path, names in {
    "nn/modules/module.py": None,
    "autograd/function.py": None,
    "fx/_symbolic_trace.py": {"module_call_wrapper", "forward", "call_module"},
    "fx/experimental/proxy_tensor.py": {"call_module"},
}.items()}
# torch's own modules: their forward calls submodules (nn.Sequential's: the user's too)
_TORCH_MODULES = os.path.join(_TORCH_DIR, "nn", "modules") + os.sep
# code torch and Python generate (torch.fx's GraphModule code, frozen stdlib modules): not
# the program's. Other code without a file is the user's: ``python -c``, ``exec``, a
# doctest, a REPL (until 2026-12-05 it was not, so a grad-mode read in such a program went
# unguarded: its package gave the branch taken at capture)
_GENERATED = ("<eval_with_key", "<frozen")
# ...except the frozen modules through which a program reads its environment
# (``os.environ.get`` is ``_collections_abc``'s ``Mapping.get``): the standard library's
# bridges as the rest of it (until 2026-12-07 they were not, so those reads went unseen).
# Not every frozen module: ``abc``'s ``__instancecheck__`` runs at each ``isinstance``
# with an abstract class, and watching below it cost 6% of a transformers capture
_FROZEN = ("<frozen os>", "<frozen _collections_abc>")
_SITE = tuple({os.path.normpath(sysconfig.get_paths()[k]) + os.sep for k in ("purelib", "platlib")})
# the code torch's tracing runs besides its own, which never runs the program's code nor
# changes what it sees: sympy (torch's symbolic sizes), logging, traceback and linecache
# (torch.fx records the stack of each node it traces), weakref, enum, re... Not the
# program's (no bridge to it either), so ``_monitored`` switches their events off: they
# were most of the events left (2026-12-07)
_TRACING_LIBRARIES = tuple(
    [os.path.join(_STDLIB, name) for name in ("logging" + os.sep, "traceback.py", "linecache.py", "weakref.py",
                                               "_weakrefset.py", "enum.py", "re" + os.sep, "inspect.py",
                                               "tokenize.py", "posixpath.py", "genericpath.py", "threading.py",
                                               "warnings.py", "abc.py")]
    + [os.path.join(site, name) + os.sep for site in _SITE for name in ("sympy", "mpmath")])
_USER, _BRIDGE, _OTHER, _ROOT = 0, 1, 2, 3
_CALLBACK = 4  # (``EffectRecorder._entry``)


class EffectRecorder:
    """Context manager: records side effects and user functions while a program runs.

    Only code the program runs itself counts: the user's functions, reached from
    aotpack's capture wrapper through other user functions, the standard library or
    torch's module-call machinery, and the user's functions that torch's own code calls
    while the program runs (a function under ``torch.func.vmap`` or ``grad``, a
    checkpointed layer, a custom Function's ``forward`` under a transform: until
    2026-12-07 these were not watched, so a module attribute or a global read there was
    compiled in unguarded, and their side effects were not warned of). Libraries that
    torch's tracing calls (sympy, networkx, logging handlers) are not the program's.
    """

    def __init__(self):
        self.effects: list[Effect] = []
        # torch.set_grad_enabled(...) called as a function (its __init__ sets the mode; no
        # `with` exits it): the program sets grad mode for its caller, whatever it was
        self.grad_mode_sets: dict[int, str] = {}
        self.grad_mode_reads: list[str] = []  # file:line of torch.is_grad_enabled() in the program
        # the settings it reads (``_SETTING_READS``, ``_SETTING_BUILTINS``: "deterministic",
        # "matmul_precision", "default_device", "cuda_available", "inference_mode",
        # "anomaly") -> the file:line of the first read
        self.setting_reads: dict[str, str] = {}
        # the settings of torch.backends it reads (``torch.backends.cudnn.enabled``,
        # ``torch.backends.mps.is_available()``: compat.BackendSettings) -> the file:line of the first
        self.backend_reads: dict[str, str] = {}
        self.environ_reads: dict[str, str | None] = {}  # environment variable -> its value when first read
        self._environ_set: set[str] = set()  # (those the program set or deleted first: its own)
        self.inplace: list[tuple[str, str]] = []  # (tensor method, file:line) of in-place calls
        self.inplace_no_grad: list[str] = []  # file:line of those made with grad mode off
        self.layout_reads: list[tuple[torch.Tensor, str]] = []  # (tensor, file:line) of x.stride() & co.
        # (tensor, file:line) of x.contiguous(): a no-op in one layout, a copy in another,
        # invisible in the graph where it was a no-op
        self.contiguous_calls: list[tuple[torch.Tensor, str]] = []
        self.parameter_ctors: list[str] = []  # file:line of torch.nn.Parameter(...) made inside the program
        # file:line of x.register_hook(...) or x.retain_grad() called by the program: what
        # eager's backward does to that tensor, which a compiled backward leaves out
        self.tensor_hooks: list[str] = []
        self.autograd_calls: list[str] = []  # file:line of torch.autograd.backward called by the program
        self.transforms: list[str] = []  # "grad at file:line": torch.func transforms the program called
        self.vmaps: list[str] = []  # "vmap at file:line"
        # the custom torch.autograd.Function classes the program applies, whether or not a
        # gradient goes through them at capture (their derivative rules are not in the graph)
        self.applied_functions: list[type] = []
        # tensor subclasses made of tensors (``__tensor_flatten__``) that the program
        # makes (torchao's float8 training casts): their ops are their __torch_dispatch__'s
        self.subclasses_made: set[type] = set()
        self.functions: dict[types.CodeType, tuple[dict, dict]] = {}
        self.module_methods: dict[tuple[int, types.CodeType], torch.nn.Module] = {}
        # (id(module), attribute) the program sets, or changes in place (``self.log.append``)
        self.module_writes: set[tuple[int, str]] = set()
        # the program's side effects on containers it did not make (``LOG.append``): id of each;
        # not values compiled in (guard_specs.global_values, module_attributes)
        self.containers_changed: set[int] = set()
        # the dicts and lists the program's code names (a global, ``self.cfg``) -> (it, its JSON
        # at the first read): one whose JSON differs after the run was changed by the program
        # (``CACHE[key] = 1``: a store, no call the hook sees), so it is no value compiled in
        self._snapshots: dict[int, tuple] = {}
        # the iterators among them (``IDS = itertools.count()``): id -> (it, its position, ...)
        self._iterators: dict[int, tuple] = {}
        # the globals and closure variables the program's code assigns (``global n; n += 1``,
        # ``nonlocal``: stores no hook sees) -> (where to read it after the run, its value at
        # the first call, how to name it, file:line of the store): one that changed is a side
        # effect
        self._assigned: dict[tuple, tuple] = {}
        self.changed_slots: set[tuple[int, str]] = set()  # (id of the dict holding one, its name)
        self._kind: dict[types.CodeType, int] = {}
        self._entries: dict[types.CodeType, int] = {}
        self._entry_files: dict[str, bool] = {}
        self._torch_files: dict[str, bool] = {}
        self._active: dict = {}  # live frames that run on the program's behalf (a dict: ordered)
        self._users: set = set()  # those of them running the program's own code (the user's)
        self._seen: set = set()
        self._amid: set = set()
        self._stop: Callable[[], None] = lambda: None

    def __enter__(self) -> EffectRecorder:
        # code Python runs amid the program, not for it: a garbage collector's callbacks
        # (hypothesis times collections with one that reads time.perf_counter(): it was
        # reported as the program's side effect), weakref finalizers (and ``__del__``,
        # ``_called``)
        self._amid = {_code_of(c) for c in gc.callbacks} | {_code_of(weakref.finalize.__call__)}
        self._stop = (self._monitored() if hasattr(sys, "monitoring") else None) or self._profiled()
        return self

    def __exit__(self, *exc) -> None:
        self._stop()
        self._active.clear()
        self._users.clear()
        self._stores()

    def _code_kind(self, code: types.CodeType) -> int:
        kind = self._kind.get(code)
        if kind is None:
            name = os.path.normpath(code.co_filename)
            if name.startswith(_HERE):
                kind = _ROOT if code.co_name == "forward" and name.endswith("capture.py") else _OTHER
            elif name in _BRIDGES and (_BRIDGES[name] is None or code.co_name in _BRIDGES[name]):
                kind = _BRIDGE
            elif name.startswith(_TORCH_MODULES) and code.co_name == "forward":
                kind = _BRIDGE
            elif code.co_filename.startswith(_FROZEN):
                kind = _BRIDGE
            elif code.co_filename.startswith(_GENERATED) or name.startswith(_TORCH_DIR) \
                    or name.startswith(_TRACING_LIBRARIES):
                kind = _OTHER
            elif name.startswith(_STDLIB) and not name.startswith(_SITE):
                kind = _BRIDGE
            else:
                kind = _USER
            self._kind[code] = kind
        return kind

    def _profiled(self) -> Callable[[], None]:
        """Watch the program with a profiler hook (``sys.setprofile``); the function that
        puts the previous one back. The hook is a closure over the two frame tables,
        ordered for the events that are nearly all of them (torch's own tracing calls,
        returns and builtin calls, about 6 million for a small transformers model): each
        of those costs a comparison and a dict test here; the program's own events go on
        to the methods below."""
        on_behalf, users = self._active, self._users
        called, c_called, files, file_of, entry_of, reached = self._called, self._c_called, self._entry_files, \
            self._entry_file, self._entry, self._reached

        def hook(frame, event, arg):
            if event == "call":
                parent = frame.f_back
                if parent in on_behalf:
                    called(frame, parent)
                    return
                code = frame.f_code
                may = files.get(code.co_filename)  # (the one dict test each of torch's own calls costs)
                if may is None:
                    may = file_of(code.co_filename)
                if not may:
                    return
                entry = entry_of(code)
                if entry == _ROOT:
                    on_behalf[frame] = None  # aotpack's capture wrapper: the program starts here
                elif entry and reached(parent):
                    called(frame, parent)  # (torch's code calling the user's: vmap's function, a Function)
            elif event == "return":
                if frame in on_behalf:
                    del on_behalf[frame]
                    users.discard(frame)
            elif event == "c_call" and frame in users:
                c_called(frame, arg)

        previous = sys.getprofile()
        sys.setprofile(hook)

        def stop() -> None:
            if previous is not None and not callable(previous) and callable(getattr(previous, "enable", None)):
                # cProfile's profiler on Python 3.11: a C-level hook, whose object
                # sys.getprofile() returns but sys.setprofile cannot take back; it
                # reinstalls itself
                sys.setprofile(None)
                previous.enable()
            else:
                sys.setprofile(previous)

        return stop

    def _monitored(self) -> Callable[[], None] | None:
        """Watch the program with ``sys.monitoring`` (Python 3.12 and later); the function
        that stops, or None where every tool id is taken. The same events as the profiler
        hook's, but each place in code that can never matter (torch's own functions, a
        call made by code not the user's) is switched off the first time it is seen
        (``DISABLE``). A tool id no tool is named for (4, else 3) is taken for the capture
        and freed after, with ``restart_events()``: a place switched off stays off for the
        id until then, and a tool taking the id later (cProfile takes the profiler's)
        would miss its events there. Events come from every thread; frames of other
        threads are never the program's and are ignored."""
        monitoring = sys.monitoring
        tool = next((t for t in (4, 3) if monitoring.get_tool(t) is None), None)
        if tool is None:
            return None
        monitoring.use_tool_id(tool, "aotpack capture")
        on_behalf, users = self._active, self._users
        called, c_called, kind_of, frame_of, entry_of, reached = self._called, self._c_called, self._code_kind, \
            sys._getframe, self._entry, self._reached
        disable, missing, quiet = monitoring.DISABLE, monitoring.MISSING, {}

        def is_quiet(code) -> bool:  # (a code whose start and return never matter: torch's own)
            answer = quiet.get(code)
            if answer is None:
                answer = quiet[code] = kind_of(code) == _OTHER and not code.co_filename.startswith("<") \
                    and code.co_name != "__new__" and _torch_role(code) is None  # (``_called``)
            return answer

        def start(code, offset):
            frame = frame_of(1)
            parent = frame.f_back
            if parent in on_behalf:
                called(frame, parent)
            else:
                entry = entry_of(code)
                if entry == _ROOT:
                    on_behalf[frame] = None
                    return None
                if entry and reached(parent):  # (``_profiled``)
                    called(frame, parent)
            return disable if is_quiet(code) else None

        def end(code, offset, value):
            frame = frame_of(1)
            if frame in on_behalf:
                del on_behalf[frame]
                users.discard(frame)
                return None
            return disable if is_quiet(code) else None

        def unwound(code, offset, exception):  # (PY_UNWIND cannot be switched off)
            frame = frame_of(1)
            if frame in on_behalf:
                del on_behalf[frame]
                users.discard(frame)

        def call(code, offset, function, first):
            if kind_of(code) != _USER:
                return disable
            frame = frame_of(1)
            if frame in users and isinstance(function, _BUILTIN_CALLABLES):
                if first is not missing and isinstance(function, _UNBOUND_BUILTINS):
                    function = function.__get__(first)  # (``lst.append(x)``: the profiler's bound method)
                c_called(frame, function)
            return None

        events = monitoring.events
        callbacks = {events.PY_START: start, events.PY_RESUME: start, events.PY_RETURN: end,
                     events.PY_YIELD: end, events.PY_UNWIND: unwound, events.CALL: call}
        for event, callback in callbacks.items():
            monitoring.register_callback(tool, event, callback)
        monitoring.set_events(tool, functools.reduce(operator.or_, callbacks))

        def stop() -> None:
            monitoring.set_events(tool, 0)
            for event in callbacks:
                monitoring.register_callback(tool, event, None)
            monitoring.restart_events()
            monitoring.free_tool_id(tool)

        return stop

    def _entry(self, code: types.CodeType) -> int:
        """What a call of ``code`` from a frame not on the program's behalf may be: the
        program's start (_ROOT, aotpack's capture wrapper), a user function torch's own
        code may call for the program (_CALLBACK: a function with a file, not a module's
        body; and ``Function.apply``, whose class is recorded), or nothing (0). Cached:
        the profiler hook asks it for calls in files that may hold one (``_entry_file``)."""
        entry = self._entries.get(code)
        if entry is None:
            kind = self._code_kind(code)
            entry = _ROOT if kind == _ROOT else _CALLBACK if code is _FUNCTION_APPLY or (
                kind == _USER and not code.co_filename.startswith("<") and code.co_name != "<module>") else 0
            self._entries[code] = entry
        return entry

    def _entry_file(self, filename: str) -> bool:
        """Whether code in this file may be an ``_entry``: a user's file, aotpack's
        capture.py, torch's autograd/function.py. The profiler hook tests every call
        torch's tracing makes against this, by file name (a str caches its hash; a code
        object's is computed over its bytecode at each dict test: keyed by code, the
        test cost 0.3 s of a 2-layer Llama's capture)."""
        may = self._entry_files.get(filename)
        if may is None:
            name = os.path.normpath(filename)
            if name.startswith(_HERE):
                may = name.endswith(os.path.join("build", "capture.py"))
            elif name.startswith(_TORCH_DIR):
                may = name == os.path.normpath(_FUNCTION_APPLY.co_filename)
            else:
                may = not (filename.startswith("<") or name.startswith(_TRACING_LIBRARIES)
                           or (name.startswith(_STDLIB) and not name.startswith(_SITE)))
            self._entry_files[filename] = may
        return may

    def _reached(self, parent) -> bool:
        """Whether a user function called by ``parent`` runs on the program's behalf:
        ``parent`` is torch's own code (``vmap``'s, ``grad``'s, a checkpoint's, a custom
        Function's under a transform) and a frame below it is the program's, as
        torch.compile inlines such a function. (Not code an import, ``typing`` or a test
        runner's hook runs amid the program: their callers are not torch's; nor code a module
        torch imports lazily runs, ``typing_extensions``' from a torch module's body: an
        import stands between.)"""
        file = parent.f_code.co_filename
        torch_code = self._torch_files.get(file)
        if torch_code is None:
            torch_code = self._torch_files[file] = os.path.normpath(file).startswith(_TORCH_DIR)
        if not torch_code:
            return False
        on_behalf, frame = self._active, parent
        while frame is not None:
            if frame in on_behalf:
                return True
            if frame.f_code.co_filename.startswith("<frozen importlib"):
                return False
            frame = frame.f_back
        return False

    def _called(self, frame, parent) -> None:
        """A Python function called by a frame that runs on the program's behalf."""
        code = frame.f_code
        if code in self._amid or code.co_name == "__del__":
            return
        if code in _ENVIRON:
            self._environ(frame, _ENVIRON[code])
        kind = self._code_kind(code)
        if code.co_name == "__new__":
            self._subclass_made(frame)
        if code is _NESTED_FAST_PATH:
            self._nested_fast_path(frame)
        if code is _FUNCTION_APPLY:  # (torch's autograd/function.py: a bridge to the user's code)
            cls = frame.f_locals.get("cls")
            if isinstance(cls, type):  # (under a transform, torch applies a class of its own)
                cls = compat.users_function_class(cls)
            if isinstance(cls, type) and cls not in self.applied_functions:
                self.applied_functions.append(cls)
        if kind == _ROOT:
            self._active[frame] = None
            return
        if kind == _OTHER:
            if code.co_filename.startswith("<"):  # a module defined by exec(), python -c
                self._module_method(frame, code)
            self._torch_call(frame, parent)
            return
        if code is _MODULE_SETATTR and parent in self._users:
            # `self.calls += 1` in forward: an attribute of a module set by the program
            owner, name = frame.f_locals.get("self"), frame.f_locals.get("name")
            self.module_writes.add((id(owner), name))
            self._add(f"setting the attribute `self.{name}` of {type(owner).__name__}", parent)
        self._active[frame] = None
        if kind == _USER:
            self._users.add(frame)
        if kind == _USER or code.co_name == "forward":
            self._module_method(frame, code)
        if kind == _USER and (code not in self.functions or self.functions[code][0] is not frame.f_globals):
            self._ran(frame, code)

    def _nested_fast_path(self, frame) -> None:
        """A ``torch.nn.TransformerEncoder`` called with a ``src_key_padding_mask`` where
        eager takes its nested-tensor fast path (until 2026-12-07 the package's other
        numbers at the padded positions were not told; torch.compile's are the package's)."""
        encoder, padding = frame.f_locals.get("self"), frame.f_locals.get("src_key_padding_mask")
        layers = getattr(encoder, "layers", None)
        if (padding is None or frame.f_locals.get("mask") is not None or not getattr(encoder, "use_nested_tensor", False)
                or not layers or layers[0].training or not torch.backends.mha.get_fastpath_enabled()):
            return
        user = frame.f_back
        while user is not None and user not in self._users:  # (the user's line that calls the encoder)
            user = user.f_back
        where = f"{user.f_code.co_filename}:{user.f_lineno}" if user is not None else "the module compiled"
        self._effect("torch.nn.TransformerEncoder with a src_key_padding_mask", where,
                     "runs, in eager, its nested-tensor fast path in eval mode without autograd, which returns 0 at "
                     "the padded positions; the package computes those positions as torch.compile does (the others "
                     "are eager's): ignore them, or build the encoder with enable_nested_tensor=False, whose eager "
                     "result is the package's")

    def _c_called(self, frame, arg) -> None:
        """A builtin (``print``, ``list.append``, a tensor method) called by the program's code."""
        what = _OUTPUT.get(arg) or _SETTER_BUILTINS.get(arg)
        if what is not None:
            self._add(what, frame)
            return
        if arg is torch.is_grad_enabled:
            self.grad_mode_reads.append(f"{frame.f_code.co_filename}:{frame.f_lineno}")
            return
        if arg in _SETTING_BUILTINS:
            self.setting_reads.setdefault(_SETTING_BUILTINS[arg], f"{frame.f_code.co_filename}:{frame.f_lineno}")
            return
        what = _FROZEN_READS.get(arg)
        owner = getattr(arg, "__self__", None)
        if what is None and (isinstance(owner, random.Random) or type(owner).__module__.startswith("numpy.random")):
            what = f"{'random' if isinstance(owner, random.Random) else 'numpy.random'}.{arg.__name__}()"
        if what is not None:
            self._add(what, frame, "ran once at capture: the package holds the value it returned then, where eager "
                                   "gets a new one at every call")
            return
        owner = getattr(arg, "__self__", None)
        if isinstance(owner, torch.Tensor):
            name = getattr(arg, "__name__", "")
            if name.endswith("_") and not name.startswith("_"):
                self.inplace.append((name, f"{frame.f_code.co_filename}:{frame.f_lineno}"))
                if not torch.is_grad_enabled():
                    self.inplace_no_grad.append(f"{frame.f_code.co_filename}:{frame.f_lineno}")
            elif name in _LAYOUT_READS:
                self.layout_reads.append((owner, f"{frame.f_code.co_filename}:{frame.f_lineno}"))
            elif name == "contiguous":
                self.contiguous_calls.append((owner, f"{frame.f_code.co_filename}:{frame.f_lineno}"))
            elif name == "retain_grad":
                self.tensor_hooks.append(f"{frame.f_code.co_filename}:{frame.f_lineno} (retain_grad())")
            return
        kind = type(owner)
        if kind in _MUTATORS and getattr(arg, "__name__", "") in _MUTATORS[kind]:
            name = _external_name(owner, frame)
            if name is not None:
                self._add(f"{kind.__name__}.{arg.__name__} on {name}", frame)
                self.containers_changed.add(id(owner))
                holder, attribute = _first_argument(frame), _self_attribute(owner, frame)
                if isinstance(holder, torch.nn.Module) and attribute is not None:  # (``self.log.append``)
                    self.module_writes.add((id(holder), attribute))

    def _environ(self, frame, method: str) -> None:
        """The program calls ``os.environ``'s ``method`` (or ``os.environb``'s): a read
        of one variable (its value now), of them all (iteration: each one present), or a
        change (a side effect, and the variable is the program's own from then on)."""
        environ, key = frame.f_locals.get("self"), frame.f_locals.get("key")
        if environ is not os.environ and environ is not getattr(os, "environb", None):
            return
        user = frame.f_back
        while user is not None and user not in self._users:  # (the user's line: past os.getenv, Mapping.get)
            user = user.f_back
        if method == "__iter__":
            names = list(os.environ)
            self._add("iterating over os.environ", user or frame, "reads every environment variable: the package "
                      f"is guarded on the values of the {len(names)} set at capture; one set after it is not seen")
            for name in names:
                self.environ_reads.setdefault(name, os.environ[name])
            return
        name = os.fsdecode(key) if isinstance(key, (str, bytes)) else None
        if name is None:
            return
        if method == "__getitem__":
            if name not in self._environ_set:
                self.environ_reads.setdefault(name, os.environ.get(name))
            return
        self._environ_set.add(name)
        self._add(f"{'setting' if method == '__setitem__' else 'deleting'} the environment variable `{name}`",
                  user or frame)

    def _subclass_made(self, frame) -> None:
        cls = frame.f_locals.get("cls")
        if isinstance(cls, type) and issubclass(cls, torch.Tensor) and hasattr(cls, "__tensor_flatten__"):
            self.subclasses_made.add(cls)

    def _ran(self, frame, code: types.CodeType) -> None:
        """Record a user function's code, with the globals and closure values it reads.
        Python's code equality leaves out the file: a function copied into two files at
        one line (transformers' "Copied from") is one key, whose globals are the first
        file's, so the second is kept under a copy of its code that names its file."""
        if code in self.functions:
            code = code.replace(co_consts=(*code.co_consts, ("aotpack: defined in", code.co_filename)))
            if code in self.functions:
                return
        closure = {n: frame.f_locals[n] for n in code.co_freevars if n in frame.f_locals}
        self.functions[code] = (frame.f_globals, closure)
        self._snapshot(code, frame.f_globals, "the global `{}`")
        for name, (kind, line) in _stores_of(code).items():
            where = f"{code.co_filename}:{line}"
            if kind == "global" and name in frame.f_globals:
                self._assigned.setdefault((id(frame.f_globals), name), (frame.f_globals, name, frame.f_globals[name],
                                                                        f"the global `{name}`", where))
            elif kind == "nonlocal" and name in closure:  # (a finished frame's f_locals reads its cells then)
                self._assigned.setdefault((id(frame), name), (frame, name, closure[name],
                                                              f"the closure variable `{name}`", where))

    def _unrun(self, fn, owner, seen: set, depth: int = 0) -> None:
        """Record a function the program hands ``torch.cond``, ``while_loop`` or a
        ``torch.compiler.nested_compile_region`` as
        ``_called`` records a frame of it, from the function itself: dynamo traces its
        bytecode and never runs it (until 2026-12-07 a module attribute or a global a
        branch read was compiled in unguarded: another value gave the old one's result,
        silently). Its code with its globals and closure values; the module it is a
        method of, or whose ``self`` it closes over; and, as far as its code names them,
        the methods, submodules and functions it calls (a submodule's ``forward``, a
        helper), as deep as the code shows (a call through a computed name is not seen)."""
        if isinstance(fn, functools.partial):  # (what it is given is the function's too: a module, a helper)
            for given in (*fn.args, *fn.keywords.values()):
                self._unrun(given, None, seen, depth + 1)
            fn = fn.func
        if isinstance(fn, torch.nn.Module):
            owner, fn = fn, getattr(type(fn), "forward", None)
        elif isinstance(fn, types.MethodType):
            owner, fn = fn.__self__, fn.__func__
        if not isinstance(fn, types.FunctionType) or fn.__code__ in seen or depth > 16:
            return
        from .frozen import closure_values

        code = fn.__code__
        seen.add(code)
        closure = closure_values(fn)
        if not isinstance(owner, torch.nn.Module) and isinstance(closure.get("self"), torch.nn.Module):
            owner = closure["self"]
        first = {code.co_varnames[0]: owner} if code.co_argcount and owner is not None else {}
        frame = types.SimpleNamespace(f_code=code, f_globals=fn.__globals__, f_locals={**closure, **first})
        kind = self._code_kind(code)
        if kind == _USER and code not in self.functions:
            self._ran(frame, code)
        if kind == _USER or code.co_name == "forward":
            self._module_method(frame, code)
        if kind != _USER:
            return
        for name in code.co_names:  # (what it calls: ``self.helper``, ``self.norm``, ``helper``)
            found = fn.__globals__.get(name)
            if isinstance(owner, torch.nn.Module):
                member = owner._modules.get(name) or getattr(type(owner), name, None)
                if isinstance(member, types.FunctionType):
                    member = types.MethodType(member, owner)
                found = member if member is not None else found
            if isinstance(found, (types.FunctionType, types.MethodType, torch.nn.Module, functools.partial)):
                self._unrun(found, None, seen, depth + 1)
        for value in closure.values():
            if value is not owner and isinstance(value, (types.FunctionType, types.MethodType, torch.nn.Module,
                                                         functools.partial)):
                self._unrun(value, None, seen, depth + 1)

    def _module_method(self, frame, code: types.CodeType) -> None:
        owner = _first_argument(frame)
        if isinstance(owner, torch.nn.Module) and (id(owner), code) not in self.module_methods:
            self.module_methods[(id(owner), code)] = owner
            self._snapshot(code, owner.__dict__, "the attribute `self.{}`")
            self._snapshot(code, vars(type(owner)), f"the attribute `{type(owner).__name__}.{{}}` of the class")

    def _snapshot(self, code: types.CodeType, held: dict, how: str) -> None:
        from ..package.manifest import plain_value
        from .frozen import plain_object

        for name in code.co_names:
            value = held.get(name)
            what = how.format(name)
            if plain_object(value) and not isinstance(value, (dict, list)):  # (``CFG.calls += 1``: its attributes)
                value, what = vars(value), f"the attributes of {what}"
            if isinstance(value, Iterator) and not isinstance(value, torch.Tensor):  # (``next(IDS)``)
                if id(value) not in self._iterators:
                    self._iterators[id(value)] = (value, _position(value), what, code.co_name,
                                                  f"{code.co_filename}:{code.co_firstlineno}")
            if isinstance(value, (dict, list)):
                if id(value) not in self._snapshots:
                    where = f"{code.co_filename}:{code.co_firstlineno}"
                    self._snapshots[id(value)] = (value, plain_value(value), what, code.co_name, where, [])
                self._snapshots[id(value)][5].append((id(held), name))

    def _stores(self) -> None:
        """The containers the program changed by a store (``CACHE[key] = 1``, ``del
        d[k]``: no call the hook sees): their JSON after the run differs from their JSON at
        the first read. Side effects, warned about as the calls are (naming the function
        that reads it), and no values compiled in."""
        from ..package.manifest import NOT_PLAIN, plain_value, same_plain

        for home, name, before, what, where in self._assigned.values():
            now = (home.f_locals if isinstance(home, types.FrameType) else home).get(name, before)
            if now is not before and (plain_value(now) is NOT_PLAIN or not same_plain(plain_value(now),
                                                                                      plain_value(before))):
                self._effect(f"assigning {what}", where)
        for value, before, what, function, where in self._iterators.values():
            if _position(value) != before:  # (a builtin's arguments are not given to the hook: by its position)
                self._effect(f"advancing the iterator {what} (`next()` in `{function}` or code it calls: eager takes "
                             "the next items at each call, the package the items of capture)", where)
        for value, before, name, function, where, slots in self._snapshots.values():
            if id(value) in self.containers_changed:  # (warned about at the call that changed it)
                self.changed_slots.update(slots)
            elif not same_plain(before, plain_value(value)):
                self.changed_slots.update(slots)
                self.containers_changed.add(id(value))
                self.effects.append(Effect(f"changing {name} in place (a store in `{function}` or code it "
                                           "calls)", where))

    def changed(self, value, held: dict, name: str) -> bool:
        """Whether the program changed container ``value``, ``held[name]``, in place
        (``LOG.append(x)``, ``CACHE[key] = 1``): a side effect, not data compiled in. (By
        its slot too: torch.export puts back a module's attributes after its run, as new
        objects.)"""
        return id(value) in self.containers_changed or (id(held), name) in self.changed_slots

    def _torch_call(self, frame, parent) -> None:
        """A torch function called by the program: note the ones with Python-level effects."""
        code = frame.f_code
        role = _torch_role(code)
        if role == "disable_dynamo":  # (the function it wraps, ``torch.manual_seed``, is what the program calls)
            code = getattr(frame.f_locals.get("fn"), "__code__", code)
            role = "setter" if _torch_role(code) == "setter" else None
        if role is None or parent not in self._users:
            return
        if role == "graph_break":
            self._add("torch._dynamo.graph_break() (the package is one graph: nothing is split here)", parent)
        elif role == "autograd.grad":
            # a gradient the program computes (forces from an energy, a gradient penalty): a
            # value, traced through make_fx as torch.func's transforms are
            self.transforms.append(f"torch.autograd.grad at {parent.f_code.co_filename}:{parent.f_lineno}")
        elif role == "backward":
            # torch.autograd.backward, or Tensor.backward (until 2026-12-04 unseen: such a
            # program compiled, and its package returned a value where eager raised)
            self.autograd_calls.append(f"backward at {parent.f_code.co_filename}:{parent.f_lineno}")
        elif role == "transform":
            self.transforms.append(f"{code.co_name} at {parent.f_code.co_filename}:{parent.f_lineno}")
        elif role == "vmap":
            self.vmaps.append(f"vmap at {parent.f_code.co_filename}:{parent.f_lineno}")
        elif role == "dynamo_traced":  # (its arguments, and the region's function its closure holds)
            # (a tensor its functions make with no device= is not seen: dynamo traces them
            # without the function mode that sees such calls; taken as made, the package
            # is guarded on the default device)
            self.setting_reads.setdefault("default_device", f"{parent.f_code.co_filename}:{parent.f_lineno}")
            seen: set = set()
            values = [v for x in list(frame.f_locals.values())
                      for v in (x if isinstance(x, (tuple, list)) else x.values() if isinstance(x, dict) else (x,))]
            # (a region's method, ``self.block(z)``: the region's function gets the module first)
            owner = next((v for v in values if isinstance(v, torch.nn.Module)), None)
            for value in values:
                self._unrun(value, owner if isinstance(value, types.FunctionType) else None, seen)
        elif role == "setter":
            random_state = "seed" in code.co_name or "rng" in code.co_name
            self._add(_GLOBAL_SETTERS[_torch_key(code)], parent,
                      "ran once at capture; the package will not run it again at each call, so its random ops "
                      "draw from the generator where the caller left it, where eager's draw after the reseed: "
                      "seed before the call" if random_state else None)
        elif role == "setting":
            where = f"{parent.f_code.co_filename}:{parent.f_lineno}"
            self.setting_reads.setdefault(_SETTING_READS[_torch_key(code)], where)
        elif role == "backend_setting":  # (torch.backends.cudnn.enabled, ...mps.is_available())
            name = compat.backend_settings().read(code, frame.f_locals)
            if name is not None:
                self.backend_reads.setdefault(name, f"{parent.f_code.co_filename}:{parent.f_lineno}")
        elif role == "backend_setter":
            name = compat.backend_settings().written(code, frame.f_locals)
            if name is not None:
                self._add(f"setting {name}", parent)
        elif role == "tensor_hook":
            self.tensor_hooks.append(f"{parent.f_code.co_filename}:{parent.f_lineno}")
        elif role == "parameter":
            self.parameter_ctors.append(f"{parent.f_code.co_filename}:{parent.f_lineno}")
        elif role == "grad_mode":
            manager = frame.f_locals.get("self")
            if code.co_name == "__init__" and type(manager).__name__ == "set_grad_enabled":
                self.grad_mode_sets[id(manager)] = f"{parent.f_code.co_filename}:{parent.f_lineno}"
            elif code.co_name == "__exit__":
                self.grad_mode_sets.pop(id(manager), None)

    def _add(self, what: str, frame, why: str | None = None) -> None:
        self._effect(what, f"{frame.f_code.co_filename}:{frame.f_lineno}", why)

    def _effect(self, what: str, where: str, why: str | None = None) -> None:
        if (what, where) not in self._seen:
            self._seen.add((what, where))
            self.effects.append(Effect(what, where) if why is None else Effect(what, where, why))


def _position(it, depth: int = 0) -> object:
    """Where iterator ``it`` stands, as far as Python shows it without advancing it: a
    generator's frame and instruction, the items left (``length_hint``: a list's, a
    range's, a dict's iterator), else its repr where that shows its state
    (``count(5)``), else where the iterators it draws from stand (``map``, ``zip``,
    ``filter``, ``enumerate``: by their ``__reduce__``, which names them and an
    ``enumerate``'s count; unseen until 2026-12-07); None where nothing does."""
    if isinstance(it, types.GeneratorType):
        return ("generator", it.gi_frame.f_lasti if it.gi_frame is not None else None)
    try:  # (a user's iterator class may raise in any of these)
        hint = operator.length_hint(it, -1)
        if hint >= 0 and hasattr(it, "__length_hint__"):
            return ("left", hint)
        text = repr(it)
        if " at 0x" not in text:
            return text[:200]
        reduced = it.__reduce__() if depth < 4 and type(it) in _DRAWING_ITERATORS else None
    except Exception:
        return None
    if not (isinstance(reduced, tuple) and len(reduced) > 1 and isinstance(reduced[1], tuple)):
        return None
    inner = tuple(_position(a, depth + 1) if hasattr(a, "__next__") else a if type(a) is int else None
                  for a in reduced[1])
    return (type(it).__name__, inner) if any(p is not None for p in inner) else None


def _stores_of(code: types.CodeType) -> dict[str, tuple[str, int]]:
    """The globals (``global n``) and the closure's variables (``nonlocal n``) that
    ``code`` assigns: name -> (``"global"`` or ``"nonlocal"``, the line of its first store)."""
    import dis

    found, line = {}, code.co_firstlineno
    for instruction in dis.get_instructions(code):
        line = instruction.positions.lineno or line if instruction.positions else line
        if instruction.opname in ("STORE_GLOBAL", "DELETE_GLOBAL"):
            found.setdefault(instruction.argval, ("global", line))
        elif instruction.opname in ("STORE_DEREF", "DELETE_DEREF") and instruction.argval in code.co_freevars:
            found.setdefault(instruction.argval, ("nonlocal", line))
    return found


def _torch_key(code: types.CodeType) -> tuple[str, str] | None:
    """(file under torch/, function name) of torch's code, the key of the tables above."""
    file = code.co_filename
    return (file[len(_TORCH_DIR):], code.co_name) if file.startswith(_TORCH_DIR) else None


def _torch_role(code: types.CodeType) -> str | None:
    """What calling this torch function means to capture (``_torch_call``), or None for
    the rest of torch, whose calls never matter (``_monitored`` switches them off)."""
    name, file = code.co_name, code.co_filename
    if name == "graph_break" and file.endswith(os.path.join("_dynamo", "decorators.py")):
        return "graph_break"
    if name == "grad" and file.endswith(os.path.join("autograd", "__init__.py")):
        return "autograd.grad"
    if name == "backward" and file.endswith((os.path.join("autograd", "__init__.py"),
                                            os.path.join("torch", "_tensor.py"))):
        return "backward"
    if name in _TRANSFORMS and os.path.basename(os.path.dirname(file)) == "_functorch":
        return "transform"
    if name == "vmap" and os.path.basename(os.path.dirname(file)) == "_functorch":
        return "vmap"
    if name in _DYNAMO_TRACED and file.endswith(os.path.join("_higher_order_ops", _DYNAMO_TRACED[name])):
        return "dynamo_traced"
    if _torch_key(code) in _GLOBAL_SETTERS:
        return "setter"
    if _torch_key(code) in _SETTING_READS:
        return "setting"
    if code in compat.backend_settings().codes:
        return "backend_setting"
    if code in compat.backend_settings().set_codes:
        return "backend_setter"
    if name == "inner" and file == _DISABLE_DYNAMO_FILE:
        # ``torch._disable_dynamo``'s wrapper, around ``torch.manual_seed`` (its events stay on:
        # ``_monitored`` switches off those of torch's code without a role, for the process)
        return "disable_dynamo"
    if name == "__new__" and file.endswith(os.path.join("nn", "parameter.py")):
        return "parameter"
    if name in ("register_hook", "register_post_accumulate_grad_hook") and file.endswith(
            os.path.join("torch", "_tensor.py")):
        return "tensor_hook"
    if file.endswith(os.path.join("autograd", "grad_mode.py")):
        return "grad_mode"
    return None


def _code_of(function) -> types.CodeType | None:
    """A function's code (a bound method's function's), or None for a builtin."""
    return getattr(getattr(function, "__func__", function), "__code__", None)


def _external_name(obj, frame) -> str | None:
    """How the program reaches ``obj`` if it lives outside this call (a global, a
    closure cell, an attribute of ``self``), else None (a local the call made)."""
    code = frame.f_code
    for name in code.co_freevars:
        if frame.f_locals.get(name) is obj:
            return f"the closure variable `{name}`"
    for name in code.co_names:
        if frame.f_globals.get(name) is obj:
            return f"the global `{name}`"
    attribute = _self_attribute(obj, frame)
    return f"the attribute `{_self_name(frame)}.{attribute}`" if attribute is not None else None


def _self_name(frame) -> str:
    """The name the code calls its ``self`` by (``_first_argument``)."""
    code = frame.f_code
    first = code.co_varnames[0] if code.co_argcount else "self"
    return first if "self" not in code.co_freevars or isinstance(frame.f_locals.get(first), torch.nn.Module) \
        else "self"


def _first_argument(frame):
    """A method's ``self``, whatever the code names it (``def row(s, r)``), or the
    ``self`` a closure reads (``lambda t: t * self.scale``), else None."""
    code = frame.f_code
    return frame.f_locals.get(_self_name(frame)) if code.co_argcount or "self" in code.co_freevars else None


def _self_attribute(obj, frame) -> str | None:
    """The name of the attribute of the frame's ``self`` that ``obj`` is, else None."""
    owner = _first_argument(frame)
    return next((name for name, value in getattr(owner, "__dict__", {}).items() if value is obj), None)
