"""Where one GPU decode step's time goes, and what inductor options do to it.

For a Llama built from a small config (random bf16 weights, batch 1, 32-token prompt,
64 new tokens), per set of backend options: compile the package, load it, time decode
through its CUDA graph, and profile one replay of that graph (kernels grouped by name,
their share of the step, the bytes they must read and their bandwidth). The
bandwidth ceiling is measured in the same run (a device-to-device copy), so the share
printed is of what this GPU delivers, beside the datasheet's.

    python bench/decode_profile.py --layers 8 --hidden 2048 --options cdt,cdt-math [--weights int8]
Writes bench/results/decode_profile-<gpu>-<layers>x<hidden>[-int8].json.

``--weights int8`` profiles the weight-only int8 model (``aotpack.llm.int8_weights``):
its bytes per token are the int8 weights, scales and the bf16 embeddings and norms, and
its tokens are compared with the int8 model's eager generate. ``--weights torchao-int8``
does the same for torchao's weight-only int8 (``Int8WeightOnlyConfig``, tensor subclass
weights; not yet run on a GPU).

Option sets (``--options``, comma separated):
  default  no inductor options, torch's fused attention in decode
  cdt      coordinate_descent_tuning (gpt-fast's setting for batch-1 decode), fused attention
  cdt-math cdt, and the decode step's attention captured as math (aotpack.llm's default on CUDA)
  cdt-math-combo cdt-math with inductor's combo kernels (independent kernels in one launch)
  cdt-math-fused cdt-math, and the linear layers called on one input (q, k, v; gate, up)
           fused into one product each (aotpack.llm.compile(fuse_projections=True))
  cdt-wide-math  cdt-math with coordinate descent checking all directions, radius 2
  cdt-math-realize8 cdt-math, and a pointwise result of more than 8 ops stored once rather
           than recomputed in each consumer (inductor's realize_opcount_threshold, 30 by
           default): SiLU(gate) * up becomes the gate/up kernel's epilogue instead of the
           down projection's prologue (bench/matvec_fusion.py --extra realize8)
  cdt-math-aggressive cdt-math with inductor's aggressive_fusion (nodes that share no
           memory fused too: fewer kernels per layer)
  cdt-kernel cdt, and the decode step's attention as one Triton kernel a layer
           (bench/decode_attention_kernel.py, an experiment)
  cdt-math-events cdt-math, with inductor's own autotuning benchmarker: coordinate
           descent times each config between CUDA events around each launch, which adds
           12-18 us of launch cost to a 10-40 us kernel (bench/results/tuner_vs_graph-h200.json).
           Since 2026-12-04 aotpack.llm.compile times configs by their kernels' own time
           on the GPU instead (cdt-math; the results files named -kerneltime were made
           with that as an option, before it was the default)
  cdt-math-matvec cdt-math, and batch-1 products whose inner dimension is at least twice
           their outputs (the down projection, and here the k and v projections) as
           aotpack's own Triton kernel (aotpack.kernels.matvec; bench/matvec_kernel.py
           times it alone)
  cdt-math-matvec-down aotpack.llm.compile(matvec_kernel=True): the same for the down
           projection alone (inner dimension at least 2.5x the outputs: the k and v
           projections keep their fused cache update)
  cdt-math-fused-matvec cdt-math-fused and cdt-math-matvec together
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

OPTION_SETS = {  # name: (inductor options, decode_attention, fuse_projections of aotpack.llm.compile)
    "default": ({}, "fused", False),
    "cdt": ({"coordinate_descent_tuning": True}, "fused", False),
    "cdt-math": ({"coordinate_descent_tuning": True}, "math", False),
    # independent kernels (q and k/v projections, rotary of q and k) combined into one launch
    "cdt-math-combo": ({"coordinate_descent_tuning": True, "combo_kernels": True}, "math", False),
    # q/k/v and gate/up as one product of concatenated weights each (aotpack.llm.compile's fuse_projections)
    "cdt-math-fused": ({"coordinate_descent_tuning": True}, "math", True),
    # a wider search: every direction at once and two steps out (slower to compile)
    "cdt-wide-math": ({"coordinate_descent_tuning": True, "coordinate_descent_check_all_directions": True,
                       "coordinate_descent_search_radius": 2}, "math", False),
    "cdt-math-realize8": ({"coordinate_descent_tuning": True, "realize_opcount_threshold": 8}, "math", False),
    # fuse nodes that share no memory too (fewer, larger kernels per layer)
    "cdt-math-aggressive": ({"coordinate_descent_tuning": True, "aggressive_fusion": True}, "math", False),
    # the decode step's attention as one Triton kernel a layer (bench/decode_attention_kernel.py, an
    # experiment: slower in the whole step)
    "cdt-kernel": ({"coordinate_descent_tuning": True}, "kernel", False),
    # coordinate descent timing configs with inductor's own benchmarker (event_time_tuning)
    "cdt-math-events": ({"coordinate_descent_tuning": True}, "math", False),
    # products of one row with a long inner dimension (the down projection) as aotpack's own
    # Triton kernel (aotpack.kernels.matvec)
    "cdt-math-matvec": ({"coordinate_descent_tuning": True}, "math", False),
    # the same for the down projection alone (the k and v projections keep their fused cache update)
    "cdt-math-matvec-down": ({"coordinate_descent_tuning": True}, "math", False),
    "cdt-math-fused-matvec": ({"coordinate_descent_tuning": True}, "math", True),
}
PROMPT, NEW = 32, 64


@contextlib.contextmanager
def kernel_attention():
    """aotpack.llm's math attention swapped for the experimental Triton kernel
    (decode_attention_kernel.py) while a package compiles."""
    from aotpack import _torch_compat as compat
    from decode_attention_kernel import decode_attention_kernel

    math = compat.math_attention
    compat.math_attention = decode_attention_kernel
    try:
        yield
    finally:
        compat.math_attention = math


@contextlib.contextmanager
def matvec_kernel(ratio: float):
    """Batch-1 products with a long inner dimension (at least ``ratio`` times the outputs)
    traced as aotpack's own Triton kernel (``aotpack.kernels.matvec``) while a package
    compiles: for ratios other than ``aotpack.llm.compile(matvec_kernel=True)``'s 2.5."""
    from aotpack.kernels import routed_matvec

    with routed_matvec(ratio, min_outputs=0):
        yield


