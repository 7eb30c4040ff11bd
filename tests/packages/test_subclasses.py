"""Tensor subclass inputs made of tensors (TwoTensor from torch's own tests, a scaled
tensor with a flatten context): packaged as their inner tensors, guarded on their class
and context, rebuilt as outputs, equal to eager. Until 2026-12-04 a CaptureError
("packages compute on plain tensors")."""

import pytest
import torch
import torch.utils._pytree as pytree
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing._internal.two_tensor import TwoTensor

import aotpack
import fuzz_programs
from aotpack import Dim
from conftest import run_fresh


class Scaled(torch.Tensor):
    """``data * scale``, the scale a number in its flatten context (float8 training's
    tensors are of this kind): each op computes on the product, and returns plain tensors."""

    @staticmethod
    def __new__(cls, data, scale):
        return torch.Tensor._make_wrapper_subclass(cls, data.shape, strides=data.stride(),
                                                   storage_offset=data.storage_offset(), dtype=data.dtype,
                                                   device=data.device)

    def __init__(self, data, scale):
        self.data_, self.scale = data, scale

    def __tensor_flatten__(self):
        return ["data_"], {"scale": self.scale}

    @staticmethod
    def __tensor_unflatten__(inner, meta, outer_size, outer_stride):
        return Scaled(inner["data_"], meta["scale"])

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        def plain(t):
            return t.data_ * t.scale if isinstance(t, Scaled) else t

        return func(*pytree.tree_map(plain, args), **pytree.tree_map(plain, kwargs or {}))


class DtypeContext(Scaled):
    """The same, its context holding a dtype: no JSON can store it."""

    def __tensor_flatten__(self):
        return ["data_"], {"dtype": torch.float32}


