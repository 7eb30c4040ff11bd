"""The package format: one zip file, members stored uncompressed, no pickle anywhere.

Layout::

    manifest.json                 JSON, written first; lists every other member's BLAKE3 digest
    signatures.json               optional: Ed25519 signatures over manifest.json's bytes
                                  (package/signing.py); the one member the manifest does not list
    weights.safetensors           every distinct weight once (parameters, buffers, frozen
                                  tensors); a variant whose weight differs (bf16, say) stores
                                  it as "<name>@<variant>"
    variants/<name>/<files>       one folder per compiled variant (backend files)
    variants/<name>/program.json  the variant's portable program: torch.export's JSON
                                  serialization (no weights), to rebuild it elsewhere
    variants/<name>/examples.safetensors   the variant's example inputs (input0, input1, ...)

Members are stored, not deflated, and each starts at a 64-byte aligned offset (padding
in the local header's extra field, as Android's zipalign does), so the reader memory-maps
the weights in place: loading a package copies no weight bytes.

Manifest (``FORMAT_VERSION`` 2)::

    {"format": "aotpack", "format_version": 1, "created": ISO-8601,
     "versions": {"aotpack", "torch", "python"}, "platform": {"system", "machine"},
     "program": {"name", "kind", "source", "signature", "out_spec", "frozen",
                 "weights": {name: {"kind", "dtype", "shape"}}, "aliases": {name: name}},
     "variants": [{"name", "backend", "backend_entry", "device", "weights" (stored names,
                   in graph order), "weight_fqns" (the program's names for them),
                   "weight_targets" (torch.export's names for them, for rebuilding), "in_spec",
                   "inputs", "dims", "files", "meta", "distributed"}],
     "members": {path: {"blake3", "size"}}}      (older format 1 packages: "sha256")

Changelog of FORMAT_VERSION (bump on any change a reader must know about):
  1 (2026-11-22): first version.
    (2026-11-23, compatible additions; older packages read as before)
    variants[].inputs[].layout: memory layout the code was compiled for ("contiguous",
    {"order": [...]}, {"stride": [...]}; missing means "contiguous");
    variants[].aliased / meta.train.aliased: outputs that are views of inputs;
    variants[].module_training; meta.proxy_ops (aoti ops run by torch's proxy executor);
    variants[].state: stored weight names (buffers) the variant updates in place, e.g. a
    static KV cache: each load gets its own writable copy, shared by its variants;
    llm: {"max_batch", "max_len"} of a package built by aotpack.llm.compile;
    tree specs of kind "namedtuple" and "node" (types by import path).
    (2026-11-23, later) members[].blake3 replaces members[].sha256 in new packages (both are
    read); the optional signatures.json member.
  2 (2026-11-24): variants[].distributed = {"rank", "world_size", "pg_backend", "groups":
    {name: {"rank", "size"}}}: the variant is one rank's part of a sharded program
    (aotpack/distributed.py). Written only by packages that have such variants; a version 1
    reader would ignore the key and run a rank's shard anywhere, so it must refuse them.

Trust model (what a reader relies on; README "Trust" says it for users):
  - Damage (truncation, bit flips, a half-copied file): every member is checked against
    its digest before first use; the manifest against its zip CRC; weights against the
    dtypes and shapes the manifest declares.
  - Attack: digests alone prove nothing (who can rewrite a member can rewrite the
    manifest). With trusted keys (``load(path, trusted_keys=...)``,
    ``$AOTPACK_TRUSTED_KEYS``, ``aotpack verify --key``) the manifest's exact bytes must
    carry a valid Ed25519 signature by one of them before the manifest is even parsed;
    since it lists a cryptographic digest (BLAKE3, or SHA-256 in older packages) of
    every other member, that one signature covers the whole file.
  - Never trusted, signed or not: a package never makes aotpack import a module it
    names (backends by name from built-ins, ``backends=``, entry points; types only
    among those already known) and nothing is unpickled.
"""

from __future__ import annotations

import posixpath

import torch

from ..errors import FormatError
from ..tree import PARAM_KINDS

FORMAT_NAME = "aotpack"
FORMAT_VERSION = 2  # the newest version this reader reads
# A package records the lowest version whose readers understand everything in it (as
# zip's "version needed to extract"): 1 unless it uses a later feature, so a package
# without one still loads in older aotpack releases.
BASE_FORMAT_VERSION = 1
DISTRIBUTED_FORMAT_VERSION = 2  # variants[].distributed: a reader must check the rank
# The oldest version this reader still loads; every version in between has a
# checked-in package under tests/data/ that the tests load.
MIN_FORMAT_VERSION = 1

