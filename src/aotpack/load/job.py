"""The job a rank's variant was compiled for, checked at load (``manifest.Job``): a
variant of a sharded program runs only on its rank of a job like the one it was
compiled in (aotpack.distributed writes them), as a CUDA variant runs only on CUDA.

    >>> mismatches(variant.distributed, "cpu")              # doctest: +SKIP
    ['distributed: the variant is rank 1 of a world of 2; this process is rank 0']
"""

from __future__ import annotations

from .. import _torch_compat as compat

__all__ = ["mismatches"]


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


