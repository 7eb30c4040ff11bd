"""The package format: one zip file, members stored uncompressed, no pickle anywhere.

Layout::

    manifest.json                 JSON, written first; lists every other member's BLAKE3 digest
    signatures.json               optional: Ed25519 signatures over manifest.json's bytes
                                  (package/signing.py); the one member the manifest does not list
    weights.safetensors           every distinct weight once (parameters, buffers, frozen
                                  tensors); a variant whose weight differs (bf16, say) stores
                                  it as "<name>@<variant>"
    variants/<name>/<files>       one folder per compiled variant (backend files)
    variants/<name>/program.json  the variant's portable program: torch.export's JSON
                                  serialization (no weights), to rebuild it elsewhere
    variants/<name>/program_in_order.json  optional: the program with its in-place updates
                                  in order, where program.json was retraced functionally
                                  (training, autocast) and an input is updated: calls whose
                                  inputs overlap run it op by op
    variants/<name>/examples.safetensors   the variant's example inputs (input0, input1, ...)

Members are stored, not deflated, and each starts at a 64-byte aligned offset (padding
in the local header's extra field, as Android's zipalign does), so the reader memory-maps
the weights in place: loading a package copies no weight bytes.

Manifest (``FORMAT_VERSION`` 20): its schema is data, not prose here: the typed records
of ``package/manifest.py`` (one class per part of the manifest, its fields the JSON keys,
read and written by the same code). ``tests/data/manifest-schema.json`` is their
snapshot: ``tests/format/test_schema.py`` fails on any change to a record that no line of the
changelog below names, as torch.export's schema check does.

Changelog of FORMAT_VERSION (bump on any change a reader must know about):
  1 (2026-11-22): first version.
    (2026-11-23, compatible additions; older packages read as before)
    variants[].inputs[].layout: memory layout the code was compiled for ("contiguous",
    {"order": [...]}, {"stride": [...]}; missing means "contiguous");
    variants[].aliased / meta.train.aliased: outputs that are views of inputs;
    variants[].module_training; meta.proxy_ops (aoti ops run by torch's proxy executor);
    variants[].state: stored weight names (buffers) the variant updates in place, e.g. a
    static KV cache: each load gets its own writable copy, shared by its variants;
    llm: {"max_batch", "max_len"} of a package built by aotpack.llm.compile;
    tree specs of kind "namedtuple" and "node" (types by import path).
    (2026-11-23, later) members[].blake3 replaces members[].sha256 in new packages (both are
    read); the optional signatures.json member.
  2 (2026-11-24): variants[].distributed = {"rank", "world_size", "pg_backend", "groups":
    {name: {"rank", "size"}}}: the variant is one rank's part of a sharded program
    (aotpack/distributed.py). Written only by packages that have such variants; a version 1
    reader would ignore the key and run a rank's shard anywhere, so it must refuse them.
    (2026-11-24, later, a compatible addition) variants[].inputs[].layout_pinned: why the
    program's result depends on the input's layout (an output's sharing its memory: a
    reshape, flatten or contiguous that copied at compile time; the program reading its
    strides): calls in another layout are refused, not copied. Older readers copy them,
    as they did before.
  3 (2026-12-02): variants[].global_state = {"autocast", "default_dtype", "grad_mode",
    "matmul_precision", "deterministic"}: the global state the variant's code was compiled
    under (GlobalState in manifest.py), which calls are guarded on. Written by every new
    package; the version is 3 only where a variant was compiled inside autocast or reads
    grad mode (an older reader would run it under any state); otherwise older readers
    ignore the key, as they run such packages correctly under the default state.
    Missing in older packages: autocast off, float32, matmul precision "highest".
    variants[].mutated_inputs: flat inputs an inference variant updates in place (the
    caller's tensors: no copy may stand in); also version 3 where present.
    (2026-12-02, later: checks made stricter, no change to what aotpack writes) a
    signature parameter's name must be a Python identifier; device fields name a device
    type (DEVICE_TYPES, no index); a device constant must parse; program.out_spec numbers
    its outputs 0..n-1; a derived size expression is at most 256 characters; weights'
    safetensors shapes are non-negative and no two tensors overlap in the file.

  4 (2026-12-03): variants[].global_state.grad_mode_after: the grad mode the program
    leaves its caller in (``torch.set_grad_enabled(False)`` without ``with``; such programs
    were refused before), set after every call as torch.compile replays it. The version is
    4 only where a variant has it (a version 3 reader would leave the caller's grad mode
    as it was); other packages keep their version.
    variants[].inputs[].requires_grad_pinned: why the program's result depends on the
    input's requires_grad (it reads ``x.requires_grad``): a call with another
    requires_grad is refused under no_grad too. Also version 4 where present.
    (2026-12-03, a compatible addition) meta.train.grad_tangents: per gradient of a
    training variant, the output grads it is computed from, so that a gradient no output
    grad reaches is None, as eager's; older readers give zeros there, as before.
    (2026-12-03, later, no change on disk) the top-level llm section is an application
    section: the core records no longer declare it (Manifest.section / with_section;
    its record is LlmSection in aotpack/llm.py, snapshot as "section llm").

  5 (2026-12-03): variants[].aliased[].size, .stride and .offset may name Dims (a Dim's
    name or {"expr": ...}, as in inputs[].shape): an output that is a view of an input
    whose size follows the call's (``torch.split(x, [2, n - 2])``), rebuilt from the
    call's sizes; such packages were refused before. The version is 5 only where a
    variant has such a view (a version 4 reader cannot evaluate them).
    variants[].requires_grad_weights: {weight: requires_grad} of the weights whose
    requires_grad the program reads (a branch on ``self.w.requires_grad``): a module
    bound at load whose parameter has another value is refused, under no_grad too. Also
    version 5 where present.

  6 (2026-12-03): meta.train.output_views: a training variant's output that is a view of
    another of its outputs (``h`` and ``h.t()`` returned together), rebuilt from that
    output at run time so the two share memory and the view's gradient flows into it, as
    in eager; such programs were refused before. meta.train.hidden_outputs: how many of
    the forward's last outputs are intermediates such views are of (``(x * y).expand(...)``
    returned alone), dropped after the views are made. The version is 6 only where a
    variant has such a view (a version 5 reader would return an unrelated copy).

  7 (2026-12-03): variants[].meta.train.aliased[].through_function: a training
    variant's output that a custom ``torch.autograd.Function`` returned as one of its
    inputs (or a view of one): returned by the compiled autograd.Function itself, so its
    gradient runs the Function's backward (a version 6 reader would rebuild a plain view
    whose gradient skips it). The version is 7 only where a variant has such an output.
    (2026-12-03, later, a compatible addition) meta.train.grad_inputs: per gradient, the
    arguments it depends on through saved tensors, so that under
    ``backward(create_graph=True)`` a gradient requires grad where eager's does (and only
    where some dependency does); for older packages every argument that requires grad
    counts, and older readers ignore the key.
    (2026-12-03, later, a compatible addition) the member variants/<name>/program_in_order.json:
    torch.export's program before its functional retrace, for training variants and
    those compiled under autocast that update an input in place; a call whose inputs
    overlap where the program updates one runs it op by op (older readers refuse such a
    call, as before, and ignore the member).
    (2026-12-03, later, a compatible addition) variants[].module_attributes: {path: value}
    of the module's Python attributes the program's methods name (``"ln.eps": 1e-05``;
    JSON scalars, tuples as lists), which torch.export compiled in: a module bound at
    load whose attribute holds another value is refused. Older readers ignore it and run
    such calls with the compiled value, as before; a package run without a bound module
    is correct in both.

  8 (2026-12-03): program.weights[].layout: the memory layout compiled code reads a
    weight in, where it is not contiguous (``{"order": [1, 0]}`` for a transposed
    matrix, ``[0, 2, 3, 1]`` for channels_last; ``{"stride": [...]}`` for one with gaps
    or overlaps, an expanded buffer); weights.safetensors holds it permuted into memory
    order (``t.permute(order)``, contiguous), or as the 1-D span of memory its strides
    address, and a reader rebuilds the layout as a view (package/weights.py). Such
    weights were stored contiguous before and read through the compiled strides: wrong
    numbers. The version is 8 only where a weight has a layout (a version 7 reader would
    run it contiguous).
    variants[].module_attributes values may hold a ``torch.dtype`` as
    ``{"dtype": "float16"}`` and a ``torch.device`` as ``{"device": "cuda:0"}`` (alone or
    in lists): a module's ``self.dtype = torch.float16`` read in forward is compiled in as
    the others are, and a bound module holding another dtype is refused (such a change
    was missed before). The version is 8 only where a variant has such a value (a
    version 7 reader refuses it as malformed); so may a function a module's attribute
    holds (``self.act = F.gelu``), as ``{"function": "torch._C._nn.gelu"}`` (a lambda's
    or local function's name carries a digest of its code).
    variants[].module_types: {path: "module:QualName"} of the modules whose methods ran
    (their code is compiled in): a module bound at load whose submodule there is of
    another class is refused. Older readers ignore it.
    (2026-12-04, compatible: no version change) meta.proxy_ops lists the library ops
    (torch.library custom ops, any namespace but aten and prims) of every backend's
    variant, not only aoti's proxy-executor ops: a reader checks each is registered, so
    a package whose library is not imported is refused at load, naming the op. Older
    readers do the same check on the longer list.

  9 (2026-12-04): training variants compiled with Dims (dynamic shapes; refused before):
    meta.train.aliased[] and meta.train.output_views[] may hold numbers that name Dims
    (a Dim's name or ``{"expr": ...}`` in them, as variants[].aliased since version 5),
    evaluated from each call's sizes. The version is 9 only where a training variant has
    such a view (a version 8 reader would pass the names to ``as_strided``). A training
    variant's forward may save an empty tensor whose length is a size the backward needs
    (a Dim's value, nonzero's count) where it saved an int before: readers of every
    version pass saved tensors on alike.
    (compatible: older readers ignore it) variants[].module_code: {"module:QualName":
    "py3.11:<digest>"}, the code of the module classes module_types names, where it is not
    torch's (manifest.class_code: bytecode, constants and names of their methods, not
    their lines): a module bound at load whose class's code differs under the same Python
    version is refused (an edit since the compile; the package holds the old code).
    (compatible) variants[].subclass_weights: {weight: "module.Class inner,names ctx"},
    module weights of a tensor subclass (torchao's quantized weights) packaged as their
    inner tensors, named ``<path>.parametrizations.<name>.original<k>`` as torch.export's
    decompositions name them: an older reader loads such a package on its own weights,
    and refuses to bind it to a module (no parameter of that name).

  10 (2026-12-04): variants[].dims[].exclude: sizes within a Dim's range the program
    does not run (it branches on a size: ``rows - 1 != 6``, a guard torch.export drops
    where it decides the Dim itself; capture reads it from torch's constraint violation).
    Calls of those sizes are refused. Before, capture narrowed the Dim to the sizes
    around the example's (3..6 of the 2..16 asked), losing 8..16. The version is 10 only
    where a Dim excludes a size (a version 9 reader would run the excluded sizes).

  11 (2026-12-04): variants[].inputs[].layout ``{"stride": [...]}`` whose strides follow
    the call's Dims (a Dim's name or ``{"expr": "2*cols"}``, as shapes hold them): an
    example with gaps (``base[:, ::2]``) and a Dim, where the program depends on its layout
    and torch.export makes a stride follow a size. A call's strides must equal the
    expressions at its sizes. The version is 11 only where an input has such strides (a
    version 10 reader refuses the layout as malformed).

  12 (2026-12-04): tree specs of kind ``"subclass"`` (``{"type", "attrs", "meta",
    "children"}``) in variants[].in_spec and program.out_spec: a tensor subclass made of
    tensors (``TwoTensor``, a float8 tensor), taken apart into its inner tensors
    (``__tensor_flatten__``: their attribute names, and its context as JSON), which are
    the graph's inputs and outputs; the wrapper's size and strides are its first inner
    tensor's. A call must pass the same class with the same names and context; an output
    is rebuilt by the class's ``__tensor_unflatten__``, a class among the inputs' or the
    module weights' (since 2026-12-05; the
    type is resolved only among classes already imported, and called only where it is a
    tensor subclass that unflattens). The version is 12 only where a spec has such a
    node (a version 11 reader refuses the kind as unknown).
    (2026-12-05, a compatible addition) variants[].inputs[].detached and
    variants[].detached_weights: inputs and parameters (program names) of an inference
    variant that no output's autograd graph reaches (the program uses them under
    ``torch.no_grad()`` or through ``.detach()``), read from the capture's autograd graph:
    a call may pass them requiring grad under grad mode, as eager's outputs then require
    no grad. Older readers ignore the keys and refuse such a call, as before.
    (2026-12-05, a compatible addition) variants[].inference_outputs: flat outputs eager
    returns as inference tensors (the program runs them under ``torch.inference_mode()``),
    made so at each call. Older readers ignore it and return normal tensors, as before.

  13 (2026-12-05): meta.train.subclass_grads = [{"primal", "spec"}]: a training
    variant's argument whose gradient is a tensor subclass (a Linear's weight meeting a
    TwoTensor input gets a TwoTensor in eager); ``spec`` is the gradient's subclass spec,
    its inner tensors numbered in order. The backward returns the first inner tensor in
    the argument's place and the others after every argument's gradient; a reader
    rebuilds the subclass from them. The version is 13 only where a variant has one (a
    version 12 reader would return the first inner tensor as a plain gradient).

  14 (2026-12-05): variants[].module_types, module_attributes and module_code under
    ``global:HELPER`` paths (``"global:HELPER": "torch.nn.modules.linear:Linear"``,
    ``"global:NORM.eps": 1e-05``): the modules a module's code calls as module globals,
    whose class, code and Python values are compiled in. A package bound with
    ``module=m`` guards them where the loading process holds that global (found through
    program.frozen's record of it, ``type: "module"``), as it guards a submodule's. The
    version is 14 only where a variant has such a path (a version 13 reader looks for a
    submodule named ``global:HELPER`` and refuses every bound call).
    (compatible: older readers ignore it) program.frozen[].module: the ``__name__`` of
    the Python module whose global a frozen tensor or module is, where a loading process
    finds it when it imported that module from another path than the compile's.

  15 (2026-12-06): variants[].module_attributes under ``global:NAME`` paths that no
    ``global:`` module path starts (``"global:SCALE": 2.0``, ``"global:config.FLAG":
    true``, ``"global:args.scale": 2.0``): the plain data (numbers, strings, flags,
    dtypes, tuples and lists of them) the code that ran at capture reads as module
    globals, as a Python module's attributes, or as the attributes of a plain object
    global (a script's ``args``), compiled in; and the Python functions it called as
    globals (``{"function": name}``, code traced in: a reader compares them by identity
    with those at load). A package bound with ``module=m`` compares each with the global
    where the loading process holds it (found through program.frozen's record of that
    name, which now carries ``module`` for every global), and refuses another value, or
    one of another type (``2.0`` where ``2`` was compiled in). The version is 15 only
    where a variant has such a path (a version 14 reader finds no module there, drops the
    path and runs the value compiled in whatever the global holds).
    (compatible) program.frozen[] lists globals holding a dtype, a device, a list or
    nested tuples too (``type: "dtype"``, ``value: "torch.float16"``), and the functions
    compared (``type: "function"``).
    (2026-12-06, compatible: older readers ignore it) variants[].function_code: {path:
    "py3.11:<digest>"}, the code of the Python functions a module's call ran
    (manifest.function_code: bytecode, constants and names, and what defaults and closure
    cells hold): the functions among module_attributes (``global:rotate_half``,
    ``act``), and the forward of each module whose forward ran, as set on the instance or
    its class (``block.mlp.forward``; ``forward`` for the module itself), and the
    functions of torch's modules the code names as globals (``global:F.gelu``,
    ``global:torch.cat``, ``global:torch.nn.functional.gelu``: only here, ``"py3.11+torch2.13.0:builtin"`` for a builtin),
    and (2026-12-07, compatible: older readers ignore the paths) the methods of
    ``torch.Tensor`` that code names, under ``tensor:`` (``tensor:relu``). A
    function of torch's files carries the torch version in its prefix. A module bound at
    load where one's code differs under the same prefix (a patch applied before the load)
    is refused; a reader holds the functions a ``global:`` path names at load and refuses
    a call where one was replaced since (``F.scaled_dot_product_attention = kernel``).
    Older readers bind such a module and run the code compiled in, as before.

  16 (2026-12-07): variants[].module_attributes values may hold a dict, as ``{"dict":
    [[key, value], ...]}`` (keys None, bools, ints or strings; values any plain value,
    functions too): a dict the code that ran reads as a module global (``CFG =
    {"scale": 2.0}``, ``ACTS = {"gelu": F.gelu}``) or as a module's attribute
    (``self.opts``), compiled in; a program's containers may also hold functions
    (``{"function": name}``). A reader binding a module compares each by value at every
    call (a dict changes in place) and refuses another. A container the program itself
    changes (``CACHE[key] = 1``) is a side effect, not recorded. The version is 16 only
    where a variant has such a value (a version 15 reader refuses it as malformed).
    (2026-12-07, compatible: older readers ignore it) variants[].class_attributes: {path:
    value}, the values a module's code reads through ``self`` from its class (``scale =
    2.0`` in the class body, ``"block.scale": 2.0``; a staticmethod's or a builtin's
    function as ``{"function": name}``, its code in function_code), JSON as
    module_attributes'. A reader binding a module compares each where the module resolves
    it now (set on the class, on a base class, or on the instance since) and refuses
    another value. Older readers compare none of them, as before.
    (2026-12-07, compatible: older readers ignore it) variants[].module_children: {path:
    [name, ...]}, the children of each container module the program ran (a ModuleList,
    ModuleDict or Sequential one of whose children ran, every ParameterList or
    ParameterDict, and a module whose own code iterates its children, ``self.children()``:
    ``"layers": ["0", "1"]``). A reader binding a module refuses one whose
    container holds other children (``m.layers.append(block)``, ``del m.seq[1]``), at the
    load or at the call; older readers ran the children compiled in, as before.
    (2026-12-06, compatible: older readers ignore it) variants[].iterated_weights: {path:
    [name, ...]}, the parameters and buffers (``named_parameters()`` then
    ``named_buffers()``) of each module whose own code iterates them (``self.parameters()``
    in its forward: ``"": ["lin.weight", "lin.bias"]``). A reader binding a module refuses
    one holding others there (a parameter registered since), at the load or at the call;
    older readers ran the weights compiled in, as before.
    (2026-12-06, compatible) variants[].module_attributes may name a plain global as
    ``global:NAME@module``: a name two Python modules' code reads with other values
    (``EPS`` in two files), once per module; ``global:config.FLAG@module`` for a Python
    module's attribute so read (each file's ``config`` another module). A reader binding a module compares it in the
    module of that name it imported; older readers find no such global and compare none,
    as before.
    (2026-12-06, compatible) a function's program.frozen lists each module its code reads
    as a module global (kind "global", type "module", as a module's program lists one it
    calls): a reader bound with ``module={"MODEL": MODEL}`` follows the global where it
    still holds the module given (``MODEL = other`` after the load is bound in its place);
    older readers keep the module given, as before.
    (2026-12-06, compatible) meta.train.program_gradients: whether differentiating the
    variant's program.json gives its backward's gradients (no custom autograd.Function,
    torch.func transform or straight-through update inside): a reader runs that program
    for a call under a torch.func transform (``torch.func.grad``, ``vmap``) or with
    forward-mode tangents; older readers refuse such calls, as before.
    (2026-12-06, compatible) variants[].custom_functions: the custom autograd.Function
    classes the program applies; a reader refuses a call under a torch.func transform or
    with forward-mode tangents naming them (the graph holds their forwards only); older
    readers ran such calls of the eager backend with the forward's derivatives.
    (2026-12-06, compatible) variants[].module_hooks: {module path: ["forward hook:
    <code>", ...]}, the hooks registered at compile on each module whose code ran (traced
    in): a reader bound to a module compares them with the module's hooks, at the load and
    after (one registered between compile and load, or removed since, is refused); older
    readers ignore it and run the hooks compiled in, as before; a package without it is
    not compared (hooks added after the load are refused, as before).
  17 (2026-12-06): program.out_spec may hold leaves of kind ``"size"`` (``{"kind": "size",
    "index": k}``): an output that is a Python int following the call's Dims
    (``return y, x.shape[0]`` under ``dynamic=``, as torch.compile returns it), the k-th
    of variants[].output_sizes, each a Dim's name or ``{"expr": "2*batch"}`` as shapes
    hold them, evaluated from the call's sizes, or an int: the int a variant returns
    there (one compiled for one size beside one with a Dim; variants returning other
    constant ints). The version is 17 only where the program returns such an int (a
    version 16 reader refuses the spec's kind as unknown).
    (2026-12-06, compatible) variants[].vmap_rule_functions: those of custom_functions
    whose vmap rule torch generates from their forward (``generate_vmap_rule = True``): a
    reader runs a call under vmap alone (no grad or jvp transform) through the portable
    program, whose ops are that forward; older readers refuse such calls, as before.
    (2026-12-06, compatible) program.frozen may name a tensor a module global's list,
    tuple, dict, functools.partial or plain object holds (``WS[0]``,
    ``SHIFT.keywords['other']``, ``CACHE.cos``; the weight ``global:WS[0]``): a reader
    binding a module reads it there at each call, each container on the way compared;
    older readers find no such global and run the package's copy, as before.
    (2026-12-06, compatible) variants[].tensor_aliases: {place: weight}, the places of a
    module's program holding one tensor together (tied weights ``head.weight`` ->
    ``emb.weight``; plain attributes ``constant:again`` -> ``constant:scale``; a list
    holding a buffer): a reader binding a module refuses one of them holding another
    tensor (the graph may read one input for several); older readers ran such calls
    with one tensor for both.
  18 (2026-12-06): variants[].output_sizes entries may carry a type, ``{"expr": ...,
    "type": "int" | "float" | "bool"}``: a float, a bool, or an int past the size grammar
    that the program returns of its sizes (``n / 2``, ``n > 4``, ``int(n / 2)`` with
    ``n = x.shape[0]``), in a wider grammar (floats, true division, comparisons, ``&``,
    ``|``, ``~``, torch's ``ToFloat``, ``IntTrueDiv``, ``FloatTrueDiv``, ``FloatPow``,
    ``TruncToInt``, ``FloorToInt``, ``CeilToInt``, ``RoundToInt``, ``Abs``, sympy's ``Eq``
    and ``Ne``) evaluated with Python's arithmetic and giving that type; or a variant's
    constant float or bool there (``{"expr": "2.5", "type": "float"}``). The version is 18
    only where an entry has a type (a version 17 reader refuses the entry as malformed).
  19 (2026-12-07): variants[].in_spec may hold leaves of kind ``"int"`` (``{"kind":
    "int", "index": i}``): an argument that is a Python int following a Dim
    (``dynamic={"n": Dim("n")}``, as torch.compile passes a dynamic int), carried to the
    program as the size of flat input i, an empty uint8 tensor of shape ``(n, 0)``
    (``variants[].inputs[i]``: ``{"dtype": "uint8", "shape": ["n", 0]}``) that the reader
    makes of the int at each call, after checking it is an int in the Dim's range. The
    version is 19 only where a variant takes such an int (a version 18 reader refuses
    the spec's kind as unknown).
  20 (2026-12-07): an ``"int"`` leaf may carry an ``offset`` (a negative int): the
    carrier's size is the int minus the offset (``Dim("n", min=-5, max=5)``: ``offset``
    -5, the carrier's Dim ``n`` runs 0..10), so an int whose Dim runs below 0 is carried
    as a size too; the program reads the carrier's size plus the offset. The version is
    20 only where a leaf has an offset (a version 19 reader, which ignores the field
    and would carry the int unshifted, refuses the newer version).
  21 (2026-12-07): ``variants[].global_state.environ``: the environment variables the
    program read at capture (``os.environ.get("X")``, ``os.getenv``) and their values
    then (null: unset); a call in a process where one differs is refused. The version
    is 21 only where a variant read one (a version 20 reader ignores the field and
    would run the branch of capture time under any value).
  22 (2026-12-07): ``variants[].global_state.reads``: the settings the program itself
    read (``"deterministic"``, ``"matmul_precision"``, ``"inference_mode"``,
    ``"anomaly"``), and ``global_state.inference_mode`` and ``anomaly``; a call under another value of one is refused on
    every device (a version 21 reader guards the first two on CUDA only, and would run
    the branch of capture time on CPU); and ``variants[].inputs[].properties``: what the
    program asked of a tensor input (``{"is_inference": false}``, ``is_conj``,
    ``is_neg``, ``is_leaf`` for ``x.grad_fn``) and the example's answer, which a call's tensor must give. The version
    is 22 only where a variant read a setting or asked a tensor.
  23 (2026-12-07): ``variants[].global_state.default_device`` (``torch.get_default_device()``
    at capture, ``"cpu"``) and ``default_device_read`` (the program made a tensor with no
    ``device=``, ``torch.ones(3)``, or asked ``torch.get_default_device()``): a call under
    another default device (``torch.set_default_device``, ``with torch.device(d):``) is
    refused where it was read, and runs where it was not (the mode those push,
    ``DeviceContext``, changes nothing the package's code does); a package without the
    field refuses every such mode, as before. The version is 23 only where the program
    read a default device other than the CPU (a version 22 reader ignores the fields and
    refuses every torch function mode, so it holds a CPU default, and would run a call
    with no mode where the program compiled in another device). And
    ``"cuda_available"`` in ``global_state.reads``, with ``global_state.cuda_available``:
    the program read ``torch.cuda.is_available()`` (a CPU package's branch on it is
    refused on a machine with a GPU); the version is 23 there too (a version 22 reader
    refuses the unknown read).
  24 (2026-12-07): ``variants[].global_state.backends``: the settings of
    ``torch.backends`` the program read (``torch.backends.cudnn.enabled``,
    ``torch.backends.cuda.matmul.allow_tf32``, ``torch.backends.mps.is_available()``) and
    their values at capture, which a call's process must have (it may have taken a
    branch on them); a reader that does not know a name refuses the package. Version 24
    only where the field is not empty (an older reader ignores it: it would run any
    value).

Trust model (what a reader relies on; docs/concepts/trust.md says it for users):
  - Damage (truncation, bit flips, a half-copied file): every member is checked against
    its digest before first use; the manifest against its zip CRC; weights against the
    dtypes and shapes the manifest declares.
  - Attack: digests alone prove nothing (who can rewrite a member can rewrite the
    manifest). With trusted keys (``load(path, trusted_keys=...)``,
    ``$AOTPACK_TRUSTED_KEYS``, ``aotpack verify --key``) the manifest's exact bytes must
    carry a valid Ed25519 signature by one of them before the manifest is even parsed;
    since it lists a cryptographic digest (BLAKE3, or SHA-256 in older packages) of
    every other member, that one signature covers the whole file.
  - Never trusted, signed or not: a package never makes aotpack import a module it
    names (backends by name from built-ins, ``backends=``, entry points; types only
    among those already known, and called only when of the kind the spec says: a
    "namedtuple" type must be a named tuple, a "node" type a registered pytree node, a
    "subclass" type a tensor subclass that unflattens)
    and nothing is unpickled.
"""

