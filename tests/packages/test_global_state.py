"""Global state is part of the contract: a call under other grad mode (where the program
reads it), autocast, default dtype or torch function mode equals eager, runs a variant
compiled for that state, or is a GuardError naming the state (guards.py, GlobalState)."""

import contextlib
import json
import os
import re
import warnings
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import aotpack
from conftest import rewrite_manifest, run_fresh


def reads_grad_mode(x):
    return x * 2 if torch.is_grad_enabled() else x * 3


def makes_ones(k):
    return k + torch.ones(3)


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.lin(x).relu()


def _save(tmp_path, target, args, name="p.aot", **kw):
    return aotpack.compile(target, args, backend=kw.pop("backend", "eager"), **kw).save(tmp_path / name)


def test_a_program_that_reads_grad_mode_is_guarded_on_it(tmp_path):
    with torch.no_grad():
        path = _save(tmp_path, reads_grad_mode, (torch.ones(3),))
    fn = aotpack.load(path)
    assert fn.manifest.variants[0].global_state.grad_mode is False
    with torch.no_grad():
        torch.testing.assert_close(fn(torch.ones(3)), reads_grad_mode(torch.ones(3)))
    with pytest.raises(aotpack.GuardError, match=r"torch.is_grad_enabled\(\): expected False .*, got True"):
        fn(torch.ones(3))  # eager gives 2s here; the package holds the 3s branch


def test_a_program_that_does_not_read_grad_mode_runs_under_both(tmp_path):
    with torch.no_grad():
        path = _save(tmp_path, makes_ones, (torch.ones(3),))
    fn = aotpack.load(path)
    assert fn.manifest.variants[0].global_state.grad_mode is None
    assert fn.manifest.format_version < aotpack.package.fmt.GLOBAL_STATE_FORMAT_VERSION  # older readers read it
    torch.testing.assert_close(fn(torch.ones(3)), makes_ones(torch.ones(3)))


def test_caller_autocast_is_refused_by_a_package_compiled_without_it(tmp_path):
    torch.manual_seed(0)
    m = Tiny().eval()
    fn = aotpack.load(_save(tmp_path, m, (torch.randn(2, 8),)))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(aotpack.GuardError, match=r"autocast\(cpu\): expected off .*, got bfloat16"):
            fn(torch.randn(2, 8))


