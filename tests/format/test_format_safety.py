"""Saving is atomic under kill and concurrency; loading never unpickles; `aotpack verify`;
the checked-in package of every FORMAT_VERSION still loads."""

import glob
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

import aotpack
import programs
from aotpack import tree
from aotpack.package import fmt
from conftest import HERE, rewrite_manifest, run_cli, run_fresh

DATA = os.path.join(HERE, "data")

SAVER = r"""
import sys, torch, aotpack
def f(x, w):
    return x @ w
# a big package (weights ~ 64 MB) so that a save takes a while
w = torch.randn(4096, 4096)
pkg = aotpack.compile(lambda x: f(x, w), (torch.randn(2, 4096),), backend="eager")
print("ready", flush=True)
while True:
    pkg.save(sys.argv[1])
"""


def test_kill_during_save_leaves_previous_file(tmp_path):
    target = tmp_path / "m.aot"
    good = aotpack.compile(programs.plain, (torch.randn(2), torch.randn(2)), backend="eager").save(target)
    before = open(good, "rb").read()
    proc = subprocess.Popen([sys.executable, "-c", SAVER, str(tmp_path / "big.aot")], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        # Kill it while it is writing: wait for its temp file to appear and grow.
        deadline = time.time() + 120
        while time.time() < deadline:
            if not (tmp_path / "big.aot").exists():
                continue
            sizes = []
            for tmp in glob.glob(str(tmp_path / ".aotpack-*.tmp")):
                try:
                    sizes.append(os.path.getsize(tmp))
                except FileNotFoundError:  # renamed into place just now: the next save follows
                    pass
            if any(s > 1 << 20 for s in sizes):
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
    assert glob.glob(str(tmp_path / ".aotpack-*.tmp")), "the kill did not land mid-write"
    # The previous complete package under the same name still loads...
    fn = aotpack.load(tmp_path / "big.aot")
    assert fn(torch.randn(2, 4096)).shape == (2, 4096)
    # ...and an unrelated package next to it is untouched.
    assert open(target, "rb").read() == before


CONCURRENT = r"""
import sys, torch, aotpack
torch.manual_seed(int(sys.argv[2]))
w = torch.randn(512, 512)
pkg = aotpack.compile(lambda x: x @ w, (torch.randn(2, 512),), backend="eager")
for _ in range(5):
    pkg.save(sys.argv[1])
"""


def test_concurrent_saves_leave_one_complete_package(tmp_path):
    target = str(tmp_path / "c.aot")
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT, target, str(i)]) for i in range(4)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0, 0]
    fn = aotpack.load(target)  # verified: one writer's complete file
    assert fn(torch.randn(2, 512)).shape == (2, 512)
    assert not glob.glob(str(tmp_path / ".aotpack-*.tmp"))


NO_PICKLE = r"""
import pickle, sys, torch
def refuse(*a, **k):
    raise AssertionError("unpickling during aotpack.load")
pickle.load = pickle.loads = refuse
pickle.Unpickler = refuse
torch.load = refuse
import aotpack
for path in sys.argv[1:]:
    fn = aotpack.load(path)
    print(path, "ok")
"""


@pytest.mark.parametrize("backend", ["eager", pytest.param("aoti", marks=pytest.mark.slow)])
def test_load_never_unpickles(tmp_path, backend):
    torch.manual_seed(0)
    path = aotpack.compile(programs.MLPWithBuffer().eval(), (torch.randn(2, 4),), backend=backend).save(
        tmp_path / "m.aot")
    out = run_fresh(["-c", NO_PICKLE, str(path)]).stdout
    assert out.strip().endswith("ok")


def test_verify_cli(tmp_path):
    path = aotpack.compile(programs.plain, (torch.randn(2), torch.randn(2)), backend="eager").save(tmp_path / "p.aot")
    r = run_cli("verify", str(path))
    assert "integrity ok" in r.stdout and "variant default: runs here" in r.stdout
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 1  # inside a member (a flip in the zip's alignment padding changes nothing)
    bad = tmp_path / "bad.aot"
    bad.write_bytes(bytes(data))
    r = run_cli("verify", str(bad), check=False)
    assert r.returncode == 1
    assert aotpack.verify(path)["ok"]


