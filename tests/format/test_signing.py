"""Signed packages: a package signed by a trusted key loads; anything else is refused
with SignatureError before any member is used (issue "Trust")."""

from __future__ import annotations

import json
import os
import zipfile

import pytest
import torch

import aotpack
from aotpack.package import fmt
from aotpack.package.writer import write_members
from conftest import run_fresh


def double(x):
    return x * 2 + 1


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    ids = {name: aotpack.generate_key(d / name) for name in ("release", "other")}
    return d, ids


@pytest.fixture
def package(tmp_path):
    return aotpack.compile(double, (torch.randn(3, 4),), backend="eager").save(tmp_path / "p.aot")


def _members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _rewrite(path, members: dict[str, bytes]) -> None:
    """Write ``members`` back as a well-formed package (valid zip, CRCs recomputed): what an
    attacker who can write the file can do."""
    write_members(path, [(fmt.MANIFEST, members.pop(fmt.MANIFEST)), *members.items()])


def test_signed_package_loads_and_names_its_signer(package, keys):
    d, ids = keys
    assert aotpack.sign(package, d / "release") == ids["release"]
    fn = aotpack.load(package, trusted_keys=[d / "release.pub"])
    assert fn.signer.key_id == ids["release"] and fn.signer.source.endswith("release.pub")
    torch.testing.assert_close(fn(torch.ones(3, 4)), torch.full((3, 4), 3.0))
    assert aotpack.load(package).signer is None  # no keys: no signature required, none checked
    assert aotpack.inspect(package).signed_by == [ids["release"]]


def test_unsigned_package_refused_when_keys_are_given(package, keys):
    d, _ = keys
    with pytest.raises(aotpack.SignatureError, match="is not signed, and trusted keys were given"):
        aotpack.load(package, trusted_keys=d / "release.pub")


def test_signature_by_another_key_refused(package, keys):
    d, ids = keys
    aotpack.sign(package, d / "other")
    with pytest.raises(aotpack.SignatureError, match=f"signed by {ids['other']}, none of the trusted keys "
                                                     rf"\({ids['release']}\)"):
        aotpack.load(package, trusted_keys=[d / "release.pub"])
    aotpack.sign(package, d / "release")  # a second signature: either key is accepted
    for k in ("release", "other"):
        assert aotpack.load(package, trusted_keys=[d / f"{k}.pub"]).signer.key_id == ids[k]


@pytest.mark.parametrize("attack", ["member", "backend_entry", "manifest_bytes"])
def test_changes_after_signing_are_refused_before_any_member_is_used(package, keys, attack):
    """The attack the digests alone cannot stop: change a member (or the manifest) and
    recompute its digest and the zip's CRC. With keys, the changed manifest fails its
    signature, before the manifest is parsed and before any member is read."""
    d, _ = keys
    aotpack.sign(package, d / "release")
    members = _members(package)
    manifest = json.loads(members[fmt.MANIFEST])
    if attack == "member":
        name = next(n for n in members if n.endswith(".py"))
        members[name] = members[name].replace(b"2", b"3")
        manifest["members"][name] = {fmt.DIGEST: fmt.digest(members[name]), "size": len(members[name])}
        members[fmt.MANIFEST] = json.dumps(manifest, indent=1).encode()
    elif attack == "backend_entry":
        manifest["variants"][0]["backend_entry"] = "sys:exit"
        members[fmt.MANIFEST] = json.dumps(manifest, indent=1).encode()
    else:  # not even JSON: the signature check comes first
        members[fmt.MANIFEST] = b"\x00garbage"
    _rewrite(package, members)
    with pytest.raises(aotpack.SignatureError, match="changed after it was signed"):
        aotpack.load(package, trusted_keys=[d / "release.pub"])  # the old signature no longer matches
    if attack != "manifest_bytes":  # (garbage is a FormatError for verify, which then parses it)
        result = aotpack.verify(package, trusted_keys=[d / "release.pub"])
        assert result["integrity"] is None and result["signed_by"]  # consistent, and still "signed"...
        assert not result["ok"] and "changed after it was signed" in result["signature"]  # ...but not by the key


