"""Compile traces: every graph torch.compile builds, as a log line and a runnable script.

    with aotpack.trace("out/"):             # around unmodified code
        model = torch.compile(model); model(x)

    AOTPACK_TRACE=out/ python train.py      # programs you cannot edit

    torch.compile(model, backend=aotpack.trace.backend("inductor", "out/"))

    aotpack report out/ -o report.html      # one self-contained HTML page

``out/trace.jsonl`` has one line per compile (log.py lists the fields);
``out/graphs/<frame>_<compile>/runnable.py`` reruns that graph alone
(``python runnable.py`` runs it eagerly; ``python runnable.py run --backend inductor``
or ``accuracy`` compiles it again).

``aotpack.trace`` is the function ``trace`` below, carrying this module's public names
as attributes (``aotpack.trace.backend``, ``aotpack.trace.read_trace``...): one name to
call and to reach the rest by, as ``torch.compile`` beside ``torch.compiler``. (Plain
attributes of a function: no module subclass or ``sys.modules`` swap.)
"""

from __future__ import annotations

import contextlib
import os

from .log import TRACE_FILE, read_trace
from .recorder import Recorder
from .report import render_report, write_report

__all__ = ["trace", "backend", "read_trace", "write_report", "render_report", "Recorder", "TRACE_FILE",
           "start_from_env"]


@contextlib.contextmanager
def trace(out_dir: str | os.PathLike, *, save_inputs: bool = True, graphs: bool = True):
    """Record every torch.compile compile in this block into ``out_dir``.

    Args:
      out_dir: folder for trace.jsonl and graphs/ (created; an existing trace is appended to).
      save_inputs: store each graph's real inputs beside its runnable (False: the
        runnable uses random data of the same dtype/shape/stride).
      graphs: write a runnable script per graph (False: the log alone).

    Example:
        >>> with aotpack.trace("out"):                                  # doctest: +SKIP
        ...     torch.compile(model)(x)
    """
    recorder = Recorder(out_dir, record_graphs=graphs, save_inputs=save_inputs).start()
    try:
        yield recorder
    finally:
        recorder.stop()


def backend(inner="inductor", out_dir: str | os.PathLike | None = None, *, save_inputs: bool = True):
    """A torch.compile backend that records each graph, then compiles it with ``inner``
    (a backend name or callable). ``out_dir`` defaults to ``$AOTPACK_TRACE`` or
    ``./aotpack_trace``. The recorder stays on for the life of the process.

    Example:
        >>> torch.compile(model, backend=aotpack.trace.backend("inductor", "out"))  # doctest: +SKIP
    """
    import torch

    from .. import _torch_compat as compat
    from .recorder import active_recorders, backend_name

    out_dir = os.fspath(out_dir or os.environ.get("AOTPACK_TRACE") or "aotpack_trace")
    recorder = next((r for r in active_recorders() if r.out_dir == os.path.abspath(out_dir)), None)
    if recorder is None:
        # the log handler alone: this backend writes the graphs itself (only its own)
        recorder = Recorder(out_dir, record_graphs=False, save_inputs=save_inputs).start()
    compile_inner = compat.dynamo_backend(inner) if isinstance(inner, str) else inner
    name = inner if isinstance(inner, str) else backend_name(inner)

    def aotpack_trace_backend(gm: torch.fx.GraphModule, example_inputs):
        return recorder.on_compile(gm, example_inputs, name, lambda: compile_inner(gm, example_inputs))

    return aotpack_trace_backend


_env_recorder: Recorder | None = None


def start_from_env() -> Recorder | None:
    """Start recording into ``$AOTPACK_TRACE`` for the rest of the process (idempotent);
    None when the variable is unset. Rank-suffixed under torchrun (``out/rank1``)."""
    global _env_recorder
    out = os.environ.get("AOTPACK_TRACE")
    if not out or _env_recorder is not None:
        return _env_recorder
    rank = os.environ.get("RANK")
    if rank not in (None, "0") or os.environ.get("WORLD_SIZE", "1") != "1":
        out = os.path.join(out, f"rank{rank or 0}")
    _env_recorder = Recorder(out).start()
    import atexit

    atexit.register(_env_recorder.stop)
    return _env_recorder


for _name in ("backend", "read_trace", "write_report", "render_report", "Recorder", "TRACE_FILE", "start_from_env"):
    setattr(trace, _name, globals()[_name])
del _name
