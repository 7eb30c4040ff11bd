"""Compile once, reuse everywhere: a compile cache in a directory (or Redis).

    python examples/shared_cache.py [STORE]     # STORE: a folder or redis://host:6379/0

The second compile of the same program hits the cache and compiles nothing; a changed
input shape misses, and the miss says which key part differed.
"""

import sys
import tempfile

import torch

import aotpack
import aotpack.cache


def main(store: str) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(32, 32), torch.nn.GELU()).eval()
    for x in (torch.randn(4, 32), torch.randn(4, 32), torch.randn(9, 32)):
        aotpack.compile(model, (x,), backend="eager", cache=store, progress=print)
    print(dict(aotpack.cache.stats))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
