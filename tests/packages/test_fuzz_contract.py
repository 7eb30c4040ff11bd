"""Differential fuzzer: a package call gives eager's result or a GuardError, never another answer.

Random programs (tests/fuzz_programs.py: elementwise, matmul, reductions, views and
reshapes, indexing, in-place ops on intermediates and inputs, concat) are compiled once
and called with inputs of other layouts (transposed, sliced with an offset, strided,
expanded), aliasing (the same tensor twice, overlapping views), dtypes, requires_grad
patterns and grad modes. Each call is compared with eager PyTorch on: the outputs
(values, dtype, shape), which inputs each output shares memory with, requires_grad of
each output, the inputs after the call (in-place effects), grad mode after the call,
and, for training packages, the gradients of the inputs (and whether each requires grad
under ``create_graph=True``).

Backend eager runs every case; AOTInductor a fixed sample (its compiles take tens of
seconds on 2 cores). The seeds are fixed (hypothesis derandomized); raise the budget
with AOTPACK_FUZZ_EXAMPLES=500, explore other programs with AOTPACK_FUZZ_SEED=N (a
failure prints the seed's reproduce decorator); AOTPACK_FUZZ_STATS=path writes the counts as JSON.
"""

from __future__ import annotations

import json
import os
import re
import warnings

import pytest
import torch
from hypothesis import HealthCheck, Phase, example, given, seed, settings
from hypothesis import strategies as st

import aotpack
from fuzz_programs import ALIASING, LAYOUTS, OPS, CallSpec, build_inputs, make_program, uses_input_inplace

EXAMPLES = int(os.environ.get("AOTPACK_FUZZ_EXAMPLES", "25"))
# the dtypes programs are compiled for (AOTPACK_FUZZ_DTYPES=bfloat16,float32 on a GPU)
DTYPES = [getattr(torch, d) for d in os.environ.get("AOTPACK_FUZZ_DTYPES", "float32,float64").split(",")]
STATS = {"programs": 0, "refused_at_compile": 0, "calls": 0, "equal": 0, "guard_errors": 0, "both_failed": 0,
         "refusals": {}, "refused_examples": {},
         # per gradient under create_graph=True: requires_grad as eager's, or only the package's
         "create_graph_grads": {"equal": 0, "package only": 0},
         "portable_runs": 0,  # packages whose calls ran their portable program (overlapping updated inputs)
         "dynamic_programs": 0,  # packages compiled with the rows a Dim (and called with other row counts)
         "variants_from_two": 0,  # of those from one row, packages with the second variant (rows compiled in at 1)
         "ran_detached": 0,  # inference calls under grad mode with an input that requires grad, run
         "number_outputs": 0,  # ints, floats and bools of a dynamic program's sizes returned, equal to eager's
         "int_arguments": 0}  # calls of a dynamic program with its int argument, compared

# no shrinking: each example compiles a package, and the failure message names the
# recipe and the call in full
SEED = os.environ.get("AOTPACK_FUZZ_SEED")
_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=SEED is None, database=None,
                     suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])


def _seeded(test):
    return test if SEED is None else seed(int(SEED))(test)


steps = st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 20), st.integers(0, 20), st.integers(0, 20)),
                 min_size=1, max_size=6)
outputs = st.lists(st.integers(0, 20), max_size=2).map(tuple)
SHAPES = [(4, 6), (0, 6), (1, 6)]


def call_specs(shape, dtype, requires_grad, rows=None):
    """``rows``: the row counts a call may have (a package compiled with a Dim), whose
    program also takes an int (``COUNTS``, of its Dim ``K``); else ``shape``'s, no int."""
    return st.builds(
        CallSpec,
        layouts=st.tuples(st.sampled_from(LAYOUTS), st.sampled_from(LAYOUTS)),
        aliasing=st.sampled_from(ALIASING[:1] * 4 + ALIASING[1:]),
        dtype=st.sampled_from([dtype] * 5 + [torch.float64 if dtype == torch.float32 else torch.float32]),  # + one other
        requires_grad=st.sampled_from([requires_grad] * 4 + [(True, False), (False, False)]),
        shape=st.just(shape) if rows is None else st.sampled_from([(r, shape[1]) for r in rows]),
        count=st.none() if rows is None else st.sampled_from(COUNTS),
    )


