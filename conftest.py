"""Every code block of README.md and docs/, and every docstring example (``>>>``) of
src/aotpack, runs in the test suite (Sybil), so a renamed API breaks a test, not a reader.

- ```` ```python ```` blocks run in order, one namespace per page.
- ```` ```console ```` blocks: each ``$ command`` line runs in a shell and must exit 0.
- ```` ```toml ```` blocks must parse.
- ```` ```text ```` blocks are output and error messages shown to the reader; nothing runs.
- ``<!-- skip: next "why" -->`` (or ``if(condition, reason=...)``) skips the next block:
  only for blocks that need a GPU, torchrun, or that install or run the suite itself.

Each page runs in a fresh temporary folder (its files: ``model.aot``, ``bug/``...) with
``AOTPACK_BACKEND=eager`` (docs/reference/environment.md), so a page's compiles take
seconds; the backends themselves are tested in tests/. ``docs/guides/fleet-cache.md``
gets ``docs_redis``, a real redis-server on a free port. tests/docs/test_site.py checks
that no other kind of block slips in, and builds the site.
"""

from __future__ import annotations

import doctest
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from sybil import Sybil
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser
from sybil.parsers.rest import DocTestParser

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(ROOT, "tests"))

DOCS_ENV = {"AOTPACK_BACKEND": "eager"}


def _run_console(example) -> None:
    """Run each ``$ command`` of a console block in the page's folder; each must exit 0."""
    env = {**os.environ, **DOCS_ENV,
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
           "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    for line in example.parsed.splitlines():
        if not line.startswith("$ "):
            continue
        proc = subprocess.run(line[2:], shell=True, capture_output=True, text=True, env=env, timeout=600)
        if proc.returncode != 0:
            raise AssertionError(f"`{line[2:]}` exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def _parse_toml(example) -> None:
    import tomllib  # Python 3.11+; the suite runs on 3.11 and 3.12

    tomllib.loads(example.parsed)


def _enter_page(namespace: dict) -> None:
    """A fresh folder and the docs' environment for one page."""
    namespace["__docs_saved__"] = (os.getcwd(), {k: os.environ.get(k) for k in (*DOCS_ENV, "AOTPACK_CACHE")})
    folder = tempfile.mkdtemp(prefix="aotpack-docs-")
    namespace["__docs_folder__"] = folder
    os.environ.update(DOCS_ENV)
    os.environ["AOTPACK_CACHE"] = os.path.join(folder, ".cache")   # never the user's ~/.cache
    os.chdir(folder)
    sys.path.insert(0, folder)     # as for a script run there: modules a page writes import


def _leave_page(namespace: dict) -> None:
    cwd, saved = namespace["__docs_saved__"]
    os.chdir(cwd)
    sys.path.remove(namespace["__docs_folder__"])
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    sys.modules.pop("mybackends", None)       # modules a page wrote into its folder
    shutil.rmtree(namespace["__docs_folder__"], ignore_errors=True)


PARSERS = [PythonCodeBlockParser(), CodeBlockParser("console", _run_console), CodeBlockParser("toml", _parse_toml),
           SkipParser()]
_common = dict(parsers=PARSERS, setup=_enter_page, teardown=_leave_page)
_sybils = (
    Sybil(patterns=["README.md", "docs/*.md", "docs/**/*.md"], excludes=["docs/guides/fleet-cache.md"],
          name="docs", **_common)
    + Sybil(patterns=["docs/guides/fleet-cache.md"], fixtures=["docs_redis"], name="docs-redis", **_common)
)
# the docstrings' examples (``>>>``), each module in a folder of its own, as a page
_sybils.append(Sybil(parsers=[DocTestParser(optionflags=doctest.ELLIPSIS)],
                     patterns=["src/aotpack/*.py", "src/aotpack/**/*.py"], setup=_enter_page, teardown=_leave_page,
                     name="docstrings"))
pytest_collect_file = _sybils.pytest()


@pytest.fixture(scope="session")
def docs_redis(tmp_path_factory):
    from redis_server import RedisServer

    server = RedisServer(str(tmp_path_factory.mktemp("docs-redis")))
    yield server
    server.stop()

