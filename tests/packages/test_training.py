"""Training packages: forward + backward compiled ahead of time, used by autograd."""

from __future__ import annotations

import copy
import functools
import json
import os
import warnings

import pytest
import torch

import aotpack
import train_models
from aotpack import SpecializationWarning, autograd
from conftest import TORCH_BEFORE_2_13, run_fresh
from programs import StraightThrough

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The MLP (with BatchNorm), transformer block and LSTM compiled with aoti, trained
    for six SGD (momentum) steps beside eager in a fresh process."""
    root = tmp_path_factory.mktemp("train")
    index = {}
    for name in train_models.NAMES:
        pkg = aotpack.compile(train_models.build(name), (train_models.batch(name, 0),), train=True, backend="aoti")
        index[name] = pkg.save(root / f"{name}.aot")
    json.dump(index, open(root / "index.json", "w"))
    run_fresh([os.path.join(HERE, "train_check.py"), str(root / "index.json"), str(root / "out.json")])
    return json.load(open(root / "out.json"))


@pytest.mark.slow
@pytest.mark.parametrize("name", train_models.NAMES)
def test_training_matches_eager_in_a_fresh_process(trained, name):
    r = trained[name]
    assert r["grad_err"] < 1e-4, r
    assert r["buffer_err"] < 1e-4, r
    torch.testing.assert_close(torch.tensor(r["mine"]), torch.tensor(r["ref"]), rtol=1e-4, atol=1e-5)
    assert max(r["ref"]) - min(r["ref"]) > 1e-3  # the steps changed the model
    assert r["load_first_fwd_bwd_s"] < 5


@pytest.mark.slow
@pytest.mark.parametrize("name", train_models.NAMES)
def test_a_package_loaded_without_its_model_trains_its_own_parameters(trained, name):
    """No model code in the process: an optimizer over the package's own parameters
    gives eager's loss curve, and its state_dict loads into the model's class."""
    r = trained[name]
    assert r["alone_parameters"] == r["parameters"]
    torch.testing.assert_close(torch.tensor(r["alone_pkg"]), torch.tensor(r["alone_ref"]), rtol=1e-4, atol=1e-5)
    assert r["alone_state_err"] < 1e-4, r


# -- eager semantics (eager backend: compiles in milliseconds) ------------------------------
def compile_load(target, args, tmp_path, **kw):
    pkg = aotpack.compile(target, args, train=True, backend=kw.pop("backend", "eager"), **kw)
    return aotpack.load(pkg.save(tmp_path / f"t{len(os.listdir(tmp_path))}.aot"),
                        module=target if isinstance(target, torch.nn.Module) else None)


def test_input_grads_and_mixed_requires_grad(tmp_path):
    def f(x, y, w):
        return (x * y).sin() @ w

    x, y, w = torch.randn(3, 4, requires_grad=True), torch.randn(3, 4), torch.randn(4, 2, requires_grad=True)
    fn = compile_load(f, (x, y, w), tmp_path)
    x2, y2, w2 = (t.detach().clone().requires_grad_(t.requires_grad) for t in (x, y, w))
    fn(x, y, w).square().sum().backward()
    f(x2, y2, w2).square().sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(w.grad, w2.grad)
    assert y.grad is None
    with pytest.raises(aotpack.GuardError, match="requires_grad"):
        fn(x.detach(), y, w)  # compiled for an x that requires grad


def test_examples_that_hold_a_grad_compile_with_dims():
    """A package compiled after a training step: an example input that holds a ``.grad``
    (torch.export guards the grad's size, and its decompositions then failed on fakes
    without one: torch's raw AttributeError "'NoneType' object has no attribute 'size'"
    with Dims until 2026-12-05). The grad is left as it was."""
    lin = torch.nn.Linear(4, 3)
    x = torch.randn(5, 4, requires_grad=True)
    lin(x).sum().backward()
    held = x.grad
    pkg = aotpack.compile(lin, (x,), train=True, backend="eager", dynamic={"input": {0: aotpack.Dim("rows", max=64)}})
    assert x.grad is held
    fn, x2 = aotpack.load(pkg.to_bytes()), torch.randn(9, 4, requires_grad=True)
    fn(x2).sum().backward()
    torch.testing.assert_close(x2.grad, lin.weight.sum(0).expand(9, 4))


OUTSIDE_W = torch.randn(4, 3, requires_grad=True)
OUTSIDE_LIN = torch.nn.Linear(4, 3)


def reads_a_global_that_requires_grad(x):
    return x @ OUTSIDE_W


def reads_a_module_global(x):
    return OUTSIDE_LIN(x) * 2


HELPER_LIN = torch.nn.Linear(4, 3)


def _helper(x):
    return HELPER_LIN(x) * 2


def _apply(model, x):
    return model(x) * 3


def calls_a_helper(x):
    """Reaches HELPER_LIN only through the helper's globals (known after the trace)."""
    return _helper(x).relu()


class _ReadsAGlobal(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x):
        return reads_a_global_that_requires_grad(self.lin(x))


class _Calls:
    """A callable object that is no module, holding one."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x):
        return self.model(x)


def test_tensors_that_require_grad_read_from_outside_train_as_eager(monkeypatch):
    """A function reading a tensor that requires grad as a module global, a closure
    variable or a parameter of a module it reaches by one (or that a functools.partial or
    callable object holds), as torch.compile runs it: eager accumulates its gradient into
    its ``.grad``. The package trains it as a weight named as the program reads it:
    bound with ``module={name: object}``, the caller's tensors get eager's gradients and
    later changes to them are followed; loaded alone, the package's own copies are its
    parameters (until 2026-12-05 a CaptureError; before, the gradient was silently
    dropped). A module read by a helper's global, or as an attribute of a Python module
    (``helpers.model``), is named so too (until 2026-12-05 its parameters were frozen
    copies: the output required no grad, with no error)."""
    x = torch.randn(5, 4, requires_grad=True)
    lin = torch.nn.Linear(4, 3)
    w = torch.randn(4, 3, requires_grad=True)
    p = torch.nn.Parameter(torch.randn(3))
    cases = [(reads_a_global_that_requires_grad, {"OUTSIDE_W": OUTSIDE_W}, ["constant:OUTSIDE_W"]),
             (reads_a_module_global, {"OUTSIDE_LIN": OUTSIDE_LIN}, ["OUTSIDE_LIN.weight", "OUTSIDE_LIN.bias"]),
             (lambda t: lin(t).relu() * p, {"lin": lin, "p": p}, ["lin.weight", "lin.bias", "p"]),
             (lambda t: t @ w, {"w": w}, ["constant:w"]),
             (functools.partial(lin), {"func": lin}, ["func.weight", "func.bias"]),
             # (a positional argument of a partial: named by the parameter it fills)
             (functools.partial(_apply, lin), {"model": lin}, ["model.weight", "model.bias"]),
             (_Calls(lin), {"model": lin}, ["model.weight", "model.bias"]),
             (calls_a_helper, {"HELPER_LIN": HELPER_LIN}, ["HELPER_LIN.weight", "HELPER_LIN.bias"]),
             (lambda t: train_models.SHARED_LIN(t), {"SHARED_LIN": lin}, ["SHARED_LIN.weight", "SHARED_LIN.bias"])]
    # (an attribute of a Python module the program names: ``helpers.model``)
    monkeypatch.setattr(train_models, "SHARED_LIN", lin, raising=False)
    for program, bind, names in cases:
        path = aotpack.compile(program, (x,), train=True, backend="eager").to_bytes()
        tensors = [t for v in bind.values() for t in (v.parameters() if isinstance(v, torch.nn.Module) else [v])]
        fn = aotpack.load(path, module=bind)
        for t in [x, *tensors]:
            t.grad = None
        (program(x) * torch.arange(3.0)).sum().backward()
        want = [t.grad for t in [x, *tensors]]
        for t in [x, *tensors]:
            t.grad = None
        (fn(x) * torch.arange(3.0)).sum().backward()
        for got, expected in zip([x, *tensors], want):
            torch.testing.assert_close(got.grad, expected)
        with torch.no_grad():  # an optimizer's step on the caller's tensors: the next call sees it
            for t in tensors:
                t.mul_(1.5)
        torch.testing.assert_close(fn(x), program(x))
        alone = aotpack.load(path)  # its own copies, as of the compile: leaves that require grad
        assert [n for n, _ in alone.named_parameters()] == names == [n for n in alone.state_dict()]
        (alone(x) * torch.arange(3.0)).sum().backward()
        assert all(q.grad is not None for _, q in alone.named_parameters())
        with torch.no_grad():
            for t in tensors:
                t.div_(1.5)
    with pytest.raises(aotpack.AotpackError, match="module={'lin': ...}"):
        aotpack.load(aotpack.compile(lambda t: lin(t), (x,), train=True, backend="eager").to_bytes(), module=lin)
    # a module's own program: load(path, module=model) binds the module alone, so refused,
    # naming the function form, which trains both
    model = _ReadsAGlobal()
    with pytest.raises(aotpack.CaptureError, match=r"reads the module global OUTSIDE_W, a tensor that requires "
                                                   r"grad, from outside the module(.|\n)*module=\{'model': model, "
                                                   r"'OUTSIDE_W': OUTSIDE_W\}"):
        aotpack.compile(model, (x,), train=True, backend="eager")
    fn = aotpack.load(aotpack.compile(lambda t: model(t), (x,), train=True, backend="eager").to_bytes(),
                      module={"model": model, "OUTSIDE_W": OUTSIDE_W})
    OUTSIDE_W.grad = None
    fn(x).sum().backward()
    got, OUTSIDE_W.grad = OUTSIDE_W.grad, None
    model(x).sum().backward()
    torch.testing.assert_close(got, OUTSIDE_W.grad)
    for wrong, why in [([lin], "a dict of names"), ({"lin": 3}, "is a int"), ({"training": w}, "nn.Module attribute")]:
        with pytest.raises(TypeError, match=why):
            aotpack.load(path, module=wrong)
    frozen = w.detach()
    aotpack.compile(lambda t: t @ frozen, (x,), train=True, backend="eager")


@pytest.mark.parametrize("train", [False, True], ids=["inference", "training"])
def test_a_function_over_a_batch_norm_in_training_mode_updates_its_statistics_as_eager(train):
    """``lambda x: net(x)`` where ``net`` holds a BatchNorm in training mode: eager updates
    its running statistics at each call. The modules a function reaches by name are the
    program's own submodules (capture's ``_held_by_name``), so those statistics are
    buffers the package updates, on the bound module's tensors or its own (until
    2026-12-05 they were constants torch.export copied: an inference package left them
    as they were, silently, and a training package was a CaptureError)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    ref = copy.deepcopy(net)
    x = torch.randn(6, 4)

    def program_of(model):
        return lambda t: model(t) * 2

    with torch.set_grad_enabled(train):
        path = aotpack.compile(program_of(net), (x,), train=train, backend="eager").to_bytes()
    net.load_state_dict(ref.state_dict())  # (the compile ran the program once)
    bound, eager = aotpack.load(path, module={"model": net}), program_of(ref)
    for step in range(2):
        with torch.set_grad_enabled(train):
            got, want = bound(x + step), eager(x + step)
        torch.testing.assert_close(got, want)
        for name, value in ref.state_dict().items():
            torch.testing.assert_close(net.state_dict()[name], value, msg=name)
    if train:
        got.sum().backward()
        want.sum().backward()
        for (name, p), q in zip(net.named_parameters(), ref.parameters()):
            torch.testing.assert_close(p.grad, q.grad, msg=name)
    alone = aotpack.load(path)  # its own statistics, from the compile's state, updated at each call
    before = alone.state_dict()["model.1.running_mean"].clone()
    with torch.set_grad_enabled(train):
        alone(x)
    assert not torch.equal(alone.state_dict()["model.1.running_mean"], before)


