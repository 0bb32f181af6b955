"""The package's layers: every import points down, except the few named here.

Each module of ``src/taskloom`` is read with ``ast`` (not imported), and each of its
imports of another taskloom module is checked: at module level and inside functions,
leaving out ``if TYPE_CHECKING:`` blocks (annotations only, never run). A module may import
from its own layer or from a layer below. An import up is allowed only if it is named in
``SANCTIONED`` with the reason, and only inside a function (run when called, never when
the module is imported). Module-level imports must also have no cycle.

The layers, bottom first. Where they differ from the first sketch (data, policies,
definitions, stores, engine, back ends, presentation, entry points), it is because the
imports say so:

- the engine is split around the back ends. ``attempt`` (one attempt, run in a worker) is
  below the executors, which call it; the scheduler is above them: it drives an executor
  through the contract in ``executors.base`` and makes ``LocalExecutor`` the default.
- ``plan`` is below ``flow``: it compiles a flow it takes as a duck, and ``Flow`` asks it
  for the order of its tasks.
- ``loader`` (a spec such as ``flows.py:etl`` -> a ``Flow``) is a definition, not an entry
  point: the journal records a flow's spec and ``resume`` loads it again.
- ``decide`` (skip propagation, then the trigger: the decision of one task) is a policy,
  next to the triggers it applies; the scheduler calls it.
- ``trace`` (what happened to one task) is plain data, below the journal and the
  scheduler, which share it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "taskloom"

#: The layers, bottom first. A module name ending in ".*" stands for every module under
#: that package (so the executors' modules need not be listed one by one).
LAYERS: list[tuple[str, list[str]]] = [
    ("data", ["errors", "states", "signals", "context", "edges", "_hashing", "_collector", "trace", "_text", "logging", "_tracebacks", "_secrets", "_run_name", "locations", "_interruptible"]),
    ("policies", ["triggers", "cache_validators", "decide", "mapped"]),
    # "tasks.*": ready-made tasks (operators' GetItem, Add...; case, merge...), defined with Task.
    ("definitions", ["handlers", "notifications", "task", "parameters", "plan", "schedules", "flow_edit", "flow", "mapping", "loader", "tasks", "tasks.*"]),
    ("stores", ["_home", "_lockholders", "_process", "_sqlite", "caching", "journal", "serializers", "results"]),
    ("worker", ["checkpoint", "attempt"]),
    ("back ends", ["executors", "executors.*"]),
    ("engine", ["_run_args", "recording", "runner", "mapping_run", "resume"]),
    ("presentation", ["progress", "_runview", "_timeline", "_report_html", "visualize", "report"]),
    ("entry points", ["cli", "__main__", "migrate", "_cst_edits", "_prefect_names", ""]),  # "": the package itself (__init__.py)
]

#: The imports that point up, each made inside a function, and why.
SANCTIONED: dict[tuple[str, str], str] = {
    ("flow", "runner"): (
        "Flow.run is a façade over the scheduler, as in Prefect 1: the way users start a run"
    ),
    ("flow", "visualize"): "Flow.visualize draws the flow: a convenience over visualize.render",
    ("runner", "progress"): (
        "run_flow(progress=True) builds progress.default_progress(); the scheduler itself "
        "only knows the RunObserver protocol (as a type)"
    ),
}


def _name(path: Path) -> str:
    """The module's name relative to the package: "flow", "executors.loky", "" for the package."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _layer(module: str) -> int:
    for rank, (_, members) in enumerate(LAYERS):
        for member in members:
            if module == member or (member.endswith(".*") and module.startswith(member[:-1])):
                return rank
    raise AssertionError(f"module taskloom.{module} has no layer: add it to LAYERS in {__file__}")


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    lazy: bool  # inside a function: runs when called, not when the module is imported


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom | ast.Import) -> Iterator[str]:
    """The taskloom modules an import statement names (relative to the package)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name == "taskloom" or alias.name.startswith("taskloom."):
                yield alias.name.removeprefix("taskloom").removeprefix(".")
        return
    if node.level == 0:
        if node.module is None or not (node.module == "taskloom" or node.module.startswith("taskloom.")):
            return
        base = node.module.removeprefix("taskloom").removeprefix(".")
    else:
        package = importer.split(".") if is_package else importer.split(".")[:-1]
        package = [p for p in package if p]
        if node.level > 1:
            package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    for alias in node.names:
        candidate = f"{base}.{alias.name}" if base else alias.name
        yield candidate if candidate in MODULES else base


def _imports(module: str) -> list[Import]:
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for statement in node.orelse:
                visit(statement, lazy)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for imported in _resolve(module, path.name == "__init__.py", node):
                if imported != module:
                    found.append(Import(module, imported, node.lineno, lazy))
            return
        inner = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, False)
    return found


IMPORTS: list[Import] = [imp for module in MODULES for imp in _imports(module)]


def _where(imp: Import) -> str:
    return f"{MODULES[imp.importer].relative_to(SRC.parent)}:{imp.line}"


def _show(module: str) -> str:
    return f"taskloom.{module}" if module else "taskloom"


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        _layer(module)


def test_imports_point_down_except_the_sanctioned_lazy_calls() -> None:
    wrong = []
    for imp in IMPORTS:
        down = _layer(imp.imported) <= _layer(imp.importer)
        sanctioned = (imp.importer, imp.imported) in SANCTIONED
        if down:
            continue
        if not sanctioned:
            wrong.append(
                f"{_where(imp)}: {_show(imp.importer)} ({LAYERS[_layer(imp.importer)][0]}) imports "
                f"{_show(imp.imported)} ({LAYERS[_layer(imp.imported)][0]}), a layer up"
            )
        elif not imp.lazy:
            wrong.append(
                f"{_where(imp)}: {_show(imp.importer)} imports {_show(imp.imported)} at module "
                "level; a sanctioned upward import must be made inside the function that needs it"
            )
    assert not wrong, "\n".join(wrong)


def test_every_sanctioned_exception_is_still_needed() -> None:
    used = {(imp.importer, imp.imported) for imp in IMPORTS}
    stale = [pair for pair in SANCTIONED if pair not in used]
    assert not stale, f"no longer imported, remove them from SANCTIONED: {stale}"
    downward = [pair for pair in SANCTIONED if _layer(pair[1]) <= _layer(pair[0])]
    assert not downward, f"these point down now, remove them from SANCTIONED: {downward}"


def _module_level_graph() -> dict[str, set[str]]:
    """Who imports whom when a module is imported. Importing ``executors.base`` from
    outside the package runs ``executors/__init__.py`` first, so that counts as an edge
    too; the top package ``taskloom`` is left out (every module is inside it)."""
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for imp in IMPORTS:
        if imp.lazy:
            continue
        graph[imp.importer].add(imp.imported)
        parts = imp.imported.split(".")
        for n in range(1, len(parts)):
            parent = ".".join(parts[:n])
            if imp.importer != parent and not imp.importer.startswith(parent + "."):
                graph[imp.importer].add(parent)
    return graph


def test_no_cycles_among_module_level_imports() -> None:
    graph = _module_level_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[str] = []

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for nxt in sorted(graph[module]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                cycles.append(" -> ".join(_show(m) for m in cycle))
            elif nxt not in state:
                walk(nxt, path + [nxt])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
    assert not cycles, "\n".join(cycles)


def test_states_is_a_leaf() -> None:
    """states.py imports nothing of taskloom, not even for annotations: every module may
    use it, and it knows no task, flow or run."""
    tree = ast.parse(MODULES["states"].read_text(encoding="utf-8"))
    imports = [
        node for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("taskloom"))
    ]
    assert not imports, [ast.unparse(node) for node in imports]


@pytest.mark.parametrize(
    ("module", "imported", "lazy"),
    [
        ("flow", "runner", True),
        ("runner", "executors.base", False),
        ("executors.local", "attempt", False),
        ("signals", "states", False),
        ("task", "context", True),
        ("plan", "task", False),
    ],
)
def test_the_import_reader_sees_known_imports(module: str, imported: str, lazy: bool) -> None:
    """The reader itself: it finds imports we know are there, relative and absolute."""
    assert Import(module, imported, 0, lazy) in [
        Import(i.importer, i.imported, 0, i.lazy) for i in IMPORTS
    ]


def test_the_import_reader_leaves_out_type_checking_blocks() -> None:
    # flow.py imports the journal (a store, a layer up) for annotations only.
    assert not any(i.importer == "flow" and i.imported == "journal" for i in IMPORTS)
