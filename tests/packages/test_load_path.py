"""The load path traces and compiles nothing: loading and running an inference package,
a training package (forward + backward) and a generation package in a fresh process
imports no torch._dynamo, torch._inductor, nor aotpack's capture/compile modules (nor
the package writer and the signature code: fewer modules, a faster import)."""

from __future__ import annotations

import json

import torch

import aotpack
import aotpack.llm
from conftest import run_fresh

COMPILE_SIDE = ("torch._dynamo", "torch._inductor", "aotpack.build", "aotpack.api", "aotpack.cache",
                # building and signing packages: an unsigned package loaded without keys needs neither
                "aotpack.package.memory", "aotpack.package.writer", "aotpack.package.signing")

CHILD = r"""
import json, sys, torch, aotpack
inference, training, lm = sys.argv[1:4]
aotpack.load(inference)(torch.randn(2, 8))
fn = aotpack.load(training)
x = torch.randn(2, 8, requires_grad=True)
fn(x).sum().backward()
assert x.grad is not None
aotpack.generate(lm, [[1, 2, 3]], 3)
prefixes = tuple(sys.argv[4].split(","))
print(json.dumps(sorted(m for m in sys.modules if m.startswith(prefixes))))
"""


def test_loading_imports_nothing_of_the_compile_side(tmp_path):
    import gpt_static

    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    inference = aotpack.compile(model.eval(), (torch.randn(2, 8),), backend="eager").save(tmp_path / "i.aot")
    training = aotpack.compile(model.train(), (torch.randn(2, 8, requires_grad=True),), backend="eager",
                               train=True).save(tmp_path / "t.aot")
    lm = aotpack.llm.compile(gpt_static.StaticGPT(max_batch=1, max_len=16), max_batch=1, max_len=16,
                             backend="eager").save(tmp_path / "lm.aot")
    out = run_fresh(["-c", CHILD, str(inference), str(training), str(lm), ",".join(COMPILE_SIDE)])
    imported = json.loads(out.stdout.strip().splitlines()[-1])
    assert imported == [], imported


PLAIN = r"""
import json, sys, torch, aotpack
aotpack.load(sys.argv[1])(torch.randn(2, 8))
print(json.dumps(sorted(m for m in sys.modules if m.startswith("aotpack"))))
"""


def test_a_plain_package_loads_without_the_wrappers_it_does_not_need(tmp_path):
    """The fixed cost of a small load is mostly importing aotpack (bench/big_load.py): a
    package without custom ops, custom pytree outputs, views of its inputs or inputs in
    another memory layout imports neither layout.py nor views.py nor the compile side,
    and still checks the torch version. It imports the private-torch wrappers (0.6 ms):
    the guards check the inputs' properties with dynamo's native TensorGuards (1.7 µs
    less per call: bench/guard_overhead.py), and a module's package checks for global
    module backward hooks, whose dict only a private name reaches."""
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4)).eval()
    weight = torch.randn(4, 8)
    paths = {"function": aotpack.compile(lambda x: torch.relu(x) @ weight.t(), (torch.randn(2, 8),),
                                         backend="eager").save(tmp_path / "f.aot"),
             "module": aotpack.compile(model, (torch.randn(2, 8),), backend="eager").save(tmp_path / "m.aot")}
    for kind, path in paths.items():
        out = run_fresh(["-c", PLAIN, str(path)])
        imported = set(json.loads(out.stdout.strip().splitlines()[-1]))
        assert "aotpack._torch_version" in imported
        assert not imported & {"aotpack.load.layout", "aotpack.load.views", *COMPILE_SIDE}, (kind, imported)


def test_an_older_torch_is_refused_at_import():
    """The version check moved off ``_torch_compat`` with the load path: ``import aotpack``
    still refuses a torch older than 2.11, naming both versions."""
    out = run_fresh(["-c", "import torch; torch.__version__ = '2.10.1+cpu'\nimport aotpack"], check=False)
    assert out.returncode != 0
    assert "ImportError: aotpack needs torch >= 2.11; this is torch 2.10.1+cpu" in out.stderr