HELPER_NORM = torch.nn.BatchNorm1d(4)


def _normalizes(x):
    return HELPER_NORM(x) * 2


def test_a_batch_norm_reached_only_through_a_helper_trains_as_eager():
    """A training package of a function whose helper updates a module's buffers (a batch
    norm in training mode read as the helper's global): the function itself names no such
    module, so torch.export first holds its statistics as constants and cannot update
    them; capture runs again holding the modules the helpers read by name, as the
    function's own. Bound by the global's name: eager's output, gradients and statistics
    (refused until 2026-12-05, "Constant lifted_tensor_0 is mutated"). A module reached by
    no name (an item of a dict) is still refused, naming the fix."""
    x = torch.randn(6, 4)
    pkg = aotpack.compile(lambda t: _normalizes(t), (x,), train=True, backend="eager")
    assert "HELPER_NORM.running_mean" in pkg.manifest.variants[0].weight_fqns
    norm, ref = copy.deepcopy(HELPER_NORM), copy.deepcopy(HELPER_NORM)
    fn = aotpack.load(pkg.to_bytes(), module={"HELPER_NORM": norm})
    for step in range(2):
        got, want = fn(x + step), ref(x + step) * 2
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(norm.state_dict(), ref.state_dict())
    (got * torch.arange(4.0)).sum().backward()
    (want * torch.arange(4.0)).sum().backward()
    torch.testing.assert_close([norm.weight.grad, norm.bias.grad], [ref.weight.grad, ref.bias.grad])
    registry = {"norm": torch.nn.BatchNorm1d(4)}
    with pytest.raises(aotpack.CaptureError, match=r"Constant \S+ is mutated(.|\n)*hint: the program updates a "
                                                   r"tensor of a module it reaches by no name"):
        aotpack.compile(lambda t: registry["norm"](t), (x,), train=True, backend="eager")


class _CallsHelperNorm(_ReadsAGlobal):
    """A module whose forward calls a module global batch norm (``HELPER_NORM``) after its
    Linear (``_ReadsAGlobal``'s)."""

    def forward(self, x):
        return HELPER_NORM(self.lin(x))


def test_a_module_calling_a_global_batch_norm_trains_as_a_function_the_refusal_names():
    """A module's training package whose forward calls a module global batch norm in
    training mode is refused (a module's package holds the module alone: torch.export
    holds the global's statistics as constants), and the hint names the form that
    trains: a function calling the module, bound with both by name, which gives eager's
    output, gradients and statistics. (Until 2026-12-05 the hint named a dict's item,
    which this is not.)"""
    torch.manual_seed(0)
    m, x = _CallsHelperNorm().train(), torch.randn(6, 4)
    with pytest.raises(aotpack.CaptureError, match=r"hint: the module's code updates a tensor of HELPER_NORM, a module "
                                                   r"it calls as a module global(.|\n)*module=\{'model': model, "
                                                   r"'HELPER_NORM': HELPER_NORM\}"):
        aotpack.compile(m, (x,), train=True, backend="eager")
    pkg = aotpack.compile(lambda t: m(t), (x,), train=True, backend="eager")
    mine, ref, norm, ref_norm = copy.deepcopy(m), copy.deepcopy(m), copy.deepcopy(HELPER_NORM), HELPER_NORM
    fn = aotpack.load(pkg.to_bytes(), module={"m": mine, "HELPER_NORM": norm})
    weights = torch.randn(6, 4)
    (fn(x) * weights).sum().backward()
    (ref(x) * weights).sum().backward()  # (eager: the global itself)
    torch.testing.assert_close(norm.state_dict(), ref_norm.state_dict())
    torch.testing.assert_close([mine.lin.weight.grad, norm.weight.grad], [ref.lin.weight.grad, ref_norm.weight.grad])


OUTSIDE_CHILD = r"""
import json, sys, torch, aotpack
state = torch.load(sys.argv[2])
lin = torch.nn.Linear(4, 3)
lin.load_state_dict(state["lin"])
w = state["w"].requires_grad_()
x = state["x"].requires_grad_()
fn = aotpack.load(sys.argv[1], module={"lin": lin, "w": w})
(fn(x) * torch.arange(3.0)).sum().backward()
torch.save({"out": fn(x).detach(), "grads": [t.grad for t in (x, lin.weight, lin.bias, w)]}, sys.argv[3])
"""


def test_a_function_over_a_module_and_a_tensor_trains_them_in_a_fresh_process(tmp_path):
    """``lambda x: lin(x) * w`` compiled with train=True, loaded in a fresh process bound
    to that process's own ``lin`` and ``w``: eager's output and gradients, into that
    process's tensors. (The eager backend: what is tested is the binding by name; the
    compiled backends run the same weights list, checked ad hoc with aoti and Dims.)"""
    lin, w = torch.nn.Linear(4, 3), torch.randn(3, requires_grad=True)
    x = torch.randn(5, 4, requires_grad=True)
    program = lambda t: lin(t) * w  # noqa: E731 - the program torch.compile users write
    path = aotpack.compile(program, (x,), train=True, backend="eager").save(tmp_path / "f.aot")
    torch.save({"lin": lin.state_dict(), "w": w.detach(), "x": x.detach()}, tmp_path / "state.pt")
    run_fresh(["-c", OUTSIDE_CHILD, str(path), str(tmp_path / "state.pt"), str(tmp_path / "out.pt")])
    got = torch.load(tmp_path / "out.pt")
    (program(x) * torch.arange(3.0)).sum().backward()
    torch.testing.assert_close(got["out"], program(x).detach())
    for g, t in zip(got["grads"], (x, lin.weight, lin.bias, w)):
        torch.testing.assert_close(g, t.grad)


FROZEN_LIN = torch.nn.Linear(4, 3).requires_grad_(False)


def frozen_module_through_a_function(x):
    return StraightThrough.apply(FROZEN_LIN(x)).sum(0)


def test_a_custom_function_over_a_frozen_module_global_trains_as_eager():
    """A custom Function beside a module the program reads as a global: the joint graph
    is traced from the program itself, which reads the module's weights there, found by
    the memory torch.export's lifted constants share with them (a CaptureError "tensors
    that are no parameter, buffer, module global or closure variable" until 2026-12-05)."""
    x = torch.randn(5, 4, requires_grad=True)
    fn = aotpack.load(aotpack.compile(frozen_module_through_a_function, (x,), train=True, backend="eager").to_bytes())
    mine, theirs = x.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    (fn(mine) * torch.arange(3.0)).sum().backward()
    (frozen_module_through_a_function(theirs) * torch.arange(3.0)).sum().backward()
    torch.testing.assert_close(mine.grad, theirs.grad)


class _Behind(torch.nn.Module):
    """The fuzzer's program behind a parameter, ``program(x * w, y)``."""

    def __init__(self, program):
        super().__init__()
        self.w = torch.nn.Parameter(torch.linspace(0.5, 1.5, 6))
        self.program = program

    def forward(self, x, y):
        return self.program(x * self.w, y)


def test_a_view_whose_base_the_programs_own_run_lacks_is_refused_naming_why():
    """``h = x * w`` updated under no_grad, then through a flattened view, both returned
    (the loaded-alone fuzzer's program): its joint graph is traced from the program itself
    (straight-through), where the view's base is ``h``, not the exported graph's flat
    intermediate. Refused naming that path (the message said "uses
    torch.autograd.Function", which the program does not, until 2026-12-05)."""
    import fuzz_programs

    model = _Behind(fuzz_programs.make_program([("inplace_no_grad", 10, 13, 7), ("inplace_view", 15, 11, 16)], (4, 5)))
    with pytest.raises(aotpack.CaptureError, match=r"uses an update under no_grad of a value that requires grad and "
                                                   r"returns a view of an intermediate tensor"):
        aotpack.compile(model, (torch.randn(4, 6, requires_grad=True), torch.randn(4, 6)), train=True,
                        backend="eager")


def test_same_tensor_for_two_arguments_gets_both_grads(tmp_path):
    def f(a, b):
        return (a * 2 + b.exp()).sum()

    a = torch.randn(5, requires_grad=True)
    fn = compile_load(f, (a, a.detach().clone().requires_grad_()), tmp_path)
    fn(a, a).backward()
    torch.testing.assert_close(a.grad, 2 + a.detach().exp())


def test_in_place_update_of_an_input_lands_on_the_callers_tensor(tmp_path):
    def f(x, counter):
        counter.add_(1)
        return x.relu() * 3

    x, counter = torch.randn(4, requires_grad=True), torch.zeros(2)
    fn = compile_load(f, (x, counter.clone()), tmp_path)
    out = fn(x, counter)
    out.sum().backward()
    assert counter.tolist() == [1.0, 1.0]
    torch.testing.assert_close(x.grad, (x.detach() > 0).float() * 3)


