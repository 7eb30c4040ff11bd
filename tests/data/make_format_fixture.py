"""Write tests/data/format-v<FORMAT_VERSION>.aot and its inputs/outputs.

Run once per FORMAT_VERSION bump (never overwrite an older version's file):

    .venv/bin/python tests/data/make_format_fixture.py
"""

import os

import torch
from safetensors.torch import save_file

import aotpack
from aotpack.package import fmt

HERE = os.path.dirname(os.path.abspath(__file__))


class Fixture(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)
        self.register_buffer("shift", torch.tensor([0.5, -0.5, 1.0]))

    def forward(self, x, opts, scale=2.0):
        y = self.lin(x) * scale + self.shift
        return {"y": y, "parts": (y.sum(1), opts["w"] * 2)}


class ReducedFixture(Fixture):
    """Version 2 (distributed variants): the same program, its output all-reduced over the
    default process group (a world of one: the sum of one rank is its value)."""

    def forward(self, x, opts, scale=2.0):
        import torch.distributed as dist
        import torch.distributed._functional_collectives as funcol

        out = super().forward(x, opts, scale)
        return {**out, "y": funcol.all_reduce(out["y"], "sum", dist.group.WORLD)}


class GradOnFixture(ReducedFixture):
    """Version 4 (grad_mode_after): the same program, which leaves grad mode on for its
    caller (``torch.set_grad_enabled(True)`` called as a function)."""

    def forward(self, x, opts, scale=2.0):
        out = super().forward(x, opts, scale)
        torch.set_grad_enabled(True)
        return out


class ViewFixture(GradOnFixture):
    """Version 5 (views of the call's sizes): also returns the rows of x after the first,
    a view of the caller's x whose size follows the batch Dim."""

    def forward(self, x, opts, scale=2.0):
        out = super().forward(x, opts, scale)
        return {**out, "tail": torch.split(x, [1, x.shape[0] - 1])[1]}


class TrainViewFixture(Fixture):
    """Version 6 (views of outputs in training packages): a training package, its output
    yt a view of its output y (they share memory; yt's gradient flows into y's)."""

    def forward(self, x, opts, scale=2.0):
        out = super().forward(x, opts, scale)
        return {**out, "yt": out["y"].t()}


class PassThrough(torch.autograd.Function):
    """Returns its input as it is; its backward triples the gradient."""

    @staticmethod
    def forward(ctx, x):
        return x

    @staticmethod
    def backward(ctx, grad):
        return grad * 3


class TrainFunctionFixture(TrainViewFixture):
    """Version 7 (outputs a custom Function returned as an input): also returns
    ``PassThrough.apply(x)``, a view of the caller's x whose gradient is tripled."""

    def forward(self, x, opts, scale=2.0):
        out = super().forward(x, opts, scale)
        return {**out, "xf": PassThrough.apply(x)}


class TrainCastFixture(TrainFunctionFixture):
    """Version 8 (weights' layouts; dtypes among the module's Python values): its linear
    layer's weight is transposed in memory (stored as ``{"order": [1, 0]}``), and it
    casts x to ``self.compute`` (float32, as it is) before the rest, so the package holds
    ``{"dtype": "float32"}``."""

    def __init__(self):
        super().__init__()
        self.lin.weight.data = self.lin.weight.data.t().contiguous().t()
        self.compute = torch.float32

    def forward(self, x, opts, scale=2.0):
        return super().forward(x.to(self.compute), opts, scale)


class TrainDimsFixture(TrainCastFixture):
    """Version 9 (training views sized by Dims): the version 8 program, compiled with the
    rows of x a Dim; also returns ``x[1:]``, a view of the caller's x whose size follows
    it, and yt is a view of y of the call's rows."""

    def forward(self, x, opts, scale=2.0):
        return {**super().forward(x, opts, scale), "tail": x[1:]}


