"""What the benchmark scripts share: command line, header, timing, medians, RSS sampling, and
the JSON file through which ``run_all.py`` collects their figures."""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

try:
    import psutil  # type: ignore[import-untyped, unused-ignore]
except ImportError:  # `nox -s bench` installs only taskloom: fall back to /proc
    psutil = None

__all__ = [
    "Figures",
    "RssSampler",
    "SPREAD_SUFFIXES",
    "Series",
    "finish",
    "fmt",
    "line",
    "load_text",
    "parse_args",
    "print_header",
    "put",
    "source_revision",
    "timed",
    "write_figures",
]

#: Figures a benchmark hands to ``run_all.py``: name -> value (None: not measured).
Figures = dict[str, float | None]


def parse_args(description: str, default_runs: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--runs", type=int, default=default_runs,
        help=f"timed runs per measurement, after a warm-up run (default {default_runs})",
    )
    parser.add_argument(
        "--quick", action="store_true",
        help="smoke mode: 1 timed run and small workloads (figures not comparable to targets)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    if args.quick:
        args.runs = 1
    return args


def load_text() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} CPUs"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def source_revision() -> str:
    """The commit of the checkout taskloom is imported from (``PYTHONPATH`` may name
    another worktree than this one, to compare two commits with the same benchmarks), and
    whether its src/ has uncommitted changes."""
    import taskloom

    root = Path(taskloom.__file__).resolve().parent.parent.parent  # <root>/src/taskloom
    if not (root / "src" / "taskloom").is_dir():
        return f"{Path(taskloom.__file__).parent} (not a checkout)"
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
            text=True, timeout=10, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True,
            text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    # A digest of the sources, so runs against a tree being edited can be told apart.
    digest = hashlib.sha256()
    for path in sorted((root / "src").rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    state = " + uncommitted changes in src/" if dirty else ""
    return f"git {head}{state} (src/*.py sha256 {digest.hexdigest()[:12]})"


def print_header(title: str) -> None:
    """Title, machine load and versions: what a reader needs to judge the figures."""
    print(f"== {title} ==")
    print(f"  {time.strftime('%Y-%m-%d %H:%M:%S')}  {load_text()}")
    versions = ", ".join(
        f"{d} {_version(d)}" for d in ("taskloom", "loky", "cloudpickle", "psutil")
    )
    print(f"  python {platform.python_version()} ({sys.executable}), {versions}")
    print(f"  taskloom source: {source_revision()}")
    print(f"  {platform.platform()}")
    sys.stdout.flush()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall seconds of one call of ``fn`` (after a full collection) and its return value."""
    gc.collect()
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


@dataclass
class Series:
    """Per-run values of one measurement; the figure is their median."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def spread(self, scale: float = 1.0, digits: int = 1) -> str:
        lo, hi = min(self.values) * scale, max(self.values) * scale
        if len(self.values) == 1:
            return ""
        return f" [{lo:,.{digits}f}..{hi:,.{digits}f}]"

    def show(self, scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
        return f"{self.median * scale:,.{digits}f}{unit}{self.spread(scale, digits)}"


def paired(a: Sequence[float], b: Sequence[float], op: Callable[[float, float], float]) -> Series:
    """``op`` of each run's pair of measurements (runs are interleaved, so pairs share noise)."""
    return Series([op(x, y) for x, y in zip(a, b, strict=True)])


#: A figure's run-to-run spread rides beside it in ``Figures``: ``KEY~min`` and ``KEY~max``
#: (the extremes of the runs its median comes from), for ``run_all.py --compare``.
SPREAD_SUFFIXES = ("~min", "~max")


def put(figures: Figures, key: str, series: Series, scale: float = 1.0) -> None:
    """``figures[key]``: the median of ``series`` times ``scale``, with its spread."""
    figures[key] = series.median * scale
    low, high = SPREAD_SUFFIXES
    figures[key + low] = min(series.values) * scale
    figures[key + high] = max(series.values) * scale


def line(text: str) -> None:
    """One derived figure, under the walls of the measurement it comes from."""
    print(f"    -> {text}")
    sys.stdout.flush()


def fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{unit}"


class RssSampler:
    """Samples this process's RSS every ``interval`` seconds in a thread; ``peak`` in bytes.

    Use as a context manager around the work to watch."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.peak = 0
        self.start_rss = 0
        self.samples = 0
        self._process = psutil.Process() if psutil is not None else None
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def _rss(self) -> int:
        if self._process is not None:
            rss: int = self._process.memory_info().rss
            return rss
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * self._page

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self._rss())
            self.samples += 1
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> RssSampler:
        self.start_rss = self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def write_figures(path: Path | None, figures: Figures) -> None:
    if path is not None:
        path.write_text(json.dumps(figures, indent=2, sort_keys=True))


def finish(path: Path | None, figures: Figures, failed: bool) -> None:
    """The end of a benchmark: the closing line, its figures to ``path``, and exit status 1
    if any measurement failed."""
    print(f"  done; {load_text()}")
    write_figures(path, figures)
    if failed:
        sys.exit(1)
