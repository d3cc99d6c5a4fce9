"""The documentation's structure: links that resolve, theory sections that exist, the README as
a landing page, and the package metadata a library user expects."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import critsym

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
THEORY_REF = re.compile(r"docs/theory\.md#([a-z0-9-]+)")


def heading_anchors(path: Path) -> set[str]:
    """Anchors of the Markdown headings of ``path`` (lower case, punctuation dropped, spaces to
    hyphens: the rule of GitHub and of mkdocs' toc extension for ASCII headings)."""
    anchors, in_code = set(), False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
        m = None if in_code else re.match(r"^#{1,6} (.*)$", line)
        if m:
            anchors.add(re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", m[1]).strip().lower()))
    return anchors


def _source_files():
    for folder in ("critsym", "tests", "benchmarks", "docs"):
        for p in (ROOT / folder).rglob("*"):
            if p.suffix in (".py", ".md") and p.is_file():
                yield p
    yield ROOT / "README.md"


def test_every_theory_reference_names_an_existing_section():
    anchors = heading_anchors(DOCS / "theory.md")
    refs = {(p.relative_to(ROOT), a) for p in _source_files()
            for a in THEORY_REF.findall(p.read_text())}
    assert len(refs) >= 15  # (file, section) pairs: the scan finds the references
    missing = sorted((str(p), a) for p, a in refs if a not in anchors)
    assert not missing, missing


def test_no_reference_to_a_theory_document_outside_the_repository():
    bare = re.compile(r"(?<![/(\w])theory\.md|theory\.md §")
    hits = [str(p.relative_to(ROOT)) for p in _source_files()
            if p.name != "test_docs.py" and bare.search(p.read_text())]
    assert not hits, hits


def test_no_process_words():
    # (character classes keep the words themselves out of this file)
    words = re.compile(r"\biss[u]e\s*#?\d|\biss[u]e\d|\bsess[i]on\b|\biss[u]e(?:'s|s)?\b", re.I)
    hits = [str(p.relative_to(ROOT)) for p in _source_files()
            if words.search(p.read_text())]
    assert not hits, hits
    assert not list(ROOT.glob("docs/**/iss[u]e*"))


def _links(path: Path):
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("path", [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    for link in _links(path):
        if re.match(r"[a-z]+:", link):
            continue
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        assert file.exists(), f"{path.name}: broken link {link}"
        if anchor and file.suffix == ".md":
            assert anchor in heading_anchors(file), f"{path.name}: no section {link}"


def test_readme_is_a_landing_page_with_two_set_up_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 120
    setup = re.search(r"## Set-up.*?```bash\n(.*?)```", text, re.S)
    commands = [ln for ln in setup[1].splitlines() if ln.strip()]
    assert len(commands) == 2
    assert "critsym demo" in commands[0] and "pytest" in commands[1]


def test_every_guide_page_is_in_the_site_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert pages and all(page in nav for page in pages), sorted(p for p in pages if p not in nav)


def test_package_metadata():
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", critsym.__version__)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{critsym.__version__}"' in pyproject
    assert (ROOT / "critsym" / "py.typed").exists() and '"py.typed"' in pyproject
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert 'license = { text = "MIT" }' in pyproject
    assert (ROOT / "CHANGELOG.md").read_text().startswith("# Changelog")


def test_subpackages_are_attributes_after_import():
    code = ("import critsym\n"
            "print(critsym.shaping.__name__, critsym.finite_width.__name__,\n"
            "      critsym.parameterization.__name__)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["critsym.shaping", "critsym.finite_width",
                                "critsym.parameterization"]
    assert {"shaping", "finite_width", "parameterization"} <= set(dir(critsym))
    with pytest.raises(AttributeError, match="no_such_name"):
        critsym.no_such_name  # noqa: B018
