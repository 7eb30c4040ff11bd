"""The top of the pipeline: ``compile`` (capture -> backend -> Package) and ``inspect``.

``load`` lives in runtime.py, which the load path imports alone.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from . import tree
from .backends import get_backend
from .capture import capture
from .errors import AotpackError, IntegrityError, SignatureError
from .package import Package, fmt, signing
from .package.reader import PackageReader
from .summary import Inspection, Verification

__all__ = ["compile", "add_variant", "inspect", "verify"]


def compile(target: Callable, args: tuple = (), kwargs: dict | None = None, *, backend: Any = "aoti",
            dynamic=None, options: dict | None = None, variant: str = "default",
            examples: bool = True, strict_dims: bool = False, variants: list[dict] | None = None,
            progress: Callable[[str], None] | None = None, cache=None, train: bool = False,
            joint_pass: Callable | None = None, workers=None, distributed: bool = False,
            autocast=None) -> Package:
    """Compile a function or nn.Module ahead of time into a Package.

    Args:
      target: the function or nn.Module to compile.
      args, kwargs: example inputs: tensors, nested tuples/lists/dicts of tensors, and
        Python values (which are frozen into the package and guarded).
      backend: ``"aoti"`` (AOTInductor, default), ``"inductor"`` (torch.compile's
        output code, kernels compiled at load), ``"eager"``, or an object following
        ``aotpack.backends.Backend``.
      dynamic: None (static shapes), True (every dimension may vary), or
        ``{"x": {0: Dim("batch", min=1, max=4096)}}`` keyed by parameter name.
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
      workers: compile the variants in parallel: ``"local:N"`` (N processes here),
        ``"ray"``, ``"ray:HOST:PORT"`` or ``"ray://HOST:PORT"`` (a Ray cluster). The
        results come back through the compile cache; the package is the same as a
        serial compile's (see aotpack.farm).
      autocast: compile the program inside ``torch.autocast(device, dtype=autocast)``
        (a dtype; False: without autocast; None, the default: as the caller's autocast
        is now). A call is guarded on the caller's autocast: with variants compiled with
        and without it, each call runs the one compiled for its state.
      distributed: the program is one rank's part of a sharded model (tensor parallel
        through functional collectives): call compile on every rank of the
        initialized torch.distributed job; each rank's variants are named
        ``<name>.rank<r>`` and every rank gets the package of all ranks (save it on
        one). Load picks this rank's variants and checks rank and world size (see
        aotpack.distributed). A program that calls collectives needs it.
    Returns:
      Package; ``.save(path)`` writes it.
    Raises:
      CaptureError: the program cannot be captured as one graph (names file:line).

    Example:
        >>> pkg = aotpack.compile(model, (torch.randn(8, 512),), backend="aoti")  # doctest: +SKIP
        >>> pkg.save("mlp.aot")
    """
    say = progress or (lambda line: None)
    first = dict(name=variant, target=target, args=args, kwargs=kwargs, backend=backend, dynamic=dynamic,
                 options=options, autocast=autocast)
    if joint_pass is not None and not train:
        raise TypeError("joint_pass needs train=True")
    training = {"joint_pass": joint_pass} if train else None
    if distributed and (train or workers is not None):
        raise TypeError("distributed=True compiles inference packages on every rank: not with train=True "
                        "or workers=")
    if distributed:
        from .distributed import require_job

        require_job()
    specs = []
    for spec in [first, *(variants or [])]:
        unknown = set(spec) - set(first)
        if unknown or "name" not in spec:
            raise TypeError(f"a variant is a dict with 'name' and any of {sorted(set(first) - {'name'})}; "
                            f"got {sorted(spec)}")
        specs.append({**first, **spec})
    with _farmed(specs, strict_dims, cache, training, workers, say):
        pkg = None
        for v in specs:
            with BUILD_LOCK:
                captured, be, compiled = _build(v, strict_dims, say, cache, training)
                job = _rank_job(captured, distributed)
                name = f"{v['name']}.rank{job['rank']}" if job else v["name"]
                if pkg is None:
                    pkg = Package.from_captured(captured, name, be, compiled, examples=examples, distributed=job)
                else:
                    pkg.add_variant(captured, name, be, compiled, examples=examples, distributed=job)
    if distributed:
        from .distributed import gather

        say("gathering every rank's variants")
        pkg = gather(pkg)
    return pkg


# One program captured, compiled and packaged at a time in a process: torch.export keeps
# module-level state while it traces and while it serializes (two threads at once fail
# with "_EXPORT_MODULE_HIERARCHY must not be None" or "Refusing to stomp on existing
# FakeTensor reducer"), and inductor's config patches are process-wide. Threads that
# compile at once take turns; loading and calling packages never takes this lock.
BUILD_LOCK = threading.RLock()


def _rank_job(captured, distributed: bool) -> dict | None:
    """The job a rank's variant is compiled for (``distributed=True``); refuses a program
    that calls collectives without it (loaded on another rank it would use this rank's shard)."""
    from .distributed import collective_groups, job

    groups = collective_groups(captured.graph_module)
    if groups and not distributed:
        raise AotpackError(f"{captured.name} calls collectives on process group {groups[0]!r}: it is one rank's "
                           "part of a sharded program",
                           hint="compile it on every rank with aotpack.compile(..., distributed=True)")
    return job(groups) if distributed else None


@contextlib.contextmanager
def _farmed(specs, strict_dims, cache, training, workers, say):
    """With ``workers``: compile every variant there first, and serve the artifacts
    from a Context while the package is built here (each compile then a hit)."""
    if workers is None:
        yield
        return
    from .cache import Context, active_context
    from .farm import compile_variants

    outer = active_context()
    with Context() as ctx:
        for bundle in compile_variants(specs, strict_dims, cache, training, workers, say):
            ctx.load_bundle(bundle)
        yield
    if outer is not None:  # the caller's Context records what was compiled, as without workers
        outer.load_bundle(ctx.bundle())


def add_variant(path: str | os.PathLike, target: Callable, args: tuple = (), kwargs: dict | None = None, *,
                variant: str, backend: Any = "aoti", dynamic=None, options: dict | None = None,
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
        captured, be, compiled = _build(v, strict_dims, progress or (lambda line: None), cache)
        _rank_job(captured, distributed=False)
        with locked(path):  # read, add, write: concurrent add_variant calls serialize, none is lost
            pkg = Package.open(path)
            pkg.add_variant(captured, variant, be, compiled, examples=examples, snapshot=False)
            return pkg.save(path)


def _build(v: dict, strict_dims: bool, say, cache=None, training: dict | None = None):
    be = get_backend(v["backend"])
    target = v["target"]
    t0 = time.perf_counter()
    say(f"[{v['name']}] capturing {getattr(target, '__qualname__', type(target).__qualname__)} with torch.export")
    captured = capture(target, v["args"], v["kwargs"], dynamic=v["dynamic"], strict_dims=strict_dims,
                       autocast=v.get("autocast"),
                       allow_mutations=training is not None)
    say(f"[{v['name']}] captured {captured.name}: {len(captured.graph_module.graph.nodes)} graph nodes, "
        f"{len(captured.weights)} weights ({time.perf_counter() - t0:.1f}s); compiling with {be.name}")
    t1 = time.perf_counter()
    options = dict(v["options"] or {})
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
    from .cache.context import active_context

    if cache in (None, False) and active_context() is None:
        compiled = build()
    else:
        from .cache.cached import compile_captured

        compiled = compile_captured(captured, be, options, cache, say, build=build, mode=mode)
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
    from .capture import op_name

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


def _file_problems(reader: PackageReader, variant, backends=()) -> list[str]:
    """What the variant's backend finds wrong with its (verified) files without running
    any of them: the optional ``Backend.check`` (eager: graph.py parses and defines the
    functions its meta names). Load meets the same in the backend's ``load``."""
    from .backends import find_backend
    from .runtime import _VariantFiles

    try:
        check = getattr(find_backend(variant.backend, backends), "check", None)
        if check is None:
            return []
        files = _VariantFiles(reader, variant)
        if variant.train:  # the forward and the backward, each as its loader sees it
            from .autograd_runtime import training_parts

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
    from .runtime import incompatibilities

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
