"""What batch-1 matrix-vector products of one decoder layer cost, and what fusing them buys.

A decode step at batch 1 is a chain of matrix-vector products; each reads its weight once,
so its time over its bytes is the bandwidth it reaches. This times, on CUDA, one Llama
layer's projections (hidden 4096, 4 of 8 KV heads, MLP 11264, bf16), each compiled by
inductor with coordinate-descent tuning (aotpack.llm.compile's setting) and replayed
16 times with 16 distinct weights inside one CUDA graph (so no weight is in L2 twice):

  qkv-3      q, k and v as three linears of one input (as transformers' Llama calls them)
  qkv-cat    the same as one linear of the concatenated weight, split after
  gate-up-2  gate and up, SiLU(gate) * up
  gate-up-cat the same from one concatenated weight
  down       SiLU(g) * u -> down projection (the reduction fused with its prologue)
  o          the attention output projection (4096 x 4096)
  down-plain the down projection of a given activation (no SiLU prologue)
  mlp        the whole MLP: SiLU(gate) * up -> down, as transformers' Llama calls it
  read       a plain sum of a 1 GiB tensor: the read bandwidth a reduction can reach

and, where given, the same with inductor options (``--extra combo`` for combo kernels,
``--extra pdl`` for programmatic dependent launch in Python-launched Triton kernels,
``--extra radius2`` for coordinate descent two steps out, ``--extra wide`` for that in
every direction at once, ``--extra split2``/``split4``/``split8`` for the reduction split
in two phases that many ways, ``--extra realize8`` (or another number) for inductor's
``realize_opcount_threshold`` at that many ops (a pointwise result with more is stored
once rather than recomputed inside each consumer), ``--extra splitauto`` for aotpack's choice of the split:
``aotpack._torch_compat.split_matvec_reductions``).

    python bench/matvec_fusion.py [--extra combo,pdl]
Writes bench/results/matvec_fusion-<gpu>.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

H, KV, MLP, LAYERS = 4096, 2048, 11264, 16
EXTRA = {"combo": {"combo_kernels": True}, "pdl": {"triton.enable_pdl": True},
         "radius2": {"coordinate_descent_search_radius": 2},
         "wide": {"coordinate_descent_check_all_directions": True, "coordinate_descent_search_radius": 2},
         "split2": {}, "split4": {}, "split8": {}, "splitauto": {},
         **{f"realize{n}": {"realize_opcount_threshold": n} for n in (4, 8, 12, 16, 20)}}


def cases(torch):
    F = torch.nn.functional

    def qkv3(x, wq, wk, wv):
        return F.linear(x, wq), F.linear(x, wk), F.linear(x, wv)

    def qkv_cat(x, w):
        return F.linear(x, w).split([H, KV, KV], -1)

    def gate_up2(x, wg, wu):
        return F.silu(F.linear(x, wg)) * F.linear(x, wu)

    def gate_up_cat(x, w):
        g, u = F.linear(x, w).chunk(2, -1)
        return F.silu(g) * u

    def down(g, u, wd):
        return F.linear(F.silu(g) * u, wd)

    def o(x, wo):
        return F.linear(x, wo)

    def down_plain(a, wd):
        return F.linear(a, wd)

    def mlp(x, wg, wu, wd):
        return F.linear(F.silu(F.linear(x, wg)) * F.linear(x, wu), wd)

    def shapes(*rows_cols):
        return [(r, c) for r, c in rows_cols]

    return {  # name: (fn, activation shapes, weight shapes)
        "qkv-3": (qkv3, [(1, H)], shapes((H, H), (KV, H), (KV, H))),
        "qkv-cat": (qkv_cat, [(1, H)], shapes((H + 2 * KV, H))),
        "gate-up-2": (gate_up2, [(1, H)], shapes((MLP, H), (MLP, H))),
        "gate-up-cat": (gate_up_cat, [(1, H)], shapes((2 * MLP, H))),
        "down": (down, [(1, MLP), (1, MLP)], shapes((H, MLP))),
        "o": (o, [(1, H)], shapes((H, H))),
        "down-plain": (down_plain, [(1, MLP)], shapes((H, MLP))),
        "mlp": (mlp, [(1, H)], shapes((MLP, H), (MLP, H), (H, MLP))),
    }


def splitting(setting: str):
    """The context a setting compiles in: the reduction split for ``split*``, else none."""
    import contextlib

    from aotpack._torch_compat import split_matvec_reductions

    if not setting.startswith("split"):
        return contextlib.nullcontext()
    factor = setting[len("split"):]
    return split_matvec_reductions(factor=None if factor == "auto" else int(factor))


def time_case(torch, fn, acts, weights, options, setting="plain"):
    import torch._dynamo

    from _common import cuda_graph_seconds

    torch._dynamo.reset()
    compiled = torch.compile(fn, options={"coordinate_descent_tuning": True, **options}, fullgraph=True)
    xs = [torch.randn(s, device="cuda", dtype=torch.bfloat16) for s in acts]
    ws = [[torch.randn(s, device="cuda", dtype=torch.bfloat16) / 64 for s in weights] for _ in range(LAYERS)]
    t = time.perf_counter()
    with splitting(setting):
        for w in ws[:2]:
            compiled(*xs, *w)
    torch.cuda.synchronize()
    compile_s = time.perf_counter() - t
    expected = fn(*xs, *ws[0])
    got = compiled(*xs, *ws[0])
    for e, g in zip(expected if isinstance(expected, tuple) else [expected],
                    got if isinstance(got, tuple) else [got]):
        torch.testing.assert_close(g, e, rtol=2e-2, atol=2e-2)  # a split sums in another order
    best = cuda_graph_seconds(torch, lambda: [compiled(*xs, *w) for w in ws]) / LAYERS
    nbytes = sum(r * c * 2 for r, c in weights)
    return {"us": best * 1e6, "bytes": nbytes, "tb_s": nbytes / best / 1e12, "compile_s": compile_s,
            "kernels": kernel_names(torch, lambda: compiled(*xs, *ws[0]))}


def kernel_names(torch, call) -> list[str]:
    """The GPU kernels one call launches, in order (to see what fused with what)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        call()
        torch.cuda.synchronize()
    return [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]


