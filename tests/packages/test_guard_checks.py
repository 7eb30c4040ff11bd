"""The guards' one list of checks: the generated fast check accepts only calls the full
check accepts (and then hands over the very same tensors), across layouts, grad modes,
requires_grad, stored-value bits, dtypes, shapes and global state; its source is in
linecache, as torch.fx does for generated code."""

import contextlib
import linecache

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aotpack.load.guards import Guard, Mismatch
from aotpack.package.manifest import Dim, GlobalState, Input, Param
from aotpack.treespec import TensorLeaf, TupleSpec

LAYOUTS = ["contiguous", {"order": [0, 2, 3, 1]}, {"stride": [1, 2, 8, 32]}]


def make_guard(layout, dynamic: bool, train: bool, want_grad: bool, raw_memory: bool, autocast, grad_mode):
    shape = ["batch", 2, 4, 4] if dynamic else [2, 2, 4, 4]
    inputs = [Input(dtype="float32", device="cpu", shape=shape, layout=layout, requires_grad=want_grad),
              Input(dtype="float32", device="cpu", shape=[shape[0], 4], requires_grad=False)]
    spec = TupleSpec([TensorLeaf(0), TensorLeaf(1)])
    params = [Param(name="x", kind="positional_or_keyword"), Param(name="y", kind="positional_or_keyword")]
    state = GlobalState(autocast=autocast, grad_mode=grad_mode)
    return Guard(params, spec, inputs, {"batch": Dim(min=1, max=8)}, train=train, raw_memory=raw_memory,
                 state=state, device="cpu")


def make_tensor(kind: str, batch: int, dtype, neg: bool, requires_grad: bool):
    base = torch.randn(batch, 2, 4, 4, dtype=dtype)
    t = {"contiguous": base,
         "channels_last": base.contiguous(memory_format=torch.channels_last),
         "transposed": base.transpose(2, 3),
         "sliced": torch.randn(batch, 2, 4, 8, dtype=dtype)[..., ::2],
         "strided": torch.randn(4, 4, 2, batch, dtype=dtype).permute(3, 2, 1, 0)}[kind]
    if neg:
        t = torch._neg_view(t)
    return t.requires_grad_(requires_grad) if dtype.is_floating_point else t


@settings(max_examples=300, deadline=None)
@given(layout=st.sampled_from(range(len(LAYOUTS))), dynamic=st.booleans(), train=st.booleans(),
       want_grad=st.booleans(), raw_memory=st.booleans(), compiled_amp=st.booleans(),
       compiled_grad=st.sampled_from([None, False, True]),
       kind=st.sampled_from(["contiguous", "channels_last", "transposed", "sliced", "strided"]),
       batch=st.sampled_from([1, 2, 9]), y_batch=st.sampled_from([1, 2]), dtype=st.sampled_from([torch.float32,
                                                                                                 torch.float64]),
       neg=st.booleans(), requires_grad=st.booleans(), grad=st.booleans(), amp=st.booleans(),
       f64_default=st.booleans(), as_kwargs=st.booleans(), inference=st.sampled_from(["off", "mode", "tensors"]))
