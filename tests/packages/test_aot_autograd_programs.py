"""Programs of the kinds PyTorch's own test/dynamo/test_aot_autograd.py runs through
torch.compile (each test here is named after the test it follows, rewritten as a small
program of the same pattern): packaged, loaded in a fresh process, and equal to eager in
outputs, output aliasing and in-place effects on the caller's tensors."""

import json
import os

import pytest
import torch

import aotpack
from conftest import TORCH_BEFORE_2_13, run_fresh
from programs import GradInputsAliasInputs

HERE = os.path.dirname(os.path.abspath(__file__))  # the child imports this module's programs


def _add_with_grad_off(param, y):
    """``param.add_(y)`` with grad mode switched off by hand and restored, as the tests write it."""
    before = torch.is_grad_enabled()
    try:
        torch.set_grad_enabled(False)
        param.add_(y)
    finally:
        torch.set_grad_enabled(before)


def mutation(param, y):
    """test_mutation: an input updated in place under grad mode off, restored after."""
    _add_with_grad_off(param, y)
    return y * 2


def mutation1(stack, scores):
    """test_mutation1: a slice of an input assigned from another input; a view returned."""
    stack[:, :-1, :, 4:] = scores[:, :, :4, :5]
    return (stack.view(1, 6, 16, 9),)


def negative_testing(x, y):
    """test_negative_testing: an in-place op on an intermediate, not an input."""
    return torch.sin(x).add_(y)


def arg_dupe(a, b):
    """test_arg_dupe_via_dynamo_recompiles: two inputs truncated in place."""
    a = a.trunc_()
    b = b.trunc_()
    return (a + b,)


class ArgDupeParam(torch.nn.Module):
    """test_arg_dupe_via_dynamo_recompiles_many_args_param: the same, plus a parameter."""

    def __init__(self):
        super().__init__()
        self.mean = torch.nn.Parameter(torch.randn(3, 3))

    def forward(self, a, b):
        a.trunc_()
        b.trunc_()
        return a + b + self.mean


class SomeBadFwd(torch.nn.Module):
    """test_call_fn_with_non_const_inputs_aot_unsafe: a method that updates an input
    under grad mode off and returns another."""

    def _some_bad_fwd(self, param, y):
        _add_with_grad_off(param, y)
        return y

    def forward(self, x, y):
        return self._some_bad_fwd(x, y)


def returns_updated(a, b):
    """An input updated in place and returned: eager returns the caller's tensor itself."""
    return a.mul_(b)


class LSTM(torch.nn.Module):
    """test_LSTM: a two-layer bidirectional LSTM on an input in a permuted layout."""

    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(8, 8, num_layers=2, bidirectional=True)

    def forward(self, permute):
        return (self.lstm(permute),)


def permuted(g):
    """A (12, 4, 8) input with LSTM test's kind of strides (its batch dimension outermost)."""
    return torch.randn(4, 8, 12, generator=g).permute(2, 0, 1)


def negative_testing_mutation(stack, scores):
    """test_negative_testing_mutation: a slice of an intermediate assigned, a view returned."""
    stack = torch.sin(stack)
    stack[:, :-1, :, 4:] = scores[:, :, :4, :5]
    return (stack.view(1, 6, 16, 9),)


class ConvSpecialFwd(torch.nn.Module):
    """test_call_fn_with_non_const_inputs_aot_safe: a conv through ``_conv_forward``."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 20, (5, 5))

    def forward(self, x):
        return self.conv._conv_forward(x, self.conv.weight, self.conv.bias)


def arg_dupe_many_args(a, b, c, d):
    """test_arg_dupe_via_dynamo_recompiles_many_args: four inputs truncated in place."""
    a.trunc_()
    b.trunc_()
    c.trunc_()
    d.trunc_()
    return (a + b + c + d,)


class ArgDupeNonTensor(ArgDupeParam):
    """test_arg_dupe_via_dynamo_recompiles_many_args_param_non_tensor_arg: ints beside."""

    def forward(self, a, b, e, f):
        return super().forward(a, b) * e * f


GLOBAL_Z = torch.randn(3, 3, generator=torch.Generator().manual_seed(5))


class ArgDupeGlobal(ArgDupeParam):
    """test_arg_dupe_via_dynamo_recompiles_many_with_global: a module global read too."""

    def forward(self, a, b, e, f):
        return (super().forward(a, b) + GLOBAL_Z) * e * f


class ArgDupeList(ArgDupeParam):
    """test_arg_dupe_via_dynamo_recompiles_many_args_param_non_tensor_arg_list: lists of ints."""

    def forward(self, e, f, a, b):
        return super().forward(a, b) * e[0] * f[0]


def alias_inputs():
    """test_alias_inputs: no inputs; a view of a tensor made inside, written through."""
    a = torch.tensor([1])[0:1]
    b = a.squeeze()
    a[0] = 0
    a[0] = 2
    return b


class LinearOn3d(torch.nn.Module):
    """test_aot_export_joint_simple_repro: a Linear on a 3-d input."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(5, 7)

    def forward(self, x):
        return self.linear(x)


