"""Read a package: check its signature, parse, verify members' digests, then hand out
zero-copy views.

Nothing in the file is used before it is checked: with trusted keys, the manifest's
bytes must carry a valid signature by one of them before they are parsed (signing.py);
the manifest is parsed as JSON (never unpickled) and validated; each member is checked
against the BLAKE3 digest (SHA-256 in older packages) it lists by ``verify()``. The file
is memory-mapped copy-on-write, so weights become tensors over the mapped pages
without a copy, and a caller writing into a weight never touches the file.

Verified once per file: hashing a multi-GB weights member at every start would cost
seconds. After a member's hash has matched, load remembers it under the file's
identity (device, inode, size, mtime and *ctime*: ctime changes on any write to the
file and no user can set it back) in ``~/.cache/aotpack/verified/`` (or
``$AOTPACK_VERIFIED_DIR``); the next load of the same unchanged file skips the hash.
A changed, copied or replaced file has another identity and is hashed again. ``aotpack
verify`` and ``inspect`` always hash; ``AOTPACK_VERIFY=always`` makes load hash too.
Who can write to your cache folder can already run code as you, so remembering adds no
way in (docs/concepts/trust.md).

Example:
    >>> with PackageReader("mlp.aot") as r:                    # doctest: +SKIP
    ...     r.verify()
    ...     weights = r.tensors(WEIGHTS)
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import stat
import struct
import sys
import zipfile
import zlib

import torch

from ..errors import FormatError, IntegrityError
from ..tree import dtype_name
from . import format as fmt
from .manifest import Manifest, Variant
from .weights import logical_view, stored_shape

_UTF8_NAMES = {"metadata_encoding": "utf-8"} if sys.version_info >= (3, 11) else {}


def _touch(path: str) -> None:
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with open(path, "w"):
            pass
    except OSError:  # a read-only home: verify again next time
        pass


class PackageReader:
    """An open package file. ``manifest`` is available after construction."""

    def __init__(self, path: str | os.PathLike, trusted_keys=None):
        """``trusted_keys``: a list of ``signing.TrustedKey`` (``signing.trusted_keys(...)``
        makes one); given, the package must be signed by one of them (SignatureError)."""
        self.path = os.fspath(path)
        self._trusted = trusted_keys
        self.signer = None  # signing.Signer when trusted keys were given and one matched
        try:
            mode = os.stat(self.path).st_mode  # stat never blocks; open() on a fifo would
        except FileNotFoundError:
            raise FormatError(f"no package at {self.path}", hint="check the path") from None
        except OSError as e:
            raise FormatError(f"cannot read {self.path}: {e.strerror}", hint="check the path and its permissions") \
                from None
        if stat.S_ISDIR(mode):
            raise FormatError(f"{self.path} is a folder, not a package file", hint="pass the package file") from None
        if not stat.S_ISREG(mode):
            raise FormatError(f"{self.path} is not a regular file (a fifo, socket or device)",
                              hint="pass a package file written by Package.save or `aotpack compile`")
        try:
            self._file = open(self.path, "rb")
        except FileNotFoundError:
            raise FormatError(f"no package at {self.path}", hint="check the path") from None
        except OSError as e:
            raise FormatError(f"cannot read {self.path}: {e.strerror}", hint="check the file's permissions") from None
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        self._stat = os.fstat(self._file.fileno())  # the identity verification is remembered under
        size = self._stat.st_size
        if size == 0:
            raise FormatError(f"{self.path} is empty (0 bytes); it is not an aotpack package",
                              hint="the save may have been interrupted; compile and save it again")
        head = self._file.read(4)
        self._file.seek(0)
        if head != b"PK\x03\x04":
            raise FormatError(f"{self.path} is not an aotpack package (it does not start with a zip header)",
                              hint="pass a file written by Package.save or `aotpack compile`")
        self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_COPY)
        try:
            # names as UTF-8 (aotpack writes ASCII ones): zip's legacy default, cp437,
            # costs every load 0.3 ms to import its codec (Python >= 3.11 takes the option)
            zf = zipfile.ZipFile(self._file, **_UTF8_NAMES)
            infos = zf.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, struct.error, EOFError, NotImplementedError,
                UnicodeDecodeError, OverflowError, KeyError, IndexError) as e:
            raise IntegrityError(f"{self.path} is truncated or corrupt: {e}",
                                 hint="copy the package again; if you saved it, save it again") from None
        if len(infos) > fmt.MAX_MEMBERS:
            raise FormatError(f"{self.path} has {len(infos)} members, more than any package ({fmt.MAX_MEMBERS})")
        self._members: dict[str, tuple[int, int]] = {}
        for info in infos:
            fmt.check_member_name(info.filename)
            if info.filename in self._members:
                raise FormatError(f"{self.path} holds member {info.filename!r} twice",
                                  hint="the file was not written by aotpack; do not load it")
            if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
                raise FormatError(f"member {info.filename!r} of {self.path} is compressed; packages store members "
                                  "uncompressed", hint="do not re-zip packages; copy them as files")
            self._members[info.filename] = (self._data_offset(info, size), info.file_size)
            if info.filename == fmt.MANIFEST:
                manifest_crc = info.CRC
        self.signatures: list[dict] = []
        if fmt.SIGNATURES in self._members:
            from . import signing  # imported here: unsigned packages loaded without keys never need it

            off, n = self._members.pop(fmt.SIGNATURES)
            if n > signing.MAX_SIGNATURES_BYTES:
                raise FormatError(f"the signatures of {self.path} are {n} bytes, more than any package's")
            self.signatures = signing.parse_signatures(bytes(self._mm[off:off + n]), self.path)
        if fmt.MANIFEST not in self._members:
            raise FormatError(f"{self.path} has no manifest.json; it is a zip file but not an aotpack package")
        off, n = self._members[fmt.MANIFEST]
        if n > fmt.MAX_MANIFEST_BYTES:
            raise FormatError(f"the manifest of {self.path} is {n} bytes, more than any package's")
        blob = bytes(self._mm[off:off + n])
        # The manifest holds the other members' hashes; its own CRC catches damage to it.
        if zlib.crc32(blob) != manifest_crc:
            raise IntegrityError(f"the manifest of {self.path} does not match its CRC (corrupt)",
                                 hint="copy the package again")
        if self._trusted is not None:  # before a byte of the manifest is interpreted
            from . import signing

            self.signer = signing.check(blob, self.signatures, self._trusted, self.path)
        try:
            doc = json.loads(blob)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise IntegrityError(f"the manifest of {self.path} is not valid JSON: {e}") from None
        self.manifest = self._check_manifest(doc)

    def _data_offset(self, info: zipfile.ZipInfo, size: int) -> int:
        at = info.header_offset
        header = self._mm[at:at + 30]
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise IntegrityError(f"member {info.filename!r} of {self.path} has no local header (truncated or corrupt)")
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        start = at + 30 + name_len + extra_len
        if start + info.file_size > size:
            raise IntegrityError(f"member {info.filename!r} of {self.path} runs past the end of the file (truncated)",
                                 hint="copy the package again")
        return start

    def _check_manifest(self, m) -> Manifest:
        """The typed manifest, once its format, version and every field are checked."""
        if not isinstance(m, dict) or m.get("format") != fmt.FORMAT_NAME:
            raise FormatError(f"{self.path} is not an aotpack package (manifest format is {m.get('format')!r})"
                              if isinstance(m, dict) else f"{self.path} has a manifest that is not an object")
        version = m.get("format_version")
        if not isinstance(version, int):
            raise FormatError(f"{self.path} has no integer format_version")
        if version > fmt.FORMAT_VERSION:
            raise FormatError(
                f"{self.path} is format version {version}; this aotpack reads versions "
                f"{fmt.MIN_FORMAT_VERSION}..{fmt.FORMAT_VERSION}",
                hint="upgrade aotpack (pip install -U aotpack)")
        if version < fmt.MIN_FORMAT_VERSION:
            raise FormatError(f"{self.path} is format version {version}, older than the oldest this aotpack reads "
                              f"({fmt.MIN_FORMAT_VERSION})", hint="rebuild the package from its source program")
        if not isinstance(m.get("members"), dict) or not m["members"]:
            raise FormatError(f"the manifest of {self.path} lists no members")
        manifest = Manifest.from_json(m)
        members = manifest.members
        extra = set(self._members) - set(members) - {fmt.MANIFEST}
        if extra:
            raise IntegrityError(f"{self.path} holds members the manifest does not list: {sorted(extra)[:5]}",
                                 hint="the file was modified after it was written; do not load it")
        missing = set(members) - set(self._members)
        if missing:
            raise IntegrityError(f"{self.path} is missing members listed in its manifest: {sorted(missing)[:5]}",
                                 hint="copy the package again")
        return manifest

    def verify(self, names=None, remember: bool = False) -> None:
        """Check the digest of each member (all by default); IntegrityError on a mismatch.

        ``remember=True`` (load's path): skip members already verified in this file as
        it is now (see the module docstring), and remember those that pass."""
        remember = remember and os.environ.get("AOTPACK_VERIFY") != "always"
        for name, rec in self.manifest.members.items():
            if names is not None and name not in names:
                continue
            off, n = self._members[name]
            if n != rec.size:
                raise IntegrityError(f"member {name!r} of {self.path} is {n} bytes, the manifest says {rec.size} "
                                     "(tampered or truncated)",
                                     hint="copy the package again from a trusted source")
            marker = self._marker(name, rec) if remember else None
            if marker is not None and os.path.exists(marker):
                continue
            algorithm, expected = rec.digest()
            if fmt.digest(memoryview(self._mm)[off:off + n], algorithm) != expected:
                raise IntegrityError(f"member {name!r} of {self.path} does not match its {algorithm} digest "
                                     "(tampered or corrupt)",
                                     hint="copy the package again from a trusted source")
            if marker is not None:
                _touch(marker)

    def _marker(self, name: str, rec) -> str | None:
        """Where "member ``name`` of this file, as it is now, matched" is remembered."""
        # Every member, small ones too: a marker costs one stat, and a load whose members
        # are all remembered never imports the hash function (0.6 ms of a 10 MB load).
        if self._stat.st_nlink == 0:
            return None  # a file in memory (load of bytes): no identity to remember
        st = self._stat
        identity = (f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:"
                    f"{name}:{rec.digest()}")
        folder = os.environ.get("AOTPACK_VERIFIED_DIR") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "aotpack", "verified")
        return os.path.join(folder, hashlib.sha256(identity.encode()).hexdigest())

    def names(self) -> list[str]:
        return list(self._members)

    def has(self, name: str) -> bool:
        return name in self._members

    def view(self, name: str) -> memoryview:
        off, n = self._members[name]
        return memoryview(self._mm)[off:off + n]

    def read(self, name: str) -> bytes:
        return bytes(self.view(name))

    def tensors(self, name: str) -> dict[str, torch.Tensor]:
        """The tensors of a safetensors member, as views over the mapped file (no copy)."""
        off, n = self._members[name]
        if n < 8:
            raise IntegrityError(f"member {name!r} is too short for a safetensors file")
        (hlen,) = struct.unpack("<Q", self._mm[off:off + 8])
        if hlen > n - 8:
            raise IntegrityError(f"member {name!r} has a safetensors header longer than the member")
        try:
            header = json.loads(bytes(self._mm[off + 8:off + 8 + hlen]))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise IntegrityError(f"member {name!r} has a corrupt safetensors header: {e}") from None
        try:
            return self._tensors(name, header, off, n, hlen)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
            raise FormatError(f"member {name!r} has a malformed safetensors header ({type(e).__name__}: {e})") from None

    def _tensors(self, name: str, header: dict, off: int, n: int, hlen: int) -> dict[str, torch.Tensor]:
        base = off + 8 + hlen
        out = {}
        spans = []
        for key, info in header.items():
            if key == "__metadata__":
                continue
            dtype = fmt.SAFETENSORS_DTYPES.get(info["dtype"])
            if dtype is None:
                raise FormatError(f"tensor {key!r} in {name!r} has dtype {info['dtype']}, unknown to this aotpack")
            begin, end = info["data_offsets"]
            shape = info["shape"]
            if not (isinstance(shape, list) and len(shape) <= 64
                    and all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**62 for s in shape)):
                raise FormatError(f"tensor {key!r} in {name!r} has no valid shape ({str(shape)[:80]})")
            numel = 1
            for s in shape:
                numel *= s
            nonzero = 1
            for s in shape:
                nonzero *= max(s, 1)
            if nonzero >= 2**62:
                raise FormatError(f"tensor {key!r} in {name!r} has a shape no tensor has ({str(shape)[:80]})")
            spans.append((begin, end, key))
            item = dtype.itemsize
            if end - begin != numel * item or base + end > off + n or begin < 0:
                raise IntegrityError(f"tensor {key!r} in {name!r} has offsets that do not fit its shape")
            if numel == 0:
                out[key] = torch.empty(shape, dtype=dtype, device="cpu")
                continue
            start = base + begin
            if start % item:
                # Not aligned for this dtype (not written by aotpack): copy instead of viewing.
                t = torch.frombuffer(bytearray(self._mm[start:start + end - begin]), dtype=dtype)
            else:
                t = torch.frombuffer(self._mm, dtype=dtype, count=numel, offset=start)
            out[key] = t.view(shape)
        spans.sort()
        for (_, end_a, a), (begin_b, _, b) in zip(spans, spans[1:]):
            if begin_b < end_a:  # aotpack stores each distinct weight once: shared ones are manifest aliases
                raise IntegrityError(f"tensors {a!r} and {b!r} in {name!r} overlap in the file")
        return out

    def weights(self) -> dict[str, torch.Tensor]:
        """The package's weights (mapped, no copy), shared ones under every name."""
        weights = self.tensors(fmt.WEIGHTS)
        for alias, target in self.manifest.program.aliases.items():
            if target not in weights:
                raise FormatError(f"{self.path}: weight alias {alias!r} points to {target!r}, which "
                                  "weights.safetensors does not hold", hint="copy or rebuild the package")
            weights[alias] = weights[target]
        # compiled code reads weights at the dtypes and shapes it was compiled for: a
        # tensor of another shape would be read out of bounds, so check before any use
        views = {}
        for name, info in self.manifest.program.weights.items():
            t = weights.get(name)
            if t is None:
                raise FormatError(f"{self.path}: weight {name!r} is listed in the manifest but missing from "
                                  "weights.safetensors", hint="copy or rebuild the package")
            shape = info.shape if info.layout is None else stored_shape(info.shape, info.layout)
            if dtype_name(t.dtype) != info.dtype or list(t.shape) != shape:
                raise IntegrityError(f"{self.path}: weight {name!r} is {dtype_name(t.dtype)}"
                                     f"{list(t.shape)} in weights.safetensors, the manifest declares "
                                     f"{info.dtype}{shape} (tampered or corrupt)",
                                     hint="copy the package again from a trusted source")
            if info.layout is not None:  # the layout compiled code reads it in, rebuilt as a view
                views[id(t)] = logical_view(t, info.layout, info.shape)
        return {n: views.get(id(t), t) for n, t in weights.items()}

    def variant(self, name: str | None) -> Variant:
        """The manifest entry of variant ``name`` (None: the first)."""
        variants = self.manifest.variants
        found = variants[0] if name is None else self.manifest.variant(name)
        if found is None:
            from ..errors import AotpackError

            raise AotpackError(f"{self.path} has no variant {name!r}; it has {[v.name for v in variants]}")
        return found

    def close(self) -> None:
        # The mmap stays alive while tensors view it (they hold a reference to it).
        f = getattr(self, "_file", None)
        if f is not None:
            f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class in_memory_file:
    """Package bytes (or a binary file object's contents) as a file name the reader can
    map: an anonymous memory file (``memfd``), gone when the last mapping of it is."""

    def __init__(self, source):
        self.source = source

    def __enter__(self) -> str:
        data = self.source.read() if hasattr(self.source, "read") else self.source
        self.fd = os.memfd_create("aotpack-package", os.MFD_CLOEXEC)
        with open(self.fd, "wb", closefd=False) as f:
            f.write(data)
        return f"/proc/self/fd/{self.fd}"

    def __exit__(self, *exc):
        os.close(self.fd)  # the reader's mapping keeps the memory alive while tensors use it
