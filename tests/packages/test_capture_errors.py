"""A program that cannot be one graph fails in aotpack.compile with CaptureError naming
the user's file:line and the reason, not a wall of torch internals."""

import math

import pytest
import torch

import aotpack


def branchy(x):
    y = x * 2
    if y.sum() > 0:  # data-dependent Python control flow
        return y
    return -y


class ToList(torch.nn.Module):
    def forward(self, x):
        return x.tolist()


def test_data_dependent_branch_names_file_and_line(capsys):
    with pytest.raises(aotpack.CaptureError) as info:
        aotpack.compile(branchy, (torch.randn(3),), backend="eager")
    msg = str(info.value)
    line = branchy.__code__.co_firstlineno + 2
    assert f"{__file__}:{line}" in msg
    assert "if y.sum() > 0:" in msg
    assert "tensor data" in msg
    assert "hint:" in msg
    assert "torch/" not in msg.split("hint:")[0].replace(__file__, "")
    # torch's partial-graph dump is held back
    assert "def forward" not in capsys.readouterr().err


def mismatched(x, w):
    return x * w  # (4, 6) * (24,): eager fails here too


def test_a_program_eager_cannot_run_is_named_as_such():
    """A shape mismatch in the program itself: the hint points at the program and its
    example inputs, not at control flow (which the hint said until 2026-12-03)."""
    with pytest.raises(aotpack.CaptureError) as info:
        aotpack.compile(mismatched, (torch.randn(4, 6), torch.randn(24)), backend="eager")
    msg = str(info.value)
    assert f"{__file__}:{mismatched.__code__.co_firstlineno + 1}" in msg
    assert "runs eagerly on these example inputs" in msg and "control flow" not in msg
    assert "control flow" in str(pytest.raises(aotpack.CaptureError, aotpack.compile, branchy,
                                               (torch.randn(3),), backend="eager").value)


def test_python_numbers_from_data_are_refused():
    with pytest.raises(aotpack.CaptureError, match=r"output\[0\] is a Python number computed from tensor data"):
        aotpack.compile(ToList(), (torch.randn(3),), backend="eager")


def test_unsupported_argument_type():
    with pytest.raises(aotpack.CaptureError, match=r"x is a object"):
        aotpack.compile(lambda x, y: y, (object(), torch.ones(1)), backend="eager")


def test_examples_must_fit_signature():
    with pytest.raises(aotpack.CaptureError, match="do not fit the program's signature"):
        aotpack.compile(lambda x: x, (torch.ones(1), torch.ones(1)), backend="eager")


def test_a_dim_given_for_a_python_value_or_a_misshapen_spec_is_named():
    """``dynamic={"n": Dim("n")}`` for an int argument was ignored until 2026-12-06: the
    package froze ``n`` all the same, and the caller learned it at the first call with
    another; since 2026-12-07 an int takes a Dim (test_int_arguments.py). A Dim for any
    other Python value (a float) is a CaptureError naming the argument; a list's or
    dict's spec of another shape too (a list's was torch's raw IndexError)."""
    def head(x, n, pair, scale):
        return x[:n] * scale + pair[0]

    example = (torch.randn(8, 3), 4, [torch.ones(3)], 0.5)
    with pytest.raises(aotpack.CaptureError, match=r"dynamic\['scale'\] gives Dim\('s'.* for the float 0.5: only a "
                                                   r"tensor's dimensions and Python ints take Dims"):
        aotpack.compile(head, example, backend="eager", dynamic={"scale": aotpack.Dim("s", min=1, max=8)})
    with pytest.raises(aotpack.CaptureError, match=r"dynamic\['pair'\] must be a list of 1 specs"):
        aotpack.compile(head, example, backend="eager", dynamic={"pair": [None, None]})
    with pytest.raises(aotpack.CaptureError, match=r"dynamic\['pair'\]\[0\] must be a dict \{dim: Dim\}"):
        aotpack.compile(head, example, backend="eager", dynamic={"pair": [aotpack.Dim("k")]})


def test_tensor_default_refused():
    def f(x, w=torch.ones(2)):  # noqa: B008 - the point of the test
        return x * w

    with pytest.raises(aotpack.CaptureError, match="tensor default"):
        aotpack.compile(f, (torch.ones(2),), backend="eager")


