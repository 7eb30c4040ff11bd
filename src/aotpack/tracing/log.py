"""``trace.jsonl``: one JSON object a line, one line per compile torch.compile ran.

Fields of a line (absent values are null):

===================  ===============================================================
``compile_id``       torch's id, ``frame/compile`` (``0/1`` = frame 0, recompile 1)
``function``         the compiled frame's function name; ``file``, ``line``, ``source``
``status``           ``ok``, ``no graph`` (nothing to compile), or ``failed``
``graph_breaks``     ``[{"where": file:line, "reason": one line, "code": source line,
                     "detail": torch's full text}]``
``restart_reasons``  why dynamo restarted the frame (a graph break splits it)
``recompile_reasons``  why an earlier compile of the frame could not be reused
``guards``           the guards of the compiled code, one string each
``inputs``           per graph input: ``{"name", "kind": "tensor", "dtype", "shape",
                     "stride", "device", "requires_grad"}`` or ``{"kind": "symint",
                     "value", "symbol"}`` or ``{"kind": "const", "value"}``
``backend``          the torch.compile backend's name
``compile_time_s``   the whole frame's compile; ``backend_time_s``: the backend's share
``cache``            ``{"fx_graph": "hit"|"miss"|"bypass", "aot_autograd": ...}``
``graph``            ``{"nodes", "ops", "runnable": "graphs/<id>/runnable.py"}`` or null
``trace_overhead_s`` time the recorder itself spent on this compile
===================  ===============================================================

Lines are appended and flushed as each compile ends, so a crashed program keeps
everything it compiled before the crash.
"""

from __future__ import annotations

import json
import os
import threading

__all__ = ["TraceLog", "read_trace", "TRACE_FILE"]

TRACE_FILE = "trace.jsonl"


class TraceLog:
    """Appends records to ``<out_dir>/trace.jsonl`` (thread-safe, flushed per line)."""

    def __init__(self, out_dir: str):
        self.path = os.path.join(out_dir, TRACE_FILE)
        self._lock = threading.Lock()

    def write(self, record: dict) -> None:
        line = json.dumps(record, default=repr, sort_keys=False)
        with self._lock, open(self.path, "a") as f:
            f.write(line + "\n")


def read_trace(out_dir: str) -> list[dict]:
    """The records of ``<out_dir>/trace.jsonl`` in order; a torn last line (a process
    killed mid-write) is skipped."""
    from ..errors import AotpackError

    path = os.path.join(os.fspath(out_dir), TRACE_FILE)
    if not os.path.exists(path):
        raise AotpackError(f"no {TRACE_FILE} in {out_dir}",
                           hint="record one with `with aotpack.trace(DIR):` or AOTPACK_TRACE=DIR")
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn line (a process killed mid-write)
            if not isinstance(record, dict) or not isinstance(record.get("compile_id"), str):
                raise AotpackError(f"{path}:{number} is not a compile record (a JSON object with a compile_id)",
                                   hint="trace.jsonl holds what aotpack.trace wrote; record the trace again")
            records.append(record)
    return records
