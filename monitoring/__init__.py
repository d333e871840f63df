"""The monitoring sidecar (`occam monitor`): reads the service's prediction log, compares live
inputs and outputs with the training reference, joins feedback, and exports drift, quality and
retrain signals to Prometheus. See docs/metrics.md for what it exports and why."""

import sys


def keep_pyarrow_out() -> bool:
    """Keep pyarrow out of this process: the monitor reads JSON lines and the bundle's CSV
    samples, never Arrow or Parquet, but `import pandas` loads pyarrow whenever it is installed
    (about 55 MiB resident, to learn its version). `occam monitor` calls this before pandas is
    imported (True: it took effect; False: pandas, and so pyarrow, was already loaded). Training
    reads Parquet and must not call it."""
    if "pandas" in sys.modules:
        return False
    sys.modules.setdefault("pyarrow", None)  # type: ignore[arg-type]  # import fails
    return True
