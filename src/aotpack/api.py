"""The top of the pipeline: ``compile`` (capture -> backend -> Package) and ``inspect``.

``load`` lives in runtime.py, which the load path imports alone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from .backends import get_backend
from .capture import capture
from .package import Package
from .package.reader import PackageReader
from .summary import Inspection

__all__ = ["compile", "inspect"]


def compile(target: Callable, args: tuple = (), kwargs: dict | None = None, *, backend: Any = "aoti",
            dynamic=None, options: dict | None = None, variant: str = "default",
            examples: bool = True, progress: Callable[[str], None] | None = None) -> Package:
    """Compile a function or nn.Module ahead of time into a Package.

    Args:
      target: the function or nn.Module to compile.
      args, kwargs: example inputs: tensors, nested tuples/lists/dicts of tensors, and
        Python values (which are frozen into the package and guarded).
      backend: ``"aoti"`` (AOTInductor, default), ``"eager"``, or an object following
        ``aotpack.backends.Backend``.
      dynamic: None (static shapes), True (every dimension may vary), or
        ``{"x": {0: Dim("batch", min=1, max=4096)}}`` keyed by parameter name.
      options: backend options (for aoti: inductor config, e.g. ``{"max_autotune": True}``).
      variant: the variant's name in the package.
      examples: store the example inputs in the package (used by ``aotpack repro``).
      progress: called with a line of text at each long step (the CLI prints them).
    Returns:
      Package; ``.save(path)`` writes it.
    Raises:
      CaptureError: the program cannot be captured as one graph (names file:line).

    Example:
        >>> pkg = aotpack.compile(model, (torch.randn(8, 512),), backend="aoti")  # doctest: +SKIP
        >>> pkg.save("mlp.aot")
    """
    say = progress or (lambda line: None)
    be = get_backend(backend)
    t0 = time.perf_counter()
    say(f"capturing {getattr(target, '__qualname__', type(target).__qualname__)} with torch.export")
    captured = capture(target, args, kwargs, dynamic=dynamic)
    say(f"captured {captured.name}: {len(captured.graph_module.graph.nodes)} graph nodes, "
        f"{len(captured.weights)} weights ({time.perf_counter() - t0:.1f}s); compiling with {be.name}")
    t1 = time.perf_counter()
    compiled = be.compile(captured, dict(options or {}))
    say(f"compiled with {be.name} in {time.perf_counter() - t1:.1f}s")
    return Package.from_captured(captured, [(variant, be, compiled)], examples=examples)


def inspect(path: str | os.PathLike) -> Inspection:
    """Describe a package without running any of its code.

    Returns:
      Inspection: ``str(...)`` is the text ``aotpack inspect`` prints; ``.manifest`` is
      the raw manifest; ``.verified`` says whether every member matched its sha256.

    Example:
        >>> print(aotpack.inspect("mlp.aot"))                     # doctest: +SKIP
    """
    with PackageReader(path) as r:
        problem = None
        try:
            r.verify()
        except Exception as e:  # noqa: BLE001 - reported, not raised: inspect shows what it can
            problem = str(e)
        sizes = {n: r.view(n).nbytes for n in r.names()}
        return Inspection(os.fspath(path), r.manifest, sizes, problem)
