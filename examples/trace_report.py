"""Trace torch.compile around unmodified code, then render the report.

    python examples/trace_report.py OUT_DIR

Writes OUT_DIR/trace.jsonl, OUT_DIR/graphs/*/runnable.py and OUT_DIR/report.html.
"""

import sys

import torch

import aotpack


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(16, 16), torch.nn.Linear(16, 4)

    def forward(self, x):
        h = torch.relu(self.a(x))
        if h.sum() > 0:  # data-dependent branch: a graph break
            h = h * 2
        return self.b(h)


def main(out: str) -> None:
    model = torch.compile(Net().eval(), backend="aot_eager")
    with aotpack.trace(out):
        model(torch.randn(8, 16))
        model(torch.randn(12, 16))  # another size: a recompile
    records = aotpack.trace.read_trace(out)
    for r in records:
        breaks = "; ".join(b["reason"][:60] for b in r["graph_breaks"])
        print(f"{r['compile_id']:5} {r['function']:40} {r['status']:8} {breaks}")
    print("wrote", aotpack.trace.write_report(out))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "aotpack_trace")
