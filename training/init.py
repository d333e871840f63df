"""`occam init`: read a CSV once and propose a commented starter `occam.yaml`.

Every decision is a rule stated here (and in the README, "Your own CSV"), written into the file
as a comment beside the key it sets, so the user can see why and change it:

- **Excluded columns.** Constant (at most one distinct value); id-like (a string or integer
  column whose non-missing values are at least 95% distinct, with 50 or more of them, or whose
  name is an id name such as `id`, `user_id`, `idcode`, `rownames` with 20 or more distinct
  values, unless at most `MAX_CATEGORIES` values recur with no new one in later rows: a fixed
  set of entities such as plots or stores, kept as a category); a text column with more than
  `MAX_CATEGORIES` distinct values; a column never
  missing in the rows the model learns from but missing later (the service would refuse those
  rows); a column missing in more than `data.max_missing_share` of the training period's rows;
  a number that follows the time column (`follows_time`: rank correlation with it of at least
  `CLOCK_CORRELATION` over the labelled rows, such as a day count beside a date): a second
  clock, whose production values all lie past the range training saw, so the forest cannot use
  them and every production window would show it drifted.
- **Categorical or numeric.** Strings and booleans are categorical; a numeric column whose
  values are all whole numbers and that has at most `MAX_CODE_VALUES` distinct values is a code
  (categorical), unless later rows (test and production periods) hold a value the rows the
  model learns from never do, such as a count that grows (the service refuses a number that is
  not a known code, so every such row would be refused): then it is numeric; every other
  numeric column is numeric.
- **Time column** (`detect_time`): ISO dates/datetimes in any column (`datetime`); in a
  numeric column named like a time (`year`, `date`, `time`, `ts`, `period`, `t`, ...) the units
  are read as training reads them (`occam.timecol.detect_format`: years, Unix seconds or
  milliseconds, else a period index). Dates beat Unix times beat years beat periods; a name of
  time words only beats one with other words (`year` over `birth_yr`).
- **Split**: the production period starts at the boundary (a month start, a year, a value)
  that leaves closest to 30% of the rows after it; the test split is the last 20% of the rows
  before it.
- **Goals**: a baseline (class shares) and a quick forest on a sample are scored on that test
  split; each goal's threshold is the quick model's score less a safety allowance. A feature
  whose single-feature held-out score (`training.checks.feature_strength`) comes within
  `NEAR_LEAKAGE` of `data.leakage_auc` is marked STRONG with both fixes named.

Nothing here runs at import time; `write_starter` is the only function with side effects.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from occam.config import DataConfig
from occam.metrics import score
from occam.schema import FeatureSchema
from occam.timecol import detect_format, read_time
from training.calibration import decision_weights
from training.checks import NEAR_LEAKAGE, feature_strength
from training.data import DataError, hold_out, load_frame
from training.model import make_pipeline

TimeFormat = Literal["datetime", "year", "period", "unix_s", "unix_ms"]
Role = Literal["numeric", "categorical", "excluded"]

#: A whole-number column with at most this many distinct values is read as category codes.
MAX_CODE_VALUES = 15
#: A text column with more distinct values than this is excluded (a name or free text).
MAX_CATEGORIES = 100
#: Share of distinct non-missing values from which a string or integer column is id-like.
ID_DISTINCT_SHARE = 0.95
#: Rank correlation with the time column from which a number is a second clock (excluded).
CLOCK_CORRELATION = 0.98
#: Share of rows the proposed production period aims at.
PRODUCTION_SHARE = 0.3
#: Share of the training period held out as the test split.
TEST_SIZE = 0.2
#: Default limits the starter config keeps (`data.max_missing_share`, `data.leakage_auc`).
MAX_MISSING_SHARE: float = DataConfig.model_fields["max_missing_share"].default
LEAKAGE_AUC: float = DataConfig.model_fields["leakage_auc"].default

_ID_NAMES = {"id", "idcode", "uuid", "guid", "rownames", "rowname", "index", "unnamed: 0"}
#: A name whose last word is one of these names an identifier (`row_id`, `uid`, `caseUUID`).
_ID_TOKENS = {"id", "uid", "uuid", "guid"}
_YEAR_TOKENS = {"year", "yr", "yyyy", "season"}
_UNIX_TOKENS = {"time", "timestamp", "ts", "epoch", "date", "datetime", "created", "updated", "at"}
_PERIOD_TOKENS = {"period", "step", "tick", "timestep", "t", "time"}
_TIME_WORDS = _YEAR_TOKENS | _UNIX_TOKENS | _PERIOD_TOKENS
_RANK = {"datetime": 0, "unix_s": 1, "unix_ms": 1, "year": 2, "period": 3}
_WHY = {
    "unix_s": "Unix seconds",
    "unix_ms": "Unix milliseconds",
    "year": "whole-number years",
    "period": "a period index",
}
_ISO = re.compile(r"^\d{4}-\d{2}(-\d{2})?([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")


def name_tokens(name: str) -> list[str]:
    """Lower-case words of a column name: `createdAt`, `created_at` -> ['created', 'at']."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", str(name))
    return [t for t in re.split(r"[^a-zA-Z0-9]+", spaced.lower()) if t]


