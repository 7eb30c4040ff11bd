"""Multi-rank packages under torchrun (gloo on CPU): a tensor-parallel block compiled on
every rank into one package, loaded by a fresh job, every rank's output equal to the
unsharded eager model's; the job's rank and world size checked at load.

The jobs are tests/tp_job.py; each rank writes what it saw as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import aotpack
from aotpack.package.manifest import Manifest
from conftest import HERE, run_fresh

JOB = os.path.join(HERE, "tp_job.py")


def torchrun(nproc: int, *args: str, out: str) -> list[dict]:
    """Run tests/tp_job.py on ``nproc`` ranks (gloo, a free port); each rank's JSON."""
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           f"--nproc-per-node={nproc}", JOB, *args], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise AssertionError(f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    seen = []
    for r in range(nproc):
        with open(os.path.join(out, f"rank{r}.json")) as f:
            seen.append(json.load(f))
    return seen


# (eager and AOTInductor: the rank's variants, the job checks and the shards are the same
# code for every backend; inductor's own compile of the collectives took the suite ~20 s)
@pytest.mark.parametrize("backend", ["eager", pytest.param("aoti", marks=pytest.mark.slow)])
def test_tensor_parallel_package_equals_the_unsharded_model(tmp_path, backend):
    build, served, alone = tmp_path / "build", tmp_path / "served", tmp_path / "alone"
    for d in (build, served, alone):
        d.mkdir()
    built = torchrun(2, "build", str(build), backend, out=str(build))
    for seen in built:
        # every rank gets the package of all ranks
        assert seen["variants"] == ["default.rank0", "default.rank1"]
        # refused: collectives by aotpack.compile, and a DTensor model (torch.export cannot capture it)
        assert "aotpack.distributed.compile" in seen["without_distributed"]
        assert "DTensor" in seen["dtensor"] and "175467" in seen["dtensor"]
    pkg = str(build / "tp.aot")

    loaded = torchrun(2, "load", pkg, str(served), out=str(served))
    for rank, seen in enumerate(loaded):
        assert seen["variants"] == [f"default.rank{rank}"]  # each rank runs its own shard only
        assert seen["max_error"] < 1e-5, seen  # = the unsharded eager model, batch 1..64
        assert "args[0].dtype: expected torch.float32, got torch.float64" in seen["guard"]
    assert "default.rank1: backend" in loaded[0]["inspect"] and "rank 1 of 2 (gloo" in loaded[0]["inspect"]

    if backend != "eager":  # (the job checks below are load/job.py's, the same for every backend)
        return
    # a job of another size: refused at load, naming the world size, before any call
    (alone_seen,) = torchrun(1, "load", pkg, str(alone), out=str(alone))
    assert alone_seen["load_error"].startswith("IncompatibleError")
    assert "world size is 1" in alone_seen["load_error"] and "torchrun with a world size of 2" in \
        alone_seen["load_error"]

    # outside any job: refused too, and verify says so
    with pytest.raises(aotpack.IncompatibleError, match="torch.distributed is not initialized"):
        aotpack.load(pkg)
    with pytest.raises(aotpack.IncompatibleError):
        aotpack.load(pkg, on_mismatch="rebuild")  # another rank's variant is not rebuilt for this process
    assert not aotpack.verify(pkg).ok


def test_the_rank_tag_needs_a_reader_that_knows_it(tmp_path):
    """A manifest with a rank's variant must say format version 2: a version 1 reader
    would ignore the tag and run the shard on any rank."""
    import zipfile

    from aotpack.package import fmt

    src = os.path.join(HERE, "data", "format-v2.aot")
    with zipfile.ZipFile(src) as z:
        manifest = json.loads(z.read(fmt.MANIFEST))
    assert manifest["format_version"] == 2 and manifest["variants"][0]["distributed"]["world_size"] == 1
    manifest["format_version"] = 1
    with pytest.raises(aotpack.FormatError, match="distributed"):
        Manifest.from_json(manifest)
    # an ordinary package still says version 1, for older readers
    plain = aotpack.compile(lambda x: x + 1, (torch.randn(2),), backend="eager")
    assert plain.manifest.format_version == 1


CALLS_COLLECTIVES_ALONE = r"""
import torch, torch.distributed as dist, torch.distributed._functional_collectives as funcol, aotpack
dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
def f(x):
    return funcol.all_reduce(x * 2, "sum", dist.group.WORLD)
try:
    aotpack.compile(f, (torch.randn(3),), backend="eager")
except aotpack.AotpackError as e:
    print("refused:", e)
pkg = aotpack.distributed.compile(f, (torch.randn(3),), backend="eager")
print(pkg.variants, pkg.manifest.variants[0].distributed.to_json())
dist.destroy_process_group()
try:
    aotpack.distributed.compile(f, (torch.randn(3),), backend="eager")
except aotpack.AotpackError as e:
    print("no job:", e)
"""


def test_collectives_need_distributed_true_and_a_job():
    out = run_fresh(["-c", CALLS_COLLECTIVES_ALONE]).stdout
    assert "refused: f calls collectives on process group '0'" in out and "aotpack.distributed.compile" in out
    assert "['default.rank0'] {'rank': 0, 'world_size': 1, 'pg_backend': 'gloo', 'groups': {'0':" in out
    assert "no job: aotpack.distributed.compile needs an initialized torch.distributed job" in out
