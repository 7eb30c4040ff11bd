"""The loaded program: guards -> variant dispatch -> backend call -> outputs.

This module is on the load path, so it imports only torch, safetensors-free readers and
the backend chosen by the package. It must not import ``torch._inductor`` or
``torch._dynamo``, probe the CPU or run a compiler (bench/warm_start.py checks that).

Example:
    >>> import aotpack, torch
    >>> path = aotpack.compile(torch.nn.Linear(512, 10), (torch.randn(8, 512),), backend="eager").save("mlp.aot")
    >>> fn = aotpack.load("mlp.aot")
    >>> y = fn(torch.randn(8, 512))
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import warnings
import weakref
from collections.abc import Sequence

import torch

from .. import tree
from .._torch_version import torch_version
from ..backends import get_backend
from ..errors import (
    AotpackError,
    FormatError,
    GuardError,
    IncompatibleError,
    IndexOutOfRange,
    IntegerDivisionByZero,
    PortableRunWarning,
    RebuildWarning,
)
from ..package import fmt
from ..package.manifest import Manifest, Meta, Program, Variant
from ..package.reader import PackageReader, in_memory_file
from ..package.sizes import number_evaluator
from ..package.weights import copy_in_layout
from ..treespec import TensorLeaf, TreeSpec, TupleSpec
from .guards import TRANSFORMED, Flat, Guard, Mismatch, mode_expected

__all__ = ["Loaded", "load"]


class _Files:
    """A variant's files as the backend protocol's VariantFiles; subclasses say where
    the bytes come from."""

    meta: dict
    _tmp: str | None = None

    def _bytes(self, name: str):
        raise NotImplementedError

    def read(self, name: str) -> bytes:
        return bytes(self._bytes(name))

    def path(self, name: str) -> str:
        # A private folder per load: no other user can swap the file before it is opened.
        self._tmp = self._tmp or tempfile.mkdtemp(prefix="aotpack-")
        target = os.path.join(self._tmp, name.replace("/", "_"))
        with open(target, "wb") as f:
            f.write(self._bytes(name))
        return target

    def cleanup(self) -> None:
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


class _VariantFiles(_Files):
    """A variant's members in the (verified) package file."""

    def __init__(self, reader: PackageReader, variant: Variant):
        self._reader = reader
        self._prefix = fmt.variant_dir(variant.name)
        self._listed = frozenset(variant.files)  # the files load verified: the only ones handed out
        self._variant = variant.name
        self.meta = variant.meta.to_json()  # the backend's own JSON, as it wrote it

    def _bytes(self, name: str):
        if name not in self._listed:
            from ..errors import FormatError

            raise FormatError(f"variant {self._variant}'s backend reads {name}, which the variant's manifest entry "
                              "does not list (so no digest of it was checked)",
                              hint="aotpack never writes this: the package was edited; rebuild it")
        return self._reader.view(self._prefix + name)


class _MemoryFiles(_Files):
    """A rebuilt variant's files, still in memory (``compiled``: what the rebuild made,
    written back by ``load(..., rewrite=True)``)."""

    def __init__(self, files: dict[str, bytes], meta: dict, compiled=None):
        self._files, self.meta, self.compiled = files, meta, compiled

    def _bytes(self, name: str):
        return self._files[name]


def _rebuildable(variant: Variant) -> bool:
    if variant.train:
        return False  # a rebuild recompiles the inference program; training needs its backward too
    device = variant.device
    return device == "cpu" or (device == "cuda" and torch.cuda.is_available())


def _rewrite(path, rebuilt: dict) -> None:
    """Put rebuilt variants' files into the package file, atomically."""
    from ..package import Package
    from ..package.writer import locked

    with locked(path):
        _rewrite_locked(Package.open(path), path, rebuilt)


def _rewrite_locked(pkg, path, rebuilt: dict) -> None:
    for name, (_, compiled) in rebuilt.items():
        prefix = fmt.variant_dir(name)
        entry = pkg.manifest.variant(name)
        for rel in entry.files:
            pkg.members.pop(prefix + rel, None)
        for rel, data in compiled.files.items():
            pkg.members[prefix + rel] = data
        rebuilt_entry = entry.replace(files=list(compiled.files), meta=Meta.from_json(compiled.meta),
                                      torch=torch_version())
        pkg.manifest = pkg.manifest.replace(variants=[rebuilt_entry if v.name == name else v
                                                      for v in pkg.manifest.variants])
    pkg.save(path)


class _Variant:
    __slots__ = ("name", "guard", "fast", "fn", "weights", "manifest", "state", "portable")

    def __init__(self, name, guard, fn, weights, manifest, state=None, portable=False):
        self.name, self.guard, self.fn, self.weights, self.manifest = name, guard, fn, weights, manifest
        self.fast = guard.fast or _never
        # checks of the bound module at each call (None: nothing bound to check)
        self.state = state
        # whether its portable program runs a call that overlaps where it updates an input
        self.portable = portable


# inductor's and AOTInductor's bounds check of an indirect index: "index out of bounds: 0 <= tmp2 < 10L"
_BOUNDS_CHECK = re.compile(r"index out of bounds: ([^\n]*?)\s*$", re.MULTILINE)


def _never(args, kwargs):
    return None