MANIFEST = "manifest.json"
PROGRAM = "program.json"  # inside variants/<name>/
WEIGHTS = "weights.safetensors"
EXAMPLES = "examples.safetensors"  # inside variants/<name>/
SIGNATURES = "signatures.json"
# Trusted keys a load requires when its caller names none (signing.keys_for_load); here so that
# load can tell whether it needs the signature code without importing it.
ENV_TRUSTED_KEYS = "AOTPACK_TRUSTED_KEYS"
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


# Member digests: BLAKE3 (several GB/s on two cores: a 2 GB weights member in ~0.25 s,
# sha256 needs ~1.2 s); packages written before it list sha256, which is still read.
DIGEST = "blake3"
_DIGESTS = ("blake3", "sha256")


def digest(data, algorithm: str = DIGEST) -> str:
    """Hex digest of ``data`` (bytes or a buffer) with a member-digest ``algorithm``."""
    if algorithm == "blake3":
        import blake3

        # several threads only where it pays (their start-up costs more than small inputs)
        big = memoryview(data).nbytes >= (4 << 20)
        return blake3.blake3(data, max_threads=blake3.blake3.AUTO if big else 1).hexdigest()
    import hashlib

    return hashlib.sha256(data).hexdigest()


def member_digest(record: dict) -> tuple[str, str] | None:
    """(algorithm, hex digest) a manifest member record lists, or None."""
    for algorithm in _DIGESTS:
        if isinstance(record.get(algorithm), str):
            return algorithm, record[algorithm]
    return None


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


_PARAM_KINDS = set(PARAM_KINDS)
_CONST_TYPES = {"bool", "int", "float", "str", "NoneType", "dtype", "device"}


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise FormatError(f"the manifest is malformed: {what}",
                          hint="the file was damaged or edited by hand; copy or rebuild the package")


# --- The manifest's schema -------------------------------------------------------------
# One declarative description, checked by ``conform`` before any field is read: every
# field the readers use is here with its type, so a manifest that passes cannot make a
# reader raise KeyError/TypeError/IndexError. Forms: a type (int excludes bool); [S] a
# list of S; {key: S} an object with those keys (more keys are allowed: later compatible
# additions); Opt(S) a key that may be missing; Map(S) an object of any keys to S; a
# function(value, where) for what a type cannot say (tree specs, layouts, shapes).


class Opt:
    """A key that may be missing, or null where ``null=True``."""

    def __init__(self, schema, null: bool = False):
        self.schema = schema
        self.null = null


class Map:
    def __init__(self, schema):
        self.schema = schema


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _nat(v, where: str) -> None:
    _need(_is_int(v) and 0 <= v < 2**62, f"{where} is not a size")


def _int_or_none(v, where: str) -> None:
    _need(v is None or _is_int(v), f"{where} is not an int or null")


def _device(v, where: str) -> None:
    try:
        ok = isinstance(v, str) and torch.device(v) is not None
    except (RuntimeError, ValueError):
        ok = False
    _need(ok, f"{where} names no device")


def _dtype(v, where: str) -> None:
    _need(isinstance(v, str) and isinstance(getattr(torch, v, None), torch.dtype), f"{where} names no dtype")


def _shape(v, where: str) -> None:
    _need(isinstance(v, list) and len(v) <= 64, f"{where} is not a shape")
    for d in v:
        _need((_is_int(d) and 0 <= d < 2**62) or isinstance(d, str) or (isinstance(d, dict) and isinstance(
            d.get("expr"), str)), f"{where} has a bad size {d!r}")


def _layout(v, where: str) -> None:
    if v == "contiguous":
        return
    dims = v.get("order", v.get("stride")) if isinstance(v, dict) and len(v) == 1 else None
    _need(isinstance(dims, list) and all(_is_int(x) and 0 <= x < 2**62 for x in dims), f"{where} is not a layout")
    if "order" in v:
        _need(sorted(dims) == list(range(len(dims))), f"{where} is not a dimension order")


def _spec(v, where: str) -> None:
    _check_spec(v, where)


