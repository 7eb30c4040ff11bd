"""load(path, module=m) runs with m's live parameters: no copy, optimizer steps are seen."""

import copy
import functools
import json
import os
import pathlib
import re
import shutil
import types
from unittest import mock

import pytest
import torch
from torch.nn import functional as F

import aotpack
import programs
from conftest import TORCH_BEFORE_2_13, run_fresh
from fuzz_programs import Scaled

CHILD = r"""
import json, sys, torch, aotpack
sys.path.insert(0, sys.argv[2])
from programs import MLPWithBuffer
torch.manual_seed(123)                 # other weights than the package's
m = MLPWithBuffer().eval().requires_grad_(False)   # inference: no autograd graph, as the package
x = torch.randn(5, 4)
fn = aotpack.load(sys.argv[1], module=m)
first = (fn(x) - m(x)).abs().max().item()
with torch.no_grad():
    m.fc1.weight.mul_(-1.5)            # an in-place update, as an optimizer does
    m.scale.add_(1.0)
second = (fn(x) - m(x)).abs().max().item()
stored = aotpack.load(sys.argv[1])
differs = (stored(x) - m(x)).abs().max().item()
print(json.dumps({"first": first, "second": second, "differs": differs}))
"""


@pytest.mark.parametrize("backend", ["eager", pytest.param("aoti", marks=pytest.mark.slow)])
def test_live_module_parameters(tmp_path, backend):
    """A package bound to a module reads its parameters at each call (in-place updates
    seen), in a fresh process, at batch 5 from an example batch of one (traced
    size-obliviously; AOTInductor's code compiled as for a batch of 2: from the 1 itself it
    gave other numbers at other batches, silently, when first tried, 2026-12-07)."""
    torch.manual_seed(0)
    m = programs.MLPWithBuffer().eval()
    path = aotpack.compile(m, (torch.randn(1, 4),), dynamic={"x": {0: aotpack.Dim("batch", min=1, max=64)}},
                           backend=backend).save(tmp_path / "m.aot")
    proc = run_fresh(["-c", CHILD, path, str(__import__("pathlib").Path(__file__).parent.parent)])
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["first"] < 1e-5
    assert r["second"] < 1e-5
    assert r["differs"] > 1e-3  # the stored weights really are other weights


def test_module_missing_parameter(tmp_path):
    m = programs.MLPWithBuffer().eval()
    path = aotpack.compile(m, (torch.randn(2, 4),), backend="eager").save(tmp_path / "m.aot")
    other = programs.MLPWithBuffer()
    other.fc1.weight = None
    with pytest.raises(aotpack.AotpackError, match="has no parameter or buffer 'fc1.weight'"):
        aotpack.load(path, module=other)
    with pytest.raises(aotpack.AotpackError, match=r"module: expected a programs.MLPWithBuffer \(its code is "
                                                   r"compiled into the package\), got a torch.nn.modules.linear.Linear"):
        aotpack.load(path, module=torch.nn.Linear(4, 3))


def test_module_wrong_shape(tmp_path):
    m = programs.MLPWithBuffer().eval()
    path = aotpack.compile(m, (torch.randn(2, 4),), backend="eager").save(tmp_path / "m.aot")
    other = programs.MLPWithBuffer()
    other.fc1 = torch.nn.Linear(4, 9)
    with pytest.raises(aotpack.AotpackError, match=r"'fc1.weight' is float32\[9, 4\], the package was compiled for float32\[8, 4\]"):
        aotpack.load(path, module=other)


def _bound(tmp_path, backend="eager"):
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).eval()
    m.requires_grad_(False)
    path = aotpack.compile(m, (torch.randn(3, 4),), backend=backend).save(tmp_path / "m.aot")
    return m, aotpack.load(path, module=m)


