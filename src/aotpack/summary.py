"""What ``aotpack inspect`` prints: a package described for a person, from its manifest."""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import tree
from .load.guards import describe_input
from .package.manifest import Manifest, Param


def _state_text(state) -> str:
    """The global state a variant's calls must have, where the program depends on more
    than autocast off: ``autocast bfloat16, grad mode False, os.environ['X'] unset,
    deterministic False``."""
    parts = [f"autocast {state.autocast}"] if state.autocast else []
    if state.grad_mode is not None:
        parts.append(f"grad mode {state.grad_mode}")
    if state.default_dtype != "float32":
        parts.append(f"default dtype {state.default_dtype}")
    parts += [f"os.environ[{k!r}] {'unset' if v is None else repr(v)}" for k, v in state.environ.items()]
    parts += [f"{name.replace('_', ' ')} {getattr(state, name)!r}" for name in state.reads]  # (read by the program)
    if state.default_device_read:
        parts.append(f"default device {state.default_device}")
    parts += [f"{name} {value!r}" for name, value in state.backends.items()]  # (torch.backends.cudnn.enabled True)
    return ", ".join(parts)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"  # pragma: no cover


@dataclass
class Inspection:
    """A package's description. ``str()`` gives the text; fields give the data.

    Attributes:
      path: the file.
      manifest: the manifest as read (``package.manifest.Manifest``; no code run;
        ``.to_json()`` gives it as the file holds it).
      sizes: member path -> bytes.
      problem: None if every member matched its digest, else what did not.
      signed_by: key ids of the package's signatures (listed, not checked: checking
        needs the trusted keys, ``aotpack verify --key``).
    """

    path: str
    manifest: Manifest
    sizes: dict
    problem: str | None
    signed_by: list = ()

    @property
    def verified(self) -> bool:
        return self.problem is None

    def __str__(self) -> str:
        m = self.manifest
        p, v, machine = m.program, m.versions, m.platform
        lines = [
            f"{self.path}  ({_size(os.path.getsize(self.path))}, aotpack format {m.format_version})",
            f"program   {p.name} ({p.kind}) from {p.source}",
            f"built     {m.created} with torch {v.torch}, Python {v.python}, aotpack {v.aotpack}"
            f" on {machine.system} {machine.machine} ({machine.cpu_capability or '?'})",
            f"integrity {'ok: every member matches its digest' if self.verified else 'FAILED: ' + self.problem}",
            "signed    " + (f"by {', '.join(self.signed_by)} (check with `aotpack verify --key`)" if self.signed_by
                            else "no"),
            "",
            f"signature ({', '.join(_param(x) for x in p.signature)}) -> {tree.describe(p.out_spec)}",
        ]
        types = tree.described_types(p.out_spec)
        for var in m.variants:
            types += [t for t in tree.described_types(var.in_spec) if t not in types]
        if types:
            lines.append(f"types     {', '.join(types)} (rebuilt by import path at load)")
        backends = sorted({var.backend for var in m.variants})
        entries = sorted({var.backend_entry for var in m.variants if var.backend_entry})
        lines.append(f"backends  {', '.join(backends)}" + (f" (user backends: {', '.join(entries)})" if entries else ""))
        lines += ["", "variants"]
        for var in m.variants:
            files = sum(self.sizes.get(f"variants/{var.name}/{f}", 0) for f in var.files)
            extra = f", CPU ISA {var.meta.cpu_isa}" if var.meta.cpu_isa else ""
            job = var.distributed
            if job:
                extra += (f", rank {job.rank} of {job.world_size} ({job.pg_backend}; collectives on "
                          f"{', '.join(repr(g) for g in job.groups) or 'no group'})")
            train = var.train
            if train:
                extra += (f", training: forward + backward, {len(train.saved)} saved tensors, "
                          f"{len(train.mutated)} in-place updates")
            lines.append(f"  {var.name}: backend {var.backend} on {var.device}{extra}, files {_size(files)}")
            state = _state_text(var.global_state)
            if state:
                lines.append(f"    global state: {state}")
            for path, leaf in tree.named_leaves(var.in_spec, [x.name for x in p.signature]):
                if leaf.kind in ("tensor", "int"):
                    lines.append(f"    {describe_input(path, var.inputs[leaf.index], var.dims, leaf)}")
                else:
                    lines.append(f"    {path} == {tree.const_repr(leaf)} (frozen)")
        total = self.sizes.get("weights.safetensors", 0)
        kinds: dict = {}
        for info in p.weights.values():
            kinds[info.kind] = kinds.get(info.kind, 0) + 1
        lines += ["", f"weights   {len(p.weights)} tensors ({', '.join(f'{n} {k}s' for k, n in kinds.items())}), "
                  f"{_size(total)}" + (f", {len(p.aliases)} shared" if p.aliases else "")]
        if p.frozen:
            lines += ["", "frozen at compile time (changing these later has no effect on the package; those marked "
                      "'followed' are read where the loading process holds them, when loaded with module=; those marked "
                      "'guarded' must equal the loading process's value at each call)"]
            # plain data and functions (torch's too), compared at each call
            guarded = {name for var in m.variants for name in [*var.global_values(), *var.torch_functions()]}
            for f in p.frozen:
                followed = "  followed" if f.followed else "  guarded" if f.kind == "global" and f.name in guarded else ""
                lines.append(f"  {f.kind:8} {f.name} = {f.value}  ({f.where}){followed}")
        return "\n".join(lines)


@dataclass
class Verification:
    """What ``aotpack.verify`` found; ``ok`` is whether ``aotpack.load`` would succeed.
    ``str()`` gives the text ``aotpack verify`` prints. (``result["ok"]`` also works.)

    Attributes:
      path: the file.
      ok: intact, signed by a trusted key if keys were given, types rebuildable here,
        and at least one variant runs here.
      integrity: None, or the first member that does not match its digest.
      signature: None, or why no trusted key signed it (when keys were given).
      signer: the trusted key that signed it, when keys were given and one did.
      signed_by: key ids of every signature on it (not checked without keys).
      types: None, or the types it returns that this process cannot rebuild.
      variants: variant name -> reasons it cannot run here (empty: it runs).
    """

    path: str
    ok: bool
    integrity: str | None
    signature: str | None
    signer: str | None
    signed_by: list
    types: str | None
    variants: dict

    def __getitem__(self, key: str):
        return getattr(self, key)

    def __str__(self) -> str:
        lines = [f"{self.path}: integrity " + ("ok (every member matches its digest)" if self.integrity is None
                                               else f"FAILED: {self.integrity}")]
        if self.signer:
            lines.append(f"  signature ok: signed by {self.signer}")
        elif self.signature:
            lines.append(f"  signature FAILED: {self.signature}")
        else:
            lines.append("  signature " + (f"not checked (signed by {', '.join(self.signed_by)}; pass --key to check)"
                                           if self.signed_by else "none (unsigned)"))
        if self.types:
            lines.append(f"  types FAILED: {self.types} (or load with plain_types=True)")
        for name, problems in self.variants.items():
            lines.append(f"  variant {name}: " + ("runs here" if not problems else "cannot run here: "
                                                  + "; ".join(problems)))
        if self.ok:
            lines.append("ok")
        return "\n".join(lines)


def _param(p: Param) -> str:
    prefix = {"var_positional": "*", "var_keyword": "**"}.get(p.kind, "")
    default = f"={tree.const_repr(p.default)}" if p.default is not None else ""
    return f"{prefix}{p.name}{default}"
