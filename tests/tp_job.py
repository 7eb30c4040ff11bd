"""One job of tests/models/test_distributed.py, run under torchrun (gloo on CPU).

    torchrun --standalone --nproc-per-node 2 tests/tp_job.py build OUT BACKEND
    torchrun --standalone --nproc-per-node 2 tests/tp_job.py load PKG OUT

A two-layer MLP block with a residual, tensor-parallel as gpt-fast writes it: the first
Linear split by output rows, the second by input columns, their partial sums added with
a functional all_reduce. Each rank writes what it saw to OUT/rank<r>.json.
"""

import json
import os
import sys

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol

import aotpack

D, HIDDEN = 16, 64


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = torch.nn.LayerNorm(D)
        self.up = torch.nn.Linear(D, HIDDEN)
        self.down = torch.nn.Linear(HIDDEN, D)

    def forward(self, x):
        return x + self.down(torch.nn.functional.gelu(self.up(self.norm(x))))


class ShardedBlock(torch.nn.Module):
    """``Block`` with ``up`` and ``down`` sharded over the ranks of the default group."""

    def __init__(self, full: Block, rank: int, world: int):
        super().__init__()
        k = HIDDEN // world
        rows = slice(rank * k, (rank + 1) * k)
        self.norm = full.norm
        self.up_w = torch.nn.Parameter(full.up.weight[rows].detach().clone())
        self.up_b = torch.nn.Parameter(full.up.bias[rows].detach().clone())
        self.down_w = torch.nn.Parameter(full.down.weight[:, rows].detach().clone())
        self.down_b = full.down.bias

    def forward(self, x):
        h = torch.nn.functional.gelu(torch.nn.functional.linear(self.norm(x), self.up_w, self.up_b))
        partial = torch.nn.functional.linear(h, self.down_w)
        return x + funcol.all_reduce(partial, "sum", dist.group.WORLD) + self.down_b


def full_model() -> Block:
    torch.manual_seed(0)  # the same unsharded model on every rank
    return Block().eval()


def build(out: str, backend: str) -> dict:
    rank, world = dist.get_rank(), dist.get_world_size()
    full = full_model()
    sharded = ShardedBlock(full, rank, world).eval()
    x = torch.randn(4, D)
    seen = {}
    try:
        aotpack.compile(sharded, (x,), backend="eager")
    except aotpack.AotpackError as e:
        seen["without_distributed"] = str(e)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    dtensor = parallelize_module(full_model(), init_device_mesh("cpu", (world,)),
                                 {"up": ColwiseParallel(), "down": RowwiseParallel()})
    try:
        aotpack.compile(dtensor, (x,), backend="eager")
    except aotpack.CaptureError as e:
        seen["dtensor"] = str(e)
    with torch.no_grad():
        # inductor's backend takes static shapes only: a batch of 4 there, 0..64 elsewhere
        dynamic = None if backend == "inductor" else {"x": {0: aotpack.Dim("batch", max=64)}}
        pkg = aotpack.distributed.compile(sharded, (x,), backend=backend, dynamic=dynamic)
    seen["variants"] = pkg.variants
    if rank == 0:
        pkg.save(os.path.join(out, "tp.aot"))
    return seen


def load(path: str) -> dict:
    rank = dist.get_rank()
    seen = {}
    try:
        fn = aotpack.load(path)
    except aotpack.AotpackError as e:
        seen["load_error"] = f"{type(e).__name__}: {e}"
        return seen
    seen["variants"] = fn.variants
    full = full_model()
    gen = torch.Generator().manual_seed(1)  # the same inputs on every rank, as TP needs
    errors = []
    with torch.no_grad():
        dynamic = any(v.dims for v in fn.manifest.variants)
        for batch in (1, 3, 4, 17, 64) if dynamic else (4,):
            x = torch.randn(batch, D, generator=gen) * 3
            errors.append((fn(x) - full(x)).abs().max().item())
    seen["max_error"] = max(errors)
    try:
        fn(torch.randn(2, D, dtype=torch.float64))
    except aotpack.GuardError as e:
        seen["guard"] = str(e)
    seen["inspect"] = str(aotpack.inspect(path)) if rank == 0 else ""
    return seen


def main() -> None:
    mode, arg, out = sys.argv[1], sys.argv[2], sys.argv[3]
    dist.init_process_group("gloo")
    try:
        seen = build(arg, out) if mode == "build" else load(arg)
    finally:
        dist.destroy_process_group()
    target = arg if mode == "build" else out
    with open(os.path.join(target, f"rank{int(os.environ['RANK'])}.json"), "w") as f:
        json.dump(seen, f)
    # Leave without interpreter finalization. A module that called a functional collective
    # keeps the gloo process group alive past destroy_process_group() (torch 2.13), so its
    # worker threads outlive the interpreter, and one that drops a finished work's tensors
    # while Python finalizes aborts the process ("terminate called without an active
    # exception", SIGABRT in ProcessGroupGloo::runLoop; pytorch/pytorch#190489). About one
    # run in fifteen on 2 CPUs, after this job's results were written.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
