"""Real models: transformers models package with the call their documentation shows.

GPT-2, BERT, Llama, Qwen2, T5, ViT and Whisper, each from a small config with random
weights (tests/zoo.py), compiled once for the module, loaded in a fresh process: the
output is the same ModelOutput class with the same fields and values as eager. GPT-2 and
Whisper with AOTInductor, the others with inductor (the output types are the runtime's,
the same for every backend; AOTInductor's C++ wrapper costs ~5 s a model on 2 cores,
and the suite has a 15-minute budget; Llama is compiled with AOTInductor below, with
Dims, and on CUDA every model is). Dynamic batch and sequence length (Dim) on an encoder
(BERT) and a decoder (Llama): one package serves lengths 1..512.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import pathlib
import warnings

import pytest
import torch

import aotpack
from conftest import run_fresh

transformers = pytest.importorskip("transformers", reason="transformers is in the test extras: make test installs it")
import zoo  # noqa: E402

TESTS = pathlib.Path(__file__).parent.parent


@pytest.fixture(scope="module")
def zoo_packages(tmp_path_factory):
    out = tmp_path_factory.mktemp("zoo")
    paths = {}
    for name in zoo.MODELS:
        model, kwargs = zoo.build(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # (one AOTInductor, two inductor; the rest eager: the output types this tests are the
            # same for every backend, and inductor and AOTInductor took 40 s of the suite on bert,
            # t5, vit and whisper)
            backend = {"gpt2": "aoti", "llama": "inductor", "qwen2": "inductor"}.get(name, "eager")
            paths[name] = str(aotpack.compile(model, (), kwargs, backend=backend).save(out / f"{name}.aot"))
    return paths


CHILD = r"""
import json, sys, torch
sys.path.insert(0, sys.argv[1])
import aotpack, zoo
report = {}
for name, path in json.loads(sys.argv[2]).items():
    model, kwargs = zoo.build(name)
    out = aotpack.load(path, allow_modules=["transformers"])(**kwargs)
    ref = model(**kwargs)
    report[name] = {"type": f"{type(out).__module__}.{type(out).__qualname__}",
                    "want_type": f"{type(ref).__module__}.{type(ref).__qualname__}",
                    "fields": list(out.keys()), "want_fields": list(ref.keys()),
                    "error": max((out[k] - ref[k]).abs().max().item() for k in ref.keys())}
print(json.dumps(report))
"""


@pytest.mark.slow
def test_zoo_models_load_in_a_fresh_process_with_their_output_types(zoo_packages):
    proc = run_fresh(["-c", CHILD, str(TESTS), json.dumps(zoo_packages)])
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(report) == sorted(zoo.MODELS)
    for name, r in report.items():
        assert r["type"] == r["want_type"], name
        assert r["fields"] == r["want_fields"], name
        assert r["error"] < 1e-4, (name, r["error"])


CUDA_CHILD = r"""
import json, sys, torch
sys.path.insert(0, sys.argv[1])
import aotpack, zoo
dtype = getattr(torch, sys.argv[3])
report = {}
for name, path in json.loads(sys.argv[2]).items():
    model, kwargs = zoo.build(name, "cuda", dtype)
    with torch.no_grad():
        out = aotpack.load(path, allow_modules=["transformers"])(**kwargs)
        ref = model(**kwargs)
    report[name] = {"type": type(out) is type(ref), "fields": list(out.keys()) == list(ref.keys()),
                    "dtype": str(out[0].dtype), "device": str(out[0].device),
                    "error": max((out[k].float() - ref[k].float()).abs().max().item() for k in ref.keys()),
                    "scale": max(ref[k].float().abs().max().item() for k in ref.keys())}