def pair(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TwoTensor(torch.randn(*shape, generator=g), torch.randn(*shape, generator=g))


def mixed(x, y):
    """A TwoTensor and a plain tensor in; a TwoTensor and a reduction of one out."""
    return (x * 2 + y).sin(), x.sum() + y.sum()


def _equal(got, want) -> bool:
    if isinstance(want, (tuple, list)):
        return len(got) == len(want) and all(_equal(g, w) for g, w in zip(got, want))
    if isinstance(want, TwoTensor):
        return type(got) is TwoTensor and torch.allclose(got.a, want.a, atol=1e-6) and torch.allclose(
            got.b, want.b, atol=1e-6)
    return type(got) is type(want) and torch.allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("backend", ["eager", "inductor"])
def test_a_two_tensor_input_packages_and_its_outputs_come_back_as_two_tensors(backend):
    fn = aotpack.load(aotpack.compile(mixed, (pair(3, 4), torch.randn(3, 4)), backend=backend).to_bytes())
    for seed in range(3):
        x, y = pair(3, 4, seed=seed), torch.randn(3, 4)
        assert _equal(fn(x, y), mixed(x, y))


def test_a_call_is_guarded_on_the_class_its_inner_tensors_and_autograd():
    fn = aotpack.load(aotpack.compile(mixed, (pair(3, 4), torch.randn(3, 4)), backend="eager").to_bytes())
    y = torch.randn(3, 4)
    with pytest.raises(aotpack.GuardError, match=r"args\[0\]: expected a torch.testing._internal.two_tensor."
                                                 r"TwoTensor, got a tensor float32\[3, 4\]"):
        fn(torch.randn(3, 4), y)
    with pytest.raises(aotpack.GuardError, match=r"args\[0\]\['a'\].shape\[1\]: expected 4, got 5"):
        fn(TwoTensor(torch.randn(3, 5), torch.randn(3, 5)), y)
    with pytest.raises(aotpack.GuardError, match=r"args\[0\]\['a'\].dtype: expected torch.float32"):
        fn(TwoTensor(torch.randn(3, 4).double(), torch.randn(3, 4).double()), y)
    # eager would track the wrapper in autograd; the package computes on the inner tensors
    grads = TwoTensor(torch.randn(3, 4), torch.randn(3, 4), requires_grad=True)
    with pytest.raises(aotpack.GuardError, match=r"that does not require grad"):
        fn(grads, y)
    with torch.no_grad():
        assert _equal(fn(grads, y), mixed(grads, y))


def test_an_input_returned_is_the_callers_own_subclass_tensor():
    """``return x``: eager returns the caller's tensor itself; so does a package (until
    2026-12-05 a new TwoTensor of its inner tensors, which under no_grad required no grad
    where the caller's did), through the fast check and the full one."""
    def passes(x, y):
        return x, x * y

    fn = aotpack.load(aotpack.compile(passes, (pair(3, 4), torch.randn(3, 4)), backend="eager").to_bytes())
    x, y = pair(3, 4, seed=1), torch.randn(3, 4)
    assert fn(x, y)[0] is x
    needs_grad = pair(3, 4, seed=2).requires_grad_()
    with torch.no_grad():  # (the full check: a wrapper that requires grad)
        got = fn(needs_grad, y)[0]
    assert got is needs_grad and got.requires_grad
    # a new wrapper of the same class where the output is not the input itself
    assert fn(x, y)[1] is not x and type(fn(x, y)[1]) is TwoTensor


def test_the_generated_fast_check_takes_a_subclass_apart_and_declines_what_the_full_check_refuses():
    """A subclass parameter has a generated fast check (one call for its class, inner
    tensor names, context, size and requires_grad, then the native check of its inner
    tensors with the other inputs; until 2026-12-05 every such call ran the full check).
    It gives the inner tensors of a good call and declines every call the full check
    refuses (a decline runs the full check, which names the property)."""
    fn = aotpack.load(aotpack.compile(mixed, (pair(3, 4), torch.randn(3, 4)), backend="eager").to_bytes())
    fast = fn._single.fast
    x, y = pair(3, 4), torch.randn(3, 4)
    flat = fast((x, y), {})
    assert flat is not None and flat[0] is x.a and flat[1] is x.b and flat[2] is y
    wrong = [
        (torch.randn(3, 4), y),
        (TwoTensor(torch.randn(3, 5), torch.randn(3, 5)), y),
        (TwoTensor(torch.randn(3, 4).double(), torch.randn(3, 4).double()), y),
        (TwoTensor(torch.randn(3, 4), torch.randn(3, 4), requires_grad=True), y),
        (Scaled(torch.randn(3, 4), 3.0), y),
        (x, torch.randn(3, 5)),
    ]
    for args in wrong:
        assert fast(args, {}) is None
        with pytest.raises(aotpack.GuardError):
            fn(*args)
    with torch.no_grad():  # (a wrapper that requires grad passes with grad mode off)
        assert fast(wrong[3], {}) is not None


def test_a_subclass_context_is_compiled_in_and_guarded():
    """Scaled's scale is a number of its flatten context: the graph computes with the
    example's; a call with another is refused naming both (it would be a silently
    different number)."""
    def double(x):
        return x * 2

    fn = aotpack.load(aotpack.compile(double, (Scaled(torch.randn(4), 3.0),), backend="eager").to_bytes())
    x = Scaled(torch.randn(4), 3.0)
    got, want = fn(x), double(x)
    assert type(got) is torch.Tensor and torch.allclose(got, want)  # (Scaled's ops return plain tensors)
    with pytest.raises(aotpack.GuardError, match=r"context \{'scale': 3.0\}, got \['data_'\] and \{'scale': 0.5\}"):
        fn(Scaled(torch.randn(4), 0.5))
    with pytest.raises(aotpack.CaptureError, match=r"x is a .*DtypeContext whose flatten context \(dict\) cannot be "
                                                   r"stored as JSON"):
        aotpack.compile(double, (DtypeContext(torch.randn(4), 3.0),), backend="eager")


def test_an_update_in_place_reaches_the_callers_inner_tensors_and_views_share_them():
    def bump(x):
        x.add_(1)
        return x.view(-1), x * 2

    fn = aotpack.load(aotpack.compile(bump, (pair(3, 4),), backend="eager").to_bytes())
    mine = pair(3, 4, seed=1)
    theirs = TwoTensor(mine.a.clone(), mine.b.clone())
    got, want = fn(mine), bump(theirs)
    assert _equal(got, want)
    assert torch.equal(mine.a, theirs.a) and torch.equal(mine.b, theirs.b)
    assert got[0].a.data_ptr() == mine.a.data_ptr()  # a view of the caller's inner tensor, as eager's


@pytest.fixture(scope="module")
def dynamic_package():
    rows = Dim("rows", min=1, max=64)
    pkg = aotpack.compile(mixed, (pair(3, 4), torch.randn(3, 4)), dynamic={"x": {0: rows}, "y": {0: rows}},
                          backend="eager")
    return aotpack.load(pkg.to_bytes())


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 64), seed=st.integers(0, 2**31 - 1), scale=st.floats(1e-3, 1e3))
def test_subclass_packages_equal_eager_at_any_size_a_dim_allows(dynamic_package, rows, seed, scale):
    x, y = pair(rows, 4, seed=seed), torch.randn(rows, 4) * scale
    assert _equal(dynamic_package(x, y), mixed(x, y))


