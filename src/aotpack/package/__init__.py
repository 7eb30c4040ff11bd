"""Packages in memory (``Package``, memory.py) and on disk (``format``, ``writer``, ``reader``).

``aotpack.compile`` returns a Package: the manifest and member bytes, nothing written
yet. ``Package.save(path)`` writes them as one file, atomically. ``aotpack.load`` reads
a file back through ``reader.PackageReader``.

``Package`` (and the writer behind it) is imported on first use: a process that only
loads packages never runs the code that builds them.
"""

from __future__ import annotations

from . import format as fmt

__all__ = ["Package", "fmt"]


def __getattr__(name):
    if name == "Package":
        from .memory import Package

        return Package
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
