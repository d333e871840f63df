"""The monitoring sidecar (`occam monitor`): reads the service's prediction log, compares live
inputs and outputs with the training reference, joins feedback, and exports drift, quality and
retrain signals to Prometheus. See docs/metrics.md for what it exports and why."""

import importlib.abc
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
