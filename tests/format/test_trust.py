"""Attacks on aotpack as a hostile package or a careless setup would make them: each test
performs the attack and checks that nothing it names is imported, replaced or trusted."""

import collections
import json
import os
import sys

import pytest
import torch

import aotpack
from aotpack.package import fmt
from conftest import rewrite_manifest, run_fresh


def returns_defaultdict(x):
    out = collections.defaultdict(list)
    out["y"] = x * 2
    return out


def _point_factory(spec, module, name):
    if spec.get("type") == "collections.defaultdict":
        spec["context"]["default_factory_module"] = module
        spec["context"]["default_factory_name"] = name
    for c in spec.get("children", ()):
        _point_factory(c, module, name)


EVIL = "import os, sys\nopen(os.environ['AOTPACK_EVIL_MARK'], 'w').write('imported')\ndef run(): return 0\n"

CHILD = r"""
import sys, torch, aotpack
fn = aotpack.load(sys.argv[1])
try:
    fn(torch.ones(2))
    print("CALLED")
except aotpack.AotpackError as e:
    print("REFUSED", str(e).splitlines()[0])
try:
    fn.example_inputs()
except aotpack.AotpackError as e:
    print("REFUSED-EXAMPLES")
"""


def test_a_defaultdict_factory_never_makes_aotpack_import_a_module(tmp_path):
    """The package names ``evilmod.run`` as a defaultdict's default factory (in the output
    and the input spec); torch's own deserializer would import evilmod.py from the working
    folder. Load refuses the package and the module is never imported."""
    path = aotpack.compile(returns_defaultdict, (torch.ones(2),), backend="eager").save(tmp_path / "d.aot")
    fn = aotpack.load(path)
    assert fn(torch.ones(2))["y"].tolist() == [2.0, 2.0]  # the honest package works
    rewrite_manifest(path, lambda doc: _point_factory(doc["program"]["out_spec"], "evilmod", "run"))
    (tmp_path / "evilmod.py").write_text(EVIL)
    mark = tmp_path / "imported.txt"
    proc = run_fresh(["-c", CHILD.replace("fn = aotpack.load(sys.argv[1])", """try:
    fn = aotpack.load(sys.argv[1])
except aotpack.FormatError as e:
    print("LOAD-REFUSED", str(e).splitlines()[0]); raise SystemExit(0)"""), str(path)], cwd=str(tmp_path),
                     env={"AOTPACK_EVIL_MARK": str(mark), "PYTHONPATH": os.pathsep.join(sys.path)})
    assert "LOAD-REFUSED" in proc.stdout and "evilmod.run" in proc.stdout, proc.stdout
    assert not mark.exists(), "the package made aotpack import a module it names"
    assert not aotpack.verify(path)["ok"]
    shown = str(aotpack.inspect(path))  # inspect shows the context it names, importing nothing
    assert "collections.defaultdict" in shown and "evilmod" in shown and not mark.exists()


def test_a_defaultdict_with_a_plain_factory_still_round_trips(tmp_path):
    path = aotpack.compile(returns_defaultdict, (torch.ones(2),), backend="eager").save(tmp_path / "d.aot")
    out = aotpack.load(path)(torch.ones(3).view(3)[:2])
    assert isinstance(out, collections.defaultdict) and out.default_factory is list


