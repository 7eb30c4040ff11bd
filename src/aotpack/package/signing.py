"""Signed packages: Ed25519 signatures over the manifest's exact bytes.

A package holds code that load runs, so a service should run only packages its own
build signed. The manifest lists a cryptographic digest (BLAKE3) of every other member,
so one signature over the manifest's bytes covers the whole file; load checks it before
the manifest is parsed, and each member against its digest before that member is used.

The signatures live in the member ``signatures.json`` (the one member the manifest does
not list), so signing adds a member and leaves every other byte as it was::

    {"signatures": [{"algorithm": "ed25519", "key_id": "ed25519:<16 hex>",
                     "signature": "<base64 of 64 bytes>"}]}

Several keys may sign one package (a build key and a release key); load accepts it when
any one signature is by a trusted key. Changing the package (add_variant, rebuild)
drops the signatures: the new manifest was signed by no one.

Keys are Ed25519 (``cryptography``): private keys as PKCS#8 PEM or OpenSSH files,
public keys as PEM, OpenSSH (``ssh-ed25519 AAAA...``) or raw 32 bytes. A key's id is
``ed25519:`` and the first 16 hex digits of the SHA-256 of its raw public bytes.

Example:
    >>> aotpack.generate_key("release.key")          # writes release.key and release.key.pub  # doctest: +SKIP
    >>> aotpack.sign("model.aot", "release.key")                                              # doctest: +SKIP
    >>> fn = aotpack.load("model.aot", trusted_keys=["release.key.pub"])                       # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from typing import NamedTuple

from ..errors import AotpackError, FormatError, SignatureError
from . import format as fmt

# What is signed: a fixed context string, then the manifest's bytes. The context makes
# a signature on a package useless for anything else the same key may sign.
_CONTEXT = b"aotpack package signature v1\n"
MAX_SIGNATURES_BYTES = 1 << 20
ENV_TRUSTED_KEYS = fmt.ENV_TRUSTED_KEYS


class TrustedKey(NamedTuple):
    """A public key load accepts signatures from; ``source`` says where it came from."""

    key_id: str
    public: object  # cryptography's Ed25519PublicKey
    source: str


class Signer(NamedTuple):
    """Who signed a package: the key's id and where the trusted key was read from."""

    key_id: str
    source: str

    def __str__(self) -> str:
        return f"{self.key_id} ({self.source})"


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:  # pragma: no cover - a dependency of aotpack
        raise AotpackError("signed packages need the `cryptography` package",
                           hint="pip install cryptography") from None
    return serialization, ed25519


def key_id(public) -> str:
    serialization, _ = _crypto()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def _public_from_bytes(data: bytes, source: str):
    serialization, ed25519 = _crypto()
    text = data.strip()
    try:
        if len(data) == 32:
            return ed25519.Ed25519PublicKey.from_public_bytes(data)
        if text.startswith(b"ssh-"):
            key = serialization.load_ssh_public_key(text)
        elif b"PRIVATE KEY" in text:
            raise AotpackError(f"{source} is a private key; load needs the public key",
                               hint="pass the .pub file written beside it; keep the private key on the build machine")
        else:
            key = serialization.load_pem_public_key(text)
    except AotpackError:
        raise
    except Exception as e:  # noqa: BLE001 - cryptography raises ValueError, TypeError, UnsupportedAlgorithm...
        raise AotpackError(f"{source} is not an Ed25519 public key ({type(e).__name__}: {e})".splitlines()[0],
                           hint="pass the .pub file written by `aotpack keygen`, or an ssh-ed25519 public key") \
            from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise AotpackError(f"{source} is a {type(key).__name__.removeprefix('_')}, not an Ed25519 key",
                           hint="aotpack signs with Ed25519: create a key with `aotpack keygen`")
    return key


def _read_key_file(path: str) -> bytes:
    import stat

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise AotpackError(f"key {path} is not a regular file", hint="pass a key file")
        with open(path, "rb") as f:
            return f.read(1 << 16)
    except FileNotFoundError:
        raise AotpackError(f"no key file {path}", hint="check the path; `aotpack keygen KEY` creates a key pair") \
            from None
    except OSError as e:
        raise AotpackError(f"cannot read key {path}: {e.strerror}", hint="check the file's permissions") from None


def trusted_keys(keys) -> list[TrustedKey]:
    """Normalize what ``load(trusted_keys=...)`` accepts: paths of public key files,
    key bytes (PEM, OpenSSH or raw 32 bytes), Ed25519PublicKey objects, or a list of
    them. A string holding ``os.pathsep`` is a list of paths (as ``$AOTPACK_TRUSTED_KEYS``)."""
    _, ed25519 = _crypto()
    if isinstance(keys, (str, os.PathLike, bytes)) or isinstance(keys, ed25519.Ed25519PublicKey):
        keys = [keys]
    out = []
    for k in keys:
        if isinstance(k, ed25519.Ed25519PublicKey):
            out.append(TrustedKey(key_id(k), k, "a key object"))
        elif isinstance(k, bytes):
            pub = _public_from_bytes(k, "a key given as bytes")
            out.append(TrustedKey(key_id(pub), pub, "a key given as bytes"))
        elif isinstance(k, (str, os.PathLike)):
            for path in os.fspath(k).split(os.pathsep):
                if path:
                    pub = _public_from_bytes(_read_key_file(path), path)
                    out.append(TrustedKey(key_id(pub), pub, path))
        else:
            raise TypeError(f"trusted_keys takes key file paths, key bytes or Ed25519PublicKey objects, "
                            f"not {type(k).__name__}")
    if not out:
        raise AotpackError("trusted_keys is empty: no package could pass",
                           hint="pass the public key files your packages are signed with")
    return out