def test_in_place_on_a_leaf_that_requires_grad_is_refused(tmp_path):
    def f(x):
        x.mul_(2)
        return x.sum()

    with pytest.raises(aotpack.CaptureError, match=r"test_training.py:\d+: `x.mul_\(2\)`: a leaf Variable that "
                       r"requires grad is being used in an in-place operation.* \(eager PyTorch refuses it too\)\n"
                       r"hint: work on a copy"):
        aotpack.compile(f, (torch.randn(3, requires_grad=True),), train=True, backend="eager")


def test_create_graph_gives_first_order_grads_and_refuses_the_second(tmp_path):
    """As torch.compile: ``create_graph=True`` computes the first-order gradients (what
    an optimizer step or a gradient norm needs); differentiating them again is refused."""
    m = torch.nn.Linear(3, 2)
    fn = compile_load(m, (torch.randn(4, 3, requires_grad=True),), tmp_path)
    x = torch.randn(4, 3, requires_grad=True)
    (g,) = torch.autograd.grad(fn(x).pow(3).sum(), x)  # first order, plain
    (g_graph,) = torch.autograd.grad(fn(x).pow(3).sum(), x, create_graph=True)
    (want,) = torch.autograd.grad(m(x).pow(3).sum(), x, create_graph=True)
    torch.testing.assert_close(g, want.detach())
    torch.testing.assert_close(g_graph.detach(), want.detach())
    assert g_graph.requires_grad  # as eager's: it depends on x and the weights
    fn(x).pow(3).sum().backward(create_graph=True)  # a training step with create_graph: .grad filled
    assert m.weight.grad is not None
    with pytest.raises(aotpack.AotpackError, match="double backward"):
        g_graph.sum().backward()  # the second order: refused, never a silent zero


def test_create_graph_gradients_require_grad_where_eagers_do():
    """A gradient computed from a saved intermediate (exp's result) requires grad and is
    connected to the input it depends on, so a second derivative asked of that input
    alone reaches the package and is refused; ``x * 2``'s gradient requires none, as
    eager's. (Before, exp's gradient did not require grad: a penalty built on it was a
    silent constant.)"""
    for program, want in ((lambda x: x.exp(), True), (lambda x: x * 2, False), (lambda x: x.sin() * 3, True)):
        fn = aotpack.load(aotpack.compile(program, (torch.randn(4, requires_grad=True),), train=True,
                                          backend="eager").to_bytes())
        x = torch.randn(4, requires_grad=True)
        (g,) = torch.autograd.grad(fn(x).sum(), x, create_graph=True)
        (e,) = torch.autograd.grad(program(x).sum(), x, create_graph=True)
        torch.testing.assert_close(g.detach(), e.detach())
        assert g.requires_grad == e.requires_grad == want
        if want:
            with pytest.raises(aotpack.AotpackError, match="double backward"):
                torch.autograd.grad(g.sum(), x)


def halve_and_view(x, w):
    with torch.no_grad():
        x.mul_(0.5)
    return x.t()[1:], x * w


def bump_and_view(x, w):
    x.add_(1)
    return x[:, 1:3], (x * w).sum()


@pytest.mark.parametrize("program", [halve_and_view, bump_and_view])
def test_view_of_a_strided_input_updated_in_place(program):
    """An output that views an input the program updates, the input strided
    (``x[:, ::2]``): the functional update's value is contiguous, so the view's numbers are
    moved into the caller's layout (each step as a step in element indices). It was
    refused before (found by the fuzzer, seeds 14-15). Values, view, strides, the input
    after and w's gradient are eager's."""
    strided = lambda: torch.randn(4, 12)[:, ::2]  # noqa: E731
    w = torch.randn(4, 6, requires_grad=True)
    fn = aotpack.load(aotpack.compile(program, (strided(), w), train=True, backend="eager").to_bytes())
    mine = strided()
    theirs = torch.empty(4, 12)[:, ::2].copy_(mine)
    got, want = fn(mine, w), program(theirs, w)
    assert all(torch.equal(a, b) and a.stride() == b.stride() for a, b in zip(got, want))
    assert torch.equal(mine, theirs)
    assert got[0].untyped_storage().data_ptr() == mine.untyped_storage().data_ptr()
    assert got[0].storage_offset() - mine.storage_offset() == want[0].storage_offset() - theirs.storage_offset()
    (g_got,) = torch.autograd.grad(got[1].sum(), w)
    (g_want,) = torch.autograd.grad(want[1].sum(), w)
    torch.testing.assert_close(g_got, g_want)


def test_a_view_of_an_input_updated_in_another_layout_with_a_dim_is_refused_clearly():
    """A view of an input updated in place whose compiled layout the update does not keep
    (fuzzer seed 63's program: bf16, the input transposed, its rows a Dim): the view's
    numbers in the caller's layout are not derived for every size the Dim allows, so
    compile refuses naming the output. Until 2026-12-05 it wrote the example's sizes into
    the manifest as symbols and refused its own package as "malformed"."""
    import fuzz_programs

    program = fuzz_programs.make_program([("concat", 17, 10, 12), ("inplace_view", 19, 5, 3),
                                          ("inplace_no_grad", 14, 15, 18)], (15, 3))
    inputs = fuzz_programs.build_inputs(fuzz_programs.CallSpec(layouts=("transposed", "offset"), aliasing="none",
                                                               dtype=torch.bfloat16, requires_grad=(True, False),
                                                               shape=(4, 6)), 0)
    rows = torch.export.Dim("rows", min=2, max=16)
    with pytest.raises(aotpack.CaptureError, match=r"output 1 is a view of an argument the program updates in "
                                                   r"place, and the update changes its layout"):
        aotpack.compile(program, tuple(inputs), train=True, backend="eager", dynamic={"x": {0: rows}, "y": {0: rows}})


def bump_then_weigh(x, w):
    x.add_(1)
    return (x * w).sum()


@pytest.mark.parametrize("layout", ["transposed", "strided"])
def test_an_updated_input_in_another_layout_trains_as_eager(layout):
    """An input that requires grad (no leaf) updated in place, passed in another layout
    than compiled: copied into the compiled layout, and the update replayed into the
    caller's tensor after the run, through autograd, so the caller's tensor carries the
    update's history and gradients reach its base, as in eager (a GuardError before)."""
    w = torch.randn(4, 6, requires_grad=True)
    fn = aotpack.load(aotpack.compile(bump_then_weigh, (torch.randn(4, 6, requires_grad=True) * 1, w), train=True,
                                      backend="eager").to_bytes())
    shape = (6, 4) if layout == "transposed" else (4, 12)
    view = (lambda b: (b * 1).t()) if layout == "transposed" else (lambda b: (b * 1)[:, ::2])
    base = torch.randn(*shape, requires_grad=True)
    base_eager = base.detach().clone().requires_grad_()
    x, x_eager = view(base), view(base_eager)
    got, want = fn(x, w), bump_then_weigh(x_eager, w)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(x, x_eager)
    (got + (x * 3).sum()).backward()  # through the updated tensor too
    grads = base.grad.clone(), w.grad.clone()
    w.grad = None
    (want + (x_eager * 3).sum()).backward()
    torch.testing.assert_close(grads[0], base_eager.grad)
    torch.testing.assert_close(grads[1], w.grad)


class DoubleThenWeigh(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(6))

    def forward(self, x, y):
        x.mul_(2)
        return (torch.cat([x, y.sin()]) * self.w).sum(0)


class DoubleFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        return g * 3  # not the forward's derivative: lost if the Function's forward ran alone


def double_through_function(x, y):
    x.add_(1)
    return DoubleFunction.apply(torch.cat([x, y])).sum(0)


def test_overlapping_inputs_updated_in_place_train_as_eager(tmp_path):
    """x updated in place and y a view of the same tensor that overlaps it (torch.compile
    recompiles for that aliasing). A training package's stored program is functional,
    so y would be read from before x's update; the package also stores its program with
    the updates in order (program_in_order.json) and runs such a call op by op with
    autograd on, in a fresh process: eager's outputs, the caller's tensor updated, and
    eager's gradients of the base and the weight (a GuardError before)."""
    torch.manual_seed(0)
    m = DoubleThenWeigh()
    path = aotpack.compile(m, (torch.randn(4, 6, requires_grad=True) * 1, torch.randn(4, 6, requires_grad=True) * 1),
                           train=True, backend="eager").save(tmp_path / "t.aot")
    torch.save(m.state_dict(), tmp_path / "m.pt")
    child = f"""
import sys, warnings, torch, aotpack
sys.path[:0] = {[os.path.dirname(os.path.abspath(__file__)), os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]!r}
from test_training import DoubleThenWeigh
m = DoubleThenWeigh(); m.load_state_dict(torch.load({str(tmp_path / "m.pt")!r}))
fn = aotpack.load({str(path)!r}, module=m)
base = torch.randn(5, 6, requires_grad=True)
base_eager = base.detach().clone().requires_grad_()
mine, theirs = base * 1, base_eager * 1
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    got = fn(mine[:4], mine[1:])
(w,) = [c for c in caught if issubclass(c.category, aotpack.PortableRunWarning)]
assert "shares memory with y" in str(w.message)
(got * torch.arange(6.0)).sum().backward()
grads = base.grad.clone(), m.w.grad.clone()
m.w.grad = None
want = m(theirs[:4], theirs[1:])
(want * torch.arange(6.0)).sum().backward()
assert torch.equal(got, want) and torch.equal(mine, theirs), (got, want)
assert torch.equal(grads[0], base_eager.grad) and torch.equal(grads[1], m.w.grad)
x, y = torch.randn(4, 6, requires_grad=True) * 1, torch.randn(4, 6, requires_grad=True) * 1
x_eager = x.detach().clone()
torch.testing.assert_close(fn(x, y), m(x_eager, y.detach()))  # apart: the compiled code
print("ok")
"""
    assert run_fresh(["-c", child]).stdout.strip().endswith("ok")


def test_overlapping_updated_inputs_beside_a_custom_function_are_refused():
    """The stored program holds a custom Function's forward, not its backward: running
    it op by op would differentiate the forward. Such a call stays a GuardError."""
    fn = aotpack.load(aotpack.compile(double_through_function, (torch.randn(4, 6), torch.randn(4, 6, requires_grad=True)),
                                      train=True, backend="eager").to_bytes())
    base = torch.randn(5, 6)
    with pytest.raises(aotpack.GuardError, match="shares memory with y"):
        fn(base[:4], base[1:])


