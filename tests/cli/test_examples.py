"""The scripts in examples/ run as documented, in fresh processes."""

import os

from conftest import run_fresh

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "examples")


def test_train_package_example():
    out = run_fresh([os.path.join(EXAMPLES, "train_package.py")]).stdout
    assert "load + first forward and backward" in out and "step 4: loss" in out


def test_trace_report_example(tmp_path):
    out = run_fresh([os.path.join(EXAMPLES, "trace_report.py"), str(tmp_path)]).stdout
    assert "Data-dependent branching" in out and (tmp_path / "report.html").exists()
    assert len(list((tmp_path / "graphs").iterdir())) >= 2


def test_shared_cache_example(tmp_path):
    out = run_fresh([os.path.join(EXAMPLES, "shared_cache.py"), str(tmp_path)]).stdout
    assert "cache hit" in out and "differs in 1 part(s): inputs" in out and "'hits': 1" in out
