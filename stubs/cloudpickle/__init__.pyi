# Hand-written stub for cloudpickle 3.1.x: only the names taskloom calls.
# Checked against the installed cloudpickle by `nox -s stubtest`; names left out on
# purpose are listed, with the reason, in stubs/stubtest-allowlist.txt.
from collections.abc import Callable
from pickle import PickleBuffer
from types import ModuleType

# At run time `cloudpickle.loads` *is* `pickle.loads`, so its stub is typeshed's.
from pickle import loads as loads

def dumps(
    obj: object,
    protocol: int | None = None,
    buffer_callback: Callable[[PickleBuffer], object] | None = None,
) -> bytes: ...

# Raises ValueError unless `module` is a module object present in sys.modules.
def register_pickle_by_value(module: ModuleType) -> None: ...
