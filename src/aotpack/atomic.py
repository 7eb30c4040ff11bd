"""Atomic file writes: the one way aotpack writes a file someone may be reading.

``atomic_file(path)`` yields a temporary file in ``path``'s folder; when the block ends
without an error the bytes are flushed to disk (fsync) and the file is renamed over
``path``, then the folder is synced so the rename itself survives a crash. A reader
sees the old file or the new one, never half of one; a process killed mid-write
leaves the old file as it was. (safetensors learnt why: writing over a file that a
reader has memory-mapped can leave a file of zeros.)

Temp files are named ``.aotpack-<pid>-*.tmp``: ``remove_stale_temps(folder)`` deletes
those whose writer no longer runs.

Example:
    >>> with atomic_file("report.html") as f:                   # doctest: +SKIP
    ...     f.write(page.encode())
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile

__all__ = ["atomic_file", "umask_mode", "remove_stale_temps"]

_PREFIX = ".aotpack-"
_SUFFIX = ".tmp"


def umask_mode() -> int:
    """The mode ``open()`` gives a new file under the process's umask (mkstemp's 0600
    would lock out the group that shares a folder)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: int | None = None, *, exclusive: bool = False):
    """A binary file that becomes ``path`` when the block succeeds (see the module).

    ``mode``: the new file's permissions (default: the umask's, as ``open()``).
    ``exclusive``: the first writer wins: raise FileExistsError, replacing nothing,
    if ``path`` exists when the block ends (a hard link, not a rename).
    A symlink at ``path`` stays: its target is written. An existing ``path`` that is
    not a regular file (a device, a fifo, a folder) is refused (NotARegularFile: an
    AotpackError and an OSError, so stores degrade on it as on any failed write).
    """
    path = os.path.realpath(os.fspath(path))
    _refuse_special(path)
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{_PREFIX}{os.getpid()}-", suffix=_SUFFIX, dir=folder)
    try:
        os.fchmod(fd, umask_mode() if mode is None else mode)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
            tmp = None
    finally:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    _sync_folder(folder)


def _refuse_special(path: str) -> None:
    """A target that exists (after following links) must be a regular file: renaming
    over a device (``-o /dev/null``), a fifo or a socket would replace it with a file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode):
        from .errors import NotARegularFile

        kind = ("a folder" if stat.S_ISDIR(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or
                stat.S_ISBLK(st.st_mode) else "a fifo" if stat.S_ISFIFO(st.st_mode) else "a socket"
                if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise NotARegularFile(f"{path} exists and is {kind}; aotpack writes only regular files and replaces nothing "
                              "else", hint="write to another path")


def _sync_folder(folder: str) -> None:
    try:
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on folders
        pass


def remove_stale_temps(folder: str) -> None:
    """Remove the temp files of writers that died mid-write (killed): each is named
    ``.aotpack-<pid>-*.tmp`` and its process no longer runs."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not (name.startswith(_PREFIX) and name.endswith(_SUFFIX)):
            continue
        pid = name[len(_PREFIX):].split("-")[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))
        except PermissionError:  # another user's live process
            pass
