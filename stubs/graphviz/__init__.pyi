# The few names of the graphviz package (which ships no types) that taskloom.visualize uses.

class ExecutableNotFound(RuntimeError): ...

class CalledProcessError(Exception): ...

class Source:
    def __init__(
        self,
        source: str,
        filename: str | None = None,
        directory: str | None = None,
        format: str | None = None,
        engine: str | None = None,
        encoding: str | None = "utf-8",
    ) -> None: ...
    def pipe(
        self,
        format: str | None = None,
        renderer: str | None = None,
        formatter: str | None = None,
        neato_no_op: bool | int | None = None,
        quiet: bool = False,
        *,
        engine: str | None = None,
        encoding: None = None,
    ) -> bytes: ...
