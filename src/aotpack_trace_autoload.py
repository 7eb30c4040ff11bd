"""Starts aotpack's compile trace in programs that never import aotpack::

    AOTPACK_TRACE=out/ python train.py

torch calls ``autoload`` during ``import torch`` (the ``torch.backends`` entry-point
group: torch's plugin hook for out-of-tree backends; ``TORCH_DEVICE_BACKEND_AUTOLOAD=0``
turns every such hook off). Without AOTPACK_TRACE it returns at once and imports
nothing. With it, it waits for ``torch._dynamo`` to be imported (torch is complete by
then; torch.compile imports it on first use) and starts ``aotpack.trace`` there.
This module is top-level and tiny on purpose: torch is half-imported when it runs.
"""

import os
import sys


def autoload() -> None:
    if not os.environ.get("AOTPACK_TRACE"):
        return
    try:
        sys.meta_path.insert(0, _StartAfterImport("torch._dynamo"))
    except Exception as e:  # noqa: BLE001 - never break `import torch`
        print(f"aotpack: AOTPACK_TRACE ignored: {type(e).__name__}: {e}", file=sys.stderr)


class _StartAfterImport:
    """A meta-path finder that runs the recorder's start once ``name`` has executed."""

    def __init__(self, name: str):
        self.name = name

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        import importlib.util

        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original = spec.loader.exec_module

        def exec_module(module):
            original(module)
            try:
                from aotpack.tracing import start_from_env

                start_from_env()
            except Exception as e:  # noqa: BLE001 - the program runs on without the trace
                print(f"aotpack: AOTPACK_TRACE could not start: {type(e).__name__}: {e}", file=sys.stderr)

        spec.loader.exec_module = exec_module
        return spec
