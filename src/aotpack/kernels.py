"""GPU kernels of aotpack's own, as torch ops that inductor and AOTInductor compile into a
package (``torch.library.triton_op``: the Triton kernel is compiled into the package's
code, so a package needs neither this module nor Triton to run on the GPU).

``aotpack::matvec``: ``x @ w.T`` for one row ``x`` [1, K] and a weight ``w`` [N, K]: one
output row a program, the inner dimension walked 512 columns a step by 2 warps. On an
H200 (bf16) it reads a Llama's down projection (4096 x 11264) at 4.14 TB/s, where
inductor's tuned reduction reaches 3.13 (``bench/matvec_kernel.py``): a decode step is
a chain of such products, and that one is the furthest from the memory's speed in
inductor's hands. ``aotpack.llm.compile`` routes the decode step's products of at
least 2,048 outputs whose inner dimension is at least 2.5 times their outputs through it
on CUDA (``routed_matvec``; ``matvec_kernel=False`` turns it off): 544 and 553 against
523-527 tokens/s for a 3.28B Llama (``bench/decode_profile.py --options
cdt-math-matvec-down,cdt-math``). On the CPU, and without Triton, the op is ``F.linear``.

Loading a package that calls an op of the ``aotpack`` namespace imports this module
itself (``build.rebuild``, ``load.runtime.incompatibilities``): a
fixed module of aotpack's, never one a package names.

    >>> import torch
    >>> from aotpack.kernels import matvec
    >>> x, w = torch.randn(1, 1024), torch.randn(256, 1024)
    >>> torch.allclose(matvec(x, w), x @ w.T, atol=1e-4)
    True
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["matvec", "routed_matvec", "NAMESPACE"]

NAMESPACE = "aotpack"  # the torch.library namespace of this module's ops

# H200, bf16, 4096 x 11264 in a CUDA graph of 16 weights, the best of 141 configs
# (bench/matvec_kernel.py): one output row a program, 512 columns a step, 2 warps
_ROWS, _COLUMNS, _WARPS = 1, 512, 2

try:  # triton ships with CUDA builds of torch; CPU builds run F.linear
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the torch build
    triton = None


def _linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.linear(x, w)


if triton is not None:  # pragma: no cover - needs a CUDA build of torch (tests/models/test_cuda.py)
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

    @torch.library.triton_op(f"{NAMESPACE}::matvec", mutates_args=())
    def matvec(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``x @ w.T`` for ``x`` of one row [1, K] and ``w`` [N, K], both contiguous (on
        CUDA: K a multiple of 512)."""
        n, k = w.shape
        if x.shape != (1, k) or k % _COLUMNS or not (x.is_contiguous() and w.is_contiguous()):
            # (the kernel reads whole steps of 512 columns without masks: past the end otherwise)
            raise ValueError(f"aotpack::matvec takes x [1, K] and w [N, K], contiguous, K a multiple of {_COLUMNS}; "
                             f"got x {list(x.shape)} and w {list(w.shape)}")
        y = torch.empty((1, n), dtype=x.dtype, device=x.device)
        torch.library.wrap_triton(_matvec_kernel)[(n // _ROWS,)](x, w, y, k, BN=_ROWS, BK=_COLUMNS,
                                                                  num_warps=_WARPS)
        return y

    matvec.register_kernel("cpu")(_linear)
else:
    @torch.library.custom_op(f"{NAMESPACE}::matvec", mutates_args=())
    def matvec(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``x @ w.T`` for ``x`` of one row [1, K] and ``w`` [N, K]."""
        return _linear(x, w)

    @matvec.register_fake
    def _(x, w):
        return x.new_empty((1, w.shape[0]))


# Fewer outputs than this: a small product (a k or v projection of a few KV heads) whose
# fusion with what reads it (the cache update) is worth more than its read speed
# (531 against 553 tokens/s when a 3.28B Llama's k and v were routed too)
MIN_OUTPUTS = 2048


def fits(x: torch.Tensor, w: torch.Tensor, bias, ratio: float, min_outputs: int = MIN_OUTPUTS) -> bool:
    """Whether ``F.linear(x, w, bias)`` is a product the kernel takes: one row of static
    sizes, no bias, on CUDA in 16-bit floats, at least ``min_outputs`` outputs, an inner
    dimension of whole 512-column steps and at least ``ratio`` times the outputs."""
    shape = tuple(x.shape)
    return (triton is not None and bias is None and w.dim() == 2 and x.is_cuda
            and x.dtype in (torch.bfloat16, torch.float16) and w.dtype == x.dtype
            and all(isinstance(s, int) for s in (*shape, *w.shape)) and x.numel() == shape[-1]
            and shape[-1] == w.shape[1] and w.shape[0] >= min_outputs and shape[-1] >= ratio * w.shape[0]
            and shape[-1] % _COLUMNS == 0 and w.shape[0] % _ROWS == 0)


@contextlib.contextmanager
def routed_matvec(ratio: float = 2.5, min_outputs: int = MIN_OUTPUTS):
    """While tracing, this thread's ``F.linear`` calls that ``fits`` are ``aotpack::matvec``
    (the others run as before); restored on exit. A prompt of symbolic length (a prefill step) is
    never routed. The defaults take a Llama's down projection alone; ``ratio=2.0,
    min_outputs=0`` takes a 3.28B bench Llama's k and v projections too (half as many KV
    heads as query heads), which loses their fused cache update (531 against 553
    tokens/s in bench/decode_profile.py)."""
    import torch.nn.functional as F

    from ._torch_compat import replaced_in_this_thread

    def routing(linear):
        def routed(x, w, bias=None):
            if not fits(x, w, bias, ratio, min_outputs):
                return linear(x, w, bias)
            return matvec(x.reshape(1, x.shape[-1]).contiguous(), w.contiguous()).view(*x.shape[:-1], w.shape[0])

        return routed

    with replaced_in_this_thread(F, "linear", routing):
        yield
