"""The AOTInductor backend: inductor's C++ (CPU) or CUDA code in one shared library.

Build: the flat graph ``graph(*weights, *inputs)`` is exported again with every weight
as an input, and AOTInductor compiles it to ``model.so``. No weights live in the .so
(one copy of them sits in the package's safetensors, shared by all variants).

Load: the .so is written to a private temporary folder, opened with torch's C++ runner
(``torch._C._aoti.AOTIModelContainerRunnerCpu``) and unlinked. This does not import
``torch._inductor``, probe the CPU or run a compiler: that is what keeps a fresh process
at milliseconds, where ``torch._inductor.aoti_load_package`` takes seconds. On CUDA the
runner is torch's single-threaded one (CUDA-graph capturable: ``aotpack.llm`` replays
the decode step through a graph), with a lock so calls from threads still take turns.
"""

from __future__ import annotations

import os
import platform
import tempfile
import threading

import torch

from .. import _torch_compat as compat
from .._torch_version import torch_version
from .protocol import Compiled

# how much of the x86 vector ISA a CPU has: a binary built for more does not run on less
_ISA_RANK = {"DEFAULT": 0, "": 0, "AVX2": 1, "AVX512": 2, "ZVECTOR": 1, "SVE256": 1, "NEON": 1}


class AOTInductor:
    """AOTInductor shared library (``backend="aoti"``)."""

    name = "aoti"
    supports_training = True
    compiles_with_inductor = True

    def incompatibilities(self, variant, manifest) -> list[str]:
        """An AOTInductor binary is tied to one torch version, machine and CPU ISA (or
        GPU compute capability)."""
        problems = []
        meta = variant.meta
        built = variant.torch or manifest.versions.torch
        if built != torch_version():
            problems.append(f"torch: package built with {built}, this is {torch_version()} "
                            "(AOTInductor binaries are tied to one torch version)")
        machine = meta.machine or manifest.platform.machine
        if machine != platform.machine():
            problems.append(f"machine: package built for {machine}, this is {platform.machine()}")
        isa = (meta.cpu_isa or "").split()
        have = torch.backends.cpu.get_cpu_capability()
        if variant.device == "cpu" and isa and _ISA_RANK.get(isa[0], 0) > _ISA_RANK.get(have, 0):
            problems.append(f"CPU: package built for {isa[0]}, this CPU supports {have}")
        if variant.device == "cuda" and torch.cuda.is_available():
            want = meta.compute_capability or ""
            major, minor = torch.cuda.get_device_capability()
            if want and want != f"{major}{minor}":
                problems.append(f"GPU: package built for compute capability {want}, this GPU is {major}{minor}")
        return problems

    def compile(self, captured, options: dict) -> Compiled:
        ep = captured.export_weights_as_inputs()
        device = captured.device
        options = dict(options)
        if device == "cuda":
            # Kernel binaries (cubins) go inside model.so: the package ships one file per
            # variant, and a .so that looks for cubins beside it crashes when they are not.
            options.setdefault("aot_inductor.embed_kernel_binary", True)
        with tempfile.TemporaryDirectory(prefix="aotpack-aoti-") as d:
            out = compat.aoti_compile(ep, d, options)
            with open(out["so"], "rb") as f:
                so = f.read()
        files = {"model.so": so}
        meta = {
            "device": device,
            "cpu_isa": out["metadata"].get("AOTI_CPU_ISA", ""),
            "compute_capability": out["metadata"].get("AOTI_COMPUTE_CAPABILITY", ""),
            "machine": out["metadata"].get("AOTI_MACHINE", platform.machine()),
        }
        # ops with no C shim (torch.linalg.qr, custom ops) run through torch's proxy
        # executor, which the runner builds from model.json beside model.so. The list (empty
        # too) is all the library ops the variant needs registered: the ops with a C shim are
        # torch's own (functional collectives), so aotpack adds none (package/memory.py), and
        # a non-empty list means model.json is there, as readers before 2026-12-04 expect
        meta["proxy_ops"] = []
        if "extern_json" in out:
            files["model.json"] = out["extern_json"]
            meta["proxy_ops"] = out["extern_ops"]
        return Compiled(files=files, meta=meta)

    def load(self, files):
        path = files.path("model.so")
        extern = files.path("model.json") if files.meta.get("proxy_ops") else None
        try:
            runner, single_threaded = compat.aoti_runner(path, files.meta.get("device", "cpu"))
        finally:
            # dlopen keeps the mapping, the runner has read model.json: the names can go.
            os.unlink(path)
            if extern:
                os.unlink(extern)
        if not single_threaded:
            return runner.run
        run, lock = runner.run, threading.Lock()

        def run_serialized(inputs):  # one call at a time, as the default container run does
            with lock:
                return run(inputs)

        return run_serialized