class Trains(torch.nn.Module):
    """A TwoTensor that requires grad through a frozen Linear, beside a plain input."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 3).requires_grad_(False)

    def forward(self, x, y):
        return self.lin((x * 2 + y).sin()), x.sum() + y.sum()


@pytest.mark.parametrize("backend", ["eager"])
def test_a_two_tensor_that_requires_grad_trains_with_eagers_gradient(backend):
    """A training package takes a TwoTensor that requires grad and gives it eager's
    gradient, a TwoTensor: its inner tensors carry it across the package's boundary, as
    AOT autograd carries it for torch.compile (tree.take_apart; a CaptureError until
    2026-12-05). The runtime's, the same for every backend: AOTInductor compiling a
    subclass's training graphs is ``test_plain_tensors_meeting_a_two_tensor_...[aoti]``
    (the suite's 15-minute budget)."""
    trains, x, y = Trains(), pair(5, 4).requires_grad_(), torch.randn(5, 4)
    fn = aotpack.load(aotpack.compile(trains, (x, y), train=True, backend=backend).to_bytes(), module=trains)
    for seed in range(2):
        mine, theirs = pair(5, 4, seed=seed).requires_grad_(), pair(5, 4, seed=seed).requires_grad_()
        got, want = fn(mine, y), trains(theirs, y)
        assert _equal(got, want)
        assert [o.requires_grad for o in got] == [o.requires_grad for o in want] == [True, True]
        (got[0] * 3).sum().backward()
        (want[0] * 3).sum().backward()
        assert type(mine.grad) is TwoTensor and _equal(mine.grad, theirs.grad)
    with torch.no_grad():  # the forward alone
        assert _equal(fn(mine, y), trains(theirs, y))
    # a plain gradient for a TwoTensor output: the package carries only one of its class
    with pytest.raises(aotpack.AotpackError, match=r"the gradient reaching a .*TwoTensor \(context None\) is a "
                                                   r"torch.Tensor"):
        fn(mine, y)[0].backward(torch.ones(5, 3))


def scales_under_no_grad(x, y):
    with torch.no_grad():
        x.mul_(2)
    return x * y


def scales_and_returns_it(x, y):
    return scales_under_no_grad(x, y), x


def test_a_two_tensor_that_requires_grad_updated_under_no_grad_trains_as_eager():
    """The update lands on the caller's inner tensors, hidden from autograd as eager hides
    it, and the gradient is eager's; returning the updated input beside it is refused,
    naming it (torch's RuntimeError at the call otherwise)."""
    y = torch.randn(3, 4)
    fn = aotpack.load(aotpack.compile(scales_under_no_grad, (pair(3, 4).requires_grad_(), y), train=True,
                                      backend="eager").to_bytes())
    mine, theirs = pair(3, 4, seed=1).requires_grad_(), pair(3, 4, seed=1).requires_grad_()
    fn(mine, y).sum().backward()
    scales_under_no_grad(theirs, y).sum().backward()
    assert _equal(mine, theirs) and _equal(mine.grad, theirs.grad)
    with pytest.raises(aotpack.CaptureError, match=r"updates x\['a'\] in place and returns it"):
        aotpack.compile(scales_and_returns_it, (pair(3, 4).requires_grad_(), y), train=True, backend="eager")


class MeetsAPair(torch.nn.Module):
    """Plain parameters and a plain input meeting a TwoTensor: eager's gradients of all of
    them are TwoTensors (their backward computes through the subclass); ``lin`` also
    meets the plain input, whose plain share adds into the TwoTensor."""

    def __init__(self):
        super().__init__()
        self.lin, self.other = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)

    def forward(self, x, p):
        return self.lin(x) * 2, self.lin(p) + self.other(x).sum(0)