def conform(value, schema, where: str) -> None:
    """FormatError naming the first field of ``value`` that does not follow ``schema``."""
    if isinstance(schema, type):
        ok = _is_int(value) if schema is int else (isinstance(value, (int, float)) and not isinstance(value, bool)
                                                  if schema is float else isinstance(value, schema))
        _need(ok, f"{where} is not {schema.__name__}")
    elif isinstance(schema, list):
        _need(isinstance(value, list), f"{where} is not a list")
        for i, item in enumerate(value):
            conform(item, schema[0], f"{where}[{i}]")
    elif isinstance(schema, Map):
        _need(isinstance(value, dict), f"{where} is not an object")
        for k, item in value.items():
            conform(item, schema.schema, f"{where}[{k!r}]")
    elif isinstance(schema, dict):
        _need(isinstance(value, dict), f"{where} is not an object")
        for k, sub in schema.items():
            if isinstance(sub, Opt):
                if k in value and not (sub.null and value[k] is None):
                    conform(value[k], sub.schema, f"{where}.{k}")
            else:
                _need(k in value, f"{where}.{k} is missing")
                conform(value[k], sub, f"{where}.{k}")
    elif schema is object:
        pass
    else:
        schema(value, where)


_TENSOR_INFO = {"dtype": _dtype, "shape": _shape}
_ALIASED = [{"output": int, "primal": int}]
_TRAIN = {"num_outputs": int, "grad_mask": [bool], "out_requires_grad": [bool], "mutation_targets": [int],
          "saved_mutated": [int], "aliased": _ALIASED, "saved": list,
          "mutated": [lambda v, where: _need(isinstance(v, dict) and (
              (v.get("kind") == "input" and _is_int(v.get("index"))) or
              (v.get("kind") == "buffer" and isinstance(v.get("weight"), str))), f"{where} is not an in-place update")], "weights_requires_grad": Opt([bool])}
_INPUT = {"dtype": _dtype, "device": _device, "shape": _shape, "layout": Opt(_layout)}
VARIANT_SCHEMA = {
    "name": str, "backend": str, "backend_entry": Opt(str, null=True), "device": _device, "torch": Opt(str),
    "weights": [str], "weight_fqns": Opt([str]), "weight_targets": Opt([str]),
    "in_spec": _spec, "inputs": [_INPUT], "dims": Opt(Map({"min": int, "max": _int_or_none})),
    "aliased": Opt(_ALIASED), "state": Opt([str]), "module_training": Opt(bool, null=True), "files": [str],
    "meta": Opt({"train": Opt(_TRAIN), "proxy_ops": Opt([str]), "fw": Opt({"proxy_ops": Opt([str])}),
                 "bw": Opt({"proxy_ops": Opt([str])}), "machine": Opt(str), "cpu_isa": Opt(str),
                 "compute_capability": Opt(str)}),
    "distributed": Opt({"rank": int, "world_size": int, "pg_backend": str, "groups": Map({"rank": int, "size": int})}),
}
MANIFEST_SCHEMA = {
    "format": str, "format_version": int, "created": str,
    "versions": {"aotpack": str, "torch": str, "python": str},
    "platform": {"system": str, "machine": str, "cpu_capability": Opt(str)},
    "program": {
        "name": str, "kind": str, "source": str,
        "signature": [{"name": str, "kind": str, "default": Opt(_spec)}],
        "out_spec": _spec, "frozen": [{"kind": str, "name": str, "where": str, "value": str}],
        "weights": Map({"kind": str, **_TENSOR_INFO}), "aliases": Map(str),
    },
    "variants": [VARIANT_SCHEMA],
    "members": Map({"size": int}),
    "llm": Opt({"max_batch": int, "max_len": int}),
}


def _check_spec(spec, where: str, n_tensors: int | None = None, depth: int = 0) -> None:
    _need(depth < 100 and isinstance(spec, dict) and isinstance(spec.get("kind"), str), f"{where} is not a tree spec")
    kind = spec["kind"]
    if kind == "tensor":
        i = spec.get("index")
        _need(_is_int(i) and i >= 0 and (n_tensors is None or i < n_tensors), f"{where} has a bad tensor index")
    elif kind == "const":
        _need(isinstance(spec.get("type"), str) and spec["type"] in _CONST_TYPES and "value" in spec, f"{where} has a constant of unknown type")
        value, typ = spec["value"], spec["type"]
        _need({"bool": lambda: isinstance(value, bool), "int": lambda: _is_int(value),
               "float": lambda: isinstance(value, (int, float, str)) and not isinstance(value, bool),
               "str": lambda: isinstance(value, str), "NoneType": lambda: value is None,
               "dtype": lambda: isinstance(getattr(torch, str(value), None), torch.dtype),
               "device": lambda: isinstance(value, str)}[typ](), f"{where} holds no {typ}")
    elif kind in ("tuple", "list", "dict"):
        children = spec.get("children")
        _need(isinstance(children, list), f"{where} has no children list")
        if kind == "dict":
            keys = spec.get("keys")
            _need(isinstance(keys, list) and len(keys) == len(children) and all(isinstance(k, str) for k in keys)
                  and len(set(keys)) == len(keys), f"{where} has bad dict keys")
        for j, c in enumerate(children):
            _check_spec(c, f"{where}[{j}]", n_tensors, depth + 1)
    elif kind in ("namedtuple", "node"):
        children = spec.get("children")
        _need(isinstance(children, list) and isinstance(spec.get("type"), str) and "." in spec["type"],
              f"{where} names no type")
        if kind == "namedtuple":
            fields = spec.get("fields")
            _need(isinstance(fields, list) and len(fields) == len(children) and all(isinstance(f, str) for f in fields),
                  f"{where} has bad fields")
        else:
            _need("context" in spec, f"{where} has no context")
        for j, c in enumerate(children):
            _check_spec(c, f"{where}[{j}]", n_tensors, depth + 1)
    else:
        _need(False, f"{where} has unknown kind {kind!r}")


