"""An experiment: a decode step's attention as one Triton kernel a layer (issue 30).

Not part of aotpack: measured slower in a whole decode step (docs/benchmarks.md, "One
attention kernel a layer"). ``bench/decode_profile.py --options cdt-kernel`` captures the
decode step's ``F.scaled_dot_product_attention`` calls of one query token as
``aotpack_bench::decode_attention``, a ``torch.library.triton_op`` that AOTInductor
compiles into the package: scores, mask, softmax and the weighted sum of values in one
launch, an online softmax over blocks of the cache. On the CPU the op is the math
composite. ``bench/decode_attention_sweep.py`` times its block sizes alone.

    >>> import torch
    >>> from decode_attention_kernel import decode_attention
    >>> q, k, v = torch.randn(1, 4, 1, 64), torch.randn(1, 2, 16, 64), torch.randn(1, 2, 16, 64)
    >>> mask = torch.ones(1, 1, 1, 16, dtype=torch.bool)
    >>> decode_attention(q, k, v, mask, 0.125).shape       # 2 query heads per KV head (GQA)
    torch.Size([1, 4, 1, 64])
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["decode_attention", "decode_attention_kernel"]


def _reference(q, k, v, mask, scale):
    """The math composite, on any device: what the kernel computes."""
    group = q.shape[1] // k.shape[1]
    if group > 1:
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    if mask.dtype in (torch.bool, torch.uint8):
        mask = torch.zeros_like(mask, dtype=q.dtype).masked_fill(mask == 0, float("-inf"))
    return torch.ops.aten._scaled_dot_product_attention_math(q, k, v, mask, 0.0, False, scale=scale)[0]


try:  # triton ships with CUDA builds of torch; CPU builds run the composite
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the torch build
    triton = None


if triton is not None:
    @triton.jit
    def _decode_attention_kernel(Q, K, V, M, Out, scale, HQ, GROUP,
                                 sq_b, sq_h, sk_b, sk_h, sk_l, sv_b, sv_h, sv_l, sm_b, sm_h, sm_l, so_b, so_h,
                                 L: tl.constexpr, D: tl.constexpr, DK: tl.constexpr, DV: tl.constexpr,
                                 BLOCK_L: tl.constexpr, MASK_BOOL: tl.constexpr):
        # one program per (sequence, query head, slice of DV output features): each computes
        # the scores over the whole cache (the key rows come from L2 after the first slice)
        # and its slice of the weighted sum, with an online softmax over BLOCK_L positions
        pid = tl.program_id(0)
        b = pid // HQ
        h = pid % HQ
        hk = h // GROUP
        dv = tl.program_id(1) * DV + tl.arange(0, DV)
        scale = tl.cast(scale, tl.float32)  # (AOTInductor passes a float argument as a double)
        m_i = tl.full([1], float("-inf"), tl.float32)
        l_i = tl.zeros([1], tl.float32)
        acc = tl.zeros([DV], tl.float32)
        for start in tl.static_range(0, L, BLOCK_L):  # unrolled: the loads of all blocks in flight
            pos = start + tl.arange(0, BLOCK_L)
            valid = pos < L
            s = tl.zeros([BLOCK_L], tl.float32)
            for d0 in tl.static_range(0, D, DK):
                dk = d0 + tl.arange(0, DK)
                q = tl.load(Q + b * sq_b + h * sq_h + dk).to(tl.float32)
                k = tl.load(K + b * sk_b + hk * sk_h + pos[:, None] * sk_l + dk[None, :], mask=valid[:, None],
                            other=0.0)
                s += tl.sum(k.to(tl.float32) * q[None, :], axis=1)
            s = s * scale
            mk = tl.load(M + b * sm_b + h * sm_h + pos * sm_l, mask=valid, other=0)
            if MASK_BOOL:
                s = tl.where(mk != 0, s, float("-inf"))
            else:
                s = s + mk.to(tl.float32)
            s = tl.where(valid, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, axis=0))
            alpha = tl.exp(m_i - m_new)
            p = tl.exp(s - m_new)
            l_i = l_i * alpha + tl.sum(p, axis=0)
            v = tl.load(V + b * sv_b + hk * sv_h + pos[:, None] * sv_l + dv[None, :], mask=valid[:, None], other=0.0)
            acc = acc * alpha + tl.sum(p[:, None] * v.to(tl.float32), axis=0)
            m_i = m_new
        tl.store(Out + b * so_b + h * so_h + dv, (acc / l_i).to(Out.dtype.element_ty))

    @torch.library.triton_op("aotpack_bench::decode_attention", mutates_args=())
    def decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                         scale: float) -> torch.Tensor:
        """Attention of one query token per sequence: ``q`` [B, Hq, 1, D], ``k``/``v``
        [B, Hkv, L, D] (Hq a multiple of Hkv), ``mask`` broadcastable to [B, Hq, 1, L]
        (bool or uint8: nonzero attends; float: added to the scores)."""
        b, hq, _, d = q.shape
        out = torch.empty_like(q)
        # the mask's broadcast as strides (no view op here: inductor lays views of a triton
        # op's inputs out again, and an expanded one then has another shape)
        m_b, m_h = (mask.stride(i) if mask.shape[i] != 1 else 0 for i in (0, 1))
        # H200, bf16, a 96-slot cache (bench/_kernel_check.py sweeps these): 4.3 us for 8 heads of 512,
        # 3.2 us for 32 heads of 128, in a CUDA graph
        dv = min(d, 32)
        length = k.shape[2]
        torch.library.wrap_triton(_decode_attention_kernel)[(b * hq, d // dv)](
            q, k, v, mask, out, scale, hq, hq // k.shape[1],
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), k.stride(2), v.stride(0), v.stride(1), v.stride(2),
            m_b, m_h, mask.stride(3), out.stride(0), out.stride(1),
            L=length, D=d, DK=min(d, 128), DV=dv, BLOCK_L=min(128, 1 << (length - 1).bit_length()),
            MASK_BOOL=mask.dtype in (torch.bool, torch.uint8), num_warps=8)
        return out

    @decode_attention.register_kernel("cpu")
    def _decode_attention_cpu(q, k, v, mask, scale):
        return _reference(q, k, v, mask, scale)
else:  # pragma: no cover - depends on the torch build
    @torch.library.custom_op("aotpack_bench::decode_attention", mutates_args=())
    def decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                         scale: float) -> torch.Tensor:
        return _reference(q, k, v, mask, scale)

    @decode_attention.register_fake
    def _(q, k, v, mask, scale):
        return torch.empty_like(q)


def _fits(query, key, value, attn_mask, dropout_p, is_causal) -> bool:
    """Whether a call is one the kernel computes: one query token, a mask, no dropout,
    a head size that is a power of two, the same key and value heads."""
    d = query.shape[-1]
    return (query.dim() == 4 and query.shape[2] == 1 and attn_mask is not None and attn_mask.dim() == 4
            and dropout_p == 0.0 and not is_causal and d >= 16 and d & (d - 1) == 0
            and key.shape[1] == value.shape[1] and query.shape[1] % key.shape[1] == 0)


@contextlib.contextmanager
def decode_attention_kernel():
    """While tracing, ``F.scaled_dot_product_attention`` calls of one query token are
    ``aotpack::decode_attention`` (others run as before). Restored on exit."""
    import torch.nn.functional as F

    fused = F.scaled_dot_product_attention

    def sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if not _fits(query, key, value, attn_mask, dropout_p, is_causal):
            return fused(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal,
                         scale=scale, enable_gqa=enable_gqa)
        if attn_mask.dtype == torch.bool:  # (as bytes: inductor lowers neither a bool input of a triton op
            attn_mask = attn_mask.to(torch.uint8)  # nor a bool tensor viewed as bytes, in torch 2.11)
        return decode_attention(query, key, value, attn_mask, scale if scale is not None else query.shape[-1] ** -0.5)

    F.scaled_dot_product_attention = sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = fused