def _grads_equal(got: dict, want: dict) -> bool:
    return got.keys() == want.keys() and all(
        (got[k] is None) == (want[k] is None) and (want[k] is None or _equal(got[k], want[k])) for k in want)


@pytest.mark.parametrize("backend", ["eager", pytest.param("aoti", marks=pytest.mark.slow)])
def test_plain_tensors_meeting_a_two_tensor_get_eagers_two_tensor_gradients(backend):
    """A Linear's weight meeting a TwoTensor input gets a TwoTensor gradient in eager, as
    torch.compile returns it: so does a package, bound to the module and loaded alone
    (its own parameters), and so does a plain input; with Dims at other sizes too. A loss
    whose gradients eager would give another class is refused at the backward. The backward returns the
    gradient's inner tensors, which the runtime rebuilds (meta.train.subclass_grads;
    refused with a CaptureError until 2026-12-05)."""
    model = MeetsAPair()
    rows, pairs = Dim("rows", min=2, max=32), Dim("pairs", min=2, max=32)
    pkg = aotpack.compile(model, (torch.randn(5, 4, requires_grad=True), pair(2, 4)), train=True, backend=backend,
                          dynamic={"x": {0: rows}, "p": {0: pairs}})
    assert pkg.manifest.format_version == aotpack.package.fmt.SUBCLASS_GRAD_FORMAT_VERSION  # older readers refuse
    bound, alone = aotpack.load(pkg.to_bytes(), module=model), aotpack.load(pkg.to_bytes())
    for fn, (n, m) in [(bound, (5, 2)), (alone, (5, 2)), (bound, (9, 3))]:
        twin = MeetsAPair()
        twin.load_state_dict(model.state_dict())
        params = dict(model.named_parameters() if fn is bound else fn.named_parameters())
        for t in params.values():
            t.grad = None
        x, p = torch.randn(n, 4), pair(m, 4, seed=n)
        mine, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
        got, want = fn(mine, p), twin(theirs, p)
        assert _equal(got, want)
        torch.autograd.backward([got[0].sum(), got[1].sum()])
        torch.autograd.backward([want[0].sum(), want[1].sum()])
        assert type(mine.grad) is TwoTensor and _equal(mine.grad, theirs.grad)
        assert _grads_equal({k: t.grad for k, t in params.items()}, {k: t.grad for k, t in twin.named_parameters()})
        assert type(params["lin.weight"].grad) is TwoTensor
    # one loss of both: the plain output gets a TwoTensor gradient, which the package's
    # compiled backward does not take (torch.compile raises a RuntimeError): refused, naming it
    x, p = torch.randn(5, 4, requires_grad=True), pair(2, 4)
    got = bound(x, p)
    with pytest.raises(aotpack.AotpackError, match=r"the gradient reaching the package's output 0 is a torch.testing"
                                                   r"._internal.two_tensor.TwoTensor, where the output is a plain"):
        (got[0].sum() + got[1].sum()).backward()
    # the first output alone in the loss: eager's gradients of lin are then plain (and
    # other's None), where the package computes TwoTensors: refused at the backward, naming it
    with pytest.raises(aotpack.AotpackError, match=r"the loss reaches only outputs whose share of lin.weight's "
                                                   r"gradient is a plain tensor"):
        bound(x, p)[0].sum().backward()
    model.zero_grad()
    twin.zero_grad()
    got, want = bound(x, p), twin(x, p)  # the second output in it, times zero: TwoTensors again
    torch.autograd.backward([got[0].sum(), 0 * got[1].sum()])
    torch.autograd.backward([want[0].sum(), 0 * want[1].sum()])
    assert _grads_equal({k: t.grad for k, t in model.named_parameters()},
                        {k: t.grad for k, t in twin.named_parameters()})