class TrainExcludeFixture(TrainDimsFixture):
    """Version 10 (a Dim that excludes a size): the version 9 program, and a branch on
    the rows (``!= 7``) that torch.export drops from the Dim's range: the package runs
    every size but 7."""

    def forward(self, x, opts, scale=2.0):
        out = super().forward(x, opts, scale)
        return {**out, "branch": out["y"] * 2 if x.shape[0] != 7 else out["y"]}


class TrainStridesFixture(TrainExcludeFixture):
    """Version 11 (strides that follow a Dim): also takes ``opts["g"]``, every other
    column of a matrix (``base[:, ::2]``, compiled with its columns a Dim), and branches
    on its layout, so the package is compiled for its strides ``(2*cols, 2)``."""

    def forward(self, x, opts, scale=2.0):
        g = opts["g"]
        out = super().forward(x, {"w": opts["w"]}, scale)
        return {**out, "g": g * 2 if g.is_contiguous() else g + 1}


class SubclassFixture(Fixture):
    """Version 12 (tensor subclasses made of tensors): an inference package that also
    takes ``opts["pair"]``, a TwoTensor (torch's own test subclass), and returns it
    scaled: a TwoTensor the package rebuilds from its graph's inner outputs."""

    def forward(self, x, opts, scale=2.0):
        out = super().forward(x, {"w": opts["w"]}, scale)
        return {**out, "pair": opts["pair"] * scale + 1}


def subclass_fixture(path: str) -> None:
    from torch.testing._internal.two_tensor import TwoTensor

    torch.manual_seed(0)
    m = SubclassFixture().eval()
    x, w, a, b = torch.randn(5, 4), torch.randn(3), torch.randn(2, 3), torch.randn(2, 3)
    opts = {"w": w, "pair": TwoTensor(a, b)}
    aotpack.compile(m, (x, opts), backend="eager", dynamic={"x": {0: aotpack.Dim("batch", min=1, max=64)}}).save(path)
    with torch.no_grad():
        out = m(x, opts)
    save_file({"x": x, "w": w, "y": out["y"], "p0": out["parts"][0], "pa": a, "pb": b, "qa": out["pair"].a,
               "qb": out["pair"].b}, os.path.join(HERE, f"format-v{fmt.FORMAT_VERSION}.io.safetensors"))
    print("wrote", path)


class SubclassGradFixture(Fixture):
    """Version 13 (gradients of a tensor subclass): a training package whose Linear also
    meets ``opts["pair"]``, a TwoTensor, so eager's gradients of the Linear's weight and
    bias are TwoTensors."""

    def forward(self, x, opts, scale=2.0):
        out = super().forward(x, {"w": opts["w"]}, scale)
        return {**out, "pair": self.lin(opts["pair"]) * scale}


def subclass_grad_fixture(path: str) -> None:
    from torch.testing._internal.two_tensor import TwoTensor

    torch.manual_seed(0)
    m = SubclassGradFixture()
    x, w, a, b = torch.randn(5, 4, requires_grad=True), torch.randn(3), torch.randn(2, 4), torch.randn(2, 4)
    opts = {"w": w, "pair": TwoTensor(a, b)}
    aotpack.compile(m, (x, opts), backend="eager", train=True).save(path)
    out = m(x, opts)
    torch.autograd.backward([out["y"].sum(), out["pair"].sum()])
    g = m.lin.weight.grad
    save_file({"x": x.detach(), "w": w, "pa": a, "pb": b, "y": out["y"].detach(), "qa": out["pair"].a.detach(),
               "qb": out["pair"].b.detach(), "gx": x.grad, "gwa": g.a, "gwb": g.b},
              os.path.join(HERE, f"format-v{fmt.FORMAT_VERSION}.io.safetensors"))
    print("wrote", path)


GLOBAL_ACT = torch.nn.GELU()  # version 14: module globals the fixture's code calls and reads
GLOBAL_SHIFT = torch.tensor([0.25, -0.25, 0.5])


class GlobalFixture(Fixture):
    """Version 14 (global modules guarded): the same program, its output passed through a
    module global GELU (its ``approximate`` compiled in, guarded where the package is
    bound) and a module global tensor added."""

    def forward(self, x, opts, scale=2.0):
        out = super().forward(x, opts, scale)
        return {**out, "y": GLOBAL_ACT(out["y"]) + GLOBAL_SHIFT}


