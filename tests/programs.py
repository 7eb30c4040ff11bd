"""The programs every backend must package: each entry builds (target, args, kwargs,
dynamic) and the extra calls a loaded package must answer like eager.

Kept apart from the tests so the fresh processes that load packages never import
them: a package must run without the source that built it.
"""

from __future__ import annotations

import functools

import torch
from torch.export import Dim

import shared_layers
from aotpack.demo import TransformerBlock

G_TENSOR = torch.tensor([0.5, -1.0, 2.0, 0.25])
G_SCALE = 3


def plain(x, y):
    return x * y + torch.sin(x)


class MLPWithBuffer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 8)
        self.fc2 = torch.nn.Linear(8, 3)
        self.register_buffer("scale", torch.tensor([1.0, 2.0, 3.0]))

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x))) * self.scale


def make_closure():
    w = torch.linspace(-1, 1, 4)
    k = 7

    def closure(x):
        return x @ w + k

    return closure


def with_defaults(x, alpha=0.5, mode="tanh"):
    y = torch.tanh(x) if mode == "tanh" else torch.relu(x)
    return y * alpha


def uses_globals(x):
    return x * G_TENSOR + G_SCALE


class Base(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.lin(x)


class Child(Base):
    def forward(self, x):
        return super().forward(x).relu() * 2


def doubled(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs) * 2

    return wrapper


@doubled
def decorated(x, y):
    return x - y


def nested(batch, opts):
    a, b = batch["pair"]
    out = [a + b, a * opts["w"]]
    return {"sum": out[0], "parts": (out[1], b.mean(0)), "n": 3}


def data_dependent(x, repeats):
    return torch.repeat_interleave(x, repeats) * 2


def keyword_only(x, *, mask):
    return torch.where(mask, x, torch.zeros_like(x))


# The demo's transformer block, small here.
Block = TransformerBlock


class Forces(torch.nn.Module):
    """A learned potential's forces: minus the gradient of its energy with respect to the
    positions, by ``torch.func.grad`` inside forward (torch.export alone cannot trace it:
    capture goes through make_fx, build/desugar.py)."""

    def __init__(self):
        super().__init__()
        self.energy = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))

    def forward(self, positions):
        return -torch.func.grad(lambda p: self.energy(p).sum())(positions)


def _r(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g)


# The programs AOTInductor compiles too (tests/packages/test_packages.py): those whose
# graphs differ for a backend (weights and buffers, Dims, lifted constants, sizes that
# depend on data, attention, autograd.grad inside, a nested output). The others differ in
# how a call is bound (defaults, keyword-only, a closure, a decorator, super()), which is
# the runtime's, the same for every backend: the eager and inductor backends run them all
# (~5 s an AOTInductor compile on 2 cores; the suite has a 15-minute budget).
AOTI_PROGRAMS = ("plain", "module", "globals", "nested", "data_dependent", "block", "forces")


def programs():
    """name -> dict(target, args, kwargs, dynamic, calls=[(args, kwargs), ...])."""
    torch.manual_seed(0)
    x4 = _r(2, 4)
    batch = Dim("batch", min=1, max=64)
    return {
        "plain": dict(target=plain, args=(_r(3, 5), _r(3, 5, seed=1)),
                      calls=[((_r(3, 5, seed=2), _r(3, 5, seed=3)), {})]),
        "module": dict(target=MLPWithBuffer().eval(), args=(x4,), dynamic={"x": {0: batch}},
                       calls=[((_r(5, 4, seed=4),), {}), ((_r(1, 4, seed=5),), {})]),
        "closure": dict(target=make_closure(), args=(_r(3, 4),), calls=[((_r(3, 4, seed=6),), {})]),
        "defaults": dict(target=with_defaults, args=(_r(3, 3),),
                         calls=[((_r(3, 3, seed=7),), {}), ((_r(3, 3, seed=8), 0.5), {}),
                                ((_r(3, 3, seed=9),), {"mode": "tanh"})]),
        "globals": dict(target=uses_globals, args=(_r(2, 4),), calls=[((_r(2, 4, seed=10),), {})]),
        "super": dict(target=Child().eval(), args=(x4,), calls=[((_r(2, 4, seed=11),), {})]),
        "decorated": dict(target=decorated, args=(_r(3), _r(3, seed=1)), calls=[((_r(3, seed=12), _r(3, seed=13)), {})]),
        "nested": dict(target=nested, args=({"pair": [_r(2, 3), _r(2, 3, seed=1)]}, {"w": _r(3)}),
                       calls=[(({"pair": [_r(2, 3, seed=14), _r(2, 3, seed=15)]}, {"w": _r(3, seed=16)}), {}),
                              ((), {"batch": {"pair": [_r(2, 3, seed=17), _r(2, 3, seed=18)]}, "opts": {"w": _r(3)}})]),
        "data_dependent": dict(target=data_dependent, args=(torch.arange(4.0), torch.tensor([1, 2, 0, 3])),
                               calls=[((torch.arange(4.0) + 1, torch.tensor([3, 0, 1, 1])), {}),
                                      ((torch.ones(4), torch.tensor([0, 0, 0, 5])), {})]),
        "keyword_only": dict(target=keyword_only, args=(_r(4),), kwargs={"mask": torch.tensor([True, False, True, False])},
                             calls=[((_r(4, seed=19),), {"mask": torch.tensor([False, False, True, True])})]),
        "block": dict(target=Block(32, 4).eval(), args=(_r(2, 6, 32),), calls=[((_r(2, 6, 32, seed=20),), {})]),
        "forces": dict(target=Forces().eval(), args=(_r(5, 3),), calls=[((_r(5, 3, seed=21),), {})]),
    }