def _module_state_check(variant: Variant, module: torch.nn.Module | None, params: list[tuple[str, int]],
                        weights: list):
    """A check of what a bound module may change between calls: its ``training`` flag
    (the program was captured in one mode) and its parameters' requires_grad, which
    decides whether eager would build an autograd graph. ``params``: (name, index in
    ``weights``), the live list binding.Binding keeps current. ``module`` None: the
    package's own parameters (``_trainable_weights``), whose requires_grad is checked the
    same way. Returns a function giving None or the Mismatch to raise."""
    if module is None:
        def module_weight(name: str, kind: str) -> str:
            return f"package {kind} {name!r}"
    else:
        from .binding import module_weight  # (binding loads only where a module is bound)

    want_training = variant.module_training if module is not None else None
    train = variant.train
    # parameters whose requires_grad the program read: export kept one branch
    pinned = [(name, i, variant.requires_grad_weights[name]) for name, i in params
              if name in variant.requires_grad_weights]
    detached = frozenset(() if train else variant.detached_weights)
    if train:  # weights whose gradient the backward computes
        compiled_grad = train.weights_requires_grad or train.grad_mask[:len(variant.weights)]

    def check(requires_grad_checked: bool = False):
        # requires_grad_checked: the binding's native check saw each weight's
        # requires_grad as it was when this loop last passed (binding.Binding.__call__)
        if want_training is not None and module.training != want_training:
            return Mismatch([], mode_expected(want_training), str(module.training), where="module.training")
        for name, i, want in pinned:
            if weights[i].requires_grad != want:
                return Mismatch([], f"{want}: the program reads it and was compiled with that branch",
                                str(weights[i].requires_grad), where=f"{module_weight(name, 'parameter')}.requires_grad")
        if requires_grad_checked or not torch.is_grad_enabled():
            return None
        for name, i in params:
            # a gradient compiled for a parameter that no longer requires grad is
            # dropped by autograd, as eager computes none: only the other way is wrong
            # (or a parameter the program detaches: eager's outputs need no grad of it)
            if weights[i].requires_grad and not (train and compiled_grad[i]) and name not in detached:
                why = ("an inference package builds no autograd graph (call it under torch.no_grad() or "
                       "torch.inference_mode(), set the parameter's requires_grad to False, or compile with "
                       "train=True)"
                       if not train else "no gradient was compiled for it; recompile with it requiring grad")
                return Mismatch([], f"False: {why}", "True", where=f"{module_weight(name, 'parameter')}.requires_grad")
        return None

    return check


def _unflattener(spec: TreeSpec, plain: bool = False):
    """outputs -> result, with straight paths for one tensor and a tuple of tensors. The
    ints of size leaves come after the tensors (``_with_sizes``)."""
    n_sizes = len(spec.size_indices())
    if n_sizes:
        return lambda outs: tree.unflatten(spec, outs, plain, outs[len(outs) - n_sizes:])
    if isinstance(spec, TensorLeaf) and spec.index == 0:
        return lambda outs: outs[0]
    if isinstance(spec, TupleSpec) and all(isinstance(c, TensorLeaf) and c.index == i
                                           for i, c in enumerate(spec.children)):
        return tuple
    return lambda outs: tree.unflatten(spec, outs, plain)


