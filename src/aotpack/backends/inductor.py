"""The inductor backend: torch.compile's own code generator, shipped as Python source.

Build: the flat graph is exported with every weight as an input, decomposed to core
aten, and compiled by inductor (``compile_fx_inner``). The package stores inductor's
output code, the Python module torch.compile itself would run (Triton kernels on GPU,
C++ kernels on CPU, as source), plus any constants it holds.

Load: the output code is imported the way torch.compile's FX graph cache does it. Its
kernels are compiled on import, or taken from inductor's local cache when warm: so
unlike ``aoti``, this backend imports torch._inductor and runs a compiler on a fresh
machine (seconds). What it buys: the package carries no machine code, so it runs on any
machine and torch version that can import the code, and the code is readable.

Limits (checked at compile time): static shapes only, no sizes that depend on data
(use ``aoti`` for both), and programs that mutate their inputs are refused.
"""

from __future__ import annotations

import torch

from .. import _torch_compat as compat
from ..errors import BackendError
from .protocol import Compiled


class Inductor:
    """inductor output code (``backend="inductor"``)."""

    name = "inductor"
    compiles_with_inductor = True

    def compile(self, captured, options: dict) -> Compiled:
        if captured.dims or any(isinstance(s, dict) for g in captured.inputs for s in g.shape):
            raise BackendError("the inductor backend compiles static shapes only, and this program has dynamic "
                               f"dimensions {sorted(captured.dims)}", hint="use backend='aoti' for Dims")
        ep = captured.export_weights_as_inputs()
        with compat.quiet_export_logs():
            if ep.range_constraints:
                raise BackendError("the inductor backend cannot compile sizes that depend on data "
                                   f"({', '.join(map(str, ep.range_constraints))})", hint="use backend='aoti'")
            # inductor's own decomposition table: what compile_fx_inner expects to see
            ep = ep.run_decompositions(decomp_table=compat.inductor_decompositions())
        for spec in ep.graph_signature.output_specs:
            if spec.kind.name != "USER_OUTPUT":
                raise BackendError("the inductor backend does not support programs that mutate their inputs",
                                   hint="use backend='aoti' or 'eager'")
        gm = compat.plain_graph_module(ep.graph_module)
        with compat.inductor_config_patch(options or {}):
            out = compat.inductor_compile(gm, captured.graph_args())
        files = {"output_code.py": out["source"].encode()}
        if out["constants"]:
            from safetensors.torch import save

            files["constants.safetensors"] = save({k: v.detach().cpu().contiguous()
                                                   for k, v in out["constants"].items()})
        return Compiled(files=files, meta={"device": captured.device, "constants": sorted(out["constants"])})

    def load(self, files):
        constants = {}
        if files.meta.get("constants"):
            from safetensors.torch import load

            constants = {k: v.to(files.meta["device"]) for k, v in load(files.read("constants.safetensors")).items()}
        call = compat.inductor_load(files.read("output_code.py").decode(), constants)

        def run(flat):
            with torch.no_grad():
                return call(list(flat))

        return run
