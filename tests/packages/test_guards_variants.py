"""Dynamic shapes, specialization, variants and dispatch, guard filters; the generated
fast check agrees with the full check on random calls."""

import copy
import json
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import aotpack
import programs
from aotpack import Dim
from aotpack.load.guards import Guard, Mismatch
from aotpack.package import manifest as mf
from aotpack.package.manifest import Input, Param
from aotpack.treespec import TensorLeaf, TupleSpec
from conftest import run_fresh


def add4(a, b, c, d):
    return a + b + c + d


def cat_twice(x, y):
    return torch.cat([x, x], 0) + y


def test_specialized_dim_warns_and_strict_errors():
    xs = [torch.randn(8, 16) for _ in range(4)]
    batch = Dim("batch", min=1, max=4096)
    dyn = {"a": {0: batch}, "b": {0: batch}}
    with pytest.warns(aotpack.SpecializationWarning, match=r"batch \(a.shape\[0\]\) = 8"):
        pkg = aotpack.compile(add4, tuple(xs), backend="eager", dynamic=dyn)
    assert pkg.manifest.variants[0].inputs[0].shape == [8, 16]
    with pytest.raises(aotpack.CaptureError, match=r"specializes dynamic dimensions: batch \(a.shape\[0\]\) = 8"):
        aotpack.compile(add4, tuple(xs), backend="eager", dynamic=dyn, strict_dims=True)