def global_fixture(path: str, cls: type = GlobalFixture, default_device: str = "cpu") -> None:
    """Versions 14 and on: an inference package of ``cls`` with a Dim, its inputs, output
    and state (the tests bind a module to it, whose globals are followed); compiled and
    run under ``default_device`` (version 23)."""
    torch.manual_seed(0)
    m = cls().eval().requires_grad_(False)
    x, w = torch.randn(5, 4), torch.randn(3)
    opts, dynamic = {"w": w}, {"x": {0: aotpack.Dim("batch", min=1, max=64)}}
    if fmt.FORMAT_VERSION >= 19:  # an int argument with a Dim
        opts["top"], dynamic["opts"] = 3, {"top": aotpack.Dim("top", min=1, max=5)}
    if fmt.FORMAT_VERSION >= 20:  # an int argument whose Dim runs below 0
        opts["shift"], dynamic["opts"]["shift"] = -2, aotpack.Dim("shift", min=-4, max=4)
    with torch.device(default_device):
        aotpack.compile(m, (x, opts), backend="eager", dynamic=dynamic).save(path)
        out = m(x, opts)
    save_file({"x": x, "w": w, "y": out["y"], "p0": out["parts"][0], **{f"state.{k}": v for k, v in m.state_dict().items()}},
              os.path.join(HERE, f"format-v{fmt.FORMAT_VERSION}.io.safetensors"))
    print("wrote", path)


GLOBAL_GAIN = 0.5  # version 15: plain module globals the fixture's code computes with
GLOBAL_OUT_DTYPE = torch.float32


class ValuesFixture(GlobalFixture):
    """Version 15 (plain globals guarded): version 14's program, its output scaled by a
    float global and cast to a dtype global (both compiled in, guarded where bound)."""

    def forward(self, x, opts, scale=2.0):
        out = super().forward(x, opts, scale)
        return {**out, "y": (out["y"] * GLOBAL_GAIN).to(GLOBAL_OUT_DTYPE)}


GLOBAL_OPTS = {"shift": 0.125, "sign": -1}  # version 16: a dict global the fixture's code reads


class DictFixture(ValuesFixture):
    """Version 16 (dict values guarded): version 15's program, its output shifted by the
    values of a dict global (compiled in, compared by value where bound)."""

    def forward(self, x, opts, scale=2.0):
        out = super().forward(x, opts, scale)
        return {**out, "y": out["y"] * GLOBAL_OPTS["sign"] + GLOBAL_OPTS["shift"]}


class SizeFixture(DictFixture):
    """Version 17 (size outputs): version 16's program, also returning ints that follow
    the batch Dim (the rows, and a number of elements derived from them)."""

    def forward(self, x, opts, scale=2.0):
        out = super().forward(x, opts, scale)
        return {**out, "rows": x.shape[0], "numel": (x.shape[0] * x.shape[1], 2 * x.shape[0] + 1)}


class NumberFixture(SizeFixture):
    """Version 18 (typed numbers): version 17's program, also returning a float and a bool
    of the batch Dim."""

    def forward(self, x, opts, scale=2.0):
        out = super().forward(x, opts, scale)
        return {**out, "half": x.shape[0] / 2, "big": x.shape[0] > 3}


class IntFixture(NumberFixture):
    """Version 19 (int arguments): version 18's program, ``opts["top"]`` an int following
    the Dim ``top``: also returns the first ``top`` rows of y and ``top + 1``."""

    def forward(self, x, opts, scale=2.0):
        out = super().forward(x, opts, scale)
        return {**out, "first": out["y"][:opts["top"]], "after": opts["top"] + 1}


class ShiftFixture(IntFixture):
    """Version 20 (int offsets): version 19's program, ``opts["shift"]`` an int following
    the Dim ``shift``, which runs from -4: also returns y rolled by it and ``shift - 1``."""

    def forward(self, x, opts, scale=2.0):
        out = super().forward(x, opts, scale)
        return {**out, "rolled": out["y"].roll(opts["shift"], 0), "before": opts["shift"] - 1}


