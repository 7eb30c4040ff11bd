"""Text generation from one package (aotpack.llm): greedy tokens equal to transformers'
``generate`` for Llama, Qwen2 and GPT-2, and to a no-cache reference for the project's
own GPT, in a fresh process; batches of prompts of different lengths; reset between
prompts; the cache's limits; eos; seeded sampling; the CLI."""

from __future__ import annotations

import json

import pytest
import torch

import aotpack
import aotpack.llm
from conftest import run_fresh

MAX_BATCH, MAX_LEN, NEW = 2, 32, 10
PROMPTS = [[5, 7, 9, 11, 13], [3, 4]]  # two lengths: left-padded to one


def _hf(kind: str):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))
    elif kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))
    else:
        model = GPT2LMHeadModel(GPT2Config(vocab_size=128, n_embd=64, n_layer=2, n_head=4, n_positions=64,
                                           bos_token_id=1, eos_token_id=2))
    return model.eval()


def _own():
    import gpt_static

    torch.manual_seed(0)
    return gpt_static.StaticGPT(max_batch=MAX_BATCH, max_len=MAX_LEN).eval()


def _padded(prompts):
    t = max(map(len, prompts))
    ids = torch.tensor([[0] * (t - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (t - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def _reference(kind, model, prompts, new=NEW, eos=None):
    ids, mask = _padded(prompts)
    if kind == "gpt":
        import gpt_static

        assert eos is None
        return gpt_static.reference_generate(model, ids, mask, new)
    with torch.no_grad():
        return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, do_sample=False,
                              pad_token_id=0, eos_token_id=eos)


@pytest.fixture(scope="module", params=["llama", "qwen2", "gpt2", "gpt"])
def lm(request, tmp_path_factory):
    kind = request.param
    model = _own() if kind == "gpt" else _hf(kind)
    path = aotpack.llm.compile(model, max_batch=MAX_BATCH, max_len=MAX_LEN, backend="eager").save(
        tmp_path_factory.mktemp("lm") / f"{kind}.aot")
    return kind, model, str(path)


GENERATE = r"""
import json, sys, aotpack
prompts = json.loads(sys.argv[2])
fn = aotpack.load(sys.argv[1])
out = {"batch": aotpack.generate(fn, prompts, int(sys.argv[3])).tolist(),
       "single": [aotpack.generate(fn, [p], int(sys.argv[3])).tolist() for p in prompts]}
print(json.dumps(out))
"""


def test_greedy_tokens_equal_the_reference_in_a_fresh_process(lm):
    """A batch of two prompts of different lengths, then each alone (reusing the loaded
    package: nothing to reset between prompts)."""
    kind, model, path = lm
    got = json.loads(run_fresh(["-c", GENERATE, path, json.dumps(PROMPTS), str(NEW)]).stdout)
    assert got["batch"] == _reference(kind, model, PROMPTS).tolist()
    for p, single in zip(PROMPTS, got["single"]):
        assert single == _reference(kind, model, [p]).tolist()


def test_reset_between_prompts_and_state(lm):
    kind, model, path = lm
    fn = aotpack.load(path)
    assert fn.state and all(t.is_contiguous() for t in fn.state.values())
    long = list(range(3, 3 + MAX_LEN - NEW))  # fills most of the cache
    aotpack.generate(fn, [long], NEW)
    assert any(t.abs().sum() > 0 for t in fn.state.values() if t.is_floating_point())
    after = aotpack.generate(fn, [PROMPTS[1]], NEW)  # old slots are masked out, not in the way
    assert after.tolist() == _reference(kind, model, [PROMPTS[1]]).tolist()
    fn.reset_state()
    assert all(not t.any() for t in fn.state.values() if t.is_floating_point())
    other = aotpack.load(path)  # each load owns its state
    assert all(a.data_ptr() != b.data_ptr() for a, b in zip(fn.state.values(), other.state.values()))


def test_the_cache_limits_are_clear_errors(lm):
    _, _, path = lm
    fn = aotpack.load(path)
    with pytest.raises(aotpack.GuardError, match=r"input_ids.shape\[1\]: expected at most 32 .*got 40"):
        aotpack.generate(fn, [list(range(40))], 1)
    with pytest.raises(aotpack.AotpackError, match=r"30 \+ 5 = 35 tokens do not fit the package's cache of 32"):
        aotpack.generate(fn, [list(range(30))], 5)
    with pytest.raises(aotpack.AotpackError, match=r"holds 3 prompts; the package's cache holds 2"):
        aotpack.generate(fn, [[1], [2], [3]], 1)
    # the steps themselves refuse a prompt longer than the cache, naming it
    ids = torch.zeros(MAX_BATCH, MAX_LEN + 1, dtype=torch.long)
    with pytest.raises(aotpack.GuardError, match=r"args\[0\].shape\[1\] expected prompt in 2..32, got 33"):
        fn(ids, torch.ones(MAX_BATCH, MAX_LEN, dtype=torch.long), ids, torch.arange(MAX_LEN + 1))
    out = aotpack.generate(fn, [list(range(3, 3 + MAX_LEN - 4))], 4)  # exactly full: fine
    assert out.shape == (1, MAX_LEN)


def test_eos_stops_like_transformers(lm):
    kind, model, path = lm
    if kind == "gpt":
        pytest.skip("the no-cache reference has no eos handling")
    free = _reference(kind, model, PROMPTS)
    eos = int(free[1, -NEW + 2])  # a token the second prompt produces third
    got = aotpack.generate(path, PROMPTS, NEW, eos_token_id=eos)
    assert got.tolist() == _reference(kind, model, PROMPTS, eos=eos).tolist()


def test_seeded_sampling_is_reproducible(lm):
    _, _, path = lm
    fn = aotpack.load(path)
    runs = [aotpack.generate(fn, PROMPTS, NEW, temperature=0.8, top_k=20, top_p=0.9,
                             generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    assert torch.equal(aotpack.generate(fn, PROMPTS, NEW, temperature=1.0, top_k=1), aotpack.generate(fn, PROMPTS, NEW))


def test_cli_generate(lm):
    kind, model, path = lm
    if kind != "llama":
        pytest.skip("one model is enough for the CLI")
    proc = run_fresh(["-m", "aotpack", "generate", path, "--prompt", "5,7,9,11,13", "--prompt", "3,4",
                      "--max-new-tokens", str(NEW)], timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    ref = _reference(kind, model, PROMPTS)
    lines = proc.stdout.strip().splitlines()
    assert lines[:2] == [" ".join(map(str, ref[i, -NEW:].tolist())) for i in range(2)]
    assert "tokens/s" in lines[-1]


def test_cuda_graph_on_a_cpu_package_is_refused(lm):
    with pytest.raises(aotpack.AotpackError, match="cuda_graph=True, but the package runs on cpu"):
        aotpack.generate(lm[2], PROMPTS, 2, cuda_graph=True)


def test_a_package_without_llm_section_is_refused(tmp_path):
    path = aotpack.compile(lambda x: x + 1, (torch.randn(2),), backend="eager").save(tmp_path / "f.aot")
    with pytest.raises(aotpack.AotpackError, match="was not built by aotpack.llm.compile"):
        aotpack.generate(path, [[1, 2]], 2)


@pytest.mark.slow
def test_aoti_llama_greedy_in_a_fresh_process(tmp_path):
    model = _hf("llama")
    path = aotpack.llm.compile(model, max_batch=MAX_BATCH, max_len=MAX_LEN, backend="aoti").save(tmp_path / "l.aot")
    got = json.loads(run_fresh(["-c", GENERATE, str(path), json.dumps(PROMPTS), str(NEW)]).stdout)
    assert got["batch"] == _reference("llama", model, PROMPTS).tolist()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend,dtype", [("eager", torch.bfloat16), ("eager", torch.float32),
                                           ("aoti", torch.float32)])
def test_cuda_generation_equals_transformers(tmp_path, backend, dtype):
    """On the GPU: the cache lives on the device, tokens equal transformers' generate
    with the same weights, dtype and device, in a fresh process."""
    model = _hf("llama").to("cuda", dtype)
    path = aotpack.llm.compile(model, max_batch=MAX_BATCH, max_len=MAX_LEN, backend=backend).save(tmp_path / "c.aot")
    code = GENERATE.replace("fn = aotpack.load(sys.argv[1])", "fn = aotpack.load(sys.argv[1])\n"
                            "assert all(t.is_cuda for t in fn.state.values())").replace(
        "print(json.dumps(out))",  # the decode step through its CUDA graph, then plain calls
        "assert aotpack.llm.decode_graph(fn)\n"
        "out['graph'] = aotpack.generate(fn, prompts, int(sys.argv[3]), cuda_graph=True).tolist()\n"
        "out['plain'] = aotpack.generate(fn, prompts, int(sys.argv[3]), cuda_graph=False).tolist()\n"
        "print(json.dumps(out))")
    got = json.loads(run_fresh(["-c", code, str(path), json.dumps(PROMPTS), str(NEW)]).stdout)
    ids, mask = _padded(PROMPTS)
    with torch.no_grad():
        ref = model.generate(input_ids=ids.cuda(), attention_mask=mask.cuda(), max_new_tokens=NEW, do_sample=False,
                             pad_token_id=0).cpu()
    assert got["batch"] == got["graph"] == got["plain"] == ref.tolist()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_graph_capture_failure_falls_back_to_plain_calls(tmp_path, monkeypatch):
    model = _hf("llama").to("cuda")
    fn = aotpack.load(aotpack.llm.compile(model, max_batch=MAX_BATCH, max_len=MAX_LEN, backend="eager")
                      .save(tmp_path / "c.aot"))
    want = aotpack.generate(fn, PROMPTS, NEW, cuda_graph=False)

    def refuse(*args):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(aotpack.llm, "_GraphedDecode", refuse)
    with pytest.raises(aotpack.AotpackError, match="cannot be captured in a CUDA graph"):
        aotpack.generate(fn, PROMPTS, NEW, cuda_graph=True)
    with pytest.warns(aotpack.llm.CudaGraphWarning, match="decoding with plain calls"):
        assert aotpack.generate(fn, PROMPTS, NEW).tolist() == want.tolist()
    assert aotpack.llm.decode_graph(fn) is False  # warned once, remembered


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_decode_with_math_attention_equals_transformers(kind):
    """The decode step's attention captured as math (the default on CUDA) gives
    transformers' tokens, a batch of two prompts of different lengths (padding masked)."""
    model = _hf(kind)
    pkg = aotpack.llm.compile(model, max_batch=MAX_BATCH, max_len=MAX_LEN, backend="eager", decode_attention="math")
    graphs = {v.name: pkg.members[f"variants/{v.name}/graph.py"].decode() for v in pkg.manifest.variants}
    assert "_scaled_dot_product_attention_math" in graphs["decode"]
    assert "_scaled_dot_product_attention_math" not in graphs["prefill"]
    fn = aotpack.load(pkg.to_bytes())
    assert aotpack.generate(fn, PROMPTS, NEW).tolist() == _reference(kind, model, PROMPTS).tolist()


@pytest.mark.parametrize("case", ["bool mask, gqa", "float mask, scale", "causal", "no mask"])
def test_math_attention_equals_the_fused_op(case):
    from aotpack import _torch_compat as compat

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, h, t, 16, generator=g) for h, t in ((4, 3), (2, 40), (2, 40)))
    kwargs = {"bool mask, gqa": dict(attn_mask=torch.rand(2, 1, 3, 40, generator=g) > 0.3, enable_gqa=True),
              "float mask, scale": dict(attn_mask=torch.randn(2, 1, 3, 40, generator=g), scale=0.3, enable_gqa=True),
              "causal": dict(is_causal=True, enable_gqa=True),
              "no mask": dict(enable_gqa=True)}[case]
    sdpa = torch.nn.functional.scaled_dot_product_attention
    want = sdpa(q, k, v, **kwargs)
    with compat.math_attention():
        got = torch.nn.functional.scaled_dot_product_attention(q, k, v, **kwargs)
    assert torch.nn.functional.scaled_dot_product_attention is sdpa  # restored
    torch.testing.assert_close(got, want)


def test_int8_weights_package_gives_the_int8_models_tokens(tmp_path):
    """Weight-only int8 (aotpack.llm.int8_weights): the package stores int8 weights and
    its greedy tokens, in a fresh process, equal the int8 model's eager generate; the
    original model is left as it was. (Backend eager: the int8 model is plain torch ops,
    which every backend compiles; the GPU benchmark runs it with aoti.)"""
    model = _hf("llama")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    quantized = aotpack.llm.int8_weights(model)
    assert all(type(m) is not torch.nn.Linear for m in quantized.modules())
    assert all(type(m) is torch.nn.Linear for m in (model.lm_head, model.model.layers[0].mlp.up_proj))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    int8 = aotpack.llm.compile(quantized, max_batch=MAX_BATCH, max_len=MAX_LEN, backend="eager")
    stored = {name: w.dtype for name, w in int8.manifest.program.weights.items()}
    linears = [name for name, m in model.named_modules() if type(m) is torch.nn.Linear]
    assert len(linears) == 15 and all(any(n.endswith(f"{lin}.weight") and d == "int8" for n, d in stored.items())
                                      for lin in linears), stored  # every Linear's weight is stored as int8
    assert any(n.endswith("embed_tokens.weight") and d == "float32" for n, d in stored.items())
    path = int8.save(tmp_path / "int8.aot")
    got = json.loads(run_fresh(["-c", GENERATE, str(path), json.dumps(PROMPTS), str(NEW)]).stdout)
    assert got["batch"] == _reference("llama", quantized, PROMPTS).tolist()
    for p, single in zip(PROMPTS, got["single"]):
        assert single == _reference("llama", quantized, [p]).tolist()


def test_int8_weights_needs_a_linear_layer():
    with pytest.raises(aotpack.AotpackError, match="no torch.nn.Linear layer"):
        aotpack.llm.int8_weights(torch.nn.Sequential(torch.nn.ReLU()))


def test_fused_projections_give_transformers_tokens(tmp_path):
    """``fuse_projections=True``: the linear layers each layer calls on one input (q, k, v
    with Qwen2's biases; gate, up) are stored as one concatenated weight each, found in
    torch.export's graph of the step (the step's KV cache is left as it was); the model
    is left as it was, and the package's greedy tokens are transformers'. (Qwen2: Llama's
    layers with biases on q, k and v.)"""
    kind = "qwen2"
    model = _hf(kind)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    step = aotpack.llm.step_module(model, MAX_BATCH, MAX_LEN)
    # the KV cache (its position counters the step sets from cache_position at each call)
    cache = [b.clone() for n, b in step.named_buffers() if "cumulative_length" not in n]
    groups = aotpack.llm.projection_groups(step, aotpack.llm._examples(MAX_BATCH, MAX_LEN, 1, "cpu"))
    assert [[n.rpartition(".")[2] for n in g] for g in groups] == [["q_proj", "k_proj", "v_proj"],
                                                                   ["gate_proj", "up_proj"]] * 2
    assert all(map(torch.equal, cache, [b for n, b in step.named_buffers() if "cumulative_length" not in n]))
    pkg = aotpack.llm.compile(model, max_batch=MAX_BATCH, max_len=MAX_LEN, backend="eager", fuse_projections=True)
    stored = pkg.manifest.program.weights
    qkv = [n for n in stored if n.endswith("layers.0.self_attn.q_proj.fused.weight")]
    assert len(qkv) == 1 and list(stored[qkv[0]].shape) == [64 + 2 * 32, 64]  # q (4 heads) + k, v (2 heads each)
    assert not any(n.endswith("k_proj.weight") or n.endswith("up_proj.weight") for n in stored)
    assert any(n.endswith("q_proj.fused.bias") for n in stored)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    fn = aotpack.load(pkg.to_bytes())
    assert aotpack.generate(fn, PROMPTS, NEW).tolist() == _reference(kind, model, PROMPTS).tolist()


def test_fused_projection_members_called_on_other_inputs_compute_their_own_rows():
    """A member called on another input than the one the group's product was computed
    for, or after that input was updated in place, computes its rows afresh: never
    another input's result."""
    a, b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 2)
    fused = aotpack.llm.FusedProjections([a, b])
    first, second = aotpack.llm.ProjectionSlice(fused, 0), aotpack.llm.ProjectionSlice(fused, 1)
    x, y = torch.randn(2, 4), torch.randn(2, 4)
    with torch.no_grad():
        torch.testing.assert_close(first(x), a(x))
        torch.testing.assert_close(second(y), b(y))  # another input
        first(x)
        x.mul_(2)
        torch.testing.assert_close(second(x), b(x))  # the same input, updated since


@pytest.mark.parametrize("outputs,length,split", [(4096, 11264, 4), (4096, 4096, 4), (1024, 4096, 4),
                                                  (22528, 4096, 1), (4096, 1024, 1), (8192, 8192, 2)])
def test_a_matrix_vector_product_is_split_to_fill_the_gpu(outputs, length, split):
    """The split of bench/matvec_fusion.py's ``splitauto``: enough rows for the GPU, no
    chunk under 1,024."""
    from aotpack._torch_compat import split_reduction_factor

    got = split_reduction_factor(outputs, length, target_outputs=16384, min_chunk=1024)
    assert got == split
    assert length // got >= 1024 or got == 1
