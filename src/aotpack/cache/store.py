"""What every cache store does, whatever holds the bytes.

A store keeps whole entries (see entry.py) by key digest. Subclasses provide five
primitives -- ``get``, ``put`` (first writer wins unless ``overwrite``), ``delete``,
``digests`` and ``header`` -- plus a cross-process ``try_lock``/``unlock``/``is_locked``
so that N processes missing the same key compile it once. This class adds what must be
the same everywhere: checksum verification with evict-and-warn on corruption, waiting
for another process's compile, listing, and explaining a miss by the closest entry.

Stores by URL (``open_store``): a path or ``file://`` -> ``LocalStore``, ``redis://`` or
``rediss://`` -> ``RedisStore``.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
import warnings
from collections.abc import Iterator

from .entry import CorruptEntry, Entry, UnauthenticEntry, make_bundle, pack_entry, split_bundle, unpack_entry
from .key import CacheKey

__all__ = ["Store", "CacheWarning", "stats"]

#: Process-wide counters: hits, misses, compiles, stored, corrupt, unavailable, waited.
stats: collections.Counter = collections.Counter()


class CacheWarning(UserWarning):
    """The cache could not be used as asked (corrupt entry, store down); work went on
    without it."""


class Store:
    """Base class of cache stores. ``url`` names the store in messages."""

    url: str = "?"
    #: how long a process waits for another one compiling the same key, in seconds (the
    #: holder's lease, when the store has one, ends the wait sooner if the holder dies)
    lock_wait: float = 3600.0
    #: seconds a compile lock lasts unless renewed (None: held until unlocked or the
    #: holder dies, as ``flock``)
    lock_lease: float | None = None
    #: what a store does when it cannot be reached or refuses: ``"warn"`` (once; the
    #: compile goes on locally, as without a cache) or ``"raise"`` (a CacheError: what
    #: ``aotpack cache`` commands use, where an unreachable store must not read as empty)
    on_error: str = "warn"
    #: the key entries are authenticated with (``open_store(secret=...)``,
    #: ``$AOTPACK_CACHE_SECRET``); None: the store is trusted as it is (see entry.py)
    mac_key: bytes | None = None
    _warned = False

    def _set_on_error(self, on_error: str) -> None:
        if on_error not in ("warn", "raise"):
            raise ValueError(f"on_error must be 'warn' or 'raise', not {on_error!r}")
        self.on_error = on_error

    def _unavailable(self, what: str, then: str, hint: str, cause: BaseException) -> None:
        """The store failed us (``what`` happened): a CacheError when ``on_error`` is
        "raise"; else one CacheWarning per store, saying what happens ``then``."""
        stats["unavailable"] += 1
        if self.on_error == "raise":
            from ..errors import CacheError

            raise CacheError(what, hint=hint) from cause
        if not self._warned:
            self._warned = True
            warnings.warn(f"{what}; {then}", CacheWarning, stacklevel=5)

    # -- primitives (subclasses) -------------------------------------------------
    def get(self, digest: str) -> bytes | None:
        raise NotImplementedError

    def put(self, digest: str, data: bytes, *, overwrite: bool = False) -> bool:
        raise NotImplementedError

    def delete(self, digest: str) -> bool:
        raise NotImplementedError

    def digests(self) -> list[str]:
        raise NotImplementedError

    def header(self, digest: str) -> dict | None:
        raise NotImplementedError

    def try_lock(self, digest: str) -> bool:
        return True

    def unlock(self, digest: str) -> None:
        pass

    def renew_lock(self, digest: str) -> bool:
        """Extend this process's lease on ``digest``'s lock; False if it no longer holds it."""
        return True

    def is_locked(self, digest: str) -> bool:
        return False

    @contextlib.contextmanager
    def holding_lock(self, digest: str):
        """While the body runs, renew the lock's lease every third of it (a thread), then
        unlock. The lock must have been taken with ``try_lock``."""
        stop = threading.Event()
        renewer = None
        if self.lock_lease:
            def renew():
                while not stop.wait(self.lock_lease / 3):
                    if not self.renew_lock(digest):
                        return  # lost (expired during a stall, or Redis down): the others go on
            renewer = threading.Thread(target=renew, name=f"aotpack-lease-{digest[:8]}", daemon=True)
            renewer.start()
        try:
            yield
        finally:
            stop.set()
            if renewer is not None:
                renewer.join()
            self.unlock(digest)

    # -- shared behaviour ---------------------------------------------------------
    def fetch(self, digest: str) -> Entry | None:
        """The verified entry for ``digest``, or None. A corrupt entry is evicted with a
        CacheWarning and reads as a miss."""
        data = self.get(digest)
        if data is None:
            return None
        try:
            return unpack_entry(data, digest, self.mac_key)
        except UnauthenticEntry as e:
            stats["unauthentic"] += 1
            warnings.warn(f"cache entry {digest[:16]} in {self.url} fails authentication ({e}): not used; evicted, "
                          "compiling here", CacheWarning, stacklevel=3)
            self.delete(digest)
            return None
        except CorruptEntry as e:
            stats["corrupt"] += 1
            warnings.warn(f"cache entry {digest[:16]} in {self.url} is corrupt ({e}); evicted, compiling again",
                          CacheWarning, stacklevel=3)
            self.delete(digest)
            return None

    def store(self, key: CacheKey, payload: bytes, *, overwrite: bool = False, **info) -> bool:
        """Write ``payload`` under ``key``; False when another writer was first."""
        return self.put(key.digest, pack_entry(key.digest, key.parts, payload, mac_key=self.mac_key, **info),
                        overwrite=overwrite)

    def entries(self) -> Iterator[dict]:
        """Each entry's header (key, parts, size, created, kind, ...), unverified."""
        for digest in self.digests():
            h = self.header(digest)
            if h is not None:
                yield h

    def closest(self, key: CacheKey) -> dict | None:
        """The header of the entry whose parts are nearest to ``key``'s, or None."""
        best, score = None, (-1, -1)
        for h in self.entries():
            s = key.closeness(h.get("parts", {}))
            if s > score:
                best, score = h, s
        return best

    def explain_miss(self, key: CacheKey) -> str:
        """Why ``key`` is not in the store, in one line."""
        near = self.closest(key)
        if near is None:
            return f"cache miss {key.digest[:16]}: {self.url} is empty"
        return f"cache miss {key.digest[:16]}: {key.explain_against(near['parts'], near['key'])}"

    def resolve(self, prefix: str) -> str:
        """The full digest of the one entry whose key starts with ``prefix``."""
        from ..errors import CacheError

        found = [d for d in self.digests() if d.startswith(prefix.lower())]
        if len(found) != 1:
            raise CacheError(f"{'no' if not found else len(found)} entries in {self.url} have a key starting "
                             f"with {prefix!r}", hint="see `aotpack cache ls` for the keys")
        return found[0]

    def export(self, digests: list[str] | None = None) -> bytes:
        """A bundle of the given entries (all by default); corrupt ones are left out."""
        raws = []
        for digest in self.digests() if digests is None else digests:
            entry = self.fetch(digest)
            if entry is not None:
                raws.append(entry.raw)
        return make_bundle(raws)

    def import_bundle(self, data: bytes) -> list[str]:
        """Write a bundle's entries (verified first: a damaged bundle writes nothing)."""
        keys = []
        raws = split_bundle(data)
        for i, raw in enumerate(raws):  # all checked before any is written
            try:
                unpack_entry(raw, mac_key=self.mac_key)
            except UnauthenticEntry as e:
                from ..errors import CacheError

                raise CacheError(f"bundle entry {i} fails authentication for {self.url} ({e}); nothing imported",
                                 hint="export the bundle from a store with the same secret") from None
        for raw in raws:
            digest = unpack_entry(raw).key
            self.put(digest, raw, overwrite=True)
            keys.append(digest)
        return keys

    def wait_for(self, digest: str, timeout: float | None = None) -> Entry | None:
        """Wait while another process holds the compile lock for ``digest``; return its
        entry once stored, or None if the lock went away without one or time ran out."""
        deadline = time.monotonic() + (self.lock_wait if timeout is None else timeout)
        delay = 0.05
        stats["waited"] += 1
        while time.monotonic() < deadline:
            entry = self.fetch(digest)
            if entry is not None:
                return entry
            if not self.is_locked(digest):
                return self.fetch(digest)
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


def _env_cache() -> str | None:
    """``$AOTPACK_CACHE``: the one variable naming the default store (a folder or a URL)."""
    if os.environ.get("AOTPACK_CACHE"):
        return os.environ["AOTPACK_CACHE"]
    if os.environ.get("AOTPACK_CACHE_DIR"):
        import warnings

        warnings.warn("AOTPACK_CACHE_DIR is deprecated: set AOTPACK_CACHE (a folder or a redis:// URL)",
                      DeprecationWarning, stacklevel=3)
        return os.environ["AOTPACK_CACHE_DIR"]
    return None


def default_dir() -> str:
    """The default local store's folder: ``$AOTPACK_CACHE`` when it names a folder, else
    ``$XDG_CACHE_HOME/aotpack``, else ``~/.cache/aotpack``. (``$AOTPACK_CACHE_DIR``, the
    old name, is still read, with a DeprecationWarning.)"""
    where = _env_cache()
    if where and not where.startswith(("redis://", "rediss://", "unix://")):
        return where.removeprefix("file://")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "aotpack")
