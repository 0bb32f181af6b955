"""``taskloom migrate``: rewrite a Prefect Core 1.x flow file for taskloom.

::

    from taskloom.migrate import migrate_source

    done = migrate_source(open("flow.py").read(), "flow.py")
    print(done.code)                       # the rewritten text
    for left in done.leftovers:            # what it could not translate
        print(f"flow.py:{left.line}: {left.what}")

What it does, on a concrete syntax tree (libcst: the file's comments and formatting stay
as they are, except on the lines it changes):

- imports of Prefect names get taskloom's (``_NAMES``: ``from prefect import Flow, task``,
  ``prefect.engine.state`` -> ``taskloom.states``, ``prefect.engine.signals`` ->
  ``taskloom.signals``, triggers, control flow, secrets, executors, results, schedules,
  ``get_logger``, ...); a name whose taskloom spelling differs is imported under the
  file's own name (``from taskloom.tasks.secrets import Secret as SecretBase``), so the
  code that uses it does not change. ``import prefect`` becomes ``import taskloom`` and
  every ``prefect.x.y`` in the code its taskloom path.
- ``LocalDaskExecutor(scheduler="processes", num_workers=n)`` becomes
  ``LokyExecutor(max_workers=n)``, and with ``"threads"`` (Prefect's default)
  ``ThreadExecutor(max_workers=n)``; ``DaskExecutor(cluster_kwargs={...})`` passes the
  cluster's keywords directly, as taskloom's does.
- deployment-only code, which taskloom cannot honour (it runs flows without a server), is
  removed with a comment saying what was removed: the ``storage=``, ``run_config=`` and
  ``environment=`` keywords of ``Flow(...)``, statements ``flow.register(...)``,
  ``flow.run_agent(...)``, ``flow.storage = ...``, ``flow.run_config = ...``, calls of
  ``prefect.artifacts`` functions, and the imports only they used.
- everything else that still refers to Prefect (``Client``, ``prefect.config``, ``tags``,
  the task library, ...) is left as it is and reported, with its line, as a ``Leftover``.

The rewrite is a pure function of the text (``migrate_source``); the command line
(``taskloom.cli``) reads and writes the files. It needs libcst, an optional dependency:
``pip install -e ".[migrate]"`` from taskloom's clone.

Layer: an entry point's helper (it imports nothing of taskloom's engine).
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, cast

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from .errors import TaskloomError

__all__ = ["Leftover", "MigrateError", "Migration", "migrate_source", "translate"]

_N = TypeVar("_N", bound=cst.CSTNode)

#: What a comment added by the rewrite starts with.
NOTE = "# taskloom migrate:"


def _spec() -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """``_MODULES`` and ``_NAMES``, from a compact table: for each Prefect module, the
    taskloom module it becomes and its names there (``"old=new"`` for a renamed one)."""
    states = (
        "State Pending Scheduled Paused Resume Retrying Running Finished Looped Success "
        "Cached Mapped Cancelled Failed TimedOut TriggerFailed ValidationFailed Skipped"
    )
    signals = "ENDRUN FAIL LOOP TRIGGERFAIL VALIDATIONFAIL SUCCESS RETRY SKIP PAUSE"
    triggers = (
        "all_finished always_run manual_only all_successful all_failed any_successful "
        "any_failed some_failed some_successful not_all_skipped"
    )
    validators = (
        "never_use duration_only all_inputs all_parameters partial_parameters_only "
        "partial_inputs_only"
    )
    control = "case merge switch ifelse FilterTask"
    executors = "LocalExecutor DaskExecutor Executor"
    table: dict[str, tuple[str, str]] = {
        "prefect": ("taskloom", "Flow Task Parameter task context unmapped flatten apply_map case"),
        "prefect.core": ("taskloom", "Flow Task Parameter Edge"),
        "prefect.core.flow": ("taskloom", "Flow"),
        "prefect.core.task": ("taskloom", "Task"),
        "prefect.core.parameter": ("taskloom", "Parameter"),
        "prefect.core.edge": ("taskloom", "Edge"),
        "prefect.engine": ("taskloom", "signals state=states cache_validators"),
        "prefect.engine.state": ("taskloom.states", states),
        "prefect.engine.signals": ("taskloom.signals", signals),
        "prefect.triggers": ("taskloom.triggers", triggers),
        "prefect.engine.cache_validators": ("taskloom.cache_validators", validators),
        "prefect.tasks.control_flow": ("taskloom.tasks.control_flow", control),
        "prefect.tasks.control_flow.conditional": ("taskloom.tasks.control_flow", "merge switch ifelse"),
        "prefect.tasks.control_flow.case": ("taskloom.tasks.control_flow", "case"),
        "prefect.tasks.control_flow.filter": ("taskloom.tasks.control_flow", "FilterTask"),
        "prefect.tasks": ("taskloom.tasks", "control_flow secrets"),
        "prefect.tasks.secrets": ("taskloom.tasks.secrets", "PrefectSecret SecretBase=Secret"),
        "prefect.executors": ("taskloom.executors", executors),
        "prefect.engine.executors": ("taskloom.executors", executors),
        "prefect.engine.result": ("taskloom.results", "Result"),
        "prefect.engine.results": ("taskloom.results", "LocalResult"),
        "prefect.engine.serializers": ("taskloom.results", "PickleSerializer JSONSerializer"),
        "prefect.schedules": ("taskloom.schedules", "IntervalSchedule CronSchedule"),
        "prefect.utilities.logging": ("taskloom", "get_logger"),
        "prefect.utilities.edges": ("taskloom", "unmapped flatten"),
        "prefect.utilities.tasks": ("taskloom", "task apply_map"),
        "prefect.utilities.notifications": ("taskloom.notifications", "slack_notifier"),
    }
    modules = {old: new for old, (new, _) in table.items()}
    names = {
        old: {
            before: f"{new}.{after or before}"
            for before, _, after in (name.partition("=") for name in spelled.split())
        }
        for old, (new, spelled) in table.items()
    }
    return modules, names


#: Prefect modules -> taskloom's; for each Prefect module, its names -> taskloom paths.
_MODULES, _NAMES = _spec()

#: Prefect modules whose every use is deployment-only: their imports go when nothing is
#: left that uses them.
_DEPLOYMENT_MODULES = ("prefect.storage", "prefect.run_configs", "prefect.environments", "prefect.artifacts")
#: Keywords of ``Flow(...)`` that only a Prefect server or agent honours.
_DEPLOYMENT_KEYWORDS = ("storage", "run_config", "environment")
#: Methods of a flow that only a Prefect server or agent honours (as statements).
_DEPLOYMENT_METHODS = ("register", "run_agent", "deploy")
_DASK_LEFT = ("cluster_class", "adapt_kwargs", "client_kwargs", "debug", "performance_report_path")
_LOCAL_DASK = "prefect.executors.LocalDaskExecutor"


def translate(path: str) -> str | None:
    """The taskloom path of a Prefect dotted path, or None when taskloom has no equivalent.

    >>> translate("prefect.engine.state.Success"), translate("prefect.context.get")
    ('taskloom.states.Success', 'taskloom.context.get')
    >>> translate("prefect.config.flows") is None
    True
    """
    path = path.replace("prefect.engine.executors.", "prefect.executors.")
    parts = path.split(".")
    # A name of a module first, the longest module first (`prefect.tasks.control_flow.case`
    # is the function `case`, though a module of that name exists too).
    for end in range(len(parts) - 1, 0, -1):
        target = _NAMES.get(".".join(parts[:end]), {}).get(parts[end])
        if target is not None:
            return ".".join([target, *parts[end + 1 :]])
    return _MODULES.get(path)


def _is_module(path: str) -> bool:
    """Whether a Prefect path is a module that taskloom has (its name does not win)."""
    return path in _MODULES and translate(path) == _MODULES[path]


def _is_deployment(path: str) -> bool:
    return any(path == m or path.startswith(m + ".") for m in _DEPLOYMENT_MODULES)


@dataclass(frozen=True)
class Leftover:
    """A construct the rewrite left as it is: its line (in the original file) and why."""

    line: int
    what: str


@dataclass(frozen=True)
class Migration:
    """The result of ``migrate_source``.

    Attributes:
        original: the text given.
        code: the rewritten text (``original`` when nothing changed).
        leftovers: what still needs a human, by line.
        removed: what was removed as deployment-only, by line.
    """

    original: str
    code: str
    leftovers: list[Leftover] = field(default_factory=list)
    removed: list[Leftover] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether the rewrite changed the text."""
        return self.code != self.original

    def diff(self, path: str) -> str:
        """The change as a unified diff of ``path`` (empty when nothing changed)."""
        return "".join(difflib.unified_diff(
            self.original.splitlines(keepends=True), self.code.splitlines(keepends=True),
            fromfile=path, tofile=path,
        ))