def expand_mutation_functionalizes(x):
    """test_aot_autograd_expand_mutation_functionalizes: an update through an expand of an input."""
    y = x.expand(3, *x.shape)
    y[0, 0].add_(5)
    return y


def overlapping_no_mutation(a, b):
    """test_no_storage_overlap_guards_no_mutation: overlapping inputs, read only."""
    return a + b


def add_one_to_each(a, b):
    """test_no_storage_overlap_guards_no_aliasing: two inputs updated, returning one."""
    a.add_(1)
    b.add_(1)
    return a


def examples():
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g) * 3  # noqa: E731
    torch.manual_seed(0)  # the modules' initial weights
    base = torch.arange(20)
    return {
        "mutation": (mutation, (r(4), r(4))),
        "mutation1": (mutation1, (r(6, 4, 4, 9), r(6, 3, 8, 9))),
        "negative_testing": (negative_testing, (r(4), r(4))),
        "arg_dupe": (arg_dupe, (r(3, 3), r(3, 3))),
        "arg_dupe_param": (ArgDupeParam(), (r(3, 3), r(3, 3))),
        "some_bad_fwd": (SomeBadFwd(), (r(4), r(4))),
        "returns_updated": (returns_updated, (r(5), r(5))),
        "LSTM": (LSTM(), (permuted(g),)),
        "negative_testing_mutation": (negative_testing_mutation, (r(6, 4, 4, 9), r(6, 3, 8, 9))),
        "call_fn_with_non_const_inputs_aot_safe": (ConvSpecialFwd(), (r(3, 10, 10),)),
        "arg_dupe_many_args": (arg_dupe_many_args, (r(3, 3), r(3, 3), r(3, 3), r(3, 3))),
        "arg_dupe_non_tensor_arg": (ArgDupeNonTensor(), (r(3, 3), r(3, 3), 2, 3)),
        "arg_dupe_many_with_global": (ArgDupeGlobal(), (r(3, 3), r(3, 3), 2, 3)),
        "arg_dupe_non_tensor_arg_list": (ArgDupeList(), ([3, 2, 1], [4, 5, 6], r(3, 3), r(3, 3))),
        "alias_inputs": (alias_inputs, ()),
        "aot_export_joint_simple_repro": (LinearOn3d(), (r(3, 4, 5),)),
        "expand_mutation_functionalizes": (expand_mutation_functionalizes, (torch.arange(6),)),
        "no_storage_overlap_guards_no_mutation": (overlapping_no_mutation, (base[:10], base[5:15])),
        "no_storage_overlap_guards_no_aliasing": (add_one_to_each, (torch.arange(20)[:10], torch.arange(20)[5:15])),
    }