def picks_rows_through_a_function(x, w):
    """A custom Function beside a tensor the program makes at each call (its index)."""
    return StraightThrough.apply(x * w)[torch.tensor([0, 2])] * 2


@pytest.mark.parametrize("backend", ["eager"])
def test_a_tensor_the_program_makes_beside_a_custom_function_trains_as_eager(tmp_path, backend):
    """torch.export lifts ``torch.tensor([0, 2])`` to a constant like a tensor read from
    elsewhere; the program makes it at each call, so the joint graph traced from the
    program needs no stand-in for it (a CaptureError until 2026-12-04: "tensors that are
    no parameter, buffer, module global or closure variable"; found by the fuzzer once its
    grammar had a custom Function). What is tested is the capture's; AOTInductor compiling
    a constant beside a custom Function is test_contract.py's
    ``test_custom_autograd_function_beside_a_frozen_global_or_closure_trains_as_eager``
    (the suite's 15-minute budget: ~15 s an AOTInductor training compile)."""
    x, w = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    fn = compile_load(picks_rows_through_a_function, (x, w), tmp_path, backend=backend)
    a, b = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    got, want = fn(a, b), picks_rows_through_a_function(x, w)
    torch.testing.assert_close(got, want)
    (got * torch.arange(6.0).view(2, 3)).sum().backward()
    (want * torch.arange(6.0).view(2, 3)).sum().backward()
    torch.testing.assert_close(a.grad, x.grad)  # the Function's own backward: tripled
    torch.testing.assert_close(b.grad, w.grad)


def add_weight_into(x, w):
    x.add_(w)  # x does not require grad: after this, eager's x has w's history
    return (x * w).sum()


def add_then_double_unseen(x, w):
    x.add_(w)
    with torch.no_grad():
        x.mul_(2)  # hidden from autograd: eager's gradient through x ignores it
    return (x * w).sum()


def clamps_straight_through(x, w):
    h = x * w
    with torch.no_grad():
        h.clamp_(-0.1, 0.1)  # a straight-through update: eager's gradient skips it
    return h.sum(0)


def scales_straight_through(x, w):
    h = x * w
    with torch.no_grad():
        h.mul_(0.5)
    return h * 3


@pytest.mark.parametrize("backend,program", [
    ("eager", clamps_straight_through), ("eager", scales_straight_through),
    # (AOTInductor once: the joint graph is traced the same way for both)
    pytest.param("aoti", scales_straight_through, marks=pytest.mark.slow)])
def test_a_straight_through_update_of_an_intermediate_trains_as_eager(backend, program):
    """An intermediate that requires grad, updated in place under no_grad: eager's
    autograd keeps its history and skips the update (the gradient passes the clamp
    unchanged). The functional graph holds the update, so the joint graph is traced from
    the program itself, as for custom Functions (until 2026-12-05 the package
    differentiated the update: half eager's gradient for ``mul_(0.5)``, silently;
    found by the fuzzer's program behind a parameter, seed 74)."""
    x, w = torch.randn(4, 3), torch.randn(4, 3, requires_grad=True)
    fn = aotpack.load(aotpack.compile(program, (x, w), train=True, backend=backend).to_bytes())
    mine, theirs = w.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    got, want = fn(x, mine), program(x, theirs)
    torch.testing.assert_close(got, want)
    (got * torch.arange(3.0)).sum().backward()
    (want * torch.arange(3.0)).sum().backward()
    torch.testing.assert_close(mine.grad, theirs.grad)


def test_an_input_given_a_history_by_its_update_keeps_it():
    """``x.add_(w)`` on an x that does not require grad: eager's x requires grad after,
    with w's history, so a loss through x after the call reaches w. The package left x
    without a history, and such a gradient was silently missing (until 2026-12-03); the
    update is now written through autograd."""
    fn = aotpack.load(aotpack.compile(add_weight_into, (torch.randn(3), torch.randn(3, requires_grad=True)),
                                      train=True, backend="eager").to_bytes())
    x, w = torch.randn(3), torch.randn(3, requires_grad=True)
    x_eager, w_eager = x.clone(), w.detach().clone().requires_grad_()
    (fn(x, w) + (x * 3).sum()).backward()
    (add_weight_into(x_eager, w_eager) + (x_eager * 3).sum()).backward()
    assert x.requires_grad and torch.equal(x, x_eager.detach()) and torch.equal(w.grad, w_eager.grad)


def test_an_input_given_a_history_then_updated_unseen_is_refused():
    """The same, then ``x.mul_(2)`` under no_grad: eager keeps the first update in x's
    history and hides the second, which one replayed update cannot be (the package's
    gradient of w differed silently). Refused at compile, naming x and the line."""
    with pytest.raises(aotpack.CaptureError, match=r"input x, which comes to require grad, in place both"):
        aotpack.compile(add_then_double_unseen, (torch.randn(3), torch.randn(3, requires_grad=True)), train=True,
                        backend="eager")


def unused_cat_of_a_no_grad_value(x, y):
    with torch.no_grad():
        a = x.sigmoid()
    picked = x[torch.tensor([0, 2])]
    torch.cat([picked, a])  # unused: torch.export keeps it, without listing it as a user of picked
    y.add_(1)
    with torch.no_grad():
        b = a.sigmoid()
    return picked, b


def test_an_unused_op_beside_a_no_grad_region_compiles():
    """torch.export's graph of this program lists the unused ``cat`` as a user of the
    region's output but not of ``picked``; detaching the region's output then failed
    inside torch.fx with a raw SystemError (fuzzer seed 38). It compiles and trains as eager."""
    x = torch.randn(4, 6, requires_grad=True)
    fn = aotpack.load(aotpack.compile(unused_cat_of_a_no_grad_value, (x, torch.randn(4, 6)), train=True,
                                      backend="eager").to_bytes())
    y, y_eager = torch.randn(4, 6), torch.randn(4, 6)
    y_eager.copy_(y)
    got, want = fn(x, y), unused_cat_of_a_no_grad_value(x, y_eager)
    assert all(map(torch.equal, got, want)) and torch.equal(y, y_eager)
    got[0].sum().backward()
    grad = x.grad.clone()
    x.grad = None
    want[0].sum().backward()
    assert torch.equal(grad, x.grad)


def test_dropout_uses_the_callers_rng(tmp_path):
    m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Dropout(0.5)).train()
    fn = compile_load(m, (torch.randn(4, 8),), tmp_path)
    x = torch.randn(4, 8)
    torch.manual_seed(7)
    a = fn(x)
    torch.manual_seed(7)
    b = fn(x)
    c = fn(x)
    torch.testing.assert_close(a, b)
    assert not torch.equal(b, c)
    zeros = (a == 0).float().mean().item()
    assert 0.2 < zeros < 0.8  # dropout happened
    a.sum().backward()
    assert m[0].weight.grad is not None


def test_no_grad_calls_run_the_forward_alone(tmp_path):
    m = train_models.build("mlp")
    fn = compile_load(m, (train_models.batch("mlp", 0),), tmp_path)
    before = m[1].num_batches_tracked.item()
    with torch.no_grad():
        out = fn(train_models.batch("mlp", 1))
    assert not out.requires_grad and m[1].num_batches_tracked.item() == before + 1


def test_parameter_created_inside_the_program(tmp_path):
    def f(x):
        scale = torch.nn.Parameter(torch.full((3,), 2.0))
        return (x * scale).sum()

    x = torch.randn(3, requires_grad=True)
    fn = compile_load(f, (x,), tmp_path)
    fn(x).backward()
    torch.testing.assert_close(x.grad, torch.full((3,), 2.0))


# -- for compiler engineers: the joint graph ------------------------------------------------
def test_capture_joint_metadata_and_source_mapping():
    m = train_models.build("mlp")
    jc = autograd.capture_joint(m, (train_models.batch("mlp", 0),))
    assert [mm.kind for mm in jc.mutated] == ["buffer"] * 3  # running_mean, running_var, num_batches_tracked
    assert jc.num_outputs == 4 and jc.out_requires_grad == [False, False, False, True]
    assert sum(jc.grad_mask) == 6  # weight and bias of fc1, bn, fc2
    assert jc.saved and set(jc.donatable) <= set(jc.saved)
    placeholders = {n.name for n in jc.forward.graph.nodes if n.op == "placeholder"}
    assert not set(jc.donatable) & placeholders
    # a backward op maps to the forward op it differentiates, and to the user's module
    bw_mm = next(n for n in jc.backward.graph.nodes if n.op == "call_function" and "mm" in str(n.target))
    src = jc.source_of(bw_mm)
    assert src["forward_node"].startswith("addmm") and src["module"] in {"0", "3"}
    assert src["stack_trace"].startswith('File "') and "aotpack/capture.py" not in src["stack_trace"]
    assert "F.linear(input, self.weight, self.bias)" in src["stack_trace"]


def test_joint_pass_changes_the_saved_backward(tmp_path):
    """A joint pass that doubles every gradient: visible in the package's backward."""
    def double_grads(joint):
        out = next(n for n in joint.graph.nodes if n.op == "output")
        values = list(out.args[0])
        n_fw = len(values) - sum(1 for n in joint.graph.nodes if n.op == "placeholder" and "primals" in n.name)
        with joint.graph.inserting_before(out):
            for i in range(n_fw, len(values)):
                if values[i] is not None:
                    values[i] = joint.graph.call_function(torch.ops.aten.mul.Tensor, (values[i], 2.0))
        out.args = (tuple(values),)
        return joint

    w = torch.randn(4, requires_grad=True)
    fn = compile_load(lambda w: (w * w).sum(), (w,), tmp_path, joint_pass=double_grads)
    fn(w).backward()
    torch.testing.assert_close(w.grad, 2 * (2 * w.detach()))