class Loaded:
    """A package loaded in this process; call it like the original program.

    Attributes:
      manifest: the package's manifest.
      variants: names of the variants loaded, in dispatch order.
      signer: the key that signed the package (``signing.Signer``) when load was given
        trusted keys, else None.
      state: buffers the program updates in place (a static KV cache), name -> tensor:
        this loaded package's own copy, shared by its variants; ``reset_state()`` puts
        back the values the package stores. Empty for most programs.
    """

    def __init__(self, manifest: Manifest, variants: list[_Variant], check_guards: bool = True, path: str = "",
                 plain_types: bool = False, signer=None, initial_state: dict | None = None):
        self.manifest = manifest
        self.path = path
        self._variants = variants
        self._single = variants[0] if len(variants) == 1 and variants[0].state is None else None
        self._out_spec = manifest.program.out_spec
        self._result = _unflattener(self._out_spec, plain_types)
        self._check_guards = check_guards
        self.signer = signer
        self._keys = None  # the trusted keys the load checked (load sets them)
        self._source = path  # what example_inputs() reads again (the memory file of a load from bytes)
        self._initial_state = initial_state or {}  # name -> the value the package stores
        self._portable: dict = {}  # variant name -> its portable program, read at the first call that needs it
        self._bound = False  # (load sets it: a module's tensors, not the package's own)
        declared = {n for v in variants for n in v.manifest.state}  # (not the aliases of them)
        self.state = {}
        for name, w in self._state_copies():
            if name in declared:
                self.state.setdefault(name, w)  # the first device's copy
        self.__name__ = manifest.program.name
        self.__doc__ = f"aotpack package of {manifest.program.name} ({manifest.program.source})"

    @property
    def variants(self) -> list[str]:
        return [v.name for v in self._variants]

    def _state_copies(self):
        """(name, tensor) of every state tensor the variants run with, on every device."""
        for v in self._variants:
            for name, w in zip(v.manifest.weights, v.weights):
                if name in self._initial_state:
                    yield name, w

    def named_parameters(self):
        """(name, tensor) of each weight the package's calls differentiate: for a training
        package loaded without a module, its own parameters, leaves that require grad,
        which ``backward()`` fills ``.grad`` of, as the original module's (an optimizer
        over ``parameters()`` trains the package with no model code); for a bound load,
        the module's parameters it uses. Names are the module's (``0.weight``); each
        tensor once. Empty for an inference package loaded alone (its weights are frozen).

        Example:
            >>> step = aotpack.load("train.aot")                                # doctest: +SKIP
            >>> opt = torch.optim.SGD(step.parameters(), lr=0.1)               # doctest: +SKIP
        """
        seen = set()
        for v in self._variants:
            for name, w in zip(v.manifest.weight_fqns, v.weights):
                if isinstance(w, torch.Tensor) and w.requires_grad and id(w) not in seen:
                    seen.add(id(w))
                    yield name, w

    def parameters(self):
        """The tensors of ``named_parameters()``."""
        return (w for _, w in self.named_parameters())

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The parameters and buffers the package holds now, by the module's names
        (detached, sharing memory, as ``nn.Module.state_dict``): after training a package
        loaded alone, ``model.load_state_dict(step.state_dict(), strict=False)`` puts the
        trained weights into a model of the same code. (Frozen constants and module
        globals the program reads are left out: no module holds them under a name; those a
        training package trains are in, by its names: ``lin.weight``, ``constant:W``.)"""
        out = {}
        for name, w in self._held():
            out.setdefault(name, w.detach())  # (the first device's copy)
        return out

    def _held(self):
        """(module name, tensor) of each parameter and buffer the variants hold, each
        tensor once (a copy per device, each)."""
        program, seen = self.manifest.program, set()
        for v in self._variants:
            for key, name, w, trained in zip(v.manifest.weights, v.manifest.weight_fqns, v.weights,
                                             v.manifest.trained_weights()):
                if (trained or program.weight(key).kind in ("parameter", "buffer")) and isinstance(w, torch.Tensor) \
                        and id(w) not in seen:
                    seen.add(id(w))
                    yield name, w

    def load_state_dict(self, state_dict: dict, strict: bool = True) -> None:
        """Copy ``state_dict``'s tensors into the parameters and buffers the package holds,
        by the module's names (``state_dict()``'s): resume training a package loaded alone
        from a checkpoint, or run it with other weights of the same shapes. Every copy the
        variants hold (one per device) is written; the file is not.

        Args:
          state_dict: name -> tensor, as ``state_dict()`` or the model's ``state_dict()``.
          strict: every name the package holds must be given, and no other.
        Raises:
          AotpackError: a name is missing or unknown (strict), a tensor's shape or dtype
            is not the weight's, or the package is bound to a module (load the state into
            the module instead: the package reads the module's tensors).

        Example:
            >>> step.load_state_dict(torch.load("checkpoint.pt"))      # doctest: +SKIP
        """
        if self._bound:
            raise AotpackError(f"{self.__name__} is bound to a module, whose tensors it reads at each call",
                               hint="call module.load_state_dict(...) instead")
        held = list(self._held())
        names = {name for name, _ in held}
        missing, unexpected = sorted(names - set(state_dict)), sorted(set(state_dict) - names)
        if strict and (missing or unexpected):
            raise AotpackError(f"{self.__name__}.load_state_dict: missing {missing[:5]}, unexpected {unexpected[:5]}",
                               hint="give exactly the names of state_dict(), or pass strict=False")
        for name, w in held:
            value = state_dict.get(name)
            if value is None:
                continue
            if not isinstance(value, torch.Tensor) or value.shape != w.shape or value.dtype != w.dtype:
                got = (f"{tree.dtype_name(value.dtype)}{list(value.shape)}" if isinstance(value, torch.Tensor)
                       else type(value).__name__)
                raise AotpackError(f"{self.__name__}.load_state_dict: {name} is {got}, the package's weight "
                                   f"{tree.dtype_name(w.dtype)}{list(w.shape)}",
                                   hint="load a state of the same model and dtype")
        with torch.no_grad():
            for name, w in held:
                if name in state_dict:
                    w.copy_(state_dict[name])

    def reset_state(self) -> None:
        """Put every state tensor (``self.state``) back to the value the package stores,
        on every device a variant holds a copy on."""
        with torch.no_grad():
            for name, w in self._state_copies():
                w.copy_(self._initial_state[name])

    def __call__(self, *args, **kwargs):
        v = self._single
        if v is not None:  # the common case: one variant, nothing bound to check, no list of failures
            flat = v.fast(args, kwargs) if self._check_guards else None
            if flat is None:
                try:
                    flat = v.guard.check(args, kwargs, self._check_guards)
                except Mismatch as m:
                    if m.portable and v.portable:
                        return self._run_portable(v, m, args, kwargs)
                    raise self._guard_error([(v, m)], args, kwargs) from None
            if flat.__class__ is not list:  # an updated input copied into its compiled layout
                return self._run(v, flat, args, kwargs)
            try:
                return self._result(v.fn(v.weights + flat))
            except RuntimeError as e:
                raise self._backend_error(e, v, flat, args, kwargs) from e
        variants = self._variants
        if self._check_guards:
            for v in variants:
                flat = v.fast(args, kwargs)
                if flat is not None and (v.state is None or v.state() is None):
                    return self._run(v, flat, args, kwargs)
        if len(variants) > 1 and self._check_guards:
            # a variant compiled for the caller's memory layouts, before one that copies
            for v in variants:
                try:
                    flat = v.guard.check(args, kwargs, adapt=False)
                    if v.state is None or v.state() is None:
                        return self._run(v, flat, args, kwargs)
                except Mismatch:
                    continue
        failures = []
        for v in variants:
            try:
                flat = v.guard.check(args, kwargs, self._check_guards)
                problem = v.state() if v.state is not None and self._check_guards else None
                if problem is not None:
                    raise problem
            except Mismatch as m:
                failures.append((v, m))
                continue
            return self._run(v, flat, args, kwargs)
        for v, m in failures:  # the most specific variant whose compiled code alone refuses the call
            if m.portable and v.portable:
                return self._run_portable(v, m, args, kwargs, failures)
        raise self._guard_error(failures, args, kwargs) from None

    def _run_portable(self, v, why: Mismatch, args, kwargs, failures=None):
        """Run variant ``v``'s portable program (torch.export's graph: eager ops in order,
        in-place updates where the program makes them) on the caller's own tensors: the
        call breaks an assumption only compiled code makes of their memory (``why``), as
        torch.compile recompiles for it (``_runs_portable`` says which variants may)."""
        others = [f for f in failures or () if f[0] is not v]
        try:
            flat = v.guard.check(args, kwargs, self._check_guards, portable=True)
        except Mismatch as again:  # (an input in another layout too): the overlap is what the call is refused for,
            # unless no program of the variant runs under the call's state (a custom Function under a transform)
            raise self._guard_error([(v, again if again.decisive else why), *others], args, kwargs) from None
        problem = v.state() if v.state is not None and self._check_guards else None
        if problem is not None and not problem.portable:  # the bound module changed: named as compiled calls name it
            raise self._guard_error([(v, problem), *others], args, kwargs) from None
        run = self._portable.get(v.name)
        if run is None:
            from .._torch_compat import outside_transforms
            from ..build.rebuild import portable_program  # (its first use in this process)

            # (read outside the call's torch.func transform, if any: its tensors are not the program's)
            with PackageReader(self._source, self._keys) as r, outside_transforms():  # checked like the load's own
                run = _as_inference_tensors(portable_program(r, v.manifest), v.manifest, self.manifest.program)
            after = v.manifest.global_state.grad_mode_after
            run = _with_sizes(run, v.manifest)
            self._portable[v.name] = run = _leaving_grad_mode(run, after) if after is not None else run
            path = v.guard.path(why, args, kwargs)
            warnings.warn(f"aotpack: {self.__name__}({path}) runs the package's portable program op by op, at eager "
                          f"speed: its compiled code expects {why.expected}, got {why.actual} (variant {v.name}; "
                          "this warning once per variant)", PortableRunWarning, stacklevel=_user_stacklevel())
        return self._result(run(v.weights + flat))

    def _run(self, v, flat: list, args, kwargs):
        try:
            out = self._result(v.fn(v.weights + flat))
        except RuntimeError as e:
            raise self._backend_error(e, v, flat, args, kwargs) from e
        if isinstance(flat, Flat):  # the updates of inputs copied into their compiled layout, back
            flat.finish()
        return out

    def _backend_error(self, error: RuntimeError, v, flat: list, args, kwargs) -> Exception:
        """What a backend's RuntimeError means: a GuardError when an input is a torch.func
        transform's wrapper (vmap, grad, jvp: compiled code reads storage, which such a
        tensor has none of); IndexOutOfRange where the compiled code's bounds check found
        an index out of range, IntegerDivisionByZero where its check found a zero divisor
        (inductor's and AOTInductor's message names a generated file and, for
        AOTInductor, carries a C++ stack); else the error itself."""
        bound = _BOUNDS_CHECK.search(str(error))
        if bound is not None:
            check = re.sub(r"(\d+)L\b", r"\1", re.sub(r"\btmp\d+\b", "index", bound.group(1)))
            return IndexOutOfRange(f"{self.__name__}: an index the call computes is out of range (the compiled "
                                   f"code's bounds check: {check}); eager PyTorch raises IndexError for this call too",
                                   hint="check the values of the call's integer inputs (token ids against the "
                                        "vocabulary, indices against the size of what they index)")
        if "ZeroDivisionError" in str(error):  # (inductor_cpu_throw_if_integer_div_error, a generated file's line)
            return IntegerDivisionByZero(f"{self.__name__}: the call divides integers by zero (the compiled code's "
                                         "check); eager PyTorch raises RuntimeError: ZeroDivisionError for it too",
                                         hint="check the values of the call's integer inputs used as divisors")
        if v.guard.raw_memory:
            from .._torch_compat import functorch_wrapped

            for i, t in enumerate(flat):
                if isinstance(t, torch.Tensor) and functorch_wrapped(t):
                    m = Mismatch(v.guard.tensor_path(i), *TRANSFORMED, late=True)
                    return self._guard_error([(v, m)], args, kwargs)
        return error

    def _guard_error(self, failures, args, kwargs) -> GuardError:
        # name first the variant that got furthest: one whose shapes and dtypes fit and
        # that failed on requires_grad, layout, shared memory or the bound module
        failures = sorted(failures, key=lambda f: 0 if f[1].late else 1)
        v, m = failures[0]
        path = v.guard.path(m, args, kwargs)
        tried = "; ".join(f"{x.name}: " + ", ".join(x.guard.described_inputs()) for x, _ in failures)
        message = f"{path}: expected {m.expected}, got {m.actual}"
        if len(failures) > 1:
            others = "; ".join(f"{x.name}: {x.guard.path(mm, args, kwargs)} expected {mm.expected}, got {mm.actual}"
                               for x, mm in failures[1:])
            message += f" (variant {v.name}; also {others})"
        if m.where is not None and m.where.startswith(("module", "global ", "torch.Tensor.")):  # (the binding's)
            return GuardError(message, hint="the module bound at load, or a global its code reads, changed since the "
                                            "load in a way the compiled code cannot follow: undo the change, or "
                                            "compile the package again from the module as it is now")
        return GuardError(message, hint=f"the package was compiled for {tried}")

    def example_inputs(self, variant: str | None = None) -> tuple[list, dict]:
        """(args, kwargs) recorded when ``variant`` (default: the first) was compiled.

        Example:
            >>> args, kwargs = fn.example_inputs(); fn(*args, **kwargs)   # doctest: +SKIP
        """
        with PackageReader(self._source, self._keys) as r:  # the keys of the load: the same signature holds
            v = r.variant(variant)
            member = fmt.variant_dir(v.name) + fmt.EXAMPLES
            if not r.has(member):
                raise AotpackError(f"{self.path} holds no example inputs for variant {v.name}",
                                   hint="compile it with examples=True")
            r.verify([member])
            flat = r.tensors(member)
        values = tree.unflatten(v.in_spec, [flat[f"input{i}"] for i in range(len(flat))])
        return tree.call_arguments([(p.name, p.kind) for p in self.manifest.program.signature], values)

    def __repr__(self) -> str:
        return f"<aotpack.Loaded {self.__name__} variants={self.variants}>"


def incompatibilities(manifest: Manifest, variant: Variant, backends: Sequence = ()) -> list[str]:
    """Why ``variant`` cannot run here (empty if it can): the checks load makes before
    using it (backend available, torch/machine/CPU/GPU, device present, ops registered)."""
    from ..backends import find_backend

    problems = []
    meta = variant.meta
    try:
        backend = find_backend(variant.backend, backends)
        if backend is None:
            entry = f" ({variant.backend_entry})" if variant.backend_entry else ""
            problems.append(f"backend: {variant.backend!r}{entry} is not available here (pass load(..., "
                            "backends=[...]) or install it in the 'aotpack.backends' entry-point group)")
        elif hasattr(backend, "incompatibilities"):  # the backend's own policy (backends/__init__.py)
            problems.extend(backend.incompatibilities(variant, manifest))
    except Exception as e:  # noqa: BLE001 - a plugin that fails to load is a reason, not a crash
        problems.append(f"backend: {variant.backend!r} fails to load: {type(e).__name__}: {e}")
    settings = variant.global_state.backends
    if settings:
        from .._torch_compat import backend_settings

        unknown = sorted(set(settings) - set(backend_settings().readers))
        if unknown:
            problems.append(f"settings: the program read {', '.join(unknown)}, which torch {torch_version()} does not "
                            "have (load it with the torch that compiled it)")
    missing = meta.ops()
    if missing:  # (most packages call no custom op: their load never imports the wrappers)
        from .._torch_compat import op_available

        if any(op.startswith("aotpack::") for op in missing):  # aotpack's own ops: registered by a fixed module
            from .. import kernels  # noqa: F401 - (never a module a package names)
        missing = [op for op in missing if not op_available(op)]
    if missing:
        problems.append(f"ops: the variant calls {', '.join(missing)}, not registered in this process "
                        "(import the library that defines them before loading)")
    device = variant.device
    if variant.distributed is not None:
        from .job import mismatches

        problems.extend(mismatches(variant.distributed, device))
    if device == "cuda" and not torch.cuda.is_available():
        problems.append("device: the variant runs on CUDA, and no CUDA device is available")
    return problems


def _user_stacklevel() -> int:
    """``warnings.warn``'s stacklevel, from its caller, of the first frame outside aotpack
    and torch: the user's line, also where a call reaches the package through torch's
    frames (``torch.func.vmap(fn)(x)``)."""
    inside = (os.path.dirname(torch.__file__), os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(inside):
        frame, level = frame.f_back, level + 1
    return level


def _runs_portable(reader: PackageReader, variant: Variant) -> bool:
    """Whether the variant's portable program runs a call as eager would, overlapping
    updated inputs included: torch.export's graph with the in-place ops in the program's
    order. An inference variant's program.json is that graph. Training variants (AOT
    autograd needs the functional form) and those compiled under autocast (its region
    inlined) store a graph retraced functionally, where a read of one input after
    another's update reads its value from before, which an overlap makes differ: they
    run such calls where they store the graph from before the retrace too
    (program_in_order.json; not where a custom Function's backward would be lost). A
    training variant that updates nothing runs its functional program where differentiating
    it gives the package's gradients (``Train.program_gradients``: a call under a
    torch.func transform; a layout an output's view needs)."""
    train = variant.train
    if variant.global_state.autocast is None and (
            train is None or (train.program_gradients and not train.mutation_targets)):
        return True
    return reader.has(fmt.variant_dir(variant.name) + fmt.PROGRAM_IN_ORDER)


def _with_views(fn, variant: Variant):
    """An inference variant's callable that returns views of the caller's tensors where
    eager does (views.py); a view whose numbers depend on the Dims takes them from the
    call's input sizes."""
    aliased = variant.aliased
    if not aliased:
        return fn
    from .views import dim_places, view_rebuilder  # only packages with such outputs import it

    rebuild = view_rebuilder(aliased, dim_places(variant.inputs, len(variant.weights)))

    def run(flat):
        return rebuild(list(fn(flat)), flat)

    return run


def _with_sizes(fn, variant: Variant):
    """A variant's callable that returns, after the tensors, the numbers that follow the
    call's Dims (``return y, x.shape[0], x.shape[0] / 2``: ``Variant.output_sizes``), each
    evaluated from the call's input sizes as eager computes it."""
    if not variant.output_sizes:
        return fn
    from .views import call_sizes, dim_places

    where = dim_places(variant.inputs, len(variant.weights))
    numbers = [number_evaluator(n) for n in variant.output_sizes]

    def run(flat):
        sizes = call_sizes(where, flat)
        values = [f(sizes) for f in numbers]
        if None in values:
            raise FormatError(f"variant {variant.name}: the expression of a number it returns "
                              f"({variant.output_sizes[values.index(None)]}) gives no value of its type for the "
                              f"call's sizes {sizes} (a division by zero or an overflow, which eager raises too; "
                              "else an edited package)", hint="call it with other sizes, or rebuild the package "
                                                              "from the model")
        return [*fn(flat), *values]

    return run


def _bound_parameters(variant: Variant, program: Program) -> list[tuple[str, int]]:
    """(name, weight index) of the weights a variant uses but its buffers, for the
    per-call requires_grad check of a bound module: its parameters, and the constants
    that may be a bound module's plain tensor attributes (``constant:scale``) or what a
    function's program reads by name (``lin.weight``, ``W``: the objects of
    ``module={...}``). One that stays the package's own requires no grad."""
    return [(fqn, i) for i, key in enumerate(variant.weights) if program.weight(key).kind != "buffer"
            for fqn in (variant.weight_fqns[i],)]


def _specificity(variant: Variant) -> tuple:
    """Sort key: fewer dynamic dimensions first, then narrower ranges (most specific
    first); inference before training variants (cheaper where both accept a call)."""
    dynamic, width = 0, 0
    for g in variant.inputs:
        for s in g.shape:
            if isinstance(s, str):
                dynamic += 1
                r = variant.dims[s]
                width += (r.max - r.min) if r.max is not None else 2**62
    return dynamic, width, variant.train is not None


def load(path: str | os.PathLike, module: torch.nn.Module | dict | None = None, *, check_guards: bool = True,
         guard_filter=None, backends: Sequence = (), variants: Sequence[str] | None = None,
         on_mismatch: str = "error", rewrite: bool = False, allow_modules: Sequence[str] = (),
         plain_types: bool = False, trusted_keys=None) -> Loaded:
    """Load a package written by ``Package.save``; returns a callable like the original.

    Args:
      path: the package file; or its bytes, or a binary file object (read into memory).
      module: bind this module's live parameters and buffers instead of the stored
        ones (no copy: an optimizer step on ``module`` is seen by the next call). For a
        function's package, the modules and tensors it reads by name, as a dict:
        ``{"lin": lin, "W": W}`` for ``lambda x: lin(x) * W``, each followed as a bound
        module is (its weights, modes, Python values, hooks; a training package fills
        ``lin.weight.grad`` and ``W.grad``, as eager); a name the dict does not give
        stays as compiled.
        Without it, a training package holds its own parameters (``named_parameters()``,
        leaves that require grad, as the module's did), which ``backward()`` fills and an
        optimizer over ``parameters()`` trains; ``state_dict()`` gives them back.
      check_guards: False skips input checks. UNSAFE: a wrong shape then runs the
        compiled code on memory it was not compiled for.
      guard_filter: ``f(entries) -> list[bool]``; each entry (``GuardEntry``: variant,
        path, kind, expected) is one check, kept where ``f`` says True. UNSAFE for the
        checks it drops, like check_guards=False.
      backends: user backend objects, for packages built with a custom backend.
      variants: load only these variants (default: all that can run here). Calls
        try the most specific variant first (fewest dynamic dimensions, then the
        narrowest ranges) and run the first whose guards pass.
      on_mismatch: ``"error"`` (default): a variant built for another torch, CPU or
        machine is skipped, and IncompatibleError lists every difference if none is
        left. ``"rebuild"``: recompile such variants from the package's portable
        program (warns with RebuildWarning; takes as long as compiling).
      rewrite: with ``on_mismatch="rebuild"``, write the rebuilt variants back into
        the package file (atomically), so the next load is fast.
      allow_modules: modules load may import to rebuild the types the package returns
        (e.g. ``["transformers"]`` for its ModelOutput classes). Without it, such types
        must already be registered or imported in this process; load never imports a
        module a package names on its own.
      plain_types: return registered pytree types (ModelOutput...) as dicts and named
        tuples as tuples, with no type to resolve: the serving path when importing the
        type's library (transformers: ~0.6-0.9 s) is not wanted. Opt-in, never silent.
      trusted_keys: public keys (files, bytes or key objects; see ``aotpack.sign``):
        the package must be signed by one of them, checked before any of it is used.
        Default: the key files listed in ``$AOTPACK_TRUSTED_KEYS`` (os.pathsep-separated),
        else no signature is required.
    Returns:
      Loaded; ``.signer`` names the key that signed it when keys were given.
    Raises:
      FormatError, IntegrityError: the file is not a sound package (nothing is run).
      SignatureError: keys were given and no valid signature by one of them is on it.
      IncompatibleError: no variant can run on this machine; lists each difference.

    Example:
        >>> import aotpack, torch
        >>> path = aotpack.compile(torch.nn.Linear(512, 10), (torch.randn(8, 512),)).save("mlp.aot")
        >>> fn = aotpack.load("mlp.aot")
        >>> fn(torch.randn(8, 512)).shape
        torch.Size([8, 10])
    """
    if on_mismatch not in ("error", "rebuild"):
        raise ValueError(f"on_mismatch must be 'error' or 'rebuild', not {on_mismatch!r}")
    if module is not None and not isinstance(module, torch.nn.Module):
        from .binding import holder

        module = holder(module)
    if isinstance(path, (bytes, bytearray, memoryview)) or hasattr(path, "read"):
        if rewrite:
            raise ValueError("rewrite=True needs a package file, not bytes")
        memory = in_memory_file(path)
        name = memory.__enter__()
        try:
            fn = load(name, module, check_guards=check_guards, guard_filter=guard_filter, backends=backends,
                      variants=variants, on_mismatch=on_mismatch, allow_modules=allow_modules,
                      plain_types=plain_types, trusted_keys=trusted_keys)
        except BaseException:
            memory.__exit__()
            raise
        # the memory file stays open while the package is loaded (its pages are the mapped
        # weights anyway), so that example_inputs() can read it again
        fn.path, fn._source = "<package bytes>", name
        weakref.finalize(fn, memory.__exit__)
        return fn
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"aotpack.load takes a path, the package's bytes or a binary file object, not "
                        f"{type(path).__name__}")
    keys = _keys_for_load(trusted_keys)
    reader = PackageReader(path, keys)
    try:
        # Verify what this load uses, each member before its first use: the weights, then
        # each loaded variant's files. Examples and programs are checked where they are
        # read (rebuild, repro) and by `aotpack verify`.
        reader.verify([fmt.WEIGHTS], remember=True)
        manifest = reader.manifest
        if not plain_types:
            tree.check_types(manifest.program.out_spec, allow_modules)
        for v in manifest.variants:  # a subclass gradient's class, where this process has one by that name
            for g in (v.meta.train.subclass_grads if v.meta.train else None) or ():
                if tree.resolve_type(g.spec.type) is not None:
                    tree.check_types(g.spec)  # (FormatError: named as a subclass, and it is none)
        # A signed load uses only bytes that were checked: the weights are copied out of the
        # mapped file (a write to the file after the check would otherwise reach the next
        # call), at the cost of one read of them into private memory.
        weights, initial = _weights_and_state(reader, manifest, private=keys is not None)
        # the copies the variants of this load share: (stored weight, device) -> its copy
        # on a GPU, its writable copy (a buffer updated in place), or its trainable leaf
        own: dict = {}
        trainable = _trainable_weights(manifest, variants) if module is None else set()
        loaded, problems, rebuilt = [], [], {}
        for v in sorted(manifest.variants, key=_specificity):
            if variants is not None and v.name not in variants:
                continue
            v, files, why = _variant_files(reader, v, weights, backends, on_mismatch, path)
            if why:
                problems.append(f"variant {v.name} ({v.backend}): " + "; ".join(why))
                continue
            if isinstance(files, _MemoryFiles):
                rebuilt[v.name] = (v, files.compiled)
            fn, backend = _variant_code(v, files, backends, path, manifest.program)
            raw_memory = not getattr(backend, "runs_aten_ops", False)
            try:
                ws, state = _variant_weights(v, manifest, weights, module, own, raw_memory, trainable)
            except AotpackError as e:
                if len(manifest.variants) == 1:
                    raise
                problems.append(f"variant {v.name}: {e.message}")  # e.g. a bf16 variant, a float32 module
                continue
            guard = Guard.from_manifest(manifest.program, v, guard_filter, raw_memory=raw_memory)
            after = v.global_state.grad_mode_after
            if after is not None:
                fn = _leaving_grad_mode(fn, after)
            loaded.append(_Variant(v.name, guard, fn, ws, v, state, portable=_runs_portable(reader, v)))
        if not loaded:
            raise _nothing_loads(path, manifest, variants, problems)
        if rebuilt and rewrite:
            _rewrite(path, rebuilt)
        fn = Loaded(manifest, loaded, check_guards, os.fspath(path), plain_types, signer=reader.signer,
                    initial_state=initial)
        fn._keys = keys  # later reads of the file (example_inputs) check the same signature
        fn._bound = module is not None
        return fn
    finally:
        reader.close()