CHILD = r"""
import json, os, sys, torch, aotpack
sys.path[:0] = sys.argv[2].split(os.pathsep)  # this folder, then tests/ (its conftest, before the root's)
from test_aot_autograd_programs import examples
results = {}
for name, (program, args) in examples().items():
    if not os.path.exists(f"{sys.argv[1]}/{name}.aot"):
        continue
    if isinstance(program, torch.nn.Module):
        program.requires_grad_(False)  # an inference package: eager would build no graph either
    fn = aotpack.load(f"{sys.argv[1]}/{name}.aot", module=program if isinstance(program, torch.nn.Module) else None)
    clone = lambda a: a.clone() if isinstance(a, torch.Tensor) else a  # noqa: E731
    mine, theirs = [clone(a) for a in args], [clone(a) for a in args]
    got, want = fn(*mine), program(*theirs)
    flat = lambda o: [t for x in o for t in flat(x)] if isinstance(o, (tuple, list)) else [o]  # noqa: E731
    got_flat, want_flat = flat(got), flat(want)
    results[name] = {
        # (float outputs within torch.testing's float tolerance: a decomposed LSTM rounds otherwise)
        "outputs": len(got_flat) == len(want_flat) and all(
            a.dtype == b.dtype and a.shape == b.shape and a.stride() == b.stride()
            and (torch.allclose(a, b, rtol=1.3e-6, atol=1e-5) if a.is_floating_point() else torch.equal(a, b))
            for a, b in zip(got_flat, want_flat)),
        "inputs_after": all(torch.equal(a, b) for a, b in zip(mine, theirs) if isinstance(a, torch.Tensor)),
        "aliasing": [any(o is a for a in mine) for o in got_flat] == [any(o is a for a in theirs) for o in want_flat]
        and [any(o.untyped_storage().data_ptr() == a.untyped_storage().data_ptr() for a in mine
                 if isinstance(a, torch.Tensor)) for o in got_flat]
        == [any(o.untyped_storage().data_ptr() == a.untyped_storage().data_ptr() for a in theirs
                if isinstance(a, torch.Tensor)) for o in want_flat],
    }
print(json.dumps(results))
"""


# With aoti too: the programs that update tensors in place (compiled code writing into the
# caller's tensors); the pure ones are what every other aoti test compiles. (Not arg_dupe
# and arg_dupe_many_with_global, whose updates arg_dupe_param makes too, nor
# negative_testing_mutation, which updates an intermediate as mutation1 updates an input,
# nor mutation and some_bad_fwd, whose updates under grad mode off are mutation1's and
# returns_updated's to compiled code (grad mode is replayed around any backend), nor
# no_storage_overlap_guards_no_aliasing, which test_overlapping_inputs_updated_in_place_equal_eager
# compiles with aoti: ~5 s an AOTInductor compile, and the suite has a 15-minute budget.)
IN_PLACE = {"mutation1", "arg_dupe_param", "returns_updated", "expand_mutation_functionalizes"}


@pytest.mark.parametrize("backend", ["eager", pytest.param("aoti", marks=pytest.mark.slow)])
def test_programs_of_test_aot_autograd_package_and_equal_eager(tmp_path, backend):
    names = set(examples()) if backend == "eager" else IN_PLACE
    for name, (program, args) in examples().items():
        if name in names:
            args = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)
            aotpack.compile(program, args, backend=backend).save(tmp_path / f"{name}.aot")
    out = run_fresh(["-c", CHILD, str(tmp_path), os.pathsep.join([HERE, os.path.dirname(HERE)])])
    results = json.loads(out.stdout.strip().splitlines()[-1])
    bad = {n: r for n, r in results.items() if not all(r.values())}
    assert not bad, bad
    assert set(results) == names


def test_an_updated_input_in_another_layout_or_passed_twice_equals_eager(tmp_path):
    """The compiled code writes into the tensor it is given: one in another layout is
    copied into the compiled layout and the update copied back after the run (as
    torch.compile's functionalization epilogue writes inputs back); the same tensor
    passed twice runs the package's portable program on it. Both as eager."""
    fn = aotpack.load(aotpack.compile(arg_dupe, (torch.randn(3, 3), torch.randn(3, 3)), backend="eager")
                      .save(tmp_path / "a.aot"))
    mine, other = torch.randn(3, 3) * 3, torch.randn(3, 3) * 3
    theirs, other_theirs = mine.clone(), other.clone()
    (got,) = fn(mine.t(), other)  # a transposed view of mine: updated through the copy's write-back
    (want,) = arg_dupe(theirs.t(), other_theirs)
    assert torch.equal(got, want) and torch.equal(mine, theirs) and torch.equal(other, other_theirs)
    with pytest.raises(aotpack.GuardError, match=r"args\[0\].stride\(\): expected contiguous \(the program changes "
                                                 r"it in place"):
        fn(torch.randn(1, 3).expand(3, 3), torch.randn(3, 3))  # one element for many: no copy can be written back
    with pytest.warns(aotpack.PortableRunWarning, match="shares memory with b"):
        (got,) = fn(mine, mine)
    (want,) = arg_dupe(theirs, theirs)
    assert torch.equal(got, want) and torch.equal(mine, theirs)


# Training packages: programs of the file whose inputs or parameters require grad.

def grad_inputs_alias_inputs(x, y):
    """test_grad_inputs_alias_inputs: the Function's output is its input y."""
    return GradInputsAliasInputs.apply(x, y)


