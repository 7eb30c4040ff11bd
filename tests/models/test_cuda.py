"""CUDA packages: compiled on the GPU, loaded in a fresh process, equal to eager.

Skipped cleanly without CUDA (CI has none); run on the GPU machine with
``python -m pytest tests/models/test_cuda.py`` (results recorded in bench/results/).
"""

import json

import pytest
import torch

import aotpack
import programs
from aotpack import Dim
from conftest import run_fresh

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import aotpack
fn = aotpack.load(sys.argv[1])
x, ref = torch.load(sys.argv[2])
y = fn(x.cuda())
torch.cuda.synchronize()
t2 = time.perf_counter()
err = (y.float().cpu() - ref.float()).abs().max().item()
try:
    fn(x.cuda()[:, :1] if x.dim() > 2 else x.cuda().double()); guard = None
except aotpack.GuardError as e:
    guard = str(e).splitlines()[0]
print(json.dumps({"err": err, "load_first_s": t2 - t1, "device": str(y.device), "guard": guard}))
"""


@pytest.mark.parametrize("name,dtype,tol,backend", [("module", torch.float32, 1e-4, "aoti"),
                                                   ("block", torch.bfloat16, 3e-2, "aoti"),
                                                   ("block", torch.bfloat16, 3e-2, "inductor")])
def test_cuda_fresh_process(tmp_path, name, dtype, tol, backend):
    p = programs.programs()[name]
    model = p["target"].to("cuda", dtype)
    x = p["args"][0].to("cuda", dtype)
    dynamic = {"x": {0: Dim("batch", min=1, max=64)}} if name == "module" else None
    path = aotpack.compile(model, (x,), dynamic=dynamic, backend=backend).save(tmp_path / f"{name}.aot")
    info = aotpack.inspect(path)
    assert info.manifest.variants[0].device == "cuda"
    with torch.no_grad():
        torch.save((x.cpu(), model(x).cpu()), tmp_path / "io.pt")
    r = json.loads(run_fresh(["-c", CHILD, str(path), str(tmp_path / "io.pt")]).stdout.strip().splitlines()[-1])
    assert r["device"].startswith("cuda")
    assert r["err"] <= tol
    assert r["guard"] is not None  # wrong dtype/shape refused before the kernel runs


def test_cuda_variant_refuses_cpu_tensors(tmp_path):
    x = torch.randn(3, 5, device="cuda")
    path = aotpack.compile(programs.plain, (x, x)).save(tmp_path / "p.aot")
    fn = aotpack.load(path)
    with pytest.raises(aotpack.GuardError, match=r"args\[0\].device: expected cuda, got cpu"):
        fn(torch.randn(3, 5), torch.randn(3, 5))
    torch.testing.assert_close(fn(x, x), programs.plain(x, x))


def test_trace_user_triton_kernel_runnable(tmp_path):
    """A graph calling a user-defined Triton kernel: its runnable re-registers the
    kernel and runs alone in a fresh process."""
    import triton
    import triton.language as tl

    @triton.jit
    def add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) + tl.load(y_ptr + offs, mask=mask), mask=mask)

    def f(x, y):
        out = torch.empty_like(x)
        add_kernel[(triton.cdiv(x.numel(), 128),)](x, y, out, x.numel(), BLOCK=128)
        return out.relu()

    x, y = torch.randn(1000, device="cuda"), torch.randn(1000, device="cuda")
    torch._dynamo.reset()
    with aotpack.trace(tmp_path / "t"):
        out = torch.compile(f, fullgraph=True)(x, y)
    torch.testing.assert_close(out, (x + y).relu())
    (record,) = aotpack.trace.read_trace(str(tmp_path / "t"))
    script = tmp_path / "t" / record["graph"]["runnable"]
    assert "triton_kernel_wrapper" in script.read_text() and "def add_kernel" in script.read_text()
    # runs the graph (and so the re-registered kernel) eagerly; recompiling it with
    # `--backend inductor` is not supported: dynamo cannot retrace the kernel wrapper op
    proc = run_fresh([str(script)], cwd=str(script.parent))
    assert "ran with backend eager: ok" in proc.stdout


TRAIN_CHILD = r"""
import json, sys
import torch
import aotpack
from aotpack.demo import TransformerBlock
torch.manual_seed(0)
model = TransformerBlock(64, 4).cuda().train()
fn = aotpack.load(sys.argv[1], module=model)
x = torch.load(sys.argv[2]).cuda()
fn(x).float().square().mean().backward()
print(json.dumps({n: p.grad.float().cpu().tolist() for n, p in model.named_parameters()}))
"""


def test_cuda_training_package_fresh_process(tmp_path):
    from aotpack.demo import TransformerBlock

    torch.manual_seed(0)
    model = TransformerBlock(64, 4).cuda().train()
    x = torch.randn(2, 16, 64, device="cuda")
    path = aotpack.compile(model, (x,), train=True, backend="aoti").save(tmp_path / "train.aot")
    torch.save(x.cpu(), tmp_path / "x.pt")
    model(x).float().square().mean().backward()
    out = run_fresh(["-c", TRAIN_CHILD, str(path), str(tmp_path / "x.pt")]).stdout.strip().splitlines()[-1]
    grads = json.loads(out)
    for name, p in model.named_parameters():
        torch.testing.assert_close(torch.tensor(grads[name]), p.grad.float().cpu(), rtol=1e-3, atol=1e-4)


def test_a_split_matrix_vector_product_equals_the_plain_one():
    """bench/matvec_fusion.py's split reductions (two phases: chunks of a row, then their
    sum) compute the same product as the unsplit one, to bf16 rounding of the order."""
    from aotpack._torch_compat import split_matvec_reductions

    def down(g, u, w):
        return torch.nn.functional.linear(torch.nn.functional.silu(g) * u, w)

    torch.manual_seed(0)
    g, u = torch.randn(2, 1, 2816, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(1024, 2816, device="cuda", dtype=torch.bfloat16) / 64
    expected = down(g, u, w)
    for factor in (None, 4):
        torch._dynamo.reset()
        with split_matvec_reductions(factor=factor):
            got = torch.compile(down, options={"coordinate_descent_tuning": True}, fullgraph=True)(g, u, w)
        torch.testing.assert_close(got, expected, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("backend", ["inductor", "aoti"])
def test_cuda_weights_keep_their_layouts(tmp_path, backend):
    """A CUDA variant's weights go from the file to the GPU in the layout its compiled
    code reads them in: transposed, channels_last, expanded and gapped ones too
    (``.to("cuda")`` makes a tensor with gaps contiguous: weights.copy_in_layout)."""
    torch.manual_seed(0)
    m = programs.WeightLayouts().eval().requires_grad_(False).to("cuda")
    # (.to() made the expanded and gapped ones contiguous)
    m.rows = torch.arange(5.0, device="cuda").reshape(5, 1).expand(5, 6)
    m.gapped.data = torch.randn(5, 12, device="cuda")[:, ::2]
    args = (torch.randn(5, 6, device="cuda"), torch.randn(2, 3, 8, 8, device="cuda"))
    path = aotpack.compile(m, args, backend=backend).save(tmp_path / "layouts.aot")
    torch.save([[a.cpu() for a in args], [t.cpu() for t in m(*args)]], tmp_path / "io.pt")
    out = run_fresh(["-c", "import sys, torch, aotpack; fn = aotpack.load(sys.argv[1]); "
                     "args, want = torch.load(sys.argv[2]); got = fn(*[a.cuda() for a in args]); "
                     "[torch.testing.assert_close(g.cpu(), w) for g, w in zip(got, want)]; print('ok')",
                     str(path), str(tmp_path / "io.pt")])
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_kernel_time_autotuning_times_kernels_alone_and_restores_inductors_benchmarker():
    """aotpack.llm.compile's autotuning on CUDA: a config's time is its kernels' device
    time, so a kernel of a few microseconds is not timed as its launch's CPU cost; the
    benchmarker is inductor's own again afterwards."""
    from torch._inductor.runtime.benchmarking import benchmarker

    from aotpack import _torch_compat as compat

    own = benchmarker.benchmark_gpu
    x = torch.randn(1024, device="cuda")
    with compat.kernel_time_autotuning():
        assert benchmarker.benchmark_gpu is not own
        small = benchmarker.benchmark_gpu(lambda: x.add_(1))
        big = benchmarker.benchmark_gpu(lambda: torch.randn(8192, 8192, device="cuda").sum())
    assert benchmarker.benchmark_gpu == own
    assert 0 < small < 0.01 < big  # ms: a 1024-element add takes well under 10 us on the device


