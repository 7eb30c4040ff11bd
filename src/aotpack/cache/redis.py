"""A cache store on a Redis server, shared by a fleet.

Keys (with the default ``prefix="aotpack:"``): ``aotpack:entry:<digest>`` holds one
whole entry (see entry.py) as one string value, so a reader gets all of it or nothing
(``SET`` is atomic); ``aotpack:lock:<digest>`` is the compile lock.

- First writer wins: entries are written with ``SET NX``; an existing entry is only
  replaced on purpose (``overwrite=True``: cache edits and imports).
- Compile lock: a lease, ``SET lock token NX PX lease``. The first process to miss
  compiles; the others wait for its entry. The holder renews the lease every third of
  ``lock_lease`` (10 s) while it compiles, so a compile of any length keeps it, and a
  holder that dies, stalls or loses Redis delays the others by one lease at most: they
  then compile themselves. (A long fixed TTL made a stalled holder block the fleet for
  minutes; vLLM and inductor's remote cache have the same trade-off.)
- Down or unreachable: every command has a ``timeout`` (connect and read, default 5 s)
  and no retries. The first failure warns once (CacheWarning) and the store reads as
  empty for ``retry_after`` seconds: compiles go on locally, never crash or hang.
- Size: Redis holds what it is given. Give the server a ``maxmemory`` and
  ``maxmemory-policy allkeys-lru`` for LRU eviction, or pass ``ttl`` (seconds) here.

Needs the ``redis`` client (``pip install aotpack[redis]``).

Example:
    >>> store = RedisStore("redis://cache.internal:6379/0", timeout=2)      # doctest: +SKIP
    >>> torch.compile(model, backend=aotpack.cache.backend("inductor", store))  # doctest: +SKIP
"""

from __future__ import annotations

import os
import time
import uuid

from ..errors import CacheError
from .entry import HEADER_PREFIX, CorruptEntry, header_length, read_header
from .store import Store, stats

__all__ = ["RedisStore"]

_UNLOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end
"""
# only the holder (its token) renews; a lease already taken over by another is left alone
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end
"""


_URL_HINT = "write redis://HOST:PORT/DB (e.g. redis://127.0.0.1:6379/0), rediss:// for TLS, or unix:///PATH"


def _check_url(url: str) -> None:
    """CacheError unless ``url`` names a Redis server in full. (The client reads a
    database it cannot parse, as in ``redis://host:6379/abc``, as database 0.)"""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    problem = None
    if parts.scheme in ("redis", "rediss"):
        db = parts.path.strip("/")
        try:
            parts.port  # noqa: B018 - urllib checks the port when it is read
        except ValueError as e:
            problem = str(e).lower()
        if not parts.hostname:
            problem = "it names no host"
        elif db and not db.isdigit():
            problem = f"the database {db!r} is not a number"
    elif parts.scheme == "unix":
        if not parts.path:
            problem = "it names no socket path"
    else:
        problem = f"the scheme {parts.scheme!r} is not redis, rediss or unix"
    if problem:
        raise CacheError(f"{url} is not a Redis URL: {problem}", hint=_URL_HINT)


class RedisStore(Store):
    """Entries in Redis at ``url`` (``redis://host:port/db``)."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, timeout: float = 5.0, prefix: str = "aotpack:",
                 lock_lease: float = 10.0, lock_wait: float = 3600.0, retry_after: float = 30.0,
                 ttl: float | None = None, on_error: str = "warn"):
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise CacheError("RedisStore needs the redis client, which is not installed",
                             hint="pip install 'aotpack[redis]' (or: pip install redis)") from None
        _check_url(url)
        self.url = url
        self.prefix = prefix
        self.lock_lease = lock_lease
        self.lock_wait = lock_wait
        self.retry_after = retry_after
        self.ttl = ttl
        # unreachable (connection, timeout) and refusing (maxmemory reached, READONLY
        # replica, WRONGTYPE key, a db index out of range): both mean "compile locally"
        self._unreachable = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
        self._errors = (redis.exceptions.RedisError, OSError)
        try:
            self._client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                                retry=Retry(NoBackoff(), 0), retry_on_timeout=False)
        except ValueError as e:  # what the client refuses beyond _check_url
            raise CacheError(f"{url} is not a usable Redis URL: {e}", hint=_URL_HINT) from None
        self._unlock = self._client.register_script(_UNLOCK)
        self._renew = self._client.register_script(_RENEW)
        self._down_until = 0.0
        self._set_on_error(on_error)
        self._tokens: dict[str, str] = {}

    def _key(self, kind: str, digest: str) -> str:
        return f"{self.prefix}{kind}:{digest}"

    def _call(self, what: str, fn, default):
        """Run a Redis command; if the server is unreachable or refuses it, warn once and
        return ``default`` (the caller then compiles locally, as without a cache)."""
        if time.monotonic() < self._down_until:
            stats["unavailable"] += 1
            return default
        try:
            return fn()
        except self._errors as e:
            self._down_until = time.monotonic() + self.retry_after
            down = isinstance(e, self._unreachable)
            self._unavailable(f"Redis cache at {self.url} {'is unreachable' if down else 'refused a command'} "
                              f"({type(e).__name__}: {e}) during {what}",
                              f"compiling locally without it (retrying in {self.retry_after:.0f}s)",
                              "check that redis-server runs at that host and port" if down else
                              "check the server's maxmemory, that it is not a read-only replica, and the database "
                              "number", e)
            return default

    def get(self, digest):
        return self._call("get", lambda: self._client.get(self._key("entry", digest)), None)

    def put(self, digest, data, *, overwrite=False):
        px = int(self.ttl * 1000) if self.ttl else None
        done = self._call("put", lambda: self._client.set(self._key("entry", digest), data, nx=not overwrite, px=px),
                          False)
        if done:
            stats["stored"] += 1
        return bool(done)

    def delete(self, digest):
        return bool(self._call("delete", lambda: self._client.delete(self._key("entry", digest)), 0))

    def digests(self):
        start = len(self.prefix) + len("entry:")
        keys = self._call("scan", lambda: list(self._client.scan_iter(match=self._key("entry", "*"), count=1000)), [])
        return sorted(k.decode()[start:] for k in keys)

    def header(self, digest):
        key = self._key("entry", digest)

        def read():
            prefix = self._client.getrange(key, 0, HEADER_PREFIX - 1)
            if not prefix:
                return None
            return prefix + self._client.getrange(key, HEADER_PREFIX, header_length(prefix) - 1)

        try:
            data = self._call("header", read, None)
            return None if data is None else read_header(data)[0]
        except CorruptEntry:
            return None

    def try_lock(self, digest):
        token = f"{os.getpid()}-{uuid.uuid4().hex}"
        got = self._call("lock", lambda: self._client.set(self._key("lock", digest), token, nx=True,
                                                          px=int(self.lock_lease * 1000)), None)
        if got is None and time.monotonic() < self._down_until:
            return True  # unreachable: compile here
        if got:
            self._tokens[digest] = token
        return bool(got)

    def unlock(self, digest):
        token = self._tokens.pop(digest, None)
        if token is not None:
            self._call("unlock", lambda: self._unlock(keys=[self._key("lock", digest)], args=[token]), 0)

    def renew_lock(self, digest):
        token = self._tokens.get(digest)
        if token is None:
            return False
        return bool(self._call("lock renewal", lambda: self._renew(
            keys=[self._key("lock", digest)], args=[token, int(self.lock_lease * 1000)]), 0))

    def is_locked(self, digest):
        return bool(self._call("lock check", lambda: self._client.exists(self._key("lock", digest)), 0))
