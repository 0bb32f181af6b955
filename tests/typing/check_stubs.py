"""Type tests for the hand-written stubs in ``stubs/`` (loky, cloudpickle). Only type-checked.

Importing the stubbed modules here also makes ``mypy --strict`` check the stubs themselves.
``assert_type`` lines must be accepted; a line ending in ``# type: ignore[code]`` must be
rejected with that code.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import pickle
import sys
from typing import Any, assert_type

import cloudpickle
import loky
from loky.process_executor import ShutdownExecutorError, TerminatedWorkerError


def square(x: int) -> int:
    return x * x


def greet(name: str, *, punctuation: str = "!") -> str:
    return name + punctuation


def set_up(level: int, name: str) -> None: ...


# -- cloudpickle -----------------------------------------------------------------------------

assert_type(cloudpickle.dumps(square), bytes)
assert_type(cloudpickle.dumps(square, protocol=pickle.HIGHEST_PROTOCOL), bytes)
assert_type(cloudpickle.loads(cloudpickle.dumps(square)), Any)  # narrow it where it is read
cloudpickle.register_pickle_by_value(sys.modules[__name__])
cloudpickle.register_pickle_by_value("tests.typing")  # type: ignore[arg-type]
cloudpickle.loads("not bytes")  # type: ignore[arg-type]
cloudpickle.dump(square, sys.stdout.buffer)  # type: ignore[attr-defined]  # not stubbed

# -- loky ------------------------------------------------------------------------------------

assert_type(loky.cpu_count(), int)
assert_type(loky.cpu_count(only_physical_cores=True), int)

pool = loky.get_reusable_executor(max_workers=2, timeout=30, reuse=True, env={"A": "1"})
assert_type(pool, loky.ProcessPoolExecutor)
loky.get_reusable_executor(context="loky", kill_workers=True)
loky.get_reusable_executor(context=multiprocessing.get_context("spawn"))
loky.get_reusable_executor(initializer=set_up, initargs=(1, "worker"))
loky.get_reusable_executor(initializer=set_up, initargs=(1,))  # type: ignore[arg-type]
loky.get_reusable_executor(reuse="always")  # type: ignore[call-overload]
loky.get_reusable_executor(max_workers="2")  # type: ignore[call-overload]
loky.get_reusable_executor(cancel_futures=True)  # type: ignore[call-overload]

future = pool.submit(square, 3)
assert_type(future, loky.Future[int])
assert_type(future.result(timeout=1), int)
assert_type(pool.submit(greet, "a", punctuation="?").result(), str)
std_future: concurrent.futures.Future[int] = future  # loky's Future subclasses the stdlib's
done, pending = concurrent.futures.wait([future], timeout=0.1)
pool.submit(square, "3")  # type: ignore[arg-type]
pool.submit(greet, "a", exclaim="?")  # type: ignore[call-arg]

pool.shutdown(wait=False, kill_workers=True)
pool.shutdown(True, True)
pool.shutdown(cancel_futures=True)  # type: ignore[call-arg]  # loky's shutdown has no such option

own_pool = loky.ProcessPoolExecutor(max_workers=2, timeout=10.0, initializer=set_up, initargs=(0, ""))
own_pool.submit(square, 2).add_done_callback(lambda f: print(f.result()))
loky.ProcessPoolExecutor(initializer=set_up)  # type: ignore[arg-type]  # initargs missing
loky.ProcessPoolExecutor(context="loky")  # type: ignore[call-overload]  # a context object only

# The stdlib's Executor can stand for a loky pool wherever submit() is all that is used.
as_executor: concurrent.futures.Executor = own_pool


def classify(error: BaseException) -> str:
    # Most specific first: TerminatedWorkerError < loky.BrokenProcessPool < the stdlib's.
    if isinstance(error, TerminatedWorkerError):
        return "a worker died"
    if isinstance(error, loky.BrokenProcessPool):
        return "the pool broke"
    if isinstance(error, ShutdownExecutorError):
        return "the pool was shut down"
    return "other"


stdlib_broken: concurrent.futures.process.BrokenProcessPool = loky.BrokenProcessPool()
shutdown_error: RuntimeError = ShutdownExecutorError()
