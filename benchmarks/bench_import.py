"""Start-up cost: ``import critsym`` and ``critsym --help`` against ``import numpy, sympy``.

    PYTHONPATH=. python benchmarks/bench_import.py [--repeats 7]

Each measurement is a fresh interpreter; the best of ``--repeats`` (interleaved, so that machine
load hits both alike).  The import rows time the import statement inside the interpreter; the
command-line row times the whole process (``python -m critsym --help``) against a process that
only imports numpy and sympy.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import Row, save

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
TIMED = "import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"


def _inner(stmt: str) -> float:
    out = subprocess.run([sys.executable, "-c", TIMED.format(stmt=stmt)], capture_output=True,
                         text=True, check=True, env=ENV, cwd=ROOT)
    return float(out.stdout.strip().splitlines()[-1])


def _process(args: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, *args], capture_output=True, check=True, env=ENV, cwd=ROOT)
    return time.perf_counter() - t


def run(repeats: int = 7) -> list[Row]:
    a, b, c, d = [], [], [], []
    for _ in range(repeats):
        a.append(_inner("import critsym"))
        b.append(_inner("import numpy, sympy"))
        c.append(_process(["-m", "critsym", "--help"]))
        d.append(_process(["-c", "import numpy, sympy"]))
    return [Row("import", "import critsym", min(a), "import numpy, sympy", min(b), 2.0),
            Row("import", "critsym --help (whole process)", min(c),
                "python -c 'import numpy, sympy'", min(d), 2.0)]


def main(argv=None) -> list[Row]:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args(argv)
    rows = run(a.repeats)
    print("== start-up")
    for r in rows:
        print(r.line())
    save("import", rows)
    return rows


if __name__ == "__main__":
    main()