def test_autocast_is_a_variant_dimension(tmp_path):
    """One package with a float32 and a bf16-autocast variant: each call runs the one
    compiled for the caller's state, with eager's dtype and values."""
    torch.manual_seed(0)
    m = Tiny().eval()
    x = torch.randn(2, 8)
    path = _save(tmp_path, m, (x,), variants=[{"name": "amp", "autocast": torch.bfloat16}])
    fn = aotpack.load(path)
    assert {v.name: v.global_state.autocast for v in fn.manifest.variants} == {"default": None, "amp": "bfloat16"}
    assert fn.manifest.format_version == aotpack.package.fmt.GLOBAL_STATE_FORMAT_VERSION
    with torch.no_grad():
        plain = fn(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            amp, want = fn(x), m(x)
        with torch.autocast("cpu", dtype=torch.float16):
            with pytest.raises(aotpack.GuardError, match=r"autocast\(cpu\)"):
                fn(x)  # no variant for float16
    assert plain.dtype == torch.float32 and amp.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(plain, m(x))
    torch.testing.assert_close(amp, want)


def test_the_callers_autocast_at_compile_is_compiled_in(tmp_path):
    torch.manual_seed(0)
    m = Tiny().eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        path = _save(tmp_path, m, (torch.randn(2, 8),))
    fn = aotpack.load(path)
    with torch.no_grad():
        with pytest.raises(aotpack.GuardError, match=r"autocast\(cpu\): expected bfloat16 .*, got off"):
            fn(torch.randn(2, 8))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert fn(torch.randn(2, 8)).dtype == torch.bfloat16


AUTOCAST_INPLACE = r"""
import torch

class CountsUnderAutocast(torch.nn.Module):
    # in-place updates inside autocast: an input (through a view too) and a buffer
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.register_buffer("seen", torch.zeros(4))

    def forward(self, x, y):
        y.add_(1)
        y[0].mul_(2)
        self.seen.add_(x.sum(0))
        return self.lin(x), y

def compare(fn, ref, x, bound):
    out = []
    for _ in range(2):
        y, y_ref = torch.zeros(3, 4), torch.zeros(3, 4)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            h, back = fn(x, y)
            h_ref, _ = ref(x, y_ref)
        out.append({"dtype": str(h.dtype), "equal": torch.equal(h, h_ref), "y": torch.equal(y, y_ref),
                    "returned_is_y": back is y, "buffer": torch.equal(bound.seen, ref.seen)})
    return out
"""

AUTOCAST_INPLACE_CHILD = AUTOCAST_INPLACE + r"""
import json, sys, aotpack
torch.manual_seed(0)
bound, ref = CountsUnderAutocast(), CountsUnderAutocast()
ref.load_state_dict(bound.state_dict())
x = torch.load(sys.argv[2])
print(json.dumps(compare(aotpack.load(sys.argv[1], module=bound), ref, x, bound)))
"""

EXPECTED = {"dtype": "torch.bfloat16", "equal": True, "y": True, "returned_is_y": True, "buffer": True}


@pytest.mark.parametrize("backend", ["eager", pytest.param("aoti", marks=pytest.mark.slow)])
def test_in_place_updates_inside_autocast_run_as_eager_in_a_fresh_process(tmp_path, backend, monkeypatch):
    """torch.export keeps autocast as a region that aotpack inlines by retracing the
    program functionally; the updates are made in place again where eager makes them,
    so the caller's input (through a view too) and the bound module's buffer change as
    eager's do, and an updated input that is returned is the caller's tensor. The
    portable program holds the in-place form: a rebuild from it runs the same."""
    space: dict = {}
    exec(AUTOCAST_INPLACE, space)
    torch.manual_seed(0)
    m, x = space["CountsUnderAutocast"](), torch.randn(3, 4)
    path = aotpack.compile(m, (x, torch.zeros(3, 4)), autocast=torch.bfloat16, backend=backend).save(tmp_path / "a.aot")
    torch.save(x, tmp_path / "x.pt")
    out = json.loads(run_fresh(["-c", AUTOCAST_INPLACE_CHILD, str(path), str(tmp_path / "x.pt")]).stdout.strip()
                     .splitlines()[-1])
    assert out == [EXPECTED, EXPECTED]
    if backend == "eager":
        from aotpack.load import runtime

        real = runtime.incompatibilities
        monkeypatch.setattr(runtime, "incompatibilities",
                            lambda manifest, v, *rest: real(manifest, v, *rest) + ["machine: pretend elsewhere"])
        torch.manual_seed(0)
        bound, ref = space["CountsUnderAutocast"](), space["CountsUnderAutocast"]()
        ref.load_state_dict(bound.state_dict())
        with pytest.warns(aotpack.RebuildWarning):
            fn = aotpack.load(path, module=bound, on_mismatch="rebuild")
        assert space["compare"](fn, ref, x, bound) == [EXPECTED, EXPECTED]


def test_default_dtype_is_guarded(tmp_path):
    fn = aotpack.load(_save(tmp_path, makes_ones, (torch.ones(3),)))
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with pytest.raises(aotpack.GuardError, match=r"torch.get_default_dtype\(\): expected torch.float32"):
            fn(torch.ones(3, dtype=torch.float32))
    finally:
        torch.set_default_dtype(before)


class InferenceOnly(torch.nn.Module):
    """``@torch.inference_mode()`` on forward, as inference-only code writes it: eager's
    outputs are inference tensors (``mixed``: only the one computed inside the region)."""

    def __init__(self, mixed: bool):
        super().__init__()
        self.lin, self.mixed = torch.nn.Linear(8, 4), mixed

    def forward(self, x):
        if self.mixed:
            with torch.inference_mode():
                h = self.lin(x)
            return h, x * 2
        with torch.inference_mode():
            return self.lin(x).relu(), x.sum()


@pytest.mark.parametrize("backend", ["eager", "inductor"])
@pytest.mark.parametrize("mixed", [False, True])
def test_outputs_made_under_inference_mode_are_inference_tensors(backend, mixed):
    """Until 2026-12-05 the package returned normal tensors, so what eager refuses of an
    inference tensor (an update in place outside inference mode, saving it for
    backward) ran: the same numbers, another effect."""
    m = InferenceOnly(mixed).requires_grad_(False)
    x = torch.randn(3, 8)
    fn = aotpack.load(aotpack.compile(m, (x,), backend=backend).to_bytes(), module=m)
    got, want = fn(x), m(x)
    assert [o.is_inference() for o in got] == [o.is_inference() for o in want] == [True, not mixed]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    for out in (got[0], want[0]):
        with pytest.raises(RuntimeError, match="Inplace update to inference tensor outside InferenceMode"):
            out.add_(1)


def products(x, w):
    return (x @ w).relu() @ w


@pytest.mark.parametrize("backend", ["inductor", pytest.param("aoti", marks=pytest.mark.slow)])
def test_cpu_matmul_precision_is_read_at_each_call_as_eager_reads_it(backend):
    """On the CPU the float32 matmul precision is not guarded: compiled code's matrix
    products are aten's, which read it at each call (``"medium"`` lets oneDNN multiply in
    bf16 where the CPU has it). Compiled under one precision and called under the other,
    the package gives eager's numbers under the caller's."""
    x, w = torch.randn(32, 256), torch.randn(256, 256)
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        exact = products(x, w)
        torch.set_float32_matmul_precision("medium")
        if torch.allclose(products(x, w), exact, rtol=1e-4, atol=1e-3):  # (before compiling: minutes on 2 cores)
            pytest.skip("this CPU multiplies float32 alike under both precisions: the comparison would show nothing")
        for compiled_at, called_at in (("highest", "medium"), ("medium", "highest")):
            torch.set_float32_matmul_precision(compiled_at)
            fn = aotpack.load(aotpack.compile(products, (x, w), backend=backend).to_bytes())
            torch.set_float32_matmul_precision(called_at)
            torch.testing.assert_close(fn(x, w), products(x, w), rtol=1e-4, atol=1e-3)
    finally:
        torch.set_float32_matmul_precision(before)


def test_a_torch_function_mode_is_refused_by_the_eager_backend_too(tmp_path):
    """The eager backend's graph calls aten's ops where the program called torch's: a mode
    that changes what ``x * 2`` returns got another number from it."""
    from torch.overrides import TorchFunctionMode

    class PlusHundred(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            return out + 100 if func is torch.Tensor.mul else out

    def double(x):
        return x * 2

    fn = aotpack.load(aotpack.compile(double, (torch.ones(3),), backend="eager").save(tmp_path / "e.aot"))
    with PlusHundred():
        assert double(torch.ones(3))[0] == 102  # the mode changes eager's answer
        with pytest.raises(aotpack.GuardError, match=r"torch function mode: expected none .*, got PlusHundred"):
            fn(torch.ones(3))
    torch.testing.assert_close(fn(torch.ones(3)), double(torch.ones(3)))


def test_a_torch_dispatch_mode_is_refused_by_compiled_code(tmp_path):
    """Compiled kernels run without the dispatcher a TorchDispatchMode sees: a mode that
    changes what aten.mul returns got another number from an inductor package; the eager
    backend runs aten's ops through the dispatcher, as eager does."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class PlusHundred(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            return out + 100 if func is torch.ops.aten.mul.Tensor else out

    def scaled(x):
        return x * torch.full((3,), 2.0)

    compiled = aotpack.load(aotpack.compile(scaled, (torch.ones(3),), backend="inductor").save(tmp_path / "i.aot"))
    eager = aotpack.load(aotpack.compile(scaled, (torch.ones(3),), backend="eager").save(tmp_path / "e.aot"))
    with PlusHundred():
        want, got = scaled(torch.ones(3)), eager(torch.ones(3))
        with pytest.raises(aotpack.GuardError, match=r"torch dispatch mode: expected none .*, got PlusHundred"):
            compiled(torch.ones(3))
    assert want.tolist() == [102.0] * 3  # the mode changes eager's answer (compared outside it)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(compiled(torch.ones(3)), scaled(torch.ones(3)))


def test_a_torch_function_mode_is_refused_by_compiled_code(tmp_path):
    from torch.overrides import TorchFunctionMode

    class Counting(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    from custom_backend import CountingInterpreter  # a backend without runs_aten_ops: compiled code

    backend = CountingInterpreter()
    def affine(x):
        return x * 2 + 1

    path = aotpack.compile(affine, (torch.ones(3),), backend=backend).save(tmp_path / "r.aot")
    fn = aotpack.load(path, backends=[backend])
    with Counting():
        with pytest.raises(aotpack.GuardError, match=r"torch function mode: expected none .*, got Counting"):
            fn(torch.ones(3))
    torch.testing.assert_close(fn(torch.ones(3)), affine(torch.ones(3)))


# A fresh process calling a package under each state argv[2] lists ({"grad": False}, or
# {"env": "1"}: AOTPACK_TEST_FLAG set to it, null unset): the result or the GuardError's
# first line, by the state's value
STATE_CHILD = r"""
import json, os, sys, torch, aotpack
fn, out = aotpack.load(sys.argv[1]), {}
for state in json.loads(sys.argv[2]):
    if "env" in state:
        os.environ.pop("AOTPACK_TEST_FLAG", None)
        if state["env"] is not None:
            os.environ["AOTPACK_TEST_FLAG"] = state["env"]
    key = str(state.get("env", state.get("grad")))
    with torch.set_grad_enabled(state.get("grad", True)):
        try:
            out[key] = fn(torch.ones(3)).tolist()
        except aotpack.GuardError as e:
            out[key] = str(e).splitlines()[0]
print(json.dumps(out))
"""


def test_grad_mode_guard_in_a_fresh_process(tmp_path):
    with torch.no_grad():
        path = _save(tmp_path, reads_grad_mode, (torch.ones(3),))
    states = json.dumps([{"grad": False}, {"grad": True}])
    out = json.loads(run_fresh(["-c", STATE_CHILD, str(path), states]).stdout.strip().splitlines()[-1])
    assert out["False"] == [3.0, 3.0, 3.0]
    assert out["True"].startswith("torch.is_grad_enabled(): expected False")


# -- differential: global state at compile vs at call ----------------------------------

W = torch.eye(3) * 1.5


FLAG = "AOTPACK_TEST_FLAG"  # an environment variable ``branchy`` reads


def branchy(x):
    y = x * 2 if torch.is_grad_enabled() else x - 1
    y = y + 1 if os.environ.get(FLAG) == "on" else y
    y = y * 3 if torch.are_deterministic_algorithms_enabled() else y
    y = y - 2 if torch.is_inference_mode_enabled() else y
    y = y if torch.backends.cudnn.enabled else y / 4
    return (y @ W) + torch.full((3,), 0.5)  # matmul: autocast's dtype; full: the default dtype


_PACKAGES: dict = {}


def _flag(value: str | None) -> None:
    if value is None:
        os.environ.pop(FLAG, None)
    else:
        os.environ[FLAG] = value


@contextlib.contextmanager
def _settings(det: bool, inference: bool):
    """``torch.use_deterministic_algorithms(det)`` and ``torch.inference_mode(inference)``
    inside, as they were after."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(det)
    try:
        with torch.inference_mode(inference):
            yield
    finally:
        torch.use_deterministic_algorithms(before)


def _package(tmp_path_factory, grad: bool, amp: bool, env: str | None, det: bool = False, inference: bool = False):
    key = (grad, amp, env, det, inference)
    if key not in _PACKAGES:
        folder = tmp_path_factory.mktemp("state")
        _flag(env)
        try:
            with _settings(det, inference), torch.set_grad_enabled(grad):
                pkg = aotpack.compile(branchy, (torch.ones(3),), backend="eager",
                                      autocast=torch.bfloat16 if amp else False)
        finally:
            _flag(None)
        _PACKAGES[key] = aotpack.load(pkg.save(folder / "b.aot"))
    return _PACKAGES[key]


ENV_VALUES = st.sampled_from([None, "on", "off"])


# (deterministic algorithms, inference mode) at compile: each on alone, or neither (each
# package a compile: both on adds no branch the call-side draws do not reach)
COMPILE_SETTINGS = st.sampled_from([(False, False), (True, False), (False, True)])


@settings(max_examples=60, deadline=None)
@given(compile_grad=st.booleans(), compile_amp=st.booleans(), compile_env=st.sampled_from([None, "on"]),
       compile_settings=COMPILE_SETTINGS,
       call_grad=st.booleans(), call_amp=st.booleans(), call_f64=st.booleans(), call_env=ENV_VALUES,
       call_det=st.booleans(), call_inference=st.booleans(), call_device=st.sampled_from([None, "cpu", "meta"]),
       call_cudnn=st.booleans())
def test_differential_global_state(tmp_path_factory, compile_grad, compile_amp, compile_env, compile_settings,
                                   call_grad, call_amp, call_f64, call_env, call_det, call_inference, call_device,
                                   call_cudnn):
    """Every combination of grad mode, autocast, an environment variable the program
    reads (unset, or one of two values), deterministic algorithms and inference mode
    (each read by the program) at compile and at call, and the default dtype and device
    and ``torch.backends.cudnn.enabled`` (read by the program) at call: the package's result is eager's (values and dtype) or a GuardError, which
    it must be where eager fails (``torch.full`` on the meta device beside a CPU tensor).
    (Until 2026-12-07 deterministic algorithms and inference mode ran as compiled,
    silently, and a call under ``torch.set_default_device`` was refused, "cpu" too.)"""
    # (an autocast compile traces twice, ~0.6 s: under autocast these compile-time settings are
    # left off, the call's still drawn)
    compile_det, compile_inference = compile_settings if not compile_amp else (False, False)
    fn = _package(tmp_path_factory, compile_grad, compile_amp, compile_env, compile_det, compile_inference)
    before = torch.get_default_dtype()
    x = torch.ones(3)
    try:
        if call_f64:
            torch.set_default_dtype(torch.float64)
        _flag(call_env)
        with _settings(call_det, call_inference), torch.set_grad_enabled(call_grad), \
                _attribute(torch.backends.cudnn, "enabled", call_cudnn), \
                torch.autocast("cpu", dtype=torch.bfloat16, enabled=call_amp), \
                torch.device(call_device) if call_device else contextlib.nullcontext():
            try:
                want = branchy(x)
            except RuntimeError:  # (eager's own refusal: the package's must be a GuardError)
                want = None
            try:
                got = fn(x)
            except aotpack.GuardError:
                assert ((compile_grad, compile_amp, False, compile_env, compile_det, compile_inference, "cpu", True)
                        != (call_grad, call_amp, call_f64, call_env, call_det, call_inference, call_device or "cpu",
                            call_cudnn))
                return
            assert want is not None, "eager failed where the package ran"
    finally:
        torch.set_default_dtype(before)
        _flag(None)
    assert got.dtype == want.dtype
    torch.testing.assert_close(got, want)


def test_a_program_defined_in_python_c_has_its_grad_mode_read_guarded():
    """Code without a file (``python -c``, ``exec``, a REPL) is the user's program too:
    its ``torch.is_grad_enabled()`` is guarded. Until 2026-12-05 the effect recorder took
    such code for torch's generated code, and the package returned the branch taken at
    capture (3s where eager gives 2s), silently."""
    child = ("import torch, aotpack\n"
             "def f(x):\n"
             "    return x * 2 if torch.is_grad_enabled() else x * 3\n"
             "with torch.no_grad():\n"
             "    fn = aotpack.load(aotpack.compile(f, (torch.ones(3),), backend='eager').to_bytes())\n"
             "    assert torch.equal(fn(torch.ones(3)), f(torch.ones(3)))\n"
             "try:\n"
             "    fn(torch.ones(3))\n"
             "except aotpack.GuardError as e:\n"
             "    assert 'torch.is_grad_enabled(): expected False' in str(e), e\n"
             "    print('ok')\n")
    assert run_fresh(["-c", child]).stdout.strip().endswith("ok")


# -- environment variables ---------------------------------------------------------------

class ReadsEnvironment(torch.nn.Module):
    """Reads ``FLAG`` in a helper its forward calls, in one of the ways programs do."""

    def __init__(self, how: str):
        super().__init__()
        self.how = how

    def forward(self, x):
        return x * 2 if _flag_set(self.how) else x * 3


def _flag_set(how: str) -> bool:
    if how == "get":
        return os.environ.get(FLAG) == "1"
    if how == "getenv":
        return os.getenv(FLAG, "0") == "1"
    if how == "in":
        return FLAG in os.environ
    return os.environ[FLAG] == "1"  # (how == "index": the program needs it set)


@pytest.mark.parametrize("how,at_compile", [("get", None), ("getenv", "0"), ("in", None), ("index", "0")])
def test_environment_variables_the_program_reads_are_guarded(tmp_path, how, at_compile):
    """A program that reads an environment variable (``os.environ.get``, ``os.getenv``,
    ``in``, indexing) holds the branch it took at capture: a call where the variable has
    another value, or is set where it was not, is a GuardError naming it, and eager's
    result where it is as at capture. (Until 2026-12-07 the package ran the branch of
    capture time, silently, as torch.compile's code does: it does not guard them.)"""
    m = ReadsEnvironment(how)
    _flag(at_compile)
    try:
        fn = aotpack.load(_save(tmp_path, m, (torch.ones(3),)))
        assert fn.manifest.variants[0].global_state.environ == {FLAG: at_compile}
        torch.testing.assert_close(fn(torch.ones(3)), m(torch.ones(3)))
        _flag("1")
        assert torch.equal(m(torch.ones(3)), torch.full((3,), 2.0))  # eager takes the other branch
        with pytest.raises(aotpack.GuardError, match=rf"os.environ\['{FLAG}'\]: expected "
                                                     rf"{'unset' if at_compile is None else repr(at_compile)} "
                                                     rf".*got '1'"):
            fn(torch.ones(3))
    finally:
        _flag(None)


def test_an_environment_variable_read_at_compile_is_checked_in_a_fresh_process(tmp_path):
    """The machine loading a package is another process, often another machine: the
    variable's value at capture travels in the package (format version 21)."""
    _flag("1")
    try:
        path = _save(tmp_path, ReadsEnvironment("get"), (torch.ones(3),))
    finally:
        _flag(None)
    assert aotpack.load(path).manifest.format_version == aotpack.package.fmt.ENVIRON_FORMAT_VERSION
    assert f"global state: os.environ['{FLAG}'] '1'" in str(aotpack.inspect(path))  # (aotpack inspect says it)
    states = json.dumps([{"env": None}, {"env": "1"}, {"env": "on"}])
    out = json.loads(run_fresh(["-c", STATE_CHILD, str(path), states]).stdout.strip().splitlines()[-1])
    assert out["1"] == [2.0, 2.0, 2.0]
    assert out["None"] == f"os.environ['{FLAG}']: expected '1' (the program read it at capture and holds the " \
                          "branch it took then; set it back around the call, or compile with it as the call has it), " \
                          "got unset"
    assert out["on"].endswith("got 'on'")


def sets_then_reads(x):
    os.environ[FLAG] = "1"
    return x * 2 if os.environ[FLAG] == "1" else x


def iterates(x):
    return x * len([k for k in os.environ if k == FLAG])


def test_setting_or_iterating_the_environment_is_warned(tmp_path):
    """Setting a variable is a side effect the package does not replay (warned with the
    line; the variable is the program's own then, not guarded); iterating the environment
    reads every variable, each guarded, and is warned too."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fn = aotpack.load(_save(tmp_path, sets_then_reads, (torch.ones(3),)))
        finally:
            _flag(None)
    said = [str(w.message) for w in caught if w.category is aotpack.SideEffectWarning]
    assert any(f"setting the environment variable `{FLAG}`" in s and "test_global_state.py:" in s for s in said)
    assert fn.manifest.variants[0].global_state.environ == {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn = aotpack.load(_save(tmp_path, iterates, (torch.ones(3),), name="i.aot"))
    assert any("iterating over os.environ" in str(w.message) for w in caught)
    assert fn.manifest.variants[0].global_state.environ == dict(os.environ)


# -- settings the program reads ------------------------------------------------------------

def reads_deterministic(x):
    return x * 2 if torch.are_deterministic_algorithms_enabled() else x * 3


def reads_matmul_precision(x):
    return x * 2 if torch.get_float32_matmul_precision() == "high" else x * 3


def reads_inference_mode(x):
    return x * 2 if torch.is_inference_mode_enabled() else x * 3


def reads_anomaly(x):
    return x * 2 if torch.is_anomaly_enabled() else x * 3


def reads_cuda_available(x):
    return x * 2 if torch.cuda.is_available() else x * 3


def _the_other_machine():
    """``torch.cuda.is_available()`` answers the other way, its own code running: True, as
    on a machine with a GPU, where this one has none (a CPU build), else False."""
    if torch.cuda.is_available():
        return mock.patch.multiple(torch.cuda, _is_compiled=lambda: False)
    return mock.patch.multiple(torch.cuda, _is_compiled=lambda: True, _nvml_based_avail=lambda: True,
                               device_count=lambda: 1)


@contextlib.contextmanager
def _matmul_precision(value: str):
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(value)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


# (the setting read, the program, the setting's other value as a context, and its error's name)
SETTINGS_READ = {
    "deterministic": (reads_deterministic, lambda: _settings(True, False), "torch.are_deterministic_algorithms_enabled()"),
    "matmul_precision": (reads_matmul_precision, lambda: _matmul_precision("high"),
                         "torch.get_float32_matmul_precision()"),
    "inference_mode": (reads_inference_mode, torch.inference_mode, "torch.is_inference_mode_enabled()"),
    "anomaly": (reads_anomaly, lambda: torch.autograd.set_detect_anomaly(True), "torch.is_anomaly_enabled()"),
    "cuda_available": (reads_cuda_available, _the_other_machine, "torch.cuda.is_available()"),
}


# (inductor on a CPU build cannot compile where torch.cuda.is_available() says True)
@pytest.mark.parametrize(("name", "backend"), [(name, backend) for name in sorted(SETTINGS_READ)
                                               for backend in ("eager", "inductor")
                                               if (name, backend) != ("cuda_available", "inductor")])
def test_settings_the_program_reads_are_guarded_on_every_device(tmp_path, name, backend):
    """A program branching on ``torch.are_deterministic_algorithms_enabled()``,
    ``torch.get_float32_matmul_precision()``, ``torch.is_inference_mode_enabled()``,
    ``torch.is_anomaly_enabled()`` or ``torch.cuda.is_available()`` (a CPU package
    loaded on a machine with a GPU) holds the branch it took at capture: a call under the
    other value is a GuardError naming the setting, compiled either way, on CPU too
    (until 2026-12-07 the first two were guarded on CUDA only, for the kernels, and the
    others not at all: the package ran the branch of capture time, silently). The
    package is format version 22 (23 for the last) and ``aotpack inspect`` names the
    setting."""
    program, other, where = SETTINGS_READ[name]
    x = torch.ones(3)
    plain = aotpack.load(aotpack.compile(program, (x,), backend=backend).save(tmp_path / "plain.aot"))
    with other():
        changed = aotpack.load(aotpack.compile(program, (x,), backend=backend).save(tmp_path / "other.aot"))
    assert plain.manifest.variants[0].global_state.reads == [name]
    assert plain.manifest.format_version == (aotpack.package.fmt.DEFAULT_DEVICE_FORMAT_VERSION
                                             if name == "cuda_available" else aotpack.package.fmt.SETTINGS_READ_FORMAT_VERSION)
    assert f"global state: {name.replace('_', ' ')} " in str(aotpack.inspect(tmp_path / "plain.aot"))
    torch.testing.assert_close(plain(x), program(x))
    with pytest.raises(aotpack.GuardError, match=rf"{re.escape(where)}: expected .*the program read it"):
        changed(x)
    base = program(x)
    with other():
        torch.testing.assert_close(changed(x), program(x))
        assert not torch.equal(program(x), base)  # (eager took the other branch)
        with pytest.raises(aotpack.GuardError, match=rf"{re.escape(where)}: expected .*the program read it"):
            plain(x)


# -- torch.backends' settings the program reads ---------------------------------------------

def reads_cudnn_enabled(x):
    return x * 2 if torch.backends.cudnn.enabled else x * 3


def reads_mkldnn_enabled(x):
    return x * 2 if torch.backends.mkldnn.enabled else x * 3


def reads_cublas_tf32(x):
    return x * 2 if torch.backends.cuda.matmul.allow_tf32 else x * 3


def reads_conv_precision(x):
    return x * 2 if torch.backends.mkldnn.conv.fp32_precision == "bf16" else x * 3


def asks_the_cpu_capability(x):
    return x * 2 if torch.backends.cpu.get_cpu_capability() == "NO AVX" else x * 3


def asks_for_mps(x):
    return x * 2 if torch.backends.mps.is_available() else x * 3


@contextlib.contextmanager
def _attribute(owner, name: str, value):
    before = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, before)


@contextlib.contextmanager
def _a_machine_with_mps():
    # (torch caches the answer: asked again, inside and after)
    torch.backends.mps.is_available.cache_clear()
    try:
        with mock.patch.object(torch._C, "_mps_is_available", lambda: True, create=True):
            yield
    finally:
        torch.backends.mps.is_available.cache_clear()


# (the setting's public name, the program, the other value as a context)
BACKEND_SETTINGS_READ = {
    "torch.backends.cudnn.enabled": (reads_cudnn_enabled, lambda: _attribute(torch.backends.cudnn, "enabled", False)),
    "torch.backends.mkldnn.enabled": (reads_mkldnn_enabled, lambda: _attribute(torch.backends.mkldnn, "enabled", False)),
    "torch.backends.cuda.matmul.allow_tf32": (reads_cublas_tf32,
                                              lambda: _attribute(torch.backends.cuda.matmul, "allow_tf32", True)),
    "torch.backends.mkldnn.conv.fp32_precision": (
        reads_conv_precision, lambda: _attribute(torch.backends.mkldnn.conv, "fp32_precision", "bf16")),
    "torch.backends.cpu.get_cpu_capability()": (
        asks_the_cpu_capability, lambda: mock.patch.object(torch._C, "_get_cpu_capability", lambda: "NO AVX")),
    "torch.backends.mps.is_available()": (asks_for_mps, _a_machine_with_mps),
}


@pytest.mark.parametrize(("name", "backend"), [(name, "eager") for name in sorted(BACKEND_SETTINGS_READ)]
                         + [("torch.backends.cudnn.enabled", "inductor")])
def test_settings_of_torch_backends_the_program_reads_are_guarded(tmp_path, name, backend):
    """A program branching on a flag of ``torch.backends`` (``torch.backends.cudnn.enabled``,
    ``...cuda.matmul.allow_tf32``, ``...mkldnn.conv.fp32_precision``) or on what it asks of
    the machine (``torch.backends.mps.is_available()``, ``...cpu.get_cpu_capability()``)
    holds the branch it took at capture: a call under the other value is a GuardError
    naming the setting by its public name (until 2026-12-07 the package ran the branch of
    capture time, silently; and for ``cudnn.enabled`` and ``mkldnn.enabled`` the branch
    was not even eager's: torch.export's trace turns both off, so the package of a
    program called with them on returned the other branch's result). Format version 24;
    ``aotpack inspect`` names the setting."""
    program, other = BACKEND_SETTINGS_READ[name]
    x = torch.ones(3)
    plain = aotpack.load(aotpack.compile(program, (x,), backend=backend).save(tmp_path / "plain.aot"))
    with other():
        changed = aotpack.load(aotpack.compile(program, (x,), backend=backend).save(tmp_path / "other.aot"))
    assert list(plain.manifest.variants[0].global_state.backends) == [name]
    assert plain.manifest.format_version == aotpack.package.fmt.BACKEND_SETTINGS_FORMAT_VERSION
    assert name in str(aotpack.inspect(tmp_path / "plain.aot"))
    error = rf"{re.escape(name)}: expected .*the program (read|asked) it"
    torch.testing.assert_close(plain(x), program(x))
    with pytest.raises(aotpack.GuardError, match=error):
        changed(x)
    base = program(x)
    with other():
        torch.testing.assert_close(changed(x), program(x))
        assert not torch.equal(program(x), base)  # (eager took the other branch)
        with pytest.raises(aotpack.GuardError, match=error):
            plain(x)


def test_a_setting_of_torch_backends_this_torch_lacks_is_refused_at_load(tmp_path):
    """A package whose program read a setting this torch does not have (a newer torch's
    flag, or a name written into the manifest) is refused at load, naming it; the name is
    never resolved against torch's modules."""
    path = aotpack.compile(reads_cudnn_enabled, (torch.ones(3),), backend="eager").save(tmp_path / "p.aot")

    def rename(doc):
        doc["variants"][0]["global_state"]["backends"] = {"torch.backends.cudnn.os.system": True}

    rewrite_manifest(path, rename)
    with pytest.raises(aotpack.IncompatibleError, match=r"settings: the program read torch\.backends\.cudnn\.os\.system"
                                                        r", which torch .* does not have"):
        aotpack.load(path)


def test_reading_the_thread_count_is_a_value_frozen_at_capture():
    """``torch.get_num_threads()`` in the program: eager reads it at each call, the
    package holds its value of capture (a number from the world, as ``time.time()``):
    a SideEffectWarning with the line."""
    with pytest.warns(aotpack.SideEffectWarning, match=r"test_global_state.py:\d+: torch.get_num_threads\(\) ran once"):
        aotpack.compile(lambda x: x * torch.get_num_threads(), (torch.ones(3),), backend="eager")


# -- the default device (torch.set_default_device, with torch.device(d):) -----------------

def makes_on_the_default_device(x):
    return x * 2 if torch.zeros(0).device.type == "cpu" else x * 3  # (no device=: the default's)


def asks_the_default_device(x):
    return x * 2 if torch.get_default_device().type == "cpu" else x * 3


def makes_on_the_inputs_device(x):
    return x * 2 + torch.ones(3, device=x.device) + torch.ones_like(x)


DEFAULT_DEVICE_PROGRAMS = {"makes": makes_on_the_default_device, "asks": asks_the_default_device,
                           "none": makes_on_the_inputs_device}


def _under(device: str | None):
    return torch.device(device) if device else contextlib.nullcontext()


@pytest.mark.parametrize(("program", "backend", "compiled_under"),
                         [("makes", "eager", None), ("makes", "inductor", None), ("makes", "eager", "meta"),
                          ("asks", "eager", None), ("none", "eager", None), ("none", "inductor", "meta")])
def test_the_default_device_is_guarded_where_the_program_reads_it(program, backend, compiled_under):
    """``torch.set_default_device(d)`` and ``with torch.device(d):`` place the tensors a
    program makes with no ``device=``: a package whose program made one, or asked
    ``torch.get_default_device()``, runs under the default device of its capture (with
    such a mode or without, for the CPU) and is a GuardError naming
    ``torch.get_default_device()`` under another; one whose program made none runs under
    any, equal to eager (until 2026-12-07 every call under either was refused as a torch
    function mode, the CPU's too: dynamo's ``DEFAULT_DEVICE`` guard is the model). A
    default device other than the CPU needs format version 23."""
    fn, x = DEFAULT_DEVICE_PROGRAMS[program], torch.randn(3)
    with _under(compiled_under):
        pkg = aotpack.compile(fn, (x,), backend=backend)
        compiled_branch = fn(x)
    loaded = aotpack.load(pkg.to_bytes())
    state = pkg.manifest.variants[0].global_state
    reads = program != "none"
    assert (state.default_device, state.default_device_read) == (compiled_under or "cpu", reads)
    assert (pkg.manifest.format_version >= aotpack.package.fmt.DEFAULT_DEVICE_FORMAT_VERSION) == (
        reads and compiled_under is not None)
    for device in (None, "cpu", "meta"):
        with _under(device):
            want = fn(x)
            if reads and (device or "cpu") != (compiled_under or "cpu"):
                with pytest.raises(aotpack.GuardError, match=rf"torch.get_default_device\(\): expected "
                                                             rf"{compiled_under or 'cpu'} .*the program reads it"):
                    loaded(x)
                assert not torch.equal(want, compiled_branch)  # (eager took the other branch)
            else:
                torch.testing.assert_close(loaded(x), want)


def test_another_torch_function_mode_beside_the_default_devices_is_refused():
    """Only the default device's mode is let through: another mode beside it (one that
    would see eager's torch calls) is still a GuardError naming it."""

    class Counting(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            return func(*args, **(kwargs or {}))

    loaded = aotpack.load(aotpack.compile(makes_on_the_inputs_device, (torch.randn(3),), backend="eager").to_bytes())
    with torch.device("cpu"), Counting():
        with pytest.raises(aotpack.GuardError, match=r"torch function mode: expected none .*got Counting"):
            loaded(torch.randn(3))


def test_a_model_on_the_meta_device_is_refused_naming_it():
    """A model built under ``with torch.device("meta"):`` whose weights were never
    loaded, or a meta example input, is a CaptureError naming the tensor (until
    2026-12-07 torch's raw ``RuntimeError`` about autocast)."""
    with torch.device("meta"):
        model = torch.nn.Linear(3, 3)
    with pytest.raises(aotpack.CaptureError, match=r"the module's 'weight' is on the meta device"):
        aotpack.compile(model, (torch.randn(2, 3),), backend="eager")
    with pytest.raises(aotpack.CaptureError, match=r"x is on the meta device"):
        aotpack.compile(makes_on_the_inputs_device, (torch.randn(3, device="meta"),), backend="eager")
