"""aotpack: compile a PyTorch program once, save one file, load it anywhere in milliseconds.

    >>> import aotpack, torch
    >>> pkg = aotpack.compile(model, (torch.randn(8, 512),))        # doctest: +SKIP
    >>> pkg.save("mlp.aot")
    >>> fn = aotpack.load("mlp.aot")     # in a fresh process: no tracing, no compiling
    >>> fn(torch.randn(8, 512))

Pipeline (one module each)::

    capture ──► backends (compile) ──► package (write/read) ──► runtime (guards → call)
"""

__version__ = "0.1.0"

from torch.export import Dim  # noqa: E402 - the Dim of torch.export, re-exported

from .errors import (  # noqa: E402
    AotpackError,
    BackendError,
    CacheError,
    CaptureError,
    FormatError,
    GuardError,
    IncompatibleError,
    IntegrityError,
    RebuildWarning,
    SideEffectWarning,
    SignatureError,
    SpecializationWarning,
)
from .runtime import Loaded, load  # noqa: E402


def __getattr__(name):
    # compile/inspect import capture (torch.export machinery) lazily, so that
    # `import aotpack; aotpack.load(...)` stays on the fast path.
    if name in ("compile", "inspect", "add_variant", "verify"):
        from . import api

        return getattr(api, name)
    if name == "generate":
        from .llm import generate

        return generate
    if name == "trace":  # the function, with the tracing module's names on it (tracing/__init__.py)
        from .tracing import trace

        return trace
    if name in ("tracing", "cache", "repro", "autograd", "llm"):  # subpackages, imported on first use
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    if name in ("sign", "generate_key"):
        from .package import signing

        return getattr(signing, name)
    if name in ("Package",):
        from .package import Package

        return Package
    raise AttributeError(f"module 'aotpack' has no attribute {name!r}")


__all__ = [
    "compile",
    "add_variant",
    "load",
    "inspect",
    "verify",
    "sign",
    "generate_key",
    "generate",
    "Dim",
    "Loaded",
    "Package",
    "AotpackError",
    "CaptureError",
    "BackendError",
    "GuardError",
    "FormatError",
    "IntegrityError",
    "SignatureError",
    "IncompatibleError",
    "CacheError",
    "SpecializationWarning",
    "RebuildWarning",
    "SideEffectWarning",
    "trace",
    "tracing",
    "cache",
    "repro",
    "autograd",
    "llm",
]
