"""Cached compiles: aotpack.compile's path and a torch.compile backend.

Both build a CacheKey from named parts, then take ``context.lookup_or_compile``.

``backend("inductor", store)`` is a torch.compile backend: each graph dynamo hands it is
keyed (graph code, input metadata, grad/autocast mode, inductor config, versions,
device); a hit loads the stored inductor artifact (``standalone_compile``'s binary
format: output code + AOT autograd entry, so training graphs work too, plus the C++
kernel libraries CPU code loads) and compiles nothing; a miss compiles with inductor and
stores the artifact::

    model = torch.compile(model, backend=aotpack.cache.backend("inductor", "redis://cache:6379/0"))
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable

import torch

from .. import _torch_compat as compat
from ..build.capture import device_of
from ..errors import CacheError
from ..tree import dtype_name
from .entry import CorruptEntry, pack_files, unpack_files
from .key import CacheKey, environment_parts, inductor_config_hash
from .open import open_store
from .store import CacheWarning

__all__ = ["backend", "compile_captured", "program_parts", "graph_parts"]


def _tensor_digest(t: torch.Tensor) -> str:
    t = t.detach().to("cpu").contiguous().reshape(-1)
    return hashlib.sha256(t.view(torch.uint8).numpy().tobytes()).hexdigest() if t.numel() else "empty"


def _attr_tensors(gm: torch.fx.GraphModule) -> list[tuple[str, str]]:
    """(name, sha256 of bytes) of each tensor the graph reads with get_attr: values baked
    into the compiled code must be in the key (weights passed as inputs are not)."""
    out = []
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            obj = gm
            for part in node.target.split("."):
                obj = getattr(obj, part, None)
            if isinstance(obj, torch.Tensor):
                out.append((node.target, _tensor_digest(obj)))
    return out


def _describe_tensor(t: torch.Tensor) -> str:
    dtype = dtype_name(t.dtype)
    shape = ",".join(str(s) for s in t.shape)
    stride = ",".join(str(s) for s in t.stride())
    grad = " grad" if t.requires_grad else ""
    return f"{dtype}[{shape}]/[{stride}]@{t.device.type}{grad}"


def program_parts(captured) -> dict:
    """The ``graph`` and ``inputs`` key parts of an aotpack Captured program."""
    h = hashlib.sha256(captured.graph_module.code.encode())
    for name, t in captured.weights.items():
        h.update(f"|{name}:{_describe_tensor(t)}".encode())
    h.update(json.dumps(_attr_tensors(captured.graph_module)).encode())
    inputs = []
    for g in captured.inputs:
        shape = ",".join(s if isinstance(s, str) else str(s) if isinstance(s, int) else "*" for s in g.shape)
        inputs.append(f"{g.dtype}[{shape}]@{g.device}" + (" grad" if g.requires_grad else ""))
    dims = " ".join(f"{n}={r.min}..{r.max}" for n, r in sorted(captured.dims.items()))
    return {"graph": h.hexdigest(), "inputs": "; ".join(inputs) + (f" | {dims}" if dims else "")}


def graph_parts(gm: torch.fx.GraphModule, example_inputs: list) -> dict:
    """The ``graph``, ``inputs`` and ``mode`` key parts of a graph dynamo hands a backend."""
    h = hashlib.sha256(gm.code.encode())
    h.update(json.dumps(_attr_tensors(gm)).encode())
    inputs = []
    for x in example_inputs:
        if isinstance(x, torch.Tensor):
            inputs.append(_describe_tensor(x))
        elif isinstance(x, torch.SymInt):
            inputs.append(f"sym:{x}")
        else:
            inputs.append(repr(x))
    mode = f"grad={torch.is_grad_enabled()}"
    for dev in ("cpu", "cuda"):
        if torch.is_autocast_enabled(dev):
            mode += f" autocast_{dev}={torch.get_autocast_dtype(dev)}"
    return {"graph": h.hexdigest(), "inputs": "; ".join(inputs), "mode": mode}


def _options_part(options: dict | None, inductor: bool) -> str:
    """Backend options, plus inductor's global config for backends built on inductor
    (a config patched around the compile changes the code, so it must change the key)."""
    opts = json.dumps(options or {}, sort_keys=True, default=repr)
    return f"{opts} inductor-config={inductor_config_hash()[:16]}" if inductor else opts


def compile_captured(captured, be, options: dict, cache, say: Callable[[str], None], *,
                     build: Callable, mode: str | None = None):
    """``build()`` (a Compiled: ``be.compile(captured, options)``, or a training
    package's forward and backward) through the cache (``cache``: a Store, URL, path,
    True for the default local store, or None for the active Context alone). ``mode``
    is a key part saying what ``build`` makes beyond the backend's inference code."""
    from ..backends import Compiled, backend_entry

    store = None if cache is None or cache is False else _open_or_warn(cache)
    name = be.name if backend_entry(be) is None else f"{be.name} ({backend_entry(be)})"
    extra = {"mode": mode} if mode else {}
    key = CacheKey.of(**program_parts(captured), backend=name,
                      options=_options_part(options, getattr(be, "compiles_with_inductor", False)),
                      **extra, **environment_parts(captured.device))
    def artifact() -> bytes:
        c = build()
        return pack_files(c.files, c.meta)

    from .context import lookup_or_compile

    kind = f"aotpack/{be.name}" + (f"/{mode.split()[0]}" if mode else "")
    payload = lookup_or_compile(key, artifact, store, kind=kind, say=say)
    try:
        files, meta = unpack_files(payload)
    except CorruptEntry as e:  # whole and matching, but no artifact inside: never used
        warnings.warn(f"cache entry {key.digest[:16]} holds no valid artifact ({e}); evicted, compiling here",
                      CacheWarning, stacklevel=3)
        if store is not None:
            store.delete(key.digest)
        c = build()
        files, meta = c.files, c.meta
    return Compiled(files=files, meta=meta)