def _fixture_opts(version: int, io: dict, cols: int = 6) -> dict:
    """The training fixtures' ``opts``; from version 11 with ``g``, every other column of
    a matrix (its columns a Dim): the stored values for 6 columns, random ones beyond."""
    if version < 11:
        return {"w": io["w"]}
    g = torch.empty(3, 2 * cols)[:, ::2]
    return {"w": io["w"], "g": g.copy_(io["g"][:, :cols] if cols <= 6 else torch.randn(3, cols))}


def _fixture_module():
    """tests/data/make_format_fixture.py, imported afresh (its module globals as written)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_format_fixture", os.path.join(DATA, "make_format_fixture.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_format_version_still_loads():
    """One checked-in package per FORMAT_VERSION (tests/data/format-vN.aot, eager backend),
    with the inputs and outputs it must reproduce."""
    for version in range(fmt.MIN_FORMAT_VERSION, fmt.FORMAT_VERSION + 1):
        path = os.path.join(DATA, f"format-v{version}.aot")
        assert os.path.exists(path), f"no checked-in package for FORMAT_VERSION {version}"
        info = aotpack.inspect(path)
        assert info.manifest.format_version == version and info.verified
        from safetensors.torch import load_file

        io = load_file(os.path.join(DATA, f"format-v{version}.io.safetensors"))
        if version >= 19:  # also takes an int argument with a Dim (opts["top"]): eager's at each value
            fn = loaded = aotpack.load(path)
            if version >= 23:  # (compiled under set_default_device("meta"), which each call then needs)
                def fn(*args, loaded=loaded):
                    with torch.device("meta"):
                        return loaded(*args)
            assert info.manifest.variants[0].in_spec.int_indices() == ([2, 3] if version >= 20 else [2])
            more = {"shift": -2} if version >= 20 else {}
            for top in (3, 1, 5):
                out = fn(io["x"], {"w": io["w"], "top": top, **more})
                torch.testing.assert_close(out["first"], io["y"][:top])
                assert out["after"] == top + 1 and type(out["after"]) is int
            with pytest.raises(aotpack.GuardError, match=r"args\[1\]\['top'\]: expected an int top in 1..5, got 6"):
                fn(io["x"], {"w": io["w"], "top": 6, **more})
            if version >= 20:  # also an int whose Dim runs below 0 (opts["shift"], -4..4): carried shifted
                assert [leaf.offset for leaf in tree.int_leaves(info.manifest.variants[0].in_spec)] == [0, -4]
                for shift in (-2, -4, 0, 4):
                    out = fn(io["x"], {"w": io["w"], "top": 3, "shift": shift})
                    torch.testing.assert_close(out["rolled"], io["y"].roll(shift, 0))
                    assert out["before"] == shift - 1 and type(out["before"]) is int
                with pytest.raises(aotpack.GuardError, match=r"\['shift'\]: expected an int shift in -4..4, got -5"):
                    fn(io["x"], {"w": io["w"], "top": 3, "shift": -5})
            if version >= 21:  # also reads an environment variable (unset at capture): guarded on it
                flag = "AOTPACK_FORMAT_FIXTURE_FLAG"
                assert info.manifest.variants[0].global_state.environ == {flag: None}
                os.environ[flag] = "1"  # (eager would negate y)
                try:
                    with pytest.raises(aotpack.GuardError, match=rf"os.environ\['{flag}'\]: expected unset.*got '1'"):
                        fn(io["x"], {"w": io["w"], "top": 3, "shift": -2})
                finally:
                    del os.environ[flag]
                torch.testing.assert_close(fn(io["x"], {"w": io["w"], "top": 3, "shift": -2})["y"], io["y"])
            if version >= 22:  # also reads deterministic algorithms (off at capture): guarded on CPU too
                assert info.manifest.variants[0].global_state.reads == ["deterministic"]
                torch.use_deterministic_algorithms(True)  # (eager would double y)
                try:
                    with pytest.raises(aotpack.GuardError, match=r"torch.are_deterministic_algorithms_enabled\(\): "
                                                                 r"expected False"):
                        fn(io["x"], {"w": io["w"], "top": 3, "shift": -2})
                finally:
                    torch.use_deterministic_algorithms(False)
                assert info.manifest.variants[0].inputs[0].properties == {"is_inference": False}
                with torch.inference_mode():
                    x = io["x"].clone()  # (an inference tensor: eager would double y)
                with pytest.raises(aotpack.GuardError, match=r"args\[0\]\.is_inference\(\): expected False"):
                    fn(x, {"w": io["w"], "top": 3, "shift": -2})
            if version >= 23:  # also compiled under set_default_device("meta"), and reads it: guarded on it
                state = info.manifest.variants[0].global_state
                assert (state.default_device, state.default_device_read) == ("meta", True)
                with pytest.raises(aotpack.GuardError, match=r"torch.get_default_device\(\): expected meta .*got cpu"):
                    loaded(io["x"], {"w": io["w"], "top": 3, "shift": -2})  # (eager would negate y)
            if version >= 24:  # also reads torch.backends.mkldnn.enabled (on at capture): guarded on it
                assert info.manifest.variants[0].global_state.backends == {"torch.backends.mkldnn.enabled": True}
                torch.backends.mkldnn.enabled = False  # (eager would halve y)
                try:
                    with pytest.raises(aotpack.GuardError, match=r"torch.backends.mkldnn.enabled: expected True"):
                        fn(io["x"], {"w": io["w"], "top": 3, "shift": -2})
                finally:
                    torch.backends.mkldnn.enabled = True
            continue
        if version >= 18:  # also returns a float and a bool of the batch Dim, typed
            fn = aotpack.load(path)
            assert info.manifest.variants[0].output_sizes[3:] == [{"expr": "IntTrueDiv(batch, 2)", "type": "float"},
                                                                  {"expr": "batch > 3", "type": "bool"}]
            for rows in (5, 1, 9):
                out = fn(io["x"][:rows] if rows <= 5 else torch.randn(rows, 4), {"w": io["w"]})
                assert (out["half"], out["big"]) == (rows / 2, rows > 3) and type(out["half"]) is float
            torch.testing.assert_close(fn(io["x"], {"w": io["w"]})["y"], io["y"])
            continue
        if version == 17:  # also returns ints of the batch Dim: evaluated from each call's sizes
            fn = aotpack.load(path)
            assert info.manifest.variants[0].output_sizes == ["batch", {"expr": "4*batch"}, {"expr": "2*batch + 1"}]
            for rows in (5, 1, 9):
                out = fn(io["x"][:rows] if rows <= 5 else torch.randn(rows, 4), {"w": io["w"]})
                assert (out["rows"], out["numel"]) == (rows, (4 * rows, 2 * rows + 1)) and type(out["rows"]) is int
            torch.testing.assert_close(out["y"].shape, (9, 3))
            torch.testing.assert_close(fn(io["x"], {"w": io["w"]})["y"], io["y"])
            continue
        if version >= 16:  # computes with a dict global's values: bound, the dict is compared by value
            fixture = _fixture_module()
            assert info.manifest.variants[0].module_attributes["global:GLOBAL_OPTS"] == {
                "dict": [["shift", 0.125], ["sign", -1]]}
            m = fixture.DictFixture().eval().requires_grad_(False)
            m.load_state_dict({k.removeprefix("state."): v for k, v in io.items() if k.startswith("state.")})
            bound = aotpack.load(path, module=m)
            torch.testing.assert_close(bound(io["x"], {"w": io["w"]})["y"], io["y"])
            fixture.GLOBAL_OPTS["sign"] = 1  # changed in place: eager would compute with it
            with pytest.raises(aotpack.GuardError, match=r"global GLOBAL_OPTS: expected \{'shift': 0.125, 'sign': -1\}"):
                bound(io["x"], {"w": io["w"]})
            fixture.GLOBAL_OPTS["sign"] = -1
            torch.testing.assert_close(bound(io["x"], {"w": io["w"]})["y"], io["y"])
            fixture.GLOBAL_OPTS = {"shift": 0.0, "sign": -1}  # assigned anew
            with pytest.raises(aotpack.GuardError, match=r"global GLOBAL_OPTS: expected"):
                bound(io["x"], {"w": io["w"]})
            torch.testing.assert_close(aotpack.load(path)(io["x"], {"w": io["w"]})["y"], io["y"])  # alone: as compiled
            continue
        if version >= 15:  # computes with a float and a dtype module global: bound, both are guarded
            fixture = _fixture_module()
            info_lines = str(info).splitlines()
            assert sum(line.endswith("guarded") for line in info_lines if "GLOBAL_GAIN" in line or "_DTYPE" in line) == 2
            m = fixture.ValuesFixture().eval().requires_grad_(False)
            m.load_state_dict({k.removeprefix("state."): v for k, v in io.items() if k.startswith("state.")})
            bound = aotpack.load(path, module=m)
            torch.testing.assert_close(bound(io["x"], {"w": io["w"]})["y"], io["y"])
            fixture.GLOBAL_GAIN = 1.0  # this process's global: eager would compute with it
            with pytest.raises(aotpack.GuardError, match=r"global GLOBAL_GAIN: expected 0.5 .*, got 1.0"):
                bound(io["x"], {"w": io["w"]})
            fixture.GLOBAL_GAIN, fixture.GLOBAL_OUT_DTYPE = 0.5, torch.float64
            with pytest.raises(aotpack.GuardError, match=r"global GLOBAL_OUT_DTYPE: expected torch.float32"):
                bound(io["x"], {"w": io["w"]})
            fixture.GLOBAL_OUT_DTYPE = torch.float32  # as compiled again: the call runs
            torch.testing.assert_close(bound(io["x"], {"w": io["w"]})["y"], io["y"])
            fixture.GLOBAL_GAIN = 1.0
            torch.testing.assert_close(aotpack.load(path)(io["x"], {"w": io["w"]})["y"], io["y"])  # alone: as compiled
            continue
        if version >= 14:  # calls a module global GELU: bound, the global's Python value is guarded
            fixture = _fixture_module()
            assert "GLOBAL_ACT = torch.nn.modules.activation:GELU" in str(info)  # (aotpack inspect lists them,
            assert all(line.endswith("followed") for line in str(info).splitlines() if " GLOBAL_" in line)  # followed)
            fn = aotpack.load(path)
            torch.testing.assert_close(fn(io["x"], {"w": io["w"]})["y"], io["y"])
            m = fixture.GlobalFixture().eval().requires_grad_(False)
            m.load_state_dict({k.removeprefix("state."): v for k, v in io.items() if k.startswith("state.")})
            bound = aotpack.load(path, module=m)
            torch.testing.assert_close(bound(io["x"], {"w": io["w"]})["y"], io["y"])
            fixture.GLOBAL_SHIFT.add_(1)  # this process's global, read at the call
            torch.testing.assert_close(bound(io["x"], {"w": io["w"]})["y"], io["y"] + 1)
            fixture.GLOBAL_ACT.approximate = "tanh"
            with pytest.raises(aotpack.GuardError, match=r"global GLOBAL_ACT.approximate: expected 'none'"):
                bound(io["x"], {"w": io["w"]})
            torch.testing.assert_close(fn(io["x"], {"w": io["w"]})["y"], io["y"])  # loaded alone: as compiled
            continue
        if version >= 13:  # a training package: the Linear meets a TwoTensor, so its gradients are TwoTensors
            from torch.testing._internal.two_tensor import TwoTensor

            fn = aotpack.load(path)
            x = io["x"].clone().requires_grad_()
            out = fn(x, {"w": io["w"], "pair": TwoTensor(io["pa"], io["pb"])}, scale=2.0)
            torch.testing.assert_close((out["y"], out["pair"].a, out["pair"].b), (io["y"], io["qa"], io["qb"]))
            torch.autograd.backward([out["y"].sum(), out["pair"].sum()])
            weight = dict(fn.named_parameters())["lin.weight"].grad
            assert type(weight) is TwoTensor
            torch.testing.assert_close((x.grad, weight.a, weight.b), (io["gx"], io["gwa"], io["gwb"]))
            continue
        if version >= 12:  # an inference package taking and returning a TwoTensor (a subclass made of tensors)
            from torch.testing._internal.two_tensor import TwoTensor  # (load rebuilds only classes imported)

            fn = aotpack.load(path)
            for rows in (5, 9):  # the batch a Dim
                x = io["x"] if rows == 5 else torch.randn(rows, 4)
                out = fn(x, {"w": io["w"], "pair": TwoTensor(io["pa"], io["pb"])}, scale=2.0)
                assert type(out["pair"]) is TwoTensor and out["y"].shape == (rows, 3)
            torch.testing.assert_close(fn(io["x"], {"w": io["w"], "pair": TwoTensor(io["pa"], io["pb"])})["y"], io["y"])
            torch.testing.assert_close((out["pair"].a, out["pair"].b), (io["qa"], io["qb"]))
            with pytest.raises(aotpack.GuardError, match=r"expected a torch.testing._internal.two_tensor.TwoTensor"):
                fn(io["x"], {"w": io["w"], "pair": io["pa"]})
            continue
        if version >= 6:  # a training package: yt is a view of its output y, and gradients flow through it
            fn = aotpack.load(path)
            x = io["x"].clone().requires_grad_()
            out = fn(x, _fixture_opts(version, io), scale=2.0)
            torch.testing.assert_close(out["y"], io["y"])
            torch.testing.assert_close(out["parts"][0], io["p0"])
            assert out["yt"].data_ptr() == out["y"].data_ptr() and out["yt"].stride() == (1, 3)
            if version >= 8:  # a dtype among the module's Python values; a weight transposed in memory
                assert [v.module_attributes for v in info.manifest.variants] == [{"compute": {"dtype": "float32"}}]
                assert info.manifest.program.weights["lin.weight"].layout == {"order": [1, 0]}
            if version >= 7:  # a custom Function returned x: a view of the caller's x, its gradient tripled
                assert out["xf"].data_ptr() == x.data_ptr() and out["xf"]._base is x
            if version >= 9:  # compiled with the rows a Dim: views of the call's sizes, at other sizes too
                assert out["tail"].data_ptr() == x[1:].data_ptr() and out["tail"].shape == (4, 4)
                other = fn(io["x"][:3].clone().requires_grad_(), _fixture_opts(version, io), scale=2.0)
                assert other["yt"].shape == (3, 3) and other["yt"].data_ptr() == other["y"].data_ptr()
                assert other["tail"].shape == (2, 4)
            if version >= 10:  # the rows exclude 7 (a branch on them): refused there, run beyond it
                assert info.manifest.variants[0].dims["rows"].exclude == [7]
                with pytest.raises(aotpack.GuardError, match=r"expected rows in 3\.\.64 except 7, got 7"):
                    fn(torch.randn(7, 4, requires_grad=True), _fixture_opts(version, io), scale=2.0)
                nine = fn(torch.randn(9, 4, requires_grad=True), _fixture_opts(version, io), scale=2.0)
                torch.testing.assert_close(nine["branch"], nine["y"] * 2)  # the example's branch, as eager's
            if version >= 11:  # g's strides follow its columns: (2*cols, 2) at every size, another layout refused
                assert info.manifest.variants[0].inputs[2].layout == {"stride": [{"expr": "2*cols"}, 2]}
                torch.testing.assert_close(out["g"], io["g"] + 1)
                wide = _fixture_opts(version, io, cols=20)
                torch.testing.assert_close(fn(io["x"].clone().requires_grad_(), wide, scale=2.0)["g"], wide["g"] + 1)
                with pytest.raises(aotpack.GuardError, match=r"expected strides \(2\*cols, 2\) = \(40, 2\)"):
                    fn(io["x"].clone().requires_grad_(), {"w": io["w"], "g": torch.randn(3, 20)}, scale=2.0)
            loss = out["y"].sum() + 2 * out["yt"][0].sum() + (out["xf"].sum() if version >= 7 else 0)
            loss.backward()
            torch.testing.assert_close(x.grad, io["gx"])
            continue
        if version >= 2:  # a distributed variant (rank 0 of 1): runs in a job, refused outside one
            with pytest.raises(aotpack.IncompatibleError, match="torch.distributed is not initialized"):
                aotpack.load(path)
            run_fresh(["-c", FIXTURE_IN_A_JOB, path, os.path.join(DATA, f"format-v{version}.io.safetensors"),
                       str(version)])
            continue
        fn = aotpack.load(path)
        out = fn(io["x"], {"w": io["w"]}, scale=2.0)
        torch.testing.assert_close(out["y"], io["y"])
        torch.testing.assert_close(out["parts"][0], io["p0"])


FIXTURE_IN_A_JOB = r"""
import sys, torch, torch.distributed as dist, aotpack
from safetensors.torch import load_file
dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
io = load_file(sys.argv[2])
out = aotpack.load(sys.argv[1])(io["x"], {"w": io["w"]}, scale=2.0)
torch.testing.assert_close(out["y"], io["y"])
torch.testing.assert_close(out["parts"][0], io["p0"])
if int(sys.argv[3]) >= 3:  # the variant compiled inside bf16 autocast runs under the caller's autocast
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        amp = aotpack.load(sys.argv[1])(io["x"], {"w": io["w"]}, scale=2.0)
    # (y = linear(x) * scale + shift: bf16 matmul, promoted back to float32 by the buffer)
    assert not torch.equal(amp["y"], io["y"]), "the autocast variant computed in float32"
    torch.testing.assert_close(amp["y"], io["y"], atol=0.1, rtol=0.05)