def test_create_graph_gradients_through_a_two_tensor_require_grad_as_eagers():
    """``backward(create_graph=True)`` through a TwoTensor: the weight's gradient (a
    TwoTensor) and the input's require grad where eager's do (a TwoTensor's inner tensors
    carry no history of their own: taken apart plainly, the gradients computed from them
    required none, until 2026-12-05); differentiating them again is refused, as for any
    training package."""
    lin, twin = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    twin.load_state_dict(lin.state_dict())
    fn = aotpack.load(aotpack.compile(lin, (pair(2, 4).requires_grad_(),), train=True, backend="eager").to_bytes(),
                      module=lin)
    mine, theirs = pair(2, 4, seed=3).requires_grad_(), pair(2, 4, seed=3).requires_grad_()
    (fn(mine) ** 2).sum().backward(create_graph=True)
    (twin(theirs) ** 2).sum().backward(create_graph=True)
    for got, want in [(lin.weight.grad, twin.weight.grad), (lin.bias.grad, twin.bias.grad), (mine.grad, theirs.grad)]:
        assert _equal(got, want) and got.requires_grad == want.requires_grad
    assert lin.weight.grad.requires_grad
    with pytest.raises(aotpack.AotpackError, match="double backward through an aotpack training package"):
        lin.weight.grad.sum().backward()


_NN_MODELS = {
    "mlp": (lambda: torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.GELU(),
                                        torch.nn.Linear(16, 4)), (3, 8)),
    "conv": (lambda: torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                         torch.nn.Linear(4 * 6 * 6, 2)), (2, 3, 8, 8)),
    "encoder": (lambda: torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True), (2, 5, 8)),
}


@pytest.mark.parametrize("name", sorted(_NN_MODELS))
def test_torch_nn_models_on_a_two_tensor_train_with_eagers_gradients(name):
    """torch.nn's own layers (LayerNorm, Conv2d, a transformer encoder layer) on a
    TwoTensor input: every parameter's gradient is eager's TwoTensor."""
    make, shape = _NN_MODELS[name]
    torch.manual_seed(0)
    model, x = make(), pair(*shape)
    twin = make()
    twin.load_state_dict(model.state_dict())
    fn = aotpack.load(aotpack.compile(model, (x,), train=True, backend="eager").to_bytes(), module=model)
    got, want = fn(x), twin(x)
    assert _equal(got, want)
    got.sum().backward()
    want.sum().backward()
    for (k, a), b in zip(model.named_parameters(), twin.parameters()):
        assert type(a.grad) is TwoTensor and _equal(a.grad, b.grad), k


def test_a_function_over_a_module_trains_with_a_two_tensor_input():
    """A program that reads a frozen module through a closure, with a TwoTensor input:
    its joint graph is traced from the program itself, which reads the module's weights
    there (torch's raw AttributeError "_Program has no attribute graph_module" at compile
    until 2026-12-05). (A module whose parameters require grad is refused there: eager
    gives them gradients, test_training.py.)"""
    lin = torch.nn.Linear(4, 3).requires_grad_(False)

    def program(x, p):
        return lin(x) * 2, lin(p) * x.sum()

    x, p = torch.randn(5, 4, requires_grad=True), pair(2, 4)
    fn = aotpack.load(aotpack.compile(program, (x, p), train=True, backend="eager").to_bytes())
    mine, theirs = x.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    got, want = fn(mine, p), program(theirs, p)
    assert _equal(got, want)
    torch.autograd.backward([got[0].sum(), got[1].sum()])
    torch.autograd.backward([want[0].sum(), want[1].sum()])
    assert type(mine.grad) is TwoTensor and _equal(mine.grad, theirs.grad)  # x met the pair


def updates_x_meeting_a_pair(x, p):
    with torch.no_grad():
        x.mul_(2)
    return x * p


