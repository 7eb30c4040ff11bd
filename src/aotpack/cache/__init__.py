"""Compile cache: compiled artifacts by content key, in a directory or in Redis.

    >>> store = aotpack.cache.LocalStore("/tmp/aotcache")              # doctest: +SKIP
    >>> aotpack.compile(model, (x,), cache=store)     # miss: compiles, stores     # doctest: +SKIP
    >>> aotpack.compile(model, (x,), cache=store)     # hit: compiles nothing      # doctest: +SKIP
    >>> torch.compile(model, backend=aotpack.cache.backend("inductor", "redis://host:6379/0"))  # doctest: +SKIP
    >>> with aotpack.cache.Context() as ctx: ...      # record, edit, bundle       # doctest: +SKIP

Modules: key.py (named key parts), entry.py (self-checking bytes), store.py (what
every store does), local.py / redis.py (the stores), context.py (Context, the lookup
path), cached.py (aotpack.compile's cached path, the torch.compile backend).
"""

from .cached import backend
from .context import Context, active_context, lookup_or_compile
from .key import CacheKey
from .local import LocalStore
from .open import open_store
from .store import CacheWarning, Store, stats

__all__ = ["Context", "CacheKey", "CacheWarning", "LocalStore", "RedisStore", "Store", "active_context",
           "backend", "lookup_or_compile", "open_store", "stats"]


def __getattr__(name):
    if name == "RedisStore":  # imports the redis client only when asked for
        from .redis import RedisStore

        return RedisStore
    raise AttributeError(f"module 'aotpack.cache' has no attribute {name!r}")