class CopiesGradIntoGrad(torch.autograd.Function):
    """test_autograd_function_tangent_mutation: a backward that writes into its grad."""

    @staticmethod
    def forward(ctx, x):
        return x.clone(), x.clone()

    @staticmethod
    def backward(ctx, grad1, grad2):
        return grad1.copy_(grad2)


def autograd_function_tangent_mutation(x):
    return CopiesGradIntoGrad.apply(x)


def requires_grad_fake(x, y):
    """test_requires_grad_fake_via_dynamo_recompiles: one input requires grad, one not."""
    return (x + y,)


class Sin(torch.nn.Module):
    """test_joint_custom_pass."""

    def forward(self, x):
        return x.sin()


class ConvBnLoss(torch.nn.Module):
    """test_aot_sequence_nr: conv, BatchNorm (training mode), relu, residual, linear, L1 loss."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(4, 4, (1, 1), stride=1, padding="same", bias=True)
        self.bn1 = torch.nn.BatchNorm2d(4)
        self.fc1 = torch.nn.Linear(2 * 4 * 8 * 8, 1)
        self.loss_fn = torch.nn.L1Loss()

    def forward(self, x, target):
        y = torch.relu(self.bn1(self.conv1(x))) + x
        return (self.loss_fn(self.fc1(torch.flatten(y)), target),)


def aot_grad_mode_mutation(x):
    """test_aot_grad_mode_mutation: grad mode switched off mid-program and left off."""
    y = x * x
    torch.set_grad_enabled(False)
    return y.clone(), y


def expand_mutation_backwards(x, z):
    """test_aot_autograd_expand_mutation_backwards: an update through an expand, then a product."""
    y = x.expand(3, *x.shape)
    y[1, 1].mul_(5)
    return y * z


def donated_buffer1(x):
    return torch.nn.functional.relu(x)


def donated_buffer3(inp, param1, param2):
    """test_donated_buffer2/3: an activation (exp saves its output) into a matmul."""
    return torch.matmul(torch.exp(inp + param1), param2)


class ReluPlusParam(torch.nn.Module):
    """test_donated_buffer4 and _with_retain_or_create_graph1-3."""

    def __init__(self):
        super().__init__()
        self.param = torch.nn.Parameter(torch.zeros([3, 3]))

    def forward(self, x):
        return torch.nn.functional.relu(x) + self.param


def donated_buffer5(x, z):
    """test_donated_buffer5: a view of an input into a matmul with itself."""
    return torch.mm(x.view(2, 3), x) + torch.nn.functional.relu(z)


def stride_reconstruction(sentinel):
    """test_aot_autograd_stride_reconstruction_on_zero_dim_dynamic_shaped_tensor."""
    x = torch.squeeze(torch.reshape(torch.unique(torch.ones(1)), [1]))
    return x * sentinel


def unbacked_activation(arg_0, sentinel):
    """test_unbacked_activation_specialized_in_inductor: nonzero's data-dependent size."""
    a = torch.full((1, 2), -66, dtype=torch.int32) + torch.full((1, 2), 77, dtype=torch.int64)
    b = a * torch.full((1, 2), -64, dtype=torch.int32) + torch.nonzero(torch.full((3, 4), False))
    return torch.div(arg_0, b) * sentinel


def no_grad_inside(x, w):
    """Not of the file: ``with torch.no_grad():`` inside forward (eager: no gradient through it)."""
    with torch.no_grad():
        s = (x * w).sum()
    return x * w * s


