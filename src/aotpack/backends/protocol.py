"""The backend protocol: what ``compile`` returns (``Compiled``), what ``load`` is given
(``VariantFiles``), and the ``Backend`` shape. Its own module so that backends import it
without importing the registry that imports them (aotpack/backends/__init__.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch


class Compiled:
    """What ``Backend.compile`` returns.

    Attributes:
      files: relative file name -> bytes, stored under ``variants/<name>/``.
      meta: JSON-ready facts the loader needs (kept in the manifest, readable by inspect).

    (A plain class, not a dataclass: this module is on every load's path, and generating
    a dataclass's methods costs 0.35 ms.)
    """

    __slots__ = ("files", "meta")

    def __init__(self, files: dict[str, bytes], meta: dict | None = None):
        self.files = files
        self.meta = {} if meta is None else meta

    def __eq__(self, other):
        return type(other) is Compiled and (self.files, self.meta) == (other.files, other.meta)

    def __repr__(self):
        return f"Compiled(files={sorted(self.files)}, meta={self.meta!r})"


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
