"""Child process: load packages and compare their outputs with eager references.

Run as ``python load_check.py INDEX.json RESULTS.json``. It imports only torch and
aotpack (never the programs' source), so it proves a package runs on its own.
"""

import json
import sys
import time

t0 = time.perf_counter()
import torch  # noqa: E402

t1 = time.perf_counter()
import aotpack  # noqa: E402
from aotpack import tree  # noqa: E402


def compare(ref, out) -> float:
    s_ref, f_ref = tree.flatten(ref)
    s_out, f_out = tree.flatten(out)
    if s_ref != s_out:
        raise AssertionError(f"output structure {tree.describe(s_out)} != eager {tree.describe(s_ref)}")
    err = 0.0
    for a, b in zip(f_ref, f_out):
        if a.shape != b.shape or a.dtype != b.dtype:
            raise AssertionError(f"output {b.dtype}{list(b.shape)} != eager {a.dtype}{list(a.shape)}")
        err = max(err, (a.double() - b.double()).abs().max().item() if a.numel() else 0.0)
    return err


def main(index_path: str, results_path: str) -> None:
    index = json.load(open(index_path))
    results = {}
    for name, entry in index.items():
        try:
            t = time.perf_counter()
            fn = aotpack.load(entry["package"])
            calls = torch.load(entry["calls"], weights_only=False)
            errs = []
            for args, kwargs, ref in calls:
                errs.append(compare(ref, fn(*args, **kwargs)))
            results[name] = {"ok": True, "max_err": max(errs), "calls": len(calls),
                             "load_and_calls_s": time.perf_counter() - t}
        except Exception as e:  # noqa: BLE001 - reported to the test, which fails on it
            results[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    results["_modules"] = sorted(m for m in sys.modules if m.startswith(("torch._inductor", "torch._dynamo")))
    results["_import_torch_s"] = t1 - t0
    json.dump(results, open(results_path, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
