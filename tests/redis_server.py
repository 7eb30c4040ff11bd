"""A real redis-server for the tests (the cache stores' and the docs' examples)."""

from __future__ import annotations

import subprocess

import pytest


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A real redis-server on 127.0.0.1 on a free port, no persistence."""

    def __init__(self, tmp: str):
        import shutil
        import time

        exe = shutil.which("redis-server")
        if exe is None:  # `make test` installs it; without it the cache tests must fail, not skip
            pytest.fail("redis-server is not installed: run `make test` (installs Debian's redis-server) "
                        "or apt-get install redis-server", pytrace=False)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", tmp, "--protected-mode", "yes"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        self.client = redis.Redis(host="127.0.0.1", port=self.port)
        deadline = time.monotonic() + 20
        while True:
            try:
                self.client.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