def test_fast_check_accepts_only_what_the_full_check_accepts(layout, dynamic, train, want_grad, raw_memory,
                                                              compiled_amp, compiled_grad, kind, batch, y_batch,
                                                              dtype, neg, requires_grad, grad, amp, f64_default,
                                                              as_kwargs, inference):
    g = make_guard(LAYOUTS[layout], dynamic, train, want_grad, raw_memory, "bfloat16" if compiled_amp else None,
                   compiled_grad)
    assert g.fast is not None
    # called in inference mode on tensors made outside it ("mode") or in it ("tensors"):
    # other dispatch keys, which the native part of the fast check compares
    requires_grad = requires_grad and inference == "off"
    # (torch.inference_mode(False) is no plain "off": it turns grad mode on, which made the
    # ``grad`` drawn here a lie for every call outside inference mode; found 2026-12-06)
    with torch.inference_mode() if inference == "tensors" else contextlib.nullcontext():
        x = make_tensor(kind, batch, dtype, neg, requires_grad)
        y = torch.randn(y_batch, 4)
    args, kwargs = ((x,), {"y": y}) if as_kwargs else ((x, y), {})
    before = torch.get_default_dtype()
    try:
        if f64_default:
            torch.set_default_dtype(torch.float64)
        with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp), \
                torch.inference_mode() if inference != "off" else contextlib.nullcontext():
            fast = g.fast(args, kwargs)
            try:
                full = g.check(args, kwargs)
            except Mismatch:
                full = None
    finally:
        torch.set_default_dtype(before)
    if fast is not None:
        assert full is not None, "the fast check accepted a call the full check refuses"
        assert all(a is b for a, b in zip(fast, full)), "the full check would have passed other tensors"
    if (kind, dtype, neg, as_kwargs, amp, f64_default) == ("contiguous", torch.float32, False, False, compiled_amp,
                                                          False) and layout == 0 and batch == y_batch and (
            dynamic or batch == 2) and compiled_grad in (None, grad and inference == "off") and \
            requires_grad == (train and want_grad):  # (inference mode turns grad mode off, whatever ``grad``)
        assert fast is not None, "the common call should take the fast path"


@pytest.mark.parametrize("inference", ["off", "mode", "tensors"])
@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("compiled_amp", [False, True])
def test_the_common_call_takes_the_fast_path(inference, dynamic, compiled_amp):
    """Also in inference mode, on tensors made outside it or in it, and under the
    autocast compiled for: the native part of the fast check compares dispatch keys,
    which those change."""
    g = make_guard("contiguous", dynamic, False, False, True, "bfloat16" if compiled_amp else None, None)
    with torch.inference_mode(inference == "tensors"):
        x, y = torch.randn(2, 2, 4, 4), torch.randn(2, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=compiled_amp), torch.inference_mode(inference != "off"):
        flat = g.fast((x, y), {})
    assert flat is not None and flat[0] is x and flat[1] is y


def test_without_a_native_check_every_property_is_checked_in_python(monkeypatch):
    """A torch without dynamo's TensorGuards (``compat.tensor_properties_check`` gives
    None): the generated check reads every property from Python, Dims bound in the
    order of the inputs, and still accepts only what the full check accepts."""
    import aotpack._torch_compat as compat

    monkeypatch.setattr(compat, "tensor_properties_check", lambda *a, **k: None)
    g = make_guard("contiguous", True, False, False, True, None, None)
    assert "NATIVE" not in g.fast.source and "is_contiguous" in g.fast.source
    x, y = torch.randn(3, 2, 4, 4), torch.randn(3, 4)
    flat = g.fast((x, y), {})
    assert flat is not None and flat[0] is x and flat[1] is y
    for bad in [(x.double(), y), (x, torch.randn(2, 4)), (x.transpose(2, 3), y)]:
        assert g.fast(bad, {}) is None


def test_generated_source_is_in_linecache():
    g = make_guard("contiguous", True, False, False, True, None, None)
    filename = g.fast.__code__.co_filename
    assert filename.startswith("<aotpack guard")
    assert linecache.getline(filename, 1).startswith("def fast(args, kwargs):")
    assert "NATIVE0(" in "".join(linecache.getlines(filename))  # the tensors' properties: one native check


def test_every_check_is_listed_once_with_its_kind():
    g = make_guard(LAYOUTS[0], True, True, True, True, "bfloat16", True)
    kinds = [e.kind for e in g.entries("v")]
    assert kinds.count("dtype") == 2 and kinds.count("layout") == 2 and kinds.count("requires_grad") == 2
    assert {e.path for e in g.entries("v") if e.kind == "global_state"} == {
        "autocast(cpu)", "torch.get_default_dtype()", "torch.is_grad_enabled()", "torch function mode",
        "torch dispatch mode"}
