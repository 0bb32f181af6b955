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


MAPPED = """\
from taskloom import unmapped


@task
def picky(ok_file: str, x: int) -> int:
    record(LOG, str(x))
    if x % 2 and not os.path.exists(ok_file):
        raise ValueError(f"{x} is odd")
    return x


@task
def total(xs: list[int]) -> int:
    return sum(xs)


with Flow("mapped") as flow:
    total(picky.map(unmapped(OK), [0, 1, 2, 3, 4]))
"""


def test_show_counts_a_mapped_tasks_children_and_resume_runs_the_failed_ones(
    tmp_path: Path, taskloom_home: Path
) -> None:
    log, ok = tmp_path / "log", tmp_path / "ok"
    flows = write_flow(tmp_path / "flows.py", "import os\n" + MAPPED, LOG=str(log), OK=str(ok))
    ran = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local", "--no-progress")
    assert ran.returncode == 1, describe(ran)
    assert "5 children: 3 Success, 2 Failed" in ran.stdout  # the run's own table says so too
    rid = run_id(ran.stdout)
    shown = taskloom(taskloom_home, "show", rid)
    assert shown.returncode == 0, describe(shown)
    rows = [row for row in shown.stdout.splitlines() if row.startswith(("picky", "total", "  picky"))]
    assert len(rows) == 2  # one line for the mapped task, one for the reduce
    assert "Mapped" in rows[0] and "5 children: 3 Success, 2 Failed" in rows[0]
    listed = taskloom(taskloom_home, "show", rid, "--children")
    children = [row.split() for row in listed.stdout.splitlines() if row.startswith("  picky[")]
    assert [(c[0], c[1]) for c in children] == [
        ("picky[0]", "Success"), ("picky[1]", "Failed"), ("picky[2]", "Success"),
        ("picky[3]", "Failed"), ("picky[4]", "Success"),
    ]  # fmt: skip
    ok.touch()
    log.unlink()
    resumed = taskloom(taskloom_home, "resume", rid, "--no-progress")
    assert resumed.returncode == 0, describe(resumed)
    assert sorted(log.read_text().split()) == ["1", "3"]


COPIES = """\
@task
def parse(name: str) -> int:
    return len(name)


@task
def total(xs: list[int]) -> int:
    return sum(xs)


with Flow("copies") as flow:
    total([parse("a"), parse("bb"), parse("ccc")])
"""


def test_copies_of_a_task_are_numbered_wherever_tasks_are_named(tmp_path: Path, taskloom_home: Path) -> None:
    flows = write_flow(tmp_path / "flows.py", COPIES)
    ran = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local", "--no-progress")
    assert ran.returncode == 0, describe(ran)
    names = [row.split()[0] for row in ran.stdout.splitlines() if row.startswith(("parse", "total"))]
    assert names == ["parse[0]", "parse[1]", "parse[2]", "total"]
    shown = taskloom(taskloom_home, "show", run_id(ran.stdout), "--timeline")
    assert shown.returncode == 0, describe(shown)
    for name in ("parse[0]", "parse[1]", "parse[2]"):
        assert shown.stdout.count(name) >= 2, shown.stdout  # the table and the timeline
    picture = taskloom(taskloom_home, "visualize", f"{flows}:flow")
    assert 'label="parse[1]"' in picture.stdout