def test_onednn_is_switched_off_only_for_programs_with_an_rnn(tmp_path):
    """oneDNN's switch is process-wide: a compile turns it off only while it traces the
    joint graph of a program that has an RNN op, and puts it back after."""
    seen = {}

    def note(name):
        def joint_pass(joint):
            seen[name] = torch.backends.mkldnn.enabled
        return joint_pass

    assert torch.backends.mkldnn.enabled
    w = torch.randn(4, requires_grad=True)
    compile_load(lambda w: (w * w).sum(), (w,), tmp_path, joint_pass=note("plain"))
    lstm = train_models.build("lstm")
    fn = compile_load(lstm, (train_models.batch("lstm", 0),), tmp_path, joint_pass=note("lstm"))
    assert seen == {"plain": True, "lstm": False}
    assert torch.backends.mkldnn.enabled
    x = train_models.batch("lstm", 1)
    ref = train_models.build("lstm")
    fn(x).square().sum().backward()
    ref(x).square().sum().backward()
    for (name, p), q in zip(lstm.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_inspect_shows_a_training_variant(tmp_path):
    m = train_models.build("mlp")
    path = aotpack.compile(m, (train_models.batch("mlp", 0),), train=True, backend="eager").save(tmp_path / "t.aot")
    text = str(aotpack.inspect(path))
    assert "training: forward + backward" in text and "3 in-place updates" in text
    assert aotpack.verify(path)["ok"]


def test_outputs_that_are_views_of_inputs_stay_views(tmp_path):
    def f(x, y):
        return x.view(-1), x[1], (x * y).sum()

    x, y = torch.randn(3, 4, requires_grad=True), torch.randn(3, 4)
    fn = compile_load(f, (x, y), tmp_path)
    flat, row, total = fn(x, y)
    assert flat.untyped_storage().data_ptr() == x.untyped_storage().data_ptr() and flat.shape == (12,)
    assert row.storage_offset() == 4 and row.shape == (4,)
    (flat.sum() + 2 * row.sum() + total).backward()
    expected = torch.ones(3, 4) + y
    expected[1] += 2
    torch.testing.assert_close(x.grad, expected)
    with torch.no_grad():
        x[1, 0] = 100.0  # they share the caller's memory, as eager's views do
    assert row[0].item() == 100.0 and flat[4].item() == 100.0


def test_training_packages_through_the_cache(tmp_path):
    import aotpack.cache as cache

    store = cache.LocalStore(tmp_path / "cache")
    cache.stats.clear()
    m, x = train_models.build("mlp"), train_models.batch("mlp", 0)
    first = aotpack.compile(m, (x,), train=True, backend="eager", cache=store)
    second = aotpack.compile(m, (x,), train=True, backend="eager", cache=store)
    assert cache.stats["compiles"] == 1 and cache.stats["hits"] == 1
    compiled = lambda pkg: {k: v for k, v in pkg.members.items() if "/fw/" in k or "/bw/" in k}  # noqa: E731
    assert compiled(first) and compiled(first) == compiled(second)
    inference = aotpack.compile(m.eval(), (x,), backend="eager", cache=store)  # never the training entry
    assert cache.stats["compiles"] == 2 and inference.manifest.variants[0].train is None
    (train_entry,) = [h for h in store.entries() if h["parts"].get("mode", "").startswith("train")]
    assert train_entry["kind"] == "aotpack/eager/train"
    fn = aotpack.load(second.save(tmp_path / "t.aot"), module=m.train())
    fn(x).sum().backward()
    assert m[0].weight.grad is not None


def test_without_a_module_buffers_update_a_private_copy(tmp_path):
    """load() without module=: the package's own buffers take the in-place updates
    (copies of the file's read-only pages), calls match eager's running statistics."""
    m, x = train_models.build("mlp"), train_models.batch("mlp", 0)
    fn = aotpack.load(aotpack.compile(m, (x,), train=True, backend="eager").save(tmp_path / "t.aot"))
    ref = train_models.build("mlp")
    for step in range(3):
        out, expected = fn(train_models.batch("mlp", step)), ref(train_models.batch("mlp", step))
    torch.testing.assert_close(out, expected)


def test_a_package_loaded_alone_gives_its_own_parameters_eagers_gradients(tmp_path):
    """load() without module=: the weights eager would differentiate are the package's
    own parameters (leaves that require grad), so an output requires grad as eager's
    does, and backward() fills their .grad with eager's gradients (until 2026-12-05 the
    output required none and backward() raised torch's "does not require grad")."""
    m, x = train_models.build("mlp"), train_models.batch("mlp", 0)
    path = aotpack.compile(m, (x,), train=True, backend="eager").save(tmp_path / "t.aot")
    fn, ref = aotpack.load(path), train_models.build("mlp")
    out, expected = fn(x), ref(x)
    assert out.requires_grad and expected.requires_grad
    out.square().mean().backward()
    expected.square().mean().backward()
    own = dict(fn.named_parameters())
    assert sorted(own) == sorted(n for n, _ in ref.named_parameters())
    for name, p in ref.named_parameters():
        torch.testing.assert_close(own[name].grad, p.grad)
    with torch.no_grad():
        assert not fn(x).requires_grad
    again = aotpack.load(path)  # each load holds its own parameters
    assert all(p.grad is None for p in again.parameters())
    assert not {id(p) for p in again.parameters()} & {id(p) for p in fn.parameters()}


def test_a_package_trained_alone_resumes_from_its_state_dict(tmp_path):
    """Checkpoint and resume with the package alone: state_dict() saved, loaded into a
    fresh load of the same file with load_state_dict(), gives the same next step as the
    load that trained on (parameters and BatchNorm statistics)."""
    m, x = train_models.build("mlp"), train_models.batch("mlp", 0)
    path = aotpack.compile(m, (x,), train=True, backend="eager").save(tmp_path / "t.aot")

    def step(fn):
        opt = torch.optim.SGD(fn.parameters(), lr=0.1)
        fn(train_models.batch("mlp", 1)).square().mean().backward()
        opt.step()
        opt.zero_grad()

    before = open(path, "rb").read()
    first = aotpack.load(path)
    step(first)
    assert open(path, "rb").read() == before  # (its parameters map the file copy-on-write: never written)
    torch.save(first.state_dict(), tmp_path / "ckpt.pt")
    resumed = aotpack.load(path)
    resumed.load_state_dict(torch.load(tmp_path / "ckpt.pt"))
    for fn in (first, resumed):
        step(fn)
    for (name, a), b in zip(first.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    assert not torch.equal(first.state_dict()["0.weight"], aotpack.load(path).state_dict()["0.weight"])
    state = first.state_dict()
    with pytest.raises(aotpack.AotpackError, match=r"missing \['0.bias'\], unexpected \['extra'\]"):
        resumed.load_state_dict({**{k: v for k, v in state.items() if k != "0.bias"}, "extra": torch.zeros(1)})
    with pytest.raises(aotpack.AotpackError, match=r"0.weight is float32\[2, 2\], the package's weight "
                                                   r"float32\[32, 16\]"):
        resumed.load_state_dict({**state, "0.weight": torch.zeros(2, 2)})
    with pytest.raises(aotpack.AotpackError, match=r"bound to a module"):
        aotpack.load(path, module=m).load_state_dict(state)


class ReadsItsRequiresGrad(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.full((3,), 2.0))

    def forward(self, x):
        return x * self.w if self.w.requires_grad else x + 1


def test_a_package_parameter_whose_requires_grad_the_program_reads_is_guarded(tmp_path):
    """The package's own parameter, set not to require grad after load, where the program
    branches on it: eager would take the other branch, the package refuses, naming it."""
    m, x = ReadsItsRequiresGrad(), torch.randn(3)
    fn = aotpack.load(aotpack.compile(m, (x,), train=True, backend="eager").save(tmp_path / "t.aot"))
    torch.testing.assert_close(fn(x), m(x))
    next(fn.parameters()).requires_grad_(False)
    with pytest.raises(aotpack.GuardError, match=r"package parameter 'w'\.requires_grad"):
        fn(x)


def test_every_output_that_needs_no_grad_comes_back_without_one(tmp_path):
    """Two outputs that do not depend on an input requiring grad (found by the fuzzer,
    seed 4242): both come back with requires_grad False, as in eager. (Each
    ctx.mark_non_differentiable call replaces the last one's set: one call marks all.)"""
    def f(x, y):
        return x * 2, y.sum(0), y.relu()

    x, y = torch.randn(4, 6, requires_grad=True), torch.randn(4, 6)
    fn = compile_load(f, (x, y), tmp_path)
    assert [o.requires_grad for o in fn(x, y)] == [o.requires_grad for o in f(x, y)] == [True, False, False]
    assert [o.grad_fn is None for o in fn(x, y)] == [False, True, True]


def returns_what_it_updates(x, y):
    y.add_(1.0)
    return x * 2, y


def returns_a_view_of_what_it_updates(x, y):
    y.add_(1.0)
    return x * 2, y[0]


def test_an_output_that_is_an_updated_input_is_the_callers_tensor(tmp_path):
    """``y.add_(1); return y``: eager returns the caller's y itself, updated (found by
    the fuzzer, seed 4242: the package returned an equal copy). A view of such an input
    is that view of the caller's tensor (test_views_of_an_updated_input_...)."""
    x, y = torch.randn(4, 6, requires_grad=True), torch.randn(4, 6)
    fn = compile_load(returns_what_it_updates, (x, y.clone()), tmp_path)
    mine = y.clone()
    doubled, same = fn(x, mine)
    assert same is mine and torch.equal(mine, y + 1)
    doubled.sum().backward()
    torch.testing.assert_close(x.grad, torch.full_like(x, 2.0))
    fn = compile_load(returns_a_view_of_what_it_updates, (x, y.clone()), tmp_path)
    mine = y.clone()
    _, row = fn(x, mine)
    assert row.data_ptr() == mine.data_ptr() and torch.equal(row, y[0] + 1)


def test_a_function_over_a_transformers_model_trains_it_as_eager():
    """``lambda ids: model(input_ids=ids).logits``, as torch.compile users write it, over
    GPT-2 from a small config (tied input and output embeddings: one tensor, two
    names): bound with ``module={"model": model}``, the model's parameters get eager's
    gradients; loaded alone, the package holds them, each tensor once."""
    import zoo

    model, kwargs = zoo.build("gpt2")
    model.requires_grad_(True)
    ids = kwargs["input_ids"]
    program = lambda i: model(input_ids=i).logits  # noqa: E731
    package = aotpack.compile(program, (ids,), train=True, backend="eager").to_bytes()
    program(ids).square().mean().backward()
    want = {n: p.grad for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    aotpack.load(package, module={"model": model})(ids).square().mean().backward()
    for n, p in model.named_parameters():
        assert (p.grad is None) == (want[n] is None), n
        if p.grad is not None:
            torch.testing.assert_close(p.grad, want[n], msg=n)
    alone = aotpack.load(package)
    alone(ids).square().mean().backward()
    own = dict(alone.named_parameters())
    assert sorted(own) == sorted(f"model.{n}" for n, _ in model.named_parameters())
    for n, p in own.items():  # (the tied embedding's leaf gets both of its uses' gradients)
        torch.testing.assert_close(p.grad, want[n.removeprefix("model.")], msg=n)


@pytest.mark.parametrize("name", ["gpt2", "llama", "bert"])
def test_transformers_models_train_with_eager_gradients(name):
    """Code we did not write: transformers models from small configs as training packages
    give eager's gradients; parameters no output grad reaches (BERT's pooler, when the
    loss uses only the hidden states) get None, as in eager, not zeros (an optimizer
    would move them)."""
    import zoo

    model, kwargs = zoo.build(name)
    ref, _ = zoo.build(name)
    for m in (model, ref):
        m.train().requires_grad_(True)
        for module in m.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0  # the same numbers in both: no random masks to compare
    package = aotpack.compile(model, (), kwargs, train=True, backend="eager").to_bytes()
    fn = aotpack.load(package, module=model, allow_modules=["transformers"])
    got, want = fn(**kwargs), ref(**kwargs)
    key = "logits" if "logits" in want else "last_hidden_state"
    got[key].square().mean().backward()
    want[key].square().mean().backward()
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        assert (p.grad is None) == (q.grad is None), n
        if q.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, msg=n)
    if name == "bert":
        assert model.pooler.dense.weight.grad is None
    # loaded alone: the package's own parameters (a tied embedding once) get the same gradients
    alone = aotpack.load(package, allow_modules=["transformers"])
    alone(**kwargs)[key].square().mean().backward()
    own = dict(alone.named_parameters())
    assert sorted(own) == sorted(n for n, _ in ref.named_parameters()), name
    for n, q in ref.named_parameters():
        assert (own[n].grad is None) == (q.grad is None), n
        if q.grad is not None:
            torch.testing.assert_close(own[n].grad, q.grad, msg=n)


class DataDependent(torch.nn.Module):
    """Sizes that depend on the data, as torch.compile runs them in one graph: masked
    indexing (nonzero) in the loss, unique beside it."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.linspace(-1, 1, 8))

    def forward(self, x):
        y = x * self.w
        return y[y > 0].sum(), torch.unique(x.round())


CALLS_DATA_DEPENDENT = r"""
import json, sys, torch, aotpack
sys.path[:0] = [sys.argv[2], sys.argv[3]]  # (tests/ first: the root's conftest.py is Sybil's)
from test_training import DataDependent
m = DataDependent()
fn = aotpack.load(sys.argv[1], module=m)
out = []
for seed in range(6):  # a different count of positives (and of unique values) each time
    x = torch.randn(8, generator=torch.Generator().manual_seed(seed)) * 3
    m.w.grad = None
    loss, uniq = fn(x)
    loss.backward()
    got = m.w.grad.clone()
    m.w.grad = None
    want_loss, want_uniq = m(x)
    want_loss.backward()
    out.append([int((x * m.w > 0).sum()), torch.allclose(loss, want_loss), torch.equal(uniq, want_uniq),
                torch.allclose(got, m.w.grad)])
print(json.dumps(out))
"""


@pytest.mark.parametrize("backend", ["eager", pytest.param("aoti", marks=pytest.mark.slow)])
def test_data_dependent_sizes_train_as_eager_in_a_fresh_process(tmp_path, backend):
    """The size nonzero finds passes from the compiled forward to the compiled backward
    as the length of an empty tensor (AOTInductor takes no int input: until 2026-12-04
    an aoti package refused such a program)."""
    x = torch.randn(8, generator=torch.Generator().manual_seed(0)) * 3
    path = aotpack.compile(DataDependent(), (x,), train=True, backend=backend).save(tmp_path / "dd.aot")
    here = os.path.dirname(os.path.abspath(__file__))
    rows = json.loads(run_fresh(["-c", CALLS_DATA_DEPENDENT, str(path), os.path.dirname(here), here]).stdout)
    assert len({r[0] for r in rows}) > 1  # the sizes did vary
    assert all(r[1:] == [True, True, True] for r in rows), rows


class DynamicRows(torch.nn.Module):
    """A program whose sizes follow two Dims (the rows of x, and of y): a buffer updated
    in place (BatchNorm's statistics), a flatten (2 * rows), a concatenation of both
    (rows + more), a slice returned as a view of the caller's input, a size used as a
    number, a custom autograd.Function."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.norm = torch.nn.BatchNorm1d(4)

    def forward(self, x, y):
        h = self.lin(self.norm(x))  # (a Linear before a BatchNorm gets a bias gradient of 0 +- rounding)
        flat = h[:, :2].reshape(-1).softmax(0) * x.shape[0]
        both = torch.cat([StraightThrough.apply(h * 4), y], 0).cumsum(0)
        return flat, both, x[1:]


# rows from 1: a BatchNorm in training refuses one row in eager, and ``x[1:]`` of one row
# is a size torch.export treats apart (it guards ``rows - 1 != 1``), so capture narrows
# the Dim to 3..64 (with a warning); "more" keeps its 1
DYNAMIC_ROWS = {"x": {0: torch.export.Dim("rows", min=1, max=64)}, "y": {0: torch.export.Dim("more", min=1, max=8)}}


@pytest.mark.parametrize("backend", ["eager", pytest.param("aoti", marks=pytest.mark.slow)])
def test_dims_in_a_training_package_train_as_eager_at_every_size(tmp_path, backend):
    """Training packages compile dynamic shapes as torch.compile's dynamic=True does: one
    forward and backward for every size the Dims allow; a size outside is a GuardError."""
    torch.manual_seed(0)
    m, ref = DynamicRows(), DynamicRows()
    ref.load_state_dict(m.state_dict())
    example = (torch.randn(5, 4, requires_grad=True), torch.randn(3, 4, requires_grad=True))
    with pytest.warns(SpecializationWarning, match=r"rows runs 3\.\.64 of the 1\.\.64 asked\)") as seen:
        fn = compile_load(m, example, tmp_path, backend=backend, dynamic=DYNAMIC_ROWS)
    assert not any("more runs" in str(w.message) for w in seen)  # narrowed: rows alone
    for rows, more in ((3, 2), (7, 1), (64, 8), (5, 3)):
        got, want = [], []
        for run, module, out in ((fn, m, got), (ref, ref, want)):
            g = torch.Generator().manual_seed(rows * 10 + more)
            x, y = (torch.randn(rows, 4, generator=g).requires_grad_(), torch.randn(more, 4, generator=g).requires_grad_())
            outs = run(x, y)
            sum((k + 1) * o.square().sum() for k, o in enumerate(outs)).backward()
            out += [*outs, x.grad, y.grad, *(p.grad for p in module.parameters()), *module.norm.buffers()]
            module.zero_grad()
            assert outs[2].data_ptr() == x[1:].data_ptr()  # a view of the caller's x, as eager's
        assert [t.shape for t in got] == [t.shape for t in want]
        for a, b in zip(got, want):  # (float32 sums of squares reach 1e6: tolerances by each tensor's scale)
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * max(1.0, float(b.abs().max())))
    for rows in (65, 2, 1):  # (eager's BatchNorm refuses 1 row too)
        with pytest.raises(aotpack.GuardError, match=rf"args\[0\]\.shape\[0\]: expected rows in 3\.\.64, got {rows}"):
            fn(torch.randn(rows, 4), torch.randn(2, 4))


@pytest.mark.parametrize("backend", ["eager", pytest.param("aoti", marks=pytest.mark.slow)])
def test_an_example_batch_of_one_trains_as_eager_at_every_batch(backend):
    """A training package compiled from a batch of one, with a Dim from 1: traced
    size-obliviously, its forward and backward run every batch of the Dim (until
    2026-12-07 the batch of one alone, with a warning). AOTInductor compiles them as for
    a batch of 2: its code for the 1 gave other outputs and gradients at batch 2, silently,
    when first tried."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpecializationWarning)
        pkg = aotpack.compile(model, (torch.randn(1, 8, requires_grad=True),), backend=backend, train=True,
                              dynamic={"input": {0: aotpack.Dim("batch", min=1, max=64)}})
    fn = aotpack.load(pkg.to_bytes(), module=model)
    for batch in (1, 2, 9):
        x = torch.randn(batch, 8, requires_grad=True)
        results = []
        for run in (fn, model):
            out = run(x)
            out.square().sum().backward()
            results.append([out.detach(), x.grad, *(p.grad for p in model.parameters())])
            x.grad = None
            model.zero_grad()
        for got, want in zip(*results):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


class ViewsOfRows(torch.nn.Module):
    """Views whose sizes follow a Dim: of another output (``h.t()``, ``h[1:]``), of an
    intermediate no output is (``(h * 3).t()``), of an input the program updates
    (``y[1:]`` after ``y.add_(1)``)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(6, 6)

    def forward(self, x, y):
        y.add_(1)
        h = self.lin(x)
        return h, h.t(), h[1:], (h * 3).t(), y[1:]


def test_views_sized_by_dims_in_a_training_package_are_views_as_in_eager(tmp_path):
    torch.manual_seed(0)
    m, ref = ViewsOfRows(), ViewsOfRows()
    ref.load_state_dict(m.state_dict())
    rows = torch.export.Dim("rows", min=2, max=16)
    pkg = aotpack.compile(m, (torch.randn(4, 6, requires_grad=True), torch.zeros(4, 6)), train=True,
                          backend="eager", dynamic={"x": {0: rows}, "y": {0: rows}})
    assert pkg.manifest.format_version == 9  # older readers cannot evaluate the views' sizes
    fn = aotpack.load(pkg.save(tmp_path / "views.aot"), module=m)
    # (``h[1:]`` of two rows is one row, a size torch.export treats apart: 2 is refused)
    with pytest.raises(aotpack.GuardError, match=r"expected rows in 3\.\.16, got 2"):
        fn(torch.randn(2, 6, requires_grad=True), torch.zeros(2, 6))
    for n in (3, 7):
        got, want = [], []
        for run, module, out in ((fn, m, got), (ref, ref, want)):
            x, y = torch.randn(n, 6, generator=torch.Generator().manual_seed(n)).requires_grad_(), torch.zeros(n, 6)
            outs = run(x, y)
            sum((k + 1) * o.square().sum() for k, o in enumerate(outs)).backward()
            assert outs[1].data_ptr() == outs[0].data_ptr() and outs[2].data_ptr() == outs[0][1:].data_ptr()
            assert outs[4].data_ptr() == y[1:].data_ptr()
            out += [*outs, x.grad, y, module.lin.weight.grad]
            module.zero_grad()
        for a, b in zip(got, want):
            assert a.shape == b.shape and a.stride() == b.stride()
            torch.testing.assert_close(a, b)


@pytest.mark.skipif(TORCH_BEFORE_2_13, reason="torch 2.11's export narrows the length to the example's 8 (a "
                                              "SpecializationWarning; other lengths are GuardErrors)")
def test_a_transformers_model_trains_at_every_sequence_length_from_one_package(tmp_path):
    """Code we did not write: a transformers Llama's loss over a Dim of the sequence
    length, one training package, eager's loss and gradients at other lengths."""
    import transformers

    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).train()

    class Loss(torch.nn.Module):
        def __init__(self, lm):
            super().__init__()
            self.lm = lm

        def forward(self, ids):
            return self.lm(input_ids=ids, labels=ids, use_cache=False).loss

    program = Loss(model)
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    pkg = aotpack.compile(program, (ids,), train=True, backend="eager",
                          dynamic={"ids": {1: torch.export.Dim("length", min=2, max=64)}})
    fn = aotpack.load(pkg.save(tmp_path / "llama.aot"), module=program, allow_modules=["transformers"])
    for length in (3, 17, 64):
        ids = torch.randint(0, 64, (2, length), generator=torch.Generator().manual_seed(length))
        loss = fn(ids)
        loss.backward()
        grads = [p.grad.clone() for p in program.parameters()]
        program.zero_grad()
        want = program(ids)
        want.backward()
        torch.testing.assert_close(loss, want)
        for g, p in zip(grads, program.parameters()):
            torch.testing.assert_close(g, p.grad)
        program.zero_grad()


class OutputViews(torch.nn.Module):
    """Outputs that are views of other outputs and of intermediates, as torch.compile
    returns them: ``h`` beside ``h.t()`` and ``h[1:]`` (one memory), a transposed
    intermediate returned alone, an expand of one (stride 0), two views of one hidden
    intermediate."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(6, 6)

    def forward(self, x):
        h = self.lin(x)
        g = (x * 2).tanh()
        return h, h.t(), h[1:], (h * 3).t(), g.unsqueeze(0).expand(2, 4, 6), (x + 1)[:, 1:], (x + 1)[1:]


class OutputViewsThroughFunction(OutputViews):
    """The same views, of values a custom autograd.Function made (its own backward: the
    gradient tripled): the joint graph is traced from the program itself, whose hidden
    intermediates are found by autograd's view tracking (refused until 2026-12-04)."""

    def forward(self, x):
        h = StraightThrough.apply(self.lin(x))
        g = StraightThrough.apply(x * 2).tanh()
        return h, h.t(), h[1:], (h * 3).t(), g.unsqueeze(0).expand(2, 4, 6), (x + 1)[:, 1:], (x + 1)[1:]


CALLS_OUTPUT_VIEWS = r"""
import json, sys, torch, aotpack
sys.path[:0] = [sys.argv[2], sys.argv[3]]  # (tests/ first: the root's conftest.py is Sybil's)
import test_training
OutputViews = getattr(test_training, sys.argv[4])
torch.manual_seed(0)
m, ref = OutputViews(), OutputViews()
ref.load_state_dict(m.state_dict())
fn = aotpack.load(sys.argv[1], module=m)
x, x_ref = torch.randn(4, 6, requires_grad=True), None
x_ref = x.detach().clone().requires_grad_()
got, want = fn(x), ref(x_ref)
row = {"values": all(torch.equal(a, b) for a, b in zip(got, want)),
       "strides": [list(a.stride()) for a in got] == [list(b.stride()) for b in want],
       # which outputs share memory with which, as in eager
       "sharing": [[a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr() for b in got] for a in got]
                  == [[a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr() for b in want] for a in want]}
sum((k + 1) * o.sum() for k, o in enumerate(got)).backward()
sum((k + 1) * o.sum() for k, o in enumerate(want)).backward()
row["grads"] = torch.allclose(x.grad, x_ref.grad) and torch.allclose(m.lin.weight.grad, ref.lin.weight.grad)
with torch.no_grad():
    got[0][0, 0] = 100.0  # a write to h shows through h.t(), as in eager
row["write_through"] = got[1][0, 0].item() == 100.0
print(json.dumps(row))
"""


@pytest.mark.parametrize("backend, program", [
    ("eager", OutputViews),  # aoti: test_everything_eager_runs_in_one_aoti_training_package
    ("eager", OutputViewsThroughFunction),
    pytest.param("aoti", OutputViewsThroughFunction, marks=pytest.mark.slow)])
def test_outputs_that_are_views_of_outputs_and_intermediates_train_as_eager(tmp_path, backend, program):
    """AOT autograd's simple export refuses outputs that alias other outputs or
    intermediates; torch.compile regenerates them from their base. So does a training
    package: the base is an output (or a hidden one), the view rebuilt from it after the
    compiled forward, so memory sharing, strides and gradients are eager's (format 6)."""
    torch.manual_seed(0)
    m = program()
    path = aotpack.compile(m, (torch.randn(4, 6, requires_grad=True),), train=True, backend=backend).save(
        tmp_path / "views.aot")
    assert aotpack.inspect(path).manifest.format_version == 6
    here = os.path.dirname(os.path.abspath(__file__))
    row = json.loads(run_fresh(["-c", CALLS_OUTPUT_VIEWS, str(path), os.path.dirname(here), here,
                                program.__name__]).stdout)
    assert row == {"values": True, "strides": True, "sharing": True, "grads": True, "write_through": True}, row


class DecaysUnderNoGrad(torch.nn.Module):
    """A parameter updated in place where autograd does not see it (weight decay inside
    the forward): eager's gradient is that of the updated value."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x):
        with torch.no_grad():
            self.lin.weight.mul_(0.5)
        return self.lin(x).tanh()


@pytest.mark.parametrize("backend", ["eager"])  # (AOTInductor: EverythingEagerRuns updates its parameter so)
def test_a_parameter_updated_under_no_grad_trains_as_eager(tmp_path, backend):
    torch.manual_seed(0)
    m, ref = DecaysUnderNoGrad(), DecaysUnderNoGrad()
    ref.load_state_dict(m.state_dict())
    x = torch.randn(3, 4)
    path = aotpack.compile(m, (x,), train=True, backend=backend).save(tmp_path / "decay.aot")
    bound = DecaysUnderNoGrad()
    bound.load_state_dict(ref.state_dict())
    fn = aotpack.load(path, module=bound)
    for _ in range(3):  # the updates compound, the gradients accumulate
        got, want = fn(x), ref(x)
        got.sum().backward()
        want.sum().backward()
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        torch.testing.assert_close(bound.lin.weight, ref.lin.weight, rtol=0, atol=0)
        torch.testing.assert_close(bound.lin.weight.grad, ref.lin.weight.grad)
        torch.testing.assert_close(bound.lin.bias.grad, ref.lin.bias.grad)


def doubles_its_input(x, w):
    x.mul_(2)
    return (x * w).sum()


@pytest.mark.parametrize("backend", ["eager"])  # aoti: test_everything_eager_runs_in_one_aoti_training_package
def test_an_input_that_requires_grad_updated_in_place_trains_as_eager(tmp_path, backend):
    """Eager accepts an in-place update of a tensor that requires grad and is no leaf;
    the caller's tensor then carries the update's history. So with a package: the
    update is replayed through autograd, and gradients through the updated input and
    through the result both reach the leaf."""
    torch.manual_seed(0)
    leaf, w = torch.randn(2, 4, requires_grad=True), torch.randn(2, 4, requires_grad=True)
    fn = aotpack.load(aotpack.compile(doubles_its_input, (leaf * 1, w), train=True, backend=backend)
                      .save(tmp_path / "double.aot"))
    grads = []
    for run in (fn, doubles_its_input):
        a, b = leaf.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
        x = a * 3
        loss = run(x, b)
        (loss + (x ** 2).sum()).backward()  # x is the updated tensor
        grads.append((loss, x.detach(), a.grad, b.grad))
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want)


def updates_beside_hidden_updates(x, buf):
    with torch.no_grad():
        buf.add_(1)
    x.mul_(2)
    return (x * buf).sum()


def hidden_update_of_x(x, buf):
    with torch.no_grad():
        x.mul_(2)
    return (x * x).sum() + buf.sum()


def copy_under_no_grad(x, buf):
    with torch.no_grad():
        buf.copy_(x * 2)
    return (buf * x).sum()


def decays_a_leaf(w, x):
    with torch.no_grad():  # as an optimizer's step: eager allows it for a leaf that requires grad
        w.mul_(0.5)
    return (w * x).sum()


def test_a_leaf_input_updated_inside_no_grad_trains_as_eager(tmp_path):
    w, x = torch.randn(3, requires_grad=True), torch.randn(3, requires_grad=True)
    fn = aotpack.load(aotpack.compile(decays_a_leaf, (w, x), train=True, backend="eager").save(tmp_path / "d.aot"))
    results = []
    for run in (fn, decays_a_leaf):
        a, b = w.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
        run(a, b).backward()
        results.append((a.detach(), a.grad, b.grad, a.is_leaf))
    for got, want in zip(*results):
        assert got == want if isinstance(got, bool) else torch.equal(got, want)


def test_an_input_updated_with_grad_on_and_inside_no_grad_is_refused():
    """Eager keeps the first update in x's history and hides the second: one update
    replayed per input cannot give both (the gradient would be scaled by the second)."""
    def both_modes(x):
        x.mul_(2)
        with torch.no_grad():
            x.mul_(3)
        return (x * x).sum()

    with pytest.raises(aotpack.CaptureError, match=r"changes input x, which requires grad, in place both with grad mode on and inside"):
        aotpack.compile(both_modes, (torch.randn(3, requires_grad=True) * 1,), train=True, backend="eager")


@pytest.mark.parametrize("program", [updates_beside_hidden_updates, hidden_update_of_x, copy_under_no_grad])
def test_inputs_updated_inside_no_grad_train_as_eager(tmp_path, program):
    """Updates of inputs inside torch.no_grad() are hidden from autograd, as in eager:
    later uses get the new value and pass gradients on unchanged, and the caller's
    tensor changes without a new history; beside them, an update with grad on of an
    input that requires grad is replayed through autograd."""
    leaf = torch.randn(3, requires_grad=True)
    fn = aotpack.load(aotpack.compile(program, (leaf * 1, torch.zeros(3)), train=True, backend="eager")
                      .save(tmp_path / "u.aot"))
    results = []
    for run in (fn, program):
        a, buf = leaf.detach().clone().requires_grad_(), torch.zeros(3)
        x = a * 3
        history = x.grad_fn
        loss = run(x, buf)
        (loss + (x ** 2).sum()).backward()
        results.append((loss, x.detach(), buf, a.grad, x.grad_fn is history))  # (a hidden update keeps it)
    for got, want in zip(*results):
        if isinstance(got, bool):
            assert got == want
        else:
            torch.testing.assert_close(got, want)


def counts_and_shows(x, y):
    y.add_(1)
    return x * 2, y[1:], y.t()


@pytest.mark.parametrize("backend", ["eager"])  # aoti: test_everything_eager_runs_in_one_aoti_training_package
def test_views_of_an_updated_input_are_views_of_the_callers_tensor(tmp_path, backend):
    """``y.add_(1); return y[1:]`` in a training package: the caller's y is updated and
    the outputs are views of it, as eager returns them (found by the fuzzer, seed 2)."""
    x = torch.randn(3, 4, requires_grad=True)
    fn = aotpack.load(aotpack.compile(counts_and_shows, (x, torch.zeros(3, 4)), train=True, backend=backend)
                      .save(tmp_path / "shows.aot"))
    y, y_ref = torch.zeros(3, 4), torch.zeros(3, 4)
    got, want = fn(x, y), counts_and_shows(x, y_ref)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
        assert a.stride() == b.stride()
    torch.testing.assert_close(y, y_ref)
    assert got[1].data_ptr() == y[1:].data_ptr() and got[2].data_ptr() == y.data_ptr()
    got[1].zero_()  # written through the view, as eager
    assert not y[1:].any()


class EverythingEagerRuns(torch.nn.Module):
    """The patterns above in one program, so one AOTInductor compile checks them: an
    input that requires grad updated in place, a view of an updated input, outputs that
    view outputs and intermediates, and inside torch.no_grad() a parameter and an input
    updated (hidden from autograd) and a value computed (no gradient through it)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(6, 6)

    def forward(self, x, y):
        x.mul_(2)
        y.add_(1)
        with torch.no_grad():
            self.lin.weight.mul_(0.5)
            y.add_(x.sum())
            s = x.mean()
        h = self.lin(x) * s
        return h, h.t(), (h * 3).t(), h.tanh().unsqueeze(0).expand(2, 4, 6), y[1:]


@pytest.mark.slow
def test_everything_eager_runs_in_one_aoti_training_package(tmp_path):
    torch.manual_seed(0)
    m, ref = EverythingEagerRuns(), EverythingEagerRuns()
    ref.load_state_dict(m.state_dict())
    leaf = torch.randn(4, 6, requires_grad=True)
    path = aotpack.compile(m, (leaf * 1, torch.zeros(4, 6)), train=True, backend="aoti").save(tmp_path / "all.aot")
    bound = EverythingEagerRuns()
    bound.load_state_dict(ref.state_dict())
    fn = aotpack.load(path, module=bound)
    for _ in range(2):
        results = []
        for run, module in ((fn, bound), (ref, ref)):
            a, y = leaf.detach().clone().requires_grad_(), torch.zeros(4, 6)
            x = a * 1
            outs = run(x, y)
            (sum((k + 1) * o.sum() for k, o in enumerate(outs)) + (x ** 2).sum()).backward()
            results.append((outs, x.detach(), y, a.grad, module.lin.weight.detach().clone(),
                            module.lin.weight.grad.clone()))
        (got, *got_rest), (want, *want_rest) = results
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w)
            assert g.stride() == w.stride()
        for g, w in zip(got_rest, want_rest):
            torch.testing.assert_close(g, w)
        assert got[1].data_ptr() == got[0].data_ptr() and got[4].data_ptr() == results[0][2][1:].data_ptr()


