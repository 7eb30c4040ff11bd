"""MkDocs hooks: pages generated from the code, so they cannot drift from it.

- ``<!-- aotpack:cli-reference -->``: every ``aotpack`` subcommand's help, from the
  argparse parser the command line uses (``aotpack.cli._parser``).
- ``<!-- aotpack:format-layout -->`` and ``<!-- aotpack:format-changelog -->``: the
  package layout and the FORMAT_VERSION changelog, from ``aotpack/package/format.py``'s
  docstring, where they sit beside the code that reads and writes each version.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))


def _fence(text: str) -> str:
    return "```text\n" + text.rstrip() + "\n```\n"


def cli_reference() -> str:
    from aotpack import cli

    parser = cli._parser()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    out = [_fence(parser.format_help())]
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        sub.prog = f"aotpack {name}"
        help_line = next((c.help for c in subparsers._choices_actions if c.dest == name), "")
        out.append(f"## `aotpack {name}`\n\n{help_line[:1].upper() + help_line[1:]}.\n\n{_fence(sub.format_help())}")
    return "\n".join(out)


def _format_doc_section(start: str, end: str | None) -> str:
    from aotpack.package import format as fmt

    doc = fmt.__doc__
    i = doc.index(start)
    j = doc.index(end, i) if end else len(doc)
    lines = doc[i:j].rstrip().splitlines()
    return _fence("\n".join(lines))


def on_page_markdown(markdown: str, page, config, files) -> str:
    if "<!-- aotpack:cli-reference -->" in markdown:
        markdown = markdown.replace("<!-- aotpack:cli-reference -->", cli_reference())
    if "<!-- aotpack:format-layout -->" in markdown:
        markdown = markdown.replace("<!-- aotpack:format-layout -->",
                                    _format_doc_section("Layout::", "Members are stored"))
    if "<!-- aotpack:format-changelog -->" in markdown:
        markdown = markdown.replace("<!-- aotpack:format-changelog -->",
                                    _format_doc_section("Changelog of FORMAT_VERSION", "Trust model ("))
    return markdown