@dataclass(frozen=True)
class Column:
    """The decision on one column: its role and why (the comment written beside it)."""

    name: str
    role: Role
    reason: str


@dataclass(frozen=True)
class TimeColumn:
    """The detected time column: its name, `data.time_format`, and why."""

    name: str
    format: TimeFormat
    reason: str


def _is_whole(values: pd.Series) -> bool:
    numbers = values.dropna().to_numpy(dtype=float)
    return bool(len(numbers)) and bool(np.all(np.mod(numbers, 1) == 0))


def detect_time(frame: pd.DataFrame, target: str) -> TimeColumn | None:
    """The column that orders rows in time, or None; preference: ISO dates, Unix times, years,
    period indexes, then the column with most distinct values."""
    found: list[tuple[int, int, TimeColumn]] = []
    for name in frame.columns:
        if name == target:
            continue
        column = frame[name]
        values = column.dropna()
        if values.empty:
            continue
        tokens = set(name_tokens(name))
        distinct = int(values.nunique())
        if pd.api.types.is_datetime64_any_dtype(column):
            found.append((0, distinct, TimeColumn(name, "datetime", "a date/time column")))
        elif not pd.api.types.is_numeric_dtype(column):
            text = values.astype(str)
            if (
                text.str.match(_ISO).mean() >= 0.99
                and pd.to_datetime(text, errors="coerce", format="ISO8601").notna().all()
            ):
                found.append((0, distinct, TimeColumn(name, "datetime", "ISO dates/times")))
        elif not pd.api.types.is_bool_dtype(column) and tokens & _TIME_WORDS:
            # the units are read as training reads them (occam.timecol); the name only says
            # that the column is a time at all
            fmt = detect_format(values, str(name))
            if fmt == "period" and distinct < (3 if tokens & _YEAR_TOKENS else 10):
                continue
            why = _WHY[fmt]
            if fmt == "period" and tokens & _YEAR_TOKENS:
                why = "named like a year but not 4-digit years: a period index"
            found.append((_RANK[fmt], distinct, TimeColumn(name, fmt, why)))  # type: ignore[arg-type]
    if not found:
        return None
    # a name made of time words only (`year`) is the row's time; `birth_yr` is an attribute
    found.sort(
        key=lambda item: (item[0], len(set(name_tokens(item[2].name)) - _TIME_WORDS), -item[1])
    )
    return found[0][2]


