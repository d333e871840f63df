"""The monitoring sidecar (`occam monitor`): reads the service's prediction log, compares live
inputs and outputs with the training reference, joins feedback, and exports drift, quality and
retrain signals to Prometheus. See docs/metrics.md for what it exports and why."""

import importlib.abc
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


class _NoPyarrow(importlib.abc.MetaPathFinder):
    """Makes `import pyarrow` fail as if it were not installed. Nothing is put in
    `sys.modules`: libraries that look there for pyarrow (scikit-learn's input checks do) see
    it absent rather than a placeholder."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == "pyarrow" or fullname.startswith("pyarrow."):
            raise ModuleNotFoundError(
                f"{fullname} is kept out of the monitor's process (monitoring.keep_pyarrow_out)",
                name=fullname,
            )
        return None


def keep_pyarrow_out() -> bool:
    """Keep pyarrow out of this process: the monitor reads JSON lines and the bundle's CSV
    samples, never Arrow or Parquet, but `import pandas` loads pyarrow whenever it is installed
    (about 55 MiB resident, to learn its version). `occam monitor` calls this before pandas is
    imported (True: it took effect; False: pyarrow was already loaded). Training reads Parquet
    and must not call it."""
    if "pyarrow" in sys.modules:
        return False
    if not any(isinstance(finder, _NoPyarrow) for finder in sys.meta_path):
        sys.meta_path.insert(0, _NoPyarrow())
    return True


#: The thread-pool sizes of the math libraries (OpenBLAS, OpenMP, MKL) that `one_math_thread`
#: sets to 1 for the monitor's process, unless the environment already sets them.
MATH_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def one_math_thread() -> bool:
    """Run the math libraries single-threaded in this process. The monitor's arrays are small
    (a window, a reference sample) and its one thread of work never waits on them in parallel,
    but numpy's OpenBLAS starts a thread per core whose spin-wait (`sched_yield`, about 9,000
    calls a second under load) took more CPU than everything else the monitor did: 2.6 s of
    system time in 22 s of steady load, 77 us of CPU per record read, against 11-14 us with one
    thread (measured once with psutil and `strace -c` on a monitor beside the loaded service;
    bench/bench_sidecar_cost.py gives the cost that remains). `occam monitor` calls this before
    numpy is imported (the libraries read these variables when they load; True: it took
    effect). Child processes (notification commands) inherit the variables."""
    if "numpy" in sys.modules:
        return False
    for name in MATH_THREAD_VARIABLES:
        os.environ.setdefault(name, "1")
    return True
