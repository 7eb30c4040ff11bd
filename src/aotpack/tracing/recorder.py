"""The recorder: every graph torch.compile builds -> trace.jsonl + a runnable script.

Two sources, joined by torch's compile id:

1. torch's *structured trace* (the events TORCH_TRACE writes and tlparse reads): a
   logging handler on it collects, per compile, where dynamo started, graph-break
   reasons, recompile reasons, the guards, cache hits and the compile metrics.
2. a hook on the call from dynamo to the backend (any backend): it sees the graph and
   its real example inputs, writes ``graphs/<id>/runnable.py`` through
   ``aotpack.repro`` (inputs in content-addressed storages) *before* the backend runs,
   so a backend that crashes still leaves its graph behind.

Symbolic sizes are written as the concrete values they had (SymNode hints, read
without adding guards), so a runnable never holds lines like ``s0*s1**2 = 36``.
Graphs with collectives get a preamble that starts torch's fake process group with
the recorded rank and world size.

Nothing the recorder does may break the user's program: its own failures are counted
and written to the record (``recorder_errors``), never raised.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections import defaultdict

import torch

from .. import _torch_compat as compat
from ..tree import dtype_name
from .log import TraceLog

__all__ = ["Recorder", "active_recorders"]

# The recorders started and not stopped, in start order. Process-wide on purpose (not a
# ContextVar, as the cache's contexts are): what they hook is process-wide too (torch's
# trace logger, dynamo's compiler call), and a compile runs in whichever thread first
# calls the compiled function; a per-context list would silently drop the compiles of a
# serving thread pool or of a library's worker thread.
_ACTIVE: list[Recorder] = []
# torch's trace logger is one per process: its level and propagate flag as they were
# before the first recorder started, put back when the last one stops.
_LOGGER_SETTINGS: dict = {}
_hook_lock = threading.Lock()
_remove_hook = None


def active_recorders() -> list[Recorder]:
    return list(_ACTIVE)


def _dispatch_compile(gm, example_inputs, compiler_fn, call):
    recorders = [r for r in _ACTIVE if r.record_graphs]
    if not recorders:
        return call()
    return recorders[-1].on_compile(gm, example_inputs, backend_name(compiler_fn), call)


def _ensure_hook() -> None:
    global _remove_hook
    with _hook_lock:
        if _remove_hook is None:
            _remove_hook = compat.install_compiler_hook(_dispatch_compile)


def _release_hook() -> None:
    global _remove_hook
    with _hook_lock:
        if _remove_hook is not None and not any(r.record_graphs for r in _ACTIVE):
            _remove_hook()
            _remove_hook = None


class _Handler(logging.Handler):
    def __init__(self, recorder: Recorder):
        super().__init__(logging.DEBUG)
        self.recorder = recorder

    def emit(self, record: logging.LogRecord) -> None:
        metadata = getattr(record, "metadata", None)
        if isinstance(metadata, dict):
            self.recorder.on_event(metadata, getattr(record, "payload", None))


_INTERESTING = {"dynamo_start", "artifact", "dynamo_cpp_guards_str", "compilation_metrics"}
_TORCH_DIR = os.path.dirname(torch.__file__)


def _is_torch_file(path: str) -> bool:
    return path.startswith(_TORCH_DIR)


def _compile_id(meta: dict) -> str | None:
    if meta.get("frame_id") is None:
        return None
    return f"{meta['frame_id']}/{meta['frame_compile_id']}"


def backend_name(compiler_fn) -> str:
    for attr in ("compiler_name", "name", "__name__"):
        value = getattr(compiler_fn, attr, None)
        if isinstance(value, str):
            return value
    return type(compiler_fn).__name__


def _parse_graph_break(text: str) -> dict:
    """torch's graph-break text -> where, a one-line reason, the user's source line."""
    where = re.search(r"Graph break in user code at (\S+)", text)
    body = text.split("Graph Break Reason:", 1)[-1]
    body = body.split("User code traceback:", 1)[0]
    lines = [ln.strip() for ln in body.strip().splitlines() if ln.strip()]
    explanation = next((ln.removeprefix("Explanation:").strip() for ln in lines if ln.startswith("Explanation:")), "")
    headline = next((ln for ln in lines if not ln.startswith(("Encountered graph break", "Explanation:", "Hint:"))),
                    lines[0] if lines else "graph break")
    reason = f"{headline}: {explanation}" if explanation else headline
    code = None
    tb = text.split("User code traceback:", 1)
    if len(tb) == 2:
        frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)\n\s+(.*)', tb[1].split("Traceback (most recent", 1)[0])
        if frames:
            code = frames[-1][3].strip()
    return {"where": where.group(1) if where else None, "reason": reason, "code": code, "detail": text.strip()}


def _guard_lines(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        line = line.strip().lstrip("|+- ").rstrip()
        if not line or line.startswith(("TREE_GUARD_MANAGER", "RootGuardManager", "GuardManager:", "DictGuardManager")):
            continue
        out.append(re.sub(r"\s{2,}#", "  #", line))
    return out


def _input_meta(gm: torch.fx.GraphModule, example_inputs) -> list[dict]:
    names = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
    out = []
    for name, x in zip(names, example_inputs):
        if isinstance(x, torch.Tensor):
            shape = [compat.symint_hint(s) for s in x.shape]
            stride = [compat.symint_hint(s) for s in x.stride()]
            extra = {"placements": [repr(p) for p in x.placements]} if type(x).__name__ == "DTensor" else {}
            out.append({"name": name, "kind": "tensor", "type": type(x).__name__, **extra,
                        "dtype": dtype_name(x.dtype), "shape": shape, "stride": stride,
                        "device": str(x.device), "requires_grad": bool(x.requires_grad)})
        elif isinstance(x, torch.SymInt):
            out.append({"name": name, "kind": "symint", "value": compat.symint_hint(x), "symbol": str(x)})
        elif type(x).__name__ == "DeviceMesh":
            out.append({"name": name, "kind": "mesh", "value": repr(x)})
        else:
            out.append({"name": name, "kind": "const", "value": repr(x)})
    return out


def _collective_preamble(gm: torch.fx.GraphModule, example_inputs) -> str:
    """Setup code for graphs that call collectives or take DTensors/DeviceMeshes:
    torch's fake process group (no communication, same rank and world size), so the
    script runs alone on one machine."""
    uses = any("c10d" in str(n.target) or "distributed" in str(getattr(n.target, "__module__", ""))
               for n in gm.graph.nodes if n.op == "call_function")
    uses = uses or any(type(x).__name__ in ("DTensor", "DeviceMesh") for x in example_inputs)
    if not uses:
        return ""
    import torch.distributed as dist

    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
    return ("# The graph calls collectives: run them on torch's fake process group (no communication).\n"
            + compat.fake_process_group_source(rank, world))


class Recorder:
    """Records compiles into ``out_dir`` while started.

    Args:
      out_dir: where trace.jsonl and graphs/ go (created).
      record_graphs: write runnable.py for each graph (False: the log alone).
      save_inputs: store the real inputs (False: runnables use random data of the
        recorded dtypes/shapes/strides).
    """

    def __init__(self, out_dir: str | os.PathLike, *, record_graphs: bool = True, save_inputs: bool = True):
        self.out_dir = os.path.abspath(os.fspath(out_dir))
        os.makedirs(os.path.join(self.out_dir, "graphs"), exist_ok=True)
        self.record_graphs = record_graphs
        self.save_inputs = save_inputs
        self.log = TraceLog(self.out_dir)
        self._pending: dict[str, dict] = defaultdict(dict)
        self._lock = threading.Lock()
        self._handler = _Handler(self)
        self.records = 0
        # compile ids restart at 0/0 in every process: a run id keeps a reused folder's
        # earlier graphs (graphs/<run>_<compile id>/) and tells its records apart
        self.run = f"{os.getpid()}-{time.time_ns() // 1_000_000:x}"

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> Recorder:
        logger = compat.trace_logger()
        if not _ACTIVE:  # the first recorder saves torch's settings
            _LOGGER_SETTINGS.update(level=logger.level, propagate=logger.propagate)
        logger.setLevel(logging.DEBUG)
        logger.propagate = False  # trace records are ours: kept out of the user's root handlers
        logger.addHandler(self._handler)
        _ACTIVE.append(self)
        if self.record_graphs:
            _ensure_hook()
        return self

    def stop(self) -> None:
        logger = compat.trace_logger()
        logger.removeHandler(self._handler)
        if self in _ACTIVE:
            _ACTIVE.remove(self)
            if not _ACTIVE:  # the last recorder puts torch's settings back
                logger.setLevel(_LOGGER_SETTINGS["level"])
                logger.propagate = _LOGGER_SETTINGS["propagate"]
        _release_hook()
        with self._lock:
            leftovers = list(self._pending.items())
            self._pending.clear()
        for cid, rec in leftovers:  # compiles that never reported metrics (interrupted)
            if rec.get("graph") or rec.get("graph_breaks"):
                self._write(cid, rec, {"status": "unfinished"})

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- structured-trace events -------------------------------------------------------
    def on_event(self, meta: dict, payload: str | None) -> None:
        try:
            self._on_event(meta, payload)
        except Exception as e:  # noqa: BLE001 - tracing must never break the program
            cid = _compile_id(meta)
            if cid:
                with self._lock:
                    self._pending[cid].setdefault("recorder_errors", []).append(f"{type(e).__name__}: {e}")

    def _on_event(self, meta: dict, payload: str | None) -> None:
        cid = _compile_id(meta)
        if cid is None or not _INTERESTING.intersection(meta):
            return
        t0 = time.perf_counter()
        with self._lock:
            rec = self._pending[cid]
            if "dynamo_start" in meta:
                stack = meta["dynamo_start"].get("stack") or []
                # torch's events name files by number (its intern table)
                frames = [(compat.interned_path(f.get("filename")) or str(f.get("filename")), f.get("line"),
                           f.get("name")) for f in stack]
                rec["stack"] = [f"{p}:{line} in {name}" for p, line, name in frames if not _is_torch_file(p)]
            elif "artifact" in meta:
                name = meta["artifact"].get("name", "")
                if name == "dynamo_graph_break_reason" and payload:
                    rec.setdefault("graph_breaks", []).append(_parse_graph_break(payload))
                elif name == "recompile_reasons" and payload:
                    import json

                    try:
                        reasons = json.loads(payload)
                    except ValueError:
                        reasons = [payload]
                    rec["recompile_reasons"] = reasons if isinstance(reasons, list) else [str(reasons)]
                elif (m := re.match(r"(fx_graph|aotautograd)_cache_(hit|miss|bypass)$", name)):
                    key = "fx_graph" if m.group(1) == "fx_graph" else "aot_autograd"
                    rec.setdefault("cache", {})[key] = m.group(2)
            elif "dynamo_cpp_guards_str" in meta and payload:
                rec["guards"] = _guard_lines(payload)
            elif "compilation_metrics" in meta:
                metrics = meta["compilation_metrics"]
                done = self._pending.pop(cid)
            rec["trace_overhead_s"] = rec.get("trace_overhead_s", 0.0) + time.perf_counter() - t0
        if "compilation_metrics" in meta:
            self._write(cid, done, metrics)

    def _write(self, cid: str, rec: dict, metrics: dict) -> None:
        fail = metrics.get("fail_type")
        graph = rec.get("graph")
        status = metrics.get("status") or ("failed" if fail else "ok" if graph else "no graph")
        record = {
            "compile_id": metrics.get("compile_id") or cid,
            "run": self.run,
            "function": metrics.get("co_name"),
            "file": metrics.get("co_filename"),
            "line": metrics.get("co_firstlineno"),
            "source": f"{metrics.get('co_filename')}:{metrics.get('co_firstlineno')}" if metrics.get("co_filename")
            else None,
            "status": status,
            "fail_reason": f"{fail}: {metrics.get('fail_reason')}" if fail else None,
            "graph_breaks": rec.get("graph_breaks", []),
            "restart_reasons": metrics.get("restart_reasons") or [],
            "recompile_reasons": rec.get("recompile_reasons", []),
            "guards": rec.get("guards", []),
            "inputs": rec.get("inputs", []),
            "backend": rec.get("backend"),
            "compile_time_s": metrics.get("entire_frame_compile_time_s"),
            "backend_time_s": metrics.get("backend_compile_time_s", rec.get("backend_time_s")),
            "cache": rec.get("cache", {}),
            "graph": graph,
            "stack": rec.get("stack", []),
            "start_time": metrics.get("start_time"),
            "trace_overhead_s": round(rec.get("trace_overhead_s", 0.0), 6),
            "torch_logging_overhead_s": metrics.get("structured_logging_overhead_s"),
        }
        if rec.get("recorder_errors"):
            record["recorder_errors"] = rec["recorder_errors"]
        self.log.write(record)
        self.records += 1

    # -- graphs ------------------------------------------------------------------------
    def on_compile(self, gm, example_inputs, backend: str, call):
        cid = compat.current_compile_id() or f"unknown/{time.monotonic_ns()}"
        base = cid.split("_")[0]
        t0 = time.perf_counter()
        info: dict = {"backend": backend}
        try:
            info["inputs"] = _input_meta(gm, example_inputs)
            folder = os.path.join(self.out_dir, "graphs", f"{self.run}_{base.replace('/', '_')}")
            from ..repro.script import save_repro

            save_repro(gm, list(example_inputs), folder, filename="runnable.py", save_inputs=self.save_inputs,
                       config=compat.config_changes(),
                       preamble=_collective_preamble(gm, example_inputs) + compat.triton_kernel_setup(gm), default_backend="eager")
            ops = sum(n.op in ("call_function", "call_method", "call_module") for n in gm.graph.nodes)
            info["graph"] = {"nodes": len(gm.graph.nodes), "ops": ops,
                             "runnable": os.path.relpath(os.path.join(folder, "runnable.py"), self.out_dir)}
        except Exception as e:  # noqa: BLE001 - tracing must never break the program
            info["recorder_errors"] = [f"runnable: {type(e).__name__}: {e}"]
        overhead = time.perf_counter() - t0
        with self._lock:
            rec = self._pending[base]
            errors = rec.get("recorder_errors", []) + info.pop("recorder_errors", [])
            rec.update(info)
            if errors:
                rec["recorder_errors"] = errors
            rec["trace_overhead_s"] = rec.get("trace_overhead_s", 0.0) + overhead
        t1 = time.perf_counter()
        try:
            return call()
        finally:
            with self._lock:
                self._pending[base]["backend_time_s"] = time.perf_counter() - t1
