"""Compile traces: trace.jsonl, runnable scripts in fresh processes, the HTML report in
real headless Chromium, AOTPACK_TRACE and the trace backend."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import types

import pytest
import torch
from packaging.version import Version

import aotpack
from conftest import run_fresh

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """trace_programs.py run once in a fresh process; its trace folder."""
    root = tmp_path_factory.mktemp("traced")
    # (a new python: the trace records the stack each compile came from, which in a child of
    # the zygote starts with its frames)
    run_fresh([os.path.join(HERE, "trace_programs.py"), str(root)], timeout=900, new_python=True)
    out = str(root / "trace")
    return out, aotpack.trace.read_trace(out)


def by_function(records, name):
    return [r for r in records if r["function"] == name]


def test_trace_log_has_one_line_per_compile(traced):
    out, records = traced
    names = [r["function"] for r in records]
    for fn in ("elementwise", "matmul", "scalars", "symbolic_sizes", "forward", "collectives", "<lambda>"):
        assert fn in names, names
    for r in records:
        assert re.fullmatch(r"\d+/\d+", r["compile_id"])
        assert r["status"] == "ok" and r["graph"] and r["guards"] and r["compile_time_s"] > 0
        assert r["source"].endswith(f":{r['line']}") and r["file"].endswith("trace_programs.py")
        assert r["stack"] and all("trace_programs.py:" in frame for frame in r["stack"])  # user frames, by path
        assert os.path.exists(os.path.join(out, r["graph"]["runnable"]))
        assert not r.get("recorder_errors")
    assert {r["backend"] for r in records} == {"aot_eager", "inductor"}
    inductor = next(r for r in records if r["backend"] == "inductor")
    assert set(inductor["cache"]) == {"fx_graph", "aot_autograd"}


def test_graph_breaks_and_recompiles_are_recorded(traced):
    _, records = traced
    (net,) = by_function(records, "forward")
    (brk,) = net["graph_breaks"]
    lines = open(os.path.join(HERE, "trace_programs.py")).read().splitlines()
    line = 1 + next(i for i, text in enumerate(lines) if 'print("graph break here")' in text)
    assert brk["where"].endswith(f"trace_programs.py:{line}")
    assert brk["code"] == 'print("graph break here")'
    assert "print" in brk["reason"] and "Graph Break Reason" in brk["detail"]
    (resumed,) = by_function(records, f"torch_dynamo_resume_in_forward_at_{line}")
    assert resumed["graph"] and not resumed["graph_breaks"]
    recompiled = [r for r in records if r["recompile_reasons"]]
    assert any("size mismatch" in reason for r in recompiled for reason in r["recompile_reasons"])


def test_inputs_metadata_and_dynamic_shapes(traced):
    _, records = traced
    marked = by_function(records, "elementwise")[1]  # mark_dynamic(x, 0)
    kinds = [i["kind"] for i in marked["inputs"]]
    assert "symint" in kinds and kinds.count("tensor") == 2
    sym = next(i for i in marked["inputs"] if i["kind"] == "symint")
    assert sym["value"] == 5 and re.fullmatch(r"s\d+", sym["symbol"])
    auto = by_function(records, "matmul")[1]  # recompiled with automatic dynamic
    assert any(i["kind"] == "symint" for i in auto["inputs"])
    tensor = next(i for i in by_function(records, "matmul")[0]["inputs"] if i["kind"] == "tensor")
    assert tensor == {"name": tensor["name"], "kind": "tensor", "type": "Tensor", "dtype": "float32", "shape": [3, 8],
                      "stride": [8, 1], "device": "cpu", "requires_grad": False}
    dtensor = next(r for r in records if any(i.get("type") == "DTensor" for i in r["inputs"]))
    assert any(i.get("placements") == ["Shard(dim=0)"] for i in dtensor["inputs"])


def test_every_runnable_runs_alone_in_a_fresh_process(traced):
    out, records = traced
    for r in records:
        script = os.path.join(out, r["graph"]["runnable"])
        text = open(script).read()
        if "# not importable, the graph's code needs it" in text:
            # torch 2.11's dynamo writes DTensor.redistribute as a call to a closure it
            # made while tracing (2.13 writes the method call): nothing can import it
            assert Version(torch.__version__.split("+")[0]) < Version("2.13") and any(i.get("type") == "DTensor" for i in r["inputs"])
            continue
        # symbolic sizes are concrete values, never assignments to expressions
        assert not re.search(r"^\s*[a-z]\d*\s*[*+/-].*=\s*\d+\s*$", text, re.M)
        proc = run_fresh([script], cwd=os.path.dirname(script), check=False, timeout=300)
        assert proc.returncode == 0, f"{r['compile_id']} {r['function']}:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
        assert "ran with backend eager: ok" in proc.stdout


def test_runnable_keeps_debug_config_and_collective_setup(traced):
    out, records = traced
    inductor = next(r for r in records if r["backend"] == "inductor")
    text = open(os.path.join(out, inductor["graph"]["runnable"])).read()
    assert "import torch._inductor.config\ntorch._inductor.config.trace.enabled = True" in text
    assert "torch._inductor.config.trace.provenance_tracking_level = 1" in text
    (coll,) = by_function(records, "collectives")
    text = open(os.path.join(out, coll["graph"]["runnable"])).read()
    assert "dist.init_process_group('fake', store=FakeStore(), rank=1, world_size=4)" in text
    assert "_c10d_functional.all_reduce" in text and "reduce_scatter" in text and "broadcast" in text


@pytest.mark.slow
def test_runnable_recompiles_with_inductor_and_without_storages(traced, tmp_path):
    out, records = traced
    (sym,) = by_function(records, "symbolic_sizes")
    folder = tmp_path / "copy"
    shutil.copytree(os.path.join(out, os.path.dirname(sym["graph"]["runnable"])), folder)
    proc = run_fresh([str(folder / "runnable.py"), "accuracy", "--backend", "inductor"], check=False)
    assert proc.returncode == 0 and "accuracy: ok" in proc.stdout, proc.stdout + proc.stderr[-3000:]
    shutil.rmtree(folder / "storages")
    proc = run_fresh([str(folder / "runnable.py")], check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_env_var_traces_a_program_that_never_imports_aotpack(tmp_path):
    prog = tmp_path / "prog.py"
    prog.write_text("import sys, torch\n"
                    "f = torch.compile(lambda x: x.cos() + 1, backend='eager')\n"
                    "f(torch.randn(3))\n"
                    "assert 'aotpack' not in sys.argv\n")
    out = tmp_path / "trace"
    run_fresh([str(prog)], env={"AOTPACK_TRACE": str(out)})
    (record,) = aotpack.trace.read_trace(str(out))
    assert record["function"] == "<lambda>" and record["backend"] == "eager"
    assert os.path.exists(out / record["graph"]["runnable"])
    # without the variable, nothing is recorded and aotpack is never imported
    proc = run_fresh(["-c", "import sys, torch; torch.compile(lambda x: x + 1, backend='eager')(torch.ones(2)); "
                            "print('aotpack' in sys.modules)"], env={"AOTPACK_TRACE": ""})
    assert proc.stdout.strip() == "False"


def test_trace_backend_records_and_compiles(tmp_path):
    torch._dynamo.reset()
    out = tmp_path / "t"
    fn = torch.compile(lambda x, y: (x @ y).tanh(), backend=aotpack.trace.backend("eager", out))
    x, y = torch.randn(3, 4), torch.randn(4, 2)
    torch.testing.assert_close(fn(x, y), (x @ y).tanh())
    (record,) = [r for r in aotpack.trace.read_trace(str(out)) if r["graph"]]
    assert record["backend"] == "eager" and record["graph"]["ops"] >= 2


def test_a_failing_recorder_never_breaks_the_program(tmp_path, monkeypatch):
    import aotpack.repro.script as script

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(script, "save_repro", broken)
    torch._dynamo.reset()
    with aotpack.trace(tmp_path / "t"):
        out = torch.compile(lambda x: x * 3, backend="eager")(torch.ones(2))
    torch.testing.assert_close(out, torch.full((2,), 3.0))
    (record,) = aotpack.trace.read_trace(str(tmp_path / "t"))
    assert record["recorder_errors"] == ["runnable: OSError: disk full"] and record["graph"] is None


# -- the report, in real headless Chromium -------------------------------------------------
def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:  # `make test` installs it; a missing browser must fail, not skip
        pytest.fail("chromium is not installed: run `make test` (installs Debian's chromium)", pytrace=False)
    return exe


def run_chromium(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium-profile'}"]
    return subprocess.run([chromium(), *flags, *args], capture_output=True, text=True, timeout=120)


def test_report_in_headless_chromium(traced, tmp_path):
    out, records = traced
    from aotpack.cli import main

    report = tmp_path / "report.html"
    assert main(["report", out, "-o", str(report)]) == 0
    page = report.read_text()
    assert "<link" not in page and "src=\"http" not in page  # self-contained: nothing to fetch
    dom = run_chromium(["--dump-dom", report.as_uri()], tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    graphs = sum(1 for r in records if r["graph"])
    assert f'data-graph-count="{graphs}"' in html
    # the chart is drawn by the page's script: its bars exist only if it ran in the browser
    assert len(re.findall(r'class="bar[ "]', html)) == graphs
    assert f"{graphs} graphs charted" in html
    assert "print(&quot;graph break here&quot;)" in html or 'print("graph break here")' in html
    assert "Failed to trace builtin operator" in html
    assert html.count('class="compile"') == len(records)
    assert 'class="hl"' in html  # the runnable scripts, highlighted
    link = re.search(r'class="runnable-link" href="([^"]+)"', html).group(1)
    assert os.path.exists(os.path.join(tmp_path, link))
    shot = tmp_path / "report.png"
    run_chromium([f"--screenshot={shot}", "--window-size=1280,1600", report.as_uri()], tmp_path)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_report_on_a_missing_trace_is_one_clear_error(tmp_path, capsys):
    from aotpack.cli import main

    assert main(["report", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no trace.jsonl" in err and "hint:" in err


def test_trace_module_is_callable_and_lists_graphs(tmp_path):
    torch._dynamo.reset()
    with aotpack.trace(tmp_path, save_inputs=False) as rec:
        torch.compile(lambda x: x.exp(), backend="eager")(torch.ones(3))
    assert rec.records == 1
    assert not glob.glob(str(tmp_path / "graphs" / "*" / "storages" / "*"))
    (record,) = aotpack.trace.read_trace(str(tmp_path))
    proc = run_fresh([str(tmp_path / record["graph"]["runnable"])])
    assert "ran with backend eager: ok" in proc.stdout
    assert aotpack.trace.backend is aotpack.tracing.backend and callable(aotpack.trace)
    assert type(sys.modules["aotpack.tracing"]) is types.ModuleType  # an ordinary module


def test_tracing_leaves_torch_s_trace_logger_as_it_was(tmp_path):
    """Nested recorders, stopped in any order: the last one puts back the level and the
    propagate flag torch's trace logger had (records then reach the user's handlers again)."""
    from aotpack import _torch_compat as compat

    logger = compat.trace_logger()
    before = (logger.level, logger.propagate, list(logger.handlers))
    from aotpack.tracing.recorder import Recorder

    outer = Recorder(tmp_path / "a", save_inputs=False).start()
    inner = Recorder(tmp_path / "b", save_inputs=False).start()
    assert logger.propagate is False
    outer.stop()  # the first to start stops first
    assert logger.propagate is False  # inner still records
    inner.stop()
    assert (logger.level, logger.propagate, list(logger.handlers)) == before


def test_the_compiler_hook_is_there_only_while_a_recorder_records_graphs(tmp_path):
    """The hook on dynamo's compiler call (_torch_compat.install_compiler_hook) is torch's
    own method again once the last graph-recording recorder stops."""
    from torch._dynamo.output_graph import OutputGraph

    before = OutputGraph.call_user_compiler
    with aotpack.trace(tmp_path / "log-only", graphs=False):
        assert OutputGraph.call_user_compiler is before  # a log-only recorder needs no hook
        with aotpack.trace(tmp_path / "a", save_inputs=False):
            assert OutputGraph.call_user_compiler is not before
        assert OutputGraph.call_user_compiler is before
    assert OutputGraph.call_user_compiler is before


def test_a_reused_trace_folder_keeps_every_run_s_graphs(tmp_path):
    """Two processes tracing into one folder: compile ids restart at 0/0 in each, and
    neither run's runnable replaces the other's."""
    prog = tmp_path / "prog.py"
    prog.write_text("import sys, torch\n"
                    "f = torch.compile(lambda x: x.cos() * float(sys.argv[1]), backend='eager')\n"
                    "f(torch.randn(3))\n")
    out = tmp_path / "trace"
    for scale in ("2", "3"):
        run_fresh([str(prog), scale], env={"AOTPACK_TRACE": str(out)})
    records = aotpack.trace.read_trace(str(out))
    assert [r["compile_id"] for r in records] == ["0/0", "0/0"] and records[0]["run"] != records[1]["run"]
    runnables = [r["graph"]["runnable"] for r in records]
    assert len(set(runnables)) == 2 and all(os.path.exists(out / p) for p in runnables)
    report = tmp_path / "r.html"
    from aotpack.cli import main

    assert main(["report", str(out), "-o", str(report)]) == 0
    assert len(set(re.findall(r'<section class="compile" id="([^"]+)"', report.read_text()))) == 2


def test_report_escapes_a_crafted_compile_id_and_runs_no_injected_script(tmp_path):
    import json

    out = tmp_path / "trace"
    out.mkdir()
    evil = '"><script>document.title="pwned"</script><a x="'
    (out / "trace.jsonl").write_text(json.dumps({"compile_id": evil, "run": evil, "function": "<b>f</b>",
                                                 "status": "ok", "graph_breaks": [], "guards": []}) + "\n")
    report = tmp_path / "r.html"
    from aotpack.cli import main

    assert main(["report", str(out), "-o", str(report)]) == 0
    page = report.read_text()
    assert "<script>document.title" not in page and "Content-Security-Policy" in page
    dom = run_chromium(["--dump-dom", report.as_uri()], tmp_path)
    assert dom.returncode == 0 and "pwned" not in re.search(r"<title>(.*?)</title>", dom.stdout).group(1)
