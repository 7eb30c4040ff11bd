"""Real models (tests/zoo.py: GPT-2, BERT, Llama, Qwen2, T5, ViT, Whisper from small
configs): compile time, package size, first output in a fresh process and steady state.

Fresh-process cases, each timed from after ``import torch`` to the first output:
- eager: import transformers, build the model from its config, load a safetensors
  state dict, call it (what a restarting service does without a compiler);
- torch.compile warm: the same, compiled, with an inductor cache a cold run filled;
- aotpack: load the package (backend aoti) and call it (no model code imported); the
  ModelOutput type is rebuilt by importing transformers.modeling_outputs;
- aotpack plain: the same with ``load(..., plain_types=True)`` (outputs as dicts, no
  transformers import).
Steady state (one process, median of 30 calls after 5 warm-up calls): eager,
torch.compile and the loaded package.

    python bench/zoo.py [--models gpt2,bert] [--device cuda] [--dtype bfloat16]
Writes bench/results/zoo-<tag>.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import HERE, fresh, table, write  # noqa: E402

TESTS = os.path.join(os.path.dirname(HERE), "tests")

PRELUDE = r"""
import json, os, sys, time
import torch
t0 = time.perf_counter()
sys.path.insert(0, {tests!r})
DEVICE = os.environ.get("AOTPACK_BENCH_DEVICE", "cpu")
DTYPE = getattr(torch, os.environ.get("AOTPACK_BENCH_DTYPE", "float32"))
def on_device(kwargs):
    return {{k: v.to(DEVICE, DTYPE if v.is_floating_point() else v.dtype) if isinstance(v, torch.Tensor) else v
            for k, v in kwargs.items()}}
def done(out):
    if DEVICE == "cuda":
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    print(json.dumps({{"first_output_s": t1 - t0}}))
"""

EAGER = r"""
import zoo
from safetensors.torch import load_model
model, kwargs = zoo.build(sys.argv[1])
load_model(model, sys.argv[2])
model, kwargs = model.to(DEVICE, DTYPE), on_device(kwargs)
with torch.no_grad():
    done(model(**kwargs))
"""

COMPILED = r"""
import zoo
from safetensors.torch import load_model
model, kwargs = zoo.build(sys.argv[1])
load_model(model, sys.argv[2])
model, kwargs = model.to(DEVICE, DTYPE), on_device(kwargs)
with torch.no_grad():
    done(torch.compile(model)(**kwargs))
"""

AOTPACK = r"""
from safetensors.torch import load_file
kwargs = dict(load_file(sys.argv[3]))   # the inputs: read before the clock starts
kwargs.update(json.loads(sys.argv[4]))
kwargs = on_device(kwargs)
t0 = time.perf_counter()
import aotpack
fn = aotpack.load(sys.argv[2], allow_modules=["transformers"]) if sys.argv[5] == "exact" else \
    aotpack.load(sys.argv[2], plain_types=True)
with torch.no_grad():
    done(fn(**kwargs))
"""


def steady(fn, kwargs, n=30) -> float:
    import torch

    sync = torch.cuda.synchronize if os.environ.get("AOTPACK_BENCH_DEVICE") == "cuda" else (lambda: None)
    with torch.no_grad():
        for _ in range(5):
            fn(**kwargs)
        times = []
        for _ in range(n):
            sync()
            s = time.perf_counter()
            fn(**kwargs)
            sync()
            times.append(time.perf_counter() - s)
    return sorted(times)[n // 2] * 1e3


def run_model(name: str, work: str, only_aotpack: bool = False) -> dict:
    import torch
    from safetensors.torch import save_file, save_model

    import aotpack
    import zoo

    model, kwargs = zoo.build(name)
    weights = os.path.join(work, f"{name}.safetensors")
    save_model(model, weights)  # tied weights (GPT-2's lm_head) stored once
    tensors = {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
    others = {k: v for k, v in kwargs.items() if not isinstance(v, torch.Tensor)}
    inputs = os.path.join(work, f"{name}.inputs.safetensors")
    save_file(tensors, inputs)
    device = os.environ.get("AOTPACK_BENCH_DEVICE", "cpu")
    model, kwargs = zoo.build(name, device, getattr(torch, os.environ.get("AOTPACK_BENCH_DTYPE", "float32")))
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = aotpack.compile(model, (), kwargs, backend="aoti").save(os.path.join(work, f"{name}.aot"))
    compile_s = time.perf_counter() - t
    import json

    row = {"model": name, "compile_s": compile_s, "package_mb": os.path.getsize(path) / 1e6}
    cache = tempfile.mkdtemp(prefix="aotpack-bench-inductor-")
    env = {"TORCHINDUCTOR_CACHE_DIR": cache}
    prelude = PRELUDE.format(tests=TESTS)
    args = (name, path, inputs, json.dumps(others))
    try:
        row["aotpack_first_s"] = fresh(prelude + AOTPACK, *args, "exact")["first_output_s"]
        row["aotpack_plain_first_s"] = fresh(prelude + AOTPACK, *args, "plain")["first_output_s"]
        if only_aotpack:
            return row
        row["eager_first_s"] = fresh(prelude + EAGER, name, weights)["first_output_s"]
        fresh(prelude + COMPILED, name, weights, env=env)  # cold: fills the cache
        row["compile_warm_first_s"] = fresh(prelude + COMPILED, name, weights, env=env)["first_output_s"]
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    fn = aotpack.load(path)
    compiled = torch.compile(model)
    row["eager_ms"] = steady(model, kwargs)
    row["compile_ms"] = steady(compiled, kwargs)
    row["aotpack_ms"] = steady(fn, kwargs)
    torch._dynamo.reset()
    return row


def main() -> None:
    sys.path.insert(0, TESTS)
    import zoo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(zoo.MODELS))
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="float32", help="float32 or bfloat16 (weights and floating inputs)")
    parser.add_argument("--only-aotpack", action="store_true",
                        help="rerun aotpack's cases only, keeping the other columns of the last results")
    opts = parser.parse_args()
    os.environ["AOTPACK_BENCH_DEVICE"] = opts.device  # read by every case's fresh process
    os.environ["AOTPACK_BENCH_DTYPE"] = opts.dtype
    rows = []
    last = {}
    if opts.only_aotpack:
        import json

        with open(os.path.join(HERE, "results", "zoo-cpu.json")) as f:
            last = {r["model"]: r for r in json.load(f)["rows"]}
    with tempfile.TemporaryDirectory(prefix="aotpack-zoo-") as work:
        for name in opts.models.split(","):
            rows.append({**last.get(name, {}), **run_model(name, work, opts.only_aotpack)})
            print(f"{name}: done", file=sys.stderr)
    print(table(["model", "compile", "package", "first output: eager / torch.compile warm / aotpack / aotpack plain",
                 "steady: eager / torch.compile / aotpack"],
                [[r["model"], f"{r['compile_s']:.1f} s", f"{r['package_mb']:.1f} MB",
                  f"{r['eager_first_s'] * 1e3:.0f} / {r['compile_warm_first_s'] * 1e3:.0f} / "
                  f"{r['aotpack_first_s'] * 1e3:.0f} / {r['aotpack_plain_first_s'] * 1e3:.0f} ms",
                  f"{r['eager_ms']:.2f} / {r['compile_ms']:.2f} / {r['aotpack_ms']:.2f} ms"] for r in rows]))
    tag = None if opts.dtype == "float32" else f"{'gpu' if opts.device == 'cuda' else 'cpu'}-{opts.dtype}"
    print("wrote", write("zoo", rows, tag))


if __name__ == "__main__":
    main()