def _open_or_warn(cache):
    """The store named by ``cache``; where it cannot be opened (a local folder that cannot
    be created), one CacheWarning and None: the compile goes on without a cache, as the
    stores do when they fail later. A malformed name or secret stays an error."""
    try:
        return open_store(cache)
    except CacheError as e:
        if not getattr(e, "unavailable", False):
            raise
        warnings.warn(f"{e.message}; compiling without a cache", CacheWarning, stacklevel=4)
        return None


def backend(name: str = "inductor", store=None, *, options: dict | None = None):
    """A torch.compile backend that compiles with ``name`` through a cache ``store``
    (a Store, URL or path; None: the default local store).

    Example:
        >>> fn = torch.compile(model, backend=aotpack.cache.backend("inductor", "/tmp/c"))  # doctest: +SKIP
    """
    if name != "inductor":
        raise ValueError(f"aotpack.cache.backend supports 'inductor' (got {name!r}): its artifacts are "
                         "serializable; use aotpack.compile for the other backends")
    store = open_store(store)
    from .context import lookup_or_compile

    def aotpack_cached_inductor(gm: torch.fx.GraphModule, example_inputs: list):
        device = device_of(example_inputs)
        parts = graph_parts(gm, example_inputs)
        parts["mode"] += f" {_ARTIFACT}"
        key = CacheKey.of(**parts, backend=name, options=_options_part(options, True), **environment_parts(device))

        def compile_now() -> bytes:
            with compat.cpp_kernels_built() as kernels, compat.inductor_config_patch(_PORTABLE):
                blob = compat.standalone_compile(gm, example_inputs, options)
            return pack_files({_STANDALONE: blob, **{_KERNELS + k: data for k, data in kernels.items()}}, {})

        files, _ = unpack_files(lookup_or_compile(key, compile_now, store, kind="torch.compile/inductor"))
        compat.install_cpp_kernels({k[len(_KERNELS):]: v for k, v in files.items() if k.startswith(_KERNELS)})
        with compat.inductor_config_patch(_PORTABLE):
            return compat.standalone_load(files[_STANDALONE])

    return aotpack_cached_inductor


# What a torch.compile entry holds (its key's mode part: entries of another layout never match):
# inductor's standalone artifact, and the C++ kernel libraries its CPU code loads. Without
# them a hit on CPU compiles every kernel again (measured: 10.2 s of an 11.2 s compile).
_ARTIFACT = "artifact=standalone+cpp-kernels,no-pch,static-own-shape-env"
# Compiled and loaded without precompiled headers: inductor builds its header (150 MB,
# about 7 s here) under $TMPDIR before it even looks for a kernel library, so a fresh
# machine would pay that on every hit; the setting is part of each library's name.
_PORTABLE = {"cpp_cache_precompile_headers": False}
_STANDALONE, _KERNELS = "artifact.bin", "kernels/"  # the entry's files
