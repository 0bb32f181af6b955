"""``taskloom migrate``: rewrite a Prefect Core 1.x flow file for taskloom.

::

    from taskloom.migrate import migrate_source

    done = migrate_source(open("flow.py").read(), "flow.py")
    print(done.code)                       # the rewritten text
    for left in done.leftovers:            # what it could not translate
        print(f"flow.py:{left.line}: {left.what}")

What it does, on a concrete syntax tree (libcst: the file's comments and formatting stay
as they are, except on the lines it changes):

- imports of Prefect names get taskloom's (``taskloom._prefect_names``: ``from prefect import Flow, task``,
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
from dataclasses import dataclass, field

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from ._cst_edits import StatementEdits, code_of, dotted, expr, import_path, local_name, short
from ._prefect_names import (
    DASK_LEFT, DEPLOYMENT_KEYWORDS, DEPLOYMENT_METHODS, LOCAL_DASK, canonical, is_deployment,
    is_module, translate,
)
from .errors import TaskloomError

__all__ = ["Leftover", "MigrateError", "Migration", "migrate_source", "translate"]


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


class _Rewriter(StatementEdits):
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
        name = dotted(node)
        if name is None:
            return None
        root, _, rest = name.partition(".")
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
                and func.attr.value in DEPLOYMENT_METHODS
            ):
                return "deployment-only: taskloom runs flows without a Prefect server or agent"
            found = self._path(func)
            if found is not None and is_deployment(found[0]):
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
                and t.attr.value in DEPLOYMENT_KEYWORDS
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
                code = code_of(s)
                self.note(f"removed `{short(code)}` ({reason})")
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
        path = canonical(found[0])
        line = self._line(original_node)
        if translate(path) == "taskloom.Flow":
            return self._flow_call(updated_node, line)
        if path == LOCAL_DASK:
            return self._local_dask(updated_node, found[1], line)
        if path == "prefect.executors.DaskExecutor":
            return self._dask(updated_node, line)
        return updated_node

    def _flow_call(self, node: cst.Call, line: int) -> cst.Call:
        dropped = [
            a for a in node.args if a.keyword is not None and a.keyword.value in DEPLOYMENT_KEYWORDS
        ]
        if not dropped:
            return node
        for arg in dropped:
            code = code_of(arg.with_changes(comma=cst.MaybeSentinel.DEFAULT))
            why = "deployment-only: taskloom runs flows without a Prefect server or agent"
            self.note(f"removed `{short(code)}` from Flow(...) ({why})")
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
            if key in DASK_LEFT:
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
        return expr(local + rest)

    def visit_Call(self, node: cst.Call) -> None:
        found = self._path(node.func)
        if found is not None and canonical(found[0]) == LOCAL_DASK:
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
        if is_deployment(path):
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
            path = dotted(alias.name) or ""
            if path != "prefect" and not path.startswith("prefect."):
                if alias.asname is None:
                    self.plain_imports.add(path)
                continue
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                self.bindings[alias.asname.name.value] = _Binding(alias.asname.name.value, path, line, True)
            else:
                self.bindings["prefect"] = _Binding("prefect", path if "." not in path else "prefect", line, True)

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        module = import_path(node)
        if node.relative or (module != "prefect" and not module.startswith("prefect.")):
            return
        line = self.get_metadata(PositionProvider, node).start.line
        if isinstance(node.names, cst.ImportStar):
            self.leftovers.append(Leftover(line, f"from {module} import *: name the names to import"))
            return
        for alias in node.names:
            name = dotted(alias.name) or ""
            local = local_name(alias, name)
            path = f"{module}.{name}"
            self.bindings[local] = _Binding(local, path, line, is_module(path))


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


class _Imports(StatementEdits):
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
        if canonical(binding.path) == LOCAL_DASK:
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
            path = dotted(alias.name) or ""
            if path != "prefect" and not path.startswith("prefect."):
                names.append(alias)
                continue
            local = local_name(alias, "prefect")
            target = translate(path)
            if target is None or is_deployment(path):
                binding = self.bindings.get(local)
                if binding is not None and is_deployment(path) and not self.uses.get(local):
                    continue
                names.append(alias)
                if binding is not None:
                    self.leftovers.append(Leftover(binding.line, f"import {path}: no taskloom equivalent; left as is"))
                continue
            new = expr(target)
            assert isinstance(new, (cst.Name, cst.Attribute))
            if alias.asname is not None or target not in self.plain_imports:
                names.append(alias.with_changes(name=new))
            if local in self.left_modules:  # untranslated `prefect.x` chains still need it
                names.append(alias)
        if not names:
            return self.removed(line, "deployment-only, and nothing uses it now")
        names[-1] = names[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        return line.with_changes(body=[node.with_changes(names=names)])

    def _from(
        self, line: cst.SimpleStatementLine, node: cst.ImportFrom
    ) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement]:
        module = import_path(node)
        if node.relative or (module != "prefect" and not module.startswith("prefect.")):
            return line
        if isinstance(node.names, cst.ImportStar):
            return line
        groups: dict[str, list[cst.ImportAlias]] = {}
        left: list[cst.ImportAlias] = []
        dropped = 0
        for alias in node.names:
            name = dotted(alias.name) or ""
            local = local_name(alias, name)
            binding = self.bindings.get(local)
            path = f"{module}.{name}"
            if canonical(path) == LOCAL_DASK:
                if self.uses.get(local):
                    left.append(alias)
                    self.leftovers.append(Leftover(binding.line if binding else 0, f"{path} is used other than called; left as is"))
                else:
                    groups.setdefault("taskloom.executors", []).extend(
                        cst.ImportAlias(name=cst.Name(n)) for n in self.executors_needed
                    )
                    self.executors_needed = []
                continue
            if is_deployment(path) and not self.uses.get(local):
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
            aliases = list({code_of(a.with_changes(comma=cst.MaybeSentinel.DEFAULT)): a for a in aliases}.values())
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
        module_expr = expr(module)
        assert isinstance(module_expr, (cst.Name, cst.Attribute))
        if node.lpar is None or len(aliases) == 1:
            aliases = [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in aliases]
            aliases = [
                a.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
                for a in aliases[:-1]
            ] + aliases[-1:]
            return line.with_changes(body=[cst.ImportFrom(module=module_expr, names=aliases)])
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