def test_what_a_package_cannot_rebuild_or_train_is_refused_naming_it():
    def makes_one(x):
        return TwoTensor(x, x * 2)

    with pytest.raises(aotpack.CaptureError, match=r"returns a torch.testing._internal.two_tensor.TwoTensor, a "
                                                   r"tensor subclass that no input of the call and no module weight"):
        aotpack.compile(makes_one, (torch.randn(3),), backend="eager")
    # eager gives x a TwoTensor gradient; a package does not return it for an x it updates
    with pytest.raises(aotpack.CaptureError, match=r"updates x in place, whose eager gradient is a torch.testing."
                                                   r"_internal.two_tensor.TwoTensor"):
        aotpack.compile(updates_x_meeting_a_pair, (torch.randn(3, 4, requires_grad=True), pair(3, 4)), train=True,
                        backend="eager")
    # Scaled's ops return plain tensors, so its gradient is one: no inner tensors to carry it
    with pytest.raises(aotpack.CaptureError, match=r"the gradient reaching a .*Scaled \(context \{'scale': 3.0\}\) "
                                                   r"is a torch.Tensor"):
        aotpack.compile(lambda x: x * 2, (Scaled(torch.randn(4), 3.0).requires_grad_(),), train=True,
                        backend="eager")


@pytest.mark.slow
def test_an_aoti_package_of_a_subclass_runs_in_a_fresh_process_that_imports_the_class(tmp_path):
    """A fresh process that has not imported TwoTensor's module cannot rebuild the
    output: load says which module to import (it never imports one a package names);
    after the import it runs, equal to eager's values saved beside it."""
    x, y = pair(3, 4), torch.randn(3, 4)
    aotpack.compile(mixed, (x, y), backend="aoti").save(tmp_path / "m.aot")
    torch.save({"a": x.a, "b": x.b, "y": y, "out": [(o.a, o.b) for o in mixed(x, y)]}, tmp_path / "io.pt")
    child = ("import sys, importlib, torch, aotpack\n"
             "name = 'torch.testing._internal.two_tensor'\n"
             "assert name not in sys.modules\n"
             "try:\n"
             "    aotpack.load(sys.argv[1] + '/m.aot')\n"
             "except aotpack.AotpackError as e:\n"
             "    assert 'import torch.testing._internal.two_tensor before aotpack.load' in str(e), e\n"
             "TwoTensor = importlib.import_module(name).TwoTensor\n"
             "io = torch.load(sys.argv[1] + '/io.pt')\n"
             "out = aotpack.load(sys.argv[1] + '/m.aot')(TwoTensor(io['a'], io['b']), io['y'])\n"
             "for got, (a, b) in zip(out, io['out']):\n"
             "    assert type(got) is TwoTensor and torch.allclose(got.a, a) and torch.allclose(got.b, b)\n"
             "print('ok')\n")
    assert run_fresh(["-c", child, str(tmp_path)]).stdout.strip().endswith("ok")


# The differential fuzzer's grammar (fuzz_programs.py) run on a TwoTensor: every op the
# grammar has (views, in-place updates of inputs and through their views, indexing, a
# custom Function, torch.func.grad...) dispatched through the subclass, packaged from
# make_fx's trace of it and compared with eager on both inner tensors and on the
# caller's tensors after the call.
_STEPS = st.lists(st.tuples(st.sampled_from(fuzz_programs.OPS), st.integers(0, 20), st.integers(0, 20),
                            st.integers(0, 20)), min_size=1, max_size=5)


def _inner(value):
    if isinstance(value, TwoTensor):
        return [("two", value.a.clone(), value.b.clone())]
    if isinstance(value, (tuple, list)):
        return [p for v in value for p in _inner(v)]
    return [("plain", value.clone())]


