"""Help text as `dataops ... --help` prints it: each paragraph rewrapped to the terminal, brackets shown as written.

Docstrings are wrapped at the source's line length (about 110 columns). Typer's rich help joins the lines of a
command's first paragraph, but keeps every single line break after it (and in the first paragraph of the
command lists of `dataops --help`), so on any other width a paragraph breaks mid-sentence ("... request limit;
a" / "progress bar counts them"). It also reads help as rich markup, where `[local|ray]` or `[x]` is taken for
a style and vanishes. `reflow_commands` rewrites the help of a whole command tree once, when the top-level group
is built (`ReportingGroup` in pipelines/error_report.py), so every command reads alike:

- the lines of a paragraph are joined with one space, for the terminal to rewrap; a blank line still
  separates paragraphs;
- a line that starts a list item (`- `, `* `, `1. `) keeps its line break, and a paragraph that starts with
  `\\b` (click's "do not rewrap" mark) is left as written;
- whatever rich would take for a markup tag is escaped, in command and parameter help alike: help is plain text.

Rewriting twice changes nothing more, so a command tree built again (each `dataops` call builds one) is safe.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_LIST_ITEM = re.compile(r"(?:[-*]|\d+[.)])\s")
# rich's markup tag (rich.markup.RE_TAGS), unless a backslash already escapes it
_TAG = re.compile(r"(?<!\\)(\[[a-z#/@][^\[]*?\])")


def reflow(text: str) -> str:
    """`text` with the lines of each paragraph joined and rich markup escaped (see the module docstring)."""
    paragraphs = [p.strip("\n") for p in _PARAGRAPH_BREAK.split(inspect.cleandoc(text))]
    return "\n\n".join(_TAG.sub(r"\\\1", p if p.startswith("\b") else _joined(p)) for p in paragraphs if p.strip())


def _joined(paragraph: str) -> str:
    lines: list[str] = []
    for line in (raw.strip() for raw in paragraph.splitlines()):
        if lines and not _LIST_ITEM.match(line):
            lines[-1] = f"{lines[-1]} {line}"
        else:
            lines.append(line)
    return "\n".join(lines)


def reflow_commands(command: Any) -> None:
    """Rewrite in place the help of `command` (a click command or group), of its parameters and of every command
    under it."""
    for holder in (command, *command.params):
        for field in ("help", "short_help"):
            if getattr(holder, field, None):
                setattr(holder, field, reflow(getattr(holder, field)))
    for sub in getattr(command, "commands", {}).values():
        reflow_commands(sub)
