"""What aotpack.compile costs beside torch.export, the capture it builds on.

Each case in a fresh process: a transformers Llama built from a small config (2 layers,
no download), captured with all sizes dynamic. ``torch.export`` is
``torch.export.export(model, (ids,), dynamic_shapes=..., strict=False)`` alone;
``aotpack.compile`` is the whole package build with the eager backend (capture under the
side-effect recorder, the graph run beside eager at two sizes, guards, the package in
memory). The gap is what aotpack adds before any backend compiles. Interleaved repeats;
medians compared. Writes bench/results/capture_time-<tag>.json (tag: cpu-py311...).

    python bench/capture_time.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import fresh, table, write  # noqa: E402

CHILD = r"""
import json, sys, time, warnings
import torch
warnings.simplefilter("ignore")
from transformers import LlamaConfig, LlamaForCausalLM
config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, use_cache=False)
torch.manual_seed(0)
model = LlamaForCausalLM(config).eval()
ids = torch.randint(0, 128, (1, 8))
if sys.argv[1] == "export":
    t = time.perf_counter()
    torch.export.export(model, (ids,), dynamic_shapes=({0: torch.export.Dim.AUTO, 1: torch.export.Dim.AUTO},),
                        strict=False)
else:
    import aotpack
    t = time.perf_counter()
    aotpack.compile(model, (ids,), backend="eager", dynamic=True)
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    times = {"export": [], "aotpack": []}
    for _ in range(a.repeat):
        for case in times:  # (interleaved: drift hits both alike)
            times[case].append(fresh(CHILD, case)["seconds"])
    export, ours = statistics.median(times["export"]), statistics.median(times["aotpack"])
    rows = [{"model": "llama-2-layer", "dynamic": "every size", "torch_export_s": export, "aotpack_compile_s": ours,
             "ratio": ours / export, "runs": times}]
    print(table(["model", "torch.export (median)", "aotpack.compile, eager backend", "ratio"],
                [[r["model"], f"{export:.2f} s", f"{ours:.2f} s", f"{ours / export:.2f}x"] for r in rows]))
    py = "py" + "".join(platform.python_version_tuple()[:2])
    print("wrote", write("capture_time", rows, tag=f"cpu-{py}"))


if __name__ == "__main__":
    main()