def _keys_for_load(trusted_keys):
    """The trusted keys a load checks against, or None (no signature required)."""
    if trusted_keys is None and fmt.ENV_TRUSTED_KEYS not in os.environ:
        return None
    from ..package import signing  # the signature code runs only where keys are asked for

    return signing.keys_for_load(trusted_keys)


def _weights_and_state(reader: PackageReader, manifest: Manifest, private: bool = False) -> tuple[dict, dict]:
    """The stored weights (views of the mapped file; ``private``: copies, each shared
    weight copied once), with a private writable copy of each state tensor (buffers a
    program updates in place), and the stored values of those (``reset_state`` puts
    them back)."""
    weights = reader.weights()
    if private:
        copies: dict = {}
        weights = {n: copies.setdefault(id(t), copy_in_layout(t)) for n, t in weights.items()}
    initial = {}
    state_names = {n for v in manifest.variants for n in v.state}
    copies = {id(weights[n]): copy_in_layout(weights[n]) for n in state_names}
    for n, t in list(weights.items()):  # every name of a state tensor (aliases too) gets the copy
        if id(t) in copies:
            initial[n], weights[n] = t, copies[id(t)]
    return weights, initial


def _variant_files(reader: PackageReader, v: Variant, weights: dict, backends, on_mismatch: str, path):
    """(variant, its files, why it cannot run here): the package's files, verified, or
    with ``on_mismatch="rebuild"`` files recompiled here for a variant built elsewhere."""
    why = incompatibilities(reader.manifest, v, backends)
    if not why:
        reader.verify([fmt.variant_dir(v.name) + rel for rel in v.files], remember=True)
        return v, _VariantFiles(reader, v), why
    # another rank's variant, or a backend missing here: no rebuild makes it run here
    if on_mismatch != "rebuild" or not _rebuildable(v) or any(
            p.startswith(("backend:", "distributed:", "settings:")) for p in why):
        return v, None, why
    from ..build.rebuild import rebuild_variant

    warnings.warn(f"aotpack: variant {v.name} of {path} was built for another machine or torch ("
                  + "; ".join(why) + "); rebuilding it from its portable program", RebuildWarning, stacklevel=3)
    compiled = rebuild_variant(reader, v, weights, backends=backends, say=lambda line: print(line, file=sys.stderr))
    v = v.replace(meta=Meta.from_json(compiled.meta, f"variant {v.name}.meta"), torch=torch_version(),
                  files=list(compiled.files))
    return v, _MemoryFiles(compiled.files, compiled.meta, compiled), []


