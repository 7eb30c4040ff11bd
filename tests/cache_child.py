"""Child process for the cache tests: compile through a store, report stats and outputs.

    python cache_child.py STORE aoti|eager OUT.json          (aotpack.compile)
    python cache_child.py STORE torch.compile OUT.json       (torch.compile backend, fwd+bwd)
    python cache_child.py STORE torch.compile:llama OUT.json (a transformers model, inference)
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


def transformers_model(store, name, out):
    """A transformers model (tests/zoo.py) through torch.compile with aotpack's cache backend."""
    import os

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from torch._dynamo.utils import counters

    import zoo

    # (one decoder layer: dynamo traces the model in both processes, ~10 s a layer on 2 cores)
    m, kwargs = zoo.build(name, **({"layers": 1} if name == "llama" else {}))
    with torch.no_grad():
        y = torch.compile(m, backend=cache.backend("inductor", store))(**kwargs)
        eager = m(**kwargs)
    result = {"out": y.logits.tolist(), "eager": eager.logits.tolist(), "stats": dict(cache.stats),
              "inductor": dict(counters["inductor"]), "graph_breaks": sum(counters["graph_break"].values())}
    json.dump(result, open(out, "w"))


def main(store, how, out):
    if how.startswith("torch.compile:"):
        return transformers_model(store, how.split(":", 1)[1], out)
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
