"""Text generation from one package: a decoder-only LM compiled into a prefill step and
a decode step that share one copy of the weights and a static KV cache.

    >>> pkg = aotpack.llm.compile(model, max_batch=2, max_len=256)      # doctest: +SKIP
    >>> pkg.save("lm.aot")                                              # doctest: +SKIP
    >>> out = aotpack.generate("lm.aot", input_ids, max_new_tokens=32)  # doctest: +SKIP

The package holds one program, the *step* ``(input_ids [B, T], attention_mask [B, max_len],
position_ids [B, T], cache_position [T]) -> logits of the last position [B, vocab]``, in
two variants: ``decode`` (T = 1, static) and ``prefill`` (T from 2 to max_len). The KV
cache is buffers of the step module (``max_batch x heads x max_len x head_dim`` per layer)
that the step writes in place at ``cache_position``: the package's *state*, one
private copy per loaded package, shared by both variants, allocated once at load (see
``Loaded.state``).

Batches and padding (design): prompts of different lengths are left-padded to one
length; ``attention_mask`` covers the cache's slots (1 = a real token there), so padding
and slots left over from an earlier prompt are masked out, and ``position_ids`` count
real tokens only (``cumsum(mask) - 1``), as transformers' ``generate`` does with left
padding. A batch smaller than ``max_batch`` is filled with dummy rows that are dropped.
Nothing needs resetting between prompts: positions restart at 0 and the mask hides the
old slots (``Loaded.reset_state()`` zeroes the cache anyway if wanted).

On CUDA the decode step is replayed through a CUDA graph (design): the step's inputs
are static tensors and the cache never moves, so one graph, captured at the first
``generate`` of a loaded package and kept as long as it is loaded (``decode_graph(fn)``), replays the
whole step with one launch instead of one per kernel: decode is launch-bound at small
batch. A step that cannot be captured (a backend that synchronizes, an op CUDA graphs
refuse) runs as plain calls after one ``CudaGraphWarning``; ``cuda_graph=False`` turns
graphs off, ``cuda_graph=True`` makes a failed capture an error.

Models: a transformers ``PreTrainedModel`` (Llama, Qwen2, GPT-2, ... any whose forward
takes a ``StaticCache``) is wrapped with transformers' own export recipe
(``TorchExportableModuleWithStaticCache``, its static cache registered as buffers).
Any other module that implements the step itself (``forward(input_ids, attention_mask,
position_ids, cache_position)`` with its own cache buffers, and attributes ``max_batch``,
``max_len``) is compiled as it is: see ``tests/gpt_static.py``.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from typing import Any

import torch

from .errors import AotpackError
from .package.manifest import Record

__all__ = ["compile", "generate", "step_module", "int8_weights", "Int8Linear", "fused_projections",
           "FusedProjections", "ProjectionSlice", "CudaGraphWarning", "LlmSection", "SECTION", "decode_graph"]

SECTION = "llm"  # the manifest's top-level key this feature owns (Manifest.section)


class LlmSection(Record):
    """The manifest section of a package built by ``aotpack.llm.compile``: the shape of
    its static KV cache, which ``generate`` checks prompts against."""
    max_batch: int
    max_len: int

_PREFILL_EXAMPLE = 8  # prompt length of the prefill variant's example inputs


class CudaGraphWarning(UserWarning):
    """The decode step could not be captured in a CUDA graph; it runs as plain calls."""


def step_module(model: torch.nn.Module, max_batch: int, max_len: int) -> torch.nn.Module:
    """The step program of ``model``: itself if it implements the step, else (a
    transformers model) transformers' static-cache export wrapper with this forward."""
    if hasattr(model, "max_batch") and hasattr(model, "max_len"):
        if (model.max_batch, model.max_len) != (max_batch, max_len):
            raise AotpackError(f"the model's cache is {model.max_batch} x {model.max_len}, not the "
                               f"{max_batch} x {max_len} asked for", hint="build the model with the same sizes")
        return model
    try:
        from transformers import PreTrainedModel
        from transformers.integrations.executorch import TorchExportableModuleWithStaticCache
    except ImportError:
        raise AotpackError(f"{type(model).__name__} does not implement the step (forward(input_ids, attention_mask, "
                           "position_ids, cache_position) and max_batch/max_len) and transformers is not installed",
                           hint="see aotpack.llm's docstring") from None
    if not isinstance(model, PreTrainedModel):
        raise AotpackError(f"{type(model).__name__} is neither a transformers model nor a step module",
                           hint="see aotpack.llm's docstring for the step a model must implement")

    class Step(TorchExportableModuleWithStaticCache):
        """transformers' static cache as buffers; forward takes the mask and positions."""

        def forward(self, input_ids, attention_mask, position_ids, cache_position):
            for layer in self.static_cache.layers:  # as the recipe's own forward: where this step writes
                layer.cumulative_length.copy_(cache_position[0])
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             past_key_values=self.static_cache, use_cache=True, cache_position=cache_position)
            return out.logits[:, -1, :]

    Step.__name__ = Step.__qualname__ = f"{type(model).__name__}Step"  # the program's name in the package
    model.eval()
    model.generation_config.use_cache = True
    before = model.generation_config.cache_implementation
    model.generation_config.cache_implementation = "static"
    try:
        step = Step(model, batch_size=max_batch, max_cache_len=max_len)
    finally:
        model.generation_config.cache_implementation = before
    step.max_batch, step.max_len = max_batch, max_len
    return step


