"""Shared helpers of the benchmarks: best-of timing and result rows.

A row is one measured comparison: critsym's time beside a baseline measured in the same run, their
ratio, and the goal it is held to (``None`` where the row only informs)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    bench: str
    case: str
    critsym_s: float
    baseline: str
    baseline_s: float
    goal: float | None = None  # ratio critsym / baseline must be <= goal
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.critsym_s / self.baseline_s

    @property
    def passed(self) -> bool | None:
        return None if self.goal is None else self.ratio <= self.goal

    def line(self) -> str:
        goal = "" if self.goal is None else f"  (goal <= {self.goal:g}x: " \
            f"{'met' if self.passed else 'NOT met'})"
        return (f"  {self.case:<46} {_fmt(self.critsym_s):>10}  vs {self.baseline} "
                f"{_fmt(self.baseline_s):>10}  = {self.ratio:7.2f}x{goal}"
                + (f"  [{self.note}]" if self.note else ""))


def _fmt(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def best(f, repeats: int = 5) -> float:
    """Minimum wall time of ``repeats`` calls (the machine may be shared)."""
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)


def save(name: str, rows: list[Row], extra: dict | None = None) -> Path:
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    data = {"rows": [dict(asdict(r), ratio=r.ratio, passed=r.passed) for r in rows]}
    if extra:
        data.update(extra)
    out.write_text(json.dumps(data, indent=1))
    return out
