"""Figures of two benchmark runs side by side: what ``run_all.py --compare FILE`` prints.

A run's JSON (``run_all.py --json``) holds ``meta`` (when, which source, the machine's load)
and ``figures`` (name -> median), each figure measured over several runs with its spread
beside it (``NAME~min``, ``NAME~max``: see ``_harness.put``). A change counts only when it
leaves the noise: the two runs' [min..max] ranges do not overlap; an instruction count
(``bench_instructions.py``), which has no spread, when it moved by more than 1%. Lower is
better for every figure but speedups (``speedup`` in the name) and throughputs.

    python benchmarks/compare.py OLD.json NEW.json      (or run_all.py --compare OLD.json)
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _harness as h

__all__ = ["Row", "compare", "load", "print_comparison"]

LOW, HIGH = h.SPREAD_SUFFIXES


def load(path: Path) -> tuple[dict[str, Any], h.Figures]:
    """A run's ``meta`` and ``figures`` (a bare figures mapping, as a benchmark script's
    ``--json`` writes it, also loads, with empty meta)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SystemExit(f"--compare: cannot read {path}: {error}") from None
    if not isinstance(data, dict):
        raise SystemExit(f"--compare: {path} is not a benchmark JSON (an object expected)")
    if "figures" in data:
        return dict(data.get("meta") or {}), dict(data["figures"])
    return {}, data


def higher_is_better(name: str) -> bool:
    return "speedup" in name


#: How far an instruction count (``bench_instructions.py``: one measurement, no spread,
#: repeating to about 0.3%) must move to count as a change.
EXACT_TOLERANCE = 0.01


def exact(name: str) -> bool:
    """Whether a figure is an instruction count, judged by ``EXACT_TOLERANCE``, not a spread."""
    return name.endswith("instructions_per_task")


@dataclass(frozen=True)
class Row:
    name: str
    old: float | None
    new: float | None
    old_range: tuple[float, float] | None
    new_range: tuple[float, float] | None

    @property
    def change(self) -> float | None:
        """new / old - 1 (None unless both were measured and old is not 0)."""
        if self.old is None or self.new is None or self.old == 0:
            return None
        return self.new / self.old - 1

    @property
    def verdict(self) -> str:
        if self.old is None or self.new is None:
            return "new" if self.old is None and self.new is not None else "gone"
        change = self.change
        if exact(self.name) and change is not None:
            if abs(change) <= EXACT_TOLERANCE:
                return f"same (within {EXACT_TOLERANCE:.0%}: a count)"
            return "SLOWER" if change > 0 else "better"
        if (self.old_range is None or self.new_range is None
                or not (_spread(self.old_range) and _spread(self.new_range))):
            return "(no spread: one run)"
        (old_lo, old_hi), (new_lo, new_hi) = self.old_range, self.new_range
        if new_lo > old_hi:
            return "better" if higher_is_better(self.name) else "SLOWER"
        if new_hi < old_lo:
            return "SLOWER" if higher_is_better(self.name) else "better"
        return "same (within spread)"


def _spread(r: tuple[float, float]) -> bool:
    """Whether a range says anything about noise (one run gives min == max)."""
    return r[0] != r[1]


def _range(figures: h.Figures, name: str) -> tuple[float, float] | None:
    lo, hi = figures.get(name + LOW), figures.get(name + HIGH)
    return None if lo is None or hi is None else (lo, hi)


def compare(old: h.Figures, new: h.Figures) -> list[Row]:
    """One row per figure in either run (their spreads are not rows of their own)."""
    names = sorted(
        n for n in set(old) | set(new) if not n.endswith(h.SPREAD_SUFFIXES)
    )
    return [
        Row(n, old.get(n), new.get(n), _range(old, n), _range(new, n))
        for n in names
        if old.get(n) is not None or new.get(n) is not None
    ]


def _cell(value: float | None, spread: tuple[float, float] | None) -> str:
    if value is None:
        return "n/a"
    text = f"{value:,.2f}"
    return text if spread is None else f"{text} [{spread[0]:,.2f}..{spread[1]:,.2f}]"


def print_comparison(rows: list[Row], old_meta: dict[str, Any], label: str) -> int:
    """Print the table; returns how many figures got worse beyond their spread."""
    print(f"\n== compared with {label} ==")
    for key in ("date", "source", "load"):
        if key in old_meta:
            print(f"  earlier {key}: {old_meta[key]}")
    table = [("figure", "earlier [min..max]", "now [min..max]", "change", "verdict")]
    for r in rows:
        change = "" if r.change is None else f"{r.change:+.1%}"
        table.append((r.name, _cell(r.old, r.old_range), _cell(r.new, r.new_range), change,
                      r.verdict))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for n, row in enumerate(table):
        print("  " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  " + "-+-".join("-" * w for w in widths))
    slower = [r.name for r in rows if r.verdict == "SLOWER"]
    print(f"  {len(slower)} figure(s) worse beyond the run-to-run spread"
          + (f": {', '.join(slower)}" if slower else ""))
    return len(slower)


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit("usage: python benchmarks/compare.py OLD.json NEW.json")
    old_meta, old = load(Path(sys.argv[1]))
    _, new = load(Path(sys.argv[2]))
    print_comparison(compare(old, new), old_meta, sys.argv[1])


if __name__ == "__main__":
    main()