def test_a_program_nothing_of_which_requires_grad_is_compiled_as_its_forward(tmp_path):
    """train=True for a frozen model: eager runs the forward alone, so does the package."""
    m = torch.nn.Linear(4, 3).requires_grad_(False)
    x = torch.randn(2, 4)
    with pytest.warns(UserWarning, match="no output of Linear requires grad.*forward alone"):
        pkg = aotpack.compile(m, (x,), train=True, backend="eager")
    assert pkg.manifest.variants[0].train is None
    fn = aotpack.load(pkg.save(tmp_path / "frozen.aot"), module=m)
    torch.testing.assert_close(fn(x), m(x))
    with pytest.raises(aotpack.errors.NothingToDifferentiate):  # the joint capture itself says why
        autograd.capture_joint(m, (x,))


class ArgmaxOfTiedHead(torch.nn.Module):
    """Parameters that require grad, used only under no_grad (a tied embedding and head),
    beside a torch.func transform (so capture traces below torch.export: desugar.py)."""

    def __init__(self):
        super().__init__()
        self.emb, self.head = torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids, x):
        with torch.no_grad():
            slope = torch.func.grad(lambda t: t.sin().sum())(x)
            return self.head(self.emb(ids) + slope).argmax(-1)


class TiedBesideTransform(ArgmaxOfTiedHead):
    """The same tied weight, differentiated."""

    def forward(self, ids, x):
        slope = torch.func.grad(lambda t: t.sin().sum())(x)
        return self.head(self.emb(ids) + slope)


