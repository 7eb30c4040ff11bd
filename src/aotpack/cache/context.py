"""``Context``: the artifacts compiled (or found) while it is active, by key.

Modelled on torch's PrecompileContext and Mega-Cache, but each artifact keeps its own
named key, so one can be looked at, edited or shipped alone::

    with aotpack.cache.Context() as ctx:
        aotpack.compile(model, (x,))                  # or torch.compile(...) through
        ...                                           # aotpack.cache.backend(...)
    ctx.keys()                  # ['3f1a...', ...]
    ctx.get(key)                # the artifact's bytes (what the backend produced)
    ctx.edit(key, fn)           # replace them with fn(bytes)
    blob = ctx.bundle()         # every entry, one bytes object (self-checking)

    # another machine / process:
    with aotpack.cache.Context() as ctx:
        ctx.load_bundle(blob)   # later compiles of the same programs hit, compile nothing
        aotpack.compile(model, (x,))

``lookup_or_compile`` is the one path every cached compile takes: active context, then
the store, then (under the store's compile lock, so a fleet compiles each key once)
the compiler.
"""

from __future__ import annotations

import collections
import contextvars
import logging
import time
from collections.abc import Callable

from .entry import FRAMING_FIELDS, Entry, make_bundle, make_entry, split_bundle, unpack_entry
from .key import CacheKey
from .store import Store, stats

__all__ = ["Context", "lookup_or_compile", "active_context"]

log = logging.getLogger("aotpack.cache")

# The active Contexts, innermost last: a ContextVar, so a Context entered in one thread
# (or asyncio task) is not seen by compiles running in another.
_ACTIVE: contextvars.ContextVar[tuple[Context, ...]] = contextvars.ContextVar("aotpack_cache_contexts", default=())


def active_context() -> Context | None:
    """The innermost Context active in this thread, or None."""
    active = _ACTIVE.get()
    return active[-1] if active else None


class Context:
    """Records each compiled artifact by key while active (``with Context() as ctx``).

    Args:
      store: optional store that ``edit`` and ``load_bundle`` also write to, so edits
        and imported bundles reach later processes too.
    """

    def __init__(self, store: Store | None = None):
        self.store = store
        #: hits, misses and compiles of the lookups made while this context is active (in
        #: its thread or task; ``aotpack.cache.stats`` counts the whole process)
        self.stats: collections.Counter = collections.Counter()
        self._entries: dict[str, Entry] = {}
        self._tokens: list[contextvars.Token] = []

    def __enter__(self) -> Context:
        self._tokens.append(_ACTIVE.set((*_ACTIVE.get(), self)))
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE.reset(self._tokens.pop())

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[str]:
        """The digests of the recorded artifacts, in the order they were recorded."""
        return list(self._entries)

    def entry(self, key: str) -> Entry:
        """The recorded entry (header with named parts, and payload)."""
        try:
            return self._entries[str(key)]
        except KeyError:
            raise KeyError(f"no artifact with key {str(key)[:16]} in this context "
                           f"({len(self._entries)} recorded)") from None

    def parts(self, key: str) -> dict:
        """The named parts of ``key``."""
        return dict(self.entry(key).header["parts"])

    def get(self, key: str) -> bytes:
        """The serialized bytes of one artifact."""
        return self.entry(key).payload

    def edit(self, key: str, fn: Callable[[bytes], bytes]) -> None:
        """Replace an artifact's bytes by ``fn(bytes)``; later lookups of ``key`` (in this
        context, and in ``store`` if given) get the edited artifact."""
        old = self.entry(key)
        payload = fn(old.payload)
        if not isinstance(payload, (bytes, bytearray)):
            raise TypeError(f"edit's function must return bytes, got {type(payload).__name__}")
        info = {k: v for k, v in old.header.items() if k not in FRAMING_FIELDS}
        entry = self.add(make_entry(old.key, old.header["parts"], bytes(payload), **{**info, "edited": True}))
        if self.store is not None:
            self.store.put(old.key, entry.raw, overwrite=True)

    def record(self, data: bytes) -> Entry:
        """Add one entry's bytes (checked) to the context."""
        return self.add(unpack_entry(data))

    def add(self, entry: Entry) -> Entry:
        """Add an entry already checked (fetched from a store, or just compiled)."""
        self._entries[entry.key] = entry
        return entry

    def bundle(self) -> bytes:
        """Every recorded entry as one bytes object (each entry carries its checksum)."""
        return make_bundle([entry.raw for entry in self._entries.values()])

    def load_bundle(self, data: bytes) -> list[str]:
        """Add the entries of a ``bundle()`` (and write them to ``store`` if given);
        returns their keys. A damaged bundle raises CacheError and adds nothing."""
        keys = []
        for raw in split_bundle(data):
            entry = self.record(raw)
            keys.append(entry.key)
            if self.store is not None:
                self.store.put(entry.key, raw, overwrite=True)
        return keys

    def clear(self) -> None:
        """Forget every recorded artifact (stores are not touched)."""
        self._entries.clear()


def _count(event: str) -> None:
    stats[event] += 1
    for ctx in _ACTIVE.get():
        ctx.stats[event] += 1


def lookup_or_compile(key: CacheKey, compile_fn: Callable[[], bytes], store: Store | None, *, kind: str,
                      say: Callable[[str], None] = lambda line: None) -> bytes:
    """The artifact for ``key``: from the active context, else the store, else compiled.

    A miss takes the store's compile lock; a process that finds it taken waits for the
    holder's entry instead of compiling the same thing (the fleet's duplicate work is
    bounded by one compile per key). The lock is a lease the holder renews while it
    compiles: a holder that dies or stalls delays the others by one lease, then they
    compile themselves.
    Hits and compiles are counted in ``aotpack.cache.stats`` and in each active
    Context's ``stats``.
    """
    digest = key.digest
    ctx = active_context()
    if ctx is not None and digest in ctx:
        _count("hits")
        say(f"cache hit {digest[:16]} (context)")
        return ctx.get(digest)
    entry = store.fetch(digest) if store is not None else None
    compiled = None
    if entry is None:
        _count("misses")

        def compile_now() -> Entry:
            nonlocal compiled
            compiled = _compile(key, compile_fn, kind, store)
            return compiled

        if store is None:
            entry = compile_now()
        else:
            line = store.explain_miss(key)
            log.info(line)
            say(line)
            if store.try_lock(digest):
                with store.holding_lock(digest):  # the lease is renewed while we compile
                    entry = store.fetch(digest) or compile_now()  # stored between our miss and our lock?
            else:
                say(f"another process is compiling {digest[:16]}; waiting for it")
                entry = store.wait_for(digest) or compile_now()
    if entry is not compiled:
        _count("hits")
        say(f"cache hit {digest[:16]} ({store.url})")
    if ctx is not None:
        ctx.add(entry)
    return entry.payload


def _compile(key: CacheKey, compile_fn, kind: str, store: Store | None) -> Entry:
    """Compile, frame the artifact once, and publish it (first writer wins)."""
    t0 = time.perf_counter()
    payload = compile_fn()
    _count("compiles")
    entry = make_entry(key.digest, key.parts, payload, mac_key=store.mac_key if store is not None else None,
                       kind=kind, compile_s=round(time.perf_counter() - t0, 3))
    if store is not None:
        store.put(key.digest, entry.raw)
    return entry