def _examples(max_batch: int, max_len: int, t: int, device) -> tuple:
    ids = torch.zeros(max_batch, t, dtype=torch.long, device=device)
    mask = torch.zeros(max_batch, max_len, dtype=torch.long, device=device)
    mask[:, :t] = 1
    pos = torch.arange(t, device=device).repeat(max_batch, 1)
    return ids, mask, pos, torch.arange(t, device=device)


def compile(model: torch.nn.Module, *, max_batch: int = 1, max_len: int = 256, backend: Any = None,
            options: dict | None = None, progress=None, cache=None, decode_attention: str | None = None,
            fuse_projections: bool = False, matvec_kernel: bool | None = None):
    """Compile a decoder-only LM for generation: a Package with variants ``decode`` and
    ``prefill`` (see the module docstring); ``aotpack.generate`` runs it.

    Args:
      model: a transformers causal LM (``LlamaForCausalLM``, ``Qwen2ForCausalLM``,
        ``GPT2LMHeadModel``...) or a module implementing the step.
      max_batch: the static KV cache's batch size: the most prompts one generate takes.
      max_len: the static KV cache's length: a prompt plus its new tokens must fit in it.
      backend: as for ``aotpack.compile``.
      options: as for ``aotpack.compile``.
      progress: as for ``aotpack.compile``.
      cache: as for ``aotpack.compile``.
      decode_attention: how the decode step's attention is captured: ``"math"`` (matmuls
        and a softmax that inductor fuses; faster for one query token on CUDA) or
        ``"fused"`` (torch's fused attention op, as the model calls it). Default: math on
        CUDA, fused elsewhere. Prefill always keeps the fused op.
      fuse_projections: compile the linear layers the step calls on one input (q, k, v;
        gate, up) as one product of their concatenated weights (``fused_projections``;
        the package stores those). Off by default: alone, such a product is faster on an
        H200 (bench/matvec_fusion.py), but a whole 3.28B decode step compiled with it
        ran at 481 tokens/s against 511 without (one compile each; coordinate descent
        tunes the fused kernels differently from compile to compile, by more than the
        gain: docs/benchmarks.md).
      matvec_kernel: on CUDA, compile the decode step's products of one row, of at least
        2,048 outputs and an inner dimension at least 2.5 times that (a Llama's down
        projection), with aotpack's own Triton kernel (``aotpack.kernels.matvec``)
        instead of inductor's reduction. Default (``None``): on for CUDA unless
        ``fuse_projections``. A 3.28B Llama on an H200 decoded at 544 and 553 tokens/s
        with it (two compiles) against 523-527 without (three), and 2392 against 2370
        at 509M (bench/decode_profile.py, bench/generate.py). ``True`` with
        ``fuse_projections`` is a ValueError (AOTInductor in torch 2.11 links such a
        package's kernel twice).
    """
    from torch.export import Dim

    from . import _torch_compat as compat
    from .api import compile as compile_program

    if not (1 <= max_batch and 2 < max_len):
        raise ValueError("max_batch must be >= 1 and max_len > 2")
    if matvec_kernel and fuse_projections:
        raise ValueError("matvec_kernel and fuse_projections cannot be combined: AOTInductor (torch 2.11) links "
                         "the kernel of such a package twice; choose one")
    step = step_module(model, max_batch, max_len).eval()
    device = next(step.parameters()).device
    matvec_kernel = _routes_matvec(matvec_kernel, fuse_projections, device)
    from .backends import get_backend

    if device.type == "cuda" and getattr(get_backend(backend), "compiles_with_inductor", False):
        # (inductor's option: the eager backend takes none, and refused the call until 2026-12-08)
        # A decode step is a chain of matrix-vector products that read every weight once:
        # inductor's coordinate-descent tuning of its reduction kernels takes batch-1 decode
        # from 31% to 47% of an H200's copy bandwidth at 509M parameters
        # (bench/decode_profile.py: 1301 -> 1975 tokens/s), for 15% more compile time.
        options = {"coordinate_descent_tuning": True, **(options or {})}
    # ... and it times each kernel config by the kernels' own time on the GPU, not with
    # the launch's CPU cost in every number: 446-511 -> 523-527 tokens/s at 3.28B, the
    # same in two compiles (bench/decode_profile.py --options cdt-math,cdt-math-events)
    tuning = compat.kernel_time_autotuning() if device.type == "cuda" else contextlib.nullcontext()
    prompt = Dim("prompt", min=2, max=max_len)
    dynamic = {"input_ids": {1: prompt}, "position_ids": {1: prompt}, "cache_position": {0: prompt}}
    # On CUDA the decode step's attention is captured as plain math by default (matmuls and a softmax
    # that inductor fuses): for one query token against a short cache, the fused kernels
    # beat one memory-efficient attention kernel launch per layer. 3.28B Llama on an H200:
    # 474 -> 511 tokens/s (bench/decode_profile.py --options cdt,cdt-math). Prefill keeps
    # torch's fused attention (long prompts would materialize the score matrix).
    if decode_attention not in (None, "math", "fused"):
        raise ValueError(f"decode_attention must be 'math' or 'fused', not {decode_attention!r}")
    math = decode_attention == "math" or (decode_attention is None and device.type == "cuda")
    if fuse_projections:
        step = fused_projections(step, _examples(max_batch, max_len, 1, device))
    tracing = [compat.math_attention] if math else []
    if matvec_kernel:
        from .kernels import routed_matvec  # (imports Triton: only where it is used)

        tracing.append(routed_matvec)
    decode_step = _traced_within(step, tracing) if tracing else step
    with torch.no_grad(), warnings.catch_warnings(), tuning:
        warnings.filterwarnings("ignore", module="transformers")
        pkg = compile_program(decode_step, _examples(max_batch, max_len, 1, device), backend=backend,
                              options=options, variant="decode", progress=progress, cache=cache,
                              variants=[{"name": "prefill", "dynamic": dynamic, "target": step,
                                         "args": _examples(max_batch, max_len, min(_PREFILL_EXAMPLE, max_len), device)}])
    pkg.manifest = pkg.manifest.with_section(SECTION, LlmSection(max_batch=max_batch, max_len=max_len))
    return pkg


