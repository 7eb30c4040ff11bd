"""The bytes of a cache entry, and of the artifact inside it.

An entry is self-checking, so any store (a directory, Redis, a bundle file) can hand
back bytes and the reader knows whether they are whole::

    b"AOTPKCE1"  u32 header length  header (JSON)  payload

The header holds the key's digest and parts, the payload's size and checksum, and facts
for ``aotpack cache ls`` (kind, when created, compile seconds). A flipped byte, a
truncated value or an entry stored under the wrong key raises ``CorruptEntry``;
the checksum is XXH3-128 (it guards against damage, not attack -- the store is trusted
as much as the network to it -- and runs at memory speed, where sha256 halved the
throughput of 10 MB entries in bench/cache_load.py);
the stores turn that into a warning, evict the entry and compile again.

Authentication (``open_store(..., secret=...)`` or ``$AOTPACK_CACHE_SECRET``): the
header also holds ``mac``, a keyed BLAKE3 of the rest of the header and the payload
under a key derived from the fleet's shared secret. A store with a secret uses only
entries whose ``mac`` checks: whoever can write the store but does not hold the secret
can no longer choose the code of the packages built through it (``UnauthenticEntry``,
a warning and a local compile, like a damaged entry).

An *artifact* (what ``Backend.compile`` returned: files and meta) is framed the same
way inside the payload: a JSON header listing each file's name and length, then the
files' bytes. No pickle anywhere, as in packages.

A *bundle* (``Context.bundle()``, ``aotpack cache export``) is entries back to back::

    b"AOTPKCB1"  u32 count  (u64 length  entry) * count
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass

import xxhash

__all__ = ["Entry", "CorruptEntry", "UnauthenticEntry", "authenticate", "mac_key", "make_entry", "pack_entry", "unpack_entry", "read_header", "pack_files", "unpack_files",
           "HEADER_PREFIX", "make_bundle", "split_bundle"]

MAGIC = b"AOTPKCE1"
_LEN = struct.Struct("<I")
HEADER_PREFIX = len(MAGIC) + _LEN.size
_FILES_MAGIC = b"AOTPKFS1"
_BUNDLE_MAGIC = b"AOTPKCB1"
_COUNT = struct.Struct("<I")
_SIZE = struct.Struct("<Q")


#: header fields pack_entry writes itself; the rest is caller info (kind, compile_s, ...)
FRAMING_FIELDS = frozenset({"key", "parts", "size", "xxh3_128", "created", "mac"})


class CorruptEntry(Exception):
    """An entry's bytes are not a whole, matching entry (internal; stores warn and evict)."""


class UnauthenticEntry(CorruptEntry):
    """An entry whole and matching, but not written by a holder of the store's secret."""


def mac_key(secret: str | bytes) -> bytes:
    """The 32-byte BLAKE3 key of a shared secret (its own derivation context, so the
    secret is never used as a key anywhere else)."""
    import blake3

    data = secret.encode() if isinstance(secret, str) else bytes(secret)
    return blake3.blake3(data, derive_key_context="aotpack 2026-12 cache entry authentication").digest()


def _mac(header: dict, payload, key: bytes) -> str:
    import blake3

    h = blake3.blake3(key=key)
    h.update(json.dumps({k: v for k, v in header.items() if k != "mac"}, sort_keys=True).encode())
    h.update(b"\0")
    h.update(payload)
    return h.hexdigest()


def authenticate(header: dict, payload, key: bytes) -> None:
    """UnauthenticEntry unless ``header["mac"]`` is the MAC of the entry under ``key``."""
    import hmac

    mac = header.get("mac")
    if not isinstance(mac, str):
        raise UnauthenticEntry("it carries no MAC (written by a store without the secret)")
    if not hmac.compare_digest(mac, _mac(header, payload, key)):
        raise UnauthenticEntry("its MAC does not match (written without the secret, or altered)")


@dataclass
class Entry:
    key: str
    header: dict
    payload: bytes
    raw: bytes  # the whole entry, as stored


def make_entry(key: str, parts: dict, payload: bytes, *, mac_key: bytes | None = None, **info) -> Entry:
    """The entry for ``key`` holding ``payload`` (``info``: kind, compile_s, ...);
    authenticated with ``mac_key`` when given."""
    header = {"key": key, "parts": parts, "size": len(payload), "xxh3_128": _checksum(payload),
              "created": time.time(), **info}
    if mac_key is not None:
        header["mac"] = _mac(header, payload, mac_key)
    blob = json.dumps(header, sort_keys=True).encode()
    return Entry(key, header, payload, MAGIC + _LEN.pack(len(blob)) + blob + payload)


def pack_entry(key: str, parts: dict, payload: bytes, *, mac_key: bytes | None = None, **info) -> bytes:
    """Frame ``payload`` as the entry for ``key``: ``make_entry(...).raw``."""
    return make_entry(key, parts, payload, mac_key=mac_key, **info).raw


