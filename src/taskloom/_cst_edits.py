"""Small edits of a libcst tree for ``taskloom migrate``: dotted names, and statements
that carry a note or are removed with one.

``StatementEdits`` is a ``CSTTransformer`` base: a statement may collect notes while its
parts are visited (``note``), which become comment lines above it; a statement removed
(``removed``) becomes a ``pass`` line with its comment until its block is left, where it
is dropped and its comment moved above the next statement (or into the block's footer),
unless it was alone in its block.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar, cast

import libcst as cst

__all__ = ["NOTE", "StatementEdits", "code_of", "dotted", "expr", "import_path", "local_name", "short"]

_N = TypeVar("_N", bound=cst.CSTNode)

#: What a comment added by the rewrite starts with.
NOTE = "# taskloom migrate:"


def code_of(node: cst.CSTNode) -> str:
    """The source text of ``node``."""
    return cst.Module(body=[]).code_for_node(node)


def dotted(node: cst.BaseExpression) -> str | None:
    """``a.b.c`` for a chain of names and attributes, else None."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        inner = dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr.value}"
    return None


def expr(dotted: str) -> cst.BaseExpression:
    """The expression ``a.b.c``."""
    first, *rest = dotted.split(".")
    built: cst.BaseExpression = cst.Name(first)
    for part in rest:
        built = cst.Attribute(value=built, attr=cst.Name(part))
    return built


def local_name(alias: cst.ImportAlias, default: str) -> str:
    """The name an import alias binds: its ``as`` name, else ``default``."""
    if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
        return alias.asname.name.value
    return default


def import_path(node: cst.ImportFrom) -> str:
    module = node.module
    return "" if module is None else (dotted(module) or "")


def _note_lines(notes: Iterable[str]) -> list[cst.EmptyLine]:
    return [cst.EmptyLine(indent=True, comment=cst.Comment(f"{NOTE} {note}")) for note in notes]


def short(code: str) -> str:
    """One line of code for a comment: the first line, cut to 60 characters."""
    lines = code.strip().splitlines() or [""]
    text = lines[0] + (" ..." if len(lines) > 1 else "")
    return text if len(text) <= 60 else text[:57] + "..."


class StatementEdits(cst.CSTTransformer):
    """Notes on statements, and statements removed with a comment (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._notes: list[list[str]] = []
        # The placeholders by id, each held: an id is unique only while its object lives,
        # and a dropped placeholder's id, taken by a later statement, would drop that one.
        self._placeholders: dict[int, cst.SimpleStatementLine] = {}

    def note(self, text: str) -> None:
        if self._notes:
            self._notes[-1].append(text)

    def removed(self, original: cst.CSTNode, why: str) -> cst.SimpleStatementLine:
        code = code_of(original)
        comment = f"{NOTE} removed `{short(code)}` ({why})"
        leading = original.leading_lines if isinstance(original, cst.SimpleStatementLine) else ()
        line = cst.SimpleStatementLine(
            body=[cst.Pass()],
            leading_lines=leading,
            trailing_whitespace=cst.TrailingWhitespace(
                whitespace=cst.SimpleWhitespace("  "), comment=cst.Comment(comment)
            ),
        )
        self._placeholders[id(line)] = line
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