def classify_column(
    column: pd.Series,
    missing_share: float,
    learned_missing: float = 0.0,
    later_missing: float = 0.0,
    later_new: Sequence[Any] = (),
) -> Column:
    """Role of one feature candidate (not the target, not the time column), by the rules in
    the module docstring. `missing_share` is its missing share in the training period;
    `learned_missing` in the rows the model learns from (the first 80% of that period),
    `later_missing` in every later row (test and production periods); `later_new` the values
    of later rows that the rows the model learns from never hold."""
    name = str(column.name)
    values = column.dropna()
    distinct = int(values.nunique())
    if distinct <= 1:
        shown = repr(values.iloc[0]) if distinct else "nothing"
        return Column(name, "excluded", f"constant: every row holds {shown}")
    numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    whole = numeric and _is_whole(values)
    id_name = str(name).lower() in _ID_NAMES or bool(_ID_TOKENS & set(name_tokens(name)[-1:]))
    if id_name and distinct >= 20 and (len(later_new) or distinct > MAX_CATEGORIES):
        return Column(name, "excluded", f"id-like: an id name with {distinct} values")
    if id_name and distinct >= 20:
        return Column(
            name,
            "categorical",
            f"an id name, but {distinct} values that recur and no new one in later rows: a "
            "fixed set of entities (such as plots or stores), a category",
        )
    if (whole or not numeric) and distinct >= 50 and distinct >= ID_DISTINCT_SHARE * len(values):
        return Column(
            name,
            "excluded",
            f"id-like: {distinct / len(values):.0%} of its values are distinct, so it cannot "
            "generalise to new rows",
        )
    if learned_missing == 0 and later_missing > 0:
        return Column(
            name,
            "excluded",
            f"never missing in the rows the model learns from, but missing in {later_missing:.0%}"
            " of later rows: the service refuses a missing value training never saw",
        )
    if missing_share > MAX_MISSING_SHARE:
        return Column(
            name,
            "excluded",
            f"{missing_share:.0%} missing in the training period (over data.max_missing_share="
            f"{MAX_MISSING_SHARE})",
        )
    if not numeric:
        if distinct > MAX_CATEGORIES:
            return Column(
                name, "excluded", f"{distinct} distinct texts: a name or free text, not a category"
            )
        return Column(name, "categorical", f"{distinct} values")
    if whole and distinct <= MAX_CODE_VALUES and not len(later_new):
        return Column(
            name, "categorical", f"codes: {distinct} whole-number values (<= {MAX_CODE_VALUES})"
        )
    if whole and distinct <= MAX_CODE_VALUES:
        shown = ", ".join(f"{v:g}" for v in sorted(later_new)[:3])
        return Column(
            name,
            "numeric",
            f"{distinct} whole-number values, but later rows hold {shown} that the training "
            "rows never do: as category codes the service would refuse those rows",
        )
    return Column(name, "numeric", f"{distinct} distinct values")


def follows_time(column: pd.Series, order: Any) -> float | None:
    """Spearman rank correlation of a numeric column with the time order (`time_order`) over
    the rows holding both; None for a column that is not numeric or too short to tell."""
    if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return None
    times = pd.Series(order, index=column.index)
    if pd.api.types.is_datetime64_any_dtype(times):
        times = (times - times.min()).dt.total_seconds()  # a missing time becomes NaN
    both = pd.DataFrame({"x": column, "t": pd.to_numeric(times, errors="coerce")}).dropna()
    if len(both) < 20 or both["x"].nunique() < 2 or both["t"].nunique() < 2:
        return None
    return float(both["x"].rank().corr(both["t"].rank()))


def time_order(column: pd.Series, time: TimeColumn) -> pd.Series:
    """Sortable values of the time column: timestamps for dates (read as training reads them),
    the column's own numbers otherwise (years, periods and Unix times sort as their times)."""
    if time.format == "datetime":
        return read_time(column, time.name, "datetime").values
    return pd.to_numeric(column, errors="coerce")