class MigrateError(TaskloomError, ValueError):
    """A file that cannot be migrated: it does not parse. Names the file and line."""


@dataclass
class _Binding:
    """A name the file binds by importing Prefect: what it refers to, where."""

    local: str
    path: str  # the Prefect dotted path it refers to
    line: int
    is_module: bool  # bound by `import prefect...`: a chain root


def _dotted(node: cst.BaseExpression) -> str | None:
    """``a.b.c`` for a chain of names and attributes, else None."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        inner = _dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr.value}"
    return None


def _expr(dotted: str) -> cst.BaseExpression:
    """The expression ``a.b.c``."""
    first, *rest = dotted.split(".")
    expr: cst.BaseExpression = cst.Name(first)
    for part in rest:
        expr = cst.Attribute(value=expr, attr=cst.Name(part))
    return expr


def _import_path(node: cst.ImportFrom) -> str:
    module = node.module
    return "" if module is None else (_dotted(module) or "")


def _note_lines(notes: Iterable[str]) -> list[cst.EmptyLine]:
    return [cst.EmptyLine(indent=True, comment=cst.Comment(f"{NOTE} {note}")) for note in notes]


def _short(code: str) -> str:
    """One line of code for a comment: the first line, cut to 60 characters."""
    lines = code.strip().splitlines() or [""]
    text = lines[0] + (" ..." if len(lines) > 1 else "")
    return text if len(text) <= 60 else text[:57] + "..."


class _Statements(cst.CSTTransformer):
    """Comments on statements, and statements removed with a comment, for both passes.

    A statement may collect notes while its parts are visited (``note``); they become
    comment lines above it. A statement removed (``removed``) becomes a ``pass`` line with
    its comment until its block is left: there it is dropped and its comment moved above
    the next statement, unless it was alone in its block."""

    def __init__(self) -> None:
        super().__init__()
        self._notes: list[list[str]] = []
        self._placeholders: set[int] = set()

    def note(self, text: str) -> None:
        if self._notes:
            self._notes[-1].append(text)

    def removed(self, original: cst.CSTNode, why: str) -> cst.SimpleStatementLine:
        code = cst.Module(body=[]).code_for_node(original)
        comment = f"{NOTE} removed `{_short(code)}` ({why})"
        leading = original.leading_lines if isinstance(original, cst.SimpleStatementLine) else ()
        line = cst.SimpleStatementLine(
            body=[cst.Pass()],
            leading_lines=leading,
            trailing_whitespace=cst.TrailingWhitespace(
                whitespace=cst.SimpleWhitespace("  "), comment=cst.Comment(comment)
            ),
        )
        self._placeholders.add(id(line))
        return line

    def on_visit(self, node: cst.CSTNode) -> bool:
        if isinstance(node, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
            self._notes.append([])
        return super().on_visit(node)

    def on_leave(
        self, original_node: _N, updated_node: _N
    ) -> _N | cst.RemovalSentinel | cst.FlattenSentinel[_N]:
        result = super().on_leave(original_node, updated_node)
        if isinstance(original_node, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
            notes = self._notes.pop()
            if notes and isinstance(result, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
                lines = [*result.leading_lines, *_note_lines(notes)]
                return cast(_N, result.with_changes(leading_lines=lines))
        if isinstance(result, (cst.Module, cst.IndentedBlock)):
            body, trailing = self._settle(result.body)
            return cast(_N, result.with_changes(body=body, footer=[*trailing, *result.footer]))
        return result

    def _settle(
        self, body: Sequence[cst.BaseStatement]
    ) -> tuple[list[cst.BaseStatement], list[cst.EmptyLine]]:
        """Drop the placeholders of removed statements that are not alone in ``body``,
        moving their comments above the next statement, or below the last one (the
        block's footer, returned second)."""
        kept = [s for s in body if id(s) not in self._placeholders]
        if not kept or len(kept) == len(body):
            return list(body), []
        out: list[cst.BaseStatement] = []
        carried: list[cst.EmptyLine] = []
        for statement in body:
            if id(statement) in self._placeholders and isinstance(statement, cst.SimpleStatementLine):
                comment = statement.trailing_whitespace.comment
                carried.extend(statement.leading_lines)
                if comment is not None:
                    carried.append(cst.EmptyLine(indent=True, comment=comment))
                continue
            if carried and isinstance(statement, (cst.SimpleStatementLine, cst.BaseCompoundStatement)):
                statement = statement.with_changes(leading_lines=[*carried, *statement.leading_lines])
                carried = []
            out.append(statement)
        return out, carried


class _Rewriter(_Statements):
    """Pass one: everything but the imports (see the module docstring)."""

    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, bindings: dict[str, _Binding]) -> None:
        super().__init__()
        self.bindings = bindings
        self.leftovers: list[Leftover] = []
        self.removed_notes: list[Leftover] = []
        #: Names a `LocalDaskExecutor` call site now needs from taskloom.executors.
        self.executors_needed: list[str] = []
        self.flows: set[str] = set()
        #: Module bindings (`import prefect`) some untranslated chain still uses.
        self.left_modules: set[str] = set()
        self._handled: set[int] = set()  # chains already translated from above

    def _line(self, node: cst.CSTNode) -> int:
        return self.get_metadata(PositionProvider, node).start.line

    def _path(self, node: cst.BaseExpression) -> tuple[str, _Binding] | None:
        """The Prefect path an expression refers to, with the binding it goes through."""
        dotted = _dotted(node)
        if dotted is None:
            return None
        root, _, rest = dotted.partition(".")
        binding = self.bindings.get(root)
        if binding is None:
            return None
        return (f"{binding.path}.{rest}" if rest else binding.path), binding

    # -- flows and deployment-only statements -------------------------------------------------

    def _is_flow_call(self, node: cst.BaseExpression) -> bool:
        if not isinstance(node, cst.Call):
            return False
        found = self._path(node.func)
        return found is not None and translate(found[0]) == "taskloom.Flow"

    def visit_Assign(self, node: cst.Assign) -> None:
        if self._is_flow_call(node.value):
            for target in node.targets:
                if isinstance(target.target, cst.Name):
                    self.flows.add(target.target.value)

    def visit_WithItem(self, node: cst.WithItem) -> None:
        if self._is_flow_call(node.item) and node.asname is not None:
            if isinstance(node.asname.name, cst.Name):
                self.flows.add(node.asname.name.value)

    def _deployment_only(self, statement: cst.BaseSmallStatement) -> str | None:
        """Why a small statement is deployment-only, or None."""
        if isinstance(statement, cst.Expr) and isinstance(statement.value, cst.Call):
            func = statement.value.func
            if (
                isinstance(func, cst.Attribute)
                and isinstance(func.value, cst.Name)
                and func.value.value in self.flows
                and func.attr.value in _DEPLOYMENT_METHODS
            ):
                return "deployment-only: taskloom runs flows without a Prefect server or agent"
            found = self._path(func)
            if found is not None and _is_deployment(found[0]):
                return "Prefect Cloud only"
        if isinstance(statement, (cst.Assign, cst.AnnAssign)):
            targets = (
                [t.target for t in statement.targets]
                if isinstance(statement, cst.Assign)
                else [statement.target]
            )
            if all(
                isinstance(t, cst.Attribute)
                and isinstance(t.value, cst.Name)
                and t.value.value in self.flows
                and t.attr.value in _DEPLOYMENT_KEYWORDS
                for t in targets
            ):
                return "deployment-only: taskloom runs flows without a Prefect server or agent"
        return None

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.BaseStatement:
        whys = [self._deployment_only(s) for s in original_node.body]
        if not any(whys):
            return updated_node
        line = self._line(original_node)
        if all(whys):
            why = [w for w in whys if w][0]
            self.removed_notes.append(Leftover(line, why))
            return self.removed(original_node, why)
        kept = [s for s, reason in zip(updated_node.body, whys) if not reason]
        for s, reason in zip(original_node.body, whys):
            if reason:
                code = cst.Module(body=[]).code_for_node(s)
                self.note(f"removed `{_short(code)}` ({reason})")
                self.removed_notes.append(Leftover(line, reason))
        last = kept[-1]
        if isinstance(last, (cst.Expr, cst.Assign, cst.AnnAssign, cst.AugAssign, cst.Pass)):
            kept[-1] = last.with_changes(semicolon=cst.MaybeSentinel.DEFAULT)
        return updated_node.with_changes(body=kept)

    # -- calls: Flow's deployment keywords, executors -------------------------------------

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        found = self._path(original_node.func)
        if found is None:
            return updated_node
        path = found[0].replace("prefect.engine.executors.", "prefect.executors.")
        line = self._line(original_node)
        if translate(path) == "taskloom.Flow":
            return self._flow_call(updated_node, line)
        if path == _LOCAL_DASK:
            return self._local_dask(updated_node, found[1], line)
        if path == "prefect.executors.DaskExecutor":
            return self._dask(updated_node, line)
        return updated_node

    def _flow_call(self, node: cst.Call, line: int) -> cst.Call:
        dropped = [
            a for a in node.args if a.keyword is not None and a.keyword.value in _DEPLOYMENT_KEYWORDS
        ]
        if not dropped:
            return node
        for arg in dropped:
            code = cst.Module(body=[]).code_for_node(arg.with_changes(comma=cst.MaybeSentinel.DEFAULT))
            why = "deployment-only: taskloom runs flows without a Prefect server or agent"
            self.note(f"removed `{_short(code)}` from Flow(...) ({why})")
            self.removed_notes.append(Leftover(line, why))
        args = [a for a in node.args if a not in dropped]
        if args:  # the last one takes the old last one's comma (and the line break after it)
            args[-1] = args[-1].with_changes(comma=node.args[-1].comma)
        return node.with_changes(args=args)

    def _local_dask(
        self, node: cst.Call, binding: _Binding, line: int
    ) -> cst.BaseExpression:
        scheduler = "threads"  # Prefect's default
        args: list[cst.Arg] = []
        for arg in node.args:
            key = arg.keyword.value if arg.keyword is not None else None
            if key == "scheduler":
                value = arg.value
                if not isinstance(value, cst.SimpleString) or value.evaluated_value not in ("threads", "processes"):
                    self.leftovers.append(Leftover(line, "LocalDaskExecutor(scheduler=...): not \"threads\" or \"processes\"; left as is"))
                    return self._kept(node, binding)
                scheduler = str(value.evaluated_value)
            elif key == "num_workers":
                args.append(arg.with_changes(keyword=cst.Name("max_workers")))
            else:
                what = f"{key}=" if key else "a positional argument"
                self.leftovers.append(Leftover(line, f"LocalDaskExecutor: {what} has no taskloom equivalent; left as is"))
                return self._kept(node, binding)
        name = "LokyExecutor" if scheduler == "processes" else "ThreadExecutor"
        if args:
            args[-1] = args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        if binding.is_module:
            func: cst.BaseExpression = self._chain_expr(binding, f"taskloom.executors.{name}")
        else:
            func = cst.Name(name)
            self.executors_needed.append(name)
        return node.with_changes(func=func, args=args)

    def _kept(self, node: cst.Call, binding: _Binding) -> cst.Call:
        """A call left as it is: a module it goes through (`prefect.`) must stay imported."""
        if binding.is_module:
            self.left_modules.add(binding.local)
        return node

    def _dask(self, node: cst.Call, line: int) -> cst.Call:
        args: list[cst.Arg] = []
        spread = False
        for arg in node.args:
            key = arg.keyword.value if arg.keyword is not None else None
            if key == "cluster_kwargs":
                value = arg.value
                if isinstance(value, cst.Dict) and all(
                    isinstance(e, cst.DictElement)
                    and isinstance(e.key, cst.SimpleString)
                    and str(e.key.evaluated_value).isidentifier()
                    for e in value.elements
                ):
                    tight = cst.AssignEqual(
                        whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")
                    )
                    spaced = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
                    for element in value.elements:
                        assert isinstance(element, cst.DictElement) and isinstance(element.key, cst.SimpleString)
                        args.append(cst.Arg(
                            value=element.value, keyword=cst.Name(str(element.key.evaluated_value)),
                            equal=tight, comma=spaced,
                        ))
                    if value.elements:
                        args[-1] = args[-1].with_changes(comma=arg.comma)
                else:
                    args.append(arg.with_changes(keyword=None, equal=cst.MaybeSentinel.DEFAULT, star="**"))
                spread = True
                continue
            if key in _DASK_LEFT:
                self.leftovers.append(Leftover(line, f"DaskExecutor({key}=...) has no taskloom equivalent; left as is"))
            args.append(arg)
        return node.with_changes(args=args) if spread else node

    # -- chains through `import prefect` ----------------------------------------------------

    def _chain_expr(self, binding: _Binding, target: str) -> cst.BaseExpression:
        """The expression for ``target`` through the (rewritten) module ``binding``."""
        module = translate(binding.path) or "taskloom"
        local = "taskloom" if binding.local == "prefect" else binding.local
        if binding.local == "prefect" and binding.path != "prefect":
            module = "taskloom"  # `import prefect.engine.signals` binds `prefect`: the root
        rest = target[len(module):] if target.startswith(module + ".") else "." + target
        return _expr(local + rest)

    def visit_Call(self, node: cst.Call) -> None:
        found = self._path(node.func)
        if found is not None and found[0].replace("prefect.engine.executors.", "prefect.executors.") == _LOCAL_DASK:
            self._handled.add(id(node.func))  # the call is rewritten whole (leave_Call)

    def visit_Import(self, node: cst.Import) -> bool:
        return False  # pass two's

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        return False  # pass two's

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        found = self._path(node)
        # Only the longest chain is translated; its inner parts are not visited.
        return not (found is not None and found[1].is_module)

    def leave_Attribute(self, original_node: cst.Attribute, updated_node: cst.Attribute) -> cst.BaseExpression:
        found = self._path(original_node)
        if found is None or not found[1].is_module or id(original_node) in self._handled:
            return updated_node
        path, binding = found
        if _is_deployment(path):
            return updated_node  # reported with the import when still used
        target = translate(path)
        if target is None:
            self.leftovers.append(Leftover(self._line(original_node), f"{path} has no taskloom equivalent; left as is"))
            self.left_modules.add(binding.local)
            return updated_node
        return self._chain_expr(binding, target)

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.BaseExpression:
        binding = self.bindings.get(original_node.value)
        if binding is not None and binding.is_module and binding.local == "prefect":
            return updated_node.with_changes(value="taskloom")
        return updated_node


