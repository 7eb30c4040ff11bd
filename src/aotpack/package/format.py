"""The package format: one zip file, members stored uncompressed, no pickle anywhere.

Layout::

    manifest.json                 JSON, written first; lists every other member's sha256
    program/model.json            torch.export's JSON serialization of the program graph
    weights.safetensors           every distinct weight once (parameters, buffers, frozen
                                  tensors); a variant whose weight differs (bf16, say) stores
                                  it as "<name>@<variant>"
    variants/<name>/<files>       one folder per compiled variant (backend files)
    variants/<name>/examples.safetensors   the variant's example inputs (input0, input1, ...)

Members are stored, not deflated, and each starts at a 64-byte aligned offset (padding
in the local header's extra field, as Android's zipalign does), so the reader memory-maps
the weights in place: loading a package copies no weight bytes.

Manifest (``FORMAT_VERSION`` 1)::

    {"format": "aotpack", "format_version": 1, "created": ISO-8601,
     "versions": {"aotpack", "torch", "python"}, "platform": {"system", "machine"},
     "program": {"name", "kind", "source", "signature", "out_spec", "frozen",
                 "weights": {name: {"kind", "dtype", "shape"}}, "aliases": {name: name}},
     "variants": [{"name", "backend", "backend_entry", "device", "weights" (stored names,
                   in graph order), "weight_fqns" (the program's names for them), "in_spec",
                   "inputs", "dims", "files", "meta"}],
     "members": {path: {"sha256", "size"}}}

Changelog of FORMAT_VERSION (bump on any change a reader must know about):
  1 (2026-11-22): first version.
"""

from __future__ import annotations

import posixpath

import torch

from ..errors import FormatError

FORMAT_NAME = "aotpack"
FORMAT_VERSION = 1
# The oldest version this reader still loads; every version in between has a
# checked-in package under tests/data/ that the tests load.
MIN_FORMAT_VERSION = 1

MANIFEST = "manifest.json"
PROGRAM = "program/model.json"
WEIGHTS = "weights.safetensors"
EXAMPLES = "examples.safetensors"  # inside variants/<name>/
ALIGN = 64
# Refuse manifests and member counts that no real package has (zip bombs, garbage).
MAX_MANIFEST_BYTES = 64 << 20
MAX_MEMBERS = 10_000

# safetensors dtype names (https://github.com/huggingface/safetensors, format spec)
SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool, "C64": torch.complex64,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    "U16": torch.uint16, "U32": torch.uint32, "U64": torch.uint64,
}


def variant_dir(name: str) -> str:
    return f"variants/{name}/"


def check_member_name(name: str) -> None:
    """Refuse names that could escape a folder when extracted (``../x``, ``/etc/x``)."""
    norm = posixpath.normpath(name)
    if (not name or name.startswith(("/", "\\")) or "\\" in name or ":" in name.split("/")[0]
            or norm.startswith("..") or norm != name.rstrip("/") or "\x00" in name):
        raise FormatError(f"package member name {name!r} is unsafe (absolute, or escapes its folder)",
                          hint="the file was not written by aotpack; do not load it")


def check_variant_name(name: str) -> None:
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise ValueError(f"variant name {name!r} must be letters, digits, '-', '_' or '.'")
