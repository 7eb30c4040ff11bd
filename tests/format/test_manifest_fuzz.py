"""Structure-aware fuzzing of the manifest: consistent packages (every digest and CRC
right) whose manifest is valid-looking JSON with fields changed, removed, retyped or
resized. load, verify, inspect and the loaded program's call raise only aotpack errors,
never KeyError, IndexError, RecursionError, MemoryError... (issue "Trust").

The byte fuzzer (test_format_fuzz.py) damages files; this one edits them as someone who
knows the format would, which is what reaches the code after the integrity checks.
"""

from __future__ import annotations

import copy
import json
import os
import zipfile

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aotpack
from aotpack.package import fmt
from aotpack.package.writer import write_package

EXAMPLES = int(os.environ.get("AOTPACK_MANIFEST_FUZZ_EXAMPLES", "200"))


class Block(torch.nn.Module):
    def __init__(self, norm: bool = False):
        super().__init__()
        self.fc = torch.nn.Linear(4, 4)
        self.norm = torch.nn.BatchNorm1d(4) if norm else torch.nn.Identity()  # buffers updated in place
        self.register_buffer("scale", torch.ones(4))

    def forward(self, x, extra: dict, n: int = 2):
        y = self.norm(self.fc(x)) * self.scale + extra["bias"]
        return {"y": y * n, "parts": (y[0] + 1, y.sum())}


@pytest.fixture(scope="module", params=["inference", "training", "distributed"])
def good(request, tmp_path_factory):
    """An inference package (two variants, a dynamic dim), a training one (its
    forward/backward metadata) or one of rank variants, the fuzzer's starting points."""
    m = Block(norm=request.param == "training")
    args = (torch.randn(3, 4), {"bias": torch.randn(4)})
    if request.param == "inference":
        pkg = aotpack.compile(m, args, backend="eager", dynamic={"x": {0: aotpack.Dim("b", min=1, max=64)}},
                              variants=[{"name": "b1", "args": (torch.randn(1, 4), {"bias": torch.randn(4)})}])
    else:
        pkg = aotpack.compile(m, args, backend="eager", train=True)
    path = pkg.save(tmp_path_factory.mktemp("mf") / "good.aot")
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    manifest = json.loads(members.pop(fmt.MANIFEST))
    manifest.pop("members")
    if request.param == "distributed":  # as compile(..., distributed=True) tags them (no job needed here)
        manifest["format_version"] = fmt.DISTRIBUTED_FORMAT_VERSION
        for rank, v in enumerate(manifest["variants"]):
            v["distributed"] = {"rank": rank, "world_size": 2, "pg_backend": "gloo",
                                "groups": {"0": {"rank": rank, "size": 2}}}
    return manifest, members, args


def _paths(node, prefix=()):
    """Every (path, value) in a JSON tree, containers included."""
    yield prefix, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


_names = st.sampled_from(["default", "b1", "x", "fc.weight", "scale", "b", "cpu", "float32", "tensor", "tuple",
                          "dict", "const", "builtins.dict", "sys.exit", "os:system", "", "../x", "cuda:7",
                          # the cases outside attempts found (issue "Trust, round 2", item 8)
                          "x; import os", "x\x07", "meta", "cuda:99", "bogus", "expr", "b // 0", "2*b + 1",
                          "*".join(["b"] * 3000), "b" * 200_000, "collections.defaultdict", "evilmod.run"])
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 70), st.sampled_from([2**63, -2**63, 10**30]),
                     st.floats(allow_nan=True), _names, st.text(max_size=8))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_names, inner, max_size=4)), max_leaves=8)


def _mutate(manifest: dict, data) -> dict:
    m = copy.deepcopy(manifest)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        paths = [p for p, _ in _paths(m) if p]
        path = data.draw(st.sampled_from(paths), label="path")
        parent = m
        for k in path[:-1]:
            parent = parent[k]
        key, value = path[-1], parent[path[-1]]
        op = data.draw(st.sampled_from(["replace", "delete", "retype", "resize", "deep"]), label="op")
        if op == "replace":
            parent[key] = data.draw(_values, label="value")
        elif op == "delete":
            if isinstance(parent, dict):
                del parent[key]
            else:
                parent.pop(key)
        elif op == "retype":  # the same value, another JSON type
            parent[key] = {"list": [value], "str": str(value), "int": len(str(value)), "dict": {"v": value}}[
                data.draw(st.sampled_from(["list", "str", "int", "dict"]), label="type")]
        elif op == "resize" and isinstance(value, list):
            parent[key] = value * data.draw(st.integers(0, 3), label="times")
        elif op == "resize" and isinstance(value, dict):
            value[data.draw(_names, label="new key")] = data.draw(_values, label="new value")
        elif op == "deep":  # a nesting no real package has (recursion limits)
            deep = value
            for _ in range(900):
                deep = [deep]
            parent[key] = deep
    return m


def _exercise(path, args) -> None:
    """What a user does with a package; only aotpack errors may come out."""
    try:
        aotpack.inspect(path).__str__()
    except aotpack.AotpackError:
        pass
    try:
        aotpack.verify(path)
    except aotpack.AotpackError:
        pass
    try:
        fn = aotpack.load(path)
    except aotpack.AotpackError:
        return
    for call in (args, (torch.randn(1, 4), {"bias": torch.randn(4)}), (torch.randn(5, 4), {"bias": torch.randn(4)})):
        try:
            _, leaves = aotpack.tree.flatten(fn(*call))
            grad = [t for t in leaves if isinstance(t, torch.Tensor) and t.requires_grad]
            if grad:
                sum(t.sum() for t in grad).backward()
        except aotpack.AotpackError:
            pass


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_edited_manifests_give_only_aotpack_errors(good, tmp_path_factory, data):
    manifest, members, args = good
    m = _mutate(manifest, data)
    path = os.path.join(tmp_path_factory.mktemp("edit", numbered=True), "p.aot")
    try:
        write_package(path, m, members)
    except (ValueError, RecursionError):  # json.dumps refuses some mutations (nan is fine; deep nesting)
        return
    _exercise(path, args)


