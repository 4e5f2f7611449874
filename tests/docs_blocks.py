"""The Python code blocks of README.md and docs/**/*.md, and how each one is tested (docs/testing.md).

A block is a ```` ```python ```` fence. An HTML comment right above it (blank lines between are
allowed) may say how it is tested; its first line is ``docs-test: MODE [text]``, and further lines,
for the modes that run code, are setup code run before the block (shown in the Markdown source, not
on the site)::

    <!-- docs-test: run
    from flask import Flask
    app = Flask(__name__)
    -->

MODE is one of:

* ``run`` (also without a comment): executed in a fresh interpreter; it must not raise;
* ``continue``: executed after the page's previous block (which must run too) in the same interpreter;
* ``django``: a fragment of a Django project's ``settings.py`` (and views): see :mod:`docs_block_runner`;
* ``pytest``: the block holds test functions; written to a file and run by pytest with our plugin,
  and at least one test must pass;
* ``compile-only [reason]``: only compiled (a syntax check); for code that needs the network or
  a service, or that names objects the page introduces in prose;
* ``skip REASON``: not run at all; the reason is required.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_MODES = ("run", "continue", "django", "pytest")
MODES = (*RUN_MODES, "compile-only", "skip")

# A fence opens with 3+ backticks or tildes and an info string; ``python`` (or ``py``, ``python3``) is ours.
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)[^`]*$")
_PYTHON = ("python", "py", "python3")
_MARKER = re.compile(r"<!--\s*docs-test:\s*(?P<mode>[a-z-]*)(?P<rest>.*?)-->", re.DOTALL)


class MarkerError(ValueError):
    """A ``docs-test`` comment that cannot be used: the message names the file and line."""


@dataclass(frozen=True)
class Block:
    path: str  # relative to the repository root
    line: int  # of the first code line (1-based)
    code: str
    mode: str = "run"
    reason: str = ""
    setup: str = ""
    setup_line: int = 0  # of the first setup line
    previous: Block | None = None  # for "continue": the block run before this one

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"


def _relative(path: Path) -> str:
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:  # a page outside the repository (the parser's own tests)
        return path.as_posix()


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _marker_above(lines: list[str], fence: int) -> tuple[str, int] | None:
    """The HTML comment that ends on the last non-blank line above ``lines[fence]``, and its first line."""
    end = fence - 1
    while end >= 0 and not lines[end].strip():
        end -= 1
    if end < 0 or not lines[end].rstrip().endswith("-->"):
        return None
    start = end
    while start >= 0 and "<!--" not in lines[start]:
        start -= 1
    if start < 0:
        return None
    return "\n".join(lines[start : end + 1]), start


def _dedent(lines: list[str], indent: str) -> str:
    return "\n".join(line[len(indent) :] if line.startswith(indent) else line.lstrip() for line in lines)


def _fences(lines: list[str], relative: str) -> list[tuple[int, int, str, str]]:
    """``(open, close, indent, info)`` of every fenced block (the lines of its fences, 0-based).

    A fence's content is never read as fences: a ```` ```python ```` shown inside a ```` ~~~markdown ````
    example is not a block.
    """
    found = []
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        fence = match.group("fence")
        end = index + 1
        while end < len(lines):
            stripped = lines[end].strip()
            if stripped and set(stripped) == {fence[0]} and len(stripped) >= len(fence):
                break
            end += 1
        if end == len(lines):
            raise MarkerError(f"{relative}:{index + 1}: the {match.group('info') or 'code'} block is never closed")
        found.append((index, end, match.group("indent"), match.group("info").lower()))
        index = end + 1
    return found


def blocks_of(path: Path) -> list[Block]:
    """Every python block of one Markdown file, with its test mode."""
    relative = _relative(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    for index, end, indent, info in _fences(lines, relative):
        if info not in _PYTHON:
            continue
        code = _dedent(lines[index + 1 : end], indent) + "\n"
        mode, reason, setup, setup_line = "run", "", "", 0
        above = _marker_above(lines, index)
        if above is not None and "docs-test" in above[0]:
            comment, first = above
            match = _MARKER.search(comment)
            if match is None or match.group("mode") not in MODES:
                raise MarkerError(
                    f"{relative}:{first + 1}: not a docs-test marker: {comment.strip()!r}; modes: {MODES}"
                )
            mode = match.group("mode")
            head, _, body = match.group("rest").partition("\n")
            reason = head.strip()
            if body.strip():
                if mode not in RUN_MODES:
                    raise MarkerError(f"{relative}:{first + 1}: a {mode} block takes no setup code")
                setup, setup_line = _dedent(body.splitlines(), indent) + "\n", first + 2
            if mode == "skip" and not reason:
                raise MarkerError(f"{relative}:{first + 1}: docs-test: skip needs a reason")
            if mode in RUN_MODES and reason:
                raise MarkerError(f"{relative}:{first + 1}: setup code starts on the line after 'docs-test: {mode}'")
        previous = None
        if mode == "continue":
            if not found or found[-1].mode not in ("run", "continue"):
                raise MarkerError(f"{relative}:{index + 1}: docs-test: continue follows no run block on this page")
            previous = found[-1]
        found.append(Block(relative, index + 2, code, mode, reason, setup, setup_line, previous))
    return found


def all_blocks() -> list[Block]:
    return [block for path in markdown_files() for block in blocks_of(path)]


def stray_markers(path: Path) -> list[int]:
    """Lines of ``docs-test`` comments in ``path`` that no python block follows (a marker gone astray)."""
    relative = _relative(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    used = set()
    inside = set()
    for index, end, _, info in _fences(lines, relative):
        inside.update(range(index, end + 1))
        above = _marker_above(lines, index) if info in _PYTHON else None
        if above is not None:
            used.add(above[1])
    return [
        index + 1
        for index, line in enumerate(lines)
        if "<!-- docs-test" in line and index not in used and index not in inside
    ]
