"""Reproducers: content-addressed inputs (exact round trips, golden hashes, dedupe,
random fill) and standalone repro.py scripts run in fresh processes."""

import os
import re
import shutil
import subprocess

import pytest
import torch

from aotpack.repro import InputReader, InputWriter, save_repro, storage_hash
from conftest import HERE, run_fresh


def roundtrip(tmp_path, values, save=True):
    w = InputWriter(tmp_path if save else None)
    for i, v in enumerate(values):
        w.value(f"v{i}", v)
    ns = {"torch": torch}
    exec(w.load_args_source(), ns)
    return ns["load_args"](InputReader(str(tmp_path))), w


def test_golden_hashes():
    # XXH3-128 of the raw little-endian bytes: fixed vectors, the same name on any machine
    assert storage_hash(torch.empty(0).untyped_storage()) == "99aa06d3014798d86001c324468d497f"
    assert storage_hash(torch.arange(4, dtype=torch.int32).untyped_storage()) == "5211a8db825216270898ce701a11e56c"
    assert storage_hash(torch.tensor([1.0], dtype=torch.float32).untyped_storage()) == "e6f9acca6893caeb591ef4e963e120d4"


CASES = {
    "channels_last": lambda: torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last),
    "zero_size": lambda: torch.empty(0, 3),
    "bool": lambda: torch.tensor([True, False, True]),
    "int64": lambda: torch.arange(10).view(2, 5),
    "uint8": lambda: torch.arange(7, dtype=torch.uint8),
    "fp16": lambda: torch.randn(3, 3).half(),
    "bf16": lambda: torch.randn(3, 3).bfloat16(),
    "complex": lambda: torch.randn(4, dtype=torch.complex64),
    "transposed": lambda: torch.randn(3, 4).t(),
    "offset_view": lambda: torch.randn(10)[3:7],
    "expanded": lambda: torch.randn(3, 1).expand(3, 4),
}


@pytest.mark.parametrize("name", list(CASES))
def test_exact_roundtrip(tmp_path, name):
    t = CASES[name]()
    (out,), _ = roundtrip(tmp_path, [t])
    assert out.dtype == t.dtype and out.shape == t.shape and out.stride() == t.stride()
    assert out.storage_offset() == t.storage_offset()
    assert torch.equal(out, t)


def test_views_share_one_storage_and_duplicates_cost_no_write(tmp_path):
    base = torch.randn(100)
    a, b = base[:50], base[50:].view(5, 10)
    (ra, rb, rc, n), w = roundtrip(tmp_path, [a, b, base.clone(), 3])
    assert len(os.listdir(tmp_path / "storages")) == 1  # base and its clone: same bytes, one file
    assert w.bytes_written == 400 and w.bytes_skipped == 400
    assert ra.untyped_storage().data_ptr() == rb.untyped_storage().data_ptr()  # still views of one storage
    assert torch.equal(rb, b) and n == 3


def test_requires_grad_and_non_leaf(tmp_path):
    leaf = torch.randn(3, requires_grad=True)
    non_leaf = leaf * 2
    (rl, rn), _ = roundtrip(tmp_path, [leaf, non_leaf])
    assert rl.requires_grad and rl.is_leaf
    assert rn.requires_grad and not rn.is_leaf and rn.grad_fn is not None
    torch.testing.assert_close(rn.detach(), non_leaf.detach())


def test_constants(tmp_path):
    values = [None, True, 3, 2.5, float("inf"), float("nan"), "mean", torch.float16, torch.device("cpu")]
    out, _ = roundtrip(tmp_path, values)
    assert out[:5] == values[:5] and out[5] != out[5] and out[6:] == values[6:]


def test_missing_storages_give_deterministic_random(tmp_path, capsys):
    values = [torch.randn(4, 4), torch.tensor([True, False]), torch.arange(6).view(2, 3)]
    w = InputWriter(None)  # nothing written
    for i, v in enumerate(values):
        w.value(f"v{i}", v)
    ns = {"torch": torch}
    exec(w.load_args_source(), ns)
    InputReader.warned = False
    first = ns["load_args"](InputReader(str(tmp_path)))
    second = ns["load_args"](InputReader(str(tmp_path)))
    err = capsys.readouterr().err
    assert err.count("using deterministic random data") == 1  # says so once
    for a, b, v in zip(first, second, values):
        assert torch.equal(a, b) and a.dtype == v.dtype and a.shape == v.shape and a.stride() == v.stride()
    assert set(first[1].tolist()) <= {True, False}


def test_damaged_storage_is_a_clear_error(tmp_path):
    w = InputWriter(str(tmp_path))
    w.value("x", torch.arange(16.0))
    ns = {"torch": torch}
    exec(w.load_args_source(), ns)
    torch.testing.assert_close(ns["load_args"](InputReader(str(tmp_path)))[0], torch.arange(16.0))
    (stored,) = (tmp_path / "storages").iterdir()
    data = bytearray(stored.read_bytes())
    data[5] ^= 0xFF
    stored.write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match=r"storage .* is damaged: its bytes hash to"):
        ns["load_args"](InputReader(str(tmp_path)))


# -- repro.py ------------------------------------------------------------------------

def f_single(x, y):
    return torch.sin(x) * y + 1


def f_tuple(x, y):
    return x * y, (x + y).sum()


def f_none(x, y):
    x.add_(y)
    return None


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x, y):
        return self.lin(x) * y


# this folder (the tests' backends) before the caller's path: aotpack where the caller's path
# gives it (a checkout run with PYTHONPATH=src), not only where it is installed
_WITH_HERE = os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")]))


