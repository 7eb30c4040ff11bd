"""Text generation: aotpack vs transformers' eager generate vs torch.compile with a static
cache, each case in a fresh process.

A Llama built from a small config (random weights, saved with save_pretrained so every
case loads the same weights from disk), batch 1, a 32-token prompt, 64 new tokens,
greedy. Per case, after ``import torch``:

- time to first token: loading the model (aotpack: the package; transformers: import +
  ``from_pretrained``) and the prefill, up to the first new token;
- decode tokens/s: the 63 tokens after the first of a generate of 64, once prefill and
  decode have each run (torch.compile: compiled) before, minus a timed prefill;
- peak RSS (VmHWM).

aotpack: ``aotpack.llm.compile(backend="aoti")`` then ``aotpack.generate``; its first
token is also split into load and prefill, to check generate adds nothing around them.
aotpack on CUDA: with the decode step's CUDA graph (the default) and with plain calls.
transformers: ``disable_compile=True`` (its generate would otherwise torch.compile a
static-cache forward on CUDA by itself). torch.compile: a ``StaticCache`` of one size (prompt + 64) passed to every generate, and
``torch.compile(model.forward)`` (mode default: "reduce-overhead" is CUDA graphs),
measured with a warm inductor cache (a first process fills it; the timed one reuses it,
as a restarted service would); and the same compiled forward driven by a plain greedy loop
(gpt-fast's way), which leaves generate()'s per-token Python out. transformers' ``cache_implementation="static"`` sizes its
cache by each call's max_new_tokens, so every new size recompiles: one fixed cache
avoids that.

With ``--weights int8`` every case runs the weight-only int8 model
(``aotpack.llm.int8_weights`` of the same weights, applied after loading in the
transformers and torch.compile cases): tokens/s of int8 against int8, and the file's
tag says int8.

``--matvec-kernel on|off`` compiles the aotpack case with ``matvec_kernel=True`` or
``False`` (aotpack's own kernel for the down projection; the default is on for CUDA) and
the file's tag says which.

    python bench/generate.py [--device cpu|cuda] [--dtype float32|bfloat16] [--layers 8] [--hidden 512] [--weights int8] [--matvec-kernel on|off]
Writes bench/results/generate-<tag>.json.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import fresh, table, write  # noqa: E402

PROMPT, NEW = 32, 64

PRELUDE = r"""
import json, os, sys, time, warnings
import torch
t0 = time.perf_counter()
warnings.simplefilter("ignore")
def peak_rss_gb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
DEVICE = sys.argv[-1]
ids = torch.randint(3, 1000, (1, PROMPT), generator=torch.Generator().manual_seed(0)).to(DEVICE)
def sync():
    if DEVICE == "cuda":
        torch.cuda.synchronize()
NEW = NEW_TOKENS
def weights(model):  # the int8 model, quantized from the same weights as the package's
    if os.environ.get("BENCH_WEIGHTS") == "int8":
        import aotpack.llm
        return aotpack.llm.int8_weights(model)
    return model
""".replace("NEW_TOKENS", str(NEW)).replace("PROMPT", str(PROMPT))

AOTPACK = PRELUDE + r"""
import aotpack
GRAPH = None if sys.argv[2] == "graph" else False  # None: the default (a CUDA graph on CUDA)
fn = aotpack.load(sys.argv[1])
t_load = time.perf_counter()
first = aotpack.generate(fn, ids, 1, cuda_graph=GRAPH)
sync()
t_first = time.perf_counter()
aotpack.generate(fn, ids, 3, cuda_graph=GRAPH)  # both steps have run once: what follows is steady state
sync()
t = time.perf_counter()
aotpack.generate(fn, ids, 1, cuda_graph=GRAPH)
sync()
prefill = time.perf_counter() - t
t = time.perf_counter()
out = aotpack.generate(fn, ids, NEW, cuda_graph=GRAPH)
sync()
decode_s = time.perf_counter() - t - prefill
print(json.dumps({"first_token_s": t_first - t0, "load_s": t_load - t0, "prefill_s": t_first - t_load,
                  "decode_tok_s": (NEW - 1) / decode_s, "peak_rss_gb": peak_rss_gb(),
                  "tokens": out[0, -NEW:].tolist()}))
"""

TRANSFORMERS = PRELUDE + r"""
from transformers import AutoModelForCausalLM, StaticCache
model = weights(AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=sys.argv[3]).to(DEVICE).eval())
compiled = sys.argv[2].startswith("compile")
if compiled:
    model.forward = torch.compile(model.forward, mode="reduce-overhead" if "reduce-overhead" in sys.argv[2] else None)
