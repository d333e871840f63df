"""The scipy drift backend gives alibi-detect's verdicts, and spares the monitor its imports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitoring.check import run_check
from monitoring.reference import build_reference
from monitoring.state import MonitorState
from occam.config import MonitoringConfig, load_config
from tests.monitoring import replay

ROOT = Path(__file__).resolve().parents[2]


def test_backends_agree_on_the_bundled_data(trained: Any) -> None:
    config = load_config(trained.config_path)
    held_out, production = replay.periods(config)
    refs = {
        backend: build_reference(
            trained.bundle, MonitoringConfig(window_rows=500, drift_backend=backend)
        )
        for backend in ("alibi", "scipy")
    }
    windows = 0
    for rows in (held_out, production):
        recs, _ = replay.records(trained.bundle, rows, "w")
        for start in range(0, len(recs) - 499, 500):
            results = {}
            for backend, ref in refs.items():
                state = MonitorState.new(500, 100, 10_000, 1000)
                state.window.extend([r.__dict__ for r in recs[start : start + 500]])
                state.rows_total = 500
                results[backend] = run_check(state, ref, ref_config(backend), now=0.0)
            alibi, scipy = results["alibi"], results["scipy"]
            assert alibi.drift is not None and scipy.drift is not None
            for name, a in alibi.drift.features.items():
                b = scipy.drift.features[name]
                verdict = (a.statistic, a.effect_size, a.significant, a.drifted)
                assert verdict == (b.statistic, b.effect_size, b.significant, b.drifted)
                if a.kind == "categorical":  # the same Chi-squared p-value
                    assert a.p_value == b.p_value
                else:  # SciPy reports the Kolmogorov limit's p-value (monitoring.backends)
                    assert a.p_value == pytest.approx(b.p_value, rel=0.25, abs=1e-9)
            assert alibi.weighted == scipy.weighted and alibi.named == scipy.named
            assert alibi.runs == scipy.runs and alibi.model_at_risk == scipy.model_at_risk
            windows += 1
    assert windows >= 4


def ref_config(backend: str) -> MonitoringConfig:
    return MonitoringConfig(window_rows=500, drift_backend=backend)  # type: ignore[arg-type]


def test_the_scipy_backend_never_imports_alibi_detect() -> None:
    code = """
import sys
from monitoring.check import run_check
from monitoring.state import MonitorState
from occam.config import MonitoringConfig
from tests.monitoring import synthetic
for backend in ("scipy", "alibi"):
    config = MonitoringConfig(window_rows=200, min_window_rows=50, drift_backend=backend)
    state = MonitorState.new(200, 50, 1000, 1000)
    synthetic.feed(state, 200, shift=0.5)
    result = run_check(state, synthetic.reference(config), config, now=0.0)
    assert result.drift is not None
    print(backend, sorted(m for m in ("alibi_detect", "tensorflow", "torch") if m in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "scipy []"
    assert lines[1].startswith("alibi ['alibi_detect'")


def test_the_ks_decision_by_critical_distance_is_the_exact_p_value_decision() -> None:
    from scipy.stats import kstwo

    from monitoring.backends import ks_critical, ks_significant

    for n, level in ((1429, 0.05 / 17), (333, 0.05 / 3), (4545, 0.01)):
        critical = ks_critical(n, level)
        near = critical + np.array([-1e-6, -1e-7, 0.0, 1e-7, 1e-6])
        for d in [*np.linspace(0.5 * critical, 1.5 * critical, 41), *near]:
            assert ks_significant(float(d), n, level)[0] == (np.float32(kstwo.sf(d, n)) < level)


def test_the_kolmogorov_limit_bounds_the_exact_p_value_from_above() -> None:
    """The alibi backend skips alibi-detect's exact test for a column whose limit p-value is
    already under the cut (monitoring.backends): that needs kstwo.sf(d, n) <= kstwobign.sf(d
    sqrt(n)) at every window size and level a check can meet."""
    from scipy.stats import kstwo, kstwobign

    for n in (5, 20, 333, 1429, 4545, 20_000, 100_000):
        for p in np.logspace(-250, np.log10(0.3), 60):
            d = float(kstwobign.isf(p)) / np.sqrt(n)
            if d < 1:
                assert kstwo.sf(d, n) <= p


def test_the_alibi_backend_decides_strong_drift_without_its_exact_test() -> None:
    """A window where one column moved far: alibi-detect is asked only about the column near
    its level, and every verdict is the one of its exact test on every column."""
    from alibi_detect.cd import TabularDrift

    from monitoring.backends import make_tests

    rng = np.random.default_rng(3)
    reference = rng.normal(size=(4000, 3))
    window = rng.normal(size=(2000, 3))
    window[:, 0] += 1.0  # far: decided by the limit
    window[:, 1] += 0.07  # near the level: exact test
    tests = make_tests("alibi", reference, [None, None, None], 0.05, "bonferroni")
    cut = 0.05 / 3
    screened = tests.backend.screen(window)[2]
    assert screened[0] < cut < screened[1] < 4 * cut  # the premise: one far, one near
    asked: list[int] = []
    for j, detector in enumerate(tests.backend.detectors):  # type: ignore[union-attr]
        score = detector.feature_score
        detector.feature_score = lambda r, x, j=j, score=score: asked.append(j) or score(r, x)
    result = tests.run(window, np.zeros(3))
    assert 0 not in asked and 1 in asked
    whole = TabularDrift(reference, p_val=0.05).predict(window, drift_type="feature")["data"]
    exact = whole["p_val"]  # its per-feature p-values, each to be under the corrected cut
    assert list(result.significant) == [bool(np.float32(p) < cut) for p in exact]
    assert list(result.significant) == [True, False, False]
    assert result.p_values[0] >= exact[0]


def test_the_monitor_process_keeps_pyarrow_out_and_scikit_learn_working() -> None:
    """`occam monitor` keeps pandas from loading pyarrow (monitoring.keep_pyarrow_out); pandas
    and scikit-learn's metrics (which look for pyarrow in sys.modules) must work as without
    it, and pyarrow must look absent, not broken."""
    code = """
import sys
import monitoring
assert monitoring.keep_pyarrow_out()
import numpy as np, pandas as pd
from sklearn.metrics import roc_auc_score
frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
assert frame.b.str.upper().tolist() == ["X", "Y"]
y = np.array(["0", "1", "0", "1"])
proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.4, 0.6]])
assert roc_auc_score(y == "1", proba[:, 1]) == 1.0
try:
    import pyarrow
except ImportError:
    pass
else:
    raise AssertionError("pyarrow was imported")
print("pyarrow" in sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