FIXTURE_FLAG = "AOTPACK_FORMAT_FIXTURE_FLAG"  # version 21: an environment variable the fixture reads


class EnvironFixture(ShiftFixture):
    """Version 21 (environment variables guarded): version 20's program, its output
    negated where the environment variable ``FIXTURE_FLAG`` is set (it is not at
    capture: a call in a process where it is set is refused)."""

    def forward(self, x, opts, scale=2.0):
        out = super().forward(x, opts, scale)
        return {**out, "y": -out["y"] if os.environ.get(FIXTURE_FLAG) else out["y"]}


class SettingsFixture(EnvironFixture):
    """Version 22 (settings the program reads and what it asks of a tensor, guarded):
    version 21's program, its output doubled where deterministic algorithms are on or
    ``x`` is an inference tensor (neither at capture: such a call is refused, on CPU too)."""

    def forward(self, x, opts, scale=2.0):
        out = super().forward(x, opts, scale)
        doubled = torch.are_deterministic_algorithms_enabled() or x.is_inference()
        return {**out, "y": out["y"] * 2 if doubled else out["y"]}


class DefaultDeviceFixture(SettingsFixture):
    """Version 23 (a default device other than the CPU, guarded): version 22's program,
    compiled under ``torch.set_default_device("meta")``, its output negated where a
    tensor made with no ``device=`` is not on the meta device (a call with the CPU's
    default is refused; one under ``set_default_device("meta")`` runs)."""

    def forward(self, x, opts, scale=2.0):
        out = super().forward(x, opts, scale)
        return {**out, "y": out["y"] if torch.empty(0).device.type == "meta" else -out["y"]}


class BackendsFixture(DefaultDeviceFixture):
    """Version 24 (settings of torch.backends guarded): version 23's program, its output
    halved where ``torch.backends.mkldnn.enabled`` is off (on at capture: a call with it
    off is refused)."""

    def forward(self, x, opts, scale=2.0):
        out = super().forward(x, opts, scale)
        return {**out, "y": out["y"] if torch.backends.mkldnn.enabled else out["y"] / 2}


def fixture_loss(out):
    """The loss the training fixtures' gradient ``gx`` is of."""
    return out["y"].sum() + 2 * out["yt"][0].sum() + (out["xf"].sum() if "xf" in out else 0)


def train_view_fixture(path: str) -> None:
    torch.manual_seed(0)
    m = (TrainStridesFixture if fmt.FORMAT_VERSION >= 11 else TrainExcludeFixture if fmt.FORMAT_VERSION >= 10 else TrainDimsFixture if fmt.FORMAT_VERSION >= 9 else TrainCastFixture if fmt.FORMAT_VERSION >= 8
         else TrainFunctionFixture if fmt.FORMAT_VERSION >= 7 else TrainViewFixture)()
    x, w = torch.randn(5, 4, requires_grad=True), torch.randn(3)
    dynamic = {"x": {0: aotpack.Dim("rows", min=2, max=64)}} if fmt.FORMAT_VERSION >= 9 else None
    opts, more = {"w": w}, {}
    if fmt.FORMAT_VERSION >= 11:
        opts["g"] = torch.randn(3, 12)[:, ::2]
        dynamic["opts"] = {"g": {1: aotpack.Dim("cols", min=2, max=32)}}
        more = {"g": opts["g"].contiguous()}  # (stored dense; the test slices it out of a base again)
    aotpack.compile(m, (x, opts), backend="eager", train=True, dynamic=dynamic).save(path)
    out = m(x, opts)
    fixture_loss(out).backward()
    save_file({"x": x.detach(), "w": w, "y": out["y"].detach(), "p0": out["parts"][0].detach(), "gx": x.grad, **more},
              os.path.join(HERE, f"format-v{fmt.FORMAT_VERSION}.io.safetensors"))
    print("wrote", path)


def world_of_one():
    """A gloo process group of one rank in this process (what version 2 fixtures need)."""
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)


