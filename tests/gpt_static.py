"""The project's own GPT with a static KV cache: a model written for aotpack.llm's step
(no transformers), and the same weights run without any cache as the reference.

The step: ``forward(input_ids [B, T], attention_mask [B, max_len], position_ids [B, T],
cache_position [T]) -> logits of the last position [B, vocab]``; K and V of the T tokens
are written in place into the cache buffers at ``cache_position``; a query sees the
cache slots up to its own whose mask is 1 (and always its own slot, so a padding row
attends to something and stays finite).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class Layer(torch.nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
        self.qkv = torch.nn.Linear(d, 3 * d)
        self.out = torch.nn.Linear(d, d)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(d, 4 * d), torch.nn.GELU(), torch.nn.Linear(4 * d, d))

    def split(self, x):
        b, t, d = x.shape
        return [z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in self.qkv(self.ln1(x)).chunk(3, -1)]

    def merge(self, x, y):
        b, h, t, dh = y.shape
        x = x + self.out(y.transpose(1, 2).reshape(b, t, h * dh))
        return x + self.mlp(self.ln2(x))


class StaticGPT(torch.nn.Module):
    def __init__(self, vocab: int = 128, d: int = 64, layers: int = 2, heads: int = 4, max_batch: int = 2,
                 max_len: int = 32):
        super().__init__()
        self.max_batch, self.max_len = max_batch, max_len
        self.tok = torch.nn.Embedding(vocab, d)
        self.pos = torch.nn.Embedding(max_len, d)
        self.layers = torch.nn.ModuleList(Layer(d, heads) for _ in range(layers))
        self.norm = torch.nn.LayerNorm(d)
        self.head = torch.nn.Linear(d, vocab, bias=False)
        for i in range(layers):
            self.register_buffer(f"k{i}", torch.zeros(max_batch, heads, max_len, d // heads), persistent=False)
            self.register_buffer(f"v{i}", torch.zeros(max_batch, heads, max_len, d // heads), persistent=False)

    def forward(self, input_ids, attention_mask, position_ids, cache_position):
        x = self.tok(input_ids) + self.pos(position_ids)
        slots = torch.arange(self.max_len, device=input_ids.device)
        visible = (slots[None, :] <= cache_position[:, None])[None] & attention_mask[:, None, :].bool()
        visible = (visible | (slots[None, :] == cache_position[:, None])[None])[:, None]  # [B, 1, T, max_len]
        for i, layer in enumerate(self.layers):
            q, k, v = layer.split(x)
            keys, values = getattr(self, f"k{i}"), getattr(self, f"v{i}")
            keys.index_copy_(2, cache_position, k)
            values.index_copy_(2, cache_position, v)
            x = layer.merge(x, F.scaled_dot_product_attention(q, keys, values, attn_mask=visible))
        return self.head(self.norm(x))[:, -1]

    def reference(self, input_ids, attention_mask):
        """Logits of the last position, no cache: the whole sequence recomputed."""
        t = input_ids.shape[1]
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        x = self.tok(input_ids) + self.pos(position_ids)
        causal = torch.ones(t, t, dtype=torch.bool).tril()
        visible = (causal[None] & attention_mask[:, None, :].bool()) | torch.eye(t, dtype=torch.bool)[None]
        for layer in self.layers:
            q, k, v = layer.split(x)
            x = layer.merge(x, F.scaled_dot_product_attention(q, k, v, attn_mask=visible[:, None]))
        return self.head(self.norm(x))[:, -1]


def reference_generate(model: StaticGPT, input_ids, attention_mask, max_new_tokens: int):
    """Greedy tokens without a cache: what aotpack.generate must equal."""
    ids, mask = input_ids, attention_mask
    with torch.no_grad():
        for _ in range(max_new_tokens):
            token = model.reference(ids, mask).argmax(-1)
            ids = torch.cat([ids, token[:, None]], 1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    return ids