@settings(max_examples=20, deadline=None, derandomize=True, database=None)
@given(recipe=_STEPS, outs=st.lists(st.integers(0, 20), max_size=2).map(tuple), seed=st.integers(0, 2**16))
def test_random_programs_on_a_two_tensor_equal_eager_or_are_refused(recipe, outs, seed):
    program = fuzz_programs.make_program(recipe, outs)
    x, y = pair(4, 6, seed=seed), torch.randn(4, 6, generator=torch.Generator().manual_seed(seed))

    def fresh():
        return TwoTensor(x.a.clone(), x.b.clone()), y.clone()

    with torch.no_grad():
        try:
            mine = fresh()
            want = _inner(program(*mine))
        except Exception:  # noqa: BLE001 - eager's own refusal of the program: nothing to compare
            return
        try:
            fn = aotpack.load(aotpack.compile(program, fresh(), backend="eager").to_bytes())
        except aotpack.AotpackError:
            return  # a clear refusal is allowed; a silent difference is not
        theirs = fresh()
        try:
            got = _inner(fn(*theirs))
        except aotpack.GuardError:
            return
    what = f"recipe={recipe} outputs={outs}"
    assert [g[0] for g in got] == [w[0] for w in want], what
    for g, w in zip(got, want):
        for a, b in zip(g[1:], w[1:]):
            torch.testing.assert_close(a, b, equal_nan=True, msg=what)
    for a, b in ((theirs[0].a, mine[0].a), (theirs[0].b, mine[0].b), (theirs[1], mine[1])):
        torch.testing.assert_close(a, b, equal_nan=True, msg=what)  # in-place effects on the caller's tensors


def _backward(outs) -> None:
    """One backward of every output that requires grad, each weighted (k + 1), through
    the subclass: a TwoTensor output's sum is a TwoTensor, its gradient one too. Each
    output's term has its own gradient (one sum of a plain and a TwoTensor term would send
    a TwoTensor gradient into the plain output, which a package refuses)."""
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)
    diff = [o for o in outs if isinstance(o, torch.Tensor) and o.requires_grad]
    if diff:
        torch.autograd.backward([(k + 1) * o.sum() for k, o in enumerate(diff)])


def _same_grad(got, want, what: str) -> None:
    assert (got is None) == (want is None), what
    if want is not None:
        assert type(got) is type(want), what
        pairs = [(got.a, want.a), (got.b, want.b)] if isinstance(want, TwoTensor) else [(got, want)]
        for a, b in pairs:
            torch.testing.assert_close(a, b, equal_nan=True, msg=f"{what}: gradient")


@settings(max_examples=20, deadline=None, derandomize=True, database=None)
@given(recipe=_STEPS, outs=st.lists(st.integers(0, 20), max_size=2).map(tuple), seed=st.integers(0, 2**16),
       plain_grad=st.booleans())
def test_random_programs_on_a_two_tensor_that_requires_grad_train_as_eager_or_are_refused(recipe, outs, seed,
                                                                                           plain_grad):
    """The grammar in a training package whose TwoTensor input requires grad, beside a
    plain input that requires grad too (``plain_grad``): outputs, which require grad, the
    inputs' gradients (the TwoTensor's a TwoTensor, as eager's: its inner tensors carry
    it, tree.take_apart; the plain input's a TwoTensor where it meets the pair, rebuilt
    from its inner tensors, meta.train.subclass_grads) and in-place effects equal eager's
    (refused until 2026-12-05)."""
    program = fuzz_programs.make_program(recipe, outs)
    x, y = pair(4, 6, seed=seed), torch.randn(4, 6, generator=torch.Generator().manual_seed(seed))

    def fresh():
        return TwoTensor(x.a.clone(), x.b.clone()).requires_grad_(), y.clone().requires_grad_(plain_grad)

    try:
        mine = fresh()
        result = program(*mine)
        want = _inner(result)
        want_requires_grad = [o.requires_grad for o in (result if isinstance(result, tuple) else (result,))]
        _backward(result)
    except Exception:  # noqa: BLE001 - eager's own refusal of the program: nothing to compare
        return
    try:
        fn = aotpack.load(aotpack.compile(program, fresh(), train=True, backend="eager").to_bytes())
    except aotpack.AotpackError:
        return  # a clear refusal is allowed; a silent difference is not
    theirs = fresh()
    try:
        got_result = fn(*theirs)
    except aotpack.GuardError:
        return
    got = _inner(got_result)
    what = f"recipe={recipe} outputs={outs}"
    assert [g[0] for g in got] == [w[0] for w in want], what
    for g, w in zip(got, want):
        for a, b in zip(g[1:], w[1:]):
            torch.testing.assert_close(a, b, equal_nan=True, msg=what)
    got_outs = got_result if isinstance(got_result, tuple) else (got_result,)
    assert [o.requires_grad for o in got_outs] == want_requires_grad, what
    _backward(got_result)
    _same_grad(theirs[0].grad, mine[0].grad, what)
    _same_grad(theirs[1].grad, mine[1].grad, what)
    for a, b in ((theirs[0].a, mine[0].a), (theirs[0].b, mine[0].b), (theirs[1], mine[1])):
        torch.testing.assert_close(a, b, equal_nan=True, msg=what)  # in-place effects on the caller's tensors


