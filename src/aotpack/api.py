"""The top of the pipeline: ``compile`` (capture -> backend -> Package) and ``inspect``.

``load`` lives in runtime.py, which the load path imports alone.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable
from typing import Any

from . import tree
from .build.variant import BUILD_LOCK, build_variant
from .errors import AotpackError, IntegrityError, SignatureDroppedWarning, SignatureError
from .package import Package, fmt, signing
from .package.reader import PackageReader
from .summary import Inspection, Verification

__all__ = ["compile", "add_variant", "inspect", "verify"]


def compile(target: Callable, args: tuple = (), kwargs: dict | None = None, *, backend: Any = None,
            dynamic=None, options: dict | None = None, variant: str = "default",
            examples: bool = True, strict_dims: bool = False, variants: list[dict] | None = None,
            progress: Callable[[str], None] | None = None, cache=None, train: bool = False,
            joint_pass: Callable | None = None, workers=None, distributed: bool = False,
            autocast=None) -> Package:
    """Compile a function or nn.Module ahead of time into a Package.

    Args:
      target: the function or nn.Module to compile.
      args: example positional inputs: tensors, nested tuples/lists/dicts of tensors,
        and Python values (which are frozen into the package and guarded).
      kwargs: example keyword inputs, as ``args``.
      backend: ``"aoti"`` (AOTInductor, the default), ``"inductor"`` (torch.compile's
        output code, kernels compiled at load), ``"eager"``, or an object following
        ``aotpack.backends.Backend``. None: ``$AOTPACK_BACKEND``, else ``"aoti"``.
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
                captured, be, compiled = build_variant(v, strict_dims, say, cache, training)
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
        _rank_job(captured, distributed=False)
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