def training_examples():
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g) * 3  # noqa: E731
    torch.manual_seed(0)
    return {
        "LSTM_train": (LSTM(), (permuted(g).requires_grad_(),)),
        "requires_grad_fake": (requires_grad_fake, (r(3, 3).requires_grad_(), r(3, 3))),
        "grad_inputs_alias_inputs": (grad_inputs_alias_inputs, (r(1).requires_grad_(), r(1).requires_grad_())),
        "joint_custom_pass": (Sin(), (r(10).requires_grad_(),)),
        "aot_sequence_nr": (ConvBnLoss().train(), (torch.rand(2, 4, 8, 8, generator=g).requires_grad_(),
                                                   torch.rand(1, generator=g))),
        "aot_grad_mode_mutation": (aot_grad_mode_mutation, (r(3).requires_grad_() * 3,)),
        "expand_mutation_backwards": (expand_mutation_backwards, (torch.arange(6.0), torch.arange(6.0).requires_grad_())),
        "donated_buffer1": (donated_buffer1, (r(3, 3).requires_grad_(),)),
        "donated_buffer3": (donated_buffer3, (torch.ones(4, 4), r(4, 4).requires_grad_(), r(4, 4).requires_grad_())),
        "donated_buffer4": (ReluPlusParam(), (r(3, 3).requires_grad_(),)),
        "donated_buffer5": (donated_buffer5, (r(3, 2).requires_grad_(), r(2, 2).requires_grad_())),
        "autograd_function_tangent_mutation": (autograd_function_tangent_mutation, (r(4).requires_grad_(),)),
        "stride_reconstruction": (stride_reconstruction, (torch.tensor(1.5, requires_grad=True),)),
        "unbacked_activation": (unbacked_activation, (torch.randint(0, 3, (1, 2), generator=g),
                                                      torch.tensor(1.0, requires_grad=True))),
        "no_grad_inside": (no_grad_inside, (r(3).requires_grad_(), r(3).requires_grad_())),
    }


TRAIN_CHILD = r"""
import copy, json, os, sys, torch, aotpack
sys.path[:0] = sys.argv[2].split(os.pathsep)
from test_aot_autograd_programs import training_examples
flat = lambda o: [t for x in o for t in flat(x)] if isinstance(o, (tuple, list)) else [o]
fresh = lambda args: [a.detach().clone().requires_grad_(a.requires_grad) for a in args]
close = lambda a, b: a is None and b is None or (a is not None and b is not None and a.shape == b.shape
                                                 and torch.allclose(a, b, rtol=1e-5, atol=1e-5))
results = {}
for name, (program, args) in training_examples().items():
    if not os.path.exists(f"{sys.argv[1]}/{name}.aot"):  # (refused at compile: the test says which)
        continue
    module = isinstance(program, torch.nn.Module)
    mine, theirs = (copy.deepcopy(program), copy.deepcopy(program)) if module else (None, program)
    fn = aotpack.load(f"{sys.argv[1]}/{name}.aot", module=mine)
    a, b = fresh(args), fresh(args)
    got, want = flat(fn(*a)), None
    mode_after = torch.is_grad_enabled()
    torch.set_grad_enabled(True)
    want = flat(theirs(*b))
    eager_mode_after = torch.is_grad_enabled()
    torch.set_grad_enabled(True)
    # a weight per element: the output grads are tensors of their own (a backward may write them)
    loss = lambda outs: sum((o.float() * torch.linspace(1, 2, o.numel()).view_as(o)).sum() for o in outs
                            if o.requires_grad)
    loss(got).backward()
    loss(want).backward()
    results[name] = {
        "outputs": len(got) == len(want) and all(close(x.detach(), y.detach()) for x, y in zip(got, want)),
        "requires_grad": [(o.requires_grad, o.grad_fn is None) for o in got]
        == [(o.requires_grad, o.grad_fn is None) for o in want],
        "aliasing": [any(o.data_ptr() == x.data_ptr() for x in a) for o in got]
        == [any(o.data_ptr() == x.data_ptr() for x in b) for o in want],
        "input_grads": all(close(x.grad, y.grad) for x, y in zip(a, b)),
        "inputs_after": all(close(x.detach(), y.detach()) for x, y in zip(a, b)),
        "param_grads": not module or all(close(p.grad, q.grad) for p, q in zip(mine.parameters(), theirs.parameters())),
        "grad_mode_after": mode_after == eager_mode_after,
    }
print(json.dumps(results))
"""


def test_training_programs_of_test_aot_autograd_package_and_equal_eager(tmp_path):
    """Outputs, which of them require grad, memory shared with inputs, in-place effects,
    the gradients of inputs and parameters, and grad mode after the call: eager's, from
    packages loaded in a fresh process (eager backend; the aoti training tests cover the
    same mechanisms)."""
    for name, (program, args) in training_examples().items():
        args = tuple(a.detach().clone().requires_grad_(a.requires_grad) for a in args)
        if name == "LSTM_train" and TORCH_BEFORE_2_13:  # (its decomposition squeezes the wrong dimension)
            with pytest.raises(aotpack.CaptureError, match=r"training graph gives output 1 float32\[4, 1, 4, 8\] "
                                                           r"where the program gives float32\[4, 4, 8\]"):
                aotpack.compile(program, args, backend="eager", train=True)
            continue
        aotpack.compile(program, args, backend="eager", train=True).save(tmp_path / f"{name}.aot")
        torch.set_grad_enabled(True)  # (aot_grad_mode_mutation leaves it off, as eager does)
    out = run_fresh(["-c", TRAIN_CHILD, str(tmp_path), os.pathsep.join([HERE, os.path.dirname(HERE)])])
    results = json.loads(out.stdout.strip().splitlines()[-1])
    bad = {n: r for n, r in results.items() if not all(r.values())}
    assert not bad, bad
    assert set(results) == set(training_examples()) - ({"LSTM_train"} if TORCH_BEFORE_2_13 else set())