@dataclass(frozen=True)
class SplitProposal:
    """`production_start` in the time column's own form (date string or number) and the rows
    it leaves on each side."""

    production_start: str | int | float
    period_rows: int
    production_rows: int
    production_range: tuple[str, str]


def propose_split(frame: pd.DataFrame, time: TimeColumn) -> SplitProposal | None:
    """The boundary leaving closest to `PRODUCTION_SHARE` of the rows after it (between 5% and
    60%, at least 100 rows before it); None when no boundary qualifies."""
    order = time_order(frame[time.name], time).dropna()
    if order.empty:
        return None
    if time.format == "datetime":
        span_days = (order.max() - order.min()).days
        step = "MS" if span_days >= 180 else "D"
        starts = pd.date_range(order.min().normalize(), order.max(), freq=step)
        candidates: list[Any] = [s for s in starts if s > order.min()]
    else:  # every value, or on many-valued columns the values at each percentile from 40
        distinct = np.unique(order.to_numpy())
        if len(distinct) > 500:
            distinct = np.unique(np.quantile(distinct, np.arange(0.4, 0.96, 0.01), method="lower"))
        candidates = list(distinct[distinct > order.min()])
    ordered = np.sort(order.to_numpy())
    n = len(ordered)
    best: tuple[float, Any, int] | None = None
    for start in candidates:
        before_rows = int(np.searchsorted(ordered, np.asarray(start, dtype=ordered.dtype)))
        after = (n - before_rows) / n
        if not 0.05 <= after <= 0.6 or before_rows < 100:
            continue
        if best is None or abs(after - PRODUCTION_SHARE) < abs(best[0] - PRODUCTION_SHARE):
            best = (after, start, before_rows)
    if best is None:
        return None
    _, start, before_rows = best
    return SplitProposal(
        production_start=_as_config_value(start, time),
        period_rows=before_rows,
        production_rows=n - before_rows,
        production_range=(_shown(ordered[before_rows], time), _shown(ordered[-1], time)),
    )


def _as_config_value(value: Any, time: TimeColumn) -> str | int | float:
    if time.format == "datetime":
        return str(pd.Timestamp(value).date())
    number = float(value)
    return int(number) if number.is_integer() else number


def _shown(value: Any, time: TimeColumn) -> str:
    if time.format in ("year", "period"):
        return f"{float(value):g}"
    if time.format != "datetime":
        unit = "s" if time.format == "unix_s" else "ms"
        return f"{int(value)} ({pd.Timestamp(int(value), unit=unit).isoformat()})"
    stamp = pd.Timestamp(value)
    return str(stamp.date()) if stamp == stamp.normalize() else stamp.isoformat()


@dataclass(frozen=True)
class GoalProposal:
    """One proposed goal: the baseline's and the quick model's scores on the test split and the
    threshold proposed (the quick model's score less `allowance`, in hundredths)."""

    metric: str
    baseline: float
    quick_model: float
    allowance: float
    threshold: float
    weak: bool  # the quick model does not clear the baseline by the margin


@dataclass(frozen=True)
class QuickScore:
    goals: list[GoalProposal]
    train_rows: int
    test_rows: int
    strong_features: dict[str, float] = field(default_factory=dict)