CHANGES = {
    "reassigned parameter": lambda m: setattr(m[0], "weight", torch.nn.Parameter(torch.randn(4, 4),
                                                                                 requires_grad=False)),
    ".data": lambda m: setattr(m[0].weight, "data", torch.randn(4, 4)),
    "replaced submodule": lambda m: m.__setitem__(2, torch.nn.Linear(4, 2).requires_grad_(False)),
    "load_state_dict(assign=True)": lambda m: m.load_state_dict(
        {k: torch.randn_like(v) for k, v in m.state_dict().items()}, assign=True),
    "buffer-free in-place": lambda m: m[2].bias.mul_(-3),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_bound_module_changes_are_followed(tmp_path, change):
    """What eager reads at every call, the bound package reads too (binding.py)."""
    m, fn = _bound(tmp_path)
    x = torch.randn(3, 4)
    before = fn(x)
    with torch.no_grad():
        CHANGES[change](m)
        m.requires_grad_(False)
        want = m(x)
    assert (before - want).abs().max() > 1e-3  # the change changes eager's result
    torch.testing.assert_close(fn(x), want)


def test_bound_module_hooks_added_after_load_are_refused(tmp_path):
    m, fn = _bound(tmp_path)
    x = torch.randn(3, 4)
    handle = m[2].register_forward_hook(lambda mod, args, out: out * 2)
    with pytest.raises(aotpack.GuardError, match=r"module.2 hooks: expected no hooks added after load .* got a "
                                                 r"forward hook on module.2"):
        fn(x)
    handle.remove()
    torch.testing.assert_close(fn(x), m(x))
    handle = m.register_forward_pre_hook(lambda mod, args: None)
    with pytest.raises(aotpack.GuardError, match="forward pre-hook on module"):
        fn(x)
    handle.remove()
    import copy
    import pickle

    pickle.loads(pickle.dumps(m))  # the watched hook dicts pickle and copy as plain ones
    assert type(copy.deepcopy(m)[0]._forward_hooks).__name__ == "OrderedDict"


def _tripled(mod, args, out):
    return out * 3


def test_a_bound_module_runs_only_the_hooks_compiled_in(tmp_path):
    """A module's package runs the hooks registered at compile (torch.export traces them
    in), eager those registered at the call. Until 2026-12-06 a hook registered between
    compile and load ran in eager only, one compiled in and removed after the load still
    ran in the package, and one compiled in but not registered on the module bound (a
    fresh process building the model anew) ran in the package only: each silently another
    number. Now each is refused, at load or at the call, naming the module and the hooks;
    and removing a hook registered before the load removes it from the module (the
    binding's watch of hook dicts had put a copy in place, which kept it running in eager)."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).requires_grad_(False)
    x = torch.randn(3, 4)
    plain = aotpack.compile(m, (x,), backend="eager").to_bytes()
    handle = m[2].register_forward_hook(_tripled)
    with pytest.raises(aotpack.AotpackError, match=r"module.2 hooks: expected the hooks registered when the package "
                                                   r"was compiled \(none: .*\), got a forward hook"):
        aotpack.load(plain, module=m)  # (registered between compile and load)
    hooked = aotpack.compile(m, (x,), backend="eager").to_bytes()
    fn = aotpack.load(hooked, module=m)
    tripled = fn(x)
    torch.testing.assert_close(tripled, m(x))
    handle.remove()
    torch.testing.assert_close(m(x) * 3, tripled)  # (eager runs the hook no more)
    with pytest.raises(aotpack.GuardError, match=r"module.2 hooks: expected the hooks registered when the package was "
                                                 r"compiled \(a forward hook: compiled code runs those\), got none"):
        fn(x)
    fresh = copy.deepcopy(m)  # (as a fresh process builds it: no hook)
    with pytest.raises(aotpack.AotpackError, match=r"module.2 hooks: .* \(a forward hook: .*\), got none"):
        aotpack.load(hooked, module=fresh)
    m[2].register_forward_hook(_tripled)  # the same hook again: its code is the one compiled in
    fn = aotpack.load(hooked, module=m)
    torch.testing.assert_close(fn(x), m(x))


def test_bound_module_weight_of_another_shape_is_refused(tmp_path):
    m, fn = _bound(tmp_path)
    m[0].weight.data = torch.randn(5, 4)
    with pytest.raises(aotpack.GuardError, match=r"module weight '0.weight': expected float32\[4, 4\] on cpu"):
        fn(torch.randn(3, 4))


def test_bound_module_losing_a_parameter_is_refused(tmp_path):
    m, fn = _bound(tmp_path)
    m[0].weight = None  # registers nothing: eager fails, the package ran the old weight until 2026-12-03
    with pytest.raises(aotpack.GuardError, match="has no parameter or buffer '0.weight'"):
        fn(torch.randn(3, 4))
    m[0] = torch.nn.Identity()
    with pytest.raises(aotpack.GuardError, match=r"module.0: expected a torch.nn.modules.linear:Linear \(its code "
                                                 r"is compiled into the package\), got a torch.nn.modules.linear:Identity"):
        fn(torch.randn(3, 4))


def test_bound_module_second_weight_of_another_shape_is_named(tmp_path):
    """A later weight of the wrong kind is named too (not only the first one)."""
    m, fn = _bound(tmp_path)
    m[2].weight.data = torch.randn(3, 4)
    with pytest.raises(aotpack.GuardError, match=r"module weight '2.weight': expected float32\[2, 4\]"):
        fn(torch.randn(3, 4))


# -- the bound module as a fuzzer dimension ------------------------------------------------

class _Bound(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = torch.nn.Linear(4, 4)
        self.scale = torch.nn.Parameter(torch.randn(4))
        self.register_buffer("shift", torch.randn(4))
        self.gain = torch.linspace(0.5, 2.0, 4)  # a plain tensor attribute: torch.export lifts it as a constant
        self.alpha, self.relu, self.note = 0.5, True, "not read"  # Python values: torch.export compiles them in

    def forward(self, x):
        y = self.inner(x) * self.scale * self.gain * self.alpha + self.shift
        return y.relu() if self.relu else y


BOUND_TABLE_AT_COMPILE = torch.linspace(-1.0, 1.0, 4)
BOUND_TABLE = BOUND_TABLE_AT_COMPILE.clone()  # a module global the module's code reads


def _set_table(value) -> None:
    global BOUND_TABLE
    BOUND_TABLE = value


def _helper_at_compile() -> torch.nn.Module:
    torch.manual_seed(7)
    return torch.nn.Linear(4, 4).requires_grad_(False)


BOUND_HELPER = _helper_at_compile()  # a module global the module's code calls


BOUND_GAIN = 1.5  # plain data the module's code computes with
BOUND_FLIP = [1]  # a list: it changes in place
BOUND_OPTS = {"tilt": 1.0}  # a dict: it changes in place too (format 16); and holds a function, below
BOUND_ARGS = types.SimpleNamespace(bias=0.25)  # a plain object global (a script's ``args``): its data


class _BoundSettings:  # a plain object global whose class holds the default the code reads
    lift = 0.5


BOUND_SETTINGS = _BoundSettings()


def _centered(y):  # a module global function the module's code calls: its code is traced in
    return y - y.mean()


_bound_centered = _centered


def _set_helper(module) -> None:
    global BOUND_HELPER
    BOUND_HELPER = module.requires_grad_(False)


def _set_gain(value) -> None:
    global BOUND_GAIN
    BOUND_GAIN = value


def _set_args(args) -> None:
    global BOUND_ARGS
    BOUND_ARGS = args


def _set_centered(function) -> None:
    global _bound_centered
    _bound_centered = function


_SOFTSIGN = F.softsign  # a torch function the module's code calls as ``F.softsign``: a patch replaces it


def _softer(t):
    return t / (t.abs() + 2)


def _halved(t):  # a staticmethod of the module's class: ``self.squash(y)``
    return t * 0.5


BOUND_OPTS["post"] = _halved  # a function in a global dict: its code is traced in


class _BoundConfig:
    """A config whose default lives on its class (read as ``self.config.tilt``)."""

    tilt = 0.75


def _reset_globals() -> None:
    """The module globals and class values as the packages were compiled with (the
    fuzzer changes them)."""
    global BOUND_HELPER
    _BoundWithNorm.offset, _BoundWithNorm.squash = 0.25, staticmethod(_halved)
    _BoundConfig.tilt = 0.75
    _BoundSettings.lift = 0.5
    BOUND_SETTINGS.__dict__.pop("lift", None)
    F.softsign = _SOFTSIGN
    _set_table(BOUND_TABLE_AT_COMPILE.clone())
    _set_gain(1.5)
    BOUND_FLIP[:] = [1]
    BOUND_OPTS.clear()
    BOUND_OPTS.update(tilt=1.0, post=_halved)
    _set_args(types.SimpleNamespace(bias=0.25))
    _set_centered(_centered)
    BOUND_HELPER = _helper_at_compile()


class _BoundWithNorm(_Bound):
    """_Bound, then a submodule whose code reads its mode and Python values (a batch
    norm), module globals (a tensor, a module, data, a function, a list, an object's data)
    and a torch function (``F.softsign``), values of its class (``self.offset``, a
    staticmethod) and a config's class default: what a function's program reaches in a
    module by name, too."""

    offset = 0.25
    squash = staticmethod(_halved)

    def __init__(self):
        super().__init__()
        self.norm = torch.nn.BatchNorm1d(4)
        self.norm.running_var.uniform_(0.5, 2.0)
        self.extra = torch.nn.ModuleList([torch.nn.Linear(4, 4)])  # a container the code iterates
        self.config = _BoundConfig()
        # tensors a list and a dict attribute hold (no parameter or buffer: ``constant:held[0]``)
        self.held = [torch.linspace(0.5, 1.5, 4)]
        self.tables = {"shift": torch.linspace(-0.5, 0.5, 4)}
        self.nudge = 0.125  # read where torch's code calls the user's (``_nudged``)

    @torch.no_grad()
    def _nudged(self, y):  # (torch's decorator calls it: the program's code all the same)
        return y + self.nudge

    def forward(self, x):
        y = _bound_centered(BOUND_HELPER(self.norm(super().forward(x)))) * BOUND_GAIN + BOUND_TABLE + BOUND_ARGS.bias
        y = self._nudged(y * self.held[0] + self.tables["shift"])
        for layer in self.extra:
            y = layer(y)
        y = BOUND_OPTS["post"](self.squash(F.softsign(y.flip(BOUND_FLIP))))
        return y * BOUND_OPTS["tilt"] + self.offset * self.config.tilt + BOUND_SETTINGS.lift


def _function_of(model):
    """A function's program over a module it reaches by a closure variable, ``model``:
    bound as ``load(path, module={"model": m})``."""
    return lambda x: model(x) * 2


def _rand(g, *shape, dtype=torch.float32):
    return torch.randn(*shape, generator=g).to(dtype)


def _random_state(m, g) -> dict:
    """New values for every entry of ``m``'s state dict (a variance positive, a count kept)."""
    return {k: (_rand(g, *v.shape).abs() if k.endswith("var") else _rand(g, *v.shape)) if v.is_floating_point()
            else v.clone() for k, v in m.state_dict().items()}


def _patch_forward(module, w):
    module.forward = lambda t: t * w


class _DoubledLinear(torch.nn.Linear):
    def forward(self, x):
        return super().forward(x) * 2


# What a user may do to a bound module between calls; each draws its values from ``g``,
# so the package's module and eager's copy get the same change.
MODULE_CHANGES = {
    "reassign a parameter": lambda m, g: setattr(m, "scale", torch.nn.Parameter(_rand(g, 4))),
    "p.data = t": lambda m, g: setattr(m.inner.weight, "data", _rand(g, 4, 4)),
    "update in place": lambda m, g: m.shift.add_(_rand(g, 4)),
    "reassign a buffer": lambda m, g: setattr(m, "shift", _rand(g, 4)),
    "load_state_dict(assign=True)": lambda m, g: m.load_state_dict(_random_state(m, g), assign=True),
    "replace a submodule": lambda m, g: setattr(m, "inner", torch.nn.Linear(4, 4)),
    "a parameter of another dtype": lambda m, g: setattr(m, "scale", torch.nn.Parameter(_rand(g, 4, dtype=torch.float64))),
    "a parameter of another shape": lambda m, g: setattr(m, "scale", torch.nn.Parameter(_rand(g, 1))),
    "a submodule without a bias": lambda m, g: setattr(m, "inner", torch.nn.Linear(4, 4, bias=False)),
    "a forward hook": lambda m, g: m.inner.register_forward_hook(lambda mod, i, out: out * 2),
    "a forward pre-hook": lambda m, g: m.register_forward_pre_hook(lambda mod, args: (args[0] + 1,)),
    "train mode": lambda m, g: m.train(),
    "reassign a plain tensor attribute": lambda m, g: setattr(m, "gain", _rand(g, 4)),
    "update a plain tensor attribute in place": lambda m, g: m.gain is None or m.gain.mul_(_rand(g, 4)),
    "a plain tensor attribute of another shape": lambda m, g: setattr(m, "gain", _rand(g, 2, 4)),
    "a plain tensor attribute set to None": lambda m, g: setattr(m, "gain", None),
    "another Python value read": lambda m, g: setattr(m, "alpha", float(_rand(g, 1))),
    "the same Python value, a new object": lambda m, g: setattr(m, "alpha", float("0.5")),
    "a Python flag flipped": lambda m, g: setattr(m, "relu", not m.relu),
    "a Python value not read": lambda m, g: setattr(m, "note", str(_rand(g, 1))),
    "a Python value read under @torch.no_grad()": lambda m, g: setattr(m, "nudge", float(_rand(g, 1))),
    # layouts: compiled code reads a weight through its compiled strides
    "a weight transposed in memory": lambda m, g: setattr(m.inner.weight, "data", _rand(g, 4, 4).t().contiguous().t()),
    "a buffer with gaps": lambda m, g: setattr(m, "shift", _rand(g, 8)[::2]),
    "an expanded parameter": lambda m, g: setattr(m, "scale", torch.nn.Parameter(_rand(g, 1).expand(4))),
    # code: a forward patched on an instance (what accelerate's hooks do)
    "a submodule's forward patched": lambda m, g: _patch_forward(m.inner, _rand(g, 4)),
    # its class swapped in place (what registers nothing)
    "a submodule's class swapped": lambda m, g: setattr(m.inner, "__class__", _DoubledLinear),
    # a submodule's own mode and Python values, its buffers
    "a submodule in train mode": lambda m, g: m.norm.train(),
    "a submodule back in eval mode": lambda m, g: m.norm.eval(),
    "a submodule's Python value read": lambda m, g: setattr(m.norm, "eps", float(_rand(g, 1).abs())),
    "a submodule's buffer updated in place": lambda m, g: m.norm.running_mean.add_(_rand(g, 4)),
    "a submodule's buffer reassigned": lambda m, g: setattr(m.norm, "running_var", _rand(g, 4).abs()),
    # a module global the module's code reads (one for both modules: changed twice alike)
    "a module global updated in place": lambda m, g: BOUND_TABLE.mul_(_rand(g, 4)),
    "a module global assigned anew": lambda m, g: _set_table(_rand(g, 4)),
    "a module global of another shape": lambda m, g: _set_table(_rand(g, 2, 4)),
    "a module global of another dtype": lambda m, g: _set_table(_rand(g, 4, dtype=torch.float64)),
    # a module global module: its weights, and the global assigned anew (the function form binds
    # it by name, and follows the global that held it at load: until 2026-12-06 it kept the old one)
    "a global module assigned anew": lambda m, g: _set_helper(torch.nn.Linear(4, 4)),
    "a global module assigned one of another class": lambda m, g: _set_helper(_DoubledLinear(4, 4)),
    "a global module's weight updated in place": lambda m, g: BOUND_HELPER.weight.mul_(_rand(g, 4, 4)),
    "a global module's parameter reassigned": lambda m, g: setattr(BOUND_HELPER, "bias", torch.nn.Parameter(
        _rand(g, 4), requires_grad=False)),
    # its hooks and code (format 14: guarded as a submodule's)
    "a forward hook on a global module": lambda m, g: BOUND_HELPER.register_forward_hook(lambda mod, i, out: out * 2),
    "a global module's forward patched": lambda m, g: _patch_forward(BOUND_HELPER, _rand(g, 4)),
    # plain data the code computes with (format 15: compared at each call)
    "a global value changed": lambda m, g: _set_gain(float(_rand(g, 1))),
    "a global value of another type": lambda m, g: _set_gain(int(BOUND_GAIN)),
    "the same global value, a new object": lambda m, g: _set_gain(float("1.5")),
    "a global function patched": lambda m, g: _set_centered(functools.wraps(_centered)(lambda y: _centered(y) * 2)),
    "a global function set back": lambda m, g: _set_centered(_centered),
    "a global list changed in place": lambda m, g: BOUND_FLIP.__setitem__(slice(None), [1, 0]),  # (twice: the same)
    "a global list set back in place": lambda m, g: BOUND_FLIP.__setitem__(slice(None), [1]),
    "a global dict changed in place": lambda m, g: BOUND_OPTS.__setitem__("tilt", float(_rand(g, 1))),
    "a global dict's value of another type": lambda m, g: BOUND_OPTS.__setitem__("tilt", 1),
    "a global dict set back in place": lambda m, g: BOUND_OPTS.__setitem__("tilt", 1.0),
    "a global dict's function wrapped": lambda m, g: BOUND_OPTS.__setitem__("post", functools.wraps(_halved)(
        lambda t: _halved(t) * 3)),
    "a global dict's function set back": lambda m, g: BOUND_OPTS.__setitem__("post", _halved),
    "a global object's value changed": lambda m, g: setattr(BOUND_ARGS, "bias", float(_rand(g, 1))),
    "a global object assigned anew, equal": lambda m, g: _set_args(types.SimpleNamespace(bias=0.25)),
    "a global object assigned anew": lambda m, g: _set_args(types.SimpleNamespace(bias=float(_rand(g, 1)))),
    # a function of torch's modules the code calls (``F.softsign``: compared by identity, by code at load)
    "a torch function patched": lambda m, g: setattr(F, "softsign", _softer),
    "a torch function patched by a wrapper of its name": lambda m, g: setattr(
        F, "softsign", functools.wraps(_SOFTSIGN)(lambda t: _SOFTSIGN(t) * 2)),
    "a torch function set back": lambda m, g: setattr(F, "softsign", _SOFTSIGN),
    # values read through ``self`` from the module's class (the class is both modules': changed alike)
    "a class value changed": lambda m, g: setattr(type(m), "offset", float(_rand(g, 1))),
    "a class value set on the instance": lambda m, g: setattr(m, "offset", float(_rand(g, 1))),
    "the class value set on the instance, equal": lambda m, g: setattr(m, "offset", float("0.25")),
    "the instance's value deleted": lambda m, g: m.__dict__.pop("offset", None),
    "a staticmethod of the class patched": lambda m, g: setattr(type(m), "squash", staticmethod(torch.sigmoid)),
    # a plain object global's class default, on its class, or set on the object since
    "a global object's class default changed": lambda m, g: setattr(_BoundSettings, "lift", float(_rand(g, 1))),
    "a global object's default set on it": lambda m, g: setattr(BOUND_SETTINGS, "lift", float(_rand(g, 1))),
    "a global object's default set on it, equal": lambda m, g: setattr(BOUND_SETTINGS, "lift", float("0.5")),
    # a config's default, on its class (both modules'), or set on the object since
    "a config's class default changed": lambda m, g: setattr(_BoundConfig, "tilt", float(_rand(g, 1))),
    "a config's default set on the object": lambda m, g: setattr(m.config, "tilt", float(_rand(g, 1))),
    "a config's default set on the object, equal": lambda m, g: setattr(m.config, "tilt", float("0.75")),
    # tensors a list or dict attribute holds (until 2026-12-06 the package ran its copies, silently)
    "a list-held tensor replaced": lambda m, g: m.held.__setitem__(0, _rand(g, 4)),
    "a list-held tensor updated in place": lambda m, g: m.held[0].mul_(_rand(g, 4)) if m.held else None,
    "a list attribute assigned anew": lambda m, g: setattr(m, "held", [_rand(g, 4)]),
    "a list-held tensor of another shape": lambda m, g: m.held.__setitem__(0, _rand(g, 2)),
    "a list attribute emptied": lambda m, g: m.held.clear(),
    "a dict-held tensor replaced": lambda m, g: m.tables.__setitem__("shift", _rand(g, 4)),
    # the children of a container the code iterates (a deletion registers nothing)
    "a layer appended to a ModuleList": lambda m, g: m.extra.append(torch.nn.Linear(4, 4)),
    "a layer removed from a ModuleList": lambda m, g: len(m.extra) and m.extra.pop(-1),
    "a ModuleList assigned anew, as long": lambda m, g: setattr(m, "extra", torch.nn.ModuleList(
        [torch.nn.Linear(4, 4) for _ in m.extra])),
}


# (the function form with the eager backend alone: what differs is the binding by name, which
# is the backends' same weights list; the suite's time is budgeted)
@pytest.fixture(scope="module", params=[("module", "eager"), ("module", "inductor"), ("function", "eager")],
                ids="-".join)
def bound_package(request):
    """A package of the module itself, or of a function that reaches it by name, bound
    as ``module=m`` or ``module={"model": m}``."""
    form, backend = request.param
    _reset_globals()  # (as the fuzzer's examples start: they change them)
    torch.manual_seed(0)
    m = _BoundWithNorm().eval().requires_grad_(False)
    program = m if form == "module" else _function_of(m)
    return aotpack.compile(program, (torch.randn(3, 4),), backend=backend).to_bytes(), m.state_dict(), form


class BranchOnWeight(torch.nn.Module):
    """Reads its weight's requires_grad: export keeps one branch (as torch.compile
    guards it, the package pins it)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(3))

    def forward(self, x):
        return x * self.w * 2 if self.w.requires_grad else x * self.w * 3


@pytest.mark.parametrize("grad", [True, False])
def test_a_bound_parameters_requires_grad_the_program_reads_is_guarded(tmp_path, grad):
    m = BranchOnWeight()
    with torch.no_grad():
        path = aotpack.compile(m, (torch.randn(3),), backend="eager").save(tmp_path / "b.aot")
    assert aotpack.inspect(path).manifest.variants[0].requires_grad_weights == {"w": True}
    fn = aotpack.load(path, module=m)
    # under no_grad, the program reads the weight's flag, not x's: x may require grad
    x = torch.randn(3, requires_grad=not grad)
    with torch.set_grad_enabled(grad):
        if grad:  # (an inference package under grad mode refuses a parameter that requires grad anyway)
            m.requires_grad_(False)
            with pytest.raises(aotpack.GuardError, match=r"module parameter 'w'\.requires_grad: expected True"):
                fn(x)
            return
        torch.testing.assert_close(fn(x), m(x))  # the branch compiled: 2x
        m.w.requires_grad_(False)  # eager now takes the other branch (3x): refused, never the old answer
        with pytest.raises(aotpack.GuardError, match=r"module parameter 'w'\.requires_grad: expected True"):
            fn(x)
        m.w.requires_grad_(True)
        torch.testing.assert_close(fn(x), m(x))


def test_requires_grad_set_after_calls_under_grad_mode_is_refused(tmp_path):
    """Under grad mode a bound inference package checks its parameters' requires_grad at
    each call. The native check of the weights (binding.py) lets calls skip the
    one-by-one pass while nothing changed: a parameter made to require grad after
    calls that passed is still refused, and runs again once it no longer does."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).eval().requires_grad_(False)
    fn = aotpack.load(aotpack.compile(m, (torch.randn(3, 4),), backend="eager").save(tmp_path / "m.aot"), module=m)
    x = torch.randn(3, 4)
    for _ in range(3):
        torch.testing.assert_close(fn(x), m(x))  # grad mode on; nothing requires grad
    m[2].bias.requires_grad_(True)
    with pytest.raises(aotpack.GuardError, match=r"module parameter '2\.bias'\.requires_grad: expected False"):
        fn(x)
    m[2].bias.requires_grad_(False)
    torch.testing.assert_close(fn(x), m(x))
    with torch.no_grad():
        torch.testing.assert_close(fn(x), m(x))
        m[0].weight.requires_grad_(True)  # set where no check runs, then called under grad mode
        torch.testing.assert_close(fn(x), m(x))
    with pytest.raises(aotpack.GuardError, match=r"module parameter '0\.weight'\.requires_grad: expected False"):
        fn(x)


from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
# (each change the fuzzer's draws may miss, run alone: plain global data, format 15)
@example(changes=[("a global value changed", 0)])
@example(changes=[("a global value of another type", 0)])
@example(changes=[("the same global value, a new object", 0), ("a global value changed", 1)])
@example(changes=[("a global function patched", 0)])
@example(changes=[("a global list changed in place", 0)])
@example(changes=[("a global object's value changed", 0)])
@example(changes=[("a global object assigned anew", 0)])
@example(changes=[("a global object assigned anew, equal", 0), ("a global object's value changed", 1)])
@example(changes=[("a global list changed in place", 0), ("a global list set back in place", 0)])
@example(changes=[("a global function patched", 0), ("a global function set back", 0)])
@example(changes=[("a torch function patched", 0)])
@example(changes=[("a torch function patched by a wrapper of its name", 0)])
@example(changes=[("a torch function patched", 0), ("a torch function set back", 0)])
@example(changes=[("a global dict changed in place", 0)])
@example(changes=[("a global dict's value of another type", 0)])
@example(changes=[("a global dict changed in place", 0), ("a global dict set back in place", 0)])
@example(changes=[("a submodule's class swapped", 0)])
@example(changes=[("a global dict's function wrapped", 0)])
@example(changes=[("a global dict's function wrapped", 0), ("a global dict's function set back", 0)])
@example(changes=[("a layer appended to a ModuleList", 0)])
@example(changes=[("a layer removed from a ModuleList", 0)])
@example(changes=[("a ModuleList assigned anew, as long", 0)])
@example(changes=[("a Python value read under @torch.no_grad()", 0)])
@example(changes=[("a class value changed", 0)])
@example(changes=[("a class value set on the instance", 0)])
@example(changes=[("the class value set on the instance, equal", 0), ("a class value changed", 1)])
@example(changes=[("a class value set on the instance", 0), ("the instance's value deleted", 0)])
@example(changes=[("a staticmethod of the class patched", 0)])
@example(changes=[("a config's class default changed", 0)])
@example(changes=[("a global object's class default changed", 0)])
@example(changes=[("a global object's default set on it", 0)])
@example(changes=[("a global object's default set on it, equal", 0), ("a global object's class default changed", 1)])
@example(changes=[("a global module assigned anew", 0)])
@example(changes=[("a global module assigned one of another class", 0)])
@example(changes=[("a global module assigned anew", 0), ("a global module's weight updated in place", 1)])
@example(changes=[("a list-held tensor replaced", 0)])
@example(changes=[("a list-held tensor updated in place", 0)])
@example(changes=[("a list attribute assigned anew", 0)])
@example(changes=[("a list-held tensor of another shape", 0)])
@example(changes=[("a list attribute emptied", 0)])
@example(changes=[("a dict-held tensor replaced", 0)])
@example(changes=[("a config's default set on the object", 0)])
@example(changes=[("a config's default set on the object, equal", 0), ("a config's class default changed", 1)])
@given(changes=st.lists(st.tuples(st.sampled_from(sorted(MODULE_CHANGES)), st.integers(0, 2**16)), min_size=1,
                        max_size=3))
def test_a_bound_module_changed_between_calls_gives_eager_or_a_guard_error(bound_package, changes):
    """The contract with the bound module as a dimension: after any sequence of changes
    to the module a call gives eager's result on the changed module, or a GuardError;
    never the result of the old weights. The same where a function's program reaches the
    module by name and ``module={"model": m}`` binds it (until 2026-12-05 such a
    package read the module's weights, mode and Python values as they were at compile;
    until 2026-12-05 both read a module global as it was at compile)."""
    data, state, form = bound_package
    _reset_globals()
    try:
        _changed_between_calls(data, state, form, changes)
    finally:
        _reset_globals()  # (torch's own module patched: the tests after this one must not see it)


def _changed_between_calls(data: bytes, state: dict, form: str, changes: list) -> None:
    m, ref = _BoundWithNorm().eval(), _BoundWithNorm().eval()
    m.load_state_dict(state)
    ref.load_state_dict(state)
    fn = aotpack.load(data, module=m if form == "module" else {"model": m, "BOUND_HELPER": BOUND_HELPER})
    eager = ref if form == "module" else _function_of(ref)
    x = torch.randn(3, 4)
    with torch.no_grad():
        torch.testing.assert_close(fn(x), eager(x))
        for name, seed in changes:
            for module in (m, ref):
                torch.manual_seed(seed)  # (a replaced submodule initializes from the global generator)
                MODULE_CHANGES[name](module, torch.Generator().manual_seed(seed))
        try:
            got = fn(x)
        except aotpack.GuardError:
            return
        want = eager(x)
        assert got.dtype == want.dtype and got.shape == want.shape, changes
        torch.testing.assert_close(got, want, msg=str(changes))


@pytest.mark.parametrize("backend", ["eager", "inductor"])
def test_a_bound_modules_plain_tensor_attributes_are_followed(tmp_path, backend):
    """A tensor attribute that is no parameter or buffer (``self.gain = torch.tensor(...)``)
    is read at every eager call, as parameters are: reassigned, updated in place, or in a
    replaced submodule, the package uses the new value; no tensor any more, it refuses."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(_Bound(), _Bound()).eval().requires_grad_(False)
    fn = aotpack.load(aotpack.compile(m, (torch.randn(3, 4),), backend=backend).save(tmp_path / "m.aot"), module=m)
    x = torch.randn(3, 4)
    for change in (lambda: setattr(m[1], "gain", torch.randn(4)), lambda: m[0].gain.mul_(-2),
                   lambda: m.__setitem__(1, _Bound().requires_grad_(False))):
        before = m(x)
        change()
        assert not torch.allclose(before, m(x))  # the change changes eager's result
        torch.testing.assert_close(fn(x), m(x))
    m[0].gain = None
    with pytest.raises(aotpack.GuardError, match=r"module tensor attribute '0.gain' is no tensor any more"):
        fn(x)
    m[0].gain = torch.ones(4, 1)
    with pytest.raises(aotpack.GuardError, match=r"module tensor attribute '0.gain' is float32\[4, 1\], the "
                                                 r"package was compiled for float32\[4\]"):
        fn(x)
    m[0].gain = torch.ones(4, requires_grad=True)
    with pytest.raises(aotpack.GuardError, match=r"module tensor attribute '0.gain'.requires_grad: expected False"):
        fn(x)
    with torch.no_grad():
        torch.testing.assert_close(fn(x), m(x))


def test_a_plain_tensor_attribute_that_requires_grad_gets_its_gradient(tmp_path):
    """In training, eager accumulates into a plain tensor attribute that requires grad
    (no Parameter needed): the package computes that gradient too."""
    torch.manual_seed(0)
    m = _Bound().train()
    m.gain.requires_grad_(True)
    x = torch.randn(3, 4)
    fn = aotpack.load(aotpack.compile(m, (x,), train=True, backend="eager").save(tmp_path / "t.aot"), module=m)
    (fn(x) ** 2).sum().backward()
    got = {n: t.grad.clone() for n, t in [*m.named_parameters(), ("gain", m.gain)]}
    m.zero_grad()
    m.gain.grad = None
    (m(x) ** 2).sum().backward()
    for n, t in [*m.named_parameters(), ("gain", m.gain)]:
        torch.testing.assert_close(got[n], t.grad, msg=n)


def test_a_bound_modules_python_values_are_guarded(tmp_path):
    """A Python value the program reads (``self.alpha``, LayerNorm's ``eps``) is compiled
    in, where eager reads it at each call: another value is refused, naming it, and an
    equal one of another type (until 2026-12-06 ``1`` where ``True`` was compiled in, or
    ``2.0`` where ``2``, ran as compiled); one the program does not read may change; a
    value set back runs again."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(_Bound(), torch.nn.LayerNorm(4)).eval().requires_grad_(False)
    fn = aotpack.load(aotpack.compile(m, (torch.randn(3, 4),), backend="eager").save(tmp_path / "m.aot"), module=m)
    x = torch.randn(3, 4)
    m[0].note = "changed"  # not read by forward: no guard on it
    m[0].in_features = 99  # not an attribute the program names either
    torch.testing.assert_close(fn(x), m(x))
    m[1].eps = 0.5
    with pytest.raises(aotpack.GuardError, match=r"module.1.eps: expected 1e-05 \(a Python value compiled into the "
                                                 r"package: compile again to change it\), got 0.5"):
        fn(x)
    m[1].eps = 1e-5
    m[0].relu = False
    with pytest.raises(aotpack.GuardError, match=r"module.0.relu: expected True"):
        fn(x)
    m[0].relu = 1  # equal to True, of another type (an int ``alpha`` made float changes an integer result's dtype)
    with pytest.raises(aotpack.GuardError, match=r"module.0.relu: expected True .*, got 1, an int where a bool was "
                                                 r"compiled in"):
        fn(x)
    m[0].relu = True
    torch.testing.assert_close(fn(x), m(x))


class _Casts(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.compute = torch.float64
        self.on = torch.device("cpu")

    def forward(self, x):
        return (x.to(self.compute) * 3).to(self.on)


def test_a_bound_modules_dtype_and_device_values_are_guarded(tmp_path):
    """``self.compute = torch.float64`` read in forward is compiled in like any Python
    value (format version 8): another dtype is refused naming it, the same one runs."""
    m = _Casts()
    pkg = aotpack.compile(m, (torch.randn(3),), backend="eager")
    assert pkg.manifest.format_version == 8
    fn = aotpack.load(pkg.save(tmp_path / "c.aot"), module=m)
    x = torch.randn(3)
    assert fn(x).dtype == m(x).dtype == torch.float64
    m.compute = torch.float32
    with pytest.raises(aotpack.GuardError, match=r"module.compute: expected torch.float64 \(a Python value compiled "
                                                 r"into the package: compile again to change it\), got torch.float32"):
        fn(x)
    m.compute = torch.float64
    m.on = torch.device("meta")
    with pytest.raises(aotpack.GuardError, match=r"module.on: expected device\(type='cpu'\)"):
        fn(x)
    m.on = torch.device("cpu")
    torch.testing.assert_close(fn(x), m(x))


class _Counts(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1  # a side effect (warned at capture), no value the result depends on
        return x * 2


def test_an_attribute_the_program_sets_is_no_guard(tmp_path):
    m = _Counts()
    with pytest.warns(aotpack.SideEffectWarning, match="self.calls"):
        fn = aotpack.load(aotpack.compile(m, (torch.randn(3),), backend="eager").save(tmp_path / "c.aot"), module=m)
    m.calls = 7  # eager calls of m move it; the package's result does not depend on it
    torch.testing.assert_close(fn(torch.ones(3)), torch.full((3,), 2.0))


class _Config:  # a plain object holding settings, as a transformers model's config
    def __init__(self):
        self.scale, self.reduce = 2.0, "sum"


class _UsesConfig(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config, self.inner = config, torch.nn.Linear(4, 4)

    def forward(self, x):
        name = "sca" + "le"  # read by a computed name, as transformers does
        y = self.inner(x) * getattr(self.config, name)
        return y.sum(-1) if self.config.reduce == "sum" else y


def test_a_bound_modules_config_is_guarded(tmp_path):
    """Every plain value of a plain object the module's code reads (its config) is
    compiled in: another value is refused naming it, also in a config assigned anew."""
    torch.manual_seed(0)
    m = _UsesConfig(_Config()).requires_grad_(False)
    fn = aotpack.load(aotpack.compile(m, (torch.randn(3, 4),), backend="eager").save(tmp_path / "c.aot"), module=m)
    x = torch.randn(3, 4)
    torch.testing.assert_close(fn(x), m(x))
    m.config.scale = 3.0
    with pytest.raises(aotpack.GuardError, match=r"module.config.scale: expected 2.0 .* got 3.0"):
        fn(x)
    m.config = _Config()  # a new object with the compiled values: runs
    torch.testing.assert_close(fn(x), m(x))
    m.config.reduce = "none"  # and a change to it is seen, not to the old object
    with pytest.raises(aotpack.GuardError, match=r"module.config.reduce: expected 'sum'"):
        fn(x)


class _ClassValues(torch.nn.Module):
    """Reads values its class holds through ``self``: plain data and a staticmethod."""

    scale = 2.0
    use_relu = False
    act = staticmethod(torch.tanh)

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)

    def forward(self, x):
        y = self.act(self.lin(x)) * self.scale
        return torch.relu(y) if self.use_relu else y


class _ClassValuesSub(_ClassValues):
    pass


def test_values_read_from_the_modules_class_are_guarded(tmp_path):
    """``scale = 2.0`` in the class body, read as ``self.scale``: eager reads the class's
    value, or the instance's where one is set since, at every call (until 2026-12-07 a
    bound package ran 2.0 after ``M.scale = 3.0``, silently). Each is compared where the
    module resolves it now: on its class, a base class or the instance."""
    torch.manual_seed(0)
    cls = _ClassValuesSub  # (the values live on its base: a subclass's own assignment shadows them)
    m = cls().requires_grad_(False)
    path = aotpack.compile(m, (torch.randn(2, 3),), backend="eager").save(tmp_path / "c.aot")
    variant = aotpack.inspect(path).manifest.variants[0]
    assert variant.class_attributes == {"act": {"function": "torch._VariableFunctionsClass.tanh"}, "scale": 2.0,
                                        "use_relu": False}
    assert variant.module_attributes == {}
    fn = aotpack.load(path, module=m)
    x = torch.randn(2, 3)
    torch.testing.assert_close(fn(x), m(x))
    try:
        cls.scale = 3.0  # on the class (the subclass's own now)
        with pytest.raises(aotpack.GuardError, match=r"module.scale \(of class _ClassValuesSub\): expected 2.0 .*, "
                                                     r"got 3.0"):
            fn(x)
        del cls.scale  # the base's again
        torch.testing.assert_close(fn(x), m(x))
        _ClassValues.use_relu = True  # on the base class
        with pytest.raises(aotpack.GuardError, match=r"module.use_relu .*: expected False .*, got True"):
            fn(x)
        _ClassValues.use_relu = False
        m.scale = 0.5  # set on the instance, which eager reads first
        with pytest.raises(aotpack.GuardError, match=r"module.scale: expected 2.0 .*, got 0.5"):
            fn(x)
        m.scale = 2.0  # the compiled value, on the instance: runs, and a change there is seen
        torch.testing.assert_close(fn(x), m(x))
        m.scale = 1.0
        with pytest.raises(aotpack.GuardError, match=r"module.scale: expected 2.0"):
            fn(x)
        del m.scale  # the class's again
        torch.testing.assert_close(fn(x), m(x))
        _ClassValues.act = staticmethod(torch.sigmoid)
        with pytest.raises(aotpack.GuardError, match=r"module.act \(of class _ClassValuesSub\): expected the function "
                                                     r"it held at load .*, got torch\..*sigmoid"):
            fn(x)
        # patched before the load: refused at the load (its code is not the one compiled in)
        _ClassValues.act = staticmethod(functools.wraps(torch.tanh)(lambda t: torch.tanh(t) * 2))
        with pytest.raises(aotpack.AotpackError, match=r"module.act: expected the function compiled into the package"):
            aotpack.load(path, module=m)
    finally:
        _ClassValues.scale, _ClassValues.use_relu, _ClassValues.act = 2.0, False, staticmethod(torch.tanh)
        cls.__dict__.get("scale") is None or delattr(cls, "scale")
    torch.testing.assert_close(aotpack.load(path, module=m)(x), m(x))


class _DefaultsConfig:
    """A config whose defaults live on its class (``eps``), one field set per instance."""

    eps = 2.0
    gated = False

    def __init__(self):
        self.hidden = 3


class _Configured(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.lin = torch.nn.Linear(config.hidden, 3)

    def forward(self, x):
        y = self.lin(x) * self.config.eps
        return torch.sigmoid(y) if self.config.gated else y


def test_a_configs_class_defaults_are_guarded(tmp_path):
    """``class Config: eps = 2.0``, read as ``self.config.eps``: the config object does not
    hold it, its class does, and eager reads ``Config.eps = 3.0`` (or ``config.eps = 3.0``
    set on the object since) at the next call. Until 2026-12-06 a bound package ran 2.0,
    silently; each is now compared where the config resolves it."""
    torch.manual_seed(0)
    m = _Configured(_DefaultsConfig()).requires_grad_(False)
    path = aotpack.compile(m, (torch.randn(2, 3),), backend="eager").save(tmp_path / "c.aot")
    variant = aotpack.inspect(path).manifest.variants[0]
    assert variant.class_attributes == {"config.eps": 2.0, "config.gated": False}
    assert variant.module_attributes == {"config.hidden": 3}
    fn = aotpack.load(path, module=m)
    x = torch.randn(2, 3)
    torch.testing.assert_close(fn(x), m(x))
    try:
        _DefaultsConfig.eps = 3.0
        with pytest.raises(aotpack.GuardError, match=r"module.config.eps \(of class _DefaultsConfig\): expected 2.0 .*, "
                                                     r"got 3.0") as info:
            fn(x)
        assert "changed since the load" in info.value.hint  # (no input's: the bound module's)
        _DefaultsConfig.eps = 2.0
        torch.testing.assert_close(fn(x), m(x))
        m.config.gated = True  # on the object, which eager reads first
        with pytest.raises(aotpack.GuardError, match=r"module.config.gated: expected False .*, got True"):
            fn(x)
        del m.config.gated
        torch.testing.assert_close(fn(x), m(x))
        other = _DefaultsConfig()
        other.eps = 0.5
        m.config = other  # another config: followed, and compared there
        with pytest.raises(aotpack.GuardError, match=r"module.config.eps: expected 2.0 .*, got 0.5"):
            fn(x)
        m.config = _DefaultsConfig()
        torch.testing.assert_close(fn(x), m(x))
    finally:
        _DefaultsConfig.eps, _DefaultsConfig.gated = 2.0, False


TABLE = torch.linspace(0.0, 1.0, 3)


def test_a_function_bound_with_a_dict_that_leaves_out_a_name_says_so(recwarn):
    """``lambda x: lin(x) * w + TABLE`` bound with ``module={"w": w}``: ``lin`` (a closure
    variable) runs as the package's copy of compile time, where eager reads the caller's;
    a UserWarning at load names it and the dict entry that would follow it. ``TABLE``, a
    global of a module this process imported, is read from there as eager reads it, so it
    is not named (until 2026-12-05 it stayed as compiled). A module given bare, not in a
    dict, is told to be given in one. No warning where the dict gives every name."""
    global TABLE
    lin, w = torch.nn.Linear(3, 3), torch.randn(3)
    program = lambda x: lin(x) * w + TABLE  # noqa: E731 - what torch.compile users write
    x = torch.randn(2, 3)
    kept = TABLE
    try:
        with torch.no_grad():
            data = aotpack.compile(program, (x,), backend="eager").to_bytes()
            aotpack.load(data, module={"lin": lin, "w": w, "TABLE": TABLE})
            assert not [w for w in recwarn if "by name" in str(w.message)]
            with pytest.warns(UserWarning, match=r"reads lin by name, which module= does not give: the package "
                                                 r"runs its own copy of compile time there \(add 'lin': lin to"):
                fn = aotpack.load(data, module={"w": w})
            with pytest.warns(UserWarning, match=r"reads lin, w by name, .*\(pass a dict, module=\{'lin': lin, "
                                                 r"'w': w\}, not the Linear itself\)"):
                aotpack.load(data, module=lin)  # (the module bare: its names are not the program's)
            compiled = torch.nn.Linear(3, 3)
            compiled.load_state_dict(lin.state_dict())
            lin.weight.mul_(2)  # not followed, as the warning said; the tensor given is, and the global
            w.mul_(3)
            TABLE.add_(1)
            torch.testing.assert_close(fn(x), compiled(x) * w + TABLE)
            TABLE = torch.linspace(5.0, 6.0, 3)  # assigned anew: read anew
            torch.testing.assert_close(fn(x), compiled(x) * w + TABLE)
            assert not torch.allclose(fn(x), program(x))
    finally:
        TABLE = kept


class _Doubled(torch.nn.Linear):
    def forward(self, x):
        return super().forward(x) * 2


READS_GLOBALS_CHILD = r"""
import sys, torch, aotpack
sys.path.insert(0, sys.argv[2])  # (a copy of tests/programs.py at another path: another checkout)
import programs
assert programs.__file__.startswith(sys.argv[2])
programs.SCALES = torch.linspace(-1.0, 3.0, 4)  # this process's globals, not those of the compile
programs.OFFSETS.add_(5)  # (read by a helper function: found by its module's name, not its file)
programs.HELPER.weight.mul_(-2)
programs.shared_layers.NORM.bias.add_(1)  # (Python module attributes the forward reads)
programs.shared_layers.SHIFT = torch.randn(4)
torch.manual_seed(1)
m = programs.ReadsGlobals().eval().requires_grad_(False)
fn = aotpack.load(sys.argv[1], module=m)
x = torch.randn(3, 4)
torch.testing.assert_close(fn(x), m(x), rtol=1e-4, atol=1e-4)  # (inductor's fused layer norm rounds otherwise)

def refused(change, undo, message):
    change()
    try:
        fn(x)
    except aotpack.GuardError as e:
        assert message in str(e), e
    else:
        raise AssertionError(f"ran after a change that eager reads: {message}")
    undo()
# plain data a helper computes with, and a Python value of a global module: read where this process holds them
refused(lambda: setattr(programs, "GAIN", 2.5), lambda: setattr(programs, "GAIN", 1.5), "global GAIN: expected 1.5")
refused(lambda: setattr(programs.ACT, "approximate", "tanh"), lambda: None, "global ACT.approximate: expected 'none'")
print("equal")
"""


def _close(got, want):
    """Equal within float32's rounding of a fused layer norm (inductor sums in another
    order: about 3e-6 relative on values near 10, and once, in a full `make test`, 3.9e-5
    at one element of 12, 2026-12-07; the changes the test makes move values by 1 or more)."""
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", ["eager", "inductor"])
def test_a_bound_module_reads_the_globals_of_this_process_as_eager(tmp_path, backend):
    """A module's code that reads module globals (``programs.ReadsGlobals``: a tensor and
    two modules in its forward, a tensor in a helper it calls), bound with ``module=m``:
    the package reads them where this process holds them at each call, as eager does:
    updated in place or assigned anew (a global module's parameter too), here and in a
    fresh process whose globals differ from the compile's and whose ``programs`` was
    imported from another path; one of another shape is refused naming it (until
    2026-12-05 the package ran its copy of compile time, bound or not). A global
    module's class, Python values, hooks and forward are guarded as a submodule's
    (format 14; before, a changed ``ACT.approximate`` or a hook on ``HELPER`` ran as
    compiled, silently), and so is a module the forward reads as a Python module's
    attribute (``shared_layers.NORM``, ``shared_layers.SHIFT``: until 2026-12-05 the
    package's copies even bound, and the tensor was not listed as frozen). Plain data the
    code computes with (``GAIN`` in a helper, ``shared_layers.SIGN``) is compared at each
    call (format 15; until 2026-12-06 the package ran the value of compile time, bound or
    not): another value, or an equal one of another type, is refused naming the global;
    so is a global function the forward calls replaced (``programs._offset``, even by a
    wrapper of the same name: its code is traced in), after the load or before it (by its
    code; until 2026-12-06 a patch applied before the load was bound and ran as compiled).
    The fresh process binds the same code read from another file."""
    torch.manual_seed(0)
    m = programs.ReadsGlobals().eval().requires_grad_(False)
    x = torch.randn(3, 4)
    pkg = aotpack.compile(m, (x,), backend=backend)
    assert pkg.manifest.format_version == 15
    path = pkg.save(tmp_path / "g.aot")
    fn, alone = aotpack.load(path, module=m), aotpack.load(path)
    kept = (programs.SCALES, programs.OFFSETS, programs.HELPER, programs.ACT, copy.deepcopy(programs.HELPER.state_dict()),
            programs.shared_layers.NORM, programs.shared_layers.SHIFT, programs.GAIN, programs.shared_layers.SIGN)
    try:
        compiled = alone(x)
        programs.SCALES.mul_(2)
        programs.OFFSETS = torch.randn(4)  # the helper's global, assigned anew
        programs.HELPER.weight.mul_(-1)
        _close(fn(x), m(x))
        torch.testing.assert_close(alone(x), compiled)  # loaded alone, the package's own copies
        programs.HELPER.bias = torch.nn.Parameter(torch.randn(4), requires_grad=False)
        _close(fn(x), m(x))
        programs.HELPER = torch.nn.Linear(4, 4).requires_grad_(False)  # the global module, assigned anew
        _close(fn(x), m(x))
        programs.HELPER = torch.nn.Linear(4, 4, bias=False).requires_grad_(False)
        with pytest.raises(aotpack.GuardError, match=r"global 'HELPER.bias' the module's code reads is no tensor"):
            fn(x)
        programs.HELPER = _Doubled(4, 4).requires_grad_(False)  # the same tensors, other code: refused
        with pytest.raises(aotpack.GuardError, match=r"global HELPER: expected a torch.nn.modules.linear:Linear \(its "
                                                     r"code is compiled into the package\), got a .*_Doubled"):
            fn(x)
        programs.HELPER = kept[2]
        hook = programs.HELPER.register_forward_hook(lambda mod, args, out: out * 2)
        with pytest.raises(aotpack.GuardError, match=r"a forward hook on global HELPER"):
            fn(x)
        hook.remove()
        programs.ACT.approximate = "tanh"  # a Python value of a global module, compiled in
        with pytest.raises(aotpack.GuardError, match=r"global ACT.approximate: expected 'none'"):
            fn(x)
        programs.ACT = torch.nn.GELU()
        _close(fn(x), m(x))
        programs.ACT = torch.nn.ReLU()
        with pytest.raises(aotpack.GuardError, match=r"global ACT: expected a torch.nn.modules.activation:GELU"):
            fn(x)
        programs.ACT = kept[3]
        kept[3].approximate = "none"
        programs.shared_layers.NORM.weight.mul_(2)  # a module the forward reads as shared_layers.NORM
        _close(fn(x), m(x))
        programs.shared_layers.NORM.eps = 0.1
        with pytest.raises(aotpack.GuardError, match=r"global shared_layers.NORM.eps: expected 1e-05"):
            fn(x)
        programs.shared_layers.NORM = torch.nn.LayerNorm(4).requires_grad_(False)
        _close(fn(x), m(x))
        programs.shared_layers.SHIFT.mul_(3)  # a tensor the forward reads as shared_layers.SHIFT
        _close(fn(x), m(x))
        programs.shared_layers.SHIFT = torch.randn(4)
        _close(fn(x), m(x))
        # a function calling the module, bound by the names it reads modules by (a global
        # tensor, SHIFT, is followed where this process holds it): the same
        function = aotpack.load(aotpack.compile(lambda t: m(t) * 2, (x,), backend="eager").to_bytes(),
                                module={"m": m, "ACT": programs.ACT, "HELPER": programs.HELPER,
                                        "NORM": programs.shared_layers.NORM})
        programs.shared_layers.SHIFT.add_(1)
        programs.shared_layers.NORM.weight.add_(1)
        _close(function(x), m(x) * 2)
        torch.testing.assert_close(alone(x), compiled)
        programs.GAIN = 3.0  # plain data a helper computes with
        with pytest.raises(aotpack.GuardError, match=r"global GAIN: expected 1.5 .*, got 3.0"):
            fn(x)
        programs.GAIN = float("1.5")  # the value compiled in again (another object): runs
        _close(fn(x), m(x))
        programs.shared_layers.SIGN = 1.0
        with pytest.raises(aotpack.GuardError, match=r"global shared_layers.SIGN: expected 1 .*, got 1.0, a float "
                                                     r"where an int was compiled in"):
            fn(x)
        programs.shared_layers.SIGN = 1
        _close(fn(x), m(x))
        original = programs._offset  # a helper function the forward calls: its code is traced in
        programs._offset = functools.wraps(original)(lambda y: original(y) + 1)
        with pytest.raises(aotpack.GuardError, match=r"global _offset: expected the function programs._offset it held at "
                                                     r"load .*, got another function of the same name"):
            fn(x)
        with pytest.raises(aotpack.AotpackError, match=r"global _offset: expected the function compiled into the "
                                                       r"package .*, got programs._offset, another code"):
            aotpack.load(path, module=m)  # patched before the load: its code is compared
        programs._offset = original
        _close(fn(x), m(x))
        torch.testing.assert_close(alone(x), compiled)
        programs.SCALES = torch.ones(2)
        with pytest.raises(aotpack.GuardError, match=r"global 'SCALES' the module's code reads is float32\[2\], "
                                                     r"the package was compiled for float32\[4\]"):
            fn(x)
    finally:
        programs.SCALES, programs.OFFSETS, programs.HELPER, programs.ACT = kept[:4]
        programs.SCALES.copy_(torch.linspace(0.5, 2.0, 4))
        programs.HELPER.load_state_dict(kept[4])
        programs.ACT.approximate = "none"
        programs.shared_layers.NORM, programs.shared_layers.SHIFT, programs.GAIN, programs.shared_layers.SIGN = kept[5:]
        kept[5].weight.fill_(1)
        kept[5].eps = 1e-5
        kept[6].copy_(torch.tensor([0.5, -0.5, 1.0, 0.0]))
    elsewhere = tmp_path / "checkout"
    elsewhere.mkdir()
    for name in ("programs.py", "shared_layers.py"):
        shutil.copy(pathlib.Path(programs.__file__).parent / name, elsewhere / name)
    assert "equal" in run_fresh(["-c", READS_GLOBALS_CHILD, str(path), str(elsewhere)]).stdout


TWIN = """
EPS = 0.5


def {name}(x):
    return x {op} EPS
"""


def test_a_global_two_modules_read_by_one_name_is_compared_in_each(tmp_path, monkeypatch):
    """``EPS = 0.5`` in two files, each read by a helper the forward calls: the package
    holds one value for ``global:EPS``, and a bound call compares each module's global
    with it (until 2026-12-06 only the first module's: a change to the other ran as
    compiled, silently)."""
    import importlib
    import sys

    monkeypatch.syspath_prepend(str(tmp_path))
    for name, op in (("twin_add", "+"), ("twin_mul", "*")):
        (tmp_path / f"{name}.py").write_text(TWIN.format(name=name, op=op))
        monkeypatch.setitem(sys.modules, name, importlib.import_module(name))  # (gone again after the test)
    twin_add, twin_mul = sys.modules["twin_add"], sys.modules["twin_mul"]

    class Twins(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)

        def forward(self, x):
            return twin_mul.twin_mul(twin_add.twin_add(self.lin(x)))

    m, x = Twins().eval().requires_grad_(False), torch.randn(3, 4)
    fn = aotpack.load(aotpack.compile(m, (x,), backend="eager").to_bytes(), module=m)
    torch.testing.assert_close(fn(x), m(x))
    for module, where in ((twin_mul, "global twin_mul.EPS"), (twin_add, "global EPS")):
        module.EPS = 0.25
        with pytest.raises(aotpack.GuardError, match=rf"{where}: expected 0.5 .*, got 0.25"):
            fn(x)
        module.EPS = 0.5
        torch.testing.assert_close(fn(x), m(x))


def test_a_function_over_a_transformers_model_follows_the_model_bound():
    """``lambda ids: model(input_ids=ids).logits`` over transformers' GPT-2 (a small config),
    bound with ``module={"model": model}``: an update of its weights is followed, and a
    submodule's dropout put in training mode or a config field changed is refused, naming
    it (until 2026-12-05 such a package ran the weights and values of compile time), and
    so is a function of transformers' module the forward calls patched (until 2026-12-06
    it ran the code of compile time), and a patch of it or of a layer's forward applied
    before the load is refused at the load."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=100,
                                                                 n_positions=32)).eval()
    ids = torch.randint(0, 100, (2, 8))
    program = lambda t: model(input_ids=t).logits  # noqa: E731 - what torch.compile users write
    with torch.no_grad():
        data = aotpack.compile(program, (ids,), backend="eager").to_bytes()
        fn = aotpack.load(data, module={"model": model})
        torch.testing.assert_close(fn(ids), program(ids))
        model.transformer.h[0].attn.c_attn.weight.mul_(1.5)
        torch.testing.assert_close(fn(ids), program(ids))
        model.transformer.drop.train()
        with pytest.raises(aotpack.GuardError, match=r"module.model.transformer.drop.training: expected False "
                                                     r"\(compiled in eval mode"):
            fn(ids)
        model.eval()
        model.config.output_hidden_states = True
        with pytest.raises(aotpack.GuardError, match=r"module.model.config.output_hidden_states: expected False"):
            fn(ids)
        model.config.output_hidden_states = False
        # a function of transformers' module patched (by a wrapper of the same name, as a kernel
        # library patches a model's module): eager calls it at each call, the package traced the old
        from transformers.models.gpt2 import modeling_gpt2

        compiled = fn(ids)
        both_ways = functools.wraps(modeling_gpt2.create_causal_mask)(
            lambda *args, **kwargs: torch.ones(2, 1, 8, 8, dtype=torch.bool))  # attend both ways
        with mock.patch.object(modeling_gpt2, "create_causal_mask", both_ways):
            assert not torch.allclose(program(ids), compiled)  # eager's result moved
            with pytest.raises(aotpack.GuardError, match=r"global create_causal_mask: expected the function "
                                                         r"transformers.masking_utils.create_causal_mask it held at load"):
                fn(ids)
            with pytest.raises(aotpack.AotpackError, match=r"global create_causal_mask: expected the function compiled into "
                                                           r"the package .*, got transformers.masking_utils.create_causal_"
                                                           r"mask, another code"):
                aotpack.load(data, module={"model": model})  # the patch applied before the load
        with mock.patch.object(type(model.transformer.h[1].mlp), "forward",
                               functools.wraps(type(model.transformer.h[1].mlp).forward)(lambda self, h: h)):
            with pytest.raises(aotpack.AotpackError, match=r"module.model.transformer.h.0.mlp.forward: expected the "
                                                           r"forward compiled into the package, got another code"):
                aotpack.load(data, module={"model": model})  # a class's forward wrapped before the load
        torch.testing.assert_close(fn(ids), program(ids))


@pytest.mark.parametrize("backend", ["inductor", pytest.param("aoti", marks=pytest.mark.slow)])
def test_weights_keep_the_layout_compiled_code_reads_them_in(tmp_path, backend):
    """Compiled code reads a weight through the strides it had at compile time; the
    package stores each one in a form that layout is rebuilt from (format version 8).
    Until then such weights were stored contiguous: aoti gave wrong numbers, no error."""
    torch.manual_seed(0)
    m = programs.WeightLayouts().eval().requires_grad_(False)
    args = (torch.randn(5, 6), torch.randn(2, 3, 8, 8))
    pkg = aotpack.compile(m, args, backend=backend)
    assert pkg.manifest.format_version == 8
    assert {n: w.layout for n, w in pkg.manifest.program.weights.items() if w.layout} == {
        "lin.weight": {"order": [1, 0]}, "conv.weight": {"order": [0, 2, 3, 1]},
        "rows": {"stride": [1, 0]}, "gapped": {"stride": [12, 2]}}
    path = pkg.save(tmp_path / "layouts.aot")
    fresh = run_fresh(["-c", "import sys, torch, aotpack; fn = aotpack.load(sys.argv[1]); "
                       "torch.save(fn(*torch.load(sys.argv[2])), sys.argv[3])", str(path),
                       _saved(tmp_path / "args.pt", args), str(tmp_path / "out.pt")])
    assert fresh.returncode == 0, fresh.stderr
    for got, want in zip(torch.load(tmp_path / "out.pt"), m(*args)):
        torch.testing.assert_close(got, want)


def _saved(path, value) -> str:
    torch.save(value, path)
    return str(path)


def test_a_bound_weight_in_another_layout_runs_the_portable_program(tmp_path):
    """``m.to(memory_format=torch.channels_last)`` or ``p.data = p.data.t().contiguous().t()``
    after load: compiled code would read the weight through its old strides, so the call
    runs the package's portable program (eager ops, eager's result) with a warning."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(5)).eval()
    img = torch.randn(2, 3, 8, 8)
    m(img)
    m.requires_grad_(False)
    fn = aotpack.load(aotpack.compile(m, (img,), backend="inductor").save(tmp_path / "m.aot"), module=m)
    torch.testing.assert_close(fn(img), m(img))
    m.to(memory_format=torch.channels_last)
    m[2].weight.data = m[2].weight.data.t().contiguous().t()
    with pytest.warns(aotpack.PortableRunWarning, match=r"module weight '0.weight'.*expects contiguous \(as "
                                                        r"compiled.*got channels_last"):
        torch.testing.assert_close(fn(img), m(img))
    m.to(memory_format=torch.contiguous_format)
    torch.testing.assert_close(fn(img), m(img))  # 2.weight still transposed: portable, warned once
    m[2].weight.data = m[2].weight.data.contiguous()
    torch.testing.assert_close(fn(img), m(img))


class _Acts(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.act = torch.nn.ReLU()
        self.fn = torch.nn.functional.gelu

    def forward(self, x):
        return self.fn(self.act(self.lin(x)))


class _OtherActs(_Acts):
    def forward(self, x):
        return self.act(self.lin(x)) * 2


def test_a_replaced_submodule_of_another_class_and_a_replaced_function_are_refused(tmp_path):
    """The package holds the code of the modules that ran and of the functions their
    attributes named: a submodule replaced by one of another class (``nn.SiLU`` for
    ``nn.ReLU``: the same attributes, other code), a function attribute replaced, or a
    module of another class bound at load is refused, naming it; eager would run the new
    code (these gave the old code's result before)."""
    torch.manual_seed(0)
    m = _Acts().eval().requires_grad_(False)
    x = torch.randn(3, 4)
    path = aotpack.compile(m, (x,), backend="eager").save(tmp_path / "a.aot")
    fn = aotpack.load(path, module=m)
    torch.testing.assert_close(fn(x), m(x))
    m.act = torch.nn.SiLU()
    with pytest.raises(aotpack.GuardError, match=r"module.act: expected a torch.nn.modules.activation:ReLU \(its "
                                                 r"code is compiled into the package\), got a torch.nn.modules"
                                                 r".activation:SiLU"):
        fn(x)
    m.act = torch.nn.ReLU()
    torch.testing.assert_close(fn(x), m(x))
    m.fn = torch.nn.functional.silu
    with pytest.raises(aotpack.GuardError, match=r"module.fn: expected the function torch._C._nn.gelu"):
        fn(x)
    m.fn = torch.nn.functional.gelu
    torch.testing.assert_close(fn(x), m(x))
    other = _OtherActs().eval().requires_grad_(False)
    with pytest.raises(aotpack.AotpackError, match=r"module: expected a test_module_binding:_Acts .*, got a "
                                                   r"test_module_binding:_OtherActs"):
        aotpack.load(path, module=other)


class _PatchedActs(_Acts):
    """_Acts whose class's forward a test may patch (not _Acts': tests share it)."""


def _leaky(slope):
    return lambda t: torch.where(t > 0, t, t * slope)


class _LeakyActs(_Acts):
    def __init__(self, slope=0.1):
        super().__init__()
        self.fn = _leaky(slope)


def test_code_patched_before_the_load_is_refused_at_the_load(tmp_path):
    """The code a module's call ran is compared when a package is bound (2026-12-06;
    until then a patch applied between the compile and ``load(path, module=m)`` was bound,
    and the package ran the code it traced where eager ran the patch): a forward set on
    the instance (as accelerate's hooks do) or wrapped on the class, torch's own included,
    and a function attribute that closes over another value. The same code binds."""
    torch.manual_seed(0)
    m = _LeakyActs().eval().requires_grad_(False)
    x = torch.randn(3, 4)
    path = aotpack.compile(m, (x,), backend="eager").save(tmp_path / "a.aot")
    m.lin.forward = lambda t: torch.nn.functional.linear(t, m.lin.weight) * 3
    with pytest.raises(aotpack.AotpackError, match=r"module.lin.forward: expected the forward compiled into the "
                                                   r"package, got another code \(the forward was wrapped"):
        aotpack.load(path, module=m)
    del m.lin.forward
    wrapped = functools.wraps(torch.nn.Linear.forward)(lambda self, t: torch.nn.functional.linear(t, self.weight))
    with mock.patch.object(torch.nn.Linear, "forward", wrapped), pytest.raises(aotpack.AotpackError,
                                                                               match=r"module.lin.forward: expected"):
        aotpack.load(path, module=m)
    m.fn = _leaky(0.2)  # the same code over another slope
    with pytest.raises(aotpack.AotpackError, match=r"module.fn: expected the function compiled into the package .*, "
                                                   r"got test_module_binding._leaky.<locals>.<lambda>#\w+, another"):
        aotpack.load(path, module=m)
    m.fn = _leaky(0.1)  # another object, the same code and slope: binds, and runs as eager
    fn = aotpack.load(path, module=m)
    torch.testing.assert_close(fn(x), m(x))
    m.fn = _leaky(0.2)  # after the load: refused by identity, as before
    with pytest.raises(aotpack.GuardError, match=r"module.fn: expected the function .* it held at load"):
        fn(x)


class _CallsTorch(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x):
        h = self.lin(x)
        return torch.cat([torch.nn.functional.silu(h), h], -1)


def test_a_function_of_torchs_modules_patched_is_refused(tmp_path):
    """``F.silu = kernel`` (as scripts patch ``F.scaled_dot_product_attention``): eager
    calls the patch, the package the function it traced. The functions of torch's modules
    the module's code names (``torch.cat``, ``torch.nn.functional.silu`` written out;
    recorded only by their code, so the package's format version stays 1) are held at
    load and compared at each call by identity; one patched before the load, even by a
    wrapper of the same name, is refused at the load (until 2026-12-06 both ran as
    compiled)."""
    torch.manual_seed(0)
    m = _CallsTorch().eval().requires_grad_(False)
    x = torch.randn(3, 4)
    pkg = aotpack.compile(m, (x,), backend="eager")
    assert pkg.manifest.format_version == 1
    assert {"global:torch.nn.functional.silu", "global:torch.cat"} <= set(pkg.manifest.variants[0].function_code)
    path = pkg.save(tmp_path / "t.aot")
    fn = aotpack.load(path, module=m)
    torch.testing.assert_close(fn(x), m(x))
    compiled = fn(x)
    with mock.patch.object(torch.nn.functional, "silu", torch.tanh):
        assert not torch.allclose(m(x), compiled)
        with pytest.raises(aotpack.GuardError, match=r"global torch.nn.functional.silu: expected the function "
                                                     r"torch.nn.functional.silu it held at load"):
            fn(x)
    doubled = functools.wraps(torch.cat)(lambda ts, dim=0: torch.stack(ts, dim).sum(dim).repeat(1, 2))
    with mock.patch.object(torch, "cat", doubled):
        assert m(x).shape == compiled.shape and not torch.allclose(m(x), compiled)  # eager's result moved
        with pytest.raises(aotpack.GuardError, match=r"global torch.cat: expected the function .*cat it held at load"):
            fn(x)
        with pytest.raises(aotpack.AotpackError, match=r"global torch.cat: expected the function compiled into the "
                                                       r"package .*, got .*cat, another code"):
            aotpack.load(path, module=m)
    torch.testing.assert_close(fn(x), m(x))


class _TorchLayers(torch.nn.Module):
    """Only torch's own modules: their code calls ``F.gelu``, ``F.linear``, ``F.layer_norm``
    and (through its ``_conv_forward``) ``F.conv1d``; the user's code names none."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(2, 2, 3, padding=1)
        self.lin = torch.nn.Linear(4, 4)
        self.norm = torch.nn.LayerNorm(4)
        self.act = torch.nn.GELU()

    def forward(self, x):
        return self.act(self.norm(self.lin(self.conv(x))))


@pytest.mark.parametrize("name,module", [("gelu", "activation"), ("linear", "linear"), ("layer_norm", "normalization"),
                                         ("conv1d", "conv")])
def test_a_function_torchs_own_modules_call_patched_is_refused(tmp_path, name, module):
    """``F.gelu = kernel`` (what a kernel library installs): eager's ``nn.GELU`` calls the
    patch at each call. The functions of torch's modules that the code of torch's own
    ``nn`` modules names are recorded as those modules read them (``global:F.gelu@torch.
    nn.modules.activation``) and compared at each call as the user's are: a patch after
    the load is a GuardError naming it, one before the load is refused there. (Until
    2026-12-07 only the functions the user's code names were: these ran as compiled,
    silently, where torch.compile's guards recompile.)"""
    _patch_is_refused(tmp_path, _TorchLayers(), f"global:F.{name}@torch.nn.modules.{module}", torch.nn.functional,
                      name, lambda original: lambda *a, **k: original(*a, **k) * 2,
                      (rf"global F.{name} of torch.nn.modules.{module}: expected the function .*{name} it held at load",
                       rf"global F.{name} of torch.nn.modules.{module}: expected the function compiled into the "
                       rf"package .*, got .*{name}, another code"))


def _patch_is_refused(tmp_path, m, recorded: str, owner, name: str, patch, errors: tuple[str, str]) -> None:
    """``m`` compiled (``recorded`` in its ``function_code``) and loaded bound; then
    ``owner.name`` patched with a ``functools.wraps`` of ``patch(original)``: eager runs
    the patch, a call is a GuardError matching ``errors[0]``, a load an error matching
    ``errors[1]``; undone, the package runs again."""
    torch.manual_seed(0)
    m = m.eval().requires_grad_(False)
    x = torch.randn(3, 2, 4)
    pkg = aotpack.compile(m, (x,), backend="eager")
    assert recorded in pkg.manifest.variants[0].function_code
    path = pkg.save(tmp_path / "t.aot")
    fn = aotpack.load(path, module=m)
    compiled = fn(x)
    torch.testing.assert_close(compiled, m(x))
    original = getattr(owner, name)
    with mock.patch.object(owner, name, functools.wraps(original)(patch(original))):
        assert not torch.allclose(m(x), compiled)  # (eager runs the patch)
        with pytest.raises(aotpack.GuardError, match=errors[0]):
            fn(x)
        with pytest.raises(aotpack.AotpackError, match=errors[1]):
            aotpack.load(path, module=m)
    torch.testing.assert_close(fn(x), m(x))  # (undone: runs again)


class _TensorMethods(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.flat = torch.nn.Flatten()

    def forward(self, x):
        a, b = self.lin(x).relu().split(2, dim=-1)  # (relu: a C method; split: torch's Python method)
        return self.flat(a * b)  # (nn.Flatten's code calls ``input.flatten``)


@pytest.mark.parametrize("method", ["relu", "split", "flatten"])
def test_a_tensor_method_patched_is_refused(tmp_path, method):
    """``torch.Tensor.relu = f`` after the load: eager calls the patch, at each call, from
    the user's code (``x.relu()``) and from torch's own modules' (``nn.Flatten`` calls
    ``input.flatten``). The methods of ``torch.Tensor`` that code names are recorded
    (``tensor:relu`` in ``function_code``) and compared at each call: a patch after the
    load is a GuardError naming it, one before the load is refused there, and undone the
    package runs again. (Until 2026-12-07 such a patch ran as compiled, silently, where
    torch.compile's guards recompile.)"""
    _patch_is_refused(tmp_path, _TensorMethods(), f"tensor:{method}", torch.Tensor, method,
                      lambda original: lambda t, *a, **k: original(t * 2, *a, **k),
                      (rf"torch.Tensor.{method}: expected the method it held at load",
                       rf"torch.Tensor.{method}: expected the method compiled into"))


@pytest.mark.parametrize("backend", ["eager", "inductor"])
def test_a_forward_patched_after_load_is_refused(tmp_path, backend):
    """``m.lin.forward = f`` (what accelerate's hooks do) or ``Cls.forward = f`` after load
    registers nothing; eager runs the new code, the package the code it traced: each call
    refuses a patched forward, naming it, and runs again once it is undone."""
    torch.manual_seed(0)
    m = _PatchedActs().eval().requires_grad_(False)
    x = torch.randn(3, 4)
    fn = aotpack.load(aotpack.compile(m, (x,), backend=backend).save(tmp_path / "a.aot"), module=m)
    torch.testing.assert_close(fn(x), m(x))
    m.lin.forward = lambda t: torch.nn.functional.linear(t, m.lin.weight) * 3
    with pytest.raises(aotpack.GuardError, match=r"module.lin.forward: expected the forward it had at load .*"
                                                 r"got a forward set on the instance since load"):
        fn(x)
    del m.lin.forward
    torch.testing.assert_close(fn(x), m(x))
    original = _PatchedActs.forward
    _PatchedActs.forward = lambda self, t: self.act(self.lin(t))
    try:
        with pytest.raises(aotpack.GuardError, match=r"_PatchedActs.forward: expected the forward it had at load"
                                                     r".*got a forward set on the class since load"):
            fn(x)
    finally:
        _PatchedActs.forward = original
    torch.testing.assert_close(fn(x), m(x))
    m.act = torch.nn.ReLU()  # a replaced submodule (rebinds) that brings a patched forward is refused too
    m.act.forward = torch.nn.functional.silu
    with pytest.raises(aotpack.GuardError, match=r"module.act.forward: expected the forward"):
        fn(x)


EDITABLE = '''
import torch


class Scaler(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)

    def forward(self, x):
        return self.lin(x) * {factor} + sum(v for v in [1.0])  # (a generator: nested code)
'''

LOAD_BOUND = r"""
import json, sys, torch, aotpack
sys.path.insert(0, sys.argv[2])
from editable_model import Scaler
m = Scaler().requires_grad_(False)
try:
    fn = aotpack.load(sys.argv[1], module=m)
    print(json.dumps({"ran": torch.equal(fn(torch.ones(2, 3)), m(torch.ones(2, 3)))}))
except aotpack.AotpackError as e:
    print(json.dumps({"refused": str(e)}))
"""


PICKS_CHILD = """
import sys, torch, aotpack, programs
torch.manual_seed(0)
m = programs.PicksByName().eval().requires_grad_(False)
x = torch.randn(3, 4)
torch.testing.assert_close(aotpack.load(sys.argv[1], module=m)(x), m(x))
print("bound")
"""


def test_code_with_a_set_literal_binds_in_a_process_of_another_hash_seed(tmp_path):
    """A set literal's constant (``mode in {"gelu", ...}``) iterates in the order of the
    process's string hashes: the code's digest takes it sorted, so a fresh process of
    another ``PYTHONHASHSEED`` binds the package (until 2026-12-06 its class's digest
    differed and the load was refused as an edited class, in most processes)."""
    m = programs.PicksByName().eval().requires_grad_(False)
    path = aotpack.compile(m, (torch.randn(3, 4),), backend="eager").save(tmp_path / "p.aot")
    here = str(pathlib.Path(programs.__file__).parent)
    for seed in ("1", "2", "3"):
        paths = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
        out = run_fresh(["-c", PICKS_CHILD, str(path)], env={"PYTHONHASHSEED": seed, "PYTHONPATH": paths})
        assert "bound" in out.stdout


def test_a_module_class_edited_since_the_compile_is_refused_at_load(tmp_path):
    """torch.export compiled the class's code in: where it was edited since (another
    process, another version of the model's code), a bound load is refused naming the
    module, never runs the old code; code only moved within its file (lines added above
    it) loads as before."""
    import sys

    source = tmp_path / "editable_model.py"
    source.write_text(EDITABLE.format(factor="2.0"))
    sys.path.insert(0, str(tmp_path))
    try:
        from editable_model import Scaler

        path = aotpack.compile(Scaler().requires_grad_(False), (torch.randn(2, 3),), backend="eager").save(
            tmp_path / "s.aot")
        code = aotpack.inspect(path).manifest.variants[0].module_code
        assert list(code) == ["editable_model:Scaler"]  # (torch's Linear: pinned by the torch version)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("editable_model", None)

    def load_bound() -> dict:
        return json.loads(run_fresh(["-c", LOAD_BOUND, str(path), str(tmp_path)]).stdout.strip().splitlines()[-1])

    source.write_text("# a comment\n\n" + EDITABLE.format(factor="2.0"))  # moved, not changed
    assert load_bound() == {"ran": True}
    source.write_text(EDITABLE.format(factor="3.0"))  # edited
    refused = load_bound()["refused"]
    assert "module: expected the code of Scaler compiled into the package" in refused
    assert "compile the package again" in refused


def test_a_submodule_replaced_by_an_edited_and_reloaded_class_is_refused_at_the_call(tmp_path):
    """A class edited and reloaded in the loading process after load (``importlib.reload``
    in a notebook), and a submodule replaced by an instance of it: eager runs the new
    code, so the package refuses the call rather than run the code it compiled."""
    import importlib.util

    def scaler_class(factor: str, name: str):
        source = tmp_path / f"{name}.py"
        source.write_text(EDITABLE.format(factor=factor))
        spec = importlib.util.spec_from_file_location("editable_scaler", source)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.Scaler

    old, edited = scaler_class("2.0", "v1"), scaler_class("3.0", "v2")
    m = torch.nn.Sequential(old(), torch.nn.ReLU()).requires_grad_(False)
    fn = aotpack.load(aotpack.compile(m, (torch.randn(2, 3),), backend="eager").save(tmp_path / "s.aot"), module=m)
    x = torch.randn(2, 3)
    torch.testing.assert_close(fn(x), m(x))
    m[0] = old().requires_grad_(False)  # the same code, new weights: runs
    torch.testing.assert_close(fn(x), m(x))
    m[0] = edited().requires_grad_(False)
    with pytest.raises(aotpack.GuardError, match=r"module\.0: expected the code of Scaler compiled into the package"):
        fn(x)


CALL_LOG = []  # a global list the program appends to: a side effect, not a value compiled in


class _Logs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.log, self.dims = [], [1]

    def forward(self, x):
        self.log.append("forward")
        CALL_LOG.append("forward")
        return x.sum(self.dims)


def test_a_list_the_program_appends_to_is_a_side_effect_and_a_list_it_reads_is_compared_by_value(tmp_path):
    """Lists compiled in are compared by value at each call, as they change in place
    (``m.dims.append(0)``: until 2026-12-06 a list changed in place ran as compiled); a
    list the program itself appends to (``self.log``, a global log) is a side effect
    (warned at capture), never a value a later call is refused on."""
    m = _Logs()
    x = torch.randn(2, 3, 4)
    with pytest.warns(aotpack.SideEffectWarning):
        pkg = aotpack.compile(m, (x,), backend="eager")
    assert pkg.manifest.variants[0].module_attributes == {"dims": [1]}
    fn = aotpack.load(pkg.to_bytes(), module=m)
    for _ in range(2):
        torch.testing.assert_close(fn(x), m(x))  # eager appends to both logs: the package still runs
    m.log.clear()
    CALL_LOG.clear()
    torch.testing.assert_close(fn(x), m(x))
    m.dims.append(2)  # in place: eager sums over both dimensions now
    with pytest.raises(aotpack.GuardError, match=r"module.dims: expected \[1\] .*, got \[1, 2\]"):
        fn(x)
    m.dims.pop()
    torch.testing.assert_close(fn(x), m(x))


CALL_COUNTS = {}  # a global dict the program stores into: a side effect, not a value compiled in
OPTIONS = {"scale": 2.0, "act": torch.tanh}  # a global dict the program reads: compiled in


class _Dicts(torch.nn.Module):
    hits = {}  # a dict of the class the program stores into: a side effect too

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)
        self.opts, self.seen = {"relu": False}, {}

    def forward(self, x):
        CALL_COUNTS["forward"] = CALL_COUNTS.get("forward", 0) + 1
        self.seen[x.shape[0]] = True
        self.hits[x.shape[0]] = True
        y = OPTIONS["act"](self.lin(x)) * OPTIONS["scale"]
        return torch.relu(y) if self.opts["relu"] else y


def test_a_dict_the_program_reads_is_compared_by_value_and_one_it_stores_into_is_a_side_effect(tmp_path):
    """Dicts of plain values (and functions) the code reads, as a global or a module's
    attribute, are compiled in (format 16) and compared by value at each call: until
    2026-12-07 ``OPTIONS["scale"] = 3.0`` or ``m.opts["relu"] = True`` after the load ran
    as compiled, silently. A dict the program stores into (``CALL_COUNTS[k] = ...``, a
    store no call shows) is a side effect, warned at capture naming it, never a value a
    later call is refused on."""
    torch.manual_seed(0)
    m = _Dicts().requires_grad_(False)
    x = torch.randn(2, 3)
    with pytest.warns(aotpack.SideEffectWarning) as caught:
        pkg = aotpack.compile(m, (x,), backend="eager")
    said = " ".join(str(w.message) for w in caught)
    assert "changing the global `CALL_COUNTS` in place" in said and "changing the attribute `self.seen`" in said
    assert "changing the attribute `_Dicts.hits` of the class" in said
    variant = pkg.manifest.variants[0]
    assert variant.class_attributes == {}
    assert variant.module_attributes == {
        "global:OPTIONS": {"dict": [["scale", 2.0], ["act", {"function": "torch._VariableFunctionsClass.tanh"}]]},
        "opts": {"dict": [["relu", False]]}}
    assert pkg.manifest.format_version == 16
    fn = aotpack.load(pkg.to_bytes(), module=m)
    for _ in range(2):
        torch.testing.assert_close(fn(x), m(x))  # eager stores into both: the package still runs
    try:
        OPTIONS["scale"] = 3.0
        with pytest.raises(aotpack.GuardError, match=r"global OPTIONS: expected \{'scale': 2.0, .*\}.*, got "
                                                     r"\{'scale': 3.0"):
            fn(x)
        OPTIONS["scale"] = 2  # equal, of another type: an integer result would differ
        with pytest.raises(aotpack.GuardError, match=r"global OPTIONS: expected"):
            fn(x)
        OPTIONS["scale"] = 2.0
        torch.testing.assert_close(fn(x), m(x))
        OPTIONS["act"] = torch.sigmoid
        with pytest.raises(aotpack.GuardError, match=r"global OPTIONS: expected .*tanh.*, got .*sigmoid"):
            fn(x)
        OPTIONS["act"] = torch.tanh
        m.opts["relu"] = True
        with pytest.raises(aotpack.GuardError, match=r"module.opts: expected \{'relu': False\}"):
            fn(x)
        m.opts = {"relu": False}  # a new, equal dict: runs
        torch.testing.assert_close(fn(x), m(x))
    finally:
        OPTIONS.update(scale=2.0, act=torch.tanh)


class _Containers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Linear(3, 3) for _ in range(2)])
        self.heads = torch.nn.ModuleDict({"a": torch.nn.Linear(3, 3)})
        self.tail = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU())
        self.gains = torch.nn.ParameterList([torch.nn.Parameter(torch.ones(3))])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        for head in self.heads.values():
            x = head(x)
        for gain in self.gains:
            x = x * gain
        return self.tail(x)


@pytest.mark.parametrize("change", [
    lambda m: m.layers.append(torch.nn.Linear(3, 3)),
    lambda m: m.layers.insert(0, torch.nn.Linear(3, 3)),
    lambda m: m.layers.pop(0),
    lambda m: m.layers.__delitem__(1),
    lambda m: m.heads.update({"b": torch.nn.Linear(3, 3)}),
    lambda m: m.heads.pop("a"),
    lambda m: m.tail.append(torch.nn.Tanh()),
    lambda m: m.tail.__delitem__(1),
    lambda m: m.gains.append(torch.nn.Parameter(torch.full((3,), 2.0))),
    lambda m: setattr(m, "layers", torch.nn.ModuleList([torch.nn.Linear(3, 3)])),
], ids=["ModuleList.append", "ModuleList.insert", "ModuleList.pop", "del ModuleList[1]", "ModuleDict.update",
        "ModuleDict.pop", "Sequential.append", "del Sequential[1]", "ParameterList.append", "ModuleList anew"])
def test_a_container_holding_other_children_is_refused(change):
    """Eager runs what a ModuleList, ModuleDict, Sequential or ParameterList holds at the
    call; compiled code runs the children traced. Until 2026-12-07 a layer appended,
    inserted, popped or deleted after ``load(path, module=m)`` gave the old layers'
    result, silently (a deletion registers nothing: the containers' lengths are compared
    at each call). A container of as many children, new ones, is followed as any
    replaced submodule is; one already changed before the load is refused at the load."""
    torch.manual_seed(0)
    m = _Containers().requires_grad_(False)
    x = torch.randn(2, 3)
    data = aotpack.compile(m, (x,), backend="eager").to_bytes()
    assert aotpack.load(data).manifest.variants[0].module_children == {
        "gains": ["0"], "heads": ["a"], "layers": ["0", "1"], "tail": ["0", "1"]}
    fn = aotpack.load(data, module=m)
    torch.testing.assert_close(fn(x), m(x))
    change(m)
    m.requires_grad_(False)
    with pytest.raises(aotpack.GuardError, match=r"module\.(layers|heads|tail|gains)(\.\w+)?: expected (its "
                                                 r"(submodules|parameters) .* as compiled|a torch.nn)"):
        fn(x)
    with pytest.raises(aotpack.AotpackError, match=r"module\.(layers|heads|tail|gains)"):
        aotpack.load(data, module=m)


def test_a_container_of_new_children_as_many_is_followed():
    torch.manual_seed(0)
    m = _Containers().requires_grad_(False)
    x = torch.randn(2, 3)
    fn = aotpack.load(aotpack.compile(m, (x,), backend="eager").to_bytes(), module=m)
    m.layers = torch.nn.ModuleList([torch.nn.Linear(3, 3) for _ in range(2)]).requires_grad_(False)
    m.heads["a"] = torch.nn.Linear(3, 3).requires_grad_(False)  # (replaced under the same key)
    torch.testing.assert_close(fn(x), m(x))


class _Chain(torch.nn.Module):
    """Runs its children in order, by ``self.children()``: no container class."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)

    def forward(self, x):
        for block in self.children():
            x = block(x)
        return x


def test_a_module_iterating_its_own_children_is_guarded_on_them():
    """``for block in self.children()``: a submodule added after the load runs in eager
    (until 2026-12-07 the package ran the two compiled, silently); one added before the
    load is refused there."""
    torch.manual_seed(0)
    m = _Chain().requires_grad_(False)
    x = torch.randn(2, 3)
    data = aotpack.compile(m, (x,), backend="eager").to_bytes()
    fn = aotpack.load(data, module=m)
    torch.testing.assert_close(fn(x), m(x))
    m.c = torch.nn.Linear(3, 3).requires_grad_(False)
    with pytest.raises(aotpack.GuardError, match=r"module: expected its submodules a, b as compiled .*, got a, b, c"):
        fn(x)
    with pytest.raises(aotpack.AotpackError, match=r"module: expected its submodules a, b"):
        aotpack.load(data, module=m)
    del m.c
    torch.testing.assert_close(fn(x), m(x))


class _Penalized(torch.nn.Module):
    """Adds a penalty over all its weights, by ``self.parameters()`` (weight decay in the
    forward, a regularized layer)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)
        self.gain = torch.nn.Parameter(torch.ones(3))

    def forward(self, x):
        return self.lin(x) * self.gain + sum(p.square().sum() for p in self.parameters()) * 1e-2


def test_a_module_iterating_its_own_parameters_is_guarded_on_them(tmp_path):
    """``sum(... for p in self.parameters())``: a parameter registered after the load, in
    the module or a submodule, is iterated by eager (until 2026-12-06 the package summed
    the three compiled, silently); refused, at the call or at a load. Replacing one keeps
    the names and is followed, as any reassigned parameter."""
    torch.manual_seed(0)
    m = _Penalized().requires_grad_(False)
    x = torch.randn(2, 3)
    data = aotpack.compile(m, (x,), backend="eager").save(tmp_path / "p.aot")
    assert aotpack.inspect(data).manifest.variants[0].iterated_weights == {"": ["gain", "lin.weight", "lin.bias"]}
    fn = aotpack.load(data, module=m)
    torch.testing.assert_close(fn(x), m(x))
    m.extra = torch.nn.Parameter(torch.ones(2), requires_grad=False)
    with pytest.raises(aotpack.GuardError, match=r"module: expected its parameters and buffers as compiled .*, "
                                                 r"got extra added"):
        fn(x)
    with pytest.raises(aotpack.AotpackError, match=r"module: expected its parameters and buffers"):
        aotpack.load(data, module=m)
    del m.extra
    torch.testing.assert_close(fn(x), m(x))
    m.lin.p2 = torch.nn.Parameter(torch.ones(2), requires_grad=False)
    with pytest.raises(aotpack.GuardError, match=r"got lin.p2 added"):
        fn(x)
    del m.lin.p2
    m.gain = torch.nn.Parameter(torch.full((3,), 2.0), requires_grad=False)  # replaced: followed
    torch.testing.assert_close(fn(x), m(x))


class _EveryNorm(torch.nn.Module):
    """Scales by the count of its LayerNorms anywhere below, by ``self.modules()``."""

    def __init__(self):
        super().__init__()
        self.block = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))

    def forward(self, x):
        norms = [m for m in self.modules() if isinstance(m, torch.nn.LayerNorm)]
        return self.block(x) * len(norms)


def test_a_module_iterating_all_its_modules_is_guarded_on_every_one_below():
    """``self.modules()`` recurses: a module added to a submodule after the load is seen by
    eager (until 2026-12-06 only the module's own children were guarded)."""
    torch.manual_seed(0)
    m = _EveryNorm().requires_grad_(False)
    x = torch.randn(2, 3)
    fn = aotpack.load(aotpack.compile(m, (x,), backend="eager").to_bytes(), module=m)
    torch.testing.assert_close(fn(x), m(x))
    m.block[1].inner = torch.nn.LayerNorm(3)  # a grandchild's child: eager counts 2 norms
    with pytest.raises(aotpack.GuardError, match=r"module.block.1: expected its submodules none as compiled .*, "
                                                 r"got inner"):
        fn(x)
    del m.block[1].inner
    torch.testing.assert_close(fn(x), m(x))


# (``block`` is at one line in each: Python's code equality leaves out the file, and until
# 2026-12-06 capture kept the first file's globals for both)
_TWO_FILES = {name: f"EPS = {eps}\n\ndef act(x):\n    return x {op} EPS\n\ndef block(x):\n    return act(x) + 1\n"
              for name, eps, op in (("aotpack_layers_a", 2.0, "*"), ("aotpack_layers_b", 3.0, "-"))}


@pytest.fixture
def two_files(tmp_path):
    """Two Python modules, each with its own ``EPS`` and ``act`` (two modeling files of a
    composite model), imported from files as a user's are."""
    import importlib.util
    import sys

    modules = []
    for name, text in _TWO_FILES.items():
        (tmp_path / f"{name}.py").write_text(text)
        spec = importlib.util.spec_from_file_location(name, tmp_path / f"{name}.py")
        modules.append(importlib.util.module_from_spec(spec))
        sys.modules[name] = modules[-1]
        spec.loader.exec_module(modules[-1])
    yield modules
    for name in _TWO_FILES:
        sys.modules.pop(name, None)


def test_a_name_two_files_read_with_other_values_is_compared_in_each(two_files):
    """``EPS`` and ``act`` in two Python modules, with other values: until 2026-12-06
    neither was compared (which one a name meant was unknown), so ``a.EPS = 5.0`` after
    the load ran 2.0, silently. Each is now recorded under its module's name and compared
    there; a function patched in one is refused, before or after the load."""
    a, b = two_files
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 3).requires_grad_(False)
    program = lambda x: b.block(a.block(lin(x)))  # noqa: E731 - what torch.compile users write
    x = torch.randn(2, 3)
    data = aotpack.compile(program, (x,), backend="eager").to_bytes()
    fn = aotpack.load(data, module={"lin": lin})
    torch.testing.assert_close(fn(x), program(x))
    for module, value in ((a, 5.0), (b, 7.0)):
        module.EPS = value
        with pytest.raises(aotpack.GuardError, match=rf"global EPS of {module.__name__}: expected "
                                                     rf"{_TWO_FILES[module.__name__][6:9]} .*, got {value}"):
            fn(x)
        module.EPS = float(_TWO_FILES[module.__name__][6:9])
        torch.testing.assert_close(fn(x), program(x))
    act = b.act
    b.act = functools.wraps(act)(lambda t: act(t) * 2)
    with pytest.raises(aotpack.GuardError, match=r"global act of aotpack_layers_b"):
        fn(x)
    with pytest.raises(aotpack.AotpackError, match=r"global act of aotpack_layers_b: expected the function compiled"):
        aotpack.load(data, module={"lin": lin})
    b.act = act
    torch.testing.assert_close(aotpack.load(data, module={"lin": lin})(x), program(x))


