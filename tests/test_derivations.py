"""derivations/ is current, and its LaTeX compiles (with a real engine when one is installed,
otherwise a structural check)."""

import shutil
import subprocess
from pathlib import Path

import pytest

import critsym as cs
from critsym.derivations import documents

ROOT = Path(__file__).resolve().parents[1]


def test_derivations_are_current():
    docs = documents()
    d = ROOT / "derivations"
    on_disk = {p.name for p in d.glob("*.md")} | {p.name for p in d.glob("*.tex")}
    on_disk.discard("README.md")
    assert on_disk == set(docs), "run `python -m critsym.derivations` and commit the result"
    for name, text in docs.items():
        assert (d / name).read_text() == text, f"{name} is stale: run python -m critsym.derivations"


def _structural(tex: str):
    assert tex.startswith("\\begin{align}") and tex.rstrip().endswith("\\end{align}")
    depth = 0
    for ch in tex:
        depth += ch == "{"
        depth -= ch == "}"
        assert depth >= 0
    assert depth == 0
    assert tex.count("\\left") == tex.count("\\right")
    for must in ("K^{l+1}", "\\chi_J^{l}", "\\mathcal{J}^{l_0,l}", "K_{12}^{l+1}"):
        assert must in tex


def test_latex_structure():
    for name, text in documents().items():
        if name.endswith(".tex"):
            _structural(text)


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="no LaTeX engine installed (.ci/run installs texlive-latex-base)")
def test_latex_compiles(tmp_path):
    body = "\n".join(
        f"\\section*{{{name.replace('_', ' ')}}}\n{text}"
        for name, text in documents().items() if name.endswith(".tex")
    )
    src = ("\\documentclass{article}\\usepackage{amsmath,amssymb}"
           "\\usepackage[margin=1cm,landscape]{geometry}\\allowdisplaybreaks"
           "\\begin{document}\\tiny\n" + body + "\n\\end{document}\n")
    (tmp_path / "all.tex").write_text(src)
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "all.tex"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:]
    assert (tmp_path / "all.pdf").stat().st_size > 1000


def test_theory_latex_notation():
    tex = cs.derive(cs.mlp_block("erf")).latex()
    assert "\\mathbb{E}_{z\\sim\\mathcal{N}(0,K^{l})}" in tex
    assert "\\sigma_{w}^{2}" in tex and "\\operatorname{asin}" in tex