class _Bindings(cst.CSTVisitor):
    """What each import of Prefect binds, with its line."""

    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self) -> None:
        super().__init__()
        self.bindings: dict[str, _Binding] = {}
        self.leftovers: list[Leftover] = []
        #: Modules imported as they are elsewhere (`import taskloom`): not imported twice.
        self.plain_imports: set[str] = set()

    def visit_Import(self, node: cst.Import) -> None:
        line = self.get_metadata(PositionProvider, node).start.line
        for alias in node.names:
            path = _dotted(alias.name) or ""
            if path != "prefect" and not path.startswith("prefect."):
                if alias.asname is None:
                    self.plain_imports.add(path)
                continue
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                self.bindings[alias.asname.name.value] = _Binding(alias.asname.name.value, path, line, True)
            else:
                self.bindings["prefect"] = _Binding("prefect", path if "." not in path else "prefect", line, True)

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        module = _import_path(node)
        if node.relative or (module != "prefect" and not module.startswith("prefect.")):
            return
        line = self.get_metadata(PositionProvider, node).start.line
        if isinstance(node.names, cst.ImportStar):
            self.leftovers.append(Leftover(line, f"from {module} import *: name the names to import"))
            return
        for alias in node.names:
            name = _dotted(alias.name) or ""
            local = alias.asname.name.value if alias.asname is not None and isinstance(alias.asname.name, cst.Name) else name
            path = f"{module}.{name}"
            self.bindings[local] = _Binding(local, path, line, _is_module(path))