def _variant_code(v: Variant, files: _Files, backends, path, program: Program):
    """(the variant's compiled code, loaded by its backend (training: the
    autograd.Function), the backend)."""
    backend = get_backend(v.backend, v.backend_entry, backends)
    try:
        if v.train:
            from .autograd_runtime import load_training
            from .views import dim_places

            return _with_sizes(load_training(backend, files, v.meta, dim_places(v.inputs, len(v.weights))), v), backend
        return _with_sizes(_with_views(_as_inference_tensors(backend.load(files), v, program), v), v), backend
    except AotpackError:
        raise
    except Exception as e:  # noqa: BLE001 - one clear error, whatever the backend raised
        raise AotpackError(f"variant {v.name} of {path} failed to load with backend {v.backend}: "
                           f"{type(e).__name__}: {e}",
                           hint="run `aotpack verify` on it; rebuild the package on this machine") from e
    finally:
        files.cleanup()


def _as_inference_tensors(fn, variant: Variant, program: Program):
    """``fn`` returning inference tensors where eager does (``Variant.inference_outputs``:
    a forward under ``torch.inference_mode()``), so what eager refuses of them (an update
    in place outside inference mode, saving one for backward) is refused too: run in
    inference mode where every output is one (no copy), else those outputs copied in it."""
    which = variant.inference_outputs
    if not which:
        return fn
    n = sum(isinstance(leaf, TensorLeaf) for _, leaf in tree.leaf_paths(program.out_spec))

    def in_inference_mode(flat):
        with torch.inference_mode():
            return fn(flat)

    def copied(flat):
        outs = list(fn(flat))
        with torch.inference_mode():
            for k in which:
                outs[k] = outs[k].clone()
        return outs

    return in_inference_mode if len(which) == n else copied