if int(sys.argv[3]) >= 4:  # the program leaves grad mode on: the call replays it, as eager
    with torch.no_grad():
        aotpack.load(sys.argv[1])(io["x"], {"w": io["w"]}, scale=2.0)
        assert torch.is_grad_enabled()
if int(sys.argv[3]) >= 5:  # a view of the caller's x whose size follows the batch Dim, at other batches too
    fn = aotpack.load(sys.argv[1])
    for batch in (2, 5, 9):
        x = torch.randn(batch, 4)
        tail = fn(x, {"w": io["w"]}, scale=2.0)["tail"]
        assert tail.shape == (batch - 1, 4) and tail.data_ptr() == x[1:].data_ptr()
        tail.zero_()
        assert not x[1:].any()  # written through the view, as eager
dist.destroy_process_group()
"""


# -- files: modes, symlinks, stale temps, concurrent writers ---------------------------

def _double(x):
    return x * 2


def test_saved_files_follow_umask_keep_mode_and_write_through_symlinks(tmp_path):
    import stat

    pkg = aotpack.compile(_double, (torch.randn(3),), backend="eager")
    old = os.umask(0o022)
    try:
        path = pkg.save(tmp_path / "a.aot")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    os.chmod(path, 0o640)
    aotpack.add_variant(path, _double, (torch.randn(5),), variant="b5", backend="eager")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640  # a rewrite keeps the file's mode
    link = tmp_path / "link.aot"
    link.symlink_to(path)
    pkg.save(link)
    assert link.is_symlink() and aotpack.load(link).variants == ["default"]


def test_stale_temp_of_a_dead_writer_is_removed(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".aotpack-{dead.stdout.strip()}-x.tmp"
    stale.write_bytes(b"half a package")
    aotpack.compile(_double, (torch.randn(3),), backend="eager").save(tmp_path / "a.aot")
    assert not stale.exists()


ADD = r"""
import sys, torch, aotpack
def double(x):
    return x * 2