def test_the_matvec_kernel_equals_linear_in_bf16():
    """aotpack.kernels.matvec on the GPU: a Llama's down projection (4096 x 11264), equal
    to F.linear to bf16 rounding of another summation order."""
    from aotpack.kernels import fits, matvec

    torch.manual_seed(0)
    x = torch.randn(1, 11264, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(4096, 11264, device="cuda", dtype=torch.bfloat16) / 64
    assert fits(x, w, None, 2.5) and not fits(x[:, :4096], w[:, :4096], None, 2.5)
    torch.testing.assert_close(matvec(x, w).float(), torch.nn.functional.linear(x, w).float(), rtol=2e-2, atol=2e-2)
    with pytest.raises(ValueError, match="K a multiple of 512"):  # the kernel would read past the end
        matvec(x[:, :1000].contiguous(), w[:, :1000].contiguous())


def test_llm_compile_routes_the_down_projection_through_the_matvec_kernel(tmp_path):
    """aotpack.llm.compile on CUDA (matvec_kernel's default): the decode step's down projections (2,048
    outputs of 5,632) call aotpack::matvec, prefill's do not, and a fresh process that
    never imports aotpack.kernels generates eager's greedy tokens (in bf16: a difference
    would have to be shown a near-tie, as bench/decode_divergence.py does)."""
    import zipfile

    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=256, hidden_size=2048, intermediate_size=5632,
                                         num_hidden_layers=1, num_attention_heads=8, num_key_value_heads=2,
                                         max_position_embeddings=64)).to("cuda", torch.bfloat16).eval()
    path = aotpack.llm.compile(model, max_len=32, backend="aoti").save(tmp_path / "lm.aot")  # (the default on CUDA)
    with zipfile.ZipFile(path) as z:
        decode, prefill = (z.read(f"variants/{v}/program.json") for v in ("decode", "prefill"))
    assert decode.count(b"torch.ops.aotpack.matvec") >= 1 and b"torch.ops.aotpack.matvec" not in prefill
    ids = torch.randint(3, 200, (1, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model.generate(ids.cuda(), max_new_tokens=4, do_sample=False, pad_token_id=0,
                              attention_mask=torch.ones_like(ids).cuda(), disable_compile=True)[0, 8:].tolist()
    code = ("import json, sys, aotpack\n"
            f"print(json.dumps(aotpack.generate(sys.argv[1], [{ids[0].tolist()!r}], 4).tolist()))")
    got = json.loads(run_fresh(["-c", code, str(path)]).stdout.strip().splitlines()[-1])
    assert got[0][-4:] == want


def counts_on(x, n, k, s):
    """test_int_arguments' program, with its arange on x's device, and an int whose Dim
    runs below 0 (``s``: a roll and a number of it)."""
    return {"scaled": x * n + k, "zeros": x.new_zeros(n, k), "steps": torch.arange(n, device=x.device) * x.sum(),
            "wide": x.sum().expand(k, n), "mean": x.sum() / (n + 1), "sum": n + k, "half": n / 2, "big": n > k,
            "rolled": x.roll(s), "third": s // 3}


@pytest.mark.parametrize("backend", ["aoti", "eager"])
def test_int_arguments_on_cuda(backend):
    """An int argument with a Dim on CUDA: its carrier is made on the variant's device, and
    every value in the Dim gives eager's tensors and numbers (below 0 too, where the Dim
    runs there); one outside is a GuardError."""
    x = torch.rand(8, device="cuda") + 0.5
    pkg = aotpack.compile(counts_on, (x, 5, 3, -2), backend=backend,
                          dynamic={"n": Dim("n", min=0, max=4096), "k": Dim("k", min=1, max=16),
                                   "s": Dim("s", min=-8, max=8)})
    assert all(g.device.startswith("cuda") for g in pkg.manifest.variants[0].inputs)
    fn = aotpack.load(pkg.to_bytes())
    for n, k, s in ((5, 3, -2), (0, 1, -8), (1, 16, 8), (4096, 7, 0), (33, 2, -5)):
        got, want = fn(x, n, k, s), counts_on(x, n, k, s)
        for key, w in want.items():
            if isinstance(w, torch.Tensor):
                assert got[key].device == w.device and got[key].shape == w.shape, key
                torch.testing.assert_close(got[key], w)
            else:
                assert type(got[key]) is type(w) and got[key] == w, key
    with pytest.raises(aotpack.GuardError, match=r"^args\[2\]: expected an int k in 1\.\.16, got 17"):
        fn(x, 5, 17, 0)
    with pytest.raises(aotpack.GuardError, match=r"^args\[3\]: expected an int s in -8\.\.8, got -9"):
        fn(x, 5, 3, -9)


def adds_positions(x):
    return x + torch.arange(x.shape[-1])  # (no device=: the default device's)


@pytest.mark.parametrize("backend", ["aoti", "inductor"])
def test_calls_under_set_default_device_cuda(backend):
    """``torch.set_default_device("cuda")``, as scripts set it: a model whose program
    makes no tensor with no device runs under it, equal to eager; a program that makes
    one, compiled under ``with torch.device("cuda"):``, runs there and is a GuardError
    naming the default device under the CPU's (where eager fails: the positions would be
    on the CPU)."""
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU()).cuda().eval()
    x = torch.randn(4, 16, device="cuda")
    plain = aotpack.load(aotpack.compile(model, (x,), backend=backend).to_bytes())
    with torch.device("cuda"):
        reading = aotpack.compile(adds_positions, (x,), backend=backend)
    assert reading.manifest.variants[0].global_state.default_device == f"cuda:{torch.cuda.current_device()}"
    assert reading.manifest.format_version >= aotpack.package.fmt.DEFAULT_DEVICE_FORMAT_VERSION
    positions = aotpack.load(reading.to_bytes())
    torch.set_default_device("cuda")
    try:
        with torch.no_grad():
            torch.testing.assert_close(plain(x), model(x))
        torch.testing.assert_close(positions(x), adds_positions(x))
    finally:
        torch.set_default_device(None)
    with pytest.raises(aotpack.GuardError, match=r"torch.get_default_device\(\): expected cuda:\d .*got cpu"):
        positions(x)