def run_repro(path, *args):
    return run_fresh([path, *args], env={"PYTHONPATH": _WITH_HERE}, timeout=600, check=False)


@pytest.mark.parametrize("fn", [f_single, f_tuple, f_none, Net()], ids=["tensor", "tuple", "none", "module"])
def test_repro_runs_standalone_and_without_storages(tmp_path, fn):
    gm = torch.fx.symbolic_trace(fn)
    args = [torch.randn(3, 4), torch.randn(3, 4)]
    path = save_repro(gm, args, tmp_path / "r", config={"torch._inductor.config.fallback_random": True,
                                                        "torch._inductor.config.bad": object()})
    src = open(path).read()
    compile(src, path, "exec")
    assert "torch._inductor.config.fallback_random = True" in src
    assert "# not representable as Python: torch._inductor.config.bad" in src
    for mode in (["run", "--backend", "eager"], ["accuracy", "--backend", "aot_eager"]):
        r = run_repro(path, *mode)
        assert r.returncode == 0, r.stderr[-2000:]
    shutil.rmtree(tmp_path / "r" / "storages")
    r = run_repro(path, "accuracy", "--backend", "eager")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "deterministic random data" in r.stderr


def test_accuracy_catches_a_wrong_backend(tmp_path):
    gm = torch.fx.symbolic_trace(f_single)
    path = save_repro(gm, [torch.randn(8), torch.randn(8)], tmp_path / "r")
    r = run_repro(path, "accuracy", "--backend", "repro_backends:wrong_mul")
    assert r.returncode == 1
    assert "MISMATCH" in r.stdout and "accuracy: FAIL (1 outputs)" in r.stdout
    r = run_repro(path, "run", "--backend", "repro_backends:raises_on_sin")
    assert r.returncode != 0 and "backend cannot compile sin" in r.stderr


@pytest.mark.slow
def test_repro_accuracy_with_inductor(tmp_path):
    gm = torch.fx.symbolic_trace(Net())
    path = save_repro(gm, [torch.randn(3, 4), torch.randn(3, 4)], tmp_path / "r")
    r = run_repro(path, "accuracy", "--backend", "inductor")
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert "accuracy: ok" in r.stdout


def test_package_repro_cli(tmp_path):
    import aotpack
    import programs
    from conftest import run_cli

    torch.manual_seed(0)
    m = programs.MLPWithBuffer().eval()
    pkg = aotpack.compile(m, (torch.randn(2, 4),), backend="eager").save(tmp_path / "m.aot")
    out = run_cli("repro", str(pkg), "-o", str(tmp_path / "rep")).stdout
    assert "repro.py" in out
    r = run_repro(str(tmp_path / "rep" / "repro.py"), "accuracy", "--backend", "aot_eager")
    assert r.returncode == 0, r.stderr[-2000:]
    # the weights are inputs, stored once each by content
    assert len(os.listdir(tmp_path / "rep" / "storages")) == 6  # 5 weights + 1 example input


def chain(x, w):
    """~200 nodes, with one sin and one exp in the middle; each step is close to the
    identity, so an error anywhere reaches the output undamped."""
    for i in range(50):
        x = x + torch.cos(x * w) * 0.01
        if i == 25:
            x = torch.exp(x * 0.1)
            x = torch.sin(x) + x
    return x


@pytest.mark.parametrize("backend,failure", [("raises_on_sin", "exception"), ("raises_on_sin", "cannot compile sin"),
                                             ("wrong_exp", "accuracy")])
def test_minify_to_the_culprit(backend, failure):
    import repro_backends
    from aotpack.repro import minify

    gm = torch.fx.symbolic_trace(chain)
    g = torch.Generator().manual_seed(0)
    small, args, stats = minify(gm, [torch.randn(8, generator=g), torch.randn(8, generator=g)],
                                backend=getattr(repro_backends, backend),
                                failure=failure)
    assert stats["nodes_before"] >= 190
    assert stats["nodes_after"] <= 3 and stats["trials"] <= 100
    culprit = "sin" if "sin" in backend else "exp"
    assert any(culprit in str(n.target) for n in small.graph.nodes if n.op == "call_function")
    assert all(a.numel() == 1 for a in args)  # inputs shrunk from 8 elements while it still fails


def test_minify_cli_writes_a_repro_that_still_fails(tmp_path):

    gm = torch.fx.symbolic_trace(chain)
    save_repro(gm, [torch.randn(8), torch.randn(8)], tmp_path / "r")
    from conftest import CLI as env_cli
    env = {**os.environ, "PYTHONPATH": _WITH_HERE}
    proc = subprocess.run([*env_cli, "minify", str(tmp_path / "r"), "--failure", "accuracy",
                           "--backend", "repro_backends:wrong_exp"], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    before, after = [int(x) for x in re.findall(r"(\d+) nodes", proc.stdout)]
    assert before >= 190 and after <= 3
    small = tmp_path / "r" / "minified" / "repro.py"
    r = run_repro(str(small), "accuracy", "--backend", "repro_backends:wrong_exp")
    assert r.returncode == 1 and "MISMATCH" in r.stdout  # the minified repro reproduces
    r = run_repro(str(small), "accuracy", "--backend", "eager")
    assert r.returncode == 0
    # and the script's own minify mode (needs aotpack) works the same way
    r = run_repro(str(tmp_path / "r" / "repro.py"), "minify", "--failure", "exception",
                  "--backend", "repro_backends:raises_on_sin")
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert "minified: " in r.stdout