def _refusal(program, args, **kwargs):
    with pytest.raises(aotpack.CaptureError) as info:
        aotpack.compile(program, args, backend="eager", **kwargs)
    return str(info.value)


def control_flow(x, y):
    """test_call_fn_with_non_const_inputs_aot_unsafe_control_flow: a branch on tensor data."""
    a = x * y
    a = a + a if a[0][0] < 3 else a * a
    return a * (x + y)


def double_backward(x):
    """test_double_backward_with_compile (f2): autograd.grad with create_graph inside."""
    y = x.sin().exp()
    (gx,) = torch.autograd.grad(y, x, create_graph=True)
    return gx


def differentiates_twice_inside(x):
    """test_double_backward_with_compile (f1): a gradient of a gradient inside."""
    y = x.sin().exp()
    (gx,) = torch.autograd.grad(y, x, create_graph=True)
    (ggx,) = torch.autograd.grad(gx, x, create_graph=True)
    return gx, ggx


@pytest.mark.parametrize("backend", ["eager", pytest.param("aoti", marks=pytest.mark.slow)])
@pytest.mark.parametrize("program", [double_backward, differentiates_twice_inside])
def test_double_backward_with_compile_packages_and_its_gradients_differentiate_as_eager(backend, program):
    """torch.autograd.grad inside the program (torch.compile traces it with its
    ``trace_autograd_ops``): traced through make_fx, as torch.func's transforms are
    (build/desugar.py), in a training package whose outputs differentiate again outside,
    as eager's (the file's f2; refused with "calls torch.autograd.grad" until 2026-12-04)."""
    fn = aotpack.load(aotpack.compile(program, (torch.tensor(1.3, requires_grad=True),), train=True,
                                      backend=backend).to_bytes())
    for value in (0.7, -2.0):
        mine, theirs = torch.tensor(value, requires_grad=True), torch.tensor(value, requires_grad=True)
        got, want = fn(mine), program(theirs)
        got, want = (got, want) if isinstance(want, tuple) else ((got,), (want,))
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(torch.autograd.grad(sum(got), mine), torch.autograd.grad(sum(want), theirs))


def accumulates_grad(x):
    """``backward()`` inside: it accumulates into the caller's ``x.grad``."""
    (x * 2).sum().backward()
    return x.grad * 1


def nn_parameter_construction(x):
    """test_nn_parameter_construction: a Parameter made inside the program."""
    return x.sin() + torch.nn.Parameter(torch.ones(1))


def split_with_sizes(result, split_sizes):
    """test_split_with_sizes_aot_autograd_cleans_up_traceback_meta: sizes read from a tensor."""
    return torch.ops.aten.split_with_sizes(result, split_sizes.tolist())


def test_what_torch_compile_splits_is_refused_naming_the_line():
    """Programs of the file that torch.compile runs as several graphs (its graph breaks)
    are one clear CaptureError naming the user's line; none is silently different."""
    here = os.path.abspath(__file__)
    message = _refusal(control_flow, (torch.randn(2, 2), torch.randn(2, 2)))
    assert "depends on a value read from tensor data" in message and here in message
    message = _refusal(accumulates_grad, (torch.randn(3, requires_grad=True),), train=True)
    assert "calls torch.autograd.backward at" in message and here in message
    message = _refusal(nn_parameter_construction, (torch.randn(4, 4),))
    assert "creates a torch.nn.Parameter at" in message and here in message
    with pytest.raises(aotpack.AotpackError):  # .tolist(): torch.compile breaks its graph there by default
        aotpack.compile(split_with_sizes, (torch.randn(32, requires_grad=True), torch.tensor((7, 16, 9))),
                        backend="eager", train=True)


