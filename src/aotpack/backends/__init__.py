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

Example (a backend that runs the graph eagerly through fx):

    >>> class Interp:
    ...     name = "interp"
    ...     def compile(self, captured, options):
    ...         return Compiled(files={"graph.py": captured.graph_module.code.encode()})
    ...     def load(self, files):
    ...         ...
    >>> pkg = aotpack.compile(fn, (x,), backend=Interp())           # doctest: +SKIP

Packages record the backend's name and, for backends outside aotpack, the module that
defines it (``module:qualname``). ``aotpack.load`` finds it among the built-in backends,
those passed as ``load(..., backends=[...])``, or by importing that module.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch

from ..errors import AotpackError

__all__ = ["Backend", "Compiled", "VariantFiles", "get_backend", "backend_entry", "BUILTIN"]


@dataclass
class Compiled:
    """What ``Backend.compile`` returns.

    Attributes:
      files: relative file name -> bytes, stored under ``variants/<name>/``.
      meta: JSON-ready facts the loader needs (kept in the manifest, readable by inspect).
    """

    files: dict[str, bytes]
    meta: dict = field(default_factory=dict)


class VariantFiles(Protocol):
    """A loaded variant's files (integrity already verified)."""

    meta: dict

    def read(self, name: str) -> bytes: ...

    def path(self, name: str) -> str: ...


@runtime_checkable
class Backend(Protocol):
    name: str

    def compile(self, captured, options: dict) -> Compiled: ...

    def load(self, files: VariantFiles) -> Callable[[list[torch.Tensor]], Sequence[torch.Tensor]]: ...


BUILTIN = ("aoti", "inductor", "eager")


def backend_entry(backend) -> str | None:
    """``module:qualname`` for a user backend, so a fresh process can import it."""
    if type(backend).__module__.startswith("aotpack.backends"):
        return None
    return f"{type(backend).__module__}:{type(backend).__qualname__}"


def get_backend(name, entry: str | None = None, extra: Sequence = ()):
    """The backend object for ``name`` (a built-in name, or a Backend instance)."""
    if not isinstance(name, str):
        if not isinstance(name, Backend):
            raise AotpackError(
                f"backend {name!r} does not follow the Backend protocol",
                hint="give it a name attribute and compile(captured, options) / load(files) methods",
            )
        return name
    for b in extra:
        if getattr(b, "name", None) == name:
            return b
    if name == "aoti":
        from .aoti import AOTInductor

        return AOTInductor()
    if name == "eager":
        from .eager import Eager

        return Eager()
    if name == "inductor":
        from .inductor import Inductor

        return Inductor()
    if entry:
        module, _, qualname = entry.partition(":")
        try:
            obj = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
            return obj()
        except Exception as e:  # noqa: BLE001 - any failure means "not available here"
            raise AotpackError(
                f"the package's backend {name!r} ({entry}) cannot be loaded here: {type(e).__name__}: {e}",
                hint=f"install the module that defines it, or pass aotpack.load(path, backends=[{qualname}()])",
            ) from None
    raise AotpackError(
        f"unknown backend {name!r}",
        hint=f"use one of {', '.join(BUILTIN)}, or pass an object with name/compile/load",
    )
