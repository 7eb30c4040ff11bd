"""Every program of programs.py, compiled, saved, loaded in a fresh process, equal to eager
(AOTInductor: those of programs.AOTI_PROGRAMS)."""

import pytest
import torch

import aotpack
import programs
from conftest import TORCH_BEFORE_2_13

NAMES = list(programs.programs())


# What the inductor backend refuses, by design (see backends/inductor.py): Dims and
# sizes that depend on data.
INDUCTOR_REFUSES = {"module": "static shapes only", "data_dependent": "sizes that depend on data"}


@pytest.mark.parametrize("name,backend,tol", [
    *[(name, "eager", 1e-6) for name in NAMES],
    *[pytest.param(name, "aoti", 1e-4, marks=pytest.mark.slow) for name in programs.AOTI_PROGRAMS],
    *[pytest.param(name, "inductor", 1e-4, marks=pytest.mark.slow) for name in NAMES]])
def test_fresh_process_equals_eager(request, backend, tol, name):
    _, results = request.getfixturevalue(f"{backend}_packages")
    r = results[name]
    if backend == "inductor" and name in INDUCTOR_REFUSES:
        assert INDUCTOR_REFUSES[name] in r["refused"]
        return
    assert r["ok"], r.get("error") or r.get("refused")
    assert r["max_err"] <= tol


def test_an_aoti_package_emptied_by_a_concurrent_compile_is_compiled_again(monkeypatch):
    """AOTInductor zips a graph's files from inductor's shared cache after writing them
    under a lock; another process compiling the same graph meanwhile rewrites them, and
    the zip gets an empty metadata json (seen as json's raw error when two test workers
    compiled one program). The compile is tried again, and the package runs."""
    import zipfile

    import torch._inductor

    real, calls = torch._inductor.aoti_compile_and_package, []

    def racing(ep, package_path, **kw):
        out = real(ep, package_path=package_path, **kw)
        calls.append(package_path)
        if len(calls) == 1:  # the other process's rewrite, caught half-way
            with zipfile.ZipFile(package_path) as z:
                members = {n: z.read(n) for n in z.namelist()}
            with zipfile.ZipFile(package_path, "w") as z:
                for n, data in members.items():
                    z.writestr(n, b"" if n.endswith("metadata.json") else data)
        return out

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", racing)
    x = torch.randn(3, 4)
    fn = aotpack.load(aotpack.compile(lambda x: x.sin() * 3, (x,), backend="aoti").to_bytes())
    assert len(calls) == 2
    torch.testing.assert_close(fn(x), x.sin() * 3)


@pytest.mark.slow
def test_aoti_load_path_imports_no_compiler(aoti_packages):
    """The load path must not pull in inductor or dynamo (seconds of import and CPU probing)."""
    _, results = aoti_packages
    assert results["_modules"] == []


class _Scaled(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 2)
        self.register_buffer("shift", torch.arange(2.0))

    def forward(self, x):
        return self.lin(x).relu() * 2 + self.shift


@pytest.mark.parametrize("train", [False, True])
def test_an_exported_program_packages_as_its_module(train):
    """``aotpack.compile(torch.export.export(m, ...), ...)``: the ExportedProgram is captured
    as ``ep.module()``, weights included (it was a CaptureError: "Unable to call
    ExportedProgram directly"); Dims are given as for any program."""
    torch.manual_seed(0)
    m = _Scaled()
    n = torch.export.Dim("n", min=2, max=9)
    ep = torch.export.export(m, (torch.randn(3, 4),), dynamic_shapes={"x": {0: n}})
    pkg = aotpack.compile(ep, (torch.randn(3, 4).requires_grad_(train),), backend="eager", train=train,
                          dynamic={"x": {0: aotpack.Dim("n", min=2, max=9)}})
    fn = aotpack.load(pkg.to_bytes())
    for rows in (2, 5, 9):
        a = torch.randn(rows, 4).requires_grad_(train)
        b = a.detach().clone().requires_grad_(train)
        got, want = fn(a), m(b)
        torch.testing.assert_close(got, want)
        if train:
            got.square().sum().backward()
            want.square().sum().backward()
            torch.testing.assert_close(a.grad, b.grad)
    with pytest.raises(aotpack.GuardError, match=r"expected n in 2..9, got 12"):
        fn(torch.randn(12, 4).requires_grad_(train))


@pytest.mark.parametrize("program", [torch.sin, torch.add, torch.ops.aten.mul.Tensor],
                         ids=["torch.sin", "torch.add", "aten.mul.Tensor"])
def test_a_builtin_or_an_aten_op_packages_called_as_compiled(program):
    """A program Python reads no signature of (a builtin, an aten op) is compiled as
    ``(*args, **kwargs)``: called as it was compiled, guarded as any (it was a
    CaptureError, "cannot read the signature")."""
    x = torch.randn(3, 4)
    args = (x,) if program is torch.sin else (x, torch.randn(3, 4))
    fn = aotpack.load(aotpack.compile(program, args, backend="eager").to_bytes())
    torch.testing.assert_close(fn(*args), program(*args))
    with pytest.raises(aotpack.GuardError, match=r"args\[0\].shape\[1\]: expected 4, got 5"):
        fn(torch.randn(3, 5), *args[1:])


_W = torch.randn(8)


def _vmapped(x):
    return torch.func.vmap(lambda row: (row * _W).sin().dot(row))(x)


@pytest.mark.parametrize("train", [False, True])
def test_vmap_inside_the_program_packages_and_equals_eager(train):
    """``torch.func.vmap`` in the program (torch.compile runs it in one graph): packaged, it
    equals eager on other inputs, gradients included. Capture read the storage of vmap's
    batched example values and failed with torch's NotImplementedError until 2026-12-04.
    torch 2.11 keeps functorch calls in an inference graph of it that its serializer
    refuses: one CaptureError (torch's raw SerializeError until 2026-12-06)."""
    if TORCH_BEFORE_2_13 and not train:
        with pytest.raises(aotpack.CaptureError, match=r"torch 2\.11.* cannot store the program's graph"):
            aotpack.compile(_vmapped, (torch.randn(4, 8),), backend="eager")
        return
    fn = aotpack.load(aotpack.compile(_vmapped, (torch.randn(4, 8).requires_grad_(train),), backend="eager",
                                      train=train).to_bytes())
    a = torch.randn(4, 8).requires_grad_(train)
    b = a.detach().clone().requires_grad_(train)
    got, want = fn(a), _vmapped(b)
    torch.testing.assert_close(got, want)
    if train:
        got.sum().backward()
        want.sum().backward()
        torch.testing.assert_close(a.grad, b.grad)
