"""Disk to GPU: how fast a package's weights reach the device, against the machine's own
speed (read the file, copy it to the GPU) and safetensors' ``load_file(device="cuda")``.

A stack of bf16 Linear layers of ``--gb`` GB (a package compiled on CUDA, backend eager:
the weight path is the same for every backend), each case in a fresh process with CUDA
initialised first (not counted), the file in the page cache (it was just written; a
second pass of every case is the one reported):

- machine: ``readinto`` a pinned host buffer of the whole file, then one copy to the GPU
  (the two steps are timed apart too);
- safetensors: ``load_file(path, device="cuda")`` of the same weights;
- aotpack: ``aotpack.load(path)`` + the first call.

    python bench/gpu_load.py [--gb 6.6]
Writes bench/results/gpu_load-<gpu>.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import fresh  # noqa: E402

PRELUDE = r"""
import json, os, sys, time
import torch
torch.zeros(1, device="cuda"); torch.cuda.synchronize()     # CUDA up before the clock starts
t0 = time.perf_counter()
"""

MACHINE = PRELUDE + r"""
size = os.path.getsize(sys.argv[1])
host = torch.empty(size, dtype=torch.uint8, pin_memory=True)
t_alloc = time.perf_counter()
with open(sys.argv[1], "rb", buffering=0) as f:
    view = memoryview(host.numpy())
    got = 0
    while got < size:
        got += f.readinto(view[got:])
t_read = time.perf_counter()
dev = host.to("cuda", non_blocking=True)
torch.cuda.synchronize()
t_copy = time.perf_counter()
print(json.dumps({"seconds": t_copy - t_alloc, "read_s": t_read - t_alloc, "copy_s": t_copy - t_read,
                  "pin_alloc_s": t_alloc - t0, "bytes": size}))
"""

SAFETENSORS = PRELUDE + r"""
from safetensors.torch import load_file
w = load_file(sys.argv[1], device="cuda")
torch.cuda.synchronize()
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""

AOTPACK = PRELUDE + r"""
import aotpack
fn = aotpack.load(sys.argv[1])
with torch.no_grad():
    fn(torch.randn(1, 4096, device="cuda", dtype=torch.bfloat16))
torch.cuda.synchronize()
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=6.6)
    opts = parser.parse_args()
    import torch
    from safetensors.torch import save_file

    import aotpack
    from _common import machine, write_gpu_result

    d = 4096
    layers = max(1, round(opts.gb * 1e9 / (2 * d * d)))
    model = torch.nn.Sequential(*[torch.nn.Linear(d, d, bias=False) for _ in range(layers)])
    model = model.to("cuda", torch.bfloat16).eval()
    work = tempfile.mkdtemp(prefix="aotpack-gpu-load-")
    pkg_path = os.path.join(work, "model.aot")
    with torch.no_grad():
        aotpack.compile(model, (torch.randn(1, d, device="cuda", dtype=torch.bfloat16),), backend="eager").save(pkg_path)
    st_path = os.path.join(work, "model.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, st_path)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    del model
    torch.cuda.empty_cache()
    rows = {}
    for _attempt in range(2):  # the second pass is reported: every file in the page cache
        for name, code, path in (("machine", MACHINE, pkg_path), ("safetensors", SAFETENSORS, st_path),
                                 ("aotpack", AOTPACK, pkg_path)):
            rows[name] = fresh(code, path)
    for name, r in rows.items():
        print(f"{name:12} {r['seconds']:.3f} s  {weight_bytes / r['seconds'] / 1e9:.1f} GB/s"
              + (f"  (read {r['read_s']:.3f} s, copy {r['copy_s']:.3f} s)" if "read_s" in r else ""))
    print(f"aotpack / machine: {rows['aotpack']['seconds'] / rows['machine']['seconds']:.2f}x; "
          f"aotpack / safetensors: {rows['aotpack']['seconds'] / rows['safetensors']['seconds']:.2f}x")
    result = {"machine": machine(), "weight_bytes": weight_bytes, "package_bytes": os.path.getsize(pkg_path),
              "rows": rows, "command": f"python bench/gpu_load.py --gb {opts.gb}"}
    write_gpu_result("gpu_load-{gpu}", result)


if __name__ == "__main__":
    main()