def main():
    torch.manual_seed(0)
    m = (ViewFixture if fmt.FORMAT_VERSION >= 5 else GradOnFixture if fmt.FORMAT_VERSION >= 4
         else ReducedFixture if fmt.FORMAT_VERSION >= 2 else Fixture)().eval()
    x, w = torch.randn(5, 4), torch.randn(3)
    path = os.path.join(HERE, f"format-v{fmt.FORMAT_VERSION}.aot")
    if os.path.exists(path):
        raise SystemExit(f"{path} exists; fixtures of a released version are never rewritten")
    if fmt.FORMAT_VERSION >= 24:  # an inference package reading a flag of torch.backends too
        os.environ.pop(FIXTURE_FLAG, None)
        torch.use_deterministic_algorithms(False)
        torch.backends.mkldnn.enabled = True
        return global_fixture(path, BackendsFixture, default_device="meta")
    if fmt.FORMAT_VERSION >= 23:  # an inference package reading a default device other than the CPU too
        os.environ.pop(FIXTURE_FLAG, None)
        torch.use_deterministic_algorithms(False)
        return global_fixture(path, DefaultDeviceFixture, default_device="meta")
    if fmt.FORMAT_VERSION >= 22:  # an inference package reading deterministic algorithms too
        os.environ.pop(FIXTURE_FLAG, None)
        torch.use_deterministic_algorithms(False)
        return global_fixture(path, SettingsFixture)
    if fmt.FORMAT_VERSION >= 21:  # an inference package reading an environment variable too
        os.environ.pop(FIXTURE_FLAG, None)
        return global_fixture(path, EnvironFixture)
    if fmt.FORMAT_VERSION >= 20:  # an inference package taking an int whose Dim runs below 0 too
        return global_fixture(path, ShiftFixture)
    if fmt.FORMAT_VERSION >= 19:  # an inference package taking an int argument with a Dim too
        return global_fixture(path, IntFixture)
    if fmt.FORMAT_VERSION >= 18:  # an inference package returning a float and a bool of the call's sizes too
        return global_fixture(path, NumberFixture)
    if fmt.FORMAT_VERSION >= 17:  # an inference package returning ints of the call's sizes too
        return global_fixture(path, SizeFixture)
    if fmt.FORMAT_VERSION >= 16:  # an inference package computing with a dict global, bound
        return global_fixture(path, DictFixture)
    if fmt.FORMAT_VERSION >= 15:  # an inference package computing with plain module globals, bound
        return global_fixture(path, ValuesFixture)
    if fmt.FORMAT_VERSION >= 14:  # an inference package calling a module global, bound to a module
        return global_fixture(path)
    if fmt.FORMAT_VERSION >= 13:  # a training package again: a plain weight's gradient a subclass
        return subclass_grad_fixture(path)
    if fmt.FORMAT_VERSION >= 12:  # an inference package again: a subclass input and output
        return subclass_fixture(path)
    if fmt.FORMAT_VERSION >= 6:  # versions 2-5 are covered by their own files
        return train_view_fixture(path)
    if fmt.FORMAT_VERSION >= 2:
        world_of_one()
    # version 3: a variant compiled inside bf16 autocast beside the plain one (global_state)
    amp = [{"name": "amp", "autocast": torch.bfloat16}] if fmt.FORMAT_VERSION >= 3 else None
    compile_ = aotpack.distributed.compile if fmt.FORMAT_VERSION >= 2 else aotpack.compile
    compile_(m, (x, {"w": w}), backend="eager", dynamic={"x": {0: aotpack.Dim("batch", min=1, max=64)}},
             variants=amp).save(path)
    with torch.no_grad():
        out = m(x, {"w": w})
    save_file({"x": x, "w": w, "y": out["y"] + 0, "p0": out["parts"][0]},  # (+ 0: waits on an all_reduce)
              os.path.join(HERE, f"format-v{fmt.FORMAT_VERSION}.io.safetensors"))
    print("wrote", path)


if __name__ == "__main__":
    main()