from __future__ import annotations

import posixpath

import torch

from ..errors import FormatError

FORMAT_NAME = "aotpack"
FORMAT_VERSION = 24  # the newest version this reader reads
# A package records the lowest version whose readers understand everything in it (as
# zip's "version needed to extract"): 1 unless it uses a later feature, so a package
# without one still loads in older aotpack releases.
BASE_FORMAT_VERSION = 1
DISTRIBUTED_FORMAT_VERSION = 2  # variants[].distributed: a reader must check the rank
GLOBAL_STATE_FORMAT_VERSION = 3  # variants[].global_state with autocast or grad_mode: a reader must guard it
GRAD_MODE_AFTER_FORMAT_VERSION = 4  # variants[].global_state.grad_mode_after: a reader must replay it
DYNAMIC_VIEWS_FORMAT_VERSION = 5  # variants[].aliased with sizes of the call's Dims: a reader must evaluate them
OUTPUT_VIEWS_FORMAT_VERSION = 6  # meta.train.output_views: a reader must rebuild those views
FUNCTION_ALIAS_FORMAT_VERSION = 7  # meta.train.aliased[].through_function: a reader must return them from autograd
# program.weights[].layout (a reader must rebuild it) and variants[].module_attributes
# holding a dtype or device (a reader must compare them)
WEIGHT_LAYOUTS_FORMAT_VERSION = 8
# meta.train.aliased[] / meta.train.output_views[] with sizes of the call's Dims: a reader must evaluate them
DYNAMIC_TRAIN_VIEWS_FORMAT_VERSION = 9
DIM_EXCLUDE_FORMAT_VERSION = 10  # variants[].dims[].exclude: a reader must refuse those sizes
DIM_STRIDES_FORMAT_VERSION = 11  # variants[].inputs[].layout strides of the call's Dims: a reader must evaluate them
SUBCLASS_FORMAT_VERSION = 12  # tree specs of kind "subclass": a reader must take them apart and rebuild them
SUBCLASS_GRAD_FORMAT_VERSION = 13  # meta.train.subclass_grads: a reader must rebuild those gradients
GLOBAL_MODULES_FORMAT_VERSION = 14  # variants[].module_types under global: paths: a reader must guard those globals
GLOBAL_VALUES_FORMAT_VERSION = 15  # variants[].module_attributes of plain globals: a reader must guard them
DICT_VALUES_FORMAT_VERSION = 16  # variants[].module_attributes holding a dict: a reader must read and guard it
SIZE_OUTPUTS_FORMAT_VERSION = 17  # program.out_spec leaves of kind "size": a reader must evaluate them
NUMBER_OUTPUTS_FORMAT_VERSION = 18  # variants[].output_sizes of a "type": a reader must evaluate floats and bools
INT_ARGUMENTS_FORMAT_VERSION = 19  # variants[].in_spec leaves of kind "int": a reader must carry them as sizes
INT_OFFSET_FORMAT_VERSION = 20  # an "int" leaf's offset: a reader must shift the int by it
ENVIRON_FORMAT_VERSION = 21  # variants[].global_state.environ: a reader must guard those variables
SETTINGS_READ_FORMAT_VERSION = 22  # global_state.reads, inputs[].properties: a reader must guard them
DEFAULT_DEVICE_FORMAT_VERSION = 23  # global_state.default_device_read, not the CPU: a reader must guard it
BACKEND_SETTINGS_FORMAT_VERSION = 24  # global_state.backends: a reader must guard those settings of torch.backends
# The oldest version this reader still loads; every version in between has a
# checked-in package under tests/data/ that the tests load.
MIN_FORMAT_VERSION = 1

