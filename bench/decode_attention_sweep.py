"""Time the experimental decode-attention kernel (decode_attention_kernel.py) alone on a GPU.

For two shapes with a 96-slot cache in bf16 (8 heads of 512 over 4 KV heads, as
bench/decode_profile.py's 3.28B model; 32 heads of 128 over 8, as Llama 3 8B): the op's
error against the math composite and its time per call in a CUDA graph of 16 calls, the
math composite's (uncompiled), and the six fastest of a sweep of block sizes and warps.
Prints only; the numbers are in docs/benchmarks.md.

    python bench/decode_attention_sweep.py
"""

from __future__ import annotations

import itertools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import cuda_seconds  # noqa: E402


def timed(torch, fn) -> float:
    """Microseconds a call, replayed 20 times as a CUDA graph of 16 calls."""
    g = torch.cuda.CUDAGraph()
    fn()
    torch.cuda.synchronize()
    with torch.cuda.graph(g):
        for _ in range(16):
            fn()
    g.replay()
    torch.cuda.synchronize()
    return cuda_seconds(torch, g.replay, 20) * 1e6 / 16


def sweep(torch, b: int, hq: int, hk: int, length: int, d: int) -> None:
    from decode_attention_kernel import _decode_attention_kernel, _reference, decode_attention

    q = torch.randn(b, hq, 1, d, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(b, hk, length, d, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    mask = (torch.arange(length, device="cuda") < length // 2).view(1, 1, 1, length).expand(b, 1, 1, length)
    ref = _reference(q.float(), k.float(), v.float(), mask, d ** -0.5)
    out = decode_attention(q, k, v, mask, d ** -0.5)
    us = timed(torch, lambda: decode_attention(q, k, v, mask, d ** -0.5))
    print(b, hq, hk, length, d, "op: error", (out.float() - ref).abs().max().item(), f"{us:.2f} us")
    kk, vv = k.repeat_interleave(hq // hk, 1), v.repeat_interleave(hq // hk, 1)
    additive = torch.zeros(b, 1, 1, length, device="cuda", dtype=q.dtype).masked_fill(~mask, float("-inf"))
    us = timed(torch, lambda: torch.ops.aten._scaled_dot_product_attention_math(
        q, kk, vv, additive, 0.0, False, scale=d ** -0.5))
    print(f"  math composite, uncompiled: {us:.2f} us")
    m = mask.expand(b, hq, 1, length)
    found = []
    for block, dv, dk, warps in itertools.product([16, 32, 64, 128], [16, 32, 64, 128], [64, 128], [1, 2, 4, 8]):
        if dv > d or dk > d:
            continue
        o = torch.empty_like(q)

        def go(block=block, dv=dv, dk=dk, warps=warps, o=o):
            _decode_attention_kernel[(b * hq, d // dv)](
                q, k, v, m, o, d ** -0.5, hq, hq // hk, q.stride(0), q.stride(1), k.stride(0), k.stride(1),
                k.stride(2), v.stride(0), v.stride(1), v.stride(2), m.stride(0), m.stride(1), m.stride(3),
                o.stride(0), o.stride(1), L=length, D=d, DK=dk, DV=dv, BLOCK_L=block, MASK_BOOL=True,
                num_warps=warps)

        try:
            found.append((timed(torch, go), block, dv, dk, warps, (o.float() - ref).abs().max().item()))
        except Exception:  # noqa: BLE001 - a config the compiler refuses (too many registers)
            continue
    for us, block, dv, dk, warps, err in sorted(found)[:6]:
        print(f"  BLOCK_L {block} DV {dv} DK {dk} warps {warps}: {us:.2f} us, error {err:.4f}", flush=True)


def main() -> None:
    import torch
    import triton

    print("triton", triton.__version__, "torch", torch.__version__, flush=True)
    torch.manual_seed(0)
    for shape in [(1, 8, 4, 96, 512), (1, 32, 8, 96, 128)]:
        sweep(torch, *shape)


if __name__ == "__main__":
    main()