def read_header(data: bytes | memoryview) -> tuple[dict, int]:
    """The header of an entry and where its payload starts; ``data`` may be just a prefix
    of at least the header (stores read headers alone for listing)."""
    if len(data) < HEADER_PREFIX or bytes(data[: len(MAGIC)]) != MAGIC:
        raise CorruptEntry("not an aotpack cache entry (bad magic)")
    (n,) = _LEN.unpack_from(data, len(MAGIC))
    end = HEADER_PREFIX + n
    if len(data) < end:
        raise CorruptEntry(f"header cut short ({len(data)} of {end} bytes)")
    try:
        header = json.loads(bytes(data[HEADER_PREFIX:end]))
    except ValueError as e:
        raise CorruptEntry(f"header is not JSON: {e}") from None
    if not isinstance(header, dict) or not {"key", "parts", "size", "xxh3_128"} <= set(header):
        raise CorruptEntry("header misses key/parts/size/xxh3_128")
    return header, end


def header_length(prefix: bytes) -> int:
    """Total header bytes given the first ``HEADER_PREFIX`` bytes of an entry."""
    if len(prefix) < HEADER_PREFIX or prefix[: len(MAGIC)] != MAGIC:
        raise CorruptEntry("not an aotpack cache entry (bad magic)")
    return HEADER_PREFIX + _LEN.unpack_from(prefix, len(MAGIC))[0]


def unpack_entry(data: bytes, key: str | None = None, mac_key: bytes | None = None) -> Entry:
    """Check ``data`` is a whole entry (for ``key``, when given; written by a holder of
    the secret of ``mac_key``, when given) and split it."""
    header, start = read_header(data)
    if key is not None and header["key"] != key:
        raise CorruptEntry(f"entry holds key {header['key'][:16]}, expected {key[:16]}")
    data = bytes(data)
    payload = memoryview(data)[start:]
    if len(payload) != header["size"]:
        raise CorruptEntry(f"payload is {len(payload)} bytes, header says {header['size']}")
    if _checksum(payload) != header["xxh3_128"]:
        raise CorruptEntry("payload checksum (XXH3-128) does not match the header")
    if mac_key is not None:
        authenticate(header, payload, mac_key)
    return Entry(header["key"], header, bytes(payload), data)


def _checksum(data) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def pack_files(files: dict[str, bytes], meta: dict) -> bytes:
    """Frame a backend's artifact (files + JSON meta) as bytes."""
    index = {"meta": meta, "files": [[name, len(blob)] for name, blob in files.items()]}
    blob = json.dumps(index, sort_keys=True).encode()
    return _FILES_MAGIC + _LEN.pack(len(blob)) + blob + b"".join(files.values())


def unpack_files(data: bytes) -> tuple[dict[str, bytes], dict]:
    """The inverse of ``pack_files``."""
    if data[: len(_FILES_MAGIC)] != _FILES_MAGIC:
        raise CorruptEntry("artifact is not a framed file set")
    try:
        (n,) = _LEN.unpack_from(data, len(_FILES_MAGIC))
        pos = len(_FILES_MAGIC) + _LEN.size
        index = json.loads(bytes(data[pos : pos + n]))
        pos += n
        files = {}
        for name, length in index["files"]:
            if not isinstance(name, str) or not isinstance(length, int) or length < 0 or pos + length > len(data):
                raise ValueError(f"file {name!r} of {length!r} bytes")
            files[name] = bytes(data[pos : pos + length])
            pos += length
        meta = index["meta"]
    except (struct.error, ValueError, KeyError, TypeError) as e:  # (UnicodeDecodeError is a ValueError)
        raise CorruptEntry(f"artifact framing is broken ({type(e).__name__}: {e})") from None
    if pos != len(data) or not isinstance(meta, dict):
        raise CorruptEntry("artifact has trailing bytes or no meta")
    return files, meta


def make_bundle(entries: list[bytes]) -> bytes:
    """Entries (each already framed by ``pack_entry``) as one bundle."""
    out = [_BUNDLE_MAGIC, _COUNT.pack(len(entries))]
    for raw in entries:
        out += [_SIZE.pack(len(raw)), raw]
    return b"".join(out)


def split_bundle(data: bytes) -> list[bytes]:
    """The entries of a bundle, each verified; CacheError if any is damaged."""
    from ..errors import CacheError

    if data[: len(_BUNDLE_MAGIC)] != _BUNDLE_MAGIC:
        raise CacheError("not an aotpack cache bundle (bad magic)", hint="make one with Context.bundle() "
                         "or `aotpack cache export`")
    pos = len(_BUNDLE_MAGIC)
    try:
        (count,) = _COUNT.unpack_from(data, pos)
        pos += _COUNT.size
        out = []
        for i in range(count):
            (n,) = _SIZE.unpack_from(data, pos)
            pos += _SIZE.size
            if pos + n > len(data):
                raise struct.error("short")
            raw = bytes(data[pos : pos + n])
            pos += n
            try:
                unpack_entry(raw)
            except CorruptEntry as e:
                raise CacheError(f"bundle entry {i} is damaged: {e}", hint="export the bundle again") from None
            out.append(raw)
    except struct.error:
        raise CacheError("the bundle is truncated", hint="copy the whole file again") from None
    if pos != len(data):
        raise CacheError("the bundle has trailing bytes", hint="copy the whole file again")
    return out
