"""Pictures of a flow: DOT and Mermaid text, images through Graphviz, coloured by a run."""

from __future__ import annotations

import re
import shutil
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from taskloom import Flow, Parameter, task
from taskloom.caching import MemoryCacheStore
from taskloom.executors import LocalExecutor, LokyExecutor
from taskloom.journal import default_journal
from taskloom.progress import STATE_COLOURS
from taskloom.visualize import MissingRendererError, render, to_dot, to_mermaid

from ._helpers import as_task


@task
def fetch(day: int) -> int:
    return day


@task
def combine(first: int, second: int) -> int:
    return first + second


@task
def fail(x: int) -> int:
    raise ValueError("bad input")


@task
def after(x: int) -> int:
    return x


@task(cache_for=timedelta(hours=1))
def rates() -> float:
    return 1.5


@task(name='say "hi" <b>|x|</b> #1; #b; &amp;')
def odd() -> None:
    return None


def build() -> tuple[Flow, dict[str, Any]]:
    with Flow("pictures") as flow:
        n = Parameter("n", default=2)
        a = fetch(n)
        b = fetch(3)
        total = combine(a, second=b)
        failed = fail(total)
        blocked = after(failed)
        r = rates()
        quirky = odd()
        flow.set_dependencies(quirky, upstream_tasks=[r])
    return flow, {"n": n, "a": a, "b": b, "total": total, "failed": failed, "blocked": blocked,
                  "rates": r, "odd": quirky}


def _nodes(dot: str) -> dict[str, str]:
    return dict(re.findall(r"^  (t\d+) \[(.*)\];$", dot, re.M))


def test_dot_has_one_node_per_task_with_unique_ids_and_keyword_edges() -> None:
    flow, handles = build()
    dot = to_dot(flow)
    nodes = _nodes(dot)
    assert len(nodes) == len(flow.tasks) == 8
    labels = [re.search(r'label="((?:[^"\\]|\\.)*)"', attributes).group(1) for attributes in nodes.values()]  # type: ignore[union-attr]
    assert labels.count("fetch[0]") == labels.count("fetch[1]") == 1  # copies: two nodes, numbered
    assert 'shape=ellipse' in nodes["t0"]  # the parameter
    index = {t: i for i, t in enumerate(flow.tasks)}
    a, b, total = (index[as_task(handles[k])] for k in ("a", "b", "total"))
    assert f't{a} -> t{total} [label="first"];' in dot
    assert f't{b} -> t{total} [label="second"];' in dot
    r, quirky = index[as_task(handles["rates"])], index[as_task(handles["odd"])]
    assert f"t{r} -> t{quirky} [style=dashed];" in dot  # ordering only
    assert 'label="say \\"hi\\" <b>|x|</b> #1; #b; &amp;amp;"' in dot  # shown as it is


def test_mermaid_escapes_names_and_labels_edges() -> None:
    flow, handles = build()
    text = to_mermaid(flow)
    assert text.startswith("flowchart TD\n")
    assert '    t0(["n"])' in text
    assert '"say &quot;hi&quot; &lt;b&gt;|x|&lt;/b&gt; &num;1; &num;b; &amp;amp;"' in text
    assert '-->|"first"|' in text and '-->|"second"|' in text
    assert text.count(" -.-> ") == 1
    assert "classDef" not in text  # no run: no colours


def test_a_flow_state_colours_tasks_by_their_final_state() -> None:
    flow, handles = build()
    store = MemoryCacheStore()
    flow.run(executor=LocalExecutor(), cache_store=store, journal=False)
    state = flow.run(executor=LocalExecutor(), cache_store=store, journal=False)
    index = {t: i for i, t in enumerate(flow.tasks)}
    nodes = _nodes(to_dot(flow, state))
    failed = nodes[f"t{index[as_task(handles['failed'])]}"]
    assert f'color="{STATE_COLOURS["failed"]}"' in failed and "Failed" in failed
    assert "bad input" in failed  # the message, as a tooltip
    assert "TriggerFailed" in nodes[f"t{index[as_task(handles['blocked'])]}"]
    cached = nodes[f"t{index[as_task(handles['rates'])]}"]
    assert f'color="{STATE_COLOURS["cached"]}"' in cached
    mermaid = to_mermaid(flow, state)
    assert f"classDef failed fill:" in mermaid
    assert re.search(rf"class (t\d+,)*t{index[as_task(handles['failed'])]}(,t\d+)* failed", mermaid)
    assert re.search(rf"class (t\d+,)*t{index[as_task(handles['rates'])]}(,t\d+)* cached", mermaid)


def test_a_journal_record_of_a_loky_run_colours_the_picture(taskloom_home: Path) -> None:
    flow, handles = build()
    state = flow.run(executor=LokyExecutor(max_workers=2))
    record = default_journal().load(str(state.run_id))
    dot = flow.visualize(record)
    assert isinstance(dot, str)
    index = {t: i for i, t in enumerate(flow.tasks)}
    assert "Failed" in _nodes(dot)[f"t{index[as_task(handles['failed'])]}"]
    assert f"run {record.run_id}: Failed" in dot
    with Flow("other") as other:
        fetch(1)
    with pytest.raises(ValueError, match="cannot show this run on this flow"):
        to_dot(other, record)


def test_render_picks_the_format_from_the_suffix(tmp_path: Path) -> None:
    flow, _ = build()
    assert render(flow) == to_dot(flow)
    written = render(flow, None, tmp_path / "flow.mmd")
    assert written == (tmp_path / "flow.mmd").read_text() == to_mermaid(flow)
    flow.visualize(filename=tmp_path / "flow.gv")
    assert (tmp_path / "flow.gv").read_text() == to_dot(flow)
    with pytest.raises(ValueError, match="cannot tell the format"):
        render(flow, None, tmp_path / "flow.txt")
    with pytest.raises(ValueError, match="unknown format"):
        render(flow, format="jpeg")  # type: ignore[call-overload]


needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")


@needs_dot
def test_svg_png_and_pdf_through_graphviz(tmp_path: Path) -> None:
    pytest.importorskip("graphviz", reason="the graphviz package is not installed")
    flow, _ = build()
    state = flow.run(executor=LocalExecutor(), cache_store=MemoryCacheStore(), journal=False)
    svg = render(flow, state, format="svg")
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert svg.count('class="node"') == 8 and svg.count('class="edge"') == len(flow.edges)
    assert STATE_COLOURS["failed"] in svg
    png = flow.visualize(state, tmp_path / "flow.png")
    assert isinstance(png, bytes) and png.startswith(b"\x89PNG")
    assert (tmp_path / "flow.png").read_bytes() == png
    pdf = flow.visualize(state, tmp_path / "flow.pdf")
    assert isinstance(pdf, bytes) and pdf.startswith(b"%PDF-")
    assert (tmp_path / "flow.pdf").read_bytes() == pdf


def test_images_without_the_graphviz_package_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "graphviz", None)  # import graphviz fails
    flow, _ = build()
    with pytest.raises(MissingRendererError, match=r"pip install graphviz.*`dot` program"):
        render(flow, format="svg")
    assert to_mermaid(flow)  # text formats need nothing


def test_images_without_the_dot_program_say_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("graphviz", reason="the graphviz package is not installed")
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` there
    flow, _ = build()
    with pytest.raises(MissingRendererError, match="needs Graphviz's `dot` program on PATH"):
        render(flow, format="png")
