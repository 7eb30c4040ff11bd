"""Greedy tokens of a package against transformers' eager generate and its torch.compile
path, and every divergence explained: at the first step where two differ, is the
reference's choice a near-tie (top-2 logit gap within the dtype's rounding), or a fault?

A Llama from a small config (random weights, seed 0), batch 1, a 32-token prompt, 64 new
tokens, greedy, for each dtype asked. Eager: ``model.generate(..., output_scores=True)``.
torch.compile (CUDA): the same with ``cache_implementation="static"``, which makes
transformers compile the decode step (reduce-overhead).
Package: ``aotpack.llm.compile`` + ``aotpack.generate`` (CUDA graph on CUDA), its
logits at each step recorded. Up to the first differing step both saw the same tokens,
so the logits there are comparable: the script prints eager's logits for its own choice
and for the package's, their gap, and the package's logits for the same two tokens, and
calls the step a near-tie when the gap is at most 2 units in the last place of the dtype at the logits' magnitude
(bf16: 8 bits of mantissa; fp32: 24).

    python bench/decode_divergence.py --device cuda --dtypes float32,bfloat16 --layers 8 --hidden 2048
    python bench/decode_divergence.py --device cuda --dtypes bfloat16 --weights int8
Each pair (package/eager, package/compile, compile/eager) gets its own first divergence.
Writes bench/results/decode_divergence-<device>-<layers>x<hidden>[-int8][suffix].json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

PROMPT, NEW = 32, 64
MANTISSA = {"float32": 24, "bfloat16": 8, "float16": 11}


def ulp(value: float, dtype: str) -> float:
    """One unit in the last place of ``dtype`` at ``value``'s magnitude."""
    return 2.0 ** (math.floor(math.log2(max(abs(value), 1e-30))) - MANTISSA[dtype] + 1)


def first_divergence(tokens: list, scores: list, ref_tokens: list, ref_scores: list, dtype_name: str) -> dict:
    """Where ``tokens`` first leave ``ref_tokens``, and whether that step is a near-tie.

    Up to that step both saw the same tokens, so their logits there are comparable. The
    reference's gap between its own choice and the other's must be within ``dtype``'s
    rounding (2 ulp at the logit's magnitude), else it is a fault to find."""
    k = next((i for i, (a, b) in enumerate(zip(tokens, ref_tokens)) if a != b), None)
    if k is None:
        return {"same_tokens": True}
    # the two candidates: the reference's choice (argmax: the first index of a tie) and the other's
    t0, t1 = ref_tokens[k], tokens[k]
    r0, r1 = ref_scores[k][t0].item(), ref_scores[k][t1].item()
    mine = scores[k]
    gap, unit = r0 - r1, ulp(r0, dtype_name)
    return {"same_tokens": False, "first_divergence": k,
            "reference_top2": {"tokens": [t0, t1], "logits": [r0, r1], "gap": gap},
            "other": {"token": t1, "logits_of_reference_top2": [mine[t0].item(), mine[t1].item()]},
            "ulp_at_logit": unit, "gap_in_ulps": gap / unit, "near_tie": gap <= 2 * unit,
            "max_abs_logit_diff_before": max((ref_scores[i] - scores[i]).abs().max().item() for i in range(k + 1))}