def _leaving_grad_mode(fn, grad_mode: bool):
    """``fn``, then the grad mode its program leaves the caller in (a
    ``torch.set_grad_enabled`` without ``with`` in the program), as eager and
    torch.compile leave it."""

    def run(flat):
        out = fn(flat)
        torch.set_grad_enabled(grad_mode)
        return out

    return run


def _variant_weights(v: Variant, manifest: Manifest, weights: dict, module, own: dict, raw_memory: bool,
                    trainable: set[str] = frozenset()):
    """(the tensors the variant runs with, its per-call check of them, or None): the
    module's live parameters where one is bound, else the stored weights, with one copy
    per GPU device, a writable copy of each buffer a training variant updates in place,
    and a leaf that requires grad for each weight in ``trainable``, each shared by the
    load's variants through ``own``. Raises AotpackError where the bound module does not
    fit the variant."""
    program = manifest.program
    if module is not None:
        from .binding import Binding  # only loads that bind a module

        binding = Binding(v, program, weights, module, None, raw_memory)
        binding.state_check = _module_state_check(v, module, _bound_parameters(v, program), binding.weights)
        return binding.weights, binding
    device = v.device
    updated = set(v.train.mutation_targets) if v.train else set()

    def copy(name: str, i: int) -> torch.Tensor:
        stored = weights[name]  # (tied weights are one tensor under two names: one copy of it)
        if name in trainable:  # the package's own parameter: eager's would require grad
            key = (id(stored), device, "trainable")
            if key not in own:
                # on the CPU the mapped weight itself, no copy at load: the mapping is the
                # load's private copy-on-write one, so an optimizer's step copies the pages
                # it writes and the file is never written
                own[key] = (stored.detach() if device == "cpu" else copy_in_layout(stored, device)).requires_grad_()
            return own[key]
        if i in updated:  # buffers updated in place get writable copies, not the file's pages
            key = (id(stored), device, "written")
            if key not in own:
                own[key] = copy_in_layout(stored, device)
            return own[key]
        if device == "cpu":
            return stored
        # Weights are stored for the CPU; GPU variants share one copy made here.
        key = (id(stored), device, "")
        if key not in own:
            own[key] = copy_in_layout(stored, device)
        return own[key]

    ws = [copy(n, i) for i, n in enumerate(v.weights)]
    params = [(fqn, i) for fqn, (i, n) in zip(v.weight_fqns, enumerate(v.weights)) if n in trainable]
    check = _module_state_check(v, None, params, ws)
    return ws, (check if params and _may_refuse(v, params) else None)