def validate_manifest(m: dict) -> None:
    """Check the manifest against ``MANIFEST_SCHEMA`` and the links between its fields
    (names, indices, counts) before any of it is used: FormatError naming the field."""
    conform(m, MANIFEST_SCHEMA, "manifest")
    p = m["program"]
    sig = p["signature"]
    _need(all(x["kind"] in _PARAM_KINDS for x in sig), "program.signature has an unknown parameter kind")
    _need(len({x["name"] for x in sig}) == len(sig), "program.signature names a parameter twice")
    known = set(p["weights"]) | set(p.get("aliases") or {})
    _need(all(t in p["weights"] for t in (p.get("aliases") or {}).values()), "program.aliases")
    names = set()
    for v in m["variants"]:
        name = v["name"]
        try:
            check_variant_name(name)
        except ValueError:
            _need(False, f"variant name {name!r}")
        _need(name not in names, f"variant {name!r} appears twice")
        d = v.get("distributed")
        if d is not None:
            _need(m["format_version"] >= DISTRIBUTED_FORMAT_VERSION and 0 <= d["rank"] < d["world_size"]
                  and all(0 <= g["rank"] < g["size"] for g in d["groups"].values()), f"variant {name}.distributed")
        names.add(name)
        ws = v["weights"]
        _need(all(w in known for w in ws), f"variant {name}.weights names a weight the package does not hold")
        _need(all(w in ws for w in v.get("state", [])), f"variant {name}.state names a weight it does not use")
        for key in ("weight_fqns", "weight_targets"):
            _need(v.get(key) is None or len(v[key]) == len(ws), f"variant {name}.{key}")
        inputs, dims = v["inputs"], v.get("dims") or {}
        for d, r in dims.items():
            _need(0 <= r["min"] and (r.get("max") is None or r["min"] <= r["max"]), f"variant {name}.dims[{d!r}]")
        for i, g in enumerate(inputs):
            for s in g["shape"]:
                _need(not isinstance(s, str) or s in dims, f"variant {name}.inputs[{i}].shape names no dim")
            layout = g.get("layout") or "contiguous"
            _need(layout == "contiguous" or len(next(iter(layout.values()))) == len(g["shape"]),
                  f"variant {name}.inputs[{i}].layout")
        _check_spec(v["in_spec"], f"variant {name}.in_spec", len(inputs))
        _need(v["in_spec"]["kind"] == "tuple" and len(v["in_spec"]["children"]) == len(sig),
              f"variant {name}.in_spec does not match the signature")
        n_flat = len(ws) + len(inputs)
        train = (v.get("meta") or {}).get("train")
        for a in (train or {}).get("aliased", v.get("aliased") or []):
            _need(0 <= a["primal"] < n_flat and a["output"] >= 0, f"variant {name}.aliased")
        if train:
            _need(all(0 <= t < n_flat for t in train["mutation_targets"])
                  and all(0 <= x["index"] < len(inputs) for x in train["mutated"] if x["kind"] == "input")
                  and all(x["weight"] in known for x in train["mutated"] if x["kind"] == "buffer")
                  and len(train["grad_mask"]) == n_flat and len(train["out_requires_grad"]) == train["num_outputs"]
                  and len(train["mutation_targets"]) <= train["num_outputs"]
                  and all(0 <= i < len(train["saved"]) for i in train["saved_mutated"])
                  and isinstance(v.get("meta", {}).get("fw"), dict) and isinstance(v["meta"].get("bw"), dict),
                  f"variant {name}.meta.train")
        for f in v["files"]:
            check_member_name(variant_dir(name) + f)
    _need(len(m["variants"]) > 0, "variants is empty")
