"""The file format: one zip, stored members, 64-byte aligned, every member hashed, atomic save."""

import json
import os
import zipfile

import blake3
import pytest
import torch

import aotpack
import programs
from aotpack.package import fmt
from aotpack.package.reader import PackageReader


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    torch.manual_seed(0)
    m = programs.MLPWithBuffer().eval()
    return aotpack.compile(m, (torch.randn(2, 4),), backend="eager").save(tmp_path_factory.mktemp("fmt") / "m.aot")


def test_layout(package):
    with zipfile.ZipFile(package) as z:
        names = z.namelist()
        assert names[0] == "manifest.json"
        assert {"variants/default/program.json", "weights.safetensors", "variants/default/examples.safetensors",
                "variants/default/graph.py"} <= set(names)
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
        manifest = json.loads(z.read("manifest.json"))
        for name, rec in manifest["members"].items():
            assert blake3.blake3(z.read(name)).hexdigest() == rec["blake3"]  # the reference implementation
    assert manifest["format_version"] == fmt.BASE_FORMAT_VERSION  # the oldest reader that reads it
    assert manifest["versions"]["torch"] == torch.__version__.split("+")[0]
    with PackageReader(package) as r:
        for name in r.names():
            off, _ = r._members[name]
            assert off % fmt.ALIGN == 0, name
        # weights are views over the mapped file, not copies
        w = r.tensors(fmt.WEIGHTS)
        assert set(w) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "scale"}


def test_no_pickle_members(package):
    with zipfile.ZipFile(package) as z:
        for name in z.namelist():
            data = z.read(name)
            assert not data.startswith(b"\x80\x02") and b"torch._utils\n_rebuild" not in data, name


def test_tampered_member(package, tmp_path):
    data = bytearray(open(package, "rb").read())
    with PackageReader(package) as r:
        off, n = r._members["weights.safetensors"]
    data[off + n - 1] ^= 0xFF
    bad = tmp_path / "bad.aot"
    bad.write_bytes(bytes(data))
    with pytest.raises(aotpack.IntegrityError, match="'weights.safetensors' .* does not match its blake3 digest"):
        aotpack.load(bad)


def test_truncated(package, tmp_path):
    data = open(package, "rb").read()
    bad = tmp_path / "short.aot"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(aotpack.IntegrityError, match="truncated or corrupt"):
        aotpack.load(bad)


def test_empty_and_foreign(tmp_path):
    (tmp_path / "empty.aot").write_bytes(b"")
    with pytest.raises(aotpack.FormatError, match="is empty"):
        aotpack.load(tmp_path / "empty.aot")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(aotpack.FormatError, match="no manifest.json"):
        aotpack.load(tmp_path / "other.zip")


def test_newer_format_version(package, tmp_path):
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(tmp_path / "new.aot", "w") as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "manifest.json":
                m = json.loads(data)
                m["format_version"] = fmt.FORMAT_VERSION + 1
                data = json.dumps(m).encode()
            dst.writestr(info, data)
    with pytest.raises(aotpack.FormatError, match="upgrade aotpack"):
        aotpack.load(tmp_path / "new.aot")


def test_save_is_atomic_over_existing(package, tmp_path):
    target = tmp_path / "m.aot"
    target.write_bytes(open(package, "rb").read())
    before = open(target, "rb").read()

    p = aotpack.compile(programs.plain, (torch.randn(2), torch.randn(2)), backend="eager")
    p.members["weights.safetensors"] = _Exploding(p.members["weights.safetensors"])
    with pytest.raises(Boom):
        p.save(target)
    assert open(target, "rb").read() == before
    assert [f for f in os.listdir(tmp_path) if f.startswith(".aotpack-")] == []


class _Exploding:
    """A streamed member whose second chunk fails: the writer stops half way, after the
    temp file exists and holds part of the package."""

    def __init__(self, member):
        self.member = member

    def __len__(self):
        return len(self.member)

    def digest(self):
        return self.member.digest()

    def chunks(self):
        chunks = self.member.chunks()
        yield next(chunks)
        raise Boom("disk gone")


class Boom(Exception):
    pass


def test_save_into_missing_folder_is_one_clear_error(tmp_path):
    p = aotpack.compile(programs.plain, (torch.randn(2), torch.randn(2)), backend="eager")
    with pytest.raises(aotpack.AotpackError, match="the folder .* does not exist"):
        p.save(tmp_path / "nope" / "p.aot")


def test_save_to_and_load_from_bytes_and_file_objects(tmp_path):
    """As safetensors and torch.export do: a package to bytes, to a file object, and
    loaded back from either (in memory, no file on disk)."""
    import io

    p = aotpack.compile(programs.plain, (torch.randn(2), torch.randn(2)), backend="eager")
    data = p.to_bytes()
    p.save(tmp_path / "p.aot")
    assert data == open(tmp_path / "p.aot", "rb").read()  # the same bytes as the file
    buf = io.BytesIO()
    p.save(buf)
    assert buf.getvalue() == data

    class Pipe(io.RawIOBase):  # a stream that cannot seek: the bytes are built first
        def __init__(self):
            self.got = bytearray()

        def writable(self):
            return True

        def write(self, b):
            self.got += b
            return len(b)

    pipe = Pipe()
    p.save(pipe)
    assert bytes(pipe.got) == data
    x, y = torch.randn(2), torch.randn(2)
    ref = programs.plain(x, y)
    for source in (data, bytearray(data), memoryview(data), io.BytesIO(data), open(tmp_path / "p.aot", "rb")):
        fn = aotpack.load(source)
        torch.testing.assert_close(fn(x, y), ref)
        args, _ = fn.example_inputs()  # read again from the package's memory, not from a file
        assert [a.shape for a in args] == [(2,), (2,)]
    with pytest.raises(aotpack.IntegrityError):
        aotpack.load(data[:-10])


@pytest.mark.parametrize("value", [123, None, ["model.aot"]])
def test_load_of_something_that_is_no_package_names_what_it_takes(value):
    with pytest.raises(TypeError, match=rf"aotpack.load takes a path, the package's bytes or a binary file object, "
                                        rf"not {type(value).__name__}"):
        aotpack.load(value)


def test_eager_backend_refuses_options_it_would_ignore():
    with pytest.raises(aotpack.BackendError, match=r"the eager backend takes no options; got \['max_autotune'\]"):
        aotpack.compile(torch.nn.Linear(4, 2), (torch.randn(3, 4),), backend="eager", options={"max_autotune": True})
