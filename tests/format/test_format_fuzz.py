"""Fuzzing the reader: damaged, truncated, hostile files give only aotpack errors, and
nothing is written outside the target folder. Plus the hand-made hostile cases."""

import io
import json
import os
import struct
import tempfile
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aotpack
import programs
from aotpack.package.writer import write_package

# (a variable of its own: AOTPACK_FUZZ_EXAMPLES sizes the differential fuzzer, and exploring
# with it shrank this one too until 2026-12-07)
FUZZ_EXAMPLES = int(os.environ.get("AOTPACK_READER_FUZZ_FILES", "10000"))


@pytest.fixture(scope="module")
def good_bytes(tmp_path_factory):
    p = programs.programs()["nested"]
    path = aotpack.compile(p["target"], p["args"], backend="eager").save(tmp_path_factory.mktemp("fz") / "n.aot")
    return open(path, "rb").read()


def _try_load(data: bytes, folder: str) -> None:
    path = os.path.join(folder, "x.aot")
    with open(path, "wb") as f:
        f.write(data)
    try:
        fn = aotpack.load(path)
    except aotpack.AotpackError:
        return
    # A mutation that survived every check must be harmless: the same program.
    assert fn.manifest.program.name == "nested"


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzz_reader(good_bytes, data):
    raw = bytearray(good_bytes)
    kind = data.draw(st.sampled_from(["flip", "truncate", "splice", "garbage"]))
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(raw) - 1))
            raw[i] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif kind == "splice":
        i = data.draw(st.integers(0, len(raw)))
        raw[i:i] = data.draw(st.binary(min_size=1, max_size=64))
    else:
        raw = bytearray(b"PK\x03\x04" + data.draw(st.binary(max_size=512)))
    with tempfile.TemporaryDirectory() as outer:
        folder = os.path.join(outer, "target")
        os.mkdir(folder)
        private = os.path.join(outer, "tmp")  # this test's own temporary folder: other workers' files are not ours
        os.mkdir(private)
        shared, tempfile.tempdir = tempfile.tempdir, private
        try:
            _try_load(bytes(raw), folder)
        finally:
            tempfile.tempdir = shared
        assert sorted(os.listdir(outer)) == ["target", "tmp"]
        assert not [f for f in os.listdir(private) if f.startswith("aotpack-")]


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _manifest(good_bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(good_bytes)) as z:
        return json.loads(z.read("manifest.json"))


@pytest.mark.parametrize("name", ["../evil.py", "/etc/passwd", "a/../../b", "C:/x", "variants/\\x"])
def test_path_traversal_names_refused(tmp_path, good_bytes, name):
    path = tmp_path / "t.aot"
    path.write_bytes(_zip({"manifest.json": json.dumps(_manifest(good_bytes)).encode(), name: b"x"}))
    with pytest.raises(aotpack.FormatError, match="unsafe"):
        aotpack.load(path)
    assert not (tmp_path.parent / "evil.py").exists()


def test_duplicate_members_refused(tmp_path, good_bytes):
    path = tmp_path / "d.aot"
    buf = io.BytesIO()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate we write on purpose
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("manifest.json", json.dumps(_manifest(good_bytes)))
            z.writestr("weights.safetensors", b"a")
            z.writestr("weights.safetensors", b"b")
    path.write_bytes(buf.getvalue())
    with pytest.raises(aotpack.FormatError, match="twice"):
        aotpack.load(path)


def test_zip_bomb_sizes_refused(tmp_path, good_bytes):
    """A member claiming to be far larger than the file (stored sizes are not trusted)."""
    raw = bytearray(good_bytes)
    with zipfile.ZipFile(io.BytesIO(good_bytes)) as z:
        info = z.getinfo("weights.safetensors")
    # the central directory entry of the weights: claim 4 GB compressed and uncompressed
    needle = b"weights.safetensors"
    i = raw.rfind(needle)  # in the central directory
    start = i - 46
    assert raw[start:start + 4] == b"PK\x01\x02"
    raw[start + 20:start + 28] = struct.pack("<II", 0xFFFFFFFE, 0xFFFFFFFE)
    path = tmp_path / "bomb.aot"
    path.write_bytes(bytes(raw))
    with pytest.raises((aotpack.IntegrityError, aotpack.FormatError)):
        aotpack.load(path)
    assert info.file_size < 10_000


def test_compressed_member_refused(tmp_path, good_bytes):
    buf = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(good_bytes)) as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename), compress_type=zipfile.ZIP_DEFLATED)
    path = tmp_path / "deflated.aot"
    path.write_bytes(buf.getvalue())
    with pytest.raises(aotpack.FormatError, match="compressed"):
        aotpack.load(path)


def test_malformed_manifest_field(tmp_path, good_bytes):
    m = _manifest(good_bytes)
    m["variants"][0]["inputs"][0]["dtype"] = "float99"
    members = {}
    with zipfile.ZipFile(io.BytesIO(good_bytes)) as z:
        for n in z.namelist():
            if n != "manifest.json":
                members[n] = z.read(n)
    m.pop("members")
    write_package(tmp_path / "m.aot", m, members)
    with pytest.raises(aotpack.FormatError, match=r"malformed: manifest.variants\[0\].inputs\[0\].dtype names no dtype"):
        aotpack.load(tmp_path / "m.aot")


def test_unlisted_member_refused(tmp_path, good_bytes):
    buf = io.BytesIO(good_bytes)
    with zipfile.ZipFile(buf, "a") as z:
        z.writestr("variants/default/extra.so", b"\x7fELF")
    (tmp_path / "u.aot").write_bytes(buf.getvalue())
    with pytest.raises(aotpack.IntegrityError, match="does not list"):
        aotpack.load(tmp_path / "u.aot")


@pytest.mark.skipif(not os.environ.get("CI"), reason="the 10k floor is CI's; AOTPACK_READER_FUZZ_FILES is for local runs")
def test_fuzz_budget_is_the_promised_one():
    assert FUZZ_EXAMPLES >= 10_000