def test_unknown_backend():
    with pytest.raises(aotpack.AotpackError, match="unknown backend 'tvm'"):
        aotpack.compile(branchy, (torch.randn(3),), backend="tvm")


def _reshapes_when_four(x):
    return x.reshape(4, -1) if x.shape[0] == 4 else x


def _prints(x):
    print("traced")
    return x * 2


def test_compile_warnings_point_at_the_users_call():
    """A warning raised deep inside aotpack is attributed to the user's ``compile`` line,
    so its file:line (and a ``-W`` filter by module) is the caller's, not aotpack's."""
    import warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        aotpack.compile(_reshapes_when_four, (torch.randn(4, 3),), backend="eager",
                        dynamic={"x": {0: aotpack.Dim("b", min=2, max=8)}})
        aotpack.compile(_prints, (torch.randn(4, 3),), backend="eager")
    ours = [w for w in seen if issubclass(w.category, (aotpack.SpecializationWarning, aotpack.SideEffectWarning))]
    assert {w.category for w in ours} == {aotpack.SpecializationWarning, aotpack.SideEffectWarning}
    assert all(w.filename == __file__ for w in ours), [(w.filename, w.lineno) for w in ours]


def _after_compile_marker():
    return 1


def test_compile_under_cprofile_warns_and_leaves_the_profiler_profiling(tmp_path):
    """``python -m cProfile`` around a script that compiles: the side-effect recorder
    borrows the interpreter's profile hook while it traces and gives it back (on Python
    3.11 cProfile's hook is C-level and cannot be set back as an object)."""
    import cProfile
    import pstats
    import warnings

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            path = aotpack.compile(_prints, (torch.randn(4, 3),), backend="eager").save(tmp_path / "p.aot")
        _after_compile_marker()
    finally:
        profiler.disable()
    assert any(issubclass(w.category, aotpack.SideEffectWarning) for w in seen)
    assert torch.equal(aotpack.load(path)(torch.ones(4, 3)), torch.ones(4, 3) * 2)
    profiled = {name for (_, _, name) in pstats.Stats(profiler).stats}
    assert "_after_compile_marker" in profiled


def view_then_update_without_grad(x, y):
    view = y[1:]  # taken with grad on
    with torch.no_grad():
        y.mul_(0.5)
    return view, y


def test_a_training_retrace_torch_refuses_is_one_capture_error():
    """torch's functional retrace of a training program can fail where eager runs (a view
    of an input taken with grad on and returned, the input updated under no_grad): one
    CaptureError naming the retrace, not torch's RuntimeError (fuzz seed 46)."""
    x, y = torch.randn(4, 6, requires_grad=True), torch.randn(4, 6, requires_grad=True)
    with pytest.raises(aotpack.CaptureError, match=r"training graph: torch's functional retrace of the program "
                                                   r"failed: A view was created in no_grad mode"):
        aotpack.compile(view_then_update_without_grad, (x, y), train=True, backend="eager")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own, for torch.jit.script
def test_a_torchscript_program_is_refused_naming_what_to_pass():
    """torch.export cannot trace TorchScript: the refusal says so (it was a message about
    forward's arguments, at torch's Linear.forward)."""
    with pytest.raises(aotpack.CaptureError, match=r"RecursiveScriptModule is a TorchScript program") as e:
        aotpack.compile(torch.jit.script(torch.nn.Linear(4, 2)), (torch.randn(3, 4),), backend="eager")
    assert "pass the nn.Module or function it was scripted from" in str(e.value)


def rows_in_fours(x):
    return x.new_zeros(math.ceil(x.shape[0] / 4))


def test_a_size_guard_sympy_cannot_read_is_no_raw_error():
    """A size guard whose text sympy's parser cannot read (``math.ceil(d/4)``): the Dim
    keeps the example's size, with the SpecializationWarning, and what is left is torch's
    own limit, told as one aotpack error (until 2026-12-07 sympy's raw AttributeError left
    compile)."""
    with pytest.warns(aotpack.SpecializationWarning, match=r"n runs 6\.\.6"), \
            pytest.raises(aotpack.AotpackError, match=r"cannot store .*math[._]ceil"):
        aotpack.compile(rows_in_fours, (torch.randn(6),), backend="eager",
                        dynamic={"x": {0: aotpack.Dim("n", min=1, max=64)}})