def test_every_size_in_range_runs_and_out_of_range_names_dim(tmp_path):
    batch = Dim("batch", min=1, max=64)
    xs = (torch.randn(8, 16), torch.randn(8, 16), torch.randn(16), torch.randn(16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no specialization here
        path = aotpack.compile(add4, xs, backend="eager", dynamic={"a": {0: batch}, "b": {0: batch}}).save(
            tmp_path / "a.aot")
    fn = aotpack.load(path)
    for n in (1, 2, 7, 64):
        args = (torch.randn(n, 16), torch.randn(n, 16), torch.randn(16), torch.randn(16))
        torch.testing.assert_close(fn(*args), add4(*args))
    with pytest.raises(aotpack.GuardError, match=r"^args\[0\].shape\[0\]: expected batch in 1..64, got 65"):
        fn(torch.randn(65, 16), torch.randn(65, 16), torch.randn(16), torch.randn(16))
    with pytest.raises(aotpack.GuardError, match=r"^args\[1\].shape\[0\]: expected batch = 3 \(as in an earlier input\), got 4"):
        fn(torch.randn(3, 16), torch.randn(4, 16), torch.randn(16), torch.randn(16))


def test_derived_dim(tmp_path):
    b = Dim("b", min=1, max=100)
    path = aotpack.compile(cat_twice, (torch.randn(3, 4), torch.randn(6, 4)), backend="eager",
                           dynamic={"x": {0: b}, "y": {0: 2 * b}}).save(tmp_path / "c.aot")
    fn = aotpack.load(path)
    torch.testing.assert_close(fn(torch.ones(5, 4), torch.ones(10, 4)), cat_twice(torch.ones(5, 4), torch.ones(10, 4)))
    with pytest.raises(aotpack.GuardError, match=r"^args\[1\].shape\[0\]: expected 2\*b = 10, got 9"):
        fn(torch.ones(5, 4), torch.ones(9, 4))
    assert "y: float32[2*b, 4] cpu" in str(aotpack.inspect(path))


def test_dynamic_true(tmp_path):
    path = aotpack.compile(programs.plain, (torch.randn(3, 5), torch.randn(3, 5)), backend="eager",
                           dynamic=True).save(tmp_path / "p.aot")
    fn = aotpack.load(path)
    x, y = torch.randn(7, 9), torch.randn(7, 9)
    torch.testing.assert_close(fn(x, y), programs.plain(x, y))


@pytest.fixture(scope="module")
def variant_package(tmp_path_factory):
    torch.manual_seed(0)
    m = programs.MLPWithBuffer().eval()
    mb = copy.deepcopy(m).bfloat16()
    x = torch.randn(4, 4)
    pkg = aotpack.compile(m, (x,), backend="eager", dynamic={"x": {0: Dim("batch", min=1, max=64)}},
                          variants=[{"name": "b1", "args": (x[:1],), "dynamic": None},
                                    {"name": "bf16", "target": mb, "args": (x.bfloat16(),)}])
    return pkg.save(tmp_path_factory.mktemp("variants") / "v.aot"), m, mb


def test_variants_dispatch_most_specific(variant_package):
    path, m, mb = variant_package
    fn = aotpack.load(path)
    assert fn.variants == ["b1", "default", "bf16"]  # static batch-1 before the dynamic ones
    seen = []

    def spy(inner, name):
        def run(flat):
            seen.append(name)
            return inner(flat)

        return run

    for v in fn._variants:
        v.fn = spy(v.fn, v.name)
    x = torch.randn(5, 4)
    torch.testing.assert_close(fn(x[:1]), m(x[:1]))
    torch.testing.assert_close(fn(x), m(x))
    torch.testing.assert_close(fn(x.bfloat16()), mb(x.bfloat16()))
    assert seen == ["b1", "default", "bf16"]


def test_variant_weights_stored_once_and_per_dtype(variant_package):
    path, _, _ = variant_package
    m = aotpack.inspect(path).manifest
    names = set(m.program.weights) | set(m.program.aliases)
    assert "fc1.weight" in names and "fc1.weight@bf16" in names
    assert m.program.weights["fc1.weight@bf16"].dtype == "bfloat16"
    by = {v.name: v for v in m.variants}
    assert by["b1"].weights == by["default"].weights  # shared, not copied
    text = str(aotpack.inspect(path))
    assert "b1: backend eager" in text and "x: float32[1, 4] cpu" in text
    assert "x: bfloat16[batch=1..64, 4] cpu" in text


def test_no_variant_matches_lists_all(variant_package):
    path, _, _ = variant_package
    fn = aotpack.load(path)
    with pytest.raises(aotpack.GuardError) as info:
        fn(torch.randn(2, 4, dtype=torch.float16))
    msg = str(info.value)
    assert msg.startswith("args[0].dtype: expected torch.float32, got torch.float16 (variant b1;")
    assert "bf16: args[0].dtype expected torch.bfloat16, got torch.float16" in msg
    assert "x: float32[batch=1..64, 4] cpu" in msg


def test_module_binding_skips_variants_of_other_dtype(variant_package):
    path, m, _ = variant_package
    fn = aotpack.load(path, module=m)
    assert fn.variants == ["b1", "default"]
    x = torch.randn(3, 4)
    with torch.no_grad():  # an inference package: eager would build an autograd graph otherwise
        torch.testing.assert_close(fn(x), m(x))
    with pytest.raises(aotpack.GuardError, match=r"module parameter 'fc1.weight'.requires_grad: expected False"):
        fn(x)


def test_add_variant_to_saved_package(tmp_path):
    torch.manual_seed(0)
    m = programs.MLPWithBuffer().eval()
    path = aotpack.compile(m, (torch.randn(4, 4),), backend="eager").save(tmp_path / "m.aot")
    with pytest.raises(aotpack.GuardError):
        aotpack.load(path)(torch.randn(9, 4))
    aotpack.add_variant(path, m, (torch.randn(9, 4),), variant="b9", backend="eager")
    fn = aotpack.load(path)
    assert sorted(fn.variants) == ["b9", "default"]
    x = torch.randn(9, 4)
    torch.testing.assert_close(fn(x), m(x))
    with pytest.raises(aotpack.AotpackError, match="already has a variant named 'b9'"):
        aotpack.add_variant(path, m, (torch.randn(9, 4),), variant="b9", backend="eager")
    with pytest.raises(aotpack.AotpackError, match="not the same program"):
        aotpack.add_variant(path, programs.plain, (torch.randn(2), torch.randn(2)), variant="other", backend="eager")


def rows_and_cols(x):
    return x * 2, x.shape[0], {"cols": x.shape[1]}


def test_variants_returning_other_ints_each_return_their_own(tmp_path):
    """``x.shape[0]`` returned by a variant compiled for one size is a constant, by one
    with a Dim a size leaf (format version 17): the package's spec holds a size leaf there,
    and each variant returns its own (the fixed one its int), in either order of
    compiling, added to a saved package too. Before, a package could not hold both."""
    dyn = {"name": "rows", "args": (torch.randn(4, 3),), "dynamic": {"x": {0: aotpack.Dim("rows", min=2)}}}
    for first, rest in ((None, [dyn]), (dyn, [])):
        kwargs = {"variant": "one"} if first is None else {"variant": "rows", "dynamic": first["dynamic"]}
        pkg = aotpack.compile(rows_and_cols, (torch.randn(1, 3) if first is None else first["args"][0],),
                              backend="eager", variants=rest, **kwargs)
        if first is not None:
            path = pkg.save(tmp_path / "rows.aot")
            aotpack.add_variant(path, rows_and_cols, (torch.randn(1, 3),), variant="one", backend="eager")
            pkg = aotpack.Package.open(path)
        assert pkg.manifest.format_version == 17
        assert {v.name: v.output_sizes for v in pkg.manifest.variants} == {"one": [1], "rows": ["rows"]}
        fn = aotpack.load(pkg.to_bytes())
        for n in (1, 2, 7):
            x = torch.randn(n, 3)
            got = fn(x)
            assert got[1:] == rows_and_cols(x)[1:] and type(got[1]) is int
    two = aotpack.compile(rows_and_cols, (torch.randn(1, 3),), backend="eager", variant="one",
                          variants=[{"name": "two", "args": (torch.randn(2, 3),)}])
    assert [v.output_sizes for v in two.manifest.variants] == [[1], [2]]  # (two constants: each its own)
    fn = aotpack.load(two.to_bytes())
    assert fn(torch.randn(1, 3))[1] == 1 and fn(torch.randn(2, 3))[1] == 2


def test_guard_filter_drops_chosen_checks(tmp_path):
    def f(x, n=2):
        return x * n

    path = aotpack.compile(f, (torch.randn(3, 4),), backend="eager").save(tmp_path / "f.aot")
    seen = []

    def keep(entries):
        seen.extend(entries)
        return [e.kind != "shape" for e in entries]

    fn = aotpack.load(path, guard_filter=keep)
    assert [(e.path, e.kind, e.expected) for e in seen] == [
        ("x", "dtype", "float32"), ("x", "shape", "[3, 4]"), ("x", "layout", "contiguous"), ("x", "device", "cpu"),
        ("x", "requires_grad", "False"), ("n", "value", "2"),
        ("autocast(cpu)", "global_state", "off"), ("torch.get_default_dtype()", "global_state", "torch.float32"),
        ("torch function mode", "global_state", "none")]
    torch.testing.assert_close(fn(torch.ones(5, 5)), torch.ones(5, 5) * 2)  # shape check dropped
    with pytest.raises(aotpack.GuardError, match="dtype"):
        fn(torch.ones(3, 4, dtype=torch.float64))  # dtype check kept


def test_device_and_requires_grad_messages():
    g = Guard([Param(name="x", kind="positional_or_keyword")], TupleSpec([TensorLeaf(0)]),
              [Input(dtype="float32", shape=[2], device="cuda", requires_grad=True)], {})
    with pytest.raises(Mismatch) as info:
        g.check((torch.ones(2),), {})
    assert (info.value.expected, info.value.actual) == ("cuda", "cpu")
    assert g.path(info.value, (torch.ones(2),), {}) == "args[0].device"
    g = Guard([Param(name="x", kind="positional_or_keyword")], TupleSpec([TensorLeaf(0)]),
              [Input(dtype="float32", shape=[2], device="cpu", requires_grad=True)], {}, train=True)
    with pytest.raises(Mismatch) as info:
        g.check((torch.ones(2),), {})
    assert g.path(info.value, (), {"x": torch.ones(2)}) == "kwargs['x'].requires_grad"


_DTYPES = [torch.float32, torch.float64, torch.int64]
_GUARD = Guard(
    [Param(name=n, kind="positional_or_keyword") for n in "abc"],
    TupleSpec([TensorLeaf(i) for i in range(3)]),
    [Input(dtype="float32", shape=["batch", 4], device="cpu"),
     Input(dtype="float32", shape=["batch", "n"], device="cpu"),
     Input(dtype="int64", shape=[3], device="cpu")],
    {"batch": mf.Dim(min=1, max=8), "n": mf.Dim(min=2, max=None)})


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_DTYPES), st.lists(st.integers(0, 10), min_size=0, max_size=3)),
                min_size=3, max_size=3))
