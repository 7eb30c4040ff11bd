"""Compile a training step once, then train in a fresh process without compiling.

    python examples/train_package.py [--backend aoti]

The package holds the forward *and* the backward; `aotpack.load(path, module=model)`
binds the model's parameters, so `loss.backward()` fills their `.grad` and any optimizer
trains through it.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import torch

import aotpack

TRAIN = r"""
import sys, time, torch, aotpack
sys.path.insert(0, sys.argv[2])
from train_package import make_model
model = make_model()
opt = torch.optim.SGD(model.parameters(), lr=0.1)  # (imports torch._dynamo: not the package's time)
g = torch.Generator().manual_seed(0)
t = time.perf_counter()
step = aotpack.load(sys.argv[1], module=model)          # no tracing, no compiling
for i in range(5):
    x = torch.randn(16, 32, generator=g)
    loss = step(x).square().mean()
    loss.backward()
    if i == 0:
        print(f"load + first forward and backward: {1e3 * (time.perf_counter() - t):.0f} ms")
    opt.step(); opt.zero_grad()
    print(f"step {i}: loss {loss.item():.4f}")
"""


def make_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.BatchNorm1d(64), torch.nn.ReLU(),
                               torch.nn.Linear(64, 8)).train()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", default="eager", help="aoti (compiled, ~15 s to build) or eager")
    a = ap.parse_args()
    path = os.path.join(tempfile.mkdtemp(), "train.aot")
    aotpack.compile(make_model(), (torch.randn(16, 32),), train=True, backend=a.backend).save(path)
    print(aotpack.inspect(path).__str__().splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run([sys.executable, "-c", TRAIN, path, here], check=True)


if __name__ == "__main__":
    main()
