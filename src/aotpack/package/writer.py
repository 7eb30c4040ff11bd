"""Write a package atomically: temp file in the target folder, fsync, rename.

A process killed in the middle of a save leaves the previous file untouched (the
rename is the commit point), and two saves racing to one path leave one complete
package. safetensors learnt the same lesson: writing over a file that a reader has
memory-mapped can produce a file of zeros.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import zipfile

from . import format as fmt

_LOCAL_HEADER = 30
_PAD_ID = 0xD935  # zipalign's extra-field id for alignment padding


def _aligned_info(name: str, offset: int, size: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    header = _LOCAL_HEADER + len(name.encode())
    if size >= zipfile.ZIP64_LIMIT:
        header += 20  # zip64 extra field written by zipfile
    pad = (-(offset + header + 4)) % fmt.ALIGN
    info.extra = struct.pack("<HH", _PAD_ID, pad) + b"\0" * pad
    return info


def write_package(path: str | os.PathLike, manifest: dict, members: dict[str, bytes]) -> None:
    """Write ``manifest`` (members' hashes added) and ``members`` to ``path`` atomically."""
    path = os.fspath(path)
    manifest = dict(manifest)
    manifest["members"] = {
        name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)} for name, data in members.items()
    }
    for name in members:
        fmt.check_member_name(name)
    blob = json.dumps(manifest, indent=1, sort_keys=False).encode()
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        from ..errors import AotpackError

        raise AotpackError(f"cannot save {path}: the folder {folder} does not exist", hint="create it first")
    fd, tmp = tempfile.mkstemp(prefix=".aotpack-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
                for name, data in [(fmt.MANIFEST, blob), *members.items()]:
                    z.writestr(_aligned_info(name, f.tell(), len(data)), data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on folders
        pass
