"""Packages in memory (``Package``) and on disk (``format``, ``writer``, ``reader``).

``aotpack.compile`` returns a Package: the manifest and member bytes, nothing written
yet. ``Package.save(path)`` writes them as one file, atomically. ``aotpack.load`` reads
a file back through ``reader.PackageReader``.
"""

from __future__ import annotations

import datetime
import os
import platform

import safetensors.torch
import torch

from .. import __version__
from .. import _torch_compat as compat
from . import format as fmt
from .writer import write_package

__all__ = ["Package", "fmt"]


def _dedupe(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Store each distinct tensor once: tied weights (the same tensor under two names)
    become one entry plus an alias."""
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, t in tensors.items():
        t = t.detach()
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype,
               t.device) if t.numel() else None
        if key is not None and key in seen:
            aliases[name] = seen[key]
            continue
        if key is not None:
            seen[key] = name
        unique[name] = t.to("cpu").contiguous().clone() if t.numel() else t.to("cpu").contiguous()
    return unique, aliases


def _tensor_info(t: torch.Tensor) -> dict:
    return {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}


class Package:
    """A compiled program in memory, ready to ``save``.

    Attributes:
      manifest: the JSON manifest (members' hashes are added when saving).
      members: member path -> bytes.
    """

    def __init__(self, manifest: dict, members: dict[str, bytes]):
        self.manifest = manifest
        self.members = members

    @classmethod
    def from_captured(cls, captured, variants: list[tuple[str, object, object]], *, examples: bool = True) -> Package:
        """Build a package from a Captured program and its compiled variants.

        Args:
          captured: the Captured program.
          variants: (name, backend, Compiled) per variant.
          examples: store the example inputs (for ``aotpack repro``).
        """
        from ..backends import backend_entry

        weights, aliases = _dedupe(captured.weights)
        members: dict[str, bytes] = {
            fmt.PROGRAM: compat.serialize_program(captured.exported),
            fmt.WEIGHTS: safetensors.torch.save(weights),
        }
        if examples and captured.example_inputs:
            ex, _ = _dedupe({f"input{i}": t for i, t in enumerate(captured.example_inputs)})
            members[fmt.EXAMPLES] = safetensors.torch.save(ex)
        manifest_variants = []
        for name, backend, compiled in variants:
            fmt.check_variant_name(name)
            files = []
            for rel, data in compiled.files.items():
                members[fmt.variant_dir(name) + rel] = data
                files.append(rel)
            manifest_variants.append({
                "name": name,
                "backend": backend.name,
                "backend_entry": backend_entry(backend),
                "device": compiled.meta.get("device", "cpu"),
                "weights": list(captured.weights),
                "in_spec": captured.in_spec,
                "inputs": captured.inputs,
                "dims": captured.dims,
                "files": files,
                "meta": compiled.meta,
            })
        manifest = {
            "format": fmt.FORMAT_NAME,
            "format_version": fmt.FORMAT_VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "versions": {"aotpack": __version__, "torch": compat.torch_version(),
                         "python": platform.python_version()},
            "platform": {"system": platform.system(), "machine": platform.machine(),
                         "cpu_capability": torch.backends.cpu.get_cpu_capability()},
            "program": {
                "name": captured.name,
                "kind": captured.kind,
                "source": captured.source,
                "signature": captured.signature,
                "out_spec": captured.out_spec,
                "frozen": captured.frozen,
                "weights": {n: {"kind": captured.weight_kinds[n], **_tensor_info(t)}
                            for n, t in captured.weights.items()},
                "aliases": aliases,
            },
            "variants": manifest_variants,
        }
        return cls(manifest, members)

    @property
    def variants(self) -> list[str]:
        return [v["name"] for v in self.manifest["variants"]]

    @property
    def nbytes(self) -> int:
        return sum(len(b) for b in self.members.values())

    def save(self, path: str | os.PathLike) -> str:
        """Write the package to ``path`` as one file, atomically; returns the path.

        Example:
            >>> aotpack.compile(model, (x,)).save("model.aot")     # doctest: +SKIP
        """
        path = os.fspath(path)
        write_package(path, self.manifest, self.members)
        return path

    def __repr__(self) -> str:
        p = self.manifest["program"]
        return (f"<aotpack.Package {p['name']} variants={self.variants} "
                f"{self.nbytes / 1e6:.1f} MB torch {self.manifest['versions']['torch']}>")


