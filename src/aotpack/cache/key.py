"""Cache keys built from named parts.

A key is the sha256 of its parts, and the parts travel with the entry, so a miss can
say *why* it missed ("closest entry differs in torch: 2.12.0 -> 2.13.0") and
``aotpack cache explain KEY`` can show what went into a key. Everything that changes the
compiled code must be a part: vLLM's cache users were bitten by config missing from the
key (stale artifacts reused), so the backend options *and* the global inductor config
are both in.

Parts (in this order):

====================  ==========================================================
``graph``             sha256 of the graph's code and the metadata of its weights
``inputs``            dtype/shape/stride/device/requires_grad of each input, Dims
``backend``           the backend's name (``aoti``, ``inductor``, ``eager``, ...)
``options``           backend options and a hash of inductor's global config
``mode``              grad mode and autocast state (torch.compile backend only)
``aotpack``           aotpack version
``torch``             torch version
``python``            Python major.minor
``device``            ``cpu:<ISA>`` or ``cuda:<compute capability>``
====================  ==========================================================

Example:
    >>> k = CacheKey.of(graph="ab12", inputs="f32[8,4]", backend="aoti")   # doctest: +SKIP
    >>> k.digest[:16], k.differences(other)                                # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass

import torch

from .._version import __version__

__all__ = ["CacheKey", "environment_parts", "digest_json", "inductor_config_hash"]

PART_ORDER = ("graph", "inputs", "backend", "options", "mode", "aotpack", "torch", "python", "device")


def digest_json(value) -> str:
    """sha256 of a value's canonical JSON (sorted keys, no spaces; repr for the rest)."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr).encode()
    return hashlib.sha256(blob).hexdigest()


def inductor_config_hash() -> str:
    """A hex hash of inductor's global config (patched values and env overrides included).

    Left out: values that are paths on this machine (``xpu.cutlass_dir`` is the working
    directory, ``cuda.cutlass_dir`` torch's install folder; the list is
    ``_torch_compat.machine_local_config_keys()``). They do not change the compiled code
    for a given torch, and hashing them made the same compile miss from another folder."""
    from .. import _torch_compat as compat

    return compat.inductor_config_hash()


def environment_parts(device: str) -> dict[str, str]:
    """The parts that describe this machine and software, for a program on ``device``."""
    if device == "cuda" and torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        dev = f"cuda:sm{major}{minor}"
    else:
        dev = f"{device}:{torch.backends.cpu.get_cpu_capability()}:{platform.machine()}"
    return {
        "aotpack": __version__,
        "torch": torch.__version__,
        "python": ".".join(platform.python_version_tuple()[:2]),
        "device": dev,
    }


@dataclass(frozen=True)
class CacheKey:
    """A content key: ``digest`` (64 hex digits) over named, human-readable ``parts``."""

    parts: dict

    @classmethod
    def of(cls, **parts) -> CacheKey:
        unknown = set(parts) - set(PART_ORDER)
        if unknown:
            raise ValueError(f"unknown key parts {sorted(unknown)}; known: {PART_ORDER}")
        return cls({name: str(parts[name]) for name in PART_ORDER if name in parts})

    @property
    def digest(self) -> str:
        return digest_json(self.parts)

    def __str__(self) -> str:
        return self.digest

    def differences(self, other: dict) -> list[tuple[str, str | None, str | None]]:
        """``[(part, the other entry's value, this key's value)]`` for each part that differs
        (the order explain_against prints: ``other -> this``)."""
        names = [n for n in PART_ORDER if n in self.parts or n in other]
        return [(n, other.get(n), self.parts.get(n)) for n in names if self.parts.get(n) != other.get(n)]

    def explain_against(self, other: dict, other_digest: str) -> str:
        """One line: how this key differs from the entry ``other_digest`` with ``other`` parts."""
        diffs = self.differences(other)
        said = "; ".join(f"{n}: {_short(a)} -> {_short(b)}" for n, a, b in diffs)
        return f"closest entry {other_digest[:16]} differs in {len(diffs)} part(s): {said}"

    def closeness(self, other: dict) -> tuple[int, int]:
        """How close another entry's parts are: (same graph, number of equal parts)."""
        same = sum(self.parts.get(n) == other.get(n) for n in PART_ORDER if n in self.parts)
        return (int(self.parts.get("graph") == other.get("graph")), same)


def _short(value: str | None) -> str:
    if value is None:
        return "(none)"
    return value if len(value) <= 40 else value[:37] + "..."