def storage(t):
    return t.untyped_storage().data_ptr()


def outcome(fn, spec: CallSpec, seed: int, grad_mode: bool, amp: bool = False) -> dict:
    """Everything a caller can observe of one call (under ``amp``: bf16 autocast on CPU)."""
    inputs = build_inputs(spec, seed)
    try:
        with (torch.set_grad_enabled(grad_mode), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp),
              warnings.catch_warnings(record=True) as caught):
            warnings.simplefilter("always", aotpack.PortableRunWarning)
            outs = fn(*inputs, *(() if spec.count is None else (spec.count,)))
            grad_after = torch.is_grad_enabled()
    except Exception as e:  # noqa: BLE001 - compared below
        return {"error": e}
    # (once per loaded package: the packages whose calls ran their portable program)
    STATS["portable_runs"] += sum(issubclass(w.category, aotpack.PortableRunWarning) for w in caught)
    ints = [(type(o), o) for o in outs if not isinstance(o, torch.Tensor)]  # (a dynamic program's sizes)
    outs = [o for o in outs if isinstance(o, torch.Tensor)]
    result = {
        "ints": ints,
        "outputs": [o.detach().clone() for o in outs],
        "requires_grad": [o.requires_grad for o in outs],
        "aliases": [sorted({j for j, x in enumerate(inputs) if storage(x) == storage(o)}) for o in outs],
        "inputs_after": [x.detach().clone() for x in inputs],
        "grad_after": grad_after,
    }
    diff = [o for o in outs if o.requires_grad]
    if diff:
        try:  # (eager may refuse to differentiate, e.g. through a view made under no_grad and then changed)
            loss = sum(((k + 1) * o.to(torch.float64)).sum() for k, o in enumerate(diff))
            leaves = [x for x in inputs if x.requires_grad and x.is_leaf]
            if leaves:  # create_graph=True: which gradients require grad (a second backward's inputs)
                second = torch.autograd.grad(loss, leaves, create_graph=True, allow_unused=True)
                result["create_graph"] = [g is not None and g.requires_grad for g in second]
                connected = [g for g in second if g is not None and g.requires_grad]
                if connected:  # differentiating them again: eager's number, or the package's refusal
                    try:
                        again = torch.autograd.grad(sum(g.sum() for g in connected), leaves, allow_unused=True)
                        result["second_order"] = "ran"
                        result["second_grads"] = [None if g is None else g.detach().clone() for g in again]
                    except aotpack.AotpackError:
                        result["second_order"] = "refused"
            loss.backward()
            result["grads"] = [None if x.grad is None else x.grad.clone() for x in inputs if x.is_leaf]
        except RuntimeError as e:
            result["backward_error"] = str(e)
    return result


def _close(b, a, msg) -> None:
    # bfloat16/float16 outputs: torch.testing's own tolerances for the dtype
    tol = {} if a.dtype in (torch.bfloat16, torch.float16) else {"rtol": 1e-4, "atol": 1e-5}
    torch.testing.assert_close(b, a, equal_nan=True, msg=msg, **tol)


def failure(eager: dict, package: dict, what: str, stats: dict):
    """Where either call raised: ``"both"`` (eager too: counted), or the package's
    GuardError (any other error fails the test); None where both ran."""
    if "error" in eager:
        assert "error" in package, f"{what}: eager raised {eager['error']!r}, the package returned a result"
        stats["both_failed"] += 1
        return "both"
    e = package.get("error")
    assert e is None or isinstance(e, aotpack.GuardError), f"{what}: package raised {type(e).__name__}: {e}"
    return e