_CONFIG_FILES = {  # two packages' own ``config`` modules, and a file of each that reads its own
    "aotpack_config_a": "FLAG = 2.0\n", "aotpack_config_b": "FLAG = 3.0\n",
    **{f"aotpack_uses_{k}": f"import aotpack_config_{k} as config\n\ndef block(x):\n    return x {op} config.FLAG\n"
       for k, op in (("a", "*"), ("b", "-"))}}


def test_a_module_attribute_two_files_read_with_other_values_is_compared_in_each(tmp_path, monkeypatch):
    """``config.FLAG`` where each file's ``config`` is another Python module (two models'
    packages, each with its own config): until 2026-12-06 left out, so a change to either
    ran as compiled, silently. Each is recorded under the module whose code reads it
    (``global:config.FLAG@aotpack_uses_a``) and compared in the ``config`` that module
    holds now."""
    import importlib
    import sys

    for name, text in _CONFIG_FILES.items():
        (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        a, b = importlib.import_module("aotpack_uses_a"), importlib.import_module("aotpack_uses_b")
        program = lambda x: b.block(a.block(x))  # noqa: E731 - what torch.compile users write
        x = torch.randn(2, 3)
        pkg = aotpack.compile(program, (x,), backend="eager")
        assert {"global:config.FLAG@aotpack_uses_a", "global:config.FLAG@aotpack_uses_b"} <= set(
            pkg.manifest.variants[0].module_attributes)
        fn = aotpack.load(pkg.to_bytes(), module={})
        torch.testing.assert_close(fn(x), program(x))
        for module, value in ((a, 5.0), (b, 7.0)):
            before, module.config.FLAG = module.config.FLAG, value
            with pytest.raises(aotpack.GuardError, match=rf"global config.FLAG of {module.__name__}: expected "
                                                         rf"{before} .*, got {value}"):
                fn(x)
            module.config.FLAG = before
            torch.testing.assert_close(fn(x), program(x))
    finally:
        for name in _CONFIG_FILES:
            sys.modules.pop(name, None)


def _doubled(t):
    return t * 2


ACTIVATIONS = {"main": _doubled}  # a global dict of the user's functions: their code is traced in


class _Registry(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)
        self.post = [torch.tanh, _doubled]  # a list attribute of functions

    def forward(self, x):
        y = ACTIVATIONS["main"](self.lin(x))
        for f in self.post:
            y = f(y)
        return y


def test_a_function_in_a_container_patched_before_the_load_is_refused_there():
    """``ACTIVATIONS["main"] = functools.wraps(f)(wrapper)`` before the load: the
    wrapper's name is the function's, so its plain value is too; its code is not. Until
    2026-12-06 the load held the wrapper as the function compiled in and the package ran
    the old code; now each function a container holds has its code recorded and compared
    at the load, as a global function's is."""
    torch.manual_seed(0)
    m = _Registry().requires_grad_(False)
    x = torch.randn(2, 3)
    pkg = aotpack.compile(m, (x,), backend="eager")
    assert {"global:ACTIVATIONS['main']", "post[0]", "post[1]"} <= set(pkg.manifest.variants[0].function_code)
    data = pkg.to_bytes()
    original = ACTIVATIONS["main"]
    try:
        ACTIVATIONS["main"] = functools.wraps(original)(lambda t: original(t) + 1)
        with pytest.raises(aotpack.AotpackError, match=r"global ACTIVATIONS\['main'\]: expected the function "
                                                       r"compiled into the package"):
            aotpack.load(data, module=m)
    finally:
        ACTIVATIONS["main"] = original
    m.post[1] = functools.wraps(_doubled)(lambda t: t * 3)
    with pytest.raises(aotpack.AotpackError, match=r"module.post\[1\]: expected the function compiled"):
        aotpack.load(data, module=m)
    m.post[1] = _doubled
    fn = aotpack.load(data, module=m)
    torch.testing.assert_close(fn(x), m(x))
    m.post[0] = functools.wraps(torch.tanh)(lambda t: torch.tanh(t) * 2)  # after the load: by identity
    for _ in range(2):  # (refused at each call, not held as the new state after the first)
        with pytest.raises(aotpack.GuardError, match=r"module.post\[0\]: expected the function .*tanh it held at "
                                                     r"load .*, got another function of the same name"):
            fn(x)
    m.post[0] = torch.tanh
    torch.testing.assert_close(fn(x), m(x))


LEAKY = functools.partial(F.leaky_relu, negative_slope=0.1)  # a global partial the forward calls


class _Partials(torch.nn.Module):
    def __init__(self, slope: float = 0.2):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)
        self.act = functools.partial(F.leaky_relu, negative_slope=slope)  # as timm configures activations

    def forward(self, x):
        return self.act(self.lin(x)) + LEAKY(x)


