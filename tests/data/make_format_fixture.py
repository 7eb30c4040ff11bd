"""Write tests/data/format-v<FORMAT_VERSION>.aot and its inputs/outputs.

Run once per FORMAT_VERSION bump (never overwrite an older version's file):

    .venv/bin/python tests/data/make_format_fixture.py
"""

import os

import torch
from safetensors.torch import save_file

import aotpack
from aotpack.package import fmt

HERE = os.path.dirname(os.path.abspath(__file__))


class Fixture(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)
        self.register_buffer("shift", torch.tensor([0.5, -0.5, 1.0]))

    def forward(self, x, opts, scale=2.0):
        y = self.lin(x) * scale + self.shift
        return {"y": y, "parts": (y.sum(1), opts["w"] * 2)}


def main():
    torch.manual_seed(0)
    m = Fixture().eval()
    x, w = torch.randn(5, 4), torch.randn(3)
    path = os.path.join(HERE, f"format-v{fmt.FORMAT_VERSION}.aot")
    if os.path.exists(path):
        raise SystemExit(f"{path} exists; fixtures of a released version are never rewritten")
    aotpack.compile(m, (x, {"w": w}), backend="eager",
                    dynamic={"x": {0: aotpack.Dim("batch", min=1, max=64)}}).save(path)
    with torch.no_grad():
        out = m(x, {"w": w})
    save_file({"x": x, "w": w, "y": out["y"], "p0": out["parts"][0]},
              os.path.join(HERE, f"format-v{fmt.FORMAT_VERSION}.io.safetensors"))
    print("wrote", path)


if __name__ == "__main__":
    main()
