"""`taskloom visualize`, `taskloom report` and `taskloom show --timeline` on real runs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from ._cli import describe, run_id, taskloom, write_flow
from .test_cli import BASIC, FAILING


def test_visualize_writes_dot_and_mermaid_with_edge_names(tmp_path: Path, taskloom_home: Path) -> None:
    flows = write_flow(tmp_path / "flows.py", BASIC, LOG=str(tmp_path / "log"))
    dot = taskloom(taskloom_home, "visualize", f"{flows}:flow")
    assert dot.returncode == 0, describe(dot)
    assert dot.stdout.startswith("digraph")
    assert "t0 -> t1 [label=\"x\"]" in dot.stdout and 't1 [label="double"]' in dot.stdout
    mermaid = taskloom(taskloom_home, "visualize", f"{flows}:flow", "--format", "mermaid")
    assert mermaid.returncode == 0, describe(mermaid)
    assert mermaid.stdout.startswith("flowchart") and 't1 -->|"y"| t2' in mermaid.stdout
    binary = taskloom(taskloom_home, "visualize", f"{flows}:flow", "--format", "png")
    assert binary.returncode == 2 and "-o FILE" in binary.stderr


def test_visualize_colours_tasks_by_a_run(tmp_path: Path, taskloom_home: Path) -> None:
    flows = write_flow(tmp_path / "flows.py", FAILING)
    rid = run_id(taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local").stdout)
    plain = taskloom(taskloom_home, "visualize", f"{flows}:flow").stdout
    coloured = taskloom(taskloom_home, "visualize", f"{flows}:flow", "--run", rid)
    assert coloured.returncode == 0, describe(coloured)
    assert coloured.stdout != plain and "Failed" in coloured.stdout and "TriggerFailed" in coloured.stdout
    if shutil.which("dot") is not None:
        svg = tmp_path / "flow.svg"
        drawn = taskloom(taskloom_home, "visualize", f"{flows}:flow", "--run", rid, "-o", str(svg))
        assert drawn.returncode == 0, describe(drawn)
        assert svg.read_text().lstrip().startswith(("<?xml", "<svg"))


def test_report_writes_one_self_contained_html_file(tmp_path: Path, taskloom_home: Path) -> None:
    flows = write_flow(tmp_path / "flows.py", BASIC, LOG=str(tmp_path / "log"))
    rid = run_id(taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local").stdout)
    page = tmp_path / "report.html"
    made = taskloom(taskloom_home, "report", rid, "-o", str(page))
    assert made.returncode == 0, describe(made)
    html = page.read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and rid in html
    # opens without a network: nothing is fetched (an SVG namespace URL is not a fetch)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<link" not in html and "@import" not in html
    assert "critical path" in html.lower()


def test_show_timeline_draws_a_bar_per_task(tmp_path: Path, taskloom_home: Path) -> None:
    flows = write_flow(tmp_path / "flows.py", BASIC, LOG=str(tmp_path / "log"))
    rid = run_id(taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local").stdout)
    shown = taskloom(taskloom_home, "show", rid, "--timeline")
    assert shown.returncode == 0, describe(shown)
    timeline = shown.stdout[shown.stdout.index("TASK ") :]
    for name in ("double", "describe"):
        assert sum(name in line and ("#" in line or "█" in line) for line in timeline.splitlines()) >= 1
