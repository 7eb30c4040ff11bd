"""The manifest's typed records (package/manifest.py): one schema for reading and writing.

The fuzzers (test_manifest_fuzz.py, test_format_fuzz.py) prove that a bad manifest is
only ever a FormatError; these prove the other half: what aotpack writes, it reads back
the same, keys from a later compatible writer survive a rewrite, a backend cannot write
a manifest the reader would refuse, and no module reads the manifest by string key.
"""

from __future__ import annotations

import ast
import json
import pathlib
import zipfile

import pytest
import torch

import aotpack
from aotpack.backends import Compiled
from aotpack.package import Package, fmt
from aotpack.package.manifest import Manifest
from aotpack.package.writer import write_package

DATA = pathlib.Path(__file__).parent.parent / "data"
SRC = pathlib.Path(__file__).parent.parent.parent / "src" / "aotpack"


def _json(path) -> dict:
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read(fmt.MANIFEST))


@pytest.mark.parametrize("fixture", ["format-v1.aot", "format-v2.aot"])
def test_checked_in_manifests_round_trip(fixture):
    doc = _json(DATA / fixture)
    m = Manifest.from_json(doc)
    again = m.to_json()
    assert Manifest.from_json(again) == m
    # everything the file said is kept as it was; the records only add keys they default
    assert _holds(again, doc)
    if fixture == "format-v1.aot":  # (the check can fail: that file has no variants[].state)
        assert not _holds(doc, again)


def _holds(new, old) -> bool:
    """``new`` says everything ``old`` says (objects may have more keys)."""
    if isinstance(old, dict):
        return isinstance(new, dict) and all(k in new and _holds(new[k], v) for k, v in old.items())
    if isinstance(old, list):
        return isinstance(new, list) and len(new) == len(old) and all(map(_holds, new, old))
    return new == old


def test_keys_of_a_later_writer_survive_a_rewrite(tmp_path):
    path = aotpack.compile(lambda x: x * 2, (torch.ones(3),), backend="eager").save(tmp_path / "p.aot")
    doc = _json(path)
    doc["from_the_future"] = {"a": 1}
    doc["program"]["note"] = "kept"
    doc["variants"][0]["priority"] = 7
    doc["variants"][0]["inputs"][0]["pinned_memory"] = True
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist() if n != fmt.MANIFEST}
    doc.pop("members")
    write_package(path, doc, members)
    pkg = Package.open(path)
    assert pkg.manifest.variants[0].extra == {"priority": 7}
    pkg.save(path)
    out = _json(path)
    assert out["from_the_future"] == {"a": 1} and out["program"]["note"] == "kept"
    assert out["variants"][0]["priority"] == 7 and out["variants"][0]["inputs"][0]["pinned_memory"] is True
    torch.testing.assert_close(aotpack.load(path)(torch.ones(3)), torch.ones(3) * 2)


class _BadMeta:
    """A backend whose meta breaks a key aotpack reads (proxy_ops must be a list of names)."""

    name = "bad-meta"

    def compile(self, captured, options):
        return Compiled(files={"x": b""}, meta={"proxy_ops": "aten::mm"})

    def load(self, files):  # pragma: no cover - never reached
        raise AssertionError


def test_a_backend_cannot_write_a_manifest_the_reader_refuses():
    with pytest.raises(aotpack.FormatError, match=r"variant default .*\.meta\.proxy_ops is not a list"):
        aotpack.compile(lambda x: x + 1, (torch.ones(2),), backend=_BadMeta())


def test_no_module_reads_the_manifest_by_string_key():
    """``manifest["variants"]``, ``variant.get("meta")``...: the records' attributes are
    the one way in (a renamed field is then an AttributeError in every reader at once)."""
    found = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) \
                    and node.value.attr == "manifest":
                found.append(f"{path.name}:{node.lineno}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                    and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "manifest":
                found.append(f"{path.name}:{node.lineno}")
    assert not found, found


def test_records_are_frozen_and_a_change_builds_a_new_one():
    """As jax's Exported: a record read from a package does not change under its reader."""
    from aotpack.package.manifest import GlobalState

    state = GlobalState(autocast="bfloat16")
    with pytest.raises(AttributeError, match=r"GlobalState.autocast: manifest records are frozen"):
        state.autocast = None
    changed = state.replace(autocast=None)
    assert state.autocast == "bfloat16" and changed.autocast is None and changed != state


def test_a_records_lists_and_dicts_are_read_only_and_its_json_is_the_callers():
    import copy
    import pickle

    from aotpack.package.manifest import Dim, Input, Variant

    v = Variant.from_json({"name": "v", "backend": "eager", "device": "cpu", "weights": ["w"], "files": ["graph.py"],
                           "in_spec": {"kind": "tuple", "children": [{"kind": "tensor", "index": 0}]},
                           "inputs": [{"dtype": "float32", "device": "cpu", "shape": ["b", 2]}],
                           "dims": {"b": {"min": 1, "max": 8}}})
    for change in (lambda: v.weights.append("x"), lambda: v.inputs.pop(), lambda: v.files.__setitem__(0, "x"),
                   lambda: v.dims.update(c=Dim(min=1, max=2)), lambda: v.inputs[0].shape.append(3),
                   lambda: v.extra.__setitem__("k", 1)):
        with pytest.raises(TypeError, match="read-only"):
            change()
    assert v.weights == ["w"] and v.inputs == [Input(dtype="float32", device="cpu", shape=["b", 2])]
    doc = v.to_json()  # the caller's own JSON: editable, and the record unchanged by the edit
    doc["weights"].append("x")
    doc["inputs"][0]["shape"].append(3)
    assert v.weights == ["w"] and v.inputs[0].shape == ["b", 2]
    assert json.loads(json.dumps(v.to_json())) == v.to_json()
    for twin in (copy.deepcopy(v), copy.copy(v), pickle.loads(pickle.dumps(v))):
        assert twin == v
