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
    pkg = aotpack.distributed.compile(model, (x,))      # torch.distributed._functional_collectives
    if dist.get_rank() == 0:
        pkg.save("tp.aot")

    # torchrun --nproc-per-node 2 serve.py
    dist.init_process_group("gloo")
    fn = aotpack.load("tp.aot")                          # this rank's variant(s) only
    y = fn(x)                                            # = the unsharded model's output

Load checks the job before any variant is used (``mismatches``): torch.distributed is
initialized, the world size and this process's rank are the ones compiled for, and each
process group the graph names exists here with the same size and rank. A package whose
graph calls collectives is refused by ``aotpack.compile``: loaded on another rank it
would silently compute with the wrong shard. (The graph analysis is
build/collectives.py; the load side's check is load/job.py: this module is the
application built on them.)

Capture goes through torch.export, so collectives must be functional ones
(``torch.distributed._functional_collectives``, as gpt-fast writes tensor parallelism).
Models parallelized with DTensor (``parallelize_module``) are refused with a clear
error: torch.export cannot capture DTensor parameters in torch 2.11-2.13
(pytorch/pytorch#175467). Backends: eager, inductor and aoti (AOTInductor calls the c10d
functional ops through its fallback kernels; tested with gloo on CPU).
"""

from __future__ import annotations

import contextlib
import os

from . import _torch_compat as compat
from .errors import AotpackError

__all__ = ["compile", "require_job", "job", "gather"]


def compile(target, args: tuple = (), kwargs: dict | None = None, **options):
    """``aotpack.compile`` of one rank's part of a sharded program, called on every rank
    of an initialized torch.distributed job: each rank's variants are named
    ``<name>.rank<r>`` and tagged with the job; every rank gets the package of all ranks
    (save it on one). Load picks this rank's variants and checks rank and world size.
    ``options``: ``aotpack.compile``'s keyword arguments (inference packages: not
    ``train``).

    Example:
        >>> pkg = aotpack.distributed.compile(model, (x,))       # doctest: +SKIP
        >>> if dist.get_rank() == 0: pkg.save("tp.aot")          # doctest: +SKIP
    """
    from .api import plan
    from .build.collectives import collective_groups

    if options.get("train"):
        raise TypeError("aotpack.distributed.compile compiles inference packages on every rank: not train=True")
    require_job()

    def place(captured, name: str) -> tuple[str, dict]:
        rank = job(collective_groups(captured.graph_module))
        return f"{name}.rank{rank['rank']}", rank

    built = plan(target, args, kwargs, **options)
    with _own_inductor_cache():
        pkg = built.build(place)
    built.say("gathering every rank's variants")
    return gather(pkg)


@contextlib.contextmanager
def _own_inductor_cache():
    """This rank compiles into an inductor cache folder of its own. The ranks of a
    tensor-parallel job often compile the same graph (their shards differ only in
    weights, which are graph inputs here), and inductor then writes the same cache files
    from several processes at once: a rank read another's half-written AOTInductor
    metadata (an empty JSON). Compiled code is not shared between the ranks anyway."""
    import torch.distributed as dist

    before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(compat.inductor_cache_dir(), f"rank{dist.get_rank()}")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = before


def require_job() -> None:
    """AotpackError unless this process is a rank of an initialized torch.distributed job."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise AotpackError("aotpack.distributed.compile needs an initialized torch.distributed job",
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