def compare(eager: dict, package: dict, spec: CallSpec, compiled: CallSpec, what: str) -> None:
    STATS["calls"] += 1
    e = failure(eager, package, what, STATS)
    if e == "both":
        return
    if e is not None:
        # a refusal names the argument and one property
        assert re.match(r"(args\[\d\]|module)[^:]*\.(dtype|requires_grad|stride\(\)|shape\[\d\])?|args\[\d\]: expected a "
                        r"tensor sharing no memory|args\[\d\]: expected an int k in |autocast\((cpu|cuda)\): |"
                        r"torch\.is_grad_enabled\(\): ", e.message), e.message
        if spec.dtype != compiled.dtype:
            assert ".dtype" in e.message
        STATS["guard_errors"] += 1
        return
    assert spec.dtype == compiled.dtype, f"{what}: a call in {spec.dtype} ran a package compiled for {compiled.dtype}"
    assert len(eager["outputs"]) == len(package["outputs"])
    assert package["ints"] == eager["ints"], f"{what}: the numbers returned (type, value)"
    STATS["number_outputs"] += len(eager["ints"])
    STATS["int_arguments"] += spec.count is not None
    for k, (a, b) in enumerate(zip(eager["outputs"], package["outputs"])):
        _close(b, a, msg=lambda m, k=k: f"{what}: output {k}: {m}")
    assert package["requires_grad"] == eager["requires_grad"], what
    assert package["aliases"] == eager["aliases"], f"{what}: output aliasing"
    for k, (a, b) in enumerate(zip(eager["inputs_after"], package["inputs_after"])):
        _close(b, a, msg=lambda m, k=k: f"{what}: input {k}: {m}")
    assert package["grad_after"] == eager["grad_after"], what
    if "grads" in eager:
        assert "grads" in package, f"{what}: {package.get('backward_error')}"
        # under create_graph=True a gradient requires grad where eager's does; it may where
        # eager's does not (a dependency through a comparison, maximum's tie mask), and then
        # differentiating it again is refused, as torch.compile refuses it
        for k, (a, b) in enumerate(zip(eager.get("create_graph", []), package.get("create_graph", []))):
            assert b or not a, f"{what}: grad {k} under create_graph=True: eager's requires grad, the package's not"
            STATS["create_graph_grads"]["equal" if a == b else "package only"] += 1
        # differentiated again: refused, as torch.compile refuses it, or eager's numbers (where
        # the gradient's path runs outside the compiled backward: an output that is a view of
        # an input, rebuilt by eager's ops; fuzz seed 8, 2026-12-07)
        assert package.get("second_order") in (None, "refused", eager.get("second_order")), what
        for k, (a, b) in enumerate(zip(eager.get("second_grads", []), package.get("second_grads", []))):
            assert (a is None) == (b is None), f"{what}: second-order grad {k}: eager {a}, package {b}"
            if a is not None:
                _close(b, a, msg=lambda m, k=k: f"{what}: second-order grad {k}: {m}")
        for k, (a, b) in enumerate(zip(eager["grads"], package["grads"])):
            assert (a is None) == (b is None), f"{what}: grad {k}: eager {a}, package {b}"
            if a is not None:
                _close(b, a, msg=lambda m, k=k: f"{what}: grad {k}: {m}")
    STATS["equal"] += 1


# the rows of both inputs as one Dim (the programs' sizes then follow it: a concat's 2*rows,
# a flatten's rows*6, a matmul's rows x rows)
ROWS = torch.export.Dim("rows", min=2, max=16)
ROW_COUNTS = [2, 3, 4, 7, 16]
# ...and from 1, where the example has one row (traced size-obliviously: every row count
# runs as for an example of 2 or more, unless the program depends on the 1; until
# 2026-12-07 such a package took one row alone)
ROWS_FROM_ONE = torch.export.Dim("rows", min=1, max=16)
ROW_COUNTS_FROM_ONE = [1, 2, 3, 7, 16]
# the int argument of a dynamic program (make_program's ``k``), a Dim of its own, running
# below 0 (carried shifted: format 20; until 2026-12-07 1..8)
K = torch.export.Dim("k", min=-8, max=8)
COUNTS = [-8, -3, -1, 0, 1, 2, 5, 8]