def test_trusted_keys_from_the_environment(package, keys, monkeypatch):
    d, ids = keys
    monkeypatch.setenv("AOTPACK_TRUSTED_KEYS", f"{d / 'other.pub'}{os.pathsep}{d / 'release.pub'}")
    with pytest.raises(aotpack.SignatureError):
        aotpack.load(package)
    aotpack.sign(package, d / "release")
    assert aotpack.load(package).signer.key_id == ids["release"]


def test_changing_a_signed_package_drops_its_signature(package, keys):
    d, _ = keys
    aotpack.sign(package, d / "release")
    aotpack.add_variant(package, double, (torch.randn(5),), variant="b5", backend="eager")
    assert aotpack.inspect(package).signed_by == []
    with pytest.raises(aotpack.SignatureError, match="not signed"):
        aotpack.load(package, trusted_keys=[d / "release.pub"])


def test_openssh_keys_and_key_objects(package, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    private = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "id_ed25519").write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    ssh_pub = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    kid = aotpack.sign(package, tmp_path / "id_ed25519")
    assert aotpack.load(package, trusted_keys=ssh_pub).signer.key_id == kid
    assert aotpack.load(package, trusted_keys=[private.public_key()]).signer.key_id == kid
    rsa_pub = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(aotpack.AotpackError, match="not an Ed25519 key"):
        aotpack.load(package, trusted_keys=rsa_pub)


def test_bad_keys_are_one_clear_error(package, keys, tmp_path):
    d, _ = keys
    with pytest.raises(aotpack.AotpackError, match="is a private key; load needs the public key"):
        aotpack.load(package, trusted_keys=[d / "release"])
    with pytest.raises(aotpack.AotpackError, match="no key file"):
        aotpack.load(package, trusted_keys=[tmp_path / "missing.pub"])
    (tmp_path / "junk.pub").write_text("not a key")
    with pytest.raises(aotpack.AotpackError, match="is not an Ed25519 public key"):
        aotpack.load(package, trusted_keys=[tmp_path / "junk.pub"])
    with pytest.raises(aotpack.AotpackError, match="trusted_keys is empty"):
        aotpack.load(package, trusted_keys=[])
    with pytest.raises(aotpack.AotpackError, match="exists; a key is never overwritten"):
        aotpack.generate_key(d / "release")
    assert oct(os.stat(d / "release").st_mode & 0o777) == "0o600"


def test_a_damaged_package_is_never_signed(package, keys):
    d, _ = keys
    with zipfile.ZipFile(package) as z:
        info = next(i for i in z.infolist() if i.filename.endswith(".py"))
    data = bytearray(open(package, "rb").read())
    data[info.header_offset + 30 + len(info.filename) + len(info.extra) + 3] ^= 0xFF  # a byte of the member
    open(package, "wb").write(bytes(data))
    with pytest.raises(aotpack.IntegrityError, match="does not match its blake3 digest"):
        aotpack.sign(package, d / "release")
    assert aotpack.inspect(package).signed_by == []


def test_cli_keygen_sign_verify(tmp_path, package):
    def cli(*args):
        return run_fresh(["-m", "aotpack", *map(str, args)], timeout=120, check=False)

    key = tmp_path / "k"
    assert cli("keygen", key).returncode == 0
    r = cli("verify", package, "--key", f"{key}.pub")
    assert r.returncode == 1 and "signature FAILED" in r.stdout and "not signed" in r.stdout
    r = cli("sign", package, "--key", key)
    assert r.returncode == 0, r.stderr
    r = cli("verify", package, "--key", f"{key}.pub")
    assert r.returncode == 0 and "signature ok: signed by ed25519:" in r.stdout
    r = cli("run", package, "--key", f"{key}.pub")
    assert r.returncode == 0 and "first call" in r.stdout
    r = cli("sign", package, "--key", f"{key}.pub")  # the public key cannot sign
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "hint: " in r.stderr
    assert "Traceback" not in r.stderr
