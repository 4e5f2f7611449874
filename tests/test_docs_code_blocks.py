"""Every Python code block of README.md and docs/**/*.md is tested, so that examples cannot rot.

How a block is tested is said by a ``<!-- docs-test: MODE -->`` comment above it (default: run);
tests/docs_blocks.py parses them, tests/docs_block_runner.py runs them, docs/testing.md documents
the convention for authors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from docs_blocks import ROOT, Block, MarkerError, all_blocks, blocks_of, markdown_files, stray_markers

BLOCKS = all_blocks()
RUNNER = Path(__file__).with_name("docs_block_runner.py")
TIMEOUT = 120


def _chunks(block: Block) -> list[dict[str, object]]:
    chunks = _chunks(block.previous) if block.previous is not None else []
    if block.setup:
        chunks.append({"code": block.setup, "filename": block.path, "line": block.setup_line})
    chunks.append({"code": block.code, "filename": block.path, "line": block.line})
    return chunks


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _run(block: Block, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    if block.mode == "pytest":
        source = "".join(chunk["code"] for chunk in _chunks(block))  # type: ignore[misc]
        test_file = tmp_path / "test_docs_block.py"
        test_file.write_text(source, encoding="utf-8")
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            str(test_file),
        ]
        return subprocess.run(
            command, check=False, capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path, env=_environment()
        )
    job = json.dumps({"mode": "django" if block.mode == "django" else "run", "chunks": _chunks(block)})
    return subprocess.run(
        [sys.executable, str(RUNNER)],
        check=False,
        input=job,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=tmp_path,
        env=_environment(),
    )


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.mode in ("run", "continue", "django", "pytest")], ids=lambda b: b.id
)
def test_block_runs(block: Block, tmp_path: Path) -> None:
    result = _run(block, tmp_path)
    output = f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert result.returncode == 0, f"{block.id} ({block.mode}) failed:\n{output}"
    if block.mode == "pytest":
        assert " passed" in result.stdout and " failed" not in result.stdout, output


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.mode == "compile-only"], ids=lambda b: b.id)
def test_compile_only_block_compiles(block: Block) -> None:
    compile("\n" * (block.line - 1) + block.code, block.path, "exec")


def test_skipped_blocks_say_why() -> None:
    for block in BLOCKS:
        if block.mode == "skip":
            assert block.reason.strip(), f"{block.id}: docs-test: skip needs a reason"


def test_python_blocks_are_found_and_fences_elsewhere_are_not_blocks(tmp_path: Path) -> None:
    text = (
        "~~~~markdown\n<!-- docs-test: skip shown as an example -->\n```python\nnot run\n```\n~~~~\n\n"
        "```bash\necho\n```\n\n```py\na = 1\n```\n\n~~~python\nb = 2\n~~~\n"
    )
    assert [(b.line, b.code) for b in _parse(tmp_path, text)] == [(13, "a = 1\n"), (17, "b = 2\n")]
    assert stray_markers(tmp_path / "docs" / "page.md") == []


def test_no_marker_is_astray() -> None:
    """A docs-test comment with no python block under it tests nothing: it is a mistake."""
    stray = {path.relative_to(ROOT).as_posix(): stray_markers(path) for path in markdown_files()}
    assert {path: lines for path, lines in stray.items() if lines} == {}


def test_most_blocks_execute() -> None:
    """Marking is the exception: at least two blocks in three are executed, not just compiled or skipped."""
    assert len(BLOCKS) >= 38  # README.md and docs/ had 38 python blocks when this test was written
    executed = [b for b in BLOCKS if b.mode in ("run", "continue", "django", "pytest")]
    assert 3 * len(executed) >= 2 * len(BLOCKS), f"{len(executed)} of {len(BLOCKS)} blocks run"


# -- the parser itself -----------------------------------------------------------------------------


def _parse(tmp_path: Path, text: str) -> list[Block]:
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    page = docs / "page.md"
    page.write_text(text, encoding="utf-8")
    return blocks_of(page)


def test_parser_reads_modes_reasons_and_setup(tmp_path: Path) -> None:
    text = (
        "```python\nx = 1\n```\n\n"
        "<!-- docs-test: continue\ny = 2\n-->\n\n```python\nassert x + y == 3\n```\n"
        "<!-- docs-test: skip needs a browser -->\n```python\nopen_browser()\n```\n"
        "- item\n\n  <!-- docs-test: compile-only -->\n  ```python\n  z = (\n    1)\n  ```\n"
    )
    first, second, third, fourth = _parse(tmp_path, text)
    assert (first.mode, first.line, first.code) == ("run", 2, "x = 1\n")
    assert (second.mode, second.setup, second.previous) == ("continue", "y = 2\n", first)
    assert second.setup_line == 6
    assert (third.mode, third.reason) == ("skip", "needs a browser")
    assert (fourth.mode, fourth.code) == ("compile-only", "z = (\n  1)\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("<!-- docs-test: skip -->\n```python\npass\n```\n", "needs a reason"),
        ("<!-- docs-test: sometimes -->\n```python\npass\n```\n", "not a docs-test marker"),
        ("<!-- docs-test: continue -->\n```python\npass\n```\n", "follows no run block"),
        ("<!-- docs-test: compile-only\nx = 1\n-->\n```python\npass\n```\n", "takes no setup code"),
        ("```python\npass\n", "never closed"),
    ],
)
def test_parser_refuses_bad_markers(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(MarkerError, match=message):
        _parse(tmp_path, text)


def test_a_failing_block_fails(tmp_path: Path) -> None:
    """The runner reports an exception raised by a block, with the Markdown file and line."""
    block = Block("docs/page.md", 7, "x = 1\nraise RuntimeError('rotten example')\n")
    result = _run(block, tmp_path)
    assert result.returncode != 0
    assert 'File "docs/page.md", line 8' in result.stderr and "rotten example" in result.stderr


def test_a_django_fragment_with_a_bad_setting_fails(tmp_path: Path) -> None:
    block = Block("docs/page.md", 3, 'DPOP = {"ISSUER": "https://as.example.com", "MAXAGE": 30}\n', mode="django")
    result = _run(block, tmp_path)
    assert result.returncode != 0
    assert "MAXAGE" in result.stderr