class _Uses(cst.CSTVisitor):
    """How often each name is used outside import statements."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}

    def visit_Import(self, node: cst.Import) -> bool:
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        return False

    def visit_Name(self, node: cst.Name) -> None:
        self.counts[node.value] = self.counts.get(node.value, 0) + 1


class _Imports(_Statements):
    """Pass two: the imports, given what pass one left in use."""

    def __init__(
        self, bindings: dict[str, _Binding], uses: dict[str, int], executors_needed: list[str],
        left_modules: set[str], plain_imports: set[str],
    ) -> None:
        super().__init__()
        self.plain_imports = plain_imports
        self.bindings = bindings
        self.left_modules = left_modules
        self.uses = uses
        self.executors_needed = list(dict.fromkeys(executors_needed))
        self.leftovers: list[Leftover] = []
        self.removed_notes: list[Leftover] = []

    def _alias_target(self, binding: _Binding) -> tuple[str, str] | None:
        """``(taskloom module, name)`` to import for a binding, or None if it has none."""
        if binding.path.replace("prefect.engine.executors.", "prefect.executors.") == _LOCAL_DASK:
            return None
        target = translate(binding.path)
        if target is None:
            return None
        module, _, name = target.rpartition(".")
        return module, name

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement]:
        if len(updated_node.body) != 1:
            return updated_node
        statement = updated_node.body[0]
        if isinstance(statement, cst.ImportFrom):
            return self._from(updated_node, statement)
        if isinstance(statement, cst.Import):
            return self._import(updated_node, statement)
        return updated_node

    def _import(self, line: cst.SimpleStatementLine, node: cst.Import) -> cst.BaseStatement:
        names = []
        for alias in node.names:
            path = _dotted(alias.name) or ""
            if path != "prefect" and not path.startswith("prefect."):
                names.append(alias)
                continue
            target = translate(path)
            if target is None or _is_deployment(path):
                local = alias.asname.name.value if alias.asname is not None and isinstance(alias.asname.name, cst.Name) else "prefect"
                binding = self.bindings.get(local)
                if binding is not None and _is_deployment(path) and not self.uses.get(local):
                    continue
                names.append(alias)
                if binding is not None:
                    self.leftovers.append(Leftover(binding.line, f"import {path}: no taskloom equivalent; left as is"))
                continue
            new = _expr(target)
            assert isinstance(new, (cst.Name, cst.Attribute))
            if alias.asname is not None or target not in self.plain_imports:
                names.append(alias.with_changes(name=new))
            local = alias.asname.name.value if alias.asname is not None and isinstance(alias.asname.name, cst.Name) else "prefect"
            if local in self.left_modules:  # untranslated `prefect.x` chains still need it
                names.append(alias)
        if not names:
            return self.removed(line, "deployment-only, and nothing uses it now")
        names[-1] = names[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        return line.with_changes(body=[node.with_changes(names=names)])

    def _from(
        self, line: cst.SimpleStatementLine, node: cst.ImportFrom
    ) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement]:
        module = _import_path(node)
        if node.relative or (module != "prefect" and not module.startswith("prefect.")):
            return line
        if isinstance(node.names, cst.ImportStar):
            return line
        groups: dict[str, list[cst.ImportAlias]] = {}
        left: list[cst.ImportAlias] = []
        dropped = 0
        for alias in node.names:
            name = _dotted(alias.name) or ""
            local = alias.asname.name.value if alias.asname is not None and isinstance(alias.asname.name, cst.Name) else name
            binding = self.bindings.get(local)
            path = f"{module}.{name}"
            if path.replace("prefect.engine.executors.", "prefect.executors.") == _LOCAL_DASK:
                if self.uses.get(local):
                    left.append(alias)
                    self.leftovers.append(Leftover(binding.line if binding else 0, f"{path} is used other than called; left as is"))
                else:
                    groups.setdefault("taskloom.executors", []).extend(
                        cst.ImportAlias(name=cst.Name(n)) for n in self.executors_needed
                    )
                    self.executors_needed = []
                continue
            if _is_deployment(path) and not self.uses.get(local):
                dropped += 1
                continue
            target = self._alias_target(binding) if binding is not None else None
            if target is None:
                left.append(alias)
                self.leftovers.append(Leftover(binding.line if binding else 0, f"{path} has no taskloom equivalent; left as is"))
                continue
            new_module, new_name = target
            asname = None if local == new_name else cst.AsName(name=cst.Name(local))
            groups.setdefault(new_module, []).append(
                alias.with_changes(name=cst.Name(new_name), asname=asname)
            )
        statements: list[cst.SimpleStatementLine] = []
        for new_module, aliases in groups.items():
            aliases = list({cst.Module(body=[]).code_for_node(a.with_changes(comma=cst.MaybeSentinel.DEFAULT)): a for a in aliases}.values())
            statements.append(self._from_line(line, node, new_module, aliases))
        if left:
            statements.append(self._from_line(line, node, module, left))
        if not statements:
            return self.removed(line, "deployment-only, and nothing uses it now" if dropped else "nothing left to import")
        if len(statements) == 1:
            return statements[0]
        first = statements[0].with_changes(trailing_whitespace=cst.TrailingWhitespace())
        rest = [s.with_changes(leading_lines=()) for s in statements[1:]]
        return cst.FlattenSentinel([first, *rest])

    def _from_line(
        self, line: cst.SimpleStatementLine, node: cst.ImportFrom, module: str,
        aliases: list[cst.ImportAlias],
    ) -> cst.SimpleStatementLine:
        """``from module import aliases`` in the shape of ``node`` (its parentheses and
        commas where the aliases are the original ones)."""
        module_expr = _expr(module)
        assert isinstance(module_expr, (cst.Name, cst.Attribute))
        last = aliases[-1]
        if node.lpar is None or len(aliases) == 1:
            aliases = [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in aliases]
            aliases = [
                a.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
                for a in aliases[:-1]
            ] + aliases[-1:]
            return line.with_changes(body=[cst.ImportFrom(module=module_expr, names=aliases)])
        aliases[-1] = last
        return line.with_changes(body=[node.with_changes(module=module_expr, names=aliases)])


def migrate_source(code: str, filename: str = "<string>") -> Migration:
    """Rewrite the Prefect 1.x code ``code`` for taskloom (see the module docstring).

    Raises ``MigrateError`` naming ``filename`` and the line when ``code`` does not parse.

    >>> done = migrate_source("from prefect import Flow, task  # the basics\\n")
    >>> done.code
    'from taskloom import Flow, task  # the basics\\n'
    """
    try:  # Python's own parser names the line and the mistake best
        compile(code, filename, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError as error:
        raise MigrateError(
            f"{filename}:{error.lineno}: not valid Python, so it was not migrated: {error.msg}"
        ) from None
    try:
        module = cst.parse_module(code)
    except cst.ParserSyntaxError as error:
        raise MigrateError(
            f"{filename}:{error.raw_line}:{error.raw_column + 1}: not valid Python, so it "
            f"was not migrated: {error.message}"
        ) from None
    wrapper = MetadataWrapper(module)
    found = _Bindings()
    wrapper.visit(found)
    if not found.bindings:
        return Migration(code, code, found.leftovers)
    rewriter = _Rewriter(found.bindings)
    rewritten = wrapper.visit(rewriter)
    uses = _Uses()
    rewritten.visit(uses)
    imports = _Imports(
        found.bindings, uses.counts, rewriter.executors_needed, rewriter.left_modules,
        found.plain_imports,
    )
    final = rewritten.visit(imports)
    leftovers = sorted(
        {*found.leftovers, *rewriter.leftovers, *imports.leftovers}, key=lambda left: (left.line, left.what)
    )
    removed = sorted({*rewriter.removed_notes, *imports.removed_notes}, key=lambda r: (r.line, r.what))
    return Migration(code, final.code, leftovers, removed)
