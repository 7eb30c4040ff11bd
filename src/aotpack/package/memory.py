"""A package in memory (``Package``): the manifest and member bytes before they are saved.

``aotpack.compile`` returns a Package: the manifest and member bytes, nothing written
yet. ``Package.save(path)`` writes them as one file, atomically. ``aotpack.load`` reads
a file back through ``reader.PackageReader``.
"""

from __future__ import annotations

import datetime
import os
import platform

import torch

from .. import _torch_compat as compat
from .. import tree
from .._version import __version__
from ..tree import dtype_name
from . import format as fmt
from .manifest import (
    Job,
    Manifest,
    Meta,
    Platform,
    Program,
    Variant,
    Versions,
    WeightInfo,
    holds_dict,
    holds_torch_values,
    strides_follow_dims,
    typed_numbers,
)
from .weights import TensorsMember, stored_form
from .writer import write_package

__all__ = ["Package", "fmt"]


def _safetensors():
    # Imported on first use: the load path reads safetensors with its own mmap reader.
    import safetensors.torch

    return safetensors.torch


def _dedupe(tensors: dict[str, torch.Tensor], copy: bool = True,
            layouts: dict | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Store each distinct tensor once: tied weights (the same tensor under two names)
    become one entry plus an alias. ``copy``: snapshot the values (the caller's model
    may change after compile); False for tensors the package already owns. ``layouts``:
    store weights in the form their layout is rebuilt from (weights.stored_form), each
    one's layout put there; else contiguous (example inputs)."""
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
        if layouts is None:
            stored = t.to("cpu").contiguous()
        else:
            stored, layouts[name] = stored_form(t)
        if copy and stored.numel() and stored.untyped_storage().data_ptr() == t.untyped_storage().data_ptr():
            stored = stored.clone()  # still the caller's memory (to/contiguous copied nothing): snapshot it
        unique[name] = stored
    return unique, aliases


class Package:
    """A compiled program in memory, ready to ``save``; one or more variants.

    Attributes:
      manifest: the manifest (``manifest.Manifest``; members' digests are added when saving).
      members: member path -> bytes; the weights member is a ``TensorsMember``
        (tensors serialized while the file is written, never as one bytes object).
    """

    def __init__(self, manifest: Manifest, members: dict[str, bytes]):
        self.manifest = manifest
        self.members = members

    @classmethod
    def from_captured(cls, captured, name: str, backend, compiled, *, examples: bool = True,
                      distributed: dict | None = None) -> Package:
        """A package holding one variant ``name`` of ``captured``, compiled by ``backend``."""
        manifest = Manifest(
            format=fmt.FORMAT_NAME,
            format_version=fmt.BASE_FORMAT_VERSION,
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            versions=Versions(aotpack=__version__, torch=compat.torch_version(), python=platform.python_version()),
            platform=Platform(system=platform.system(), machine=platform.machine(),
                              cpu_capability=torch.backends.cpu.get_cpu_capability()),
            program=Program(name=captured.name, kind=captured.kind, source=captured.source,
                            signature=list(captured.signature), out_spec=captured.out_spec,
                            frozen=list(captured.frozen), weights={}, aliases={}).checked("the captured program"),
            variants=[],
        )
        members = {fmt.WEIGHTS: TensorsMember({})}
        pkg = cls(manifest, members)
        pkg.add_variant(captured, name, backend, compiled, examples=examples, distributed=distributed)
        return pkg

    @classmethod
    def open(cls, path: str | os.PathLike) -> Package:
        """Read a saved package back into memory (verified first), e.g. to add a variant."""
        from .reader import PackageReader

        with PackageReader(path) as r:
            r.verify()
            manifest = r.manifest.replace(members={})
            # weights stay views of the mapped file: adding a variant copies none of them
            members = {n: TensorsMember(r.tensors(n)) if n == fmt.WEIGHTS else r.read(n)
                       for n in r.names() if n != fmt.MANIFEST}
        return cls(manifest, members)

    def add_variant(self, captured, name: str, backend, compiled, *, examples: bool = True,
                    distributed: dict | None = None, snapshot: bool = True) -> None:
        """Add variant ``name``: its weights join the shared store, each distinct tensor once.

        The program's signature and output structure must be those of the package.
        ``distributed``: the job a rank's variant was compiled for (see aotpack.distributed).
        ``snapshot=False``: keep the captured weights themselves, not copies (the caller
        saves the package before the model can change: no second copy of the weights).
        """
        from ..backends import backend_entry

        output_sizes = self._check_new_variant(name, captured.signature, captured.out_spec, captured.output_sizes)
        layouts: dict = {}
        new, aliases = _dedupe(captured.weights, copy=snapshot, layouts=layouts)
        names = self._store_weights(name, [(fqn, new[aliases.get(fqn, fqn)], captured.weight_kinds[fqn],
                                            layouts[aliases.get(fqn, fqn)], list(captured.weights[fqn].shape))
                                           for fqn in captured.weights])
        prefix = fmt.variant_dir(name)
        try:
            self.members[prefix + fmt.PROGRAM] = compat.serialize_program(captured.exported)
        except compat.ProgramNotSerializable as e:
            from ..errors import CaptureError

            raise CaptureError(f"{captured.name}: torch {compat.torch_version()} cannot store the program's graph "
                               f"({e})", hint="compile it with a newer torch (2.13 stores such graphs), or move "
                                              "the part torch cannot store out of the program") from None
        if captured.in_order_program:
            self.members[prefix + fmt.PROGRAM_IN_ORDER] = captured.in_order_program
        files = []
        for rel, data in compiled.files.items():
            self.members[prefix + rel] = data
            files.append(rel)
        if examples and captured.example_inputs:
            ex, _ = _dedupe({f"input{i}": t for i, t in enumerate(captured.example_inputs)})
            self.members[prefix + fmt.EXAMPLES] = _safetensors().save(ex)
        functions = {f"{c.__module__}.{c.__qualname__}": c for c in captured.applied_functions}
        # checked: a backend's meta or a capture that the reader would refuse fails here, not at load
        variant = Variant(
            name=name,
            backend=backend.name,
            backend_entry=backend_entry(backend),
            device=compiled.meta.get("device", captured.device),  # a backend may not say (eager)
            torch=compat.torch_version(),
            weights=names,
            weight_fqns=list(captured.weights),
            weight_targets=[captured.weight_targets[n] for n in captured.weights],
            in_spec=captured.in_spec,
            inputs=list(captured.inputs),
            dims=dict(captured.dims),
            aliased=list(captured.aliased),
            state=[names[list(captured.weights).index(n)] for n in captured.state],
            module_training=captured.module_training,
            global_state=captured.global_state,
            mutated_inputs=list(captured.mutated_inputs),
            requires_grad_weights=dict(captured.requires_grad_weights),
            detached_weights=list(captured.detached_weights),
            inference_outputs=list(captured.inference_outputs),
            output_sizes=output_sizes,
            tensor_aliases=dict(captured.tensor_aliases),
            custom_functions=list(functions),
            vmap_rule_functions=[name for name, c in functions.items() if getattr(c, "generate_vmap_rule", False) is True],
            module_attributes=dict(captured.module_attributes),
            class_attributes=dict(captured.class_attributes),
            module_children={k: list(v) for k, v in captured.module_children.items()},
            iterated_weights={k: list(v) for k, v in captured.iterated_weights.items()},
            module_types=dict(captured.module_types),
            module_code=dict(captured.module_code),
            module_hooks={k: list(v) for k, v in captured.module_hooks.items()},
            function_code=dict(captured.function_code),
            subclass_weights=dict(captured.subclass_weights),
            files=files,
            meta=Meta.from_json(_with_library_ops(compiled.meta, captured.library_ops),
                                f"variant {name} (as compiled by backend {backend.name}).meta"),
            distributed=None if distributed is None else Job.from_json(distributed, f"variant {name}.distributed"),
        ).checked(f"variant {name} (as compiled by backend {backend.name})")
        self.manifest = self.manifest.replace(variants=[*self.manifest.variants, variant],
                                              format_version=max(self.manifest.format_version,
                                                                             _needs(variant, self.manifest.program)))

    def merge(self, other: Package) -> None:
        """Add every variant of ``other`` (a package of the same program), with its
        files and weights: how the ranks' packages of a sharded program become one."""
        program = other.manifest.program
        stored = dict(other.weights)
        for alias, target in program.aliases.items():
            stored[alias] = stored[target]
        for v in other.manifest.variants:
            output_sizes = self._check_new_variant(v.name, program.signature, program.out_spec, v.output_sizes)
            infos = [program.weight(key) for key in v.weights]
            names = self._store_weights(v.name, [(fqn, stored[key], i.kind, i.layout, list(i.shape))
                                                 for key, fqn, i in zip(v.weights, v.weight_fqns, infos)])
            renamed = dict(zip(v.weights, names))
            prefix = fmt.variant_dir(v.name)
            for member, data in other.members.items():
                if member.startswith(prefix):
                    self.members[member] = data
            self.manifest = self.manifest.replace(
                variants=[*self.manifest.variants, v.replace(weights=names, state=[renamed[n] for n in v.state],
                                                              output_sizes=output_sizes)])
        self.manifest = self.manifest.replace(format_version=max(self.manifest.format_version,
                                                                 other.manifest.format_version))

    def _check_new_variant(self, name: str, signature, out_spec, output_sizes=()) -> list:
        """Check that variant ``name`` is of the package's program; returns its
        ``output_sizes`` in the package's numbering. Where one variant returns an int of a
        Dim (a size leaf) and another the int it is fixed at (a constant: ``x.shape[0]`` of
        a variant compiled for one size), the program's spec has a size leaf there and the
        fixed variant that int among its ``output_sizes``."""
        from ..errors import AotpackError

        fmt.check_variant_name(name)
        if name in self.variants:
            raise AotpackError(f"the package already has a variant named {name!r}",
                               hint="pick another variant name")
        program = self.manifest.program
        if not self.variants:
            return list(output_sizes)
        common = tree.sizes_in_common(program.out_spec, out_spec) if signature == program.signature else None
        if common is None:
            raise AotpackError(f"variant {name!r} is not the same program: its signature or output structure "
                               f"differs from the package's ({program.name})",
                               hint="variants differ only in dtypes, shapes, devices or backends")
        if common != program.out_spec:
            variants = [v.replace(output_sizes=tree.sizes_along(common, program.out_spec, v.output_sizes))
                        for v in self.manifest.variants]
            self.manifest = self.manifest.replace(
                program=program.replace(out_spec=common), variants=variants,
                format_version=max(self.manifest.format_version, fmt.SIZE_OUTPUTS_FORMAT_VERSION))
        return tree.sizes_along(common, out_spec, list(output_sizes))

    def _store_weights(self, name: str, weights: list[tuple[str, torch.Tensor, str, object, list]]) -> list[str]:
        """Put variant ``name``'s weights ((program name, stored form, kind, layout, shape)
        in graph order) in the shared store; returns their stored names. A name already
        stored with other values or another layout (a bf16 variant, another rank's shard)
        is stored as ``<name>@<variant>``."""
        program = self.manifest.program
        stored = dict(self.members[fmt.WEIGHTS].tensors)
        for alias, target in program.aliases.items():
            stored[alias] = stored[target]
        names = []
        infos = dict(program.weights)
        for fqn, src, kind, layout, shape in weights:
            key = fqn
            layout = None if layout == "contiguous" else layout
            if key in stored and not (_same(stored[key], src) and infos[key].layout == layout):
                key = f"{fqn}@{name}"  # same parameter, other dtype/values/layout for this variant
            if key not in stored:
                stored[key] = src
                infos[key] = WeightInfo(kind=kind, dtype=dtype_name(src.dtype), shape=shape, layout=layout)
            names.append(key)
        unique, aliases = _dedupe(stored, copy=False)
        self.manifest = self.manifest.replace(program=program.replace(weights=infos, aliases=aliases))
        self.members[fmt.WEIGHTS] = TensorsMember(unique)
        return names

    @property
    def variants(self) -> list[str]:
        return [v.name for v in self.manifest.variants]

    @property
    def nbytes(self) -> int:
        return sum(len(b) for b in self.members.values())

    @property
    def weights(self) -> dict[str, torch.Tensor]:
        """The stored weights, each distinct tensor once (aliases in manifest.program.aliases)."""
        return self.members[fmt.WEIGHTS].tensors

    def save(self, path):
        """Write the package to ``path`` as one file, atomically; returns the path. A
        binary file object (``io.BytesIO``, an open file) is written to as it is.

        Example:
            >>> aotpack.compile(model, (x,)).save("model.aot")     # doctest: +SKIP
        """
        from .writer import package_entries, write_zip

        if hasattr(path, "write"):
            if hasattr(path, "seekable") and path.seekable():
                write_zip(path, package_entries(self.manifest, self.members))
            else:  # a pipe or socket: members are aligned by position, so build it first
                path.write(self.to_bytes())
            return path
        path = os.fspath(path)
        write_package(path, self.manifest, self.members)
        return path

    def to_bytes(self) -> bytes:
        """The package file's bytes (``aotpack.load`` takes them back)."""
        import io

        from .writer import package_entries, write_zip

        buf = io.BytesIO()
        write_zip(buf, package_entries(self.manifest, self.members))
        return buf.getvalue()

    def __repr__(self) -> str:
        return (f"<aotpack.Package {self.manifest.program.name} variants={self.variants} "
                f"{self.nbytes / 1e6:.1f} MB torch {self.manifest.versions.torch}>")


def _needs(variant: Variant, program: Program) -> int:
    """The oldest format version whose readers run ``variant`` correctly."""
    state = variant.global_state
    train = variant.meta.train
    if state.backends:
        return fmt.BACKEND_SETTINGS_FORMAT_VERSION  # older readers ignore the field: they would run any value
    if (state.default_device_read and state.default_device != "cpu") or "cuda_available" in state.reads:
        return fmt.DEFAULT_DEVICE_FORMAT_VERSION  # older readers would run with no mode, or refuse the read
    if state.reads or any(i.properties for i in variant.inputs):
        return fmt.SETTINGS_READ_FORMAT_VERSION  # older readers ignore the fields: they would run any setting
    if state.environ:
        return fmt.ENVIRON_FORMAT_VERSION  # older readers ignore the field: they would run any environment
    if any(leaf.offset for leaf in tree.int_leaves(variant.in_spec)):
        return fmt.INT_OFFSET_FORMAT_VERSION  # older readers ignore the field: only the version stops them
    if variant.in_spec.int_indices():
        return fmt.INT_ARGUMENTS_FORMAT_VERSION  # older readers refuse the spec's kind as unknown
    if typed_numbers(variant.output_sizes):
        return fmt.NUMBER_OUTPUTS_FORMAT_VERSION  # older readers refuse the entry as malformed
    if variant.output_sizes:
        return fmt.SIZE_OUTPUTS_FORMAT_VERSION  # older readers refuse the spec's kind as unknown
    if any(map(holds_dict, variant.module_attributes.values())):
        return fmt.DICT_VALUES_FORMAT_VERSION  # older readers refuse the value as malformed
    if variant.global_values():
        return fmt.GLOBAL_VALUES_FORMAT_VERSION  # older readers would run the value compiled in, unguarded
    if any(path.startswith("global:") for path in variant.module_types):
        return fmt.GLOBAL_MODULES_FORMAT_VERSION  # older readers find no submodule there: every bound call refused
    if train is not None and train.subclass_grads:
        return fmt.SUBCLASS_GRAD_FORMAT_VERSION  # older readers would return a plain inner tensor as the gradient
    if tree.subclass_types(variant.in_spec) or tree.subclass_types(program.out_spec):
        return fmt.SUBCLASS_FORMAT_VERSION  # older readers refuse the spec's kind as unknown
    if any(strides_follow_dims(i.layout) for i in variant.inputs):
        return fmt.DIM_STRIDES_FORMAT_VERSION  # older readers refuse the layout as malformed
    if any(d.exclude for d in variant.dims.values()):
        return fmt.DIM_EXCLUDE_FORMAT_VERSION  # older readers would run the excluded sizes
    if train is not None and any(v.follows_dims() for v in (*train.aliased, *(train.output_views or ()))):
        return fmt.DYNAMIC_TRAIN_VIEWS_FORMAT_VERSION  # older readers would pass Dim names to as_strided
    if (any(program.weight(w).layout is not None for w in variant.weights)  # older readers: run contiguous
            or any(map(holds_torch_values, variant.module_attributes.values()))):  # refused as malformed
        return fmt.WEIGHT_LAYOUTS_FORMAT_VERSION
    if train is not None and any(a.through_function for a in train.aliased):
        return fmt.FUNCTION_ALIAS_FORMAT_VERSION  # older readers would rebuild a view that skips the Function
    if train is not None and train.output_views:
        return fmt.OUTPUT_VIEWS_FORMAT_VERSION  # older readers would return a copy, not a view of the output
    if variant.requires_grad_weights or any(a.follows_dims() for a in variant.aliased):
        return fmt.DYNAMIC_VIEWS_FORMAT_VERSION  # older readers cannot rebuild a view of the call's sizes
    if state.grad_mode_after is not None or any(i.requires_grad_pinned for i in variant.inputs):
        return fmt.GRAD_MODE_AFTER_FORMAT_VERSION  # older readers would not replay it, or not check it
    if state.autocast is not None or state.grad_mode is not None or variant.mutated_inputs:
        # older readers would not guard the state, or would pass a copy of an input the code writes
        return fmt.GLOBAL_STATE_FORMAT_VERSION
    if variant.distributed is not None:  # readers before version 2 would run a rank's variant anywhere
        return fmt.DISTRIBUTED_FORMAT_VERSION
    return fmt.BASE_FORMAT_VERSION


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


def _with_library_ops(meta: dict, ops: list[str]) -> dict:
    """A backend's meta with the library ops the graph calls as ``proxy_ops``, the ops
    load checks are registered (Meta.ops): the eager and inductor backends' code calls
    them through torch's dispatcher. A backend that lists them itself (aoti: the ops its
    proxy executor runs, ``[]`` for none) keeps its list."""
    if not ops or "proxy_ops" in meta:
        return meta
    return {**meta, "proxy_ops": list(ops)}
