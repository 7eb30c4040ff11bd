"""Backends: compile a captured program to files, and load those files into a callable.

The protocol is small on purpose, so users can plug in their own::

    class Backend(Protocol):
        name: str
        def compile(self, captured: Captured, options: dict) -> Compiled: ...
        def load(self, files: VariantFiles) -> Callable[[list[Tensor]], Sequence[Tensor]]: ...

``compile`` runs at package-build time and may be slow. It returns the files to store
(``{relative name: bytes}``) and a small JSON ``meta`` dict kept in the manifest.
``load`` runs in the fresh process and must be fast: it gets the variant's files
(``files.read(name)`` for bytes, ``files.path(name)`` for a real file path, e.g. to
dlopen a shared library) and returns a function that takes the graph's flat arguments,
``[*weights, *inputs]`` in ``captured.graph_args()`` order, and returns the flat
outputs. Guards have run before it is called.

A backend may also define ``check(files) -> list[str]``: what its ``load`` of these
files would fail on, found without running any of them (``aotpack verify`` calls it,
so that it says no exactly where load would fail); and ``runs_aten_ops = True`` where its
code calls aten ops on the inputs it is given, as eager does (aten applies a tensor's
negative/conjugate bit, forward-mode tangents and torch.func transforms itself). Any
other backend is taken to read stored values, as compiled code does: the guards then
resolve those bits into a copy and refuse tangents and transformed tensors.

A backend owns its policy; nothing outside ``backends/`` decides by a backend's name:

- ``supports_training = True``: it compiles training packages' forward and backward;
- ``compiles_with_inductor = True``: inductor's global config is part of its cache keys;
- ``incompatibilities(variant, manifest) -> list[str]``: why a variant it compiled
  cannot run on this machine (AOTInductor: the torch version, machine, CPU ISA, GPU
  compute capability); load skips or rebuilds such variants and ``verify`` lists them.

Adding a built-in backend is one file here plus its line in ``BUILTIN`` (the only list of
names: a module of this folder and its class, imported on first use).

Example (a backend that runs the graph eagerly through fx):

    >>> class Interp:
    ...     name = "interp"
    ...     def compile(self, captured, options):
    ...         return Compiled(files={"graph.py": captured.graph_module.code.encode()})
    ...     def load(self, files):
    ...         ...
    >>> pkg = aotpack.compile(fn, (x,), backend=Interp())           # doctest: +SKIP

Packages record the backend's name and, for backends outside aotpack, where it was
defined (``module:qualname``, shown by ``aotpack inspect``; informational). ``aotpack.load``
finds a backend by name among those passed as ``load(..., backends=[...])``, the
built-in ones, and those installed in the ``aotpack.backends`` entry-point group (the
Python plugin convention: a distribution declares
``[project.entry-points."aotpack.backends"] my-backend = "mypkg.backend:MyBackend"``).
A package never makes aotpack import a module it names: a manifest is data, and an
import runs code (a stray ``evilmod.py`` in the working folder would otherwise serve
every call).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..errors import AotpackError

__all__ = ["Backend", "Compiled", "VariantFiles", "get_backend", "find_backend", "backend_entry", "BUILTIN",
           "ENTRY_POINT_GROUP", "default_backend"]


from .protocol import Backend, Compiled, VariantFiles  # noqa: E402, F401 - the protocol, re-exported

# name -> (module in this folder, class): the one registry of built-in backends
BUILTIN = {
    "aoti": ("aoti", "AOTInductor"),
    "inductor": ("inductor", "Inductor"),
    "eager": ("eager", "Eager"),
}
ENTRY_POINT_GROUP = "aotpack.backends"
DEFAULT_BACKEND = "aoti"
ENV_BACKEND = "AOTPACK_BACKEND"


def default_backend() -> str:
    """The backend a compile uses when it is given none: ``$AOTPACK_BACKEND``, else
    ``"aoti"``. (``AOTPACK_BACKEND=eager`` makes a pipeline's compiles take seconds, as
    the documentation's examples do in the test suite.)"""
    return os.environ.get(ENV_BACKEND) or DEFAULT_BACKEND


def backend_entry(backend) -> str | None:
    """``module:qualname`` for a user backend, so a fresh process can import it."""
    if type(backend).__module__.startswith("aotpack.backends"):
        return None
    return f"{type(backend).__module__}:{type(backend).__qualname__}"


def find_backend(name: str, extra: Sequence = ()):
    """The backend called ``name``: one of ``extra``, a built-in, or one installed in the
    ``aotpack.backends`` entry-point group; None if there is none."""
    for b in extra:
        if getattr(b, "name", None) == name:
            return b
    if name in BUILTIN:
        import importlib

        module, cls = BUILTIN[name]
        return getattr(importlib.import_module(f"{__name__}.{module}"), cls)()
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()()
    return None


def get_backend(name, entry: str | None = None, extra: Sequence = ()):
    """The backend object for ``name`` (a name, or a Backend instance); AotpackError if
    no backend of that name is available here. ``entry`` (where the package says the
    backend was defined) is only quoted in the error, never imported. None: the
    default backend (``default_backend()``)."""
    from_env = name is None and bool(os.environ.get(ENV_BACKEND))
    if name is None:
        name = default_backend()
    if not isinstance(name, str):
        if not isinstance(name, Backend):
            raise AotpackError(
                f"backend {name!r} does not follow the Backend protocol",
                hint="give it a name attribute and compile(captured, options) / load(files) methods",
            )
        return name
    try:
        found = find_backend(name, extra)
    except Exception as e:  # noqa: BLE001 - an installed plugin that fails to load
        raise AotpackError(f"backend {name!r} is installed in the {ENTRY_POINT_GROUP!r} entry-point group but fails "
                           f"to load: {type(e).__name__}: {e}", hint="reinstall the package that provides it") from e
    if found is not None:
        return found
    what = (f"backend {name!r} (defined as {entry} where it was compiled) is not available here: aotpack never "
            "imports a module a package names") if entry else f"unknown backend {name!r}"
    if from_env:
        what += f" (${ENV_BACKEND}={name})"
    raise AotpackError(
        what,
        hint=f"pass aotpack.load(path, backends=[...]) with an object named {name!r}, or install a package that "
             f"registers it in the {ENTRY_POINT_GROUP!r} entry-point group (built-in: {', '.join(BUILTIN)})",
    )