def compile_or_refuse(program, example: CallSpec, backend: str, train: bool, state=(True, False),
                      dynamic: bool = False):
    """The loaded package, or None when compile refused with an aotpack error. ``state``:
    grad mode and bf16 autocast while compiling (global state at compile vs at call);
    ``dynamic``: the inputs' rows a Dim (``ROWS``; ``ROWS_FROM_ONE`` for an example of one row)."""
    inputs = build_inputs(example, 0)
    rows = ROWS_FROM_ONE if example.shape[0] == 1 else ROWS
    STATS["programs"] += 1
    try:
        with warnings.catch_warnings(), torch.set_grad_enabled(state[0]):
            warnings.simplefilter("ignore")
            pkg = aotpack.compile(program, (*inputs, *(() if example.count is None else (example.count,))),
                                  backend=backend, train=train, autocast=torch.bfloat16 if state[1] else False,
                                  dynamic={"x": {0: rows}, "y": {0: rows}, "k": K} if dynamic else None)
    except aotpack.AotpackError as e:
        STATS["refused_at_compile"] += 1
        # why, without the parts that name the program's line (for AOTPACK_FUZZ_STATS)
        why = re.sub(r"(/\S+:\d+|`[^`]*`|\(.*?\)|\d+)", "_", e.message.splitlines()[0])[:120]
        STATS["refusals"][why] = STATS["refusals"].get(why, 0) + 1
        examples = STATS["refused_examples"].setdefault(why, [])
        if len(examples) < 3:  # a few recipes per reason, to reproduce by hand
            examples.append(repr((getattr(program, "recipe", None), train, state)))
        return None
    STATS["variants_from_two"] += len(pkg.variants) > 1
    return aotpack.load(pkg.save(_tmp_path() / f"p{STATS['programs']}.aot"))


_TMP = {}


def _tmp_path():
    return _TMP["path"]


@pytest.fixture(autouse=True, scope="module")
def _module_tmp(tmp_path_factory):
    _TMP["path"] = tmp_path_factory.mktemp("fuzz")
    yield
    if os.environ.get("AOTPACK_FUZZ_STATS"):
        with open(os.environ["AOTPACK_FUZZ_STATS"], "w") as f:
            json.dump(STATS, f, indent=1)


def check_program(recipe, outs, shape, dtype, example_layouts, calls, backend="eager", train=False,
                  requires_grad=(False, False), state=(True, False), aliasing="none", dynamic=False):
    """``aliasing``: of the example inputs compiled for (views of one tensor, or one
    tensor twice): the package is compiled for separate inputs all the same. ``dynamic``:
    the rows a Dim, the calls' shapes may differ."""
    program = make_program(recipe, outs, sizes=dynamic)
    compiled = CallSpec(example_layouts, aliasing, dtype, requires_grad, shape, count=3 if dynamic else None)
    fn = compile_or_refuse(program, compiled, backend, train, state, dynamic)
    if dynamic and fn is not None:
        STATS["dynamic_programs"] += 1
    if fn is None:
        return
    for n, (spec, grad_mode, *amp) in enumerate(calls):
        amp = bool(amp and amp[0])
        what = f"recipe={recipe} outputs={outs} compiled={compiled} state={state} call={spec} grad={grad_mode} amp={amp}"
        got = outcome(fn, spec, n + 1, grad_mode, amp)
        compare(outcome(program, spec, n + 1, grad_mode, amp), got, spec, compiled, what)
        if not train and grad_mode and any(spec.requires_grad) and "error" not in got:
            STATS["ran_detached"] += 1  # an inference package given inputs that require grad (Input.detached)
        if amp != state[1] or (state[0] != grad_mode and any(op == "grad_branch" for op, *_ in recipe)):
            continue  # another global state may be refused (the call names it): compared above
        if (not train and spec.dtype == dtype and spec.aliasing == "none" and not any(spec.requires_grad)
                and not uses_input_inplace(recipe) and not fn.manifest.variants[0].aliased
                and not any(i.layout_pinned for i in fn.manifest.variants[0].inputs)):
            # another layout alone never refuses: the package copies into the compiled one
            # (unless the layout decides whether an output is a view: layout_pinned); a row
            # count may, where the program narrowed the Dim (``a.shape[0] > 2``)
            got = outcome(fn, spec, n + 1, grad_mode, amp)
            assert "error" not in got or (dynamic and ".shape[0]: expected rows in" in got["error"].message), what