print(json.dumps(report))
"""


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_zoo_on_cuda_in_a_fresh_process(tmp_path, dtype):
    """Every zoo model compiled with AOTInductor on CUDA in fp32 and bf16, loaded in a
    fresh process: eager's output type and fields, values within the dtype's rounding."""
    paths = {}
    for name in zoo.MODELS:
        model, kwargs = zoo.build(name, "cuda", getattr(torch, dtype))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            paths[name] = str(aotpack.compile(model, (), kwargs, backend="aoti").save(tmp_path / f"{name}.aot"))
    proc = run_fresh(["-c", CUDA_CHILD, str(TESTS), json.dumps(paths), dtype])
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(report))
    tolerance = 1e-4 if dtype == "float32" else 3e-2  # bf16: a few units in its last place (8 bits)
    for name, r in report.items():
        assert r["type"] and r["fields"], name
        assert r["dtype"] == f"torch.{dtype}" and r["device"].startswith("cuda"), (name, r)
        assert r["error"] <= tolerance * max(1.0, r["scale"]), (name, r)


@pytest.mark.slow
def test_zoo_inputs_are_not_layout_pinned(zoo_packages):
    """transformers' code reads no input's strides and returns no reshape of one: every
    input still takes a call in another layout (copied into the compiled one)."""
    for name, path in zoo_packages.items():
        pinned = [i.layout_pinned for v in aotpack.inspect(path).manifest.variants for i in v.inputs]
        assert not any(pinned), (name, pinned)


@pytest.mark.slow
def test_inspect_names_the_output_type(zoo_packages):
    text = str(aotpack.inspect(zoo_packages["llama"]))
    assert "types     transformers.modeling_outputs.CausalLMOutputWithPast" in text


def test_unresolvable_output_type_is_a_clear_error_at_load(tmp_path):
    """A fresh process that has not imported transformers (and does not allow it) gets
    one error naming the type and the way out; it never imports the module by itself."""
    model, kwargs = zoo.build("bert")
    path = aotpack.compile(model, (), kwargs, backend="eager").save(tmp_path / "bert.aot")
    code = ("import sys, torch, aotpack\n"
            "try:\n    aotpack.load(sys.argv[1])\nexcept aotpack.AotpackError as e:\n    print(e)\n"
            "out = aotpack.load(sys.argv[1], plain_types=True)(torch.randint(0, 100, (1, 8)))\n"
            "print(type(out).__name__, sorted(out))\n"
            "print('transformers' in sys.modules)\n")
    lines = run_fresh(["-c", code, str(path)]).stdout.strip().splitlines()
    assert "BaseModelOutputWithPoolingAndCrossAttentions, which this process cannot rebuild" in lines[0]
    assert "allow_modules=['transformers.modeling_outputs']" in "\n".join(lines)
    assert lines[-2] == "dict ['last_hidden_state', 'pooler_output']"  # asked for: plain dicts
    assert lines[-1] == "False"


def test_use_cache_default_names_the_way_out():
    model, kwargs = zoo.build("llama")
    with pytest.raises(aotpack.CaptureError, match="DynamicCache") as info:
        aotpack.compile(model, (), {"input_ids": kwargs["input_ids"]}, backend="eager")
    assert "use_cache=False" in info.value.hint


def test_binding_as_torch_export_does(tmp_path):
    """BERT's forward is wrapped by decorators that add keyword arguments: aotpack calls it
    with the arguments the example passed, as torch.export does."""
    model, kwargs = zoo.build("bert")
    fn = aotpack.load(aotpack.compile(model, (), kwargs, backend="eager").save(tmp_path / "b.aot"))
    out = fn(kwargs["input_ids"])  # positionally, too
    torch.testing.assert_close(out.last_hidden_state, model(**kwargs).last_hidden_state)
    with pytest.raises(aotpack.GuardError, match=r"kwargs: expected a dict with keys \[\], got keys \['output_hidden_states'\]"):
        fn(**kwargs, output_hidden_states=True)


def test_a_bound_models_config_is_followed_or_refused(tmp_path):
    """A transformers model reads its config at every eager call (``output_hidden_states``
    by a computed name, ``rms_norm_eps`` at build): a package bound to it refuses a changed
    config, naming the field, where it returned the compiled answer silently before."""
    model, kwargs = zoo.build("llama")
    fn = aotpack.load(aotpack.compile(model, (), kwargs, backend="eager").save(tmp_path / "l.aot"), module=model)
    torch.testing.assert_close(fn(**kwargs).logits, model(**kwargs).logits)
    model.config.output_hidden_states = True  # eager now returns the hidden states too
    with pytest.raises(aotpack.GuardError, match=r"module.config.output_hidden_states: expected False .* got True"):
        fn(**kwargs)
    model.config.output_hidden_states = False
    torch.testing.assert_close(fn(**kwargs).logits, model(**kwargs).logits)


class FrozenEncoder(torch.nn.Module):
    """A transformers encoder used as a frozen feature extractor: its parameters keep
    requires_grad (as a model built or loaded has them), its forward runs under no_grad."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder.eval()

    def forward(self, input_ids):
        with torch.no_grad():
            return self.encoder(input_ids=input_ids).last_hidden_state.mean(1)


def test_a_frozen_transformers_encoder_runs_bound_under_grad_mode(tmp_path):
    """Capture reads from its trace's autograd graph that no output reaches BERT's
    parameters (Variant.detached_weights): bound to the module, the package runs under
    grad mode with them requiring grad, as eager does (a GuardError until 2026-12-05).
    BERT itself, whose output does reach them, is still refused under grad mode."""
    bert, kwargs = zoo.build("bert")
    bert.requires_grad_(True)  # (zoo builds its models frozen)
    model = FrozenEncoder(bert)
    ids = kwargs["input_ids"]
    fn = aotpack.load(aotpack.compile(model, (ids,), backend="eager").save(tmp_path / "f.aot"), module=model)
    assert len(fn.manifest.variants[0].detached_weights) == len(list(model.parameters()))
    got, want = fn(ids), model(ids)
    assert not got.requires_grad and not want.requires_grad
    torch.testing.assert_close(got, want)
    plain = aotpack.load(aotpack.compile(bert, (), kwargs, backend="eager").save(tmp_path / "b.aot"), module=bert)
    with pytest.raises(aotpack.GuardError, match=r"module parameter '.*'\.requires_grad: expected False"):
        plain(**kwargs)


