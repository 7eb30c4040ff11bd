"""aotpack: compile a PyTorch program once, save one file, load it anywhere in milliseconds.

    >>> import aotpack, torch
    >>> model = torch.nn.Linear(512, 10)
    >>> pkg = aotpack.compile(model, (torch.randn(8, 512),))
    >>> path = pkg.save("mlp.aot")
    >>> fn = aotpack.load("mlp.aot")     # in a fresh process: no tracing, no compiling
    >>> fn(torch.randn(8, 512)).shape
    torch.Size([8, 10])

Pipeline, a build side and a load side::

    build/ (capture, effects, autograd) ──► backends (compile) ──► package (write/read)
        ──► load/ (guards → runtime → call; binding of a live module)

The load side imports nothing of the build side but ``build.rebuild`` (one entry point,
for ``load(..., on_mismatch="rebuild")``); tests/packages/test_load_path.py checks the imports.
"""

from torch.export import Dim  # noqa: E402 - the Dim of torch.export, re-exported

from ._version import __version__  # noqa: E402, F401
from .errors import (  # noqa: E402
    AotpackError,
    BackendError,
    CacheError,
    CaptureError,
    FormatError,
    GuardError,
    IncompatibleError,
    IndexOutOfRange,
    IntegerDivisionByZero,
    IntegrityError,
    PortableRunWarning,
    RebuildWarning,
    SideEffectWarning,
    SignatureDroppedWarning,
    SignatureError,
    SpecializationWarning,
)
from .load.runtime import Loaded, load  # noqa: E402


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
    if name in ("tracing", "cache", "repro", "llm", "farm", "distributed"):  # imported on first use
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    if name == "autograd":  # training packages' build side (aotpack.build.autograd)
        from .build import autograd

        return autograd
    if name == "sign":
        from .package.sign import sign

        return sign
    if name == "generate_key":
        from .package import signing

        return signing.generate_key
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
    "IndexOutOfRange",
    "IntegerDivisionByZero",
    "FormatError",
    "IntegrityError",
    "SignatureError",
    "IncompatibleError",
    "CacheError",
    "SpecializationWarning",
    "RebuildWarning",
    "PortableRunWarning",
    "SideEffectWarning",
    "SignatureDroppedWarning",
    "trace",
    "tracing",
    "cache",
    "repro",
    "autograd",
    "llm",
    "farm",
    "distributed",
]
