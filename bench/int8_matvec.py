"""Why weight-only int8 matrix-vector products are no faster than bf16 on an H200, and
which formulation of the same product reads int8 weights at the memory's speed.

At batch 1 each linear layer is a matrix-vector reduction that inductor generates (with
coordinate-descent tuning, as aotpack.llm.compile does). With bf16 weights and with int8
weights both ran at about 1.7-1.8 T weights/s (docs/benchmarks.md), so int8 halved the
bytes but not the time: the reduction loop keeps a fixed number of weights in flight,
whatever their size. The formulations timed here, each compiled alone on CUDA and
replayed 16 times with 16 distinct weights inside one CUDA graph (no weight is in L2
twice), all give the same numbers up to summation order:

  bf16          F.linear(x, w)                              2 bytes a weight
  int8          F.linear(x, w8.to(x.dtype)) * scales       (Int8Linear before 2026-12-04)
  int8-grouped  the int8 weight viewed as [N, K/4, 4], the four weights of a group
                multiplied by their four activations and summed inside the reduction
  packed        four int8 weights in one int32 (the same bytes), the reduction over the
                int32 words, each word's bytes sign-extended by shifts and converted
  packed-magic  the same words holding weight + 128 as unsigned bytes: each byte or-ed
                into the mantissa of 2**23 and read as a float, minus 2**23 + 128 (exact,
                integer ops and one subtraction instead of a conversion)

    python bench/int8_matvec.py [--only o,down]
Writes bench/results/int8_matvec-<gpu>.json.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SHAPES = {"o": (4096, 4096), "down": (4096, 11264), "gate-up": (2 * 11264, 4096)}  # (out, in)
LAYERS = 16


def formulations(torch):
    F = torch.nn.functional

    def grouped(x, parts, scales):
        x4 = x.float().unflatten(-1, (-1, 4))  # [M, K/4, 4]
        acc = sum(x4[..., i].unsqueeze(-2) * parts[i] for i in range(4))  # [M, N, K/4]
        return (acc.sum(-1) * scales).to(x.dtype)

    def bf16(x, w, s):
        return F.linear(x, w)

    def int8(x, w8, s):
        return F.linear(x, w8.to(x.dtype)) * s

    def int8_grouped(x, w8, s):
        w4 = w8.unflatten(-1, (-1, 4))
        return grouped(x, [w4[..., i].float() for i in range(4)], s.float())

    def packed(x, w32, s):
        return grouped(x, [((w32 << (24 - 8 * i)) >> 24).float() for i in range(4)], s.float())

    def packed_magic(x, w32, s):
        parts = [(((w32 >> (8 * i)) & 0xFF) | 0x4B000000).view(torch.float32) - 8388736.0 for i in range(4)]
        return grouped(x, parts, s.float())

    def weights(q8, w):  # the weight each formulation takes, from the int8 values q8 and bf16 w
        return {"bf16": w, "int8": q8, "int8-grouped": q8, "packed": q8.view(torch.int32),
                "packed-magic": (q8.to(torch.int16) + 128).to(torch.uint8).view(torch.int32)}

    return {"bf16": bf16, "int8": int8, "int8-grouped": int8_grouped, "packed": packed,
            "packed-magic": packed_magic}, weights


def mlp_forms(torch):
    """The MLP of a Llama layer, SiLU(gate(x)) * up(x) -> down, in bf16 and in Int8Linear's
    int8: the down projection's reduction takes the SiLU product as its prologue."""
    F = torch.nn.functional

    def bf16(x, wg, wu, wd):
        return F.linear(F.silu(F.linear(x, wg)) * F.linear(x, wu), wd)

    def int8(x, qg, sg, qu, su, qd, sd):
        def lin(a, q, s):
            return F.linear(a, q.to(a.dtype)) * s
        return lin(F.silu(lin(x, qg, sg)) * lin(x, qu, su), qd, sd)

    return {"bf16": bf16, "int8": int8}


def time_case(torch, fn, x, layers, reference, options=None):
    """``fn(x, *layers[i])`` compiled, then replayed for every layer in one CUDA graph."""
    import torch._dynamo

    from _common import cuda_graph_seconds
    from aotpack._torch_compat import kernel_time_autotuning

    torch._dynamo.reset()
    compiled = torch.compile(fn, options={"coordinate_descent_tuning": True, **(options or {})}, fullgraph=True)
    t = time.perf_counter()
    with kernel_time_autotuning():
        got = compiled(x, *layers[0])
    torch.cuda.synchronize()
    compile_s = time.perf_counter() - t
    error = (got.float() - reference.float()).abs().max().item()
    best = cuda_graph_seconds(torch, lambda: [compiled(x, *args) for args in layers]) / LAYERS
    nbytes = sum(a.numel() * a.element_size() for a in layers[0])
    return {"us": best * 1e6, "bytes": nbytes, "tb_s": nbytes / best / 1e12, "compile_s": compile_s,
            "max_error": error}