@contextlib.contextmanager
def event_time_tuning():
    """aotpack.llm.compile's autotuning by kernel time (``compat.kernel_time_autotuning``,
    its default on CUDA since 2026-12-04) switched off: inductor's own benchmarker, which
    times each launch between CUDA events."""
    from aotpack import _torch_compat as compat

    own = compat.kernel_time_autotuning
    compat.kernel_time_autotuning = contextlib.nullcontext
    try:
        yield
    finally:
        compat.kernel_time_autotuning = own


def with_weights(model, weights: str):
    """``model`` with its Linear weights as ``--weights`` says."""
    import aotpack.llm

    if weights == "int8":
        return aotpack.llm.int8_weights(model)
    if weights == "torchao-int8":  # torchao's tensor subclass weights (build/subclass_weights.py)
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        quantize_(model, Int8WeightOnlyConfig())
    return model


def stored_bytes(model) -> int:
    """The bytes of the model's weights as stored (a tensor subclass weight: its inner tensors)."""
    from aotpack.tree import is_wrapper_subclass

    def parts(t):
        return [getattr(t, n) for n in t.__tensor_flatten__()[0]] if is_wrapper_subclass(t) else [t]

    tensors = {id(p): p for t in (*model.parameters(), *model.buffers()) for p in parts(t)}.values()
    return sum(t.numel() * t.element_size() for t in tensors)


def copy_bandwidth(torch) -> float:
    """Bytes read per second by a device-to-device copy of 4 GiB (read + write counted
    as read: decode reads weights and writes almost nothing)."""
    a = torch.empty(2 * 2**30, dtype=torch.bfloat16, device="cuda")
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        b.copy_(a)
    end.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(end) / 1e3 / 10
    del a, b
    return 2 * 2 * 2**31 / seconds  # read + written bytes over the time: HBM's traffic


def decode_seconds(torch, fn, ids, new: int):
    """(the best of 3 generates' decode time for ``new`` tokens, less a timed prefill;
    the last generate's output), after both steps have run once."""
    import aotpack

    aotpack.generate(fn, ids, 4)
    best, out = float("inf"), None
    for _ in range(3):
        torch.cuda.synchronize()
        t = time.perf_counter()
        aotpack.generate(fn, ids, 1)
        torch.cuda.synchronize()
        prefill = time.perf_counter() - t
        t = time.perf_counter()
        out = aotpack.generate(fn, ids, new)
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t - prefill)
    return best, out


