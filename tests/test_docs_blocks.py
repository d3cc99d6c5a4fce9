"""Every code block of README.md and docs/**/*.md runs as written.

* ``python`` blocks of one file run in order in one namespace (a page is read top to bottom),
  in a fresh working directory, with matplotlib's non-interactive backend;
* ``bash`` / ``sh`` / ``console`` blocks: each ``critsym ...`` or ``python -m critsym...``
  command line must parse with the real argument parser (it is not run: the CLI tests run the
  commands), each ``python path/to/script.py`` and ``pytest tests/...`` must name an existing file;
* a block opts out only explicitly, for illustrative excerpts and output: with the marker
  ``<!-- docs-test: skip (reason) -->`` on the line before it, or with ``notest`` after the
  language (```` ```python notest ````, the convention of pytest-markdown-docs).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SKIP_MARKER = re.compile(r"<!--\s*docs-test:\s*skip\b.*-->")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,})(?P<info>[^`]*)$")
SHELL_LANGS = {"bash", "sh", "shell", "console"}
#: ``python -m MODULE`` entry points and the subcommand each runs
MODULE_SUBCOMMANDS = {"critsym": None, "critsym.criticality": "phase", "critsym.repro": "repro",
                      "critsym.derivations": "derivations"}


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    code: str
    skip: bool


def code_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file (indented fences inside lists included)."""
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        info = m["info"].strip().lower().split()
        lang = (info or [""])[0]
        prev = next((ln for ln in reversed(lines[:i]) if ln.strip()), "")
        body, j = [], i + 1
        while j < len(lines) and lines[j].strip() != fence:
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
            j += 1
        if j == len(lines):
            raise AssertionError(f"{path.name}:{i + 1}: unclosed code block")
        blocks.append(Block(path, i + 1, lang, "\n".join(body) + "\n",
                            bool(SKIP_MARKER.search(prev)) or "notest" in info[1:]))
        i = j + 1
    return blocks


def _ids(paths):
    return [str(p.relative_to(ROOT)) for p in paths]


def test_the_documents_have_code_blocks():
    langs = {b.lang for p in DOC_FILES for b in code_blocks(p)}
    assert {"python", "bash"} <= langs
    assert all(b.lang for p in DOC_FILES for b in code_blocks(p)), \
        "give every code block a language (python, bash, text)"


def _python_blocks(path: Path) -> list[Block]:
    return [b for b in code_blocks(path) if b.lang in ("python", "py") and not b.skip]


PYTHON_FILES = [p for p in DOC_FILES if _python_blocks(p)]


@pytest.mark.parametrize("path", PYTHON_FILES, ids=_ids(PYTHON_FILES))
def test_python_blocks_run(path, tmp_path, monkeypatch):
    blocks = _python_blocks(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs_{path.stem}"}
    for b in blocks:
        try:
            exec(compile(b.code, f"{path.name}:{b.line}", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"{path.relative_to(ROOT)}, code block at line {b.line}: "
                                 f"{type(e).__name__}: {e}") from e
        finally:
            plt.close("all")


def _commands(code: str) -> list[list[str]]:
    """Shell command lines of a block (continuations joined, prompts and comments dropped)."""
    text = re.sub(r"\\\n\s*", " ", code)
    out = []
    for line in text.splitlines():
        line = line.strip().removeprefix("$ ")
        if not line or line.startswith("#"):
            continue
        for part in re.split(r"\s*(?:&&|;)\s*", line):
            words = shlex.split(part, comments=True)
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words = words[1:]  # environment assignments (PYTHONPATH=.)
            if words:
                out.append(words)
    return out


def _check_command(words: list[str], where: str) -> None:
    from critsym import cli

    prog, args = words[0], words[1:]
    if prog == "critsym":
        cli.build_parser().parse_args(args)
        return
    if prog not in ("python", "python3"):
        return
    if args[:1] == ["-m"]:
        module, rest = args[1], args[2:]
        if module in MODULE_SUBCOMMANDS:
            sub = MODULE_SUBCOMMANDS[module]
            cli.build_parser().parse_args(([sub] if sub else []) + rest)
        elif module == "pytest":
            for a in rest:
                if a.startswith("tests/"):
                    assert (ROOT / a.split("::")[0]).exists(), f"{where}: no file {a}"
        return
    script = next((a for a in args if a.endswith(".py")), None)
    if script:
        assert (ROOT / script).exists(), f"{where}: no script {script}"


SHELL_BLOCKS = [b for p in DOC_FILES for b in code_blocks(p)
                if b.lang in SHELL_LANGS and not b.skip]


@pytest.mark.parametrize("block", SHELL_BLOCKS,
                         ids=[f"{b.path.name}:{b.line}" for b in SHELL_BLOCKS])
def test_shell_commands_are_valid(block):
    for words in _commands(block.code):
        where = f"{block.path.relative_to(ROOT)}:{block.line}: {' '.join(words)}"
        try:
            _check_command(words, where)
        except SystemExit as e:
            raise AssertionError(f"{where}: the command line does not parse") from e


def test_code_block_parser_reads_indented_fences_and_markers(tmp_path):
    md = tmp_path / "page.md"
    md.write_text("text\n\n<!-- docs-test: skip (output) -->\n```python\nraise ValueError\n```\n"
                  "* item\n\n  ```bash\n  critsym demo \\\n    --out x\n  ```\n"
                  "```python notest\nexcerpt(...)\n```\n```python\nx = 1\n```\n")
    a, b, c, d = code_blocks(md)
    assert (a.lang, a.skip, a.code) == ("python", True, "raise ValueError\n")
    assert (b.lang, b.skip) == ("bash", False)
    assert (c.lang, c.skip, d.skip) == ("python", True, False)
    assert _commands(b.code) == [["critsym", "demo", "--out", "x"]]
    with pytest.raises(SystemExit):
        _check_command(["critsym", "phase", "--no-such-option"], "here")
