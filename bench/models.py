"""Benchmark workloads, built the same way in every process (seeded)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from aotpack.demo import MLP  # the demo's 512-1024-1024-10 MLP


class Block(torch.nn.Module):
    """Pre-norm causal attention + MLP block."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1 = torch.nn.LayerNorm(d)
        self.qkv = torch.nn.Linear(d, 3 * d)
        self.proj = torch.nn.Linear(d, d)
        self.norm2 = torch.nn.LayerNorm(d)
        self.fc1 = torch.nn.Linear(d, 4 * d)
        self.fc2 = torch.nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(d, dim=-1)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ConvNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.BatchNorm2d(64), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(64, 10))

    def forward(self, x):
        return self.body(x)


class GPT(torch.nn.Module):
    """GPT-style decoder, ~110M parameters at the default size."""

    def __init__(self, vocab: int = 32768, d: int = 768, layers: int = 12, heads: int = 12, ctx: int = 1024):
        super().__init__()
        self.tok = torch.nn.Embedding(vocab, d)
        self.pos = torch.nn.Embedding(ctx, d)
        self.blocks = torch.nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.norm = torch.nn.LayerNorm(d)
        self.head = torch.nn.Linear(d, vocab, bias=False)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def build(name: str, device: str = "cpu"):
    """(model in eval mode, example args) for a workload name."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    if name == "mlp":
        model, args = MLP(), (torch.randn(8, 512, generator=g),)
        dtype = torch.float32
    elif name == "block":
        d = 1024 if device == "cuda" else 256
        model, args = Block(d, 16 if device == "cuda" else 4), (torch.randn(4, 512 if device == "cuda" else 64, d,
                                                                             generator=g),)
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
    elif name == "convnet":
        model, args = ConvNet(), (torch.randn(8, 3, 32, 32, generator=g),)
        dtype = torch.float32
    elif name == "gpt":
        model, args = GPT(), (torch.randint(0, 32768, (2, 256), generator=g),)
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
    else:
        raise KeyError(name)
    model = model.eval().to(device=device, dtype=dtype)
    args = tuple(a.to(device=device, dtype=dtype) if a.is_floating_point() else a.to(device) for a in args)
    return model, args


# torch's aot_compile needs a function with source in a file that reads the model from
# its globals; the bench sets MODEL before compiling or loading.
MODEL = None


def forward_fn(*args):
    return MODEL(*args)