def test_a_functools_partial_global_or_attribute_is_compared_by_its_function_and_values():
    """``self.act = partial(F.leaky_relu, negative_slope=0.2)`` and a global partial: the
    forward calls them, torch.export traced their values in. Until 2026-12-06 neither was
    recorded, so another slope after the load (or in the process loading it) ran the
    compile's, silently. Now each is named by its function and values
    (``functools.partial(torch.nn.functional.leaky_relu, negative_slope=0.2)``) and
    compared as a function global is: at the load by that name, after it by identity."""
    global LEAKY
    torch.manual_seed(0)
    m = _Partials().requires_grad_(False)
    x = torch.randn(2, 3)
    pkg = aotpack.compile(m, (x,), backend="eager")
    assert pkg.manifest.variants[0].module_attributes["act"] == {
        "function": "functools.partial(torch.nn.functional.leaky_relu, negative_slope=0.2)"}
    data = pkg.to_bytes()
    other = _Partials(slope=0.5).requires_grad_(False)  # (as a process building it with another slope)
    with pytest.raises(aotpack.GuardError, match=r"module.act: .*negative_slope=0.2.*, got .*negative_slope=0.5"):
        aotpack.load(data, module=other)(x)
    same = _Partials().requires_grad_(False)
    same.load_state_dict(m.state_dict())
    torch.testing.assert_close(aotpack.load(data, module=same)(x), m(x))  # an equal partial: runs
    fn = aotpack.load(data, module=m)
    torch.testing.assert_close(fn(x), m(x))
    held, m.act = m.act, functools.partial(F.leaky_relu, negative_slope=0.9)
    with pytest.raises(aotpack.GuardError, match=r"module.act: expected the function functools.partial"):
        fn(x)
    m.act = held
    original = LEAKY
    try:
        LEAKY = functools.partial(F.leaky_relu, negative_slope=0.7)
        with pytest.raises(aotpack.GuardError, match=r"global LEAKY: expected the function functools.partial"):
            fn(x)
    finally:
        LEAKY = original


