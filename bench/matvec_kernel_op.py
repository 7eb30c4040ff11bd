"""An experiment: batch-1 products with a long inner dimension as a hand-written Triton kernel (issue 30).

Not part of aotpack (yet). ``bench/matvec_kernel.py`` found, on an H200, one product where
inductor's tuned reduction is well below a plain Triton kernel: the down projection
(4096 x 11264), 29.5 against 22.3 µs (3.13 against 4.14 TB/s); the others were within 1%.
``bench/decode_profile.py --options cdt-math-matvec`` captures the decode step's
``F.linear`` calls of one row whose inner dimension is at least twice the outputs as
``aotpack_bench::matvec``, a ``torch.library.triton_op`` that AOTInductor compiles into
the package. Its input is then stored by the kernel before it (SiLU(gate)·up as a
pointwise kernel instead of the down projection's prologue). On the CPU the op is
``F.linear``.

    >>> import torch
    >>> from matvec_kernel_op import matvec
    >>> x, w = torch.randn(1, 1024), torch.randn(256, 1024)
    >>> torch.allclose(matvec(x, w), x @ w.T, atol=1e-4)
    True
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["matvec", "matvec_kernel"]

# H200, bf16, 4096 x 11264 in a CUDA graph of 16 weights (bench/matvec_kernel.py): one
# output row a program, 512 columns a step, 2 warps: 22.3 µs, 98% of the read bandwidth
ROWS, COLUMNS, WARPS = 1, 512, 2

try:  # triton ships with CUDA builds of torch; CPU builds run F.linear
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the torch build
    triton = None


if triton is not None:
    @triton.jit
    def _matvec_kernel(X, W, Y, K, BN: tl.constexpr, BK: tl.constexpr):
        rows = tl.program_id(0) * BN + tl.arange(0, BN)
        acc = tl.zeros([BN, BK], dtype=tl.float32)
        for k in range(0, K, BK):
            cols = k + tl.arange(0, BK)
            w = tl.load(W + rows[:, None] * K + cols[None, :], eviction_policy="evict_first")
            x = tl.load(X + cols, eviction_policy="evict_last")
            acc += w.to(tl.float32) * x.to(tl.float32)[None, :]
        tl.store(Y + rows, tl.sum(acc, 1).to(Y.dtype.element_ty))

    @torch.library.triton_op("aotpack_bench::matvec", mutates_args=())
    def matvec(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``x @ w.T`` for ``x`` of one row [1, K] and ``w`` [N, K], both contiguous."""
        n, k = w.shape
        y = torch.empty((1, n), dtype=x.dtype, device=x.device)
        torch.library.wrap_triton(_matvec_kernel)[(n // ROWS,)](x, w, y, k, BN=ROWS, BK=COLUMNS, num_warps=WARPS)
        return y

    @matvec.register_kernel("cpu")
    def _matvec_cpu(x, w):
        return torch.nn.functional.linear(x, w)
else:  # pragma: no cover - depends on the torch build
    @torch.library.custom_op("aotpack_bench::matvec", mutates_args=())
    def matvec(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x, w)

    @matvec.register_fake
    def _(x, w):
        return x.new_empty((1, w.shape[0]))


def _fits(x, w, bias, ratio: float) -> bool:
    """A product of one row (static sizes) whose inner dimension is at least ``ratio``
    times its outputs, in whole steps of the kernel, on CUDA in 16-bit floats."""
    shape = tuple(x.shape)
    return (bias is None and w.dim() == 2 and x.is_cuda and x.dtype in (torch.bfloat16, torch.float16)
            and w.dtype == x.dtype and all(isinstance(s, int) for s in shape) and x.numel() == shape[-1]
            and isinstance(w.shape[0], int) and shape[-1] >= ratio * w.shape[0] and shape[-1] % COLUMNS == 0
            and w.shape[0] % ROWS == 0)


@contextlib.contextmanager
def matvec_kernel(ratio: float = 2.0):
    """While tracing, ``F.linear`` calls that ``_fits`` (inner dimension at least
    ``ratio`` times the outputs) are ``aotpack_bench::matvec`` (others run as before).
    Restored on exit. 2.0 takes the down projection and, in a model with half as many KV
    heads as query heads, the k and v projections; 2.5 the down projection alone."""
    import torch.nn.functional as F

    linear = F.linear

    def routed(x, w, bias=None):
        if not _fits(x, w, bias, ratio):
            return linear(x, w, bias)
        return matvec(x.reshape(1, x.shape[-1]).contiguous(), w.contiguous()).view(*x.shape[:-1], w.shape[0])

    F.linear = routed
    try:
        yield
    finally:
        F.linear = linear
