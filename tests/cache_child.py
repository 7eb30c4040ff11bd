"""Child process for the cache tests: compile through a store, report stats and outputs.

    python cache_child.py STORE aoti|eager OUT.json          (aotpack.compile)
    python cache_child.py STORE torch.compile OUT.json       (torch.compile backend, fwd+bwd)
"""

import json
import sys
import warnings

import torch

import aotpack
import aotpack.cache as cache


def model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.GELU(), torch.nn.Linear(64, 8))


def main(store, how, out):
    m = model()
    x = torch.randn(4, 32, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if how == "torch.compile":
            from torch._dynamo.utils import counters

            x.requires_grad_(True)
            y = torch.compile(m, backend=cache.backend("inductor", store))(x)
            y.sum().backward()
            result = {"out": y.detach().tolist(), "grad": x.grad.tolist(),
                      "wgrad": m[0].weight.grad.sum().item(), "inductor": dict(counters["inductor"])}
        else:
            m.eval()
            pkg = aotpack.compile(m, (x,), backend=how, cache=store)
            path = out + ".aot"
            pkg.save(path)
            result = {"out": aotpack.load(path)(x).tolist()}
    with torch.no_grad():
        result["eager"] = m(x.detach()).tolist()
    result["stats"] = dict(cache.stats)
    result["warnings"] = [str(w.message) for w in caught if issubclass(w.category, cache.CacheWarning)]
    json.dump(result, open(out, "w"))


if __name__ == "__main__":
    main(*sys.argv[1:])