def test_a_tied_weight_beside_a_transform_trains_as_eager_bound_and_alone(tmp_path):
    """A training program traced from itself (a torch.func transform) with a tied weight:
    its two names are two primals, each with its share of the gradient, summed on the one
    tensor (until 2026-12-05 compile raised torch's raw ValueError "functional_call got
    multiple values for keys which are tied")."""
    torch.manual_seed(0)
    m, ids, x = TiedBesideTransform(), torch.randint(0, 10, (3,)), torch.randn(3, 4)
    ref = TiedBesideTransform()
    ref.load_state_dict(m.state_dict())
    package = aotpack.compile(m, (ids, x), train=True, backend="eager").to_bytes()
    ref(ids, x).square().sum().backward()
    aotpack.load(package, module=m)(ids, x).square().sum().backward()
    torch.testing.assert_close(m.emb.weight.grad, ref.emb.weight.grad)
    alone = aotpack.load(package)
    alone(ids, x).square().sum().backward()
    (name, own), = alone.named_parameters()
    assert name == "emb.weight"
    torch.testing.assert_close(own.grad, ref.emb.weight.grad)


def test_a_program_that_differentiates_nothing_takes_what_it_detaches_under_grad_mode(tmp_path):
    """train=True where no output requires grad although parameters and an input do (the
    program uses them under no_grad): the forward alone, which takes them requiring grad
    under grad mode, as eager builds no graph of them (both names of a tied weight); a
    GuardError until 2026-12-05, where that is known only from the training compile."""
    m, ids, x = ArgmaxOfTiedHead(), torch.randint(0, 10, (3,)), torch.randn(3, 4, requires_grad=True)
    with pytest.warns(UserWarning, match="forward alone"):
        pkg = aotpack.compile(m, (ids, x), train=True, backend="eager")
    variant = pkg.manifest.variants[0]
    assert variant.train is None and variant.detached_weights == ["emb.weight", "head.weight"]
    fn = aotpack.load(pkg.save(tmp_path / "t.aot"), module=m)
    got, want = fn(ids, x), m(ids, x)
    assert torch.equal(got, want) and got.requires_grad == want.requires_grad == False  # noqa: E712