def _routes_matvec(matvec_kernel: bool | None, fuse_projections: bool, device: torch.device) -> bool:
    """Whether ``compile`` routes the decode step's long products through
    ``aotpack.kernels.matvec``: asked for or by default on CUDA, never elsewhere (the CPU
    op is ``F.linear``), never with ``fuse_projections`` (``compile`` refuses both asked for).

        >>> _routes_matvec(None, False, torch.device("cpu")), _routes_matvec(None, True, torch.device("cuda"))
        (False, False)
    """
    return device.type == "cuda" and (not fuse_projections if matvec_kernel is None else matvec_kernel)


def _traced_within(step: torch.nn.Module, contexts: list) -> torch.nn.Module:
    """``step`` whose forward runs inside each of ``contexts`` (context manager
    functions: the decode step's attention as math, its long products as aotpack's
    kernel): the same module object's parameters and buffers (a shallow copy: one copy
    of the weights and of the KV cache in the package, under the same names). Only this
    step's trace sees them, inside the compile's turn (BUILD_LOCK), not the prefill
    step's nor another thread's compile."""
    import copy

    forward = type(step).forward
    traced = copy.copy(step)

    def step_forward(input_ids, attention_mask, position_ids, cache_position):
        with contextlib.ExitStack() as within:
            for context in contexts:
                within.enter_context(context())
            return forward(traced, input_ids, attention_mask, position_ids, cache_position)

    traced.forward = step_forward
    return traced


