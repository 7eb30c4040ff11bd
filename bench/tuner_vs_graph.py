"""Does coordinate-descent tuning pick the config that is fastest where it runs: in a CUDA graph?

aotpack.llm.compile tunes the decode step's matrix-vector reductions with inductor's
coordinate descent. That tuner times each candidate config alone (the L2 cache flushed
before each launch, events around it) and walks one field at a time, moving on any gain
over 0.1%. The decode step replays the kernels back to back in one CUDA graph, and the
same kernel tuned twice has run up to 1.6x apart there (docs/benchmarks.md). This asks
why, per product of one 3.28B layer (``bench/matvec_fusion.py``'s cases):

1. the config coordinate descent picks, and the tuner's own time for every config of a
   grid around it (XBLOCK, R0_BLOCK, num_warps), measured as the tuner measures;
2. the same kernel compiled with each of the tuner's best configs (and coordinate
   descent's pick) forced, timed as the step runs it: 16 layers' distinct weights
   replayed in one CUDA graph.

If the graph's best config is much faster than coordinate descent's pick, and the
tuner's times rank configs as the graph does, the search is at fault (a wider or
steadier search would help); if they rank differently, the tuner's measurement is.

    python bench/tuner_vs_graph.py [--only o,down-plain,down] [--top 12]
Writes bench/results/tuner_vs_graph-<gpu>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import itertools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

GRID = {"XBLOCK": [1, 2, 4, 8, 16], "R0_BLOCK": [256, 512, 1024, 2048], "num_warps": [4, 8, 16]}


@contextlib.contextmanager
def tuner_hook(state: dict):
    """Coordinate descent as usual, then the grid timed by the tuner's own benchmark
    function (``state['grid']``), or, with ``state['force']`` set, that config returned."""
    from torch._inductor.runtime import coordinate_descent_tuner as cdt

    original = cdt.CoordescTuner.autotune

    def fields(config) -> dict:
        return {f: cdt.get_field(config, f) for f in GRID if cdt.get_field(config, f) is not None}

    def with_fields(config, values: dict):
        config = copy.deepcopy(config)
        for f, v in values.items():
            cdt.set_field(config, f, v)
        return config

    def autotune(self, func, baseline_config, baseline_timing=None):
        if state.get("force") is not None:
            return with_fields(baseline_config, state["force"])
        chosen = original(self, func, baseline_config, baseline_timing)
        state["pick"] = fields(chosen)
        names = list(fields(baseline_config))
        timed = []
        for values in itertools.product(*(GRID[n] for n in names)):
            values = dict(zip(names, values))
            config = with_fields(baseline_config, values)
            if not getattr(self, "is_valid_config", lambda c: True)(config):
                continue
            try:
                t = func(config)
            except Exception:  # a config the compiler refuses (too many registers, shared memory)
                continue
            if t != float("inf"):
                timed.append({"config": values, "tuner_us": t * 1e3})
        state["grid"] = sorted(timed, key=lambda r: r["tuner_us"])
        return chosen

    cdt.CoordescTuner.autotune = autotune
    try:
        yield
    finally:
        cdt.CoordescTuner.autotune = original


def fresh_inductor(torch) -> None:
    """Forget compiled kernels and their tuned configs, so that the next compile tunes."""
    import torch._dynamo
    from torch._inductor.codecache import PyCodeCache

    torch._dynamo.reset()
    PyCodeCache.cache_clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="o,down-plain")
    parser.add_argument("--top", type=int, default=8, help="tuner's best configs to time in the graph")
    opts = parser.parse_args()
    os.environ["TORCHINDUCTOR_FORCE_DISABLE_CACHES"] = "1"  # every compile tunes again
    import torch

    from _common import machine, write_gpu_result
    from matvec_fusion import cases, read_bandwidth, time_case

    read = read_bandwidth(torch)
    print(f"read bandwidth (sum of 1 GiB): {read / 1e12:.2f} TB/s", flush=True)
    options: dict = {}  # caches are off through the environment (the option's name varies by version)
    out = []
    for name in [n for n in opts.only.split(",") if n]:
        fn, acts, weights = cases(torch)[name]
        state: dict = {}
        fresh_inductor(torch)
        with tuner_hook(state):
            tuned = time_case(torch, fn, acts, weights, options)
        grid = state.get("grid", [])
        print(f"{name}: coordinate descent picked {state.get('pick')}: graph {tuned['us']:.2f} us; "
              f"{len(grid)} grid configs timed by the tuner", flush=True)
        chosen = [r["config"] for r in grid[:opts.top]]
        if state.get("pick") and state["pick"] not in chosen:
            chosen.append(state["pick"])
        rows = []
        for config in chosen:
            fresh_inductor(torch)
            state["force"] = config
            with tuner_hook(state):
                timed = time_case(torch, fn, acts, weights, options)
            state["force"] = None
            tuner_us = next((r["tuner_us"] for r in grid if r["config"] == config), None)
            rows.append({"config": config, "tuner_us": tuner_us, "graph_us": timed["us"],
                         "graph_tb_s": timed["tb_s"], "pick": config == state.get("pick")})
            print(f"  {config}  tuner {tuner_us or float('nan'):7.2f} us  graph {timed['us']:7.2f} us  "
                  f"({timed['tb_s'] * 1e12 / read:.0%} of read){'  <- pick' if rows[-1]['pick'] else ''}",
                  flush=True)
        best = min(rows, key=lambda r: r["graph_us"]) if rows else None
        if best:
            print(f"{name}: best in the graph {best['config']} {best['graph_us']:.2f} us; "
                  f"pick {tuned['us']:.2f} us ({tuned['us'] / best['graph_us']:.2f}x)", flush=True)
        out.append({"case": name, "bytes": tuned["bytes"], "pick": state.get("pick"), "pick_graph_us": tuned["us"],
                    "grid": grid, "forced": rows})
    write_gpu_result("tuner_vs_graph-{gpu}", {"machine": machine(), "read_bw_bytes_s": read, "cases": out,
                                              "command": "python bench/tuner_vs_graph.py " + " ".join(sys.argv[1:])})


if __name__ == "__main__":
    main()