MANIFEST = "manifest.json"
PROGRAM = "program.json"  # inside variants/<name>/
PROGRAM_IN_ORDER = "program_in_order.json"  # inside variants/<name>/, optional
WEIGHTS = "weights.safetensors"
EXAMPLES = "examples.safetensors"  # inside variants/<name>/
SIGNATURES = "signatures.json"
# Trusted keys a load requires when its caller names none (signing.keys_for_load); here so that
# load can tell whether it needs the signature code without importing it.
ENV_TRUSTED_KEYS = "AOTPACK_TRUSTED_KEYS"
ALIGN = 64
# Refuse manifests and member counts that no real package has (zip bombs, garbage).
MAX_MANIFEST_BYTES = 64 << 20
MAX_MEMBERS = 10_000

# safetensors dtype names (https://github.com/huggingface/safetensors, format spec)
SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool, "C64": torch.complex64,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
    "U16": torch.uint16, "U32": torch.uint32, "U64": torch.uint64,
}


# Member digests: BLAKE3 (several GB/s on two cores: a 2 GB weights member in ~0.25 s,
# sha256 needs ~1.2 s); packages written before it list sha256, which is still read.
DIGEST = "blake3"


def digest(data, algorithm: str = DIGEST) -> str:
    """Hex digest of ``data`` (bytes or a buffer) with a member-digest ``algorithm``."""
    if algorithm == "blake3":
        import blake3

        # several threads only where it pays (their start-up costs more than small inputs)
        big = memoryview(data).nbytes >= (4 << 20)
        return blake3.blake3(data, max_threads=blake3.blake3.AUTO if big else 1).hexdigest()
    import hashlib

    return hashlib.sha256(data).hexdigest()


def variant_dir(name: str) -> str:
    return f"variants/{name}/"


def check_member_name(name: str) -> None:
    """Refuse names that could escape a folder when extracted (``../x``, ``/etc/x``)."""
    norm = posixpath.normpath(name)
    if (not name or name.startswith(("/", "\\")) or "\\" in name or ":" in name.split("/")[0]
            or norm.startswith("..") or norm != name.rstrip("/") or "\x00" in name):
        raise FormatError(f"package member name {name!r} is unsafe (absolute, or escapes its folder)",
                          hint="the file was not written by aotpack; do not load it")


def check_variant_name(name: str) -> None:
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise ValueError(f"variant name {name!r} must be letters, digits, '-', '_' or '.'")


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise FormatError(f"the manifest is malformed: {what}",
                          hint="the file was damaged or edited by hand; copy or rebuild the package")


# the device types a package's variants and inputs may name
DEVICE_TYPES = frozenset({"cpu", "cuda", "xpu", "mps", "hpu", "privateuseone"})