def add_one_to_all(*args):
    """test_inputs_overlapping_with_mutation_recompile and _stress: every input updated."""
    for a in args:
        a.add_(1)
    return args[0]


def double_first_sum(a, b, c, d):
    """test_different_inputs_overlapping_set_with_mutation: one input updated, all read."""
    a.mul_(2)
    return a + b + c + d


# (program, the inputs compiled for, the overlapping inputs of the call), each from a
# tensor of the given length; as the tests make them
OVERLAPPING = {
    "inputs_overlapping_with_mutation_recompile":
        (add_one_to_all, 20, lambda x: (x[:5], x[7:13], x[13:15]), lambda x: (x[:5], x[7:13], x[9:])),
    "different_inputs_overlapping_set_with_mutation":
        (double_first_sum, 20, lambda x: (x[:5], x[4:9], x[10:15], x[15:]), lambda x: (x[:5], x[4:9], x[8:13], x[15:])),
    "inputs_overlapping_with_mutation_stress":
        (add_one_to_all, 1000, lambda x: (*x.split(10), x[4:44]), lambda x: (*x.split(10), x[4:44])),
}


@pytest.mark.parametrize("name,backend", [(n, "eager") for n in OVERLAPPING] + [
    pytest.param("inputs_overlapping_with_mutation_recompile", "aoti", marks=pytest.mark.slow)])
def test_overlapping_inputs_updated_in_place_equal_eager(tmp_path, name, backend):
    """Views of one tensor that overlap, some updated in place. torch.compile recompiles
    for that aliasing; a package's compiled code assumes separate memory, so such a call
    runs the package's portable program (eager ops in order on the caller's tensors),
    with a PortableRunWarning, in a fresh process: eager's outputs and eager's updates."""
    program, n, compiled_for, call = OVERLAPPING[name]
    aotpack.compile(program, compiled_for(torch.arange(float(n))), backend=backend, dynamic=True).save(tmp_path / "p.aot")
    child = f"""
import sys, warnings, torch, aotpack
sys.path[:0] = {[HERE, os.path.dirname(HERE)]!r}
from test_aot_autograd_programs import OVERLAPPING
program, n, _, call = OVERLAPPING[{name!r}]
fn = aotpack.load({str(tmp_path / "p.aot")!r})
mine, theirs = torch.arange(float(n)), torch.arange(float(n))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    got = fn(*call(mine))
    again = fn(*call(mine))  # the second call: no second warning
want = program(*call(theirs))
want_again = program(*call(theirs))
assert torch.equal(got, want) and torch.equal(again, want_again) and torch.equal(mine, theirs), (got, want)
shares = lambda out, x: out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()  # noqa: E731
assert shares(got, mine) == shares(want, theirs)  # a view of the caller's tensor where eager's is
(w,) = [c for c in caught if issubclass(c.category, aotpack.PortableRunWarning)]
assert "runs the package's portable program" in str(w.message) and "shares memory with" in str(w.message)
separate, copies = [t.clone() for t in call(torch.arange(float(n)))], [t.clone() for t in call(torch.arange(float(n)))]
assert torch.equal(fn(*separate), program(*copies)) and all(map(torch.equal, separate, copies))  # compiled code
print("ok")
"""
    assert run_fresh(["-c", child]).stdout.strip().endswith("ok")


def test_donated_buffer_with_retain_or_create_graph(tmp_path):
    """test_donated_buffer_with_retain_or_create_graph1-3: backward through one output
    five times with retain_graph=True, then once more; and create_graph=True. The
    gradients accumulate as eager's (torch.compile's donated buffers refuse part of it)."""
    torch.manual_seed(0)
    m, ref = ReluPlusParam(), ReluPlusParam()
    inp = torch.randn(3, 3, requires_grad=True)
    fn = aotpack.load(aotpack.compile(m, (inp,), train=True, backend="eager").save(tmp_path / "r.aot"), module=m)
    a, b = inp.detach().clone().requires_grad_(), inp.detach().clone().requires_grad_()
    got, want = fn(a).sum(), ref(b).sum()
    for _ in range(5):
        got.backward(retain_graph=True)
        want.backward(retain_graph=True)
    got.backward()
    want.backward()
    fn(a).sum().backward(create_graph=True)
    ref(b).sum().backward(create_graph=True)
    torch.testing.assert_close(a.grad, b.grad)
    torch.testing.assert_close(m.param.grad, ref.param.grad)
