"""Child process for test_trace.py: compile a set of programs under aotpack.trace.

    python trace_programs.py OUT_DIR

Most use backend="aot_eager" (the recorder sees the same graphs for any backend, and
inductor compiles cost seconds each on 2 cores); one uses inductor with torch's trace
and provenance debug settings on. Runs on torch's fake process group (rank 1 of 4) so
collectives and DTensor compile without communication.
"""

import os
import sys

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol
from torch.testing._internal.distributed.fake_pg import FakeStore

import aotpack


def elementwise(x, y):
    return (x.sin() + y).relu() * 2


def matmul(x, w):
    return x @ w


def scalars(x, alpha, n):
    return x * alpha + n


def symbolic_sizes(x):
    # sizes that are products and powers of symbols: a view to s0*s1**2
    return x.reshape(-1).cumsum(0).reshape(x.shape[0], x.shape[1] * x.shape[2])


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(8, 16), torch.nn.Linear(16, 4)
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x):
        h = self.drop(torch.relu(self.fc1(x)))
        print("graph break here")
        return self.fc2(h).softmax(-1)


def collectives(x):
    g = dist.group.WORLD
    y = funcol.all_reduce(x * 2, "sum", g)
    z = funcol.all_gather_tensor(y, 0, g)
    z = funcol.broadcast(z, 0, g)
    r = funcol.reduce_scatter_tensor(z, "sum", 0, g)
    return z.sum() + r.sum()


def main(out):
    dist.init_process_group("fake", store=FakeStore(), rank=1, world_size=4)
    from torch.distributed.tensor import DeviceMesh, Replicate, Shard, distribute_tensor

    mesh = DeviceMesh("cpu", list(range(4)))
    torch.manual_seed(0)
    with aotpack.trace(out):
        c = lambda f, **kw: torch.compile(f, backend="aot_eager", **kw)  # noqa: E731
        c(elementwise)(torch.randn(4, 5), torch.randn(4, 5))
        c(matmul)(torch.randn(3, 8), torch.randn(8, 2))
        c(scalars)(torch.randn(6), 2.5, 3)
        x = torch.randn(5, 7)
        torch._dynamo.mark_dynamic(x, 0)
        c(elementwise)(x, torch.randn(5, 7))
        auto = c(matmul)
        auto(torch.randn(2, 8), torch.randn(8, 3))
        auto(torch.randn(6, 8), torch.randn(8, 3))  # automatic dynamic: recompiles with symbols
        sym = c(symbolic_sizes, dynamic=True)
        sym(torch.randn(2, 3, 3))
        c(Net().eval())(torch.randn(2, 8))
        c(collectives, fullgraph=True)(torch.randn(2, 3))
        dt = distribute_tensor(torch.randn(8, 4), mesh, [Shard(0)])
        c(lambda d: (d.redistribute(mesh, [Replicate()]) * 2).to_local(), fullgraph=True)(dt)
        import torch._inductor.config as config

        with config.patch({"trace.enabled": True, "trace.provenance_tracking_level": 1}):
            torch.compile(lambda a, b: (a * b).sum(1))(torch.randn(4, 4), torch.randn(4, 4))


if __name__ == "__main__":
    os.chdir(sys.argv[1])  # inductor's trace setting writes its debug folder to the cwd
    main(os.path.join(sys.argv[1], "trace"))
