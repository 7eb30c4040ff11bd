"""Models for the training-package tests (tests/packages/test_training.py, train_check.py)."""

import torch

from aotpack.demo import TransformerBlock


class LSTMNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(8, 16, batch_first=True)
        self.head = torch.nn.Linear(16, 3)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def build(name: str) -> torch.nn.Module:
    """The same initial weights every time."""
    torch.manual_seed(0)
    if name == "mlp":  # with BatchNorm: running statistics are updated in place
        return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(),
                                   torch.nn.Linear(32, 4)).train()
    if name == "block":
        return TransformerBlock(32, 4).train()
    if name == "lstm":
        return LSTMNet().train()
    raise KeyError(name)


def batch(name: str, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(100 + step)
    shape = {"mlp": (6, 16), "block": (2, 6, 32), "lstm": (4, 5, 8)}[name]
    return torch.randn(*shape, generator=g)


NAMES = ("mlp", "block", "lstm")