def quick_split(
    period: pd.DataFrame, target: str, seed: int, timed: bool
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows `occam train` trains on and holds out under the starter config: with a time
    column (`timed`) the first 80% of `period` (in time order) and the rest; without one the
    stratified random 20% that `test_strategy: random` draws with `seed`
    (`training.data.split_frame`)."""
    try:
        early, late = hold_out(period, target, TEST_SIZE, "time" if timed else "random", seed)
    except ValueError:  # a class too rare to stratify: training names it with the fix
        early, late = hold_out(period, target, TEST_SIZE, "time", seed)
    return period.iloc[np.sort(early)], period.iloc[np.sort(late)]


def quick_goals(
    period: pd.DataFrame,
    target: str,
    numeric: list[str],
    categorical: list[str],
    margin: float,
    seed: int,
    max_rows: int = 20_000,
    timed: bool = True,
) -> QuickScore:
    """Score the class-share baseline and a 50-tree forest (trained on at most `max_rows` of
    the rows `occam train` trains on) on the rows it holds out, and propose goals: balanced
    accuracy (fair to every class) and ROC AUC (ranking). The held-out rows are training's
    own: with a time column (`timed`) the last 20% of `period`, which is in time order;
    without one the stratified random 20% that `test_strategy: random` draws with `seed`."""
    train, test = quick_split(period, target, seed, timed)
    if len(test) < 20:
        raise DataError(
            f"only {len(period)} labelled row(s) in the training period: too few to train and "
            "test a model (Occam needs a few hundred)"
        )
    if len(train) > max_rows:
        train = train.sample(max_rows, random_state=seed).sort_index()
    schema = FeatureSchema.from_frame(train, numeric, categorical)
    y_train = train[target].astype(str).to_numpy()
    y_test = test[target].astype(str).to_numpy()
    classes = sorted(set(y_train.tolist()) | set(y_test.tolist()))
    params = {"n_estimators": 50, "min_samples_leaf": 5, "n_jobs": 1}
    model = make_pipeline(schema.numeric, schema.categorical, params, seed)
    model.fit(schema.coerce(train), y_train)
    own = [str(c) for c in model.classes_]
    proba = np.zeros((len(test), len(classes)))
    proba[:, [classes.index(c) for c in own]] = model.predict_proba(schema.coerce(test))
    shares = pd.Series(y_train).value_counts(normalize=True)
    prior = np.tile([shares.get(c, 0.0) for c in classes], (len(test), 1))
    weights = decision_weights("balanced", y_train, classes)
    rarest = str(shares.idxmin())
    goals = []
    rng = np.random.default_rng(seed)
    for metric in ("balanced_accuracy", "roc_auc"):
        model_score = score(metric, y_test, proba, classes, rarest, weights)
        base = score(metric, y_test, prior, classes, rarest)
        draws = []
        for _ in range(30):
            idx = rng.integers(0, len(y_test), len(y_test))
            draws.append(score(metric, y_test[idx], proba[idx], classes, rarest, weights))
        allowance = max(0.02, 2 * float(np.nanstd(draws)))
        threshold = math.floor((model_score - allowance) * 100) / 100
        if not np.isfinite(threshold):  # undefined on these rows (e.g. a single class in them)
            threshold = math.ceil((base + margin) * 100) / 100 if np.isfinite(base) else 0.5
        weak = not threshold >= base + margin
        goals.append(
            GoalProposal(
                metric,
                round(base, 4),
                round(model_score, 4),
                round(allowance, 4),
                max(threshold, 0.0),
                weak,
            )
        )
    strong = {}
    for name in [*schema.numeric, *schema.categorical]:
        strength = feature_strength(
            name,
            train[name],
            train[target],
            test[name],
            test[target],
            name in schema.numeric,
            seed,
        )
        if strength.score >= LEAKAGE_AUC - NEAR_LEAKAGE:
            strong[name] = round(strength.score, 3)
    return QuickScore(goals, len(train), len(test), strong)


@dataclass(frozen=True)
class Starter:
    """Everything `occam init` decided, and the config text it renders."""

    data_path: Path
    target: str
    columns: list[Column]
    time: TimeColumn | None
    split: SplitProposal | None
    class_counts: dict[str, int]
    quick: QuickScore
    text: str
    unlabelled: int = 0  # rows whose target is missing (training refuses them)

    @property
    def numeric(self) -> list[str]:
        return [c.name for c in self.columns if c.role == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [c.name for c in self.columns if c.role == "categorical"]

    @property
    def excluded(self) -> list[str]:
        return [c.name for c in self.columns if c.role == "excluded"]


def _before(frame: pd.DataFrame, time: TimeColumn | None, split: SplitProposal | None) -> Any:
    """The training period (rows before `production_start`) in time order."""
    if time is None:
        return frame
    order = time_order(frame[time.name], time)
    if split is not None:
        start = split.production_start
        bound = pd.Timestamp(start) if time.format == "datetime" else float(start)
        frame, order = frame[order < bound], order[order < bound]
    return frame.iloc[np.asarray(order.argsort(kind="stable"))]


def propose(
    frame: pd.DataFrame,
    target: str,
    data_path: Path,
    config_dir: Path,
    quick: bool = False,
    seed: int = 0,
) -> Starter:
    """Decide every key of the starter config for `frame` (read from `data_path`) and render
    it for a config file in `config_dir`. Raises `DataError` naming the column when the target
    cannot be used."""
    if target not in frame.columns:
        raise DataError(
            f"--target {target!r} is not a column of {data_path}; columns: "
            f"{', '.join(map(str, frame.columns))}"
        )
    labelled = frame[frame[target].notna()]
    counts = labelled[target].astype(str).value_counts()
    if len(counts) < 2:
        raise DataError(f"target column {target!r} holds {len(counts)} class(es); need 2 or more")
    if len(counts) > 50:
        raise DataError(
            f"target column {target!r} holds {len(counts)} distinct values: Occam trains "
            "classifiers; pick a column with a few classes (or bin this one into a new column)"
        )
    time = detect_time(labelled, target)
    split = propose_split(labelled, time) if time is not None else None
    period = _before(labelled, time, split)
    learned = period.iloc[: round(len(period) * (1 - TEST_SIZE))]
    later = labelled.drop(index=learned.index)
    columns = [
        classify_column(
            labelled[name],
            float(period[name].isna().mean()),
            float(learned[name].isna().mean()),
            float(later[name].isna().mean()) if len(later) else 0.0,
            _new_values(learned[name], later[name]),
        )
        for name in labelled.columns
        if name != target and (time is None or name != time.name)
    ]
    if time is not None:
        order = time_order(labelled[time.name], time)
        columns = [_unless_clock(c, labelled[c.name], order, time.name) for c in columns]
    numeric = [c.name for c in columns if c.role == "numeric"]
    categorical = [c.name for c in columns if c.role == "categorical"]
    if not numeric and not categorical:
        raise DataError(
            f"no usable feature in {data_path}: every column other than the target is excluded "
            f"({'; '.join(f'{c.name}: {c.reason}' for c in columns)})"
        )
    margin = 0.02
    scored = quick_goals(period, target, numeric, categorical, margin, seed, timed=time is not None)
    starter = Starter(
        data_path=data_path,
        target=target,
        columns=columns,
        time=time,
        split=split,
        class_counts={str(k): int(v) for k, v in period[target].astype(str).value_counts().items()},
        quick=scored,
        text="",
        unlabelled=len(frame) - len(labelled),
    )
    text = render(starter, config_dir, quick=quick, margin=margin, seed=seed)
    return Starter(**{**starter.__dict__, "text": text})


def _new_values(learned: pd.Series, later: pd.Series) -> list[Any]:
    """The values of `later` that `learned` never holds (numbers compared as numbers, anything
    else as text)."""

    def numeric(column: pd.Series) -> bool:
        return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)

    if numeric(learned) and numeric(later):
        return sorted(set(later.dropna().tolist()) - set(learned.dropna().tolist()))
    return sorted(set(later.dropna().astype(str)) - set(learned.dropna().astype(str)))


def _unless_clock(column: Column, values: pd.Series, order: Any, time: str) -> Column:
    """`column`, or excluded when its numbers follow the time column (a second clock)."""
    if column.role == "excluded":
        return column
    rho = follows_time(values, order)
    if rho is None or abs(rho) < CLOCK_CORRELATION:
        return column
    return Column(
        column.name,
        "excluded",
        f"follows the time column {time} (rank correlation {rho:.3f}): a second clock, past "
        "the training range in production, so the model cannot use it and it drifts in every "
        "window",
    )


def write_starter(
    data_path: Path,
    target: str,
    out: Path,
    force: bool = False,
    quick: bool = False,
    seed: int = 0,
) -> Starter:
    """Read `data_path`, propose a config and write it to `out`. Refuses (FileExistsError) to
    replace an existing `out` unless `force`; writes through a temporary file so a failure
    never leaves half a config."""
    if out.exists() and not force:
        raise FileExistsError(
            f"{out} exists; pass --force to replace it, or --out to write elsewhere"
        )
    frame = load_frame(data_path)
    starter = propose(frame, target, data_path.resolve(), out.resolve().parent, quick, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text(starter.text)
    partial.replace(out)
    return starter


# --- rendering ---------------------------------------------------------------------------


def _q(value: Any) -> str:
    """A YAML scalar: strings double-quoted (JSON escapes are valid YAML), numbers as is."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def _has_key(model: Any, key: str) -> bool:
    return key in model.model_fields


def _feature_lines(key: str, columns: list[Column], strong: dict[str, float]) -> list[str]:
    if not columns:
        return [f"  {key}: []"]
    lines = [f"  {key}:"]
    for column in columns:
        note = column.reason
        if column.name in strong:
            note += (
                f"; STRONG: alone it ranks held-out classes with ROC AUC {strong[column.name]} "
                f"(card warns from data.leakage_auc={LEAKAGE_AUC}). Known only after the label? "
                "Move it to `exclude`. Known before? Name it in `allow_strong_features`"
            )
        lines.append(f"    - {_q(column.name)}  # {note}")
    return lines


def _time_lines(starter: Starter) -> list[str]:
    from occam.config import DataConfig, SplitConfig

    time, split = starter.time, starter.split
    if time is None:
        return [
            "  # no time column found (ISO dates, years, Unix times or a period index):",
            "  # rows are split at random. Name one in `time_column` if the rows have a time.",
            "  split:",
            f"    test_size: {TEST_SIZE}",
            "    test_strategy: random",
        ]
    lines = [f"  time_column: {_q(time.name)}  # detected: {time.reason}"]
    fmt = f"time_format: {time.format}"
    if time.format != "datetime" or _has_key(DataConfig, "time_format"):
        lines.append(f"  {fmt}")
    else:
        lines.append(f"  # {fmt}  (needs an Occam that knows `data.time_format`)")
    lines.append("  split:")
    if split is None:
        lines.append("    # no boundary leaves 5-60% of the rows after it: no production period")
    else:
        share = split.production_rows / (split.production_rows + split.period_rows)
        low, high = split.production_range
        lines += [
            f"    # production period: {split.production_rows:,} rows ({share:.0%}) from {low} "
            f"to {high};",
            "    # never trained on: replay it through the service to see the model age",
            f"    production_start: {_q(split.production_start)}",
        ]
    lines += [
        f"    test_size: {TEST_SIZE}  # the last 20% of the rows before it: held-out test set",
        "    test_strategy: time",
    ]
    if split is not None and not _has_key(SplitConfig, "test_start"):
        lines.append("    # test_start: a boundary instead of test_size (newer Occam versions)")
    return lines


def _goal_lines(starter: Starter, margin: float) -> list[str]:
    quick = starter.quick
    lines = [
        "# Goals are a product decision: what must the model achieve to be worth serving?",
        "# The thresholds below are only a starting point, from a quick check on this data:",
        f"# the class-share baseline and a 50-tree forest (trained on {quick.train_rows:,} rows)",
        f"# scored on the {quick.test_rows:,} held-out test rows; each threshold is the quick",
        "# model's score less an allowance for noise (2 bootstrap standard deviations, >= 0.02).",
        "# Raise them to what the product needs; `occam train` refuses to promote a model below.",
        "goals:",
    ]
    for goal in quick.goals:
        lines += [
            f"  - metric: {goal.metric}",
            f"    threshold: {goal.threshold:.2f}  # quick model {goal.quick_model:.3f}, "
            f"baseline {goal.baseline:.3f}, allowance {goal.allowance:.3f}",
        ]
        if goal.weak:
            lines.append(
                "    # WARNING: the quick model barely beats the baseline on this goal; the "
                "data may not hold the signal needed"
            )
    rarest = min(starter.class_counts, key=lambda c: starter.class_counts[c])
    lines += [
        f"# goals_positive_label: {_q(rarest)}  # the class f1/precision/recall/average_precision",
        "#   goals refer to (default: the rarer class)",
        "",
        "baseline:",
        "  strategy: prior  # predicts the class shares of the training rows",
        f"  margin: {margin}  # the model must beat the baseline by this on every goal",
    ]
    return lines


def _model_lines(quick: bool) -> list[str]:
    if quick:
        search = ["  n_candidates: 2", "  max_rounds: 2", "  min_rounds: 1", "  cv: 2"]
        trees, bootstrap = 30, 50
    else:
        search = ["  n_candidates: 6", "  max_rounds: 4", "  min_rounds: 2", "  cv: 3"]
        trees, bootstrap = 100, 500
    return [
        "model:",
        "  params:",
        f"    n_estimators: {trees}",
        "    class_weight: balanced_subsample  # every class counts, however rare",
        "",
        "search:  # a converging random search (see README: Training)",
        "  space:",
        "    min_samples_leaf: {low: 1, high: 200, log: true}",
        "    max_features: {low: 0.1, high: 1.0}",
        *search,
        "  n_jobs: 1",
        "",
        "evaluation:",
        f"  bootstrap: {bootstrap}",
    ]


def render(starter: Starter, config_dir: Path, quick: bool, margin: float, seed: int) -> str:
    """The commented YAML text of the starter config (paths relative to `config_dir` when the
    data lies under it)."""
    path = starter.data_path
    shown = path.relative_to(config_dir) if path.is_relative_to(config_dir) else path
    stem = re.sub(r"[^a-z0-9_.-]+", "-", path.name.split(".")[0].lower()).strip("-._") or "data"
    counts = starter.class_counts
    total = sum(counts.values())
    balance = ", ".join(f"{k}: {v:,} ({v / total:.1%})" for k, v in counts.items())
    excluded = [c for c in starter.columns if c.role == "excluded"]
    lines = [
        f"# Starter config written by `occam init {path.name} --target {starter.target}`.",
        "# Every choice below is a proposal with its reason; read it, edit it, then run",
        "#   occam train --config <this file>",
        f"project: {_q(stem)}",
        f"seed: {seed}",
        "",
        "data:",
        f"  path: {_q(str(shown))}",
        f"  target: {_q(starter.target)}",
        f"  # class balance (training period, {total:,} rows): {balance}",
        *(
            [
                f"  # WARNING: {starter.unlabelled:,} row(s) have no {starter.target}: training "
                "refuses them; drop them from the file or label them"
            ]
            if starter.unlabelled
            else []
        ),
        *_time_lines(starter),
        "  # features: whole-number columns with at most "
        f"{MAX_CODE_VALUES} distinct values are category codes",
        *_feature_lines(
            "numeric",
            [c for c in starter.columns if c.role == "numeric"],
            starter.quick.strong_features,
        ),
        *_feature_lines(
            "categorical",
            [c for c in starter.columns if c.role == "categorical"],
            starter.quick.strong_features,
        ),
        *_feature_lines("exclude", excluded, {}),
        "",
        *_goal_lines(starter, margin),
        "",
        *_model_lines(quick),
        "",
        "output:",
        f"  model_name: {_q('occam-' + stem)}",
        "  reports_dir: reports",
        "",
    ]
    return "\n".join(lines)