def read_bandwidth(torch) -> float:
    from _common import cuda_seconds

    a = torch.randn(2**29, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a.sum()
    return a.numel() * 2 / cuda_seconds(torch, a.sum, 20)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extra", default="", help="comma separated: " + ",".join(EXTRA))
    parser.add_argument("--only", default="", help="comma separated case names")
    opts = parser.parse_args()
    import torch

    from _common import machine, write_gpu_result

    read = read_bandwidth(torch)
    print(f"read bandwidth (sum of 1 GiB): {read / 1e12:.2f} TB/s", flush=True)
    rows = []
    names = [n for n in opts.only.split(",") if n] or list(cases(torch))
    for setting in ["plain", *[e for e in opts.extra.split(",") if e]]:
        options = EXTRA.get(setting, {})
        for name in names:
            fn, acts, weights = cases(torch)[name]
            try:
                row = {"case": name, "setting": setting, **time_case(torch, fn, acts, weights, options, setting)}
            except Exception as e:  # an option the installed torch lacks: recorded, not fatal
                row = {"case": name, "setting": setting, "error": f"{type(e).__name__}: {str(e)[:300]}"}
            rows.append(row)
            if "error" in row:
                print(f"{setting:6s} {name:12s} {row['error']}", flush=True)
            else:
                print(f"{setting:6s} {name:12s} {row['us']:7.2f} us  {row['bytes'] / 1e6:6.1f} MB  "
                      f"{row['tb_s']:.2f} TB/s ({row['tb_s'] * 1e12 / read:.0%} of read)  "
                      f"compile {row['compile_s']:.0f} s  {len(row['kernels'])} kernels", flush=True)
    write_gpu_result("matvec_fusion-{gpu}", {"machine": machine(), "read_bw_bytes_s": read, "rows": rows,
                                             "command": f"python bench/matvec_fusion.py --extra {opts.extra}"})


if __name__ == "__main__":
    main()