def test_fast_check_agrees_with_full_check(spec):
    assert _GUARD.fast is not None
    args = tuple(torch.zeros(shape, dtype=dtype) for dtype, shape in spec)
    fast = _GUARD.fast(args, {})
    try:
        full = _GUARD.check(args, {})
    except Mismatch:
        full = None
    assert (fast is None) == (full is None)
    if fast is not None:
        assert all(a is b for a, b in zip(fast, full))


@pytest.mark.slow
def test_aoti_variants_fresh_process(tmp_path):
    torch.manual_seed(0)
    m = programs.MLPWithBuffer().eval()
    path = aotpack.compile(m, (torch.randn(4, 4),), dynamic={"x": {0: Dim("batch", min=2, max=64)}},
                           variants=[{"name": "b1", "args": (torch.randn(1, 4),), "dynamic": None}]).save(
        tmp_path / "m.aot")
    xs = [torch.randn(1, 4), torch.randn(2, 4), torch.randn(64, 4)]
    torch.save((xs, [m(x).detach() for x in xs]), tmp_path / "io.pt")
    code = (
        "import json, sys, torch, aotpack\n"
        f"xs, refs = torch.load({str(tmp_path / 'io.pt')!r})\n"
        f"fn = aotpack.load({str(path)!r})\n"
        "errs = [(fn(x) - r).abs().max().item() for x, r in zip(xs, refs)]\n"
        "try:\n    fn(torch.randn(65, 4)); msg = None\n"
        "except aotpack.GuardError as e:\n    msg = str(e)\n"
        "print(json.dumps({'errs': errs, 'variants': fn.variants, 'msg': msg}))\n")
    r = json.loads(run_fresh(["-c", code]).stdout.strip().splitlines()[-1])
    assert r["variants"] == ["b1", "default"]
    assert max(r["errs"]) < 1e-5
    assert r["msg"].startswith("args[0].shape[0]: expected 1, got 65 (variant b1; also default: "
                               "args[0].shape[0] expected batch in 2..64, got 65)")
