"""The torch this process runs, and the oldest one aotpack supports.

Kept apart from ``_torch_compat`` (the wrappers of private torch APIs) because the load
path needs the version and this check and none of those wrappers: importing them cost
0.4 ms of every load.

Example:
    >>> torch_version()                                          # doctest: +SKIP
    '2.13.0'
"""

from __future__ import annotations

import torch

__all__ = ["MIN_TORCH", "TORCH_VERSION", "torch_version"]

# (major, minor) parsed by hand: packaging.version costs 2 ms of every load's import, and
# compiling a regex 0.2 ms ("2.13.0", "2.14.0a0", "2.13.0.dev20261101")
_RELEASE = torch.__version__.split("+")[0]
TORCH_VERSION = tuple(int(p) for p in _RELEASE.split(".")[:2])
MIN_TORCH = (2, 11)
if TORCH_VERSION < MIN_TORCH:
    raise ImportError(f"aotpack needs torch >= 2.11; this is torch {torch.__version__}: upgrade torch "
                      "(the private APIs aotpack wraps are kept for 2.11 and newer)")


def torch_version() -> str:
    """torch's version without the local build tag (``2.13.0``)."""
    return _RELEASE
