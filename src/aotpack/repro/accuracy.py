"""One definition of an accuracy failure: the repro script's ``accuracy`` mode and the
minifier's ``failure="accuracy"`` both use ``compare``.

A backend's output is accurate when its error against a float64 run of the same graph
is at most twice eager's own error plus a tolerance scaled by the output's size (1e-5;
1e-2 for float16/bfloat16), the test torch's own accuracy minifier makes
(``torch._dynamo.utils.same`` with ``fp64_ref``). Against eager alone, a backend that
is *more* accurate than eager (a fused reduction) would count as a failure. Integer and
bool outputs must be equal; non-tensor outputs compare with ``==``.

The functions here use only torch: the repro script embeds their source, so it runs
without aotpack.

Example:
    >>> import torch
    >>> x = torch.randn(100)
    >>> [ok for ok, _ in compare([x.double().sum()], [x.sum()], [x.sum() + 1])]
    [False]
"""

from __future__ import annotations

import torch

__all__ = ["compare", "flat", "to_float64"]


def flat(out) -> list:
    """A result's leaves, in order (tuples and lists flattened, None dropped)."""
    if isinstance(out, (list, tuple)):
        return [y for x in out for y in flat(x)]
    return [] if out is None else [out]


def to_float64(x):
    """``x`` in double precision (complex128), for the reference run; others as they are."""
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        return x.detach().to(torch.float64)
    if isinstance(x, torch.Tensor) and x.is_complex():
        return x.detach().to(torch.complex128)
    return x


def compare(ref64: list, eager: list, result: list, tol: float | None = None) -> list[tuple[bool, str]]:
    """``(accurate, description)`` for each output: ``result`` (the backend's) against
    ``ref64`` (float64 run) and ``eager``'s own error. ``tol``: the absolute tolerance
    on top of eager's error (default by dtype, see the module)."""
    if len(result) != len(eager):
        return [(False, f"returned {len(result)} outputs, eager {len(eager)}")]
    out = []
    for r64, e, b in zip(ref64, eager, result):
        if not isinstance(e, torch.Tensor):
            ok = e == b
            out.append((ok, f"{b!r} vs eager {e!r}"))
        elif not isinstance(b, torch.Tensor) or b.shape != e.shape:
            out.append((False, f"{e.dtype}{list(e.shape)}: got {type(b).__name__}"
                               f"{list(b.shape) if isinstance(b, torch.Tensor) else ''}"))
        elif not (e.is_floating_point() or e.is_complex()):
            out.append((torch.equal(e, b), f"{e.dtype}{list(e.shape)} exact"))
        else:
            err_e = (e.to(r64.dtype) - r64).abs().max().item() if e.numel() else 0.0
            err_b = (b.to(r64.dtype) - r64).abs().max().item() if b.numel() else 0.0
            t = tol if tol is not None else (1e-2 if e.dtype in (torch.float16, torch.bfloat16) else 1e-5)
            scale = 1 + r64.abs().max().item() if r64.numel() else 1
            ok = err_b == err_b and err_b <= 2 * err_e + t * scale  # (err_b == err_b: not NaN)
            out.append((ok, f"{e.dtype}{list(e.shape)} max |err| vs float64: eager {err_e:.3e}, backend {err_b:.3e}"))
    return out