class StraightThrough(torch.autograd.Function):
    """A straight-through rounding: rounds, and its backward passes the gradient on
    tripled (its own, not round's zero gradient)."""

    @staticmethod
    def forward(ctx, x):
        return x.round()

    @staticmethod
    def backward(ctx, grad):
        return grad * 3


class RoundThrough(torch.autograd.Function):
    """Rounds; its own derivative rules pass the tangent and the gradient straight through
    (a straight-through estimator), where the forward's derivative is zero."""

    @staticmethod
    def forward(x):
        return x.round()

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        return grad

    @staticmethod
    def jvp(ctx, tangent):
        return tangent


class GradInputsAliasInputs(torch.autograd.Function):
    """PyTorch's test_aot_autograd grad_inputs_alias_inputs: returns its second input as
    it is; its backward gives the first input's value as the first input's gradient."""

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x)
        return y

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return x, grad


def halves_under_no_grad(a, b):
    """A ``torch.no_grad()`` region that returns nothing, only updates ``b``: torch
    2.11-2.13 write such a region with no outputs and read it back without the value
    their verifier demands (``_torch_compat.deserialize_program`` gives it back)."""
    with torch.no_grad():
        b.mul_(0.5)
    return a + 1


class WeightLayouts(torch.nn.Module):
    """Weights in four layouts: a transposed matrix, a channels_last convolution, a
    buffer expanded along its last dimension, a parameter with gaps (every other column)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(6, 5)
        self.lin.weight.data = self.lin.weight.data.t().contiguous().t()
        self.conv = torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)
        self.register_buffer("rows", torch.arange(5.0).reshape(5, 1).expand(5, 6))
        self.gapped = torch.nn.Parameter(torch.randn(5, 12)[:, ::2])

    def forward(self, x, img):
        return self.lin(x * self.rows * self.gapped), self.conv(img).sum((2, 3))


OFFSETS = torch.linspace(-1.0, 1.0, 4)
SCALES = torch.linspace(0.5, 2.0, 4)
HELPER = torch.nn.Linear(4, 4).requires_grad_(False)  # a module global: its weights are read as tensors
ACT = torch.nn.GELU()  # a module global with no tensors: its Python value ``approximate`` is compiled in
GAIN = 1.5  # plain data a helper computes with: compiled in, compared at each call where bound


def _offset(y):
    return (y + OFFSETS) * GAIN  # a helper's module globals


class ReadsGlobals(torch.nn.Module):
    """Reads module globals (tests/packages/test_module_binding.py): a tensor and two
    modules in its forward, a module, a tensor and an int as a Python module's
    attributes, a tensor and a float through a helper; a bound package reads them where
    the process holds them."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x):
        return shared_layers.NORM(ACT(HELPER(_offset(self.lin(x))))) * SCALES + shared_layers.SHIFT * shared_layers.SIGN


class PicksByName(torch.nn.Module):
    """A forward whose code holds a set literal (``mode in {...}``): the constant's repr
    follows the process's string hashes (tests/packages/test_module_binding.py)."""

    def __init__(self, mode="gelu"):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.mode = mode

    def forward(self, x):
        h = self.lin(x)
        return torch.nn.functional.gelu(h) if self.mode in {"gelu", "gelu_new", "gelu_fast", "quick_gelu"} else h