def profile_step(torch, fn, ids):
    """Kernels of one decode replay, grouped by name: (name, calls, total us)."""
    from torch.profiler import ProfilerActivity, profile

    import aotpack

    aotpack.generate(fn, ids, 4)
    torch.cuda.synchronize()
    graphed = aotpack.llm.decode_graph(fn)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            graphed.graph.replay()
        torch.cuda.synchronize()
    rows = {}
    for e in prof.events():
        if e.device_type.name != "CUDA":
            continue
        r = rows.setdefault(e.name, [0, 0.0])
        r[0] += 1
        r[1] += e.device_time
    return sorted(((n, c // 5, t / 5) for n, (c, t) in rows.items()), key=lambda r: -r[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--options", default="cdt,cdt-math")
    parser.add_argument("--weights", default="full", choices=["full", "int8", "torchao-int8"],
                        help="int8: aotpack.llm.int8_weights; torchao-int8: torchao's Int8WeightOnlyConfig "
                             "(carry torchao's wheel to the GPU machine)")
    opts = parser.parse_args()
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    import aotpack
    import aotpack.llm
    from _common import machine, write_gpu_result

    bw = copy_bandwidth(torch)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=32000, hidden_size=opts.hidden, intermediate_size=opts.hidden * 11 // 4,
                      num_hidden_layers=opts.layers, num_attention_heads=8, num_key_value_heads=4,
                      max_position_embeddings=1024)
    model = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16).eval()
    model = with_weights(model, opts.weights)
    weight_bytes = stored_bytes(model)
    ids = torch.randint(3, 1000, (1, PROMPT), generator=torch.Generator().manual_seed(0)).cuda()
    with torch.no_grad():
        ref = model.generate(ids, max_new_tokens=NEW, do_sample=False, pad_token_id=0,
                             attention_mask=torch.ones_like(ids), disable_compile=True)[0, -NEW:].tolist()
    print(f"copy bandwidth {bw / 1e12:.2f} TB/s; weights {weight_bytes / 1e9:.2f} GB; "
          f"ceiling {bw / weight_bytes:.0f} tok/s", flush=True)
    rows = []
    work = tempfile.mkdtemp(prefix="aotpack-prof-")
    for name in opts.options.split(","):
        t = time.perf_counter()
        options, attention, fuse = OPTION_SETS[name]
        with (kernel_attention() if attention == "kernel" else contextlib.nullcontext(),
              event_time_tuning() if name.endswith("-events") else contextlib.nullcontext(),
              matvec_kernel(2.0) if name in ("cdt-math-matvec", "cdt-math-fused-matvec")
              else contextlib.nullcontext()):
            pkg = aotpack.llm.compile(model, max_batch=1, max_len=PROMPT + NEW, backend="aoti", options=options,
                                      decode_attention="math" if attention == "kernel" else attention,
                                      fuse_projections=fuse, matvec_kernel=name == "cdt-math-matvec-down")
        path = pkg.save(os.path.join(work, f"{name}.aot"))
        compile_s = time.perf_counter() - t
        del pkg
        fn = aotpack.load(path)
        best, out = decode_seconds(torch, fn, ids, NEW)
        tok_s = (NEW - 1) / best
        kernels = profile_step(torch, fn, ids)
        kernel_us = sum(k[2] for k in kernels)
        row = {"options": name, "compile_s": compile_s, "decode_tok_s": tok_s,
               "share_of_copy_bw": weight_bytes * tok_s / bw, "share_of_4.8TBs": weight_bytes * tok_s / 4.8e12,
               "step_us": 1e6 / tok_s, "kernel_us": kernel_us, "kernels": sum(k[1] for k in kernels),
               "same_tokens_as_eager": out[0, -NEW:].tolist() == ref, "top": kernels[:25]}
        rows.append(row)
        print(f"\n== {name}: compile {compile_s:.0f} s, {tok_s:.0f} tok/s, "
              f"{row['share_of_copy_bw']:.0%} of copy bw, step {row['step_us']:.0f} us, kernels {kernel_us:.0f} us "
              f"in {row['kernels']} launches, tokens == eager: {row['same_tokens_as_eager']}", flush=True)
        for k in kernels[:25]:
            print(f"  {k[2]:8.1f} us {k[1]:4d}x  {k[0][:110]}")
        del fn
    result = {"machine": machine(), "layers": opts.layers, "hidden": opts.hidden, "weights": opts.weights,
              "weight_bytes": weight_bytes,
              "copy_bw_bytes_s": bw, "rows": rows,
              "command": f"python bench/decode_profile.py --layers {opts.layers} --hidden {opts.hidden} "
                         f"--options {opts.options} --weights {opts.weights}"}
    suffix = "" if opts.weights == "full" else f"-{opts.weights}"
    write_gpu_result(f"decode_profile-{{gpu}}-{opts.layers}x{opts.hidden}{suffix}", result)


if __name__ == "__main__":
    main()
