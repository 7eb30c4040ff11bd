"""Write a package: its zip, members aligned, written atomically (``atomic.atomic_file``).

A process killed in the middle of a save leaves the previous file untouched (the
rename is the commit point), and two saves racing to one path leave one complete
package.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import struct
import zipfile

from ..atomic import atomic_file, remove_stale_temps, umask_mode
from . import format as fmt

_LOCAL_HEADER = 30
_PAD_ID = 0xD935  # zipalign's extra-field id for alignment padding


def _aligned_info(name: str, offset: int, size: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    info.file_size = size
    header = _LOCAL_HEADER + len(name.encode())
    if _zip64(size):
        header += 20  # zip64 extra field written by zipfile
    pad = (-(offset + header + 4)) % fmt.ALIGN
    info.extra = struct.pack("<HH", _PAD_ID, pad) + b"\0" * pad
    return info


def _zip64(size: int) -> bool:
    # zipfile's own rule for writing a zip64 local header (ZipFile._open_to_write)
    return size * 1.05 > zipfile.ZIP64_LIMIT


def _mode_for(path: str) -> int:
    """The file mode a save gives: the existing file's (a rewrite keeps a deployed 0644
    package 0644), else what the umask allows, as ``open()`` would create it."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return umask_mode()


@contextlib.contextmanager
def locked(path: str | os.PathLike):
    """Serialize read-modify-write of one package file (add_variant, rebuild) between
    processes: an exclusive ``flock`` on ``.<name>.lock`` beside it."""
    import fcntl

    real = os.path.realpath(os.fspath(path))
    lock = os.path.join(os.path.dirname(real), f".{os.path.basename(real)}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_package(path: str | os.PathLike, manifest, members: dict[str, bytes]) -> None:
    """Write ``manifest`` (members' digests added) and ``members`` to ``path`` atomically."""
    write_members(path, package_entries(manifest, members))


def write_zip(f, entries) -> None:
    """The package's zip, ``(name, data)`` pairs in order, written to the binary file
    object ``f`` (seekable: members are aligned by its position)."""
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, data in entries:
            fmt.check_member_name(name)
            streamed = hasattr(data, "chunks")
            size = len(data) if streamed else memoryview(data).nbytes
            info = _aligned_info(name, f.tell(), size)
            with z.open(info, "w", force_zip64=_zip64(size)) as out:
                for chunk in (data.chunks() if streamed else (data,)):
                    out.write(chunk)


def package_entries(manifest, members: dict) -> list:
    """``(name, data)`` pairs of a package: the manifest (a ``manifest.Manifest``, or its
    JSON as it is: the fuzzers write edited ones), members' digests added, first."""
    manifest = manifest.to_json() if hasattr(manifest, "to_json") else dict(manifest)
    manifest["members"] = {name: {fmt.DIGEST: data.digest() if hasattr(data, "chunks") else fmt.digest(data),
                                  "size": len(data)} for name, data in members.items()}
    blob = json.dumps(manifest, indent=1, sort_keys=False).encode()
    return [(fmt.MANIFEST, blob), *members.items()]


def write_members(path: str | os.PathLike, entries) -> None:
    """Write ``(name, data)`` pairs, the manifest first, as the package file
    ``path``: atomically (temp file in the same folder, fsync, rename), with the mode the
    file had (or the umask's), through a symlink to its target.

    ``data`` is bytes, a buffer, or a streamed member (``.chunks()`` and ``len()``, as
    weights.TensorsMember): written piece by piece, never assembled. The bytes are
    written as given: ``aotpack sign`` adds a member to a package without changing one
    byte of the manifest it signs.
    """
    path = os.path.realpath(os.fspath(path))  # through a symlink to its target: the link stays
    entries = list(entries)
    for name, _ in entries:
        fmt.check_member_name(name)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        from ..errors import AotpackError

        raise AotpackError(f"cannot save {path}: the folder {folder} does not exist", hint="create it first")
    remove_stale_temps(folder)
    with atomic_file(path, _mode_for(path)) as f:
        write_zip(f, entries)