def kw():
    # disable_compile: transformers would torch.compile a static-cache generate itself
    args = dict(do_sample=False, pad_token_id=0, attention_mask=torch.ones_like(ids), disable_compile=True)
    if compiled:  # one cache size for every call: the compiled graphs are reused, not recompiled
        args["past_key_values"] = StaticCache(config=model.config, max_cache_len=ids.shape[1] + NEW)
        if "reduce-overhead" in sys.argv[2]:
            torch.compiler.cudagraph_mark_step_begin()
    return args
with torch.no_grad():
    model.generate(ids, max_new_tokens=1, **kw())
    sync()
    t_first = time.perf_counter()
    model.generate(ids, max_new_tokens=3, **kw())  # the decode step compiled/run once too
    sync()
    t = time.perf_counter()
    model.generate(ids, max_new_tokens=1, **kw())
    sync()
    prefill = time.perf_counter() - t
    t = time.perf_counter()
    out = model.generate(ids, max_new_tokens=NEW, min_new_tokens=NEW, **kw())
    sync()
    decode_s = time.perf_counter() - t - prefill
print(json.dumps({"first_token_s": t_first - t0, "decode_tok_s": (NEW - 1) / decode_s,
                  "peak_rss_gb": peak_rss_gb(), "tokens": out[0, -NEW:].tolist()}))
"""

# gpt-fast's way, as transformers documents it for a static cache: a greedy loop that
# calls a torch.compile'd one-token forward (fullgraph; "reduce-overhead" on CUDA: CUDA
# graphs) on a StaticCache; the prefill runs uncompiled. No generate() around it, so its
# per-token Python (logits processors, stopping criteria) is not in the number.
LOOP = PRELUDE + r"""
from transformers import AutoModelForCausalLM, StaticCache
model = weights(AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=sys.argv[2]).to(DEVICE).eval())
cache = StaticCache(config=model.config, max_cache_len=ids.shape[1] + NEW)
graphs = DEVICE == "cuda"
if graphs:  # gpt-fast's inductor setting for batch-1 decode, as aotpack.llm uses on CUDA
    import torch._inductor.config
    torch._inductor.config.coordinate_descent_tuning = True
def step(tok, pos):
    return model(input_ids=tok, cache_position=pos, past_key_values=cache, use_cache=True).logits[:, -1]
decode = torch.compile(step, mode="reduce-overhead" if graphs else None, fullgraph=True)
def generate(n):
    cache.reset()
    tok = step(ids, torch.arange(ids.shape[1], device=DEVICE)).argmax(-1, keepdim=True)
    out, pos = [tok], torch.tensor([ids.shape[1]], device=DEVICE)
    for _ in range(n - 1):
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        tok = decode(tok, pos).argmax(-1, keepdim=True).clone()
        out.append(tok)
        pos = pos + 1
    return torch.cat([ids, *out], 1)
with torch.no_grad():
    generate(1)
    sync()
    t_first = time.perf_counter()
    generate(3)  # the decode step compiled and run
    sync()
    t = time.perf_counter()
    generate(1)
    sync()
    prefill = time.perf_counter() - t
    t = time.perf_counter()
    out = generate(NEW)
    sync()
    decode_s = time.perf_counter() - t - prefill