@pytest.mark.parametrize("name", ["llama", "qwen2"])
def test_eager_backend_stores_higher_order_ops(tmp_path, name):
    """Llama's rotary embedding runs in an autocast-disabled region: a higher-order op
    with a nested graph, which the eager backend now stores like the rest."""
    model, kwargs = zoo.build(name)
    pkg = aotpack.compile(model, (), dict(kwargs, return_dict=False), backend="eager")
    assert pkg.manifest.variants[0].meta.extra.get("modules")
    out = aotpack.load(pkg.save(tmp_path / "m.aot"))(**kwargs, return_dict=False)
    torch.testing.assert_close(out[0], model(**kwargs, return_dict=False)[0])


@pytest.mark.parametrize("name,backend", [("bert", "eager"), pytest.param("llama", "aoti", marks=pytest.mark.slow)])
def test_dynamic_batch_and_sequence_length(tmp_path, name, backend):
    model, kwargs = zoo.build(name)
    kwargs = dict(kwargs, input_ids=torch.randint(0, 100, (2, 16)))
    dims = {"input_ids": {0: aotpack.Dim("batch", min=1, max=8), 1: aotpack.Dim("seq", min=1, max=512)}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fn = aotpack.load(aotpack.compile(model, (), kwargs, backend=backend, dynamic=dims).save(tmp_path / "d.aot"))
    key = "logits" if name == "llama" else "last_hidden_state"
    for batch, length in [(1, 1), (3, 7), (2, 512), (8, 100)]:
        call = dict(kwargs, input_ids=torch.randint(0, 100, (batch, length)))
        torch.testing.assert_close(fn(**call)[key], model(**call)[key], rtol=1e-4, atol=1e-4)
    with pytest.raises(aotpack.GuardError, match=r"kwargs\['input_ids'\]\.shape\[1\]: expected seq in 1\.\.512, got 513"):
        fn(**dict(kwargs, input_ids=torch.randint(0, 100, (1, 513))))


def test_a_llama_compiled_from_one_token_of_one_sequence_runs_every_batch_and_length(tmp_path):
    """A decode step's shape as the example (batch 1, length 1): transformers' Llama
    depends on those sizes being 1 (``q_len > 1`` into attention, ``batch == 1`` in its
    masks), so torch.export compiles them in; the package adds a variant compiled from
    the example repeated to 2 along both Dims, as torch.compile compiles a second graph.
    Until 2026-12-08 it ran batch 1 and length 1 alone, with a SpecializationWarning, and
    every other size was a GuardError."""
    model, kwargs = zoo.build("llama", layers=1)
    kwargs = dict(kwargs, input_ids=kwargs["input_ids"][:, :1])
    dims = {"input_ids": {0: aotpack.Dim("batch", min=1, max=8), 1: aotpack.Dim("seq", min=1, max=64)}}
    with warnings.catch_warnings():
        warnings.simplefilter("error", aotpack.SpecializationWarning)
        pkg = aotpack.compile(model, (), kwargs, backend="eager", dynamic=dims)
    assert pkg.variants == ["default", "default.from-2"]
    fn = aotpack.load(pkg.save(tmp_path / "d.aot"))
    for batch, length in [(1, 1), (2, 1), (1, 9), (3, 7), (8, 64)]:
        call = dict(kwargs, input_ids=torch.randint(0, 100, (batch, length)))
        torch.testing.assert_close(fn(**call).logits, model(**call).logits)


Pair = collections.namedtuple("Pair", ["low", "high"])


@dataclasses.dataclass
class Stats:
    mean: torch.Tensor
    spread: torch.Tensor


torch.export.register_dataclass(Stats, serialized_type_name="test_zoo.Stats")


def structured(x):
    return x.max(0), Pair(x.min(), x.max()), Stats(x.mean(0), x.std(0))


def test_namedtuples_structseqs_and_dataclasses_round_trip(tmp_path):
    pkg = aotpack.compile(structured, (torch.randn(3, 4),), backend="eager")
    fn = aotpack.load(pkg.save(tmp_path / "p.aot"))
    x = torch.randn(3, 4)
    got, want = fn(x), structured(x)
    assert [type(v) for v in got] == [torch.return_types.max, Pair, Stats]
    torch.testing.assert_close(got[0].indices, want[0].indices)
    torch.testing.assert_close(got[1].high, want[1].high)
    torch.testing.assert_close(got[2].spread, want[2].spread)
    assert "test_zoo.Pair" in str(aotpack.inspect(tmp_path / "p.aot"))


def test_structseq_fields_name_the_path_in_order():
    from aotpack import tree

    spec, _ = tree.flatten(torch.randn(3, 2).max(0))
    assert spec.fields == ("values", "indices")


class Branchy(torch.nn.Module):
    def forward(self, x):
        return torch.cond(x.sum() > 0, lambda t: t.sin(), lambda t: t.cos(), (x,))


def test_eager_backend_stores_torch_cond(tmp_path):
    fn = aotpack.load(aotpack.compile(Branchy(), (torch.randn(4),), backend="eager").save(tmp_path / "c.aot"))
    for x in (torch.ones(4), -torch.ones(4)):
        torch.testing.assert_close(fn(x), Branchy()(x))