@pytest.mark.parametrize("target", ["fifo", "symlink to fifo", "folder"])
def test_writers_refuse_a_target_that_is_not_a_regular_file(tmp_path, target):
    """``-o /dev/null`` as root would replace the system's /dev/null; a fifo or folder
    here stands for it (the check is on what the path is after following links)."""
    special = tmp_path / "special"
    if target == "folder":
        special.mkdir()
    else:
        os.mkfifo(special)
    out = special if target != "symlink to fifo" else tmp_path / "link"
    if target == "symlink to fifo":
        os.symlink(special, out)
    pkg = aotpack.compile(returns_defaultdict, (torch.ones(2),), backend="eager")
    with pytest.raises(aotpack.AotpackError, match="exists and is (a fifo|a folder); aotpack writes only regular"):
        pkg.save(out)
    assert (special.is_fifo() if target != "folder" else special.is_dir())  # nothing was replaced
    proc = run_fresh(["-m", "aotpack", "cache", "export", "-o", str(out)], check=False,
                     env={"AOTPACK_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert (special.is_fifo() if target != "folder" else special.is_dir())


def test_an_empty_trusted_keys_variable_is_an_error_not_signatures_off(tmp_path):
    path = aotpack.compile(returns_defaultdict, (torch.ones(2),), backend="eager").save(tmp_path / "d.aot")
    proc = run_fresh(["-c", "import sys, aotpack; aotpack.load(sys.argv[1])", str(path)], check=False,
                     env={fmt.ENV_TRUSTED_KEYS: ""})
    assert proc.returncode != 0
    assert "AOTPACK_TRUSTED_KEYS is set but names no key file" in proc.stderr
    proc = run_fresh(["-m", "aotpack", "run", str(path)], check=False, env={fmt.ENV_TRUSTED_KEYS: " "})
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "names no key file" in proc.stderr


# -- an authenticated compile cache ----------------------------------------------------

def relu_program(x):
    return torch.relu(x) * 2


def _forge_every_entry(store, old: bytes, new: bytes) -> int:
    """What whoever can write the store (and lacks the secret) can do: re-frame each
    entry with its artifact's code changed, under the same key, with a valid checksum."""
    from aotpack.cache.entry import pack_entry, pack_files, unpack_entry, unpack_files

    forged = 0
    for digest in store.digests():
        entry = unpack_entry(store.get(digest))
        files, meta = unpack_files(entry.payload)
        files = {n: b.replace(old, new) for n, b in files.items()}
        store.put(digest, pack_entry(digest, entry.header["parts"], pack_files(files, meta)), overwrite=True)
        forged += 1
    return forged


@pytest.mark.parametrize("where", ["local", "redis"])
def test_a_cache_with_a_secret_never_uses_a_forged_entry(tmp_path, where, request):
    from aotpack.cache import open_store

    url = str(tmp_path / "cache") if where == "local" else request.getfixturevalue("redis_url")
    secret = "a fleet secret of 32 characters!"
    x = torch.tensor([-1.0, 2.0])
    authenticated = open_store(url, secret=secret)
    aotpack.compile(relu_program, (x,), backend="eager", cache=authenticated)
    assert all("mac" in authenticated.header(d) for d in authenticated.digests())
    assert _forge_every_entry(authenticated, b"relu", b"sigmoid") == 1

    # trusted as it is (no secret): the forged code is used; docs/concepts/trust.md says so
    plain = aotpack.compile(relu_program, (x,), backend="eager", cache=open_store(url))
    assert not torch.equal(aotpack.load(plain.save(tmp_path / "p.aot"))(x), relu_program(x))

    with pytest.warns(aotpack.cache.CacheWarning, match="fails authentication .*not used; evicted, compiling here"):
        pkg = aotpack.compile(relu_program, (x,), backend="eager", cache=open_store(url, secret=secret))
    torch.testing.assert_close(aotpack.load(pkg.save(tmp_path / "a.aot"))(x), relu_program(x))
    entry = authenticated.fetch(authenticated.digests()[0])  # the local compile's entry, authenticated again
    assert entry is not None and "mac" in entry.header


def test_a_cache_secret_that_is_empty_or_short_is_an_error(tmp_path, monkeypatch):
    from aotpack.cache import open_store

    monkeypatch.setenv("AOTPACK_CACHE_SECRET", "")
    with pytest.raises(aotpack.CacheError, match=r"\$AOTPACK_CACHE_SECRET is empty"):
        open_store(str(tmp_path))
    with pytest.raises(aotpack.CacheError, match="secret= is 5 bytes"):
        open_store(str(tmp_path), secret="short")


def test_importing_a_bundle_into_an_authenticated_store_checks_every_entry(tmp_path):
    from aotpack.cache import open_store

    plain = open_store(str(tmp_path / "plain"))
    aotpack.compile(relu_program, (torch.ones(2),), backend="eager", cache=plain)
    bundle = plain.export()
    strict = open_store(str(tmp_path / "strict"), secret="another secret, 16+ chars")
    with pytest.raises(aotpack.CacheError, match="bundle entry 0 fails authentication .*nothing imported"):
        strict.import_bundle(bundle)
    assert strict.digests() == []


def test_a_variant_file_left_out_of_the_files_list_is_never_run(tmp_path):
    """The variant's files list omits graph.py (so load would verify no digest of it) and
    graph.py is tampered: load refuses the package, verify says no, nothing runs."""
    from aotpack.package.reader import PackageReader
    from aotpack.package.writer import package_entries, write_members

    path = aotpack.compile(relu_program, (torch.ones(2),), backend="eager").save(tmp_path / "e.aot")
    with PackageReader(path) as r:
        doc = json.loads(r.read(fmt.MANIFEST))
        members = {n: r.read(n) for n in r.names() if n != fmt.MANIFEST}
    doc.pop("members")
    doc["variants"][0]["files"] = [f for f in doc["variants"][0]["files"] if f != "graph.py"]
    graph = next(n for n in members if n.endswith("graph.py"))
    members[graph] = members[graph].replace(b"relu", b"sigmoid")
    write_members(path, package_entries(doc, members))
    with pytest.raises(aotpack.FormatError, match="reads graph.py, which the variant's manifest entry does not list"):
        aotpack.load(path)
    assert not aotpack.verify(path)["ok"]


def test_one_good_signature_by_a_trusted_key_suffices(tmp_path):
    """Two signatures by trusted keys, the first broken: the second holds (README: any
    one good signature by a trusted key suffices); with only the broken one, refused."""
    from aotpack.package.reader import PackageReader
    from aotpack.package.writer import write_members

    a, b = tmp_path / "a.key", tmp_path / "b.key"
    aotpack.generate_key(a)
    aotpack.generate_key(b)
    path = aotpack.compile(relu_program, (torch.ones(2),), backend="eager").save(tmp_path / "s.aot")
    aotpack.sign(path, a)
    aotpack.sign(path, b)
    with PackageReader(path) as r:
        sigs = r.signatures
        members = [(n, r.read(n)) for n in r.names()]
    broken = [dict(sigs[0], signature=sigs[1]["signature"]), sigs[1]]  # a's entry carries b's bytes
    write_members(path, [*members, (fmt.SIGNATURES, json.dumps({"signatures": broken}).encode())])
    fn = aotpack.load(path, trusted_keys=[f"{a}.pub", f"{b}.pub"])
    assert fn.signer is not None and str(b) in str(fn.signer.source)
    with pytest.raises(aotpack.SignatureError, match="does not match its manifest, and no valid one"):
        aotpack.load(path, trusted_keys=[f"{a}.pub"])


def test_adding_a_variant_to_a_signed_package_says_it_drops_the_signature(tmp_path):
    key = tmp_path / "k.key"
    aotpack.generate_key(key)
    path = aotpack.compile(relu_program, (torch.ones(2),), backend="eager").save(tmp_path / "s.aot")
    aotpack.sign(path, key)
    with pytest.warns(aotpack.SignatureDroppedWarning, match="removed the signatures"):
        aotpack.add_variant(path, relu_program, (torch.ones(3),), variant="three", backend="eager")
    assert aotpack.inspect(path).manifest.variant("three") is not None


def test_a_damaged_repro_storage_is_an_error_not_random_data(tmp_path):
    from aotpack.repro import InputReader, InputWriter

    out = tmp_path / "r"
    w = InputWriter(str(out))
    x = torch.arange(64, dtype=torch.float32)
    w.tensor("x", x)
    (digest,) = os.listdir(out / "storages")
    storage = out / "storages" / digest
    storage.write_bytes(storage.read_bytes()[:100])  # truncated
    with pytest.raises(RuntimeError, match="is damaged: 100 bytes, 256 expected"):
        InputReader(str(out)).storage(digest, 256)
    storage.unlink()
    os.mkfifo(storage)
    with pytest.raises(RuntimeError, match="is not a regular file"):
        InputReader(str(out)).storage(digest, 256)
    storage.unlink()  # missing: deterministic random data, as documented
    assert InputReader(str(out)).storage(digest, 256).nbytes() == 256


def test_a_cache_entry_whole_but_holding_no_artifact_is_compiled_again(tmp_path):
    """An entry with a valid checksum whose artifact framing is broken (invalid UTF-8 in
    its index): a CacheWarning and a local compile, not a UnicodeDecodeError."""
    from aotpack.cache import open_store
    from aotpack.cache.entry import pack_entry, unpack_entry

    store = open_store(str(tmp_path / "c"))
    aotpack.compile(relu_program, (torch.ones(2),), backend="eager", cache=store)
    (digest,) = store.digests()
    entry = unpack_entry(store.get(digest))
    broken = b"AOTPKFS1" + (4).to_bytes(4, "little") + b"\xff\xfe\xfd\xfc"
    store.put(digest, pack_entry(digest, entry.header["parts"], broken), overwrite=True)
    with pytest.warns(aotpack.cache.CacheWarning, match="holds no valid artifact"):
        pkg = aotpack.compile(relu_program, (torch.ones(2),), backend="eager", cache=store)
    torch.testing.assert_close(aotpack.load(pkg.save(tmp_path / "p.aot"))(torch.ones(2)), relu_program(torch.ones(2)))


def test_a_cache_folder_that_cannot_be_created_is_a_warning_and_a_local_compile(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder's parent should be")
    with pytest.warns(aotpack.cache.CacheWarning, match="cannot create the cache directory"):
        pkg = aotpack.compile(relu_program, (torch.ones(2),), backend="eager", cache=str(blocker / "cache"))
    assert pkg.manifest.variants[0].name == "default"


def to_device(x, d):
    return x.to(d) * 2


def _rewrite_weights_header(path, edit):
    """Rewrite the safetensors header of weights.safetensors (digests recomputed)."""
    import struct

    from aotpack.package.reader import PackageReader
    from aotpack.package.writer import package_entries, write_members

    with PackageReader(path) as r:
        doc = json.loads(r.read(fmt.MANIFEST))
        members = {n: r.read(n) for n in r.names() if n != fmt.MANIFEST}
    data = members[fmt.WEIGHTS]
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    edit(header)
    blob = json.dumps(header).encode().ljust(n)
    assert len(blob) == n
    members[fmt.WEIGHTS] = data[:8] + blob + data[8 + n:]
    doc.pop("members")
    write_members(path, package_entries(doc, members))


MANIFEST_EDITS = {
    "parameter name with code": lambda d: d["program"]["signature"][0].update(name="x; import os"),
    "empty parameter name": lambda d: d["program"]["signature"][0].update(name=""),
    "parameter name with a control character": lambda d: d["program"]["signature"][0].update(name="x\x07"),
    "constant device 'bogus'": lambda d: d["variants"][0]["in_spec"]["children"][1].update(value="bogus"),
    "out_spec index 7": lambda d: d["program"]["out_spec"].update(index=7),
    "out_spec index 2**64": lambda d: d["program"]["out_spec"].update(index=2**64),
    "a size expression of 200,000 characters": lambda d: d["variants"][0]["inputs"][0].update(
        shape=[{"expr": "b" * 200_000}]),
    "a 3,000-term product": lambda d: d["variants"][0]["inputs"][0].update(shape=[{"expr": "*".join(["b"] * 3000)}]),
    "a stride expression that is no arithmetic": lambda d: (d.update(format_version=11), d["variants"][0]["inputs"][0]
                                                            .update(layout={"stride": [{"expr": "__import__('os')"}]})),
    "an output 'subclass' that is subprocess.Popen": lambda d: (d.update(format_version=12), d["program"].update(
        out_spec={"kind": "subclass", "type": "subprocess.Popen", "attrs": ["a"], "meta": None,
                  "children": [d["program"]["out_spec"]]})),
    "a 'subclass' of no inner tensors": lambda d: (d.update(format_version=12), d["program"].update(
        out_spec={"kind": "subclass", "type": "torch.Tensor", "attrs": [], "meta": None, "children": []})),
    "variant device meta": lambda d: d["variants"][0].update(device="meta"),
    "variant device cuda:99": lambda d: d["variants"][0].update(device="cuda:99"),
}


@pytest.mark.parametrize("edit", list(MANIFEST_EDITS))
def test_self_consistent_manifests_that_would_crash_load_are_format_errors(tmp_path, edit):
    """The manifest fuzzer's item-8 seeds: each rewritten manifest (digests recomputed) is
    an aotpack error at load, and verify says no, never a ValueError/IndexError/
    RecursionError/MemoryError out of aotpack."""
    path = aotpack.compile(to_device, (torch.ones(4), torch.device("cpu")), backend="eager").save(tmp_path / "d.aot")
    rewrite_manifest(path, MANIFEST_EDITS[edit])
    with pytest.raises(aotpack.AotpackError):
        aotpack.load(path)(torch.ones(4))
    try:
        ok = aotpack.verify(path)["ok"]
    except aotpack.FormatError:  # a manifest that is no manifest: verify says so as an error
        ok = False
    assert not ok


@pytest.mark.parametrize("shape", [[-2, -256], [2**62, 2**62, 0], "x"])
def test_weights_header_shapes_no_tensor_has_are_refused(tmp_path, shape):
    path = aotpack.compile(torch.nn.Linear(32, 16), (torch.ones(2, 32),), backend="eager").save(tmp_path / "l.aot")
    _rewrite_weights_header(path, lambda h: h[next(k for k in h if k.endswith("weight"))].update(shape=shape))
    with pytest.raises((aotpack.FormatError, aotpack.IntegrityError)):
        aotpack.load(path)


def test_overlapping_weights_in_the_file_are_refused(tmp_path):
    path = aotpack.compile(torch.nn.Linear(32, 16), (torch.ones(2, 32),), backend="eager").save(tmp_path / "l.aot")

    def overlap(h):
        w = next(k for k in h if k.endswith("weight"))
        b = next(k for k in h if k.endswith("bias"))
        start = h[w]["data_offsets"][0]
        h[b]["data_offsets"] = [start, start + 64]  # the bias reads the weight's first bytes
    _rewrite_weights_header(path, overlap)
    with pytest.raises(aotpack.IntegrityError, match="overlap"):
        aotpack.load(path)


def test_a_signed_load_uses_only_the_bytes_it_checked(tmp_path):
    """Weight bytes overwritten in place in the file after a signed load do not reach
    the next call (the load copied what it checked); example_inputs re-checks the
    signature with the load's keys, so a file replaced by an unsigned one is refused."""
    key = tmp_path / "k.key"
    aotpack.generate_key(key)
    torch.manual_seed(0)
    m = torch.nn.Linear(64, 8).eval().requires_grad_(False)
    x = torch.randn(2, 64)
    path = aotpack.compile(m, (x,), backend="eager").save(tmp_path / "s.aot")
    aotpack.sign(path, key)
    fn = aotpack.load(path, trusted_keys=[f"{key}.pub"])
    unsigned = aotpack.load(path)  # no keys: the weights stay mapped from the file (documented)
    want = m(x)
    data = open(path, "rb").read()
    at = data.find(m.weight.numpy().tobytes())
    assert at > 0
    with open(path, "r+b") as f:  # in place, as `dd conv=notrunc` would
        f.seek(at)
        f.write(torch.full((64 * 8,), float("nan")).numpy().tobytes())
    torch.testing.assert_close(fn(x), want)
    assert torch.isnan(unsigned(x)).any()  # what the trust model says of unsigned loads
    aotpack.compile(m, (x,), backend="eager").save(tmp_path / "other.aot")
    os.replace(tmp_path / "other.aot", path)  # an unsigned package in its place
    with pytest.raises(aotpack.SignatureError):
        fn.example_inputs()
