"""The manifest's schema is data (the typed records of package/manifest.py), snapshot in
tests/data/manifest-schema.json, as torch.export's schema check does: a change to any
record (a field added, removed, retyped, its default changed) fails this test until the
format's changelog (package/format.py) names every changed field and the snapshot is
written again (``AOTPACK_UPDATE_SCHEMA=1 pytest tests/format/test_schema.py``)."""

import inspect
import json
import os
import typing

import pytest

import aotpack.llm
from aotpack.package import format as fmt
from aotpack.package import manifest

# Records of application sections (Manifest.section): on disk beside the core's
APPLICATION_SECTIONS = {"llm": aotpack.llm.LlmSection}

SNAPSHOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "manifest-schema.json")


def type_name(tp) -> str:
    """A field type as stable text: the manifest's own names for its checked types."""
    checked = {id(v): k for k, v in vars(manifest).items() if isinstance(v, manifest.Checked)}
    if isinstance(tp, manifest._Optional):
        return type_name(tp.inner) + " | None"
    if id(tp) in checked:
        return checked[id(tp)]
    if isinstance(tp, manifest.Checked):  # an inline one: its base and the check's name
        return f"{tp.base.__name__} checked by {tp.check.__name__}"
    if isinstance(tp, type):
        return tp.__name__
    if typing.get_origin(tp) in (list, dict):  # (a checked type among the arguments has no stable str)
        return f"{typing.get_origin(tp).__name__}[{', '.join(type_name(a) for a in typing.get_args(tp))}]"
    return str(tp).replace("typing.", "").replace("aotpack.package.manifest.", "")


def schema() -> dict:
    """record -> field -> "type [= default]", for every record class of the manifest."""
    out = {}
    for name, cls in sorted(vars(manifest).items()):
        if inspect.isclass(cls) and issubclass(cls, manifest.Record) and cls is not manifest.Record:
            fields = {}
            for field, tp in cls.__dict__.get("__annotations__", {}).items():
                default = cls.__dict__.get(field, "<required>")
                tp = type_name(tp)
                fields[field] = f"{tp} = {default!r}" if default != "<required>" else f"{tp} (required)"
            out[name] = fields
    for key, cls in APPLICATION_SECTIONS.items():
        out[f"section {key}"] = {f: type_name(tp) + " (required)" for f, tp in cls.__annotations__.items()}
    return out


def changed_fields(old: dict, new: dict) -> set[str]:
    changed = set()
    for record in set(old) | set(new):
        a, b = old.get(record, {}), new.get(record, {})
        changed |= {f for f in set(a) | set(b) if a.get(f) != b.get(f)}
    return changed


def test_schema_changes_come_with_a_changelog_line():
    now = schema()
    if os.environ.get("AOTPACK_UPDATE_SCHEMA"):
        with open(SNAPSHOT, "w") as f:
            json.dump({"format_version": fmt.FORMAT_VERSION, "schema": now}, f, indent=1, sort_keys=True)
            f.write("\n")
    with open(SNAPSHOT) as f:
        snap = json.load(f)
    changelog = fmt.__doc__.split("Changelog of FORMAT_VERSION", 1)[1]
    unnamed = sorted(f for f in changed_fields(snap["schema"], now) if f not in changelog)
    assert not unnamed, (f"manifest fields changed without a line in package/format.py's changelog: {unnamed}; "
                         "write one (bump FORMAT_VERSION where older readers would misread a package)")
    if snap["schema"] != now or snap["format_version"] != fmt.FORMAT_VERSION:
        pytest.fail("the manifest schema or FORMAT_VERSION changed: write the snapshot again with "
                    "AOTPACK_UPDATE_SCHEMA=1 pytest tests/format/test_schema.py (after the changelog line)")


def test_the_snapshot_names_the_current_format_version():
    with open(SNAPSHOT) as f:
        assert json.load(f)["format_version"] == fmt.FORMAT_VERSION