def _quantized(torch, w):
    scales = w.float().abs().amax(1) / 127
    return torch.round(w.float() / scales[:, None]).clamp(-127, 127).to(torch.int8), scales.to(w.dtype)


def matvec_rows(torch, shape, chosen, options):
    """One linear layer of ``shape`` in each chosen formulation."""
    forms, weights = formulations(torch)
    n, k = SHAPES[shape]
    torch.manual_seed(0)
    x = torch.randn(1, k, device="cuda", dtype=torch.bfloat16)
    layers = []
    for _ in range(LAYERS):
        w = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) / 64
        layers.append((w, *_quantized(torch, w)))
    for name in [c for c in chosen if c in forms]:
        args = [(weights(q8, w)[name], s) for w, q8, s in layers]
        w, q8, s = layers[0]
        reference = (torch.nn.functional.linear(x.float(), w.float()) if name == "bf16"
                     else torch.nn.functional.linear(x.float(), q8.float()) * s.float())
        yield name, n * k, functools.partial(time_case, torch, forms[name], x, args, reference, options)


def mlp_rows(torch, chosen, options):
    """A Llama layer's MLP (hidden 4096, 11264 wide), bf16 and int8."""
    forms = mlp_forms(torch)
    h, m = SHAPES["o"][0], SHAPES["down"][1]
    torch.manual_seed(0)
    x = torch.randn(1, h, device="cuda", dtype=torch.bfloat16)
    layers = [[torch.randn(r, c, device="cuda", dtype=torch.bfloat16) / 64 for r, c in ((m, h), (m, h), (h, m))]
              for _ in range(LAYERS)]
    for name in [c for c in chosen if c in forms]:
        args = [tuple(layer) if name == "bf16" else tuple(t for w in layer for t in _quantized(torch, w))
                for layer in layers]
        reference = forms[name](x.float(), *[a.float() for a in args[0]])
        yield name, 3 * h * m, functools.partial(time_case, torch, forms[name], x, args, reference, options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma separated cases: mlp," + ",".join(SHAPES))
    parser.add_argument("--forms", default="", help="comma separated formulations (default: all)")
    parser.add_argument("--extra", default="", help="comma separated settings beside plain: realize8")
    opts = parser.parse_args()
    import torch

    from _common import machine, write_gpu_result
    from matvec_fusion import read_bandwidth

    read = read_bandwidth(torch)
    print(f"read bandwidth (sum of 1 GiB): {read / 1e12:.2f} TB/s", flush=True)
    chosen = [f for f in opts.forms.split(",") if f] or [*formulations(torch)[0]]
    rows = []
    for setting in ["plain", *[e for e in opts.extra.split(",") if e]]:
        options = {"realize_opcount_threshold": int(setting[len("realize"):])} if setting.startswith("realize") else {}
        for case in [s for s in opts.only.split(",") if s] or [*SHAPES, "mlp"]:
            cases = mlp_rows(torch, chosen, options) if case == "mlp" else matvec_rows(torch, case, chosen, options)
            for name, n_weights, run in cases:
                try:
                    row = {"case": case, "form": name, "setting": setting, **run()}
                    row["weights_per_s"] = n_weights / (row["us"] / 1e6)
                except Exception as e:  # recorded, not fatal: the other forms still run
                    row = {"case": case, "form": name, "setting": setting, "error": f"{type(e).__name__}: {str(e)[:300]}"}
                rows.append(row)
                if "error" in row:
                    print(f"{setting:9s} {case:8s} {name:13s} {row['error']}", flush=True)
                else:
                    print(f"{setting:9s} {case:8s} {name:13s} {row['us']:7.2f} us  {row['bytes'] / 1e6:6.1f} MB  "
                          f"{row['tb_s']:.2f} TB/s ({row['tb_s'] * 1e12 / read:.0%} of read)  "
                          f"{row['weights_per_s'] / 1e12:.2f} T weights/s  max error {row['max_error']:.3g}  "
                          f"compile {row['compile_s']:.0f} s", flush=True)
                write_gpu_result("int8_matvec-{gpu}", {
                    "machine": machine(), "read_bw_bytes_s": read, "rows": rows,
                    "command": "python bench/int8_matvec.py " + " ".join(sys.argv[1:])})


if __name__ == "__main__":
    main()