print(json.dumps({"first_token_s": t_first - t0, "decode_tok_s": (NEW - 1) / decode_s,
                  "peak_rss_gb": peak_rss_gb(), "tokens": out[0, -NEW:].tolist()}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--backend", default="aoti")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--weights", default="full", choices=["full", "int8"],
                        help="int8: every case runs aotpack.llm.int8_weights of the model")
    parser.add_argument("--matvec-kernel", default="default", choices=["default", "on", "off"],
                        help="aotpack.llm.compile's matvec_kernel (aotpack's own kernel for the down projection; "
                             "default: on for CUDA)")
    parser.add_argument("--cases", default="aotpack,eager,compile,loop",
                        help="which cases to run (a subset, to fit a time limit)")
    opts = parser.parse_args()
    cases = set(opts.cases.split(","))
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    import aotpack.llm

    work = tempfile.mkdtemp(prefix="aotpack-gen-")
    try:
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=32000, hidden_size=opts.hidden, intermediate_size=opts.hidden * 11 // 4,
                          num_hidden_layers=opts.layers, num_attention_heads=8, num_key_value_heads=4,
                          max_position_embeddings=1024)
        model = LlamaForCausalLM(cfg).to(opts.device, getattr(torch, opts.dtype)).eval()
        params = sum(p.numel() for p in model.parameters())
        model.save_pretrained(os.path.join(work, "hf"))
        if opts.weights == "int8":
            model = aotpack.llm.int8_weights(model)
        env = {"TORCHINDUCTOR_CACHE_DIR": os.path.join(work, "inductor"),
               "AOTPACK_VERIFIED_DIR": os.path.join(work, "verified"), "BENCH_WEIGHTS": opts.weights}
        hf, dev = os.path.join(work, "hf"), opts.device
        ours = plain = eager = tc = loop = None
        if "aotpack" in cases:  # (left out: the other cases alone, to fit a machine's time limit per command)
            pkg = aotpack.llm.compile(model, max_batch=1, max_len=PROMPT + NEW, backend=opts.backend,
                                      matvec_kernel={"default": None, "on": True, "off": False}[opts.matvec_kernel],
                                      progress=lambda line: print(line, file=sys.stderr))
            path = pkg.save(os.path.join(work, "lm.aot"))
            del pkg
            fresh(AOTPACK, path, "graph", dev, env=env)  # the first load of the file hashes it (remembered after)
            ours = min((fresh(AOTPACK, path, "graph", dev, env=env) for _ in range(3)),
                       key=lambda r: r["first_token_s"])
            plain = (min((fresh(AOTPACK, path, "plain", dev, env=env) for _ in range(2)),
                         key=lambda r: r["first_token_s"]) if dev == "cuda" else None)
        del model
        if "eager" in cases:
            eager = min((fresh(TRANSFORMERS, hf, "eager", opts.dtype, dev, env=env) for _ in range(2)),
                        key=lambda r: r["first_token_s"])
        if "compile" in cases:
            mode = "compile-reduce-overhead" if dev == "cuda" else "compile"
            fresh(TRANSFORMERS, hf, mode, opts.dtype, dev, env=env, timeout=1800)  # fills inductor's cache
            tc = fresh(TRANSFORMERS, hf, mode, opts.dtype, dev, env=env, timeout=1800)
        if "loop" in cases:
            fresh(LOOP, hf, opts.dtype, dev, env=env, timeout=1800)  # fills inductor's cache
            loop = fresh(LOOP, hf, opts.dtype, dev, env=env, timeout=1800)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    compiled = f"torch.compile{', reduce-overhead' if opts.device == 'cuda' else ''}"
    kernel = {"on": ", matvec kernel", "off": ", no matvec kernel"}.get(opts.matvec_kernel, "")
    rows = [*([{"case": f"aotpack ({opts.backend}{kernel}" + (", CUDA graph" if plain else "") + ")", **ours}] if ours else []),
            *([{"case": f"aotpack ({opts.backend}{kernel}, plain calls)", **plain}] if plain else []),
            *([{"case": "transformers eager", **eager}] if eager else []),
            *([{"case": f"{compiled}, static cache (warm)", **tc}] if tc else []),
            *([{"case": f"{compiled}, own decode loop (gpt-fast style, warm)", **loop}] if loop else [])]
    same = all(r["tokens"] == rows[0]["tokens"] for r in rows)
    for r in rows:
        r.pop("tokens")
        r.update(params_m=params / 1e6, weights=opts.weights, prompt=PROMPT, new_tokens=NEW, device=opts.device, dtype=opts.dtype)
    print(table(["case", "first token", "decode tokens/s", "peak RSS"],
                [[r["case"], f"{r['first_token_s']:.3f} s", f"{r['decode_tok_s']:.1f}", f"{r['peak_rss_gb']:.2f} GB"]
                 for r in rows]))
    print(f"\n{params / 1e6:.0f}M parameters; greedy tokens identical in every case: {same}")
    if ours:
        print(f"aotpack first token {ours['first_token_s']:.3f} s = load {ours['load_s']:.3f} s + prefill "
              f"{ours['prefill_s']:.3f} s (+ {ours['first_token_s'] - ours['load_s'] - ours['prefill_s']:.3f} s)")
    best = max((r for r in (tc, loop) if r), key=lambda r: r["decode_tok_s"], default=None)
    if best and ours:
        print(f"decode vs torch.compile's best: {ours['decode_tok_s'] / best['decode_tok_s']:.2f}x (goal >= 1)")
    if eager and ours:
        print(f"first token {ours['first_token_s']:.3f} s vs eager's + 0.2 s = {eager['first_token_s'] + 0.2:.3f} s "
              "(goal: below)")
    tag = None if opts.device == "cpu" else f"{opts.device}-{opts.dtype}"
    if (opts.layers, opts.hidden) != (8, 512):  # another size keeps the default size's file
        tag = f"{tag or 'cpu'}-{opts.layers}x{opts.hidden}"
    if opts.weights != "full":
        tag = f"{tag or 'cpu'}-{opts.weights}"
    if opts.matvec_kernel != "default":
        tag = f"{tag or 'cpu'}-matvec-{opts.matvec_kernel}"
    if cases != {"aotpack", "eager", "compile", "loop"}:
        tag = f"{tag or 'cpu'}-{'-'.join(sorted(cases))}"  # a partial run keeps the full one's file
    print("wrote", write("generate", [*rows, {"same_tokens": same}], tag=tag))


if __name__ == "__main__":
    main()
