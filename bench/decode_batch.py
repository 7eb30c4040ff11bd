"""Batch 1 to 8 on the GPU: decode tokens/s and per-sequence latency of one package per
batch size, and batch 1's share of the memory bandwidth.

A Llama from a small config (random bf16 weights), a 32-token prompt per sequence, 64 new
tokens, greedy, the decode step through its CUDA graph. One package per batch size
(``aotpack.llm.compile(max_batch=B)``; a package fills a smaller batch with dummy rows, so
each size gets its own), compiled in parallel processes (compiling is CPU work; each gets
its share of the CPUs), then loaded and timed one after another in this process (best of 3
generates). The copy bandwidth is measured in the same run (see decode_profile.py).

    python bench/decode_batch.py --layers 8 --hidden 2048 --batches 1,2,4,8
Writes bench/results/decode_batch-<gpu>-<layers>x<hidden>.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

PROMPT, NEW = 32, 64

BUILD = r"""
import os, sys, time, warnings
warnings.simplefilter("ignore")
import torch
import torch._inductor.config as inductor_config
inductor_config.compile_threads = int(sys.argv[4])
from transformers import LlamaConfig, LlamaForCausalLM
import aotpack, aotpack.llm
layers, hidden, batch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=32000, hidden_size=hidden, intermediate_size=hidden * 11 // 4, num_hidden_layers=layers,
                  num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=1024)
model = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16).eval()
t = time.perf_counter()
aotpack.llm.compile(model, max_batch=batch, max_len=PROMPT + NEW).save(sys.argv[5])
print(f"compile_s={time.perf_counter() - t:.1f}")
""".replace("PROMPT", str(PROMPT)).replace("NEW", str(NEW))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--batches", default="1,2,4,8")
    opts = parser.parse_args()
    import torch

    import aotpack
    from _common import machine, write_gpu_result
    from decode_profile import copy_bandwidth, decode_seconds

    batches = [int(b) for b in opts.batches.split(",")]
    work = tempfile.mkdtemp(prefix="aotpack-batch-")
    threads = max(1, (os.cpu_count() or 2) // len(batches))
    t = time.perf_counter()
    procs = {b: subprocess.Popen([sys.executable, "-c", BUILD, str(opts.layers), str(opts.hidden), str(b), str(threads),
                                  os.path.join(work, f"b{b}.aot")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for b in batches}
    compile_s = {}
    for b, p in procs.items():
        out, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"batch {b} failed to compile:\n{err[-4000:]}")
        compile_s[b] = float(out.strip().splitlines()[-1].split("=")[1])
    print(f"compiled {len(batches)} packages in parallel in {time.perf_counter() - t:.0f} s", flush=True)
    bw = copy_bandwidth(torch)
    rows = []
    for b in batches:
        fn = aotpack.load(os.path.join(work, f"b{b}.aot"))
        g = torch.Generator().manual_seed(b)
        ids = torch.randint(3, 1000, (b, PROMPT), generator=g).cuda()
        best, _ = decode_seconds(torch, fn, ids, NEW)
        step = best / (NEW - 1)
        rows.append({"batch": b, "compile_s": compile_s[b], "step_ms": 1e3 * step, "tok_s_per_sequence": 1 / step,
                     "tok_s_total": b / step})
        print(f"batch {b}: {1e3 * step:.3f} ms a step (per-sequence latency), {1 / step:.0f} tok/s per sequence, "
              f"{b / step:.0f} tok/s in all", flush=True)
        del fn
        torch.cuda.empty_cache()
    from transformers import LlamaConfig

    cfg = LlamaConfig(vocab_size=32000, hidden_size=opts.hidden, intermediate_size=opts.hidden * 11 // 4,
                      num_hidden_layers=opts.layers, num_attention_heads=8, num_key_value_heads=4)
    with torch.device("meta"):
        from transformers import LlamaForCausalLM

        weight_bytes = sum(p.numel() * 2 for p in LlamaForCausalLM(cfg).parameters())
    one = next(r for r in rows if r["batch"] == min(batches))
    share = weight_bytes * one["tok_s_per_sequence"] / bw
    print(f"weights {weight_bytes / 1e9:.2f} GB; copy bandwidth {bw / 1e12:.2f} TB/s; batch {one['batch']}: "
          f"{share:.0%} of it, {weight_bytes * one['tok_s_per_sequence'] / 4.8e12:.0%} of 4.8 TB/s")
    result = {"machine": machine(), "layers": opts.layers, "hidden": opts.hidden, "weight_bytes": weight_bytes,
              "copy_bw_bytes_s": bw, "batch1_share_of_copy_bw": share, "rows": rows,
              "command": f"python bench/decode_batch.py --layers {opts.layers} --hidden {opts.hidden} "
                         f"--batches {opts.batches}"}
    write_gpu_result(f"decode_batch-{{gpu}}-{opts.layers}x{opts.hidden}", result)


if __name__ == "__main__":
    main()