@_seeded
@_SETTINGS
@given(recipe=steps, outs=outputs, shape=st.sampled_from(SHAPES), dtype=st.sampled_from(DTYPES),
       example=st.tuples(st.sampled_from(LAYOUTS[:4]), st.sampled_from(LAYOUTS[:4])), data=st.data())
def test_inference_packages_match_eager(recipe, outs, shape, dtype, example, data):
    dynamic = shape[0] > 0 and data.draw(st.booleans())  # the rows a Dim: calls with other row counts
    # examples that require grad: inputs the program detaches are then known (Input.detached)
    requires_grad = data.draw(st.sampled_from([(False, False)] * 3 + [(True, False), (True, True)]))
    counts = ROW_COUNTS_FROM_ONE if shape[0] == 1 else ROW_COUNTS
    calls = data.draw(st.lists(st.tuples(call_specs(shape, dtype, requires_grad, counts if dynamic else None),
                                         st.booleans(), st.sampled_from([False] * 3 + [True])), min_size=3, max_size=5))
    state = data.draw(st.tuples(st.booleans(), st.sampled_from([False] * 3 + [True])))  # grad mode, autocast
    aliasing = data.draw(st.sampled_from(ALIASING[:1] * 4 + ALIASING[1:]))  # of the inputs compiled for
    check_program(recipe, outs, shape, dtype, example, calls, state=state, aliasing=aliasing, dynamic=dynamic,
                  requires_grad=requires_grad)


@_seeded
@_SETTINGS
@given(recipe=steps, outs=outputs, dtype=st.sampled_from(DTYPES),
       example=st.tuples(st.sampled_from(LAYOUTS[:4]), st.sampled_from(LAYOUTS[:4])),
       requires_grad=st.sampled_from([(True, False), (True, True), (False, True)]), data=st.data())
def test_training_packages_match_eager(recipe, outs, dtype, example, requires_grad, data):
    shape = (4, 6)
    dynamic = data.draw(st.booleans())  # the rows a Dim: calls with other row counts
    calls = data.draw(st.lists(st.tuples(call_specs(shape, dtype, requires_grad, ROW_COUNTS if dynamic else None),
                                         st.booleans()), min_size=3, max_size=5))
    check_program(recipe, outs, shape, dtype, example, calls, train=True, requires_grad=requires_grad,
                  dynamic=dynamic)


class Scaled(torch.nn.Module):
    """A random program behind a parameter: ``program(x * w, y)``."""

    def __init__(self, program):
        super().__init__()
        self.w = torch.nn.Parameter(torch.linspace(0.5, 1.5, 6, dtype=torch.float64))
        self.program = program

    def forward(self, x, y):
        return self.program(x * self.w.to(x.dtype), y)


@_seeded
@_SETTINGS
@given(recipe=steps, outs=outputs, requires_grad=st.sampled_from([(False, False), (True, False), (False, True)]),
       data=st.data())
