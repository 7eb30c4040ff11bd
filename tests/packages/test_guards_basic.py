"""Loaded packages check inputs first; messages name the argument path, expected, actual."""

import collections

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import aotpack
import programs
from aotpack import tree


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    d = tmp_path_factory.mktemp("guards")
    ps = programs.programs()
    out = {}
    for name in ("module", "nested", "defaults", "keyword_only", "plain"):
        p = ps[name]
        path = aotpack.compile(p["target"], p["args"], p.get("kwargs"), dynamic=p.get("dynamic"),
                               backend="eager").save(d / f"{name}.aot")
        out[name] = aotpack.load(path)
    return out


def message(fn, *args, **kwargs):
    with pytest.raises(aotpack.GuardError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_static_dim(loaded):
    assert message(loaded["plain"], torch.randn(3, 6), torch.randn(3, 5)).startswith(
        "args[0].shape[1]: expected 5, got 6")


def test_dtype(loaded):
    assert message(loaded["plain"], torch.randn(3, 5), torch.randn(3, 5, dtype=torch.float64)).startswith(
        "args[1].dtype: expected torch.float32, got torch.float64")


def test_rank(loaded):
    assert message(loaded["plain"], torch.randn(3, 5, 1), torch.randn(3, 5)).startswith(
        "args[0].dim(): expected rank 2 (shape [3, 5]), got rank 3 (shape [3, 5, 1])")


def test_dynamic_range_names_dim(loaded):
    msg = message(loaded["module"], torch.randn(65, 4))
    assert msg.startswith("args[0].shape[0]: expected batch in 1..64, got 65")
    assert "x: float32[batch=1..64, 4] cpu" in msg
    # a dynamic input of the wrong rank: the expected shape with the Dim's range
    assert message(loaded["module"], torch.randn(2, 4, 1)).startswith(
        "args[0].dim(): expected rank 2 (shape [batch=1..64, 4]), got rank 3 (shape [2, 4, 1])")


def test_nested_path_and_keyword(loaded):
    good = {"pair": [torch.randn(2, 3), torch.randn(2, 3)]}
    msg = message(loaded["nested"], {"pair": [torch.randn(2, 3), torch.randn(2, 4)]}, {"w": torch.randn(3)})
    assert msg.startswith("args[0]['pair'][1].shape[1]: expected 3, got 4")
    msg = message(loaded["nested"], good, opts={"w": torch.randn(3, dtype=torch.float16)})
    assert msg.startswith("kwargs['opts']['w'].dtype: expected torch.float32, got torch.float16")
    msg = message(loaded["nested"], good, {"v": torch.randn(3)})
    assert msg.startswith("args[1]: expected a dict with keys ['w'], got keys ['v']")
    msg = message(loaded["keyword_only"], torch.randn(4), mask=torch.ones(4))
    assert msg.startswith("kwargs['mask'].dtype: expected torch.bool, got torch.float32")


def test_frozen_python_values(loaded):
    msg = message(loaded["defaults"], torch.randn(3, 3), 0.25)
    assert msg.startswith("args[1]: expected 0.5 (frozen at compile time), got 0.25 (float)")
    msg = message(loaded["defaults"], torch.randn(3, 3), mode="relu")
    assert msg.startswith("kwargs['mode']: expected 'tanh' (frozen at compile time), got 'relu' (str)")


def test_structure(loaded):
    msg = message(loaded["plain"], torch.randn(3, 5), [torch.randn(3, 5)])
    assert msg.startswith("args[1]: expected a tensor, got a list of length 1")
    msg = message(loaded["plain"], torch.randn(3, 5))
    assert "does not fit the signature (x, y)" in msg


def test_guard_error_is_a_type_error(loaded):
    with pytest.raises(TypeError):
        loaded["plain"](torch.randn(1), torch.randn(1))


def test_check_guards_false_skips_tensor_checks(tmp_path):
    path = aotpack.compile(programs.plain, (torch.randn(3, 5), torch.randn(3, 5)), backend="eager").save(
        tmp_path / "p.aot")
    fn = aotpack.load(path, check_guards=False)
    x, y = torch.randn(2, 2), torch.randn(2, 2)
    # the eager graph happens to run on other shapes; the point is that no guard stopped it
    torch.testing.assert_close(fn(x, y), programs.plain(x, y))


def test_a_dim_without_bounds_compiles_and_round_trips():
    # Dim("b") has no max (torch's int_oo): the package records none, and takes any size
    pkg = aotpack.compile(torch.nn.Linear(4, 2).eval(), (torch.randn(3, 4),),
                          dynamic={"input": {0: aotpack.Dim("b")}}, backend="eager")
    assert pkg.manifest.variants[0].dims["b"].max is None
    fn = aotpack.load(pkg.to_bytes())
    assert fn(torch.randn(1000, 4)).shape == (1000, 2)


# -- containers: their exact type and a dict's order ----------------------------------

Pair = collections.namedtuple("Pair", "a b")
CONTAINERS = ["list", "tuple", "namedtuple", "dict", "dict_reversed", "ordered_dict"]


def _container(form: str, a, b):
    return {"list": lambda: [a, b], "tuple": lambda: (a, b), "namedtuple": lambda: Pair(a, b),
            "dict": lambda: {"a": a, "b": b}, "dict_reversed": lambda: {"b": b, "a": a},
            "ordered_dict": lambda: collections.OrderedDict(a=a, b=b)}[form]()


def reads_its_container(c):
    """A result that depends on the container's type and on the order it iterates in."""
    if isinstance(c, dict):
        values, kind = list(c.values()), 3 if isinstance(c, collections.OrderedDict) else 2
    else:
        values, kind = list(c), 5 if hasattr(c, "_fields") else 7 if isinstance(c, list) else 11
    return torch.cat([v * (i + 1) for i, v in enumerate(values)]) * kind


_CONTAINER_PACKAGES: dict = {}


@settings(max_examples=40, deadline=None)
@given(compiled=st.sampled_from(CONTAINERS), called=st.sampled_from(CONTAINERS))
def test_a_container_argument_of_another_type_or_order_is_refused(compiled, called):
    """A list, tuple, namedtuple, dict (in either order) or OrderedDict compiled, any of
    them called: eager's result, or a GuardError naming the argument. The program reads
    the container's type (``isinstance``) and iterates it, so only the one compiled may
    run: the guard takes containers by their exact type and a dict's keys in their order,
    as torch.compile's guards do. (Until 2026-12-07 a tuple passed for a list, a
    namedtuple for a tuple, an OrderedDict for a dict or a dict's keys in another order
    ran the branch and order compiled, silently.)"""
    a, b = torch.tensor([1.0]), torch.tensor([10.0])
    if compiled not in _CONTAINER_PACKAGES:
        pkg = aotpack.compile(reads_its_container, (_container(compiled, a, b),), backend="eager")
        _CONTAINER_PACKAGES[compiled] = aotpack.load(pkg.to_bytes())
    fn, arg = _CONTAINER_PACKAGES[compiled], _container(called, a, b)
    try:
        got = fn(arg)
    except aotpack.GuardError as e:
        assert compiled != called and str(e).startswith("args[0]: expected a")
        return
    torch.testing.assert_close(got, reads_its_container(arg))


def _plain():
    return torch.tensor([1.0 + 2.0j, -3.0 + 0.5j])


def _inference():
    with torch.inference_mode():
        return torch.ones(2)


def _made_by_autograd():
    with torch.enable_grad():
        return torch.ones(2, requires_grad=True) * 1  # (it has a grad_fn: no leaf)


# (the method the program asks, a tensor answering False, one answering True)
ASKED = {"is_inference": (lambda: torch.ones(2), _inference),
         "is_conj": (_plain, lambda: _plain().conj()),
         "is_neg": (lambda: torch.ones(2), lambda: _plain().conj().imag),
         "grad_fn": (lambda: torch.ones(2), _made_by_autograd)}



@pytest.mark.parametrize("backend", ["eager", "inductor"])
@pytest.mark.parametrize("method", sorted(ASKED))
def test_what_the_program_asks_of_a_tensor_is_guarded(tmp_path, method, backend):
    """``x.is_inference()``, ``x.is_conj()``, ``x.is_neg()`` and ``x.grad_fn`` (or
    ``x.is_leaf``) tell tensors of one dtype, shape and device apart (an inference
    tensor, a conjugate or negative view, one the caller's autograd made): a program
    branching on them holds its example's branch, so the guard pins the answer
    (``Input.properties``, format version 22): a tensor answering otherwise is a
    GuardError naming it, compiled either way; one answering alike gives eager's result.
    (Until 2026-12-07 the package ran the example's branch, silently.)"""
    pinned = "is_leaf" if method == "grad_fn" else method  # (``x.grad_fn is None`` asks whether it is a leaf)
    asked = r"is_leaf" if method == "grad_fn" else rf"{method}\(\)"

    def asks(x):
        answer = x.grad_fn is not None if method == "grad_fn" else getattr(x, method)()
        return x * 2 if answer else x * 3

    no, yes = ASKED[method]
    for example, other in ((no, yes), (yes, no)):
        with torch.no_grad():  # (a tensor autograd made requires grad: an inference package takes it so)
            fn = aotpack.load(aotpack.compile(asks, (example(),), backend=backend).save(tmp_path / "p.aot"))
            want = tree.tensor_property(example(), pinned)
            assert fn.manifest.variants[0].inputs[0].properties == {pinned: want}
            torch.testing.assert_close(fn(example()).resolve_conj().resolve_neg(),
                                       asks(example()).resolve_conj().resolve_neg())
            with pytest.raises(aotpack.GuardError, match=rf"args\[0\]\.{asked}: expected {want} \(the program asks"):
                fn(other())
