"""Greedy tokens of a package against transformers' eager generate, and every divergence
explained: at the first step where they differ, is the reference's choice a near-tie
(top-2 logit gap within the dtype's rounding of the logits), or a fault?

A Llama from a small config (random weights, seed 0), batch 1, a 32-token prompt, 64 new
tokens, greedy, for each dtype asked. Eager: ``model.generate(..., output_scores=True)``.
Package: ``aotpack.llm.compile`` + ``aotpack.generate`` (CUDA graph on CUDA), its
logits at each step recorded. Up to the first differing step both saw the same tokens,
so the logits there are comparable: the script prints eager's logits for its own choice
and for the package's, their gap, and the package's logits for the same two tokens, and
calls the step a near-tie when the gap is at most 2 units in the last place of the dtype at the logits' magnitude
(bf16: 8 bits of mantissa; fp32: 24).

    python bench/decode_divergence.py --device cuda --dtypes float32,bfloat16 --layers 8 --hidden 2048
    python bench/decode_divergence.py --device cuda --dtypes bfloat16 --weights int8
Writes bench/results/decode_divergence-<device>-<layers>x<hidden>[-int8].json.
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
    if opts.weights == "int8":  # both sides run the int8 model: eager's generate and the package
        model = aotpack.llm.int8_weights(model)
    ids = torch.randint(3, 1000, (1, PROMPT), generator=torch.Generator().manual_seed(0)).to(opts.device)
    with torch.no_grad():
        ref = model.generate(ids, max_new_tokens=NEW, do_sample=False, pad_token_id=0, output_scores=True,
                             return_dict_in_generate=True, attention_mask=torch.ones_like(ids), disable_compile=True)
    ref_tokens = ref.sequences[0, -NEW:].tolist()
    ref_scores = [s[0].float().cpu() for s in ref.scores]
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
        tokens = aotpack.generate(fn, ids, NEW)[0, -NEW:].tolist()
    finally:
        llm._choose = choose
    row = {"dtype": dtype_name, "weights": opts.weights, "same_tokens": tokens == ref_tokens, "steps": NEW}
    k = next((i for i, (a, b) in enumerate(zip(tokens, ref_tokens)) if a != b), None)
    if k is not None:
        # the two candidates: eager's choice (argmax: the first index of a tie) and the package's
        t0, t1 = ref_tokens[k], tokens[k]
        r0, r1 = ref_scores[k][t0].item(), ref_scores[k][t1].item()
        mine = seen[k]
        gap, unit = r0 - r1, ulp(r0, dtype_name)
        row.update(first_divergence=k, reference_top2={"tokens": [t0, t1], "logits": [r0, r1], "gap": gap},
                   reference_top2_note="eager's logits for its own choice and for the package's",
                   package={"token": tokens[k], "logits_of_reference_top2": [mine[t0].item(), mine[t1].item()],
                            "logit_of_own_choice": mine[tokens[k]].item()},
                   ulp_at_logit=unit, gap_in_ulps=gap / unit, near_tie=gap <= 2 * unit,
                   max_abs_logit_diff_before=max((ref_scores[i] - seen[i]).abs().max().item() for i in range(k + 1)))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--weights", default="full", choices=["full", "int8"],
                        help="int8: the model of aotpack.llm.int8_weights, on both sides")
    opts = parser.parse_args()
    from _common import machine

    rows = []
    with tempfile.TemporaryDirectory(prefix="aotpack-div-") as work:
        for name in opts.dtypes.split(","):
            row = run(name, opts, work)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if "first_divergence" in row:
                r, p = row["reference_top2"], row["package"]
                print(f"{name}: first divergence at step {row['first_divergence']}: eager's choice and the package's {r['tokens']} "
                      f"logits {r['logits'][0]:.4f} / {r['logits'][1]:.4f} (gap {r['gap']:.4g} = "
                      f"{row['gap_in_ulps']:.2f} ulp of {name}); the package's logits for them "
                      f"{p['logits_of_reference_top2'][0]:.4f} / {p['logits_of_reference_top2'][1]:.4f}, it chose "
                      f"{p['token']}: {'a near-tie (rounding)' if row['near_tie'] else 'NOT a near-tie: a fault'}")
            else:
                print(f"{name}: greedy tokens equal eager's for all {NEW} steps")
    out_dir = os.environ.get("OUT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    int8 = "-int8" if opts.weights == "int8" else ""
    with open(os.path.join(out_dir, f"decode_divergence-{opts.device}-{opts.layers}x{opts.hidden}{int8}.json"), "w") as f:
        json.dump({"machine": machine(), "rows": rows, "command": " ".join(["python", *sys.argv])}, f, indent=1)


if __name__ == "__main__":
    main()