def test_the_good_package_runs(good, tmp_path):
    """The fuzzer's base case: unedited, the package loads and runs."""
    manifest, members, args = good
    path = tmp_path / "p.aot"
    write_package(path, manifest, members)
    if manifest["variants"][0].get("distributed"):  # rank variants, outside a job: refused, never run
        with pytest.raises(aotpack.IncompatibleError, match="torch.distributed is not initialized"):
            aotpack.load(path)
        return
    out = aotpack.load(path)(*args)
    assert set(out) == {"y", "parts"}


def test_deep_nesting_is_a_format_error(good, tmp_path):
    manifest, members, _ = good
    m = copy.deepcopy(manifest)
    deep = {"kind": "tensor", "index": 0}
    for _ in range(200):
        deep = {"kind": "tuple", "children": [deep]}
    m["program"]["out_spec"] = deep
    write_package(tmp_path / "p.aot", m, members)
    with pytest.raises(aotpack.FormatError, match="out_spec"):
        aotpack.load(tmp_path / "p.aot")


def _edit_weights_header(raw: bytes, data) -> bytes:
    """The weights member (safetensors: 8-byte header length, JSON header, data) with its
    header edited as someone who knows the format would: dtypes, shapes and data offsets
    changed, tensors dropped or added, the header's length claim kept consistent."""
    n = int.from_bytes(raw[:8], "little")
    header, body = json.loads(raw[8:8 + n]), raw[8 + n:]
    names = [k for k in header if k != "__metadata__"]
    for _ in range(data.draw(st.integers(1, 3), label="header edits")):
        name = data.draw(st.sampled_from(names), label="tensor")
        entry = header.setdefault(name, {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]})
        field = data.draw(st.sampled_from(["dtype", "shape", "data_offsets", "drop", "twin", "metadata"]), label="field")
        if field == "dtype":
            entry["dtype"] = data.draw(st.sampled_from(["F16", "BF16", "F64", "I64", "U8", "BOOL", "F8_E4M3", "X"]))
        elif field == "shape":
            entry["shape"] = data.draw(st.lists(st.sampled_from([0, 1, 3, 4, 16, -2, 2**62, 2**63]), max_size=4))
        elif field == "data_offsets":
            entry["data_offsets"] = data.draw(st.lists(st.sampled_from([0, 4, 16, len(body), len(body) + 64, -8, 2**63]),
                                                       min_size=0, max_size=3))
        elif field == "drop":
            header.pop(name)
        elif field == "twin":  # another name for the same bytes
            header[name + ".twin"] = dict(entry)
        else:
            header["__metadata__"] = data.draw(st.dictionaries(st.text(max_size=4), st.one_of(st.text(max_size=4), st.integers())))
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)  # safetensors pads its header to 8 bytes
    return len(encoded).to_bytes(8, "little") + encoded + body


@settings(max_examples=max(1, EXAMPLES // 3), deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_edited_weight_headers_give_only_aotpack_errors(good, tmp_path_factory, data):
    """Consistent packages (digests right) whose weights' safetensors header says other
    dtypes, shapes or offsets: only aotpack errors come out (issue "Trust, round 2")."""
    manifest, members, args = good
    edited = dict(members)
    edited[fmt.WEIGHTS] = _edit_weights_header(members[fmt.WEIGHTS], data)
    path = os.path.join(tmp_path_factory.mktemp("weights", numbered=True), "p.aot")
    write_package(path, manifest, edited)
    _exercise(path, args)


@pytest.mark.parametrize("times", [0, 2])
def test_input_guards_that_are_not_the_calls_tensors_are_refused_at_load(good, tmp_path, times):
    """A manifest whose input guards were dropped or doubled (the fuzzer's ``resize`` of
    ``variants[0].inputs``): a guard beyond the call's tensors raised IndexError at the
    call; the reader now refuses the manifest."""
    manifest, members, args = good
    m = copy.deepcopy(manifest)
    m["variants"][0]["inputs"] = m["variants"][0]["inputs"] * times
    path = tmp_path / "p.aot"
    write_package(path, m, members)
    with pytest.raises(aotpack.AotpackError, match="in_spec does not match its inputs"):
        aotpack.load(path)


@pytest.mark.parametrize("field, value", [("inference_outputs", [7]), ("inference_outputs", [0, 0]),
                                          ("mutated_inputs", [-1])])
def test_indices_the_runtime_takes_elements_of_are_checked_at_load(good, tmp_path, field, value):
    """``inference_outputs`` (2026-12-05) and ``mutated_inputs`` name outputs and inputs by
    index: one past them raised IndexError at a call (or, for inputs, was ignored); the
    reader now refuses the manifest, naming the field."""
    manifest, members, _ = good
    m = copy.deepcopy(manifest)
    m["variants"][0][field] = value
    path = tmp_path / "p.aot"
    write_package(path, m, members)
    with pytest.raises(aotpack.FormatError, match=rf"variant \w+\.{field}"):
        aotpack.load(path)