def _doubles_and_views(x, w):
    x.mul_(2)
    return x[:, :2], (x * w).sum()


@pytest.mark.parametrize("dynamic", [False, True], ids=["static", "dims"])
def test_an_updated_input_an_output_views_called_in_another_layout_trains_as_eager(dynamic):
    """The program updates ``x`` and returns a view of it; called with a transposed ``x``:
    no copy in the compiled layout can be that view, so the call runs the package's
    portable program on the caller's tensor (its graph in the program's order), with
    autograd on: eager's view, update and gradient (until 2026-12-06 a GuardError)."""
    from aotpack import Dim

    w = torch.randn(1, requires_grad=True)
    dims = {"x": {0: Dim("n", min=2, max=16)}} if dynamic else None
    fn = aotpack.load(aotpack.compile(_doubles_and_views, (torch.randn(4, 3), w), train=True, backend="eager",
                                      dynamic=dims).to_bytes())
    base = torch.randn(3, 4)
    mine, theirs = base.clone().t(), base.clone().t()
    w1, w2 = w.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    with pytest.warns(aotpack.PortableRunWarning):
        got = fn(mine, w1)
    want = _doubles_and_views(theirs, w2)
    torch.testing.assert_close(got, want)
    assert torch.equal(mine, theirs) and got[0]._base is mine._base
    got[1].backward()
    want[1].backward()
    torch.testing.assert_close(w1.grad, w2.grad)


def scales_its_gradient(x):
    h = x * 2
    h.register_hook(lambda g: g * 10)  # (eager's backward multiplies the gradient through h)
    return h.sum()


class HooksItsActivation(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)

    def forward(self, x):
        h = self.lin(x)
        h.register_hook(lambda g: g.clamp(max=0.1))
        return h.sum()


def retains_its_gradient(x):
    h = x * 2
    h.retain_grad()  # (eager fills the returned h's .grad in backward)
    return h


@pytest.mark.parametrize("program", [scales_its_gradient, HooksItsActivation(), retains_its_gradient])
def test_a_hook_the_program_registers_on_a_tensor_is_refused_in_training(program):
    """``h.register_hook(...)`` or ``h.retain_grad()`` inside the program: eager's backward
    runs the hook, or fills ``h.grad``; a training package's compiled backward cannot
    (torch.export keeps neither). Refused at compile naming the line (until 2026-12-07
    the package's gradients left the hook out, silently: 2s where eager gives 20s, and
    a returned tensor's ``.grad`` stayed None)."""
    x = torch.randn(2, 3, requires_grad=True)
    with pytest.raises(aotpack.CaptureError, match=r"registers a hook on a tensor at .*test_training.py:\d+"):
        aotpack.compile(program, (x,), train=True, backend="eager")
