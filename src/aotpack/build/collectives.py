"""Collectives in a captured graph: which process groups a program's collectives run on
(a program that calls them is one rank's part of a sharded model, placed by
aotpack.distributed.compile and refused elsewhere), and the DTensor models torch.export
cannot capture.

    >>> collective_groups(captured.graph_module)            # doctest: +SKIP
    ['0']
"""

from __future__ import annotations

import torch

from .. import _torch_compat as compat
from ..errors import CaptureError

__all__ = ["collective_groups", "refuse_dtensor"]

# torch.ops namespaces of the functional collectives torch.export records.
_COLLECTIVE_NAMESPACES = ("_c10d_functional", "c10d_functional", "_c10d_functional_autograd")


def collective_groups(graph_module: torch.fx.GraphModule) -> list[str]:
    """Names of the process groups the graph's collectives run on (empty: no collectives)."""
    names = []
    for node in graph_module.graph.nodes:
        op = node.target
        if node.op != "call_function" or getattr(op, "namespace", None) not in _COLLECTIVE_NAMESPACES:
            continue
        schema = op._schema
        for i, arg in enumerate(schema.arguments):
            if arg.name == "group_name":
                value = node.args[i] if i < len(node.args) else node.kwargs.get("group_name")
                if isinstance(value, str) and value not in names:
                    names.append(value)
    return names




def refuse_dtensor(target) -> None:
    """CaptureError for a module with DTensor parameters, before torch.export fails on it
    with a message about pytree constants."""
    if not (isinstance(target, torch.nn.Module) and torch.distributed.is_available()
            and torch.distributed.is_initialized()):  # (DTensors need a process group)
        return
    from torch.distributed.tensor import DTensor

    for name, p in [*target.named_parameters(), *target.named_buffers()]:
        if isinstance(p, DTensor):
            raise CaptureError(
                f"{type(target).__qualname__}.{name} is a DTensor (parallelize_module): torch.export, which "
                f"aotpack captures with, cannot capture DTensor models in torch {compat.torch_version()} "
                "(pytorch/pytorch#175467)",
                hint="shard the weights yourself and call collectives from "
                     "torch.distributed._functional_collectives (as gpt-fast does), then compile with "
                     "aotpack.distributed.compile on every rank")