def run(dtype_name: str, opts, work: str) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    import aotpack
    import aotpack.llm
    from aotpack import llm

    dtype = getattr(torch, dtype_name)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=32000, hidden_size=opts.hidden, intermediate_size=opts.hidden * 11 // 4,
                      num_hidden_layers=opts.layers, num_attention_heads=8, num_key_value_heads=4,
                      max_position_embeddings=1024)
    model = LlamaForCausalLM(cfg).to(opts.device, dtype).eval()
    # every side runs the int8 model: eager's generate, torch.compile's and the package
    from decode_profile import with_weights

    model = with_weights(model, opts.weights)
    ids = torch.randint(3, 1000, (1, PROMPT), generator=torch.Generator().manual_seed(0)).to(opts.device)
    streams: dict = {}  # name -> (tokens, logits at each step)

    def generate(model, **kw) -> tuple:
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=NEW, do_sample=False, pad_token_id=0, output_scores=True,
                                 return_dict_in_generate=True, attention_mask=torch.ones_like(ids), **kw)
        return out.sequences[0, -NEW:].tolist(), [s[0].float().cpu() for s in out.scores]

    streams["eager"] = generate(model, disable_compile=True)
    if "compile" in opts.against and opts.device == "cuda":
        # transformers' own torch.compile path: a static cache makes generate compile the
        # decode step (fullgraph, reduce-overhead: CUDA graphs), as its docs recommend
        streams["compile"] = generate(model, cache_implementation="static")
        compiled = hasattr(model, "_compiled_call")
    path = aotpack.llm.compile(model, max_batch=1, max_len=PROMPT + NEW).save(os.path.join(work, f"{dtype_name}.aot"))
    del model
    fn = aotpack.load(path)
    seen: list = []
    choose = llm._choose

    def recording(logits, *a, **k):  # the package's logits at each step, before the choice
        seen.append(logits[0].float().cpu())
        return choose(logits, *a, **k)

    llm._choose = recording
    try:
        streams["package"] = aotpack.generate(fn, ids, NEW)[0, -NEW:].tolist(), seen
    finally:
        llm._choose = choose
    row: dict = {"dtype": dtype_name, "weights": opts.weights, "steps": NEW}
    if "compile" in streams:
        row["compile_ran_torch_compile"] = compiled
    pairs = [("package", "eager"), ("package", "compile"), ("compile", "eager")]
    for other, ref in pairs:
        if other in streams and ref in streams:
            row[f"{other}_vs_{ref}"] = first_divergence(*streams[other], *streams[ref], dtype_name)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--weights", default="full", choices=["full", "int8", "torchao-int8"],
                        help="int8: the model of aotpack.llm.int8_weights, on every side; torchao-int8: torchao's")
    parser.add_argument("--against", default="eager,compile",
                        help="references: eager (transformers' generate), compile (its torch.compile path, CUDA only)")
    parser.add_argument("--suffix", default="", help="appended to the results file's name")
    opts = parser.parse_args()
    from _common import machine

    rows = []
    with tempfile.TemporaryDirectory(prefix="aotpack-div-") as work:
        for name in opts.dtypes.split(","):
            row = run(name, opts, work)
            rows.append(row)
            print(json.dumps(row), flush=True)
            for pair, d in row.items():
                if not pair.endswith(("_vs_eager", "_vs_compile")):
                    continue
                other, ref = pair.split("_vs_")
                if d["same_tokens"]:
                    print(f"{name}: {other}'s greedy tokens equal {ref}'s for all {NEW} steps")
                    continue
                r, o = d["reference_top2"], d["other"]
                print(f"{name}: {other} against {ref}: first divergence at step {d['first_divergence']}: "
                      f"{ref}'s choice and {other}'s {r['tokens']}, {ref}'s logits {r['logits'][0]:.4f} / "
                      f"{r['logits'][1]:.4f} (gap {r['gap']:.4g} = {d['gap_in_ulps']:.2f} ulp of {name}); "
                      f"{other}'s logits for them {o['logits_of_reference_top2'][0]:.4f} / "
                      f"{o['logits_of_reference_top2'][1]:.4f}: "
                      f"{'a near-tie (rounding)' if d['near_tie'] else 'NOT a near-tie: a fault'}")
    out_dir = os.environ.get("OUT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    int8 = "" if opts.weights == "full" else f"-{opts.weights}"
    name = f"decode_divergence-{opts.device}-{opts.layers}x{opts.hidden}{int8}{opts.suffix}.json"
    with open(os.path.join(out_dir, name), "w") as f:
        json.dump({"machine": machine(), "rows": rows, "command": " ".join(["python", *sys.argv])}, f, indent=1)


if __name__ == "__main__":
    main()