aotpack.add_variant(sys.argv[1], double, (torch.randn(int(sys.argv[2])),), variant=f"n{sys.argv[2]}", backend="eager")
"""


def test_concurrent_add_variant_loses_nothing(tmp_path):
    import subprocess
    import sys

    path = aotpack.compile(_double, (torch.randn(3),), backend="eager").save(tmp_path / "a.aot")
    procs = [subprocess.Popen([sys.executable, "-c", ADD, str(path), str(n)]) for n in (4, 5, 6)]
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    assert sorted(aotpack.load(path).variants) == ["default", "n4", "n5", "n6"]


def test_a_loaded_package_survives_the_file_being_replaced(tmp_path):
    path = aotpack.compile(_double, (torch.randn(3),), backend="eager").save(tmp_path / "a.aot")
    fn = aotpack.load(path)
    aotpack.add_variant(path, _double, (torch.randn(5),), variant="b5", backend="eager")
    torch.testing.assert_close(fn(torch.ones(3)), torch.full((3,), 2.0))


def test_verification_is_remembered_per_file_identity(tmp_path, monkeypatch):
    """A big member is hashed at the first load of a file, not again while the file is
    unchanged; any write to it (ctime) makes load hash it again and catch the damage."""
    from aotpack.package import reader as reader_module

    monkeypatch.setenv("AOTPACK_VERIFIED_DIR", str(tmp_path / "verified"))
    model = torch.nn.Linear(1024, 512)  # 2 MB of weights
    path = aotpack.compile(model, (torch.randn(2, 1024),), backend="eager").save(tmp_path / "big.aot")
    hashed = []
    real = reader_module.fmt.digest

    def counting(data, algorithm=fmt.DIGEST):
        hashed.append(memoryview(data).nbytes)
        return real(data, algorithm)

    monkeypatch.setattr(reader_module.fmt, "digest", counting)
    aotpack.load(path)
    assert max(hashed) >= 2 << 20  # the weights were hashed
    hashed.clear()
    aotpack.load(path)
    assert all(n < 1 << 20 for n in hashed)  # ...and not again
    st = os.stat(path)
    with reader_module.PackageReader(path) as r:
        offset, size = r._members[fmt.WEIGHTS]
    with open(path, "r+b") as f:  # damage one weight byte, then put the mtime back
        f.seek(offset + size - 100)
        byte = f.read(1)
        f.seek(offset + size - 100)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(aotpack.IntegrityError, match="weights.safetensors"):
        aotpack.load(path)


def test_weights_checked_against_declared_dtype_and_shape(tmp_path):
    """A consistent package (hashes recomputed) whose weight has another shape than the
    one compiled for is refused before any code reads it out of bounds."""
    from aotpack.package.weights import TensorsMember

    pkg = aotpack.compile(torch.nn.Linear(16, 32), (torch.randn(2, 16),), backend="eager")
    stored = dict(pkg.weights)
    stored["weight"] = torch.randn(32, 8)
    pkg.members[fmt.WEIGHTS] = TensorsMember(stored)
    path = pkg.save(tmp_path / "bad.aot")  # the writer recomputes every member's hash
    with pytest.raises(aotpack.IntegrityError, match=r"weight 'weight' is float32\[32, 8\] .* declares float32\[32, 16\]"):
        aotpack.load(path)


@pytest.mark.parametrize("meta, says", [
    ({"entry": "__builtins__"}, "defines no function '__builtins__'"),  # a name in the code's namespace
    ({"entry": "device"}, "defines no function 'device'"),
    ({"entry": 3}, "defines no function 3"),
    ({"modules": [1]}, "meta.modules is not an object"),
    ({"modules": {"": "forward", "a.b": "graph_1"}}, "graph module 'a.b' has no parent 'a'"),
    ({"modules": {"": "forward", "true_graph_0": "print"}}, "defines no function 'print'"),
])
def test_eager_meta_names_only_functions_of_its_graph_code(tmp_path, meta, says):
    """A rewritten eager meta (hashes recomputed) that names something other than a
    function graph.py defines is a FormatError at load, not a call of that object, and
    verify (which runs nothing) says the same."""
    def f(x):
        return torch.cond(x.sum() > 0, lambda x: x * 2, lambda x: x - 1, (x,))

    path = aotpack.compile(f, (torch.randn(4),), backend="eager").save(tmp_path / "c.aot")
    rewrite_manifest(path, lambda doc: doc["variants"][0]["meta"].update(meta))
    with pytest.raises(aotpack.FormatError, match=re.escape(says)):
        aotpack.load(path)
    report = aotpack.verify(path)  # says no where load fails, from graph.py's syntax tree
    assert not report["ok"] and says in str(report), str(report)


def _rows_and_double(x):
    return x * 2, x.shape[0], 2 * x.shape[0]


@pytest.mark.parametrize("edit, says", [
    (lambda d: d["variants"][0].update(output_sizes=["rows"]), "variant default.output_sizes"),
    (lambda d: d["variants"][0].update(output_sizes=["rows", "cols"]), "variant default.output_sizes"),
    (lambda d: d["variants"][0].update(output_sizes=["rows", {"expr": "__import__('os')"}]),
     "variant default.output_sizes"),
    (lambda d: d["variants"][0].update(output_sizes=["rows", {"expr": "((rows**8)**8)**8"}]), None),
    (lambda d: d["program"]["out_spec"]["children"][2].update(index=5), "program.out_spec's sizes"),
    (lambda d: d.update(format_version=16), "program.out_spec's sizes"),
    (lambda d: d["variants"][0]["in_spec"]["children"].__setitem__(0, {"kind": "size", "index": 0}),
     "in_spec[0] has unknown kind 'size'"),
    # typed numbers (format version 18): a version 17 claim, an unknown type, another key, a grammar
    # the type has not, and an expression of another type than it says (a FormatError at the call)
    (lambda d: d["variants"][0].update(output_sizes=["rows", {"expr": "rows > 2", "type": "bool"}]),
     "variant default.output_sizes"),
    (lambda d: d.update(format_version=18) or d["variants"][0].update(
        output_sizes=["rows", {"expr": "rows", "type": "str"}]), "has a bad number"),
    (lambda d: d.update(format_version=18) or d["variants"][0].update(
        output_sizes=["rows", {"expr": "rows", "type": "int", "call": "print"}]), "has a bad number"),
    (lambda d: d.update(format_version=18) or d["variants"][0].update(
        output_sizes=["rows", {"expr": "open('x') > 2", "type": "bool"}]), "variant default.output_sizes"),
    (lambda d: d.update(format_version=18) or d["variants"][0].update(
        output_sizes=["rows", {"expr": "IntTrueDiv(rows, 2)", "type": "int"}]), None),
    # an int argument (format version 19) in an output spec, or taken by a size input
    (lambda d: d["program"]["out_spec"]["children"].__setitem__(0, {"kind": "int", "index": 0}),
     "out_spec[0] has unknown kind 'int'"),
    (lambda d: d.update(format_version=18) or d["variants"][0]["in_spec"]["children"].__setitem__(
        0, {"kind": "int", "index": 0}), "holds an int argument, which needs format version 19"),
    (lambda d: d.update(format_version=19) or d["variants"][0]["in_spec"]["children"].__setitem__(
        0, {"kind": "int", "index": 0}), "an int argument's carrier is not an empty uint8 tensor"),
    # an int leaf's offset (format version 20): negative, and only where the version says so
    (lambda d: d.update(format_version=20) or d["variants"][0]["in_spec"]["children"].__setitem__(
        0, {"kind": "int", "index": 0, "offset": 3}), "has a bad int offset"),
    (lambda d: d.update(format_version=20) or d["variants"][0]["in_spec"]["children"].__setitem__(
        0, {"kind": "int", "index": 0, "offset": "-3"}), "has a bad int offset"),
    (lambda d: d.update(format_version=19) or d["variants"][0]["in_spec"]["children"].__setitem__(
        0, {"kind": "int", "index": 0, "offset": -3}), "holds an int argument with an offset, which needs format "
                                                       "version 20"),
])
def test_edited_size_outputs_are_format_errors(tmp_path, edit, says):
    """The numbers a package returns of the call's sizes (format version 17; typed, 18)
    come from its manifest: a size leaf numbered past the variant's list, a Dim no guard
    binds, an expression a reader cannot evaluate, a size leaf in an argument spec, a
    version 16 claim (17 for a typed number), a type no reader knows are each a
    FormatError at load. A power of powers stops at the first value past any size, never
    computed at length, and an expression giving another type than it says gives none:
    such a call is a FormatError."""
    path = aotpack.compile(_rows_and_double, (torch.randn(4, 3),), backend="eager",
                           dynamic={"x": {0: aotpack.Dim("rows", min=1, max=2**40)}}).save(tmp_path / "s.aot")
    rewrite_manifest(path, edit)
    if says is not None:
        with pytest.raises(aotpack.FormatError, match=re.escape(says)):
            aotpack.load(path)
        return
    fn = aotpack.load(path)
    with pytest.raises(aotpack.FormatError, match=r"the expression of a number it returns .* gives no value of its "
                                                  r"type"):
        fn(torch.randn(2, 3))  # ((2**8)**8 is past any size: the next power is not computed; 1.0 is no int)
    if "**" in str(aotpack.inspect(path).manifest.variants[0].output_sizes):
        assert fn(torch.randn(1, 3))[1:] == (1, 1)