class _OnTwoTensorWeight(torch.nn.Module):
    """A drawn program whose first argument is a frozen TwoTensor weight (torch.export keeps
    its ops opaque, so capture traces below them: build/subclass_weights.py); its
    TwoTensor results come back plain (a package rebuilds no class its inputs lack)."""

    def __init__(self, program, w: TwoTensor):
        super().__init__()
        self.program = program
        self.w = torch.nn.Parameter(w, requires_grad=False)

    def forward(self, y):
        out = self.program(self.w, y)
        return tuple(o.a + 2 * o.b if isinstance(o, TwoTensor) else o for o in (out if isinstance(out, tuple) else (out,)))


@settings(max_examples=20, deadline=None, derandomize=True, database=None)
@given(recipe=_STEPS, outs=st.lists(st.integers(0, 20), max_size=2).map(tuple), seed=st.integers(0, 2**16))
def test_random_programs_on_a_two_tensor_weight_equal_eager_or_are_refused(recipe, outs, seed):
    """The same grammar with the TwoTensor as a module's weight, the package bound to the
    module: outputs and the weight's inner tensors after the call (in-place updates of
    the weight reach its inner tensors) equal eager's."""
    program = fuzz_programs.make_program(recipe, outs)
    x, y = pair(4, 6, seed=seed), torch.randn(4, 6, generator=torch.Generator().manual_seed(seed))

    def fresh():
        return _OnTwoTensorWeight(program, TwoTensor(x.a.clone(), x.b.clone())), y.clone()

    with torch.no_grad():
        try:
            mine, my_y = fresh()
            want = [o.clone() for o in mine(my_y)]
        except Exception:  # noqa: BLE001 - eager's own refusal of the program: nothing to compare
            return
        try:
            module, example = fresh()
            path = aotpack.compile(module, (example,), backend="eager").to_bytes()
        except aotpack.AotpackError:
            return  # a clear refusal is allowed; a silent difference is not
        theirs, their_y = fresh()
        fn = aotpack.load(path, module=theirs)
        try:
            got = fn(their_y)
        except aotpack.GuardError:
            return
    what = f"recipe={recipe} outputs={outs}"
    assert len(got) == len(want), what
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, equal_nan=True, msg=what)
    for a, b in ((theirs.w.a, mine.w.a), (theirs.w.b, mine.w.b), (their_y, my_y)):
        torch.testing.assert_close(a, b, equal_nan=True, msg=what)  # in-place effects


def test_an_update_under_no_grad_of_a_leaf_beside_a_two_tensor_runs_as_eager():
    """A program with a TwoTensor input is traced by make_fx, whose graph has no grad-mode
    regions: an update under ``torch.no_grad()`` of a plain input that requires grad ran
    with grad mode on in its replay, where autograd refuses it (a CaptureError that said
    "eager PyTorch refuses it too", which eager does not, until 2026-12-05)."""
    x, p = torch.randn(3, 4, requires_grad=True), pair(3, 4)
    fn = aotpack.load(aotpack.compile(updates_x_meeting_a_pair, (x, p), backend="eager").to_bytes())
    mine, theirs = x.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    with torch.no_grad():
        assert _equal(fn(mine, p), updates_x_meeting_a_pair(theirs, p))
    assert torch.equal(mine, theirs)  # the caller's x updated, as eager's