def _trainable_weights(manifest: Manifest, chosen) -> set[str]:
    """The weights a training package loaded without a module holds as its own
    parameters (leaves that require grad, ``Loaded.named_parameters``): those whose
    gradient a loaded training variant computes, which eager's module parameters would
    get. Calls then build eager's autograd graph, and ``backward()`` fills their
    ``.grad`` (until 2026-12-05 the stored copies were frozen, so a call whose inputs
    required no grad returned an output without one, and ``backward()`` raised torch's
    "does not require grad")."""
    names = set()
    for v in manifest.variants:
        if v.train is None or (chosen is not None and v.name not in chosen):
            continue
        names.update(n for n, g in zip(v.weights, v.trained_weights()) if g)
    return names


def _may_refuse(v: Variant, params: list[tuple[str, int]]) -> bool:
    """Whether the per-call check of a variant's own parameters can ever refuse: an
    inference variant (it builds no autograd graph of them), or a program that reads
    one's requires_grad. A training variant that computes every one's gradient takes
    any setting, so its calls keep the fast path."""
    return v.train is None or any(name in v.requires_grad_weights for name, _ in params)


def _nothing_loads(path, manifest: Manifest, variants, problems: list[str]) -> AotpackError:
    """The error when no variant of the package can run here: each one's reasons."""
    if variants is not None and not problems:
        return AotpackError(f"{path} has no variant named {list(variants)}; it has "
                            f"{[v.name for v in manifest.variants]}")
    jobs = [v.distributed for v in manifest.variants if v.distributed]
    if jobs and all(": distributed:" in p for p in problems):
        hint = f"run it under torchrun with a world size of {jobs[0].world_size}, init_process_group() before load"
    elif all(": ops:" in p for p in problems):  # a rebuild would need the library too
        hint = "import the library that registers those ops (its torch.library definitions) before load"
    else:
        hint = ("load it with on_mismatch='rebuild' (recompiles from the package's portable program), "
                "or build it on a machine like this one")
    return IncompatibleError(f"{path} cannot run here: " + " | ".join(problems), hint=hint)
