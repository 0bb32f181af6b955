# Hand-written stub for loky 3.7: only the names taskloom calls.
# Checked against the installed loky by `nox -s stubtest`; names left out on purpose are
# listed, with the reason, in stubs/stubtest-allowlist.txt.
from ._base import Future as Future
from .process_executor import BrokenProcessPool as BrokenProcessPool
from .process_executor import ProcessPoolExecutor as ProcessPoolExecutor
from .reusable_executor import get_reusable_executor as get_reusable_executor

# Defined in loky.backend.context (not stubbed: see the allowlist). The number of CPUs this
# process may use (affinity, cgroup quota and LOKY_MAX_CPU_COUNT taken into account).
def cpu_count(only_physical_cores: bool = False) -> int: ...