class Int8Linear(torch.nn.Module):
    """A ``Linear`` whose weight is stored as int8, one scale per output row (weight-only,
    symmetric: ``scale = max|w_row| / 127``), as gpt-fast quantizes for batch-1 decode.

    ``forward`` is ``linear(x, weight.to(x.dtype)) * scales (+ bias)``: in a compiled
    decode step inductor fuses the int8 -> activation-dtype conversion into the
    matrix-vector reduction, so each weight costs one byte of memory traffic instead of
    two. Eager runs the same ops (dequantizing the whole weight each call): the int8
    model's eager tokens are the reference a package must equal.

        >>> q = Int8Linear(torch.nn.Linear(4, 3))
        >>> q.weight.dtype, q.scales.shape
        (torch.int8, torch.Size([3]))
    """

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        w = linear.weight.detach()
        scales = w.float().abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny) / 127
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", torch.round(w.float() / scales[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scales", scales.to(w.dtype))
        self.bias = linear.bias  # shared with the original: not quantized

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.nn.functional.linear(x, self.weight.to(x.dtype)) * self.scales
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def int8_weights(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers are ``Int8Linear`` (weight-only int8,
    per-row scales); every other parameter and buffer is shared with ``model``, which is
    left as it was. Compile the copy for an int8 package; run it eagerly for the tokens
    the package must give.

    Decode at batch 1 reads every weight once per token, so int8 weights nearly halve
    the bytes per token against bf16 (embeddings and norms stay in the model's dtype).
    Only ``torch.nn.Linear`` is converted (GPT-2's ``Conv1D`` layers stay as they are).

        >>> small = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> [type(m).__name__ for m in int8_weights(small)]
        ['Int8Linear', 'ReLU', 'Int8Linear']

    torchao's weight-only int8 (``Int8WeightOnlyConfig``) packages too, as subclass
    weights (``build/subclass_weights.py``); this one needs no dependency and no
    subclass: two plain buffers. A 3.28B Llama on an H200 decodes at 667 tokens/s with
    these, 710 with torchao's, 527 in bf16 (docs/benchmarks.md).
    """
    linears = [(name, m) for name, m in model.named_modules() if type(m) is torch.nn.Linear]
    if not linears:
        raise AotpackError(f"{type(model).__name__} has no torch.nn.Linear layer to quantize",
                           hint="int8_weights converts nn.Linear layers only")
    return _with_modules(model, {name: Int8Linear(linear) for name, linear in linears})


def _with_modules(model: torch.nn.Module, replacements: dict) -> torch.nn.Module:
    """A copy of ``model`` with the submodules named in ``replacements`` (name -> module)
    replaced; every other module is a new object, every parameter and buffer the same
    tensor as ``model``'s, and ``model`` is left as it was."""
    import copy

    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    out = copy.deepcopy(model, memo=dict(shared))  # new modules, the same tensors
    for name, module in replacements.items():
        parent, _, leaf = name.rpartition(".")
        setattr(out.get_submodule(parent), leaf, module)
    return out


class FusedProjections(torch.nn.Module):
    """The ``nn.Linear`` layers a program calls on one input (attention's q, k and v;
    an MLP's gate and up) as one: their weights (and biases) concatenated by rows, so a
    call reads them in one matrix product. At batch 1 each product is a matrix-vector
    reduction whose fixed cost (the first and last wave of programs on the GPU) one
    larger kernel pays once: on an H200, q/k/v of a 4096-wide layer take 16.7 us
    concatenated against 19.4 us as three, gate/up 42.6 against 44.9 us
    (bench/matvec_fusion.py).

        >>> a, b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 2)
        >>> FusedProjections([a, b]).weight.shape
        torch.Size([5, 4])
    """

    def __init__(self, linears: list):
        super().__init__()
        with torch.no_grad():
            self.weight = torch.nn.Parameter(torch.cat([m.weight for m in linears]),
                                             requires_grad=linears[0].weight.requires_grad)
            self.bias = None if linears[0].bias is None else torch.nn.Parameter(
                torch.cat([m.bias for m in linears]), requires_grad=linears[0].bias.requires_grad)
        self.sizes = [m.out_features for m in linears]
        self._last = None  # (input, its version, the outputs): the members called on it take theirs

    def outputs(self, x: torch.Tensor) -> tuple:
        """Each member's output for input ``x``: computed once per input (the same tensor
        object, not updated in place since), then handed to the other members."""
        last = self._last
        if last is None or last[0] is not x or last[1] != x._version:
            outs = torch.nn.functional.linear(x, self.weight, self.bias).split(self.sizes, -1)
            self._last = last = (x, x._version, outs)
        return last[2]

    def forget(self) -> None:
        self._last = None


class ProjectionSlice(torch.nn.Module):
    """One member of ``FusedProjections`` in the place of the ``nn.Linear`` it was: its
    rows of the fused product of the same input (computed by whichever member is called
    first). The first member holds the fused module, so its weight is stored once."""

    def __init__(self, fused: FusedProjections, index: int):
        super().__init__()
        self.index, self.in_features, self.out_features = index, fused.weight.shape[1], fused.sizes[index]
        if index == 0:
            self.fused = fused
        else:  # a reference only: one module path owns the weight
            object.__setattr__(self, "_fused", fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = self.fused if self.index == 0 else self._fused
        out = fused.outputs(x)[self.index]
        if self.index == len(fused.sizes) - 1:
            fused.forget()  # the last member: release the input and the outputs
        return out

    def extra_repr(self) -> str:
        return f"rows {self.index} of the fused projection, out_features={self.out_features}"


def projection_groups(step: torch.nn.Module, args: tuple) -> list[list[str]]:
    """Names of the ``nn.Linear`` layers ``step(*args)`` calls on one input, one list per
    input, in the order the program calls them: those ``fused_projections`` fuses.
    Read from torch.export's graph of the step (traced on fake tensors: nothing runs,
    the KV cache and its counters are left as they are). A layer whose weight the graph
    uses more than once (called twice, tied to another), or unlike the others of its
    group (bias, dtype), is left out."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="transformers")
        ep = torch.export.export(step, args, strict=False)
    parameters = ep.graph_signature.inputs_to_parameters  # placeholder name -> its parameter's name
    linears = {name: m for name, m in step.named_modules() if type(m) is torch.nn.Linear}
    by_input: dict = {}
    for node in ep.graph.nodes:
        if node.op != "call_function" or node.target is not torch.ops.aten.linear.default:
            continue
        weight = node.args[1]
        name = parameters.get(weight.name, "").removesuffix(".weight")
        if name in linears and len(weight.users) == 1:
            by_input.setdefault(node.args[0], []).append(name)
    groups = []
    for names in by_input.values():
        first = linears[names[0]]
        alike = [n for n in names if (linears[n].bias is None) == (first.bias is None)
                 and linears[n].weight.dtype == first.weight.dtype]
        if len(alike) > 1:
            groups.append(alike)
    return groups


def fused_projections(step: torch.nn.Module, args: tuple) -> torch.nn.Module:
    """A copy of ``step`` in which the ``nn.Linear`` layers it calls on one input
    (``projection_groups``) are one ``FusedProjections`` each; every other module,
    parameter and buffer is shared with ``step``, which is left as it was. The copy
    computes the same values (each output row is the same dot product). Compiling it
    holds the fused weights beside the model's: a package of it stores them instead.

        >>> fused = fused_projections(step, _examples(1, 64, 1, "cpu"))   # doctest: +SKIP
    """
    replacements = {}
    for names in projection_groups(step, args):
        projections = FusedProjections([step.get_submodule(n) for n in names])
        replacements.update({name: ProjectionSlice(projections, i) for i, name in enumerate(names)})
    return _with_modules(step, replacements) if replacements else step


def _left_pad(input_ids, attention_mask, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(input_ids, torch.Tensor):
        ids = input_ids if input_ids.dim() == 2 else input_ids[None]
        mask = torch.ones_like(ids) if attention_mask is None else attention_mask
        return ids.long(), mask.long()
    rows = [list(map(int, r)) for r in input_ids]
    if not rows or not all(rows):
        raise AotpackError("input_ids has an empty prompt", hint="give every prompt at least one token")
    t = max(map(len, rows))
    ids = torch.tensor([[pad] * (t - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (t - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def generate(package, input_ids, max_new_tokens: int, eos_token_id: int | None = None, *,
             attention_mask: torch.Tensor | None = None, pad_token_id: int = 0, temperature: float = 0.0,
             top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
             cuda_graph: bool | None = None, **load_kwargs) -> torch.Tensor:
    """Generate tokens with a package written by ``aotpack.llm.compile``.

    Args:
      package: its path, or the ``aotpack.load`` result (load once, generate many times).
      input_ids: ``[B, T]`` token ids (left-padded, with ``attention_mask``), or a list
        of B prompts of any lengths (left-padded here).
      max_new_tokens: tokens to generate per prompt.
      eos_token_id: a prompt that produces it stops; its later tokens are ``pad_token_id``.
      attention_mask: ``[B, T]``, 1 for real tokens, with left-padded ``input_ids``.
      pad_token_id: the token written after a prompt has ended.
      temperature: sampling temperature; 0, the default, is greedy.
      top_k: sample among the k most likely tokens.
      top_p: sample among the most likely tokens whose probabilities sum to p.
      generator: a ``torch.Generator``: sampling becomes reproducible.
      cuda_graph: replay the decode step through a CUDA graph (default: on CUDA, with a
        ``CudaGraphWarning`` and plain calls where capture fails; True: a failed
        capture raises; False: never). See the module docstring.
    Returns:
      ``[B, T + n]`` like transformers' ``generate``: the (padded) prompts, then the new
      tokens (n <= max_new_tokens: fewer when every prompt has ended).
    Raises:
      AotpackError: the prompts and new tokens do not fit the package's cache (batch or
        length), checked before any step runs; GuardError for inputs the steps refuse.

    Example:
        >>> aotpack.generate("lm.aot", [[1, 2, 3], [4, 5]], max_new_tokens=8)  # doctest: +SKIP
    """
    from .load.runtime import Loaded, load

    fn = package if isinstance(package, Loaded) else load(package, **load_kwargs)
    info = fn.manifest.section(SECTION, LlmSection)
    if info is None:
        raise AotpackError(f"{fn.path or 'the package'} was not built by aotpack.llm.compile (no llm section)",
                           hint="compile it with aotpack.llm.compile(model, max_batch=..., max_len=...)")
    max_batch, max_len = info.max_batch, info.max_len
    ids, mask = _left_pad(input_ids, attention_mask, pad_token_id)
    b, t = ids.shape
    if t > max_len:
        from .errors import GuardError

        raise GuardError(f"input_ids.shape[1]: expected at most {max_len} (the package's max_len), got {t}",
                         hint="shorten the prompt, or compile with a larger max_len")
    if b > max_batch:
        raise AotpackError(f"input_ids holds {b} prompts; the package's cache holds {max_batch} (max_batch)",
                           hint="split the batch, or compile with a larger max_batch")
    if t + max_new_tokens > max_len:
        raise AotpackError(f"input_ids.shape[1] + max_new_tokens = {t} + {max_new_tokens} = {t + max_new_tokens} "
                           f"tokens do not fit the package's cache of {max_len} (max_len)",
                           hint="shorten the prompt or max_new_tokens, or compile with a larger max_len")
    device = fn.state[next(iter(fn.state))].device if fn.state else ids.device
    rows = torch.zeros(max_batch, t, dtype=torch.long)  # dummy rows fill the batch: one real token each
    rows[:b] = ids
    slots = torch.zeros(max_batch, max_len, dtype=torch.long)
    slots[:b, :t] = mask
    slots[b:, t - 1] = 1
    position = (slots[:, :t].cumsum(-1) - 1).clamp(min=0)
    rows, slots, position = rows.to(device), slots.to(device), position.to(device)
    decode = _decode_step(fn, max_batch, max_len, device, cuda_graph)
    new, done = [], torch.zeros(max_batch, dtype=torch.bool, device=device)
    with torch.no_grad():
        logits = fn(rows, slots, position, torch.arange(t, device=device))
        last = position[:, -1:]
        for step in range(max_new_tokens):
            token = _choose(logits, temperature, top_k, top_p, generator)
            if eos_token_id is not None:
                token = torch.where(done, torch.full_like(token, pad_token_id), token)
                done |= token == eos_token_id
            new.append(token)
            if step + 1 == max_new_tokens or (eos_token_id is not None and bool(done[:b].all())):
                break
            at = t + step
            slots[:, at] = 1
            last = last + 1
            logits = decode(token[:, None], slots, last, at)
    out = torch.stack(new, 1)[:b].to(ids.device)
    return torch.cat([ids, out], 1)


# Loaded package -> its decode step's CUDA graph (False: capture failed, warned once),
# kept as long as the package is loaded; the graph holds the state tensors, not the package.
_DECODE_GRAPHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def decode_graph(fn) -> _GraphedDecode | bool | None:
    """The CUDA graph ``generate`` captured for the decode step of loaded package ``fn``
    (replayed by later calls); False where capture failed (plain calls, warned once);
    None before the first ``generate`` on CUDA."""
    return _DECODE_GRAPHS.get(fn)


def _decode_step(fn, max_batch: int, max_len: int, device: torch.device, cuda_graph: bool | None):
    """``(token [B, 1], slots, position [B, 1], at: int) -> logits``: the package's decode
    variant, through its CUDA graph where there is one (captured here at first use)."""
    def plain(token, slots, position, at):
        return fn(token, slots, position, torch.full((1,), at, dtype=torch.long, device=device))

    if device.type != "cuda":
        if cuda_graph:
            raise AotpackError(f"cuda_graph=True, but the package runs on {device.type}",
                               hint="CUDA graphs need a package compiled for CUDA; leave cuda_graph unset")
        return plain
    if cuda_graph is False:
        return plain
    graphed = _DECODE_GRAPHS.get(fn)
    if graphed is None or (graphed is False and cuda_graph):
        try:
            graphed = _GraphedDecode(fn, max_batch, max_len, device)
        except Exception as e:  # noqa: BLE001 - any capture failure means: run the plain calls
            if cuda_graph:
                raise AotpackError(f"the decode step cannot be captured in a CUDA graph: {type(e).__name__}: {e}",
                                   hint="generate with cuda_graph=None (plain calls where capture fails)") from e
            warnings.warn(f"the decode step of {fn.path or fn.__name__} cannot be captured in a CUDA graph "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); decoding with plain "
                          "calls", CudaGraphWarning, stacklevel=3)
            graphed = False
        _DECODE_GRAPHS[fn] = graphed
    return graphed or plain


class _GraphedDecode:
    """The decode step captured once in a CUDA graph over static input tensors.

    A call copies its inputs into the static tensors and replays the graph; the logits
    it returns are the graph's output tensor, overwritten by the next call (generate
    reads them first). The KV cache is the package's state: the same tensors at every
    replay, so the graph's writes land where the prefill variant reads.
    """

    def __init__(self, fn, max_batch: int, max_len: int, device: torch.device):
        long = dict(dtype=torch.long, device=device)
        self.token = torch.zeros(max_batch, 1, **long)
        self.slots = torch.zeros(max_batch, max_len, **long)
        self.slots[:, 0] = 1
        self.position = torch.zeros(max_batch, 1, **long)
        self.at = torch.zeros(1, **long)
        inputs = (self.token, self.slots, self.position, self.at)
        # Warm-up on a side stream (cuBLAS handles, lazy module loads), as torch's
        # CUDA graph recipe asks; the cache slot 0 it writes is masked until rewritten.
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.no_grad(), torch.cuda.stream(side):
            for _ in range(2):
                fn(*inputs)
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self.graph):
            self.logits = fn(*inputs)

    def __call__(self, token, slots, position, at: int) -> torch.Tensor:
        self.token.copy_(token)
        self.slots.copy_(slots)
        self.position.copy_(position)
        self.at.fill_(at)
        self.graph.replay()
        return self.logits


def _choose(logits: torch.Tensor, temperature: float, top_k, top_p, generator) -> torch.Tensor:
    if not temperature:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_logits, order = logits.sort(-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) > top_p  # keep the smallest set reaching top_p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), float("-inf"))
    probs = logits.softmax(-1)
    return torch.multinomial(probs.cpu() if generator is not None and generator.device.type == "cpu" else probs, 1,
                             generator=generator)[:, 0].to(logits.device)
