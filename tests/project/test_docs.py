"""The documentation: every code block runs (conftest.py at the root collects README.md
and docs/ with Sybil), no block escapes that, the README stays a front page, and the site
builds with ``mkdocs build --strict`` (broken links, missing API references and
docstrings documenting parameters a function does not have fail it)."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# python and console blocks run, toml blocks are parsed; text blocks are output and error
# messages shown to the reader
KINDS = {"python", "console", "toml", "text"}
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[^\s`]*)", re.M)
SKIP = re.compile(r"<!-- skip: next (?P<why>.*?) -->")
ALLOWED_SKIPS = ("GPU", "torchrun", "installs")


def _blocks(text: str):
    """(line, language) of each fenced block's opening fence."""
    lines = text.splitlines()
    inside = False
    for i, line in enumerate(lines, 1):
        m = FENCE.match(line)
        if not m:
            continue
        if not inside:
            yield i, m["lang"]
        inside = not inside


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_code_block_runs_or_says_why_not(page):
    text = page.read_text()
    for line, lang in _blocks(text):
        assert lang in KINDS, f"{page.name}:{line}: a ```{lang or '(no language)'} block is neither run nor output"
    for m in SKIP.finditer(text):
        assert any(k in m["why"] for k in ALLOWED_SKIPS), f"{page.name}: a block is skipped for {m['why']!r}"


def test_the_readme_is_a_front_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for needed in ("make demo", "make test", "docs/"):
        assert needed in readme
    linked = set(re.findall(r"\]\((docs/[^)#]+)", readme))
    assert linked, "the README links into the documentation"
    for target in linked:
        assert (ROOT / target).exists(), target


def test_every_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").rglob("*.md"):
        assert str(page.relative_to(ROOT / "docs")) in nav, page


def test_site_builds_strict(tmp_path):
    mkdocs = pytest.importorskip("mkdocs", reason="mkdocs is in the test extras: make test installs it")
    del mkdocs
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    site = tmp_path / "site"
    api = (site / "reference" / "api" / "index.html").read_text()
    assert "Compile a function or nn.Module ahead of time" in api          # from aotpack.compile's docstring
    assert "Load a package written by" in api                              # aotpack.load's
    cli = (site / "reference" / "cli" / "index.html").read_text()
    from aotpack import cli as cli_module

    for action in cli_module._parser()._subparsers._group_actions[0].choices:
        assert f"aotpack {action}" in cli, action                         # every subcommand, from the parser
    changelog = (site / "concepts" / "format" / "index.html").read_text()
    from aotpack.package.format import FORMAT_VERSION

    assert f"{FORMAT_VERSION} (20" in changelog                           # the newest version's changelog entry
