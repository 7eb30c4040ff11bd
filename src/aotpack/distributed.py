"""Multi-rank packages: one file for a program sharded over the ranks of a torch.distributed job.

A tensor-parallel model is a different program on every rank: each rank holds its shard
of the weights, and the graph calls collectives (``all_reduce`` ...) on a process group
named in the graph (``'0'``: the default group). So such a package holds one variant per
rank, ``<variant>.rank<r>``, each tagged with the job it was compiled for::

    "distributed": {"rank": 1, "world_size": 2, "pg_backend": "gloo",
                    "groups": {"0": {"rank": 1, "size": 2}}}

Compile on every rank (``torchrun``); every rank gets the whole package; save it once::

    # torchrun --nproc-per-node 2 build.py
    dist.init_process_group("gloo")
    model = MyTensorParallelModel(rank, world)          # collectives through
    pkg = aotpack.compile(model, (x,), distributed=True)  # torch.distributed._functional_collectives
    if dist.get_rank() == 0:
        pkg.save("tp.aot")

    # torchrun --nproc-per-node 2 serve.py
    dist.init_process_group("gloo")
    fn = aotpack.load("tp.aot")                          # this rank's variant(s) only
    y = fn(x)                                            # = the unsharded model's output

Load checks the job before any variant is used (``mismatches``): torch.distributed is
initialized, the world size and this process's rank are the ones compiled for, and each
process group the graph names exists here with the same size and rank. A package whose
graph calls collectives is refused unless compiled with ``distributed=True``: loaded on
another rank it would silently compute with the wrong shard.

Capture goes through torch.export, so collectives must be functional ones
(``torch.distributed._functional_collectives``, as gpt-fast writes tensor parallelism).
Models parallelized with DTensor (``parallelize_module``) are refused with a clear
error: torch.export cannot capture DTensor parameters in torch 2.11-2.13
(pytorch/pytorch#175467). Backends: eager, inductor and aoti (AOTInductor calls the c10d
functional ops through its fallback kernels; tested with gloo on CPU).
"""

from __future__ import annotations

import torch

from . import _torch_compat as compat
from .errors import AotpackError, CaptureError

__all__ = ["collective_groups", "require_job", "job", "mismatches", "refuse_dtensor", "gather"]

# torch.ops namespaces of the functional collectives torch.export records.
_COLLECTIVE_NAMESPACES = ("_c10d_functional", "c10d_functional", "_c10d_functional_autograd")


def collective_groups(graph_module: torch.fx.GraphModule) -> list[str]:
    """Names of the process groups the graph's collectives run on (empty: no collectives)."""
    names = []
    for node in graph_module.graph.nodes:
        op = node.target
        if node.op != "call_function" or getattr(op, "namespace", None) not in _COLLECTIVE_NAMESPACES:
            continue
        schema = op._schema
        for i, arg in enumerate(schema.arguments):
            if arg.name == "group_name":
                value = node.args[i] if i < len(node.args) else node.kwargs.get("group_name")
                if isinstance(value, str) and value not in names:
                    names.append(value)
    return names


def require_job() -> None:
    """AotpackError unless this process is a rank of an initialized torch.distributed job."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise AotpackError("distributed=True needs an initialized torch.distributed job",
                           hint="run under torchrun and call torch.distributed.init_process_group() first")


def job(groups: list[str]) -> dict:
    """This rank's place in the job, as a variant records it (the compile side)."""
    import torch.distributed as dist

    require_job()
    info = {"rank": dist.get_rank(), "world_size": dist.get_world_size(), "pg_backend": str(dist.get_backend()),
            "groups": {}}
    for name in groups:  # each exists: the graph was just captured with it
        group = compat.process_group_by_name(name)
        info["groups"][name] = {"rank": dist.get_rank(group), "size": group.size()}
    return info


def mismatches(info, device: str) -> list[str]:
    """Why a variant compiled for the job ``info`` (``manifest.Job``) cannot run in this
    process (the load side)."""
    import torch.distributed as dist

    want = f"rank {info.rank} of a world of {info.world_size}"
    if not (dist.is_available() and dist.is_initialized()):
        return [f"distributed: the variant is {want}, and torch.distributed is not initialized here "
                "(run under torchrun with the same world size and call init_process_group() before load)"]
    rank, world = dist.get_rank(), dist.get_world_size()
    if world != info.world_size:
        return [f"distributed: the variant is {want}; this job's world size is {world}"]
    if rank != info.rank:
        return [f"distributed: the variant is {want}; this process is rank {rank}"]
    problems = []
    backend = str(dist.get_backend())
    serves = "nccl" if device == "cuda" else "gloo"
    if serves not in backend and info.pg_backend not in backend:
        problems.append(f"distributed: the variant's collectives run on {device} ({info.pg_backend}); this "
                        f"job's process group backend is {backend}")
    for name, g in info.groups.items():
        group = compat.process_group_by_name(name)
        if group is None:
            problems.append(f"distributed: process group {name!r} (size {g.size}) does not exist here; create "
                            "the job's groups in the order the compile did before load")
        elif group.size() != g.size or dist.get_rank(group) != g.rank:
            problems.append(f"distributed: process group {name!r} is rank {dist.get_rank(group)} of "
                            f"{group.size()} here, rank {g.rank} of {g.size} when compiled")
    return problems


def refuse_dtensor(target) -> None:
    """CaptureError for a module with DTensor parameters, before torch.export fails on it
    with a message about pytree constants."""
    if not (isinstance(target, torch.nn.Module) and torch.distributed.is_available()
            and torch.distributed.is_initialized()):  # (DTensors need a process group)
        return
    from torch.distributed.tensor import DTensor

    for name, p in [*target.named_parameters(), *target.named_buffers()]:
        if isinstance(p, DTensor):
            raise CaptureError(
                f"{type(target).__qualname__}.{name} is a DTensor (parallelize_module): torch.export, which "
                f"aotpack captures with, cannot capture DTensor models in torch {compat.torch_version()} "
                "(pytorch/pytorch#175467)",
                hint="shard the weights yourself and call collectives from "
                     "torch.distributed._functional_collectives (as gpt-fast does), then compile with "
                     "distributed=True on every rank")


def gather(pkg):
    """Every rank's package merged into one, on every rank (``all_gather_object``).

    Each rank holds one copy of every rank's weights while merging: for models larger
    than a rank's memory, compile fewer ranks at a time (``variants=``) or per node.
    """
    import torch.distributed as dist

    from .package import Package
    from .package.reader import in_memory_file

    blobs: list = [None] * dist.get_world_size()
    dist.all_gather_object(blobs, pkg.to_bytes())
    merged = None
    for blob in blobs:
        with in_memory_file(blob) as name:
            one = Package.open(name)  # weights stay views of the mapping, which outlives the name
        if merged is None:
            merged = one
        else:
            merged.merge(one)
    return merged
