"""Child process: train each package beside eager and report the loss curves.

    python train_check.py INDEX.json OUT.json     (INDEX: {name: package path})
"""

import json
import sys
import time

t0 = time.perf_counter()
import torch  # noqa: E402

import_torch_s = time.perf_counter() - t0

import aotpack  # noqa: E402
import train_models  # noqa: E402


def loss_of(out):
    return out.float().square().mean()


def main(index_path, out_path):
    index = json.load(open(index_path))
    results = {}
    for name, path in index.items():
        ref, mine = train_models.build(name), train_models.build(name)
        t = time.perf_counter()
        fn = aotpack.load(path, module=mine)
        loss = loss_of(fn(train_models.batch(name, 0)))
        loss.backward()
        first_s = time.perf_counter() - t
        loss_of(ref(train_models.batch(name, 0))).backward()  # the same first step for eager (BatchNorm stats)
        mine.zero_grad()
        ref.zero_grad()
        opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
        opt_mine = torch.optim.SGD(mine.parameters(), lr=0.1, momentum=0.9)
        curve_ref, curve_mine, grad_err = [], [], 0.0
        for step in range(6):
            x = train_models.batch(name, step)
            lr_, lm = loss_of(ref(x)), loss_of(fn(x))
            lr_.backward()
            lm.backward()
            for (pname, p), q in zip(ref.named_parameters(), mine.parameters()):
                assert q.grad is not None, f"{name}: {pname}.grad not filled"
                grad_err = max(grad_err, (p.grad - q.grad).abs().max().item())
            opt_ref.step()
            opt_mine.step()
            opt_ref.zero_grad()
            opt_mine.zero_grad()
            curve_ref.append(lr_.item())
            curve_mine.append(lm.item())
        buffers = max([(a - b).abs().max().item() for a, b in zip(ref.buffers(), mine.buffers())] or [0.0])
        results[name] = {"ref": curve_ref, "mine": curve_mine, "grad_err": grad_err, "buffer_err": buffers,
                         "load_first_fwd_bwd_s": first_s, **alone(name, path)}
    results["import_torch_s"] = import_torch_s
    json.dump(results, open(out_path, "w"))


def alone(name, path):
    """The package loaded without its model, trained through its own parameters beside
    eager: the loss curve, and its state_dict loaded into a model of the same code."""
    ref, fn = train_models.build(name), aotpack.load(path)
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    opt_pkg = torch.optim.SGD(fn.parameters(), lr=0.1, momentum=0.9)
    curve_ref, curve_pkg = [], []
    for step in range(6):
        x = train_models.batch(name, step)
        lr_, lp = loss_of(ref(x)), loss_of(fn(x))
        lr_.backward()
        lp.backward()
        for opt in (opt_ref, opt_pkg):
            opt.step()
            opt.zero_grad()
        curve_ref.append(lr_.item())
        curve_pkg.append(lp.item())
    trained = train_models.build(name)
    trained.load_state_dict(fn.state_dict())
    state_err = max((a - b).abs().max().item() for a, b in zip(ref.state_dict().values(),
                                                                trained.state_dict().values()))
    return {"alone_ref": curve_ref, "alone_pkg": curve_pkg, "alone_state_err": state_err,
            "alone_parameters": sorted(n for n, _ in fn.named_parameters()),
            "parameters": sorted(n for n, _ in ref.named_parameters())}


if __name__ == "__main__":
    main(*sys.argv[1:])
