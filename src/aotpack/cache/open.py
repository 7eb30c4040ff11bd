"""``open_store``: a cache store from what a user names (a path, a ``redis://`` URL, a
Store, or nothing: ``$AOTPACK_CACHE``, ``$AOTPACK_CACHE_DIR``, the default folder), with
the fleet's secret for authenticated entries. Its own module: the stores import the
base class (store.py), this imports the stores.
"""

from __future__ import annotations

import os

from .entry import mac_key
from .store import Store, _env_cache, default_dir

__all__ = ["ENV_SECRET", "open_store"]


def open_store(where=None, *, on_error: str = "warn", secret: str | bytes | None = None) -> Store:
    """A store from a URL, a path, a Store (returned as is), or None/True (the default
    local store). ``on_error``: see ``Store.on_error``. ``secret``: the fleet's shared
    secret (at least 16 bytes; default ``$AOTPACK_CACHE_SECRET``): entries are written
    with a MAC and only entries whose MAC checks are used (see entry.py).

    Example:
        >>> open_store("redis://127.0.0.1:6379/0")               # doctest: +SKIP
        RedisStore('redis://127.0.0.1:6379/0')
    """
    key = _secret_key(secret)
    if isinstance(where, Store):
        if key is not None:
            where.mac_key = key
        return where
    if where is None or where is True:
        where = _env_cache() or default_dir()
    where = os.fspath(where)
    scheme = where.split("://", 1)[0] if "://" in where else None
    if scheme not in (None, "redis", "rediss", "unix", "file"):
        from ..errors import CacheError

        raise CacheError(f"{where!r} is not a cache store: a folder, file://, redis://, rediss:// or unix:// URL",
                         hint="e.g. --store ~/.cache/aotpack or --store redis://host:6379/0")
    if where.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisStore

        store: Store = RedisStore(where, on_error=on_error)
    else:
        from .local import LocalStore

        store = LocalStore(where.removeprefix("file://"), on_error=on_error)
    store.mac_key = key
    return store


ENV_SECRET = "AOTPACK_CACHE_SECRET"


def _secret_key(secret) -> bytes | None:
    """The MAC key of ``secret`` or of ``$AOTPACK_CACHE_SECRET`` (None: neither set).
    A secret set but empty or short is an error, never "authentication off"."""
    from ..errors import CacheError

    where = "secret="
    if secret is None:
        secret = os.environ.get(ENV_SECRET)
        where = f"${ENV_SECRET}"
        if secret is None:
            return None
    if len(secret) < 16:
        raise CacheError(f"{where} is {'empty' if not secret else f'{len(secret)} bytes'}: a cache secret needs at "
                         "least 16", hint=f"use e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`, or "
                                          f"unset {ENV_SECRET} to trust the store as it is")
    return mac_key(secret)
