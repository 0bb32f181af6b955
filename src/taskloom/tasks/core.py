"""The small tasks that operators on a handle build at flow-build time.

Inside ``with Flow(...)``, ``h[k]``, ``h + 1``, ``1 + h``, ``a < b``, ``a & b`` and the like,
where ``h``, ``a`` or ``b`` is a handle (what calling a task returns), add one of these tasks
to the flow with the operands as its arguments (a handle is a data edge, a constant a
constant) and return its handle, as Prefect 1.x's ``Task`` does::

    with Flow("sums") as flow:
        t = total(xs)
        doubled = (t + 1) * 2          # an Add task, then a Mul task
        first, second = pair(t)        # with nout=2 or `-> tuple[A, B]`: two GetItem tasks

For the type checker each expression reads as the result type's own operator
(``(t + 1) * 2`` is a ``float`` when ``total`` returns ``float``), so the values these tasks
compute follow Python's operators: ``And`` is ``x & y`` and ``Or`` is ``x | y`` (Prefect 1.x
computes ``bool(x and y)``; the two agree on booleans). A comparison returns what the
operand's own operator returns (Prefect wraps it in ``bool``).

The classes are defined at module level so that process executors can pickle them. Each
can also be used directly, like any task: ``Add()(x, 1)``.
"""

from __future__ import annotations

from typing import Any

from ..task import Task

__all__ = [
    "Add",
    "And",
    "Div",
    "FloorDiv",
    "GetItem",
    "GreaterThan",
    "GreaterThanOrEqual",
    "LessThan",
    "LessThanOrEqual",
    "Mod",
    "Mul",
    "Not",
    "Or",
    "Pow",
    "Sub",
]

# The operands' types are not known here: each task is built for whatever its operands
# are, and the type checker checks the expression that built it (see the module docstring).


class GetItem(Task[[Any, Any], Any]):
    """``task_result[key]``; what ``h[key]`` and unpacking a handle build.

    >>> GetItem().run({"a": 1}, "a")
    1
    """

    def run(self, task_result: Any, key: Any) -> Any:
        """Return ``task_result[key]``."""
        return task_result[key]


class Add(Task[[Any, Any], Any]):
    """``x + y``; what ``h + y`` and ``x + h`` build.

    >>> Add().run(1, 2)
    3
    """

    def run(self, x: Any, y: Any) -> Any:
        """Return ``x + y``."""
        return x + y


class Sub(Task[[Any, Any], Any]):
    """``x - y``; what ``h - y`` and ``x - h`` build.

    >>> Sub().run(3, 1)
    2
    """

    def run(self, x: Any, y: Any) -> Any:
        """Return ``x - y``."""
        return x - y


class Mul(Task[[Any, Any], Any]):
    """``x * y``; what ``h * y`` and ``x * h`` build.

    >>> Mul().run(3, 2)
    6
    """

    def run(self, x: Any, y: Any) -> Any:
        """Return ``x * y``."""
        return x * y


class Div(Task[[Any, Any], Any]):
    """``x / y``; what ``h / y`` and ``x / h`` build.

    >>> Div().run(3, 2)
    1.5
    """

    def run(self, x: Any, y: Any) -> Any:
        """Return ``x / y``."""
        return x / y


class FloorDiv(Task[[Any, Any], Any]):
    """``x // y``; what ``h // y`` and ``x // h`` build.

    >>> FloorDiv().run(7, 2)
    3
    """

    def run(self, x: Any, y: Any) -> Any:
        """Return ``x // y``."""
        return x // y


class Mod(Task[[Any, Any], Any]):
    """``x % y``; what ``h % y`` and ``x % h`` build.

    >>> Mod().run(7, 2)
    1
    """

    def run(self, x: Any, y: Any) -> Any:
        """Return ``x % y``."""
        return x % y


class Pow(Task[[Any, Any], Any]):
    """``x ** y``; what ``h ** y`` and ``x ** h`` build.

    >>> Pow().run(2, 3)
    8
    """

    def run(self, x: Any, y: Any) -> Any:
        """Return ``x ** y``."""
        return x**y


class And(Task[[Any, Any], Any]):
    """``x & y``; what ``h & y`` and ``x & h`` build (on booleans: both true).

    >>> And().run(True, False)
    False
    """

    def run(self, x: Any, y: Any) -> Any:
        """Return ``x & y``."""
        return x & y


class Or(Task[[Any, Any], Any]):
    """``x | y``; what ``h | y`` and ``x | h`` build (on booleans: either true).

    >>> Or().run(True, False)
    True
    """

    def run(self, x: Any, y: Any) -> Any:
        """Return ``x | y``."""
        return x | y


class Not(Task[[Any], bool]):
    """``not x``. No operator builds it (``~`` means bitwise invert on an ``int``, and
    ``not h`` cannot be overloaded); call it: ``Not()(h)``, as Prefect's ``h.not_()``.

    >>> Not().run(0)
    True
    """

    def run(self, x: Any) -> bool:
        """Return ``not x``."""
        return not x


class GreaterThan(Task[[Any, Any], Any]):
    """``x > y``; what ``h > y`` and ``y < h`` build.

    >>> GreaterThan().run(2, 1)
    True
    """

    def run(self, x: Any, y: Any) -> Any:
        """Return ``x > y``."""
        return x > y


class GreaterThanOrEqual(Task[[Any, Any], Any]):
    """``x >= y``; what ``h >= y`` and ``y <= h`` build.

    >>> GreaterThanOrEqual().run(1, 1)
    True
    """

    def run(self, x: Any, y: Any) -> Any:
        """Return ``x >= y``."""
        return x >= y


class LessThan(Task[[Any, Any], Any]):
    """``x < y``; what ``h < y`` and ``y > h`` build.

    >>> LessThan().run(1, 2)
    True
    """

    def run(self, x: Any, y: Any) -> Any:
        """Return ``x < y``."""
        return x < y


class LessThanOrEqual(Task[[Any, Any], Any]):
    """``x <= y``; what ``h <= y`` and ``y >= h`` build.

    >>> LessThanOrEqual().run(2, 1)
    False
    """

    def run(self, x: Any, y: Any) -> Any:
        """Return ``x <= y``."""
        return x <= y
