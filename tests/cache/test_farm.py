"""Variants compiled in parallel (aotpack.farm): local processes and a real Ray cluster
started on 127.0.0.1. The package equals a serial compile's (outputs per variant), the
package is built from cache hits (every artifact comes back through the cache), and a variant
whose worker fails is compiled, and refused as usual, by the caller."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import torch

import aotpack
from aotpack.cache import stats
from conftest import free_port


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4)).eval()


BATCHES = (1, 3, 8)
# the Ray cluster's: one variant a worker (each AOTInductor compile costs ~10 s of the
# suite's 2 cores; a third only repeated the second)
RAY_BATCHES = (1, 8)


def _variants(batches=BATCHES):
    return [{"name": f"b{b}", "args": (torch.randn(b, 16),)} for b in batches[1:]]


def _check(pkg, model, tmp_path, name, batches=BATCHES):
    fn = aotpack.load(pkg.save(tmp_path / f"{name}.aot"))
    assert fn.variants == [f"b{b}" for b in batches]
    for b in batches:
        x = torch.randn(b, 16)
        with torch.no_grad():
            torch.testing.assert_close(fn(x), model(x), rtol=1e-4, atol=1e-5)


def test_local_workers_compile_every_variant(tmp_path):
    model = _model()
    stats.clear()
    pkg = aotpack.farm.compile(model, (torch.randn(1, 16),), backend="eager", variant="b1", variants=_variants(),
                          workers="local:2")
    # the first variant compiles here (forked workers then start warm), the rest in workers;
    # building the package, every variant is a hit
    assert stats["compiles"] == 1 and stats["hits"] == len(BATCHES), dict(stats)
    _check(pkg, model, tmp_path, "local")
    serial = aotpack.compile(model, (torch.randn(1, 16),), backend="eager", variant="b1", variants=_variants())
    assert [v.name for v in serial.manifest.variants] == [v.name for v in pkg.manifest.variants]
    assert pkg.manifest.variants == serial.manifest.variants


def test_a_failing_variant_is_compiled_and_refused_by_the_caller():
    def branchy(x):
        if x.sum() > 0:  # data-dependent: cannot be one graph
            return x + 1
        return x - 1

    lines = []
    with pytest.raises(aotpack.CaptureError, match="x.sum"):
        aotpack.farm.compile(branchy, (torch.randn(3),), backend="eager", workers="local:2", progress=lines.append)
    assert any("the worker failed" in line for line in lines), lines


@pytest.mark.parametrize("workers", ["local:0", "locale:2", "ray:", "spark://x"])
def test_bad_workers_are_named(workers):
    with pytest.raises(aotpack.AotpackError, match="names no place to compile"):
        aotpack.farm.compile(lambda x: x + 1, (torch.randn(2),), backend="eager", workers=workers)


@pytest.fixture
def ray_cluster(tmp_path, monkeypatch):
    ray_cli = shutil.which("ray", path=os.path.dirname(sys.executable))
    assert ray_cli, "the ray CLI is not installed (make test installs it)"
    port = free_port()
    # a throwaway cluster on 127.0.0.1: no auth token (Ray's default for real clusters)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    env = dict(os.environ)
    subprocess.run([ray_cli, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                    "--include-dashboard=false", "--disable-usage-stats"], check=True, env=env,
                   capture_output=True, timeout=120)
    try:
        yield f"ray:127.0.0.1:{port}"
    finally:
        import ray

        ray.shutdown()
        subprocess.run([ray_cli, "stop", "--force"], env=env, capture_output=True, timeout=120)


@pytest.mark.slow
def test_ray_cluster_compiles_aoti_variants(ray_cluster, tmp_path):
    """The workers compile under the caller's inductor config (a library may set it:
    torchao's quantize_ turns coordinate descent on), so their entries are the caller's
    cache keys: until 2026-12-04 every variant missed them and compiled in the caller."""
    import torch._inductor.config as config

    model = _model()
    stats.clear()
    with config.patch({"coordinate_descent_tuning": not config.coordinate_descent_tuning}):
        pkg = aotpack.farm.compile(model, (torch.randn(1, 16),), backend="aoti", variant="b1",
                                   variants=_variants(RAY_BATCHES),
                                   workers=ray_cluster, cache=str(tmp_path / "store"))
    assert stats["compiles"] == 0 and stats["hits"] == len(RAY_BATCHES), dict(stats)
    _check(pkg, model, tmp_path, "ray", RAY_BATCHES)
    # the workers also published to the store the caller named: a later compile hits there
    assert len(list(aotpack.cache.LocalStore(tmp_path / "store").entries())) == len(RAY_BATCHES)


def test_local_workers_on_a_transformers_model(tmp_path):
    """Code from outside: a BERT from transformers (tests/zoo.py), one variant per batch
    size, through forked workers; outputs equal eager's on every variant."""
    import zoo

    model, kwargs = zoo.build("bert")
    ids = kwargs["input_ids"]
    variants = [{"name": f"b{b}", "kwargs": {"input_ids": ids[:1].repeat(b, 1)}} for b in (2, 3)]
    stats.clear()
    pkg = aotpack.farm.compile(model, (), {"input_ids": ids[:1]}, backend="eager", variant="b1", variants=variants,
                          workers="local:2")
    assert stats["compiles"] == 1 and stats["hits"] == 3, dict(stats)
    fn = aotpack.load(pkg.save(tmp_path / "bert.aot"))
    for b in (1, 2, 3):
        x = ids[:1].repeat(b, 1)
        with torch.no_grad():
            want = model(input_ids=x).last_hidden_state
        torch.testing.assert_close(fn(input_ids=x).last_hidden_state, want)