class _TensorPartials(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.shift = functools.partial(torch.add, other=torch.ones(3))
        self.gain = functools.partial(torch.mul, torch.full((3,), 2.0))

    def forward(self, x):
        return self.gain(self.shift(x))


def test_a_functools_partial_holding_a_tensor_is_read_where_it_holds_it():
    """``self.shift = partial(torch.add, other=t)``: torch.export lifts ``t`` as a constant
    of its own. Until 2026-12-06 neither the partial nor its tensor was recorded: the
    package ran its copy of ``t``, whatever the module held since (``t`` updated in
    place, another partial, another ``alpha``), silently. Now the tensor is read where
    the partial holds it (``constant:shift.keywords['other']``, ``constant:gain.args[0]``)
    and the partial is named by its function and values with ``<tensor>`` for it: a
    partial made anew of the same function and values runs with its tensor, one of
    other values or a tensor of another dtype or shape is refused."""
    m = _TensorPartials()
    x = torch.randn(3)
    pkg = aotpack.compile(m, (x,), backend="eager")
    v = pkg.manifest.variants[0]
    assert v.weight_fqns == ["constant:shift.keywords['other']", "constant:gain.args[0]"]
    assert v.module_attributes["shift"] == {"function": "functools.partial(torch._VariableFunctionsClass.add, "
                                                        "other=<tensor>)"}
    fn = aotpack.load(pkg.to_bytes(), module=m)
    torch.testing.assert_close(fn(x), m(x))
    m.shift.keywords["other"].add_(1)  # in place
    torch.testing.assert_close(fn(x), m(x))
    m.shift.keywords["other"] = torch.full((3,), 3.0)  # another tensor in the partial's dict
    torch.testing.assert_close(fn(x), m(x))
    m.shift = functools.partial(torch.add, other=torch.full((3,), 5.0))  # a partial made anew
    m.gain = functools.partial(torch.mul, torch.full((3,), -1.0))
    torch.testing.assert_close(fn(x), m(x))
    m.shift = functools.partial(torch.add, other=torch.full((3,), 5.0), alpha=2)
    with pytest.raises(aotpack.GuardError, match=r"module.shift: .*got functools.partial\(.*alpha=2, other=<tensor>"):
        fn(x)
    m.shift = functools.partial(torch.add, other=torch.ones(3, dtype=torch.float64))
    with pytest.raises(aotpack.GuardError, match=r"shift.keywords\['other'\]\" is float64\[3\]"):
        fn(x)


HELD_WS, HELD_TABLE = [torch.ones(3)], {"a": torch.ones(3)}  # (globals holding tensors: the test puts them back)
SHIFT_BY = functools.partial(torch.add, other=torch.ones(3))
HELD_CACHE = types.SimpleNamespace(cos=torch.ones(3))


class _GlobalContainers(torch.nn.Module):
    def forward(self, x):
        return SHIFT_BY(x * HELD_WS[0] + HELD_TABLE["a"]) * HELD_CACHE.cos


def test_tensors_a_global_list_dict_partial_or_object_holds_are_read_there():
    """``HELD_WS[0]``, ``HELD_TABLE['a']``, a global partial's ``other=t``, ``HELD_CACHE.cos``: torch.export
    lifts each as a constant of its own. Until 2026-12-06 the package ran its copies, so an
    update in place, an item set, or the global assigned anew after the load ran the old
    values, silently. Now each is named where the global holds it (``global:HELD_WS[0]``,
    ``global:SHIFT_BY.keywords['other']``) and read there at each call, as eager reads it,
    with every container on the way compared; another dtype or an item gone is refused;
    a partial made anew of the same function and values runs, one of other values is
    refused. A function's package bound with ``module={}`` follows them too; loaded alone,
    the package runs its copies."""
    global HELD_WS, SHIFT_BY, HELD_CACHE
    held = HELD_WS, HELD_TABLE["a"], SHIFT_BY, HELD_CACHE
    m, x = _GlobalContainers(), torch.ones(3)
    pkg = aotpack.compile(m, (x,), backend="eager")
    assert sorted(pkg.manifest.variants[0].weight_fqns) == sorted([
        "global:HELD_WS[0]", "global:HELD_TABLE['a']", "global:SHIFT_BY.keywords['other']", "global:HELD_CACHE.cos"])
    fn, alone = aotpack.load(pkg.to_bytes(), module=m), aotpack.load(pkg.to_bytes())
    function = aotpack.load(aotpack.compile(lambda x: x * HELD_WS[0] + HELD_TABLE["a"], (x,), backend="eager").to_bytes(),
                            module={})
    try:
        for change in (lambda: HELD_WS[0].add_(1), lambda: HELD_WS.__setitem__(0, torch.full((3,), 3.0)),
                       lambda: HELD_TABLE.__setitem__("a", torch.full((3,), 2.0)),
                       lambda: SHIFT_BY.keywords["other"].mul_(2), lambda: setattr(HELD_CACHE, "cos", torch.full((3,), 0.5))):
            change()
            torch.testing.assert_close(fn(x), m(x))
            torch.testing.assert_close(function(x), x * HELD_WS[0] + HELD_TABLE["a"])
        HELD_WS = [torch.full((3,), 4.0)]  # assigned anew
        SHIFT_BY = functools.partial(torch.add, other=torch.full((3,), 7.0))
        HELD_CACHE = types.SimpleNamespace(cos=torch.full((3,), 0.25))
        torch.testing.assert_close(fn(x), m(x))
        torch.testing.assert_close(function(x), x * HELD_WS[0] + HELD_TABLE["a"])
        SHIFT_BY = functools.partial(torch.add, other=torch.full((3,), 7.0), alpha=3)
        with pytest.raises(aotpack.GuardError, match=r"global SHIFT_BY: expected the function functools.partial"):
            fn(x)
        SHIFT_BY = functools.partial(torch.add, other=torch.ones(3))
        HELD_WS = [torch.ones(3, dtype=torch.float64)]
        with pytest.raises(aotpack.GuardError, match=r"global 'HELD_WS\[0\]' the module's code reads is float64\[3\]"):
            fn(x)
        HELD_WS = []
        with pytest.raises(aotpack.GuardError, match=r"global 'HELD_WS\[0\]' the module's code reads is no tensor any more"):
            fn(x)
        HELD_WS = [torch.ones(3)]
        torch.testing.assert_close(fn(x), m(x))
        torch.testing.assert_close(alone(x), torch.full((3,), 3.0))  # (its copies of compile time)
    finally:
        HELD_WS, HELD_TABLE["a"], SHIFT_BY, HELD_CACHE = held


_MODEL_FILE = """import torch
torch.manual_seed(0)
MODEL = torch.nn.Linear(3, 3)
W = torch.linspace(0.5, 1.5, 3)

def predict(x):
    return MODEL(x) * W
"""


@pytest.fixture
def model_file(tmp_path):
    """A Python module whose function reads a module global model and tensor (a
    script's ``MODEL = ...``, imported from a file as a user's is)."""
    import importlib.util
    import sys

    (tmp_path / "aotpack_model_file.py").write_text(_MODEL_FILE)
    spec = importlib.util.spec_from_file_location("aotpack_model_file", tmp_path / "aotpack_model_file.py")
    module = sys.modules["aotpack_model_file"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("aotpack_model_file", None)


@pytest.mark.parametrize("train", [False, True], ids=["inference", "training"])
def test_a_global_bound_by_name_and_assigned_anew_is_followed(model_file, train):
    """``load(path, module={"MODEL": MODEL, "W": W})`` for a function reading the globals
    ``MODEL`` and ``W``: eager reads the globals at each call, so ``MODEL = other`` after
    the load is what the next call runs (until 2026-12-06 the package kept the module
    given at load, silently: the package recorded no home for a module a function reads
    by name). The new one is bound as a replaced submodule is: its weights are used (and
    get their gradients, in training), one of another class or a tensor of another shape
    is refused, and so is a global that names no module any more. A dict binding another
    object than the global holds stays bound to what it gave."""
    g = model_file
    x = torch.randn(2, 3)
    with torch.set_grad_enabled(train):
        if not train:
            g.MODEL.requires_grad_(False)
        data = aotpack.compile(g.predict, (x,), train=train, backend="eager").to_bytes()
        fn = aotpack.load(data, module={"MODEL": g.MODEL, "W": g.W})
        torch.testing.assert_close(fn(x), g.predict(x))
        torch.manual_seed(1)
        g.MODEL, g.W = torch.nn.Linear(3, 3).requires_grad_(train), torch.randn(3)
        got, want = fn(x), g.predict(x)
        torch.testing.assert_close(got, want)
        if train:  # the gradient reaches the module the global names now
            got.sum().backward()
            grad = g.MODEL.weight.grad.clone()
            g.MODEL.weight.grad = None
            want.sum().backward()
            torch.testing.assert_close(grad, g.MODEL.weight.grad)
        g.MODEL = torch.nn.Sequential(torch.nn.Linear(3, 3))
        with pytest.raises(aotpack.GuardError, match=r"MODEL: expected a torch.nn.modules.linear:Linear"):
            fn(x)
        g.MODEL = 3
        with pytest.raises(aotpack.GuardError, match=r"global MODEL of aotpack_model_file: expected a module .*, "
                                                     r"got an int"):
            fn(x)
        g.MODEL = torch.nn.Linear(3, 3).requires_grad_(train)
        g.W = torch.ones(4)
        with pytest.raises(aotpack.GuardError, match=r"'W' is float32\[4\], the package was compiled for float32\[3\]"):
            fn(x)
        del g.W
        with pytest.raises(aotpack.GuardError, match=r"global W of aotpack_model_file: expected a tensor .*, got "
                                                     r"deleted"):
            fn(x)
        g.W = torch.randn(3)
        torch.testing.assert_close(fn(x), g.predict(x))
        # another object than the global holds: bound as given, by the caller's choice
        own = torch.nn.Linear(3, 3).requires_grad_(train)
        fn = aotpack.load(data, module={"MODEL": own, "W": g.W})
        g.MODEL = torch.nn.Linear(3, 3).requires_grad_(train)
        torch.testing.assert_close(fn(x), own(x) * g.W)


class _HoldsTensors(torch.nn.Module):
    """Tensors held in a list, a tuple and a dict attribute: no parameters or buffers,
    what torch.export lifts as constants of its own names (``lifted_tensor_0``)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)
        self.ws = [torch.linspace(0.5, 1.5, 3)]
        self.pair = (torch.ones(3), torch.full((3,), 0.25))
        self.table = {"shift": torch.full((3,), 2.0)}
        self.steps = [torch.zeros(3)]
        self.cache = types.SimpleNamespace(cos=torch.linspace(-1.0, 1.0, 3))  # a plain object's tensor
        self.caches = [types.SimpleNamespace(k=torch.full((3,), 0.75))]  # two levels down: caches[0].k
        self.nested = [[torch.full((3,), 1.5)]]  # nested[0][0]
        # four levels down, beside a cycle (an object holding itself): state.layers[1].kv['k']
        self.state = types.SimpleNamespace(layers=[None, types.SimpleNamespace(kv={"k": torch.full((3,), 0.5)})])
        self.state.me = self.state

    def forward(self, x):
        self.steps[0].add_(1)  # an update of a held tensor: eager's lands in the module's tensor
        y = self.lin(x) * self.ws[0] * self.pair[0] + self.pair[1] + self.table["shift"] + self.cache.cos
        return (y + self.caches[0].k * self.nested[0][0] + self.state.layers[1].kv["k"]) * self.steps[0]


@pytest.mark.parametrize("form", ["module", "function"])
def test_tensors_a_modules_list_or_dict_holds_are_read_from_the_module(form):
    """``self.ws = [tensor]``, a tuple, ``self.table = {"a": tensor}``, a plain object's
    ``self.cache.cos``, two levels down (``self.caches[0].k``, ``self.nested[0][0]``) and
    four (``self.state.layers[1].kv['k']``, two levels until 2026-12-06): until 2026-12-06
    the package held copies of compile time, so a tensor replaced or updated in place
    after the load, and the program's own update of one (``self.steps[0].add_(1)``),
    were not seen: silently. They are now named as the module holds them
    (``constant:ws[0]``, ``constant:table['shift']``) and read there at each call; one of
    another shape, or gone, is a GuardError naming it."""
    torch.manual_seed(0)
    m, ref = _HoldsTensors().requires_grad_(False), _HoldsTensors().requires_grad_(False)
    ref.load_state_dict(m.state_dict())
    x = torch.randn(2, 3)
    program = m if form == "module" else (lambda t: m(t) * 2)
    with torch.no_grad():
        data = aotpack.compile(program, (x,), backend="eager").to_bytes()
        fn = aotpack.load(data, module=m if form == "module" else {"m": m})
        prefix = "" if form == "module" else "m."
        assert {f"constant:{prefix}{p}" for p in ("ws[0]", "table['shift']", "cache.cos", "caches[0].k",
                                                  "nested[0][0]", "state.layers[1].kv['k']")} <= set(
            fn.manifest.variants[0].weight_fqns)
        eager = ref if form == "module" else (lambda t: ref(t) * 2)
        m.steps[0].zero_()  # (the compile ran the program once)
        changes = [lambda h: h.ws.__setitem__(0, torch.full((3,), 3.0)), lambda h: h.ws[0].mul_(-1),
                   lambda h: setattr(h, "pair", (torch.full((3,), 2.0), torch.zeros(3))),
                   lambda h: h.table["shift"].add_(5), lambda h: h.table.__setitem__("shift", torch.ones(3)),
                   lambda h: h.cache.cos.mul_(3), lambda h: setattr(h.cache, "cos", torch.full((3,), 0.5)),
                   lambda h: setattr(h, "cache", types.SimpleNamespace(cos=torch.ones(3))),
                   lambda h: setattr(h.caches[0], "k", torch.full((3,), -2.0)), lambda h: h.nested[0][0].add_(1),
                   lambda h: h.nested.__setitem__(0, [torch.full((3,), 0.25)]),
                   lambda h: h.state.layers[1].kv["k"].mul_(4),
                   lambda h: h.state.layers.__setitem__(1, types.SimpleNamespace(kv={"k": torch.ones(3)}))]
        torch.testing.assert_close(fn(x), eager(x))
        for change in changes:
            change(m)
            change(ref)
            torch.testing.assert_close(fn(x), eager(x))
            torch.testing.assert_close(m.steps[0], ref.steps[0])  # the program's update reached the module's
        m.ws[0] = torch.ones(4)
        with pytest.raises(aotpack.GuardError, match=r"'(m\.)?ws\[0\]' is float32\[4\], the package was compiled "
                                                     r"for float32\[3\]"):
            fn(x)
        del m.table["shift"]
        m.ws[0] = torch.ones(3)
        with pytest.raises(aotpack.GuardError, match=r"table\['shift'\].* is no tensor any more"):
            fn(x)


class _TrainsHeld(torch.nn.Module):
    """Tensors that require grad held in a list, a dict, a plain object and a tuple: no
    parameters of the module, trained by eager (and torch.compile) all the same."""

    def __init__(self, through_function: bool):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)
        self.through_function = through_function
        self.ws = [torch.nn.Parameter(torch.linspace(0.5, 1.5, 3))]
        self.table = {"b": torch.nn.Parameter(torch.full((3,), 0.1))}
        self.cache = types.SimpleNamespace(k=torch.nn.Parameter(torch.full((3,), 2.0)))
        self.pair = (torch.nn.Parameter(torch.full((3,), 0.3)), torch.ones(3))

    def held(self) -> list:
        return [self.ws[0], self.table["b"], self.cache.k, self.pair[0], self.lin.weight]

    def forward(self, x):
        y = self.lin(x) * self.ws[0] + self.table["b"] * self.cache.k + self.pair[0] * self.pair[1]
        return (Scaled.apply(y) if self.through_function else y).square().sum()  # (its backward triples)


@pytest.mark.parametrize("through_function", [False, True])
@pytest.mark.parametrize("form", ["module", "function", "alone"])
def test_a_tensor_that_requires_grad_in_a_list_attribute_trains_as_eager(form, through_function):
    """``self.ws = [nn.Parameter(...)]`` (and a dict's, a plain object's, a tuple's)
    registers no parameter, and eager trains it: a training package does too, bound to
    the module (its gradient accumulates in the tensor the module holds), called through
    a function bound by name, or loaded alone (its own leaf, ``named_parameters()``); a
    custom Function's trace puts the primal in the list, dict, object or tuple while it
    runs. Until 2026-12-06 a CaptureError naming ``nn.ParameterList``; before that the
    gradient was silently lost (``.grad`` stayed None)."""
    torch.manual_seed(0)
    m, ref = _TrainsHeld(through_function), _TrainsHeld(through_function)
    with torch.no_grad():
        for a, b in zip(m.held() + [m.lin.bias], ref.held() + [ref.lin.bias]):
            b.copy_(a)
    x = torch.randn(2, 3)
    program = (lambda t: m(t) * 2) if form == "function" else m
    eager = (lambda t: ref(t) * 2) if form == "function" else ref
    held = [m.ws[0], m.table["b"], m.cache.k, *m.pair]
    data = aotpack.compile(program, (x,), train=True, backend="eager").to_bytes()
    # the trace put each tensor back where the module holds it (not a primal of its own)
    assert all(a is b for a, b in zip([m.ws[0], m.table["b"], m.cache.k, *m.pair], held))
    fn = aotpack.load(data, module={"m": m} if form == "function" else None if form == "alone" else m)
    for _ in range(2):  # (twice: the gradients accumulate)
        fn(x).backward()
        eager(x).backward()
    if form == "alone":
        own = dict(fn.named_parameters())
        names = ["constant:ws[0]", "constant:table['b']", "constant:cache.k", "constant:pair[0]", "lin.weight"]
        assert set(names) <= set(own)
        got = [own[n] for n in names]
    else:
        got = m.held()
    for a, b in zip(got, ref.held()):
        assert a.grad is not None
        torch.testing.assert_close(a.grad, b.grad)
    assert m.pair[1].grad is None and not m.pair[1].requires_grad  # (the trace put each tensor back)


class _Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Linear(3, 3, bias=False)
        self.head = torch.nn.Linear(3, 3, bias=False)
        self.head.weight = self.emb.weight  # tied, as a language model's embedding and output layer

    def forward(self, x):
        return self.head(torch.tanh(self.emb(x)))


def test_tied_weights_untied_after_the_load_are_refused():
    """``head.weight = emb.weight`` at compile: torch.export keeps two weight inputs but
    its graph reads one for both. Until 2026-12-06 a bound module untied after the load
    (``m.head.weight = nn.Parameter(...)``, as resizing or untying an LM head does) ran
    the package with one tensor for both, silently (another number than eager's). Now a
    GuardError naming the two (at the load too, for a module built untied); tied again,
    the call runs. A function's package over the two modules, bound by name, the same."""
    torch.manual_seed(0)
    m = _Tied().requires_grad_(False)
    x = torch.randn(2, 3)
    data = aotpack.compile(m, (x,), backend="eager").to_bytes()
    fn = aotpack.load(data, module=m)
    torch.testing.assert_close(fn(x), m(x))
    tied = m.head.weight
    m.head.weight = torch.nn.Parameter(torch.eye(3), requires_grad=False)
    with pytest.raises(aotpack.GuardError, match=r"'head.weight' is another tensor than emb.weight: they were one"):
        fn(x)
    m.head.weight = tied
    torch.testing.assert_close(fn(x), m(x))
    untied = _Tied().requires_grad_(False)
    untied.head.weight = torch.nn.Parameter(untied.emb.weight.clone(), requires_grad=False)
    with pytest.raises(aotpack.AotpackError, match=r"is another tensor than emb.weight"):
        aotpack.load(data, module=untied)
    emb, head = m.emb, m.head  # a function's package over the two, bound by name: the same
    fn = aotpack.load(aotpack.compile(lambda x: head(torch.tanh(emb(x))), (x,), backend="eager").to_bytes(),
                      module={"emb": emb, "head": head})
    torch.testing.assert_close(fn(x), m(x))
    head.weight = torch.nn.Parameter(torch.eye(3), requires_grad=False)
    with pytest.raises(aotpack.GuardError, match=r"'head.weight' is another tensor than emb.weight"):
        fn(x)


class _SharedTensor(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("buf", torch.ones(3))
        self.scale, self.again = torch.full((3,), 2.0), None
        self.again = self.scale  # one tensor, two plain attributes
        self.ws = [self.buf]  # a buffer a list holds too

    def forward(self, x):
        return x * self.scale + self.again + self.buf * self.ws[0]


def test_one_tensor_held_in_two_places_is_refused_once_they_differ():
    """``self.again = self.scale`` and ``self.ws = [self.buf]``: torch.export reads one
    input for a tensor held twice (or two for it, by where it found them). Until
    2026-12-06 assigning one of the places after the load (``m.again = t``) ran the package
    with the old tensor there, silently. Now each place joins its tensor's group
    (``variants[].tensor_aliases``), compared at every call; one holding another tensor is
    a GuardError naming both; set back, the call runs; updates in place are followed."""
    m, x = _SharedTensor(), torch.randn(3)
    pkg = aotpack.compile(m, (x,), backend="eager")
    assert pkg.manifest.variants[0].tensor_aliases == {"constant:again": "constant:scale", "constant:ws[0]": "buf"}
    fn = aotpack.load(pkg.to_bytes(), module=m)
    m.buf.add_(1)
    m.scale.mul_(3)
    torch.testing.assert_close(fn(x), m(x))
    for place, value in (("again", torch.zeros(3)), ("ws", [torch.zeros(3)])):
        held = getattr(m, place)
        setattr(m, place, value)
        with pytest.raises(aotpack.GuardError, match=r"is another tensor than (scale|buf): they were one"):
            fn(x)
        setattr(m, place, held)
        torch.testing.assert_close(fn(x), m(x))


OFFSET = 1.0  # a module global the code torch calls reads


class ReadsThroughTorch(torch.nn.Module):
    """A Python attribute and a global read in code that torch's own code calls for the
    program (``how``), or in a method whose ``self`` has another name, or in a closure
    over ``self``."""

    def __init__(self, how: str):
        super().__init__()
        self.how, self.scale = how, 3.0

    def row(self, r):
        return r * self.scale + OFFSET

    def row_of(s, r):  # noqa: N805 - ``self`` by another name
        return r * s.scale + OFFSET

    @torch.no_grad()
    def decorated(self, r):
        return r * self.scale + OFFSET

    def forward(self, x):
        how = self.how
        if how == "vmap":
            return torch.func.vmap(self.row)(x)
        if how == "grad":
            return torch.func.grad(lambda t: (self.row(t) ** 2).sum())(x)
        if how == "checkpoint":
            return torch.utils.checkpoint.checkpoint(self.row, x, use_reentrant=False)
        if how == "no_grad_decorator":
            return self.decorated(x)
        if how == "closure":
            return (lambda t: t * self.scale + OFFSET)(x)
        return self.row_of(x)


@pytest.mark.parametrize("how", ["vmap", "grad", "checkpoint", "no_grad_decorator", "closure", "self_renamed"])
def test_what_code_torch_calls_for_the_program_reads_is_guarded(how, monkeypatch):
    """A function ``torch.func.vmap`` or ``grad`` runs, a checkpointed one, a method
    under ``@torch.no_grad()``, is the program's code, as torch.compile inlines it: the
    module attribute and the global it reads are compiled in, so another value is a
    GuardError naming it, never the compiled one's result (until 2026-12-07 capture's
    recorder saw only code the program called itself, and each gave the old value's
    result, silently; so did a method whose ``self`` has another name)."""
    if how == "vmap" and TORCH_BEFORE_2_13:
        pytest.skip("torch 2.11 cannot store a graph of vmap alone (a CaptureError saying so)")
    m = ReadsThroughTorch(how)
    x = torch.randn(3, 4)
    fn = aotpack.load(aotpack.compile(m, (x,), backend="eager").to_bytes(), module=m)
    torch.testing.assert_close(fn(x), m(x))
    m.scale = 5.0
    with pytest.raises(aotpack.GuardError, match=r"module\.scale: expected 3\.0 .*got 5\.0"):
        fn(x)
    m.scale = 3.0
    monkeypatch.setattr(f"{__name__}.OFFSET", 2.0)
    try:
        got = fn(x)
    except aotpack.GuardError as e:
        assert "global OFFSET: expected 1.0" in str(e)
    else:  # (grad's result does not read OFFSET: eager's is the same)
        assert how == "grad", "a changed global ran as compiled"
        torch.testing.assert_close(got, m(x))


LOG: list = []


def logs_per_row(x):
    def row(r):
        LOG.append(r.shape)
        return (r * r).sum()
    return torch.func.grad(row)(x)


def test_a_side_effect_in_code_torch_calls_for_the_program_is_warned():
    """``LOG.append`` in a function ``grad`` runs happens once, at capture: warned with its
    line, as in the program's own code (until 2026-12-07 not seen)."""
    with pytest.warns(aotpack.SideEffectWarning, match=r"test_module_binding\.py:\d+: list\.append on the global `LOG`"):
        aotpack.compile(logs_per_row, (torch.randn(3, 4),), backend="eager")


def _shifted(t):
    return t + OFFSET


class BranchesReading(torch.nn.Module):
    """``torch.cond``, ``while_loop`` and a nested compile region whose functions read a
    Python attribute, a submodule's (LayerNorm's ``eps``) and, through a helper, a global."""

    def __init__(self):
        super().__init__()
        self.scale, self.step, self.region_scale = 3.0, 2.0, 0.5
        self.norm = torch.nn.LayerNorm(4, elementwise_affine=False)

    def positive(self, t):
        return _shifted(self.norm(t)) * self.scale

    @torch.compiler.nested_compile_region
    def region(self, t):
        return t * self.region_scale

    def forward(self, x):
        from torch._higher_order_ops import while_loop

        y = torch.cond(x.sum() > 0, self.positive, lambda t: t - self.scale, (x,))
        _, z = while_loop(lambda i, z: i < 2, lambda i, z: (i + 1, z * self.step), (torch.zeros((), dtype=torch.long), y))
        return self.region(z)


@pytest.mark.parametrize("change", ["scale", "step", "norm.eps", "OFFSET", "region_scale"])
def test_what_torch_cond_and_while_loop_functions_read_is_guarded(change, monkeypatch):
    """torch.cond, while_loop and a ``torch.compiler.nested_compile_region`` hand their functions to dynamo, which traces their
    bytecode without running it: capture records them from the functions themselves
    (their module, closure, the helpers and submodules they name). Until 2026-12-07 each
    of these changes after the load gave the compiled value's result, silently."""
    m = BranchesReading()
    x = torch.randn(3, 4).abs()
    fn = aotpack.load(aotpack.compile(m, (x,), backend="eager").to_bytes(), module=m)
    torch.testing.assert_close(fn(x), m(x))
    torch.testing.assert_close(fn(-x), m(-x))
    owner, name = (m.norm, "eps") if change == "norm.eps" else (m, change)
    if change == "OFFSET":
        monkeypatch.setattr(f"{__name__}.OFFSET", 2.0)
    else:
        monkeypatch.setattr(owner, name, getattr(owner, name) * 2)
    where = "global OFFSET" if change == "OFFSET" else f"module.{change}"
    with pytest.raises(aotpack.GuardError, match=re.escape(where) + ": expected"):
        fn(x)


def test_a_transformers_llamas_rotary_embedding_settings_are_guarded():
    """transformers' rotary embedding computes under ``@torch.no_grad()`` (and its own
    ``dynamic_rope_update`` wrapper): torch's decorator calls the forward, so until
    2026-12-07 capture did not watch it, and ``rotary_emb.attention_scaling`` changed
    after the load gave the old scaling's logits, silently. Now a GuardError naming it."""
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                                      use_cache=False)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 64, (1, 6))
    fn = aotpack.load(aotpack.compile(model, (ids,), backend="eager").to_bytes(), module=model)
    with torch.no_grad():
        torch.testing.assert_close(fn(ids).logits, model(ids).logits)
        model.model.rotary_emb.attention_scaling = 2.0
        with pytest.raises(aotpack.GuardError, match=r"module\.model\.rotary_emb\.attention_scaling: expected 1\.0"):
            fn(ids)


def _applied(module, t):
    return module(t) + 1


class _Gain(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.k = 3.0

    def forward(self, t):
        return t * self.k


class BranchOfAPartial(torch.nn.Module):
    """A torch.cond branch given as ``functools.partial(f, submodule)``."""

    def __init__(self):
        super().__init__()
        self.gain = _Gain()

    def forward(self, x):
        return torch.cond(x.sum() > 0, functools.partial(_applied, self.gain), lambda t: t - 1, (x,))


def test_what_a_partial_branch_is_given_is_followed():
    """The module a partial holds is the branch's (until 2026-12-07 its ``k`` changed after
    the load gave the old value's result, silently)."""
    m = BranchOfAPartial()
    x = torch.randn(3).abs()
    fn = aotpack.load(aotpack.compile(m, (x,), backend="eager").to_bytes(), module=m)
    with torch.no_grad():
        torch.testing.assert_close(fn(x), m(x))
        m.gain.k = 5.0
        with pytest.raises(aotpack.GuardError, match=r"module\.gain\.k: expected 3\.0"):
            fn(x)
