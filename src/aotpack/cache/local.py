"""A cache store in a local directory (the default: ``~/.cache/aotpack``).

Layout: ``<dir>/entries/<digest>.entry`` and ``<dir>/locks/<digest>.lock``.

- Writes go to a temporary file in the same directory and are published with
  ``os.link`` (first writer wins, atomically) or ``os.replace`` (overwrite): a reader
  sees no entry or a whole one, never half. Several processes on one node can share
  the directory (vLLM's users corrupted theirs exactly there).
- Every read touches the file's mtime; when the directory grows past ``max_bytes``,
  the least recently used entries go first, down to 90% of the limit.
- The compile lock is ``fcntl.flock`` on the lock file: the kernel drops it when its
  process dies, so a crashed compile never blocks the others. It is also a lease: the
  holder touches the file every third of ``lock_lease`` (10 s) while it compiles, and a
  lock whose file has not been touched for a lease counts as free, so a holder that is
  stopped or hung (it keeps its flock) delays the others by one lease, not forever.

Example:
    >>> store = LocalStore("/tmp/aotcache", max_bytes=2**30)                # doctest: +SKIP
    >>> aotpack.compile(model, (x,), cache=store)                           # doctest: +SKIP
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time

from ..atomic import atomic_file, umask_mode
from ..errors import CacheError
from .entry import HEADER_PREFIX, CorruptEntry, header_length, read_header
from .store import Store, stats

__all__ = ["LocalStore"]

_SUFFIX = ".entry"


def _open_entry(path: str):
    """An entry file opened for reading; OSError unless it is a regular file (opened
    O_NONBLOCK: a fifo in place of an entry must not hang the compile)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        raise OSError(errno.EINVAL, "not a regular file", path)
    return f


class LocalStore(Store):
    """Entries as files under ``path``; LRU eviction past ``max_bytes`` (default 10 GiB)."""

    def __init__(self, path: str | os.PathLike | None = None, max_bytes: int = 10 * 2**30, *,
                 lock_lease: float = 10.0, on_error: str = "warn"):
        from .store import default_dir

        self.path = os.path.abspath(os.fspath(path) if path is not None else default_dir())
        self.url = self.path
        self.max_bytes = int(max_bytes)
        self.lock_lease = lock_lease
        self._entries = os.path.join(self.path, "entries")
        self._locks = os.path.join(self.path, "locks")
        try:
            os.makedirs(self._entries, exist_ok=True)
            os.makedirs(self._locks, exist_ok=True)
        except OSError as e:
            error = CacheError(f"cannot create the cache directory {self.path}: {e.strerror}",
                               hint="pass LocalStore(path) with a writable folder, or set AOTPACK_CACHE")
            error.unavailable = True  # (compile_captured warns and compiles without a cache)
            raise error from e
        self._held: dict[str, int] = {}
        self._set_on_error(on_error)
        self._mode = umask_mode()  # entries and locks as open() would create them: a shared folder works

    def _guarded(self, what: str, fn, default):
        """Run a file operation of the compile path; if the folder fails us (an unreadable
        or special entry, a read-only or full disk), warn once and return ``default``:
        the caller compiles locally, as without a cache."""
        try:
            return fn()
        except OSError as e:
            self._unavailable(f"local cache at {self.path} failed during {what} ({e.strerror or e}"
                              f"{': ' + str(e.filename) if e.filename else ''})", "compiling locally without it",
                              "check the folder's permissions and free space", e)
            return default

    def _file(self, digest: str) -> str:
        if not digest or any(c not in "0123456789abcdef" for c in digest):
            raise CacheError(f"not a cache key: {digest!r}", hint="keys are 64 hex digits (see `aotpack cache ls`)")
        return os.path.join(self._entries, digest + _SUFFIX)

    def get(self, digest):
        path = self._file(digest)
        return self._guarded("get", lambda: self._read(path), None)

    def _read(self, path: str) -> bytes | None:
        try:
            with _open_entry(path) as f:
                data = f.read()
        except FileNotFoundError:
            return None
        try:
            os.utime(path)  # last use, for LRU eviction
        except OSError:
            pass
        return data

    def put(self, digest, data, *, overwrite=False):
        path = self._file(digest)
        return self._guarded("put", lambda: self._write(path, data, overwrite), False)

    def _write(self, path: str, data: bytes, overwrite: bool) -> bool:
        try:
            with atomic_file(path, self._mode, exclusive=not overwrite) as f:
                f.write(data)
        except FileExistsError:  # another process stored it first (or something is in the way)
            return False
        stats["stored"] += 1
        self._evict()
        return True

    def delete(self, digest):
        try:
            os.unlink(self._file(digest))
            return True
        except FileNotFoundError:
            return False

    def digests(self):
        return sorted(n[: -len(_SUFFIX)] for n in os.listdir(self._entries) if n.endswith(_SUFFIX))

    def header(self, digest):
        """The entry's header, or None where there is none to read (missing, damaged,
        not a regular file, unreadable): listing and explaining skip such entries."""
        try:
            with _open_entry(self._file(digest)) as f:
                prefix = f.read(HEADER_PREFIX)
                data = prefix + f.read(header_length(prefix) - HEADER_PREFIX)
            return read_header(data)[0]
        except (OSError, CorruptEntry):
            return None

    def size(self) -> int:
        """Bytes held by entries."""
        return sum(e.stat().st_size for e in os.scandir(self._entries) if e.name.endswith(_SUFFIX))

    def _evict(self) -> None:
        files = []
        for e in os.scandir(self._entries):
            if e.name.endswith(_SUFFIX):
                try:
                    st = e.stat()
                except FileNotFoundError:
                    continue
                files.append((st.st_mtime, st.st_size, e.path))
        total = sum(size for _, size, _ in files)
        if total <= self.max_bytes:
            return
        for _, size, path in sorted(files):
            if total <= 0.9 * self.max_bytes:
                break
            try:
                os.unlink(path)
                total -= size
                stats["evicted"] += 1
            except FileNotFoundError:
                pass

    # -- compile lock -------------------------------------------------------------
    def try_lock(self, digest):
        return self._guarded("lock", lambda: self._lock(digest), True)  # no lock to be had: compile here

    def _lock(self, digest) -> bool:
        fd = os.open(os.path.join(self._locks, digest + ".lock"), os.O_CREAT | os.O_RDWR, self._mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.utime(fd)  # the lease starts now
        self._held[digest] = fd
        return True

    def renew_lock(self, digest):
        fd = self._held.get(digest)
        if fd is None:
            return False
        return self._guarded("lock renewal", lambda: os.utime(fd) or True, False)

    def unlock(self, digest):
        fd = self._held.pop(digest, None)
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def is_locked(self, digest):
        return self._guarded("lock check", lambda: self._is_locked(digest), False)

    def _is_locked(self, digest):
        if digest in self._held:
            return True
        path = os.path.join(self._locks, digest + ".lock")
        if not os.path.exists(path):
            return False
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # held: by a live holder only if it renewed its lease lately
            return time.time() - os.fstat(fd).st_mtime < self.lock_lease
        finally:
            os.close(fd)  # closing drops a lock we may have taken
        return False
