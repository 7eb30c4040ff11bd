"""The top of the pipeline: ``compile`` (capture -> backend -> Package) and ``inspect``.

``load`` lives in runtime.py, which the load path imports alone.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable
from typing import Any

from . import tree
from .build.variant import BUILD_LOCK, build_variant
from .errors import (
    AotpackError,
    CaptureError,
    IntegrityError,
    SideEffectWarning,
    SignatureDroppedWarning,
    SignatureError,
    SpecializationWarning,
    warn_caller,
)
from .package import Package, fmt, signing
from .package.reader import PackageReader
from .summary import Inspection, Verification

__all__ = ["compile", "add_variant", "inspect", "verify", "plan", "Plan"]


def compile(target: Callable, args: tuple = (), kwargs: dict | None = None, *, backend: Any = None,
            dynamic=None, options: dict | None = None, variant: str = "default",
            examples: bool = True, strict_dims: bool = False, variants: list[dict] | None = None,
            progress: Callable[[str], None] | None = None, cache=None, train: bool = False,
            joint_pass: Callable | None = None, autocast=None) -> Package:
    """Compile a function or nn.Module ahead of time into a Package.

    Args:
      target: the function or nn.Module to compile; a ``torch.export.ExportedProgram``
        compiles as its module (``ep.module()``; give its Dims as ``dynamic``).
      args: example positional inputs: tensors, nested tuples/lists/dicts of tensors,
        and Python values (which are frozen into the package and guarded, but for ints
        given a Dim in ``dynamic``).
      kwargs: example keyword inputs, as ``args``.
      backend: ``"aoti"`` (AOTInductor, the default), ``"inductor"`` (torch.compile's
        output code, kernels compiled at load), ``"eager"``, or an object following
        ``aotpack.backends.Backend``. None: ``$AOTPACK_BACKEND``, else ``"aoti"``.
      dynamic: None (static shapes), True (every dimension and every int argument may
        vary), or ``{"x": {0: Dim("batch", min=1, max=4096)}, "n": Dim("n", max=64)}``
        keyed by parameter name: a tensor's dimensions, or a Python int (any int in the
        Dim's range runs, below 0 too: ``Dim("shift", min=-8, max=8)``; format version
        19, 20 for a Dim below 0). A tensor size whose example is 1 (an int's 0 or 1),
        where the program depends on that value (transformers' Llama from a decode
        step), adds a second variant, ``"<variant>.from-2"``, compiled from the example
        repeated to 2.
      options: backend options (for aoti: inductor config, e.g. ``{"max_autotune": True}``).
      variant: the variant's name in the package.
      examples: store the example inputs in the package (used by ``aotpack repro``).
      variants: more variants to compile into the same package, each a dict that
        overrides any of ``name`` (required), ``target``, ``args``, ``kwargs``,
        ``dynamic``, ``backend``, ``options``, ``autocast``; e.g. ``{"name": "bf16",
        "target": model_bf16, "args": (x.bfloat16(),)}``, ``{"name": "b1", "args":
        (x[:1],)}`` or ``{"name": "amp", "autocast": torch.bfloat16}``. At call time the
        most specific variant whose guards pass runs.
      strict_dims: error (instead of warn) when the program forces a named Dim to one size.
      progress: called with a line of text at each long step (the CLI prints them).
      cache: a compile cache: ``True`` (the default local store, ~/.cache/aotpack), a
        path, a ``redis://`` URL, or an ``aotpack.cache`` Store. A hit skips the
        backend's compile (capture still runs: the graph is part of the key). With
        None, an active ``aotpack.cache.Context`` still records (and serves) artifacts.
      train: compile the forward *and* the backward (see aotpack.autograd): the loaded
        package takes part in autograd; ``load(path, module=model)`` binds the model's
        parameters so ``backward()`` fills their ``.grad``. Static shapes; aoti or eager.
      joint_pass: with train=True, a function applied to the joint forward+backward
        graph before it is partitioned.
      autocast: compile the program inside ``torch.autocast(device, dtype=autocast)``
        (a dtype; False: without autocast; None, the default: as the caller's autocast
        is now). A call is guarded on the caller's autocast: with variants compiled with
        and without it, each call runs the one compiled for its state.
    Returns:
      Package; ``.save(path)`` writes it.
    Raises:
      CaptureError: the program cannot be captured as one graph (names file:line).

    Built on this one (same arguments, and their own): ``aotpack.farm.compile`` compiles
    the variants in parallel (local processes, a Ray cluster); ``aotpack.distributed.compile``
    compiles one rank's part of a sharded model on every rank of a torch.distributed job.

    Example:
        >>> import aotpack, torch
        >>> model = torch.nn.Linear(512, 10)
        >>> pkg = aotpack.compile(model, (torch.randn(8, 512),), backend="eager")
        >>> pkg.variants
        ['default']
    """
    return plan(target, args, kwargs, backend=backend, dynamic=dynamic, options=options, variant=variant,
                examples=examples, strict_dims=strict_dims, variants=variants, progress=progress, cache=cache,
                train=train, joint_pass=joint_pass, autocast=autocast).build()


@dataclasses.dataclass(frozen=True)
class Plan:
    """What ``compile`` was asked for, checked: the variants' specs (one dict each, every
    key of a variant spec set) and the settings they share. ``build`` compiles them here,
    one after another; features built on compile (farm, distributed) make a plan the
    same way and change where the compiles run or how variants are placed."""

    specs: list[dict]
    strict_dims: bool
    cache: Any
    training: dict | None
    examples: bool
    say: Callable[[str], None]

    def build(self, place: Callable | None = None) -> Package:
        """The package of every variant, compiled in order. ``place(captured, name)`` says
        which variant name and job (``manifest.Job`` as JSON, or None) a captured variant
        gets; the default refuses a program that calls collectives (one rank's part of a
        sharded model: aotpack.distributed.compile places those)."""
        place = place or _single_process
        pkg = None
        specs = list(self.specs)
        for v in specs:
            second = "compiled_at_one" in v  # (one this loop added: _from_two)
            with BUILD_LOCK, warnings.catch_warnings():
                if second:  # (the program's side effects were reported by the first capture)
                    warnings.filterwarnings("ignore", category=SideEffectWarning)
                try:
                    captured, be, compiled = build_variant(v, self.strict_dims, self.say, self.cache, self.training,
                                                           at_one_apart=not second,
                                                           at_one_covered=v.get("compiled_at_one"))
                except AotpackError as e:
                    if not second:
                        raise
                    _at_one_alone(v, e, self.strict_dims)
                    continue
                name, job = place(captured, v["name"])
                if pkg is None:
                    pkg = Package.from_captured(captured, name, be, compiled, examples=self.examples, distributed=job)
                else:
                    pkg.add_variant(captured, name, be, compiled, examples=self.examples, distributed=job)
            if captured.examples_from_two is not None:
                specs.append(_from_two(v, captured, {s["name"] for s in specs}))
                self.say(f"[{v['name']}] {', '.join(captured.compiled_at_one)} compiled in at the example's size: "
                         f"variant {specs[-1]['name']!r} from an example of 2 runs the other sizes")
        return pkg


def _from_two(v: dict, captured, taken: set[str]) -> dict:
    """The spec of the variant that runs the other sizes of Dims ``captured`` compiled in
    at its example's 1 (an int's 0 or 1: ``capture``'s ``at_one_apart``): the same program
    and Dims, called with those sizes and ints at 2. torch.compile does the same at run
    time: a graph compiled for the size 1 it specialized, a second, dynamic one at the
    first call of another size.
    (transformers' Llama from a batch of one branches on ``batch == 1``; a package of it
    ran batch 1 alone, a GuardError at any other, until 2026-12-08.)"""
    name = f"{v['name']}.from-2"
    while name in taken:
        name += "-2"
    args, kwargs = captured.examples_from_two
    return {**v, "name": name, "args": args, "kwargs": kwargs, "compiled_at_one": dict(captured.compiled_at_one)}


def _at_one_alone(v: dict, error: AotpackError, strict_dims: bool) -> None:
    """The second variant of ``_from_two`` failed: the first runs size 1 alone, said as
    ``capture`` says any Dim compiled in (an error with ``strict_dims``)."""
    what = ", ".join(f"{name} = {size}" for name, size in v["compiled_at_one"].items())
    if strict_dims:
        raise CaptureError(f"the program specializes dynamic dimensions at the example's sizes: {what}; compiled "
                           f"from an example of 2 it failed: {error.message}",
                           hint="drop those Dims (the package then runs only that size), or change the program")
    warn_caller(f"aotpack: the program specialized dynamic dimensions at the example's sizes, which will accept only "
                f"those: {what} (a variant compiled from an example of 2 failed: {error.message}); compile with "
                "an example of 2 or more, or add a variant of that size", SpecializationWarning)


def plan(target: Callable, args: tuple = (), kwargs: dict | None = None, *, backend: Any = None, dynamic=None,
         options: dict | None = None, variant: str = "default", examples: bool = True, strict_dims: bool = False,
         variants: list[dict] | None = None, progress: Callable[[str], None] | None = None, cache=None,
         train: bool = False, joint_pass: Callable | None = None, autocast=None) -> Plan:
    """The ``Plan`` of a ``compile`` call (its arguments, as ``compile`` documents them)."""
    first = dict(name=variant, target=target, args=args, kwargs=kwargs, backend=backend, dynamic=dynamic,
                 options=options, autocast=autocast)
    if joint_pass is not None and not train:
        raise TypeError("joint_pass needs train=True")
    specs = []
    for spec in [first, *(variants or [])]:
        unknown = set(spec) - set(first)
        if unknown or "name" not in spec:
            raise TypeError(f"a variant is a dict with 'name' and any of {sorted(set(first) - {'name'})}; "
                            f"got {sorted(spec)}")
        specs.append({**first, **spec})
    return Plan(specs, strict_dims, cache, {"joint_pass": joint_pass} if train else None, examples,
                progress or (lambda line: None))


def _single_process(captured, name: str) -> tuple[str, None]:
    """A variant's placement outside a distributed job: under its own name, no job; a
    program that calls collectives is refused (loaded on another rank it would use this
    rank's shard)."""
    from .build.collectives import collective_groups

    groups = collective_groups(captured.graph_module)
    if groups:
        raise AotpackError(f"{captured.name} calls collectives on process group {groups[0]!r}: it is one rank's "
                           "part of a sharded program",
                           hint="compile it on every rank with aotpack.distributed.compile(...)")
    return name, None


def add_variant(path: str | os.PathLike, target: Callable, args: tuple = (), kwargs: dict | None = None, *,
                variant: str, backend: Any = None, dynamic=None, options: dict | None = None,
                examples: bool = True, strict_dims: bool = False,
                progress: Callable[[str], None] | None = None, cache=None) -> str:
    """Compile one more variant of a saved package's program and rewrite the file
    atomically; returns the path.

    ``variant`` names it, as in ``compile``; the other arguments are ``compile``'s. The
    model's weights are written as they are, not copied first: the peak memory above the
    model is about the new weights the variant adds (bench/add_variant_memory.py).

    Example:
        >>> aotpack.add_variant("mlp.aot", model, (torch.randn(1, 512),), variant="b1")  # doctest: +SKIP
    """
    from .package.writer import locked

    v = dict(name=variant, target=target, args=args, kwargs=kwargs, backend=backend, dynamic=dynamic, options=options)
    with BUILD_LOCK:
        captured, be, compiled = build_variant(v, strict_dims, progress or (lambda line: None), cache)
        _single_process(captured, variant)
        with locked(path):  # read, add, write: concurrent add_variant calls serialize, none is lost
            with PackageReader(path) as r:
                signed_by = signing.signer_ids(r.signatures)
            pkg = Package.open(path)
            pkg.add_variant(captured, variant, be, compiled, examples=examples, snapshot=False)
            out = pkg.save(path)
        if signed_by:  # the new bytes carry no signature: say so, never silently
            warnings.warn(f"aotpack: {path} was signed by {', '.join(signed_by)}; adding variant {variant!r} "
                          "removed the signatures (they covered the old bytes): sign it again with `aotpack sign`",
                          SignatureDroppedWarning, stacklevel=2)
        return out


def _file_problems(reader: PackageReader, variant, backends=()) -> list[str]:
    """What the variant's backend finds wrong with its (verified) files without running
    any of them: the optional ``Backend.check`` (eager: graph.py parses and defines the
    functions its meta names). Load meets the same in the backend's ``load``."""
    from .backends import find_backend
    from .load.runtime import _VariantFiles

    try:
        check = getattr(find_backend(variant.backend, backends), "check", None)
        if check is None:
            return []
        files = _VariantFiles(reader, variant)
        if variant.train:  # the forward and the backward, each as its loader sees it
            from .load.autograd_runtime import training_parts

            return [f"files: {part}: {p}" for part, sub in training_parts(files, variant.meta) for p in check(sub)]
        return [f"files: {p}" for p in check(files)]
    except Exception as e:  # noqa: BLE001 - a plugin's check that fails is a reason, not a crash
        return [f"backend: {variant.backend!r} failed to check the variant's files: {type(e).__name__}: {e}"]


def inspect(path: str | os.PathLike) -> Inspection:
    """Describe a package without running any of its code.

    Returns:
      Inspection: ``str(...)`` is the text ``aotpack inspect`` prints; ``.manifest`` is
      the manifest (typed records; ``.to_json()`` for the file's JSON); ``.verified`` says whether every member matched its digest;
      ``.signed_by`` lists the key ids of its signatures (not checked: see ``verify``).

    Example:
        >>> print(aotpack.inspect("mlp.aot"))                     # doctest: +SKIP
    """
    with PackageReader(path) as r:
        try:
            r.verify()
            problem = None
        except IntegrityError as e:  # reported, not raised: inspect shows what it can
            problem = e.message
        sizes = {n: r.view(n).nbytes for n in r.names()}
        return Inspection(os.fspath(path), r.manifest, sizes, problem, signing.signer_ids(r.signatures))


def verify(path: str | os.PathLike, backends=(), trusted_keys=None, allow_modules=()) -> Verification:
    """Check a package as load would, without running any of it: integrity, signature
    (when ``trusted_keys`` are given, as for ``aotpack.load``), and whether each variant
    can run on this machine (backend available, versions, machine, device, ops).

    ``backends``, ``allow_modules`` as for ``aotpack.load``. Returns a Verification
    (``.ok``: ``aotpack.load`` would succeed; ``str()`` is what ``aotpack verify``
    prints). A malformed file raises FormatError, as load does.

    Example:
        >>> aotpack.verify("mlp.aot")["ok"]                       # doctest: +SKIP
        True
    """
    from .load.runtime import incompatibilities

    keys = signing.keys_for_load(trusted_keys)
    signature = signer = None
    with PackageReader(path) as r:
        if keys is not None:  # the check load makes, on the manifest's bytes as they are
            try:
                signer = str(signing.check(r.read(fmt.MANIFEST), r.signatures, keys, r.path))
            except SignatureError as e:
                signature = e.message
        try:
            r.verify()
            integrity = None
        except IntegrityError as e:  # reported, not raised
            integrity = e.message
        variants = {v.name: incompatibilities(r.manifest, v, backends) for v in r.manifest.variants}
        for v in r.manifest.variants if integrity is None else ():  # files that may be read
            variants[v.name] = variants[v.name] or _file_problems(r, v, backends)
        signed_by = signing.signer_ids(r.signatures)
        try:
            tree.check_types(r.manifest.program.out_spec, allow_modules)
            types = None
        except AotpackError as e:
            types = e.message
    ok = integrity is None and signature is None and types is None and any(not p for p in variants.values())
    return Verification(os.fspath(path), ok, integrity, signature, signer, signed_by, types, variants)