def test_training_packages_loaded_alone_give_their_parameters_eagers_gradients(recipe, outs, requires_grad, data):
    """A training package loaded without its module: each call equals the module's, and
    its own parameter gets the module parameter's gradient (``Loaded.named_parameters``)."""
    model = Scaled(make_program(recipe, outs))
    compiled = CallSpec(("contiguous", "contiguous"), "none", torch.float32, requires_grad, (4, 6))
    fn = compile_or_refuse(model, compiled, "eager", True)
    if fn is None:
        return
    own = dict(fn.named_parameters())
    assert set(own) <= {"w"}  # (none where no output depends on it: eager's gets no gradient either)
    calls = data.draw(st.lists(st.tuples(call_specs((4, 6), torch.float32, requires_grad), st.booleans()),
                               min_size=2, max_size=4))
    for n, (spec, grad_mode) in enumerate(calls):
        what = f"recipe={recipe} outputs={outs} compiled={compiled} call={spec} grad={grad_mode} (loaded alone)"
        model.w.grad = None
        for p in own.values():
            p.grad = None
        got, eager = outcome(fn, spec, n + 1, grad_mode), outcome(model, spec, n + 1, grad_mode)
        compare(eager, got, spec, compiled, what)
        # (where eager's backward ran: after a second-order grad eager's graph is freed, the
        # package's, which refuses the second order, is not; compare() allows that)
        if "error" not in got and "grads" in eager:
            a, b = model.w.grad, own["w"].grad if own else None
            assert (a is None) == (b is None), f"{what}: w.grad: eager {a}, package {b}"
            if a is not None:
                _close(b, a, msg=lambda m, what=what: f"{what}: w.grad: {m}")


def _leaves(value) -> list:
    if isinstance(value, torch.Tensor):
        return [value]
    return [leaf for v in value for leaf in _leaves(v)] if isinstance(value, (tuple, list)) else []


def under_transform(kind: str, fn, x, y):
    """``fn(x, y)`` under a torch.func transform: mapped over a leading dimension
    (``vmap``), with tangents (``jvp``), differentiated (``grad`` of a weighted sum of
    the outputs), per-row gradients (``vmap_grad``): every tensor the caller gets."""
    def loss(a, b):
        return sum((k + 1) * o.sum() for k, o in enumerate(fn(a, b)))

    if kind == "vmap":
        return _leaves(torch.func.vmap(fn)(x, y))
    if kind == "jvp":
        return _leaves(torch.func.jvp(fn, (x, y), (torch.ones_like(x), torch.ones_like(y))))
    grad = torch.func.grad(loss, argnums=(0, 1))
    return _leaves(grad(x, y) if kind == "grad" else torch.func.vmap(grad)(x, y))


def _transform_outcome(kind: str, fn, spec: CallSpec, seed: int) -> dict:
    inputs = build_inputs(spec, seed)
    if kind.startswith("vmap"):  # three calls' inputs, mapped over
        inputs = [torch.stack(t) for t in zip(inputs, *(build_inputs(spec, seed + r) for r in (1, 2)))]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", aotpack.PortableRunWarning)
            got = under_transform(kind, fn, *inputs)
    except Exception as e:  # noqa: BLE001 - compared below
        return {"error": e}
    return {"outputs": [t.detach().clone() for t in got], "inputs_after": [t.detach().clone() for t in inputs]}


TRANSFORM_STATS = STATS["transforms"] = {"calls": 0, "equal": 0, "refused": 0, "both_failed": 0}


@_seeded
@_SETTINGS
@given(recipe=steps, outs=outputs, train=st.booleans(),
       kinds=st.lists(st.sampled_from(["vmap", "jvp", "grad", "vmap_grad"]), min_size=2, max_size=4, unique=True))
@example(recipe=[("matmul", 0, 1, 0), ("softmax", 2, 0, 0), ("inplace_input", 0, 0, 0)], outs=(2,), train=False,
         kinds=["vmap", "jvp"])
@example(recipe=[("binary", 0, 1, 1), ("reduce", 2, 0, 0), ("view", 3, 0, 0)], outs=(0,), train=True,
         kinds=["grad", "vmap_grad"])