def keys_for_load(keys) -> list[TrustedKey] | None:
    """The keys load checks against: ``keys`` if given, else ``$AOTPACK_TRUSTED_KEYS``
    (a service can require signed packages without changing its code), else None."""
    if keys is None:
        keys = os.environ.get(ENV_TRUSTED_KEYS)
        if keys is not None and not keys.strip(os.pathsep + " \t"):
            # set but empty (a template with an unset variable): never "no signature needed"
            raise AotpackError(f"${ENV_TRUSTED_KEYS} is set but names no key file, so no package could pass",
                               hint=f"name the public key files ({os.pathsep}-separated), or unset "
                                    f"{ENV_TRUSTED_KEYS} to load unsigned packages")
    return None if keys is None else trusted_keys(keys)


def parse_signatures(blob: bytes | None, where: str) -> list[dict]:
    """The records of a signatures.json member (FormatError if malformed)."""
    if blob is None:
        return []
    try:
        doc = json.loads(blob)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise FormatError(f"the signatures of {where} are not valid JSON: {e}") from None
    sigs = doc.get("signatures") if isinstance(doc, dict) else None
    if not isinstance(sigs, list) or not all(
            isinstance(s, dict) and s.get("algorithm") == "ed25519" and isinstance(s.get("key_id"), str)
            and isinstance(s.get("signature"), str) for s in sigs):
        raise FormatError(f"the signatures of {where} are malformed",
                          hint="the file was damaged or edited; ask its publisher for a signed copy")
    return sigs


def check(manifest_blob: bytes, signatures: list[dict], keys: list[TrustedKey], where: str) -> Signer:
    """The signer of ``manifest_blob`` among ``keys``; SignatureError if none signed it."""
    import base64

    from cryptography.exceptions import InvalidSignature

    if not signatures:
        raise SignatureError(f"{where} is not signed, and trusted keys were given",
                             hint="sign it with `aotpack sign PKG --key KEY`, or load without trusted_keys")
    by_id = {k.key_id: k for k in keys}
    bad = None
    for s in signatures:
        k = by_id.get(s["key_id"])
        if k is None:
            continue
        try:
            k.public.verify(base64.b64decode(s["signature"], validate=True), _CONTEXT + manifest_blob)
        except (InvalidSignature, ValueError):
            bad = bad or k  # another signature by a trusted key may still hold
            continue
        return Signer(k.key_id, k.source)
    if bad is not None:
        raise SignatureError(f"{where} has a signature by {bad.key_id} ({bad.source}) that does not match its "
                             "manifest, and no valid one by a trusted key: the package was changed after it "
                             "was signed", hint="do not run it; get the package again from its publisher")
    ids = ", ".join(s["key_id"] for s in signatures)
    raise SignatureError(f"{where} is signed by {ids}, none of the trusted keys "
                         f"({', '.join(k.key_id for k in keys)})",
                         hint="pass the public key of the package's publisher, or sign it with a key you trust")


def _private_key(key):
    serialization, ed25519 = _crypto()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    path = os.fspath(key)
    data = _read_key_file(path)
    try:
        if data.lstrip().startswith(b"-----BEGIN OPENSSH PRIVATE KEY"):
            private = serialization.load_ssh_private_key(data, password=None)
        else:
            private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise AotpackError(f"{path} is not an unencrypted private key ({e})".splitlines()[0],
                           hint="pass the private key written by `aotpack keygen` (not the .pub file)") from None
    if not isinstance(private, ed25519.Ed25519PrivateKey):
        raise AotpackError(f"{path} is not an Ed25519 private key", hint="create one with `aotpack keygen`")
    return private


def generate_key(path: str | os.PathLike) -> str:
    """Write a new Ed25519 key pair: ``path`` (private, PKCS#8 PEM, mode 0600) and
    ``path.pub`` (public, PEM). Refuses to overwrite either. Returns the key id."""
    serialization, ed25519 = _crypto()
    path = os.fspath(path)
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    pub = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    for p in (path, path + ".pub"):
        if os.path.lexists(p):
            raise AotpackError(f"{p} exists; a key is never overwritten", hint="choose another path")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    with open(os.open(path + ".pub", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "wb") as f:
        f.write(pub)
    return key_id(private.public_key())


def signer_ids(signatures: Iterable[dict]) -> list[str]:
    return [s["key_id"] for s in signatures]