def test_packages_under_torch_func_transforms_match_eager(recipe, outs, train, kinds):
    """``torch.func.vmap(fn)``, ``jvp``, ``grad``, ``vmap(grad(...))`` over a package:
    compiled code reads stored values (which a transform's tensor has none of) and a
    training package's autograd Function has no rule for them, so such a call runs the
    package's portable program, whose eager ops the transform batches or differentiates:
    eager's values, tangents, gradients and in-place effects (torch.compile runs these
    calls too; until 2026-12-06 a GuardError, and torch's raw RuntimeError for a training
    package of the eager backend). Refused, naming the argument: a training package
    whose portable program does not hold its gradient (a custom Function's backward, a
    transform inside, an updated input), and an inference package differentiated."""
    from custom_backend import ReadsStorage

    program = make_program(recipe, outs)
    example = build_inputs(CallSpec(("contiguous",) * 2, "none", torch.float32, (train, train), (4, 6)), 0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pkg = aotpack.compile(program, tuple(example), train=train,
                                  backend="eager" if train else ReadsStorage())
    except aotpack.AotpackError:
        return
    fn = aotpack.load(pkg.to_bytes(), backends=[ReadsStorage()])
    own_gradient = any(op in ("function", "transform") for op, *_ in recipe) or uses_input_inplace(recipe)
    for n, kind in enumerate(kinds):
        spec = CallSpec(("contiguous", "transposed"), "none", torch.float32, (False, False), (4, 6))
        what = f"recipe={recipe} outputs={outs} train={train} under {kind}"
        eager, got = _transform_outcome(kind, program, spec, n + 1), _transform_outcome(kind, fn, spec, n + 1)
        TRANSFORM_STATS["calls"] += 1
        e = failure(eager, got, what, TRANSFORM_STATS)
        if e == "both":
            continue
        if e is not None:
            differentiated = kind in ("grad", "vmap_grad")
            applies = any(op == "function" for op, *_ in recipe)
            assert (train and own_gradient and "does not hold this one's gradient" in e.message) or (
                applies and "the custom autograd.Function fuzz_programs.Scaled" in e.message) or (
                (train != differentiated) and ".requires_grad: expected" in e.message) or (
                "torch.is_grad_enabled()" in e.message) or (  # (a layout the program needs: the contract tests')
                ".stride(): expected" in e.message), f"{what}: {e.message}"
            TRANSFORM_STATS["refused"] += 1
            continue
        assert len(got["outputs"]) == len(eager["outputs"]), what
        for k, (a, b) in enumerate(zip(eager["outputs"], got["outputs"])):
            _close(b, a, msg=lambda m, k=k, what=what: f"{what}: result {k}: {m}")
        for k, (a, b) in enumerate(zip(eager["inputs_after"], got["inputs_after"])):
            _close(b, a, msg=lambda m, k=k, what=what: f"{what}: input {k}: {m}")
        TRANSFORM_STATS["equal"] += 1


# A fixed sample for AOTInductor: a view chain, a reduction + matmul with an output that
# aliases an input, and a training program. Each is called with every layout.
AOTI_SAMPLE = [
    ([("view", 0, 0, 0), ("binary", 2, 1, 1), ("unary", 3, 0, 6)], (0,), False, (False, False)),
    ([("matmul", 0, 1, 0), ("reduce", 2, 0, 0), ("softmax", 3, 0, 0), ("view", 1, 0, 2)], (5,), False,
     (False, False)),
    ([("binary", 0, 1, 1), ("reduce", 2, 0, 0), ("unary", 3, 0, 1)], (), True, (True, False)),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", range(len(AOTI_SAMPLE)))
def test_aoti_sample_matches_eager(case):
    recipe, outs, train, requires_grad = AOTI_SAMPLE[case]
    calls = [(CallSpec((a, b), "none", torch.float32, requires_grad, (4, 6)), True)
             for a in LAYOUTS for b in ("contiguous", "transposed")]
    calls.append((CallSpec(("contiguous", "contiguous"), "same", torch.float32, requires_grad, (4, 6)), False))
    check_program(recipe, outs, (4, 6), torch.float32, ("contiguous", "contiguous"), calls, backend="aoti",
                  train=train, requires_grad=requires_grad)
