"""Input validation: every request row is checked against the bundle's feature schema before the
model sees it.

A request is all-or-nothing: one bad row refuses the whole request (a 4xx listing every problem
by row, field and reason), so a client never receives answers whose order it has to guess.
Nothing is filled with a silent default: a missing feature is an error, a `null` is accepted
only for features that had missing values in training (the pipeline's imputer knows them).
Numbers are JSON numbers (not strings, not booleans); categories are JSON strings, compared
with the categories seen in training as strings (a code 3 is sent as "3").

Accepted rows may carry *marks* for the monitor (they are logged, not refused):
`unseen_category` (a category never seen in training, when `serving.unseen_category` is
"accept"), `out_of_range` (a number further than `out_of_range_factor` training ranges outside
the training [min, max]) and `missing` (a null accepted for a nullable feature).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Literal

from occam.errors import Problem, Reason, quote
from occam.records import MARK_KINDS
from occam.schema import MISSING_CATEGORY, FeatureSchema

#: The marks of a row without any (shared: never modify a row's marks).
NO_MARKS: dict[str, list[str]] = {kind: [] for kind in MARK_KINDS}
_ABSENT = object()


@dataclass(frozen=True)
class ValidRows:
    """Accepted rows, ready for the predictor and the log.

    `columns` holds one list per feature in schema order: floats (NaN for missing) for numeric
    features, strings (`MISSING_CATEGORY` for missing) for categorical ones: exactly what
    `FeatureSchema.coerce` gives in training. `received` are the rows as sent (NaN replaced by
    null, since the log is strict JSON); `marks` one {kind: [feature, ...]} per row.
    """

    columns: dict[str, list[Any]]
    received: list[dict[str, Any]]
    marks: list[dict[str, list[str]]]

    def __len__(self) -> int:
        return len(self.received)


@dataclass(frozen=True)
class _Feature:
    name: str
    numeric: bool
    nullable: bool
    integer: bool
    categories: frozenset[str]
    low: float
    high: float


class Validator:
    """Checks request rows against `schema`; see the module docstring for the rules.

    `max_rows` is the most rows one request may carry, `unseen_category` the policy for a
    category never seen in training ("reject" or "accept" and mark), `out_of_range_factor` how
    many training ranges beyond [min, max] a number may lie before it is marked,
    `max_string_chars` the longest string a category may be (`serving.limits`).
    """

    def __init__(
        self,
        schema: FeatureSchema,
        *,
        max_rows: int,
        unseen_category: Literal["reject", "accept"],
        out_of_range_factor: float,
        max_string_chars: int = 256,
    ) -> None:
        self.schema = schema
        self.max_string_chars = max_string_chars
        self.max_rows = max_rows
        self.unseen_category = unseen_category
        self.out_of_range_factor = out_of_range_factor
        self._features = tuple(self._compile(spec) for spec in schema.features)
        self._names = frozenset(schema.names)

    def _compile(self, spec: Any) -> _Feature:
        # Finite bounds, so that +-inf never takes the fast path in `_check_row`.
        low, high = -sys.float_info.max, sys.float_info.max
        if spec.kind == "numeric" and spec.minimum is not None and spec.maximum is not None:
            span = spec.maximum - spec.minimum
            margin = self.out_of_range_factor * (span if span > 0 else max(abs(spec.maximum), 1.0))
            low, high = spec.minimum - margin, spec.maximum + margin
        return _Feature(
            name=spec.name,
            numeric=spec.kind == "numeric",
            nullable=spec.nullable,
            integer=spec.kind == "numeric" and spec.dtype == "integer",
            categories=frozenset(spec.categories or ()),
            low=low,
            high=high,
        )

    def check_count(self, count: int, what: str = "instances") -> Problem | None:
        """The request-level problem with a list of `count` rows, if any."""
        if count == 0:
            return Problem(
                None,
                what,
                Reason.EMPTY_REQUEST,
                f"`{what}` is empty; send 1 to {self.max_rows} rows",
            )
        if count > self.max_rows:
            return Problem(
                None,
                what,
                Reason.TOO_MANY_ROWS,
                f"{count} rows in `{what}`; at most {self.max_rows} per request (serving.max_rows)",
            )
        return None

    def validate(self, instances: list[Any]) -> tuple[ValidRows | None, list[Problem]]:
        """Check every row; return the accepted rows, or None and every problem found."""
        problem = self.check_count(len(instances))
        if problem is not None:
            return None, [problem]
        columns: dict[str, list[Any]] = {f.name: [] for f in self._features}
        received: list[dict[str, Any]] = []
        marks: list[dict[str, list[str]]] = []
        problems: list[Problem] = []
        for index, row in enumerate(instances):
            if not isinstance(row, dict):
                problems.append(
                    Problem(
                        index,
                        None,
                        Reason.NOT_AN_OBJECT,
                        f"row {index} is a {_json_type(row)}, not an object of {{feature: value}}",
                    )
                )
                continue
            row_marks, row_problems = self._check_row(index, row, columns)
            problems.extend(row_problems)
            received.append(row if not row_marks["missing"] else _json_safe(row))
            marks.append(row_marks)
        if problems:
            return None, problems
        return ValidRows(columns=columns, received=received, marks=marks), []

    def _check_row(
        self, index: int, row: dict[str, Any], columns: dict[str, list[Any]]
    ) -> tuple[dict[str, list[str]], list[Problem]]:
        marks: dict[str, list[str]] | None = None
        problems: list[Problem] = []
        if len(row) != len(self._names) or not self._names.issuperset(row):
            for name in sorted(set(row) - self._names):
                problems.append(
                    Problem(
                        index,
                        name,
                        Reason.UNKNOWN_FEATURE,
                        f"{quote(name)} is not a feature of this "
                        f"model; features are {sorted(self._names)}",
                    )
                )
        for feature in self._features:
            name = feature.name
            value = row.get(name, _ABSENT)
            kind = type(value)
            # Fast paths for the common case: a number inside the marking bounds (NaN and
            # +-inf fail the comparison), a category seen in training.
            if feature.numeric and (
                kind is int or (kind is float and (not feature.integer or value.is_integer()))
            ):
                if feature.low <= value <= feature.high:
                    columns[name].append(value if kind is float else float(value))
                    continue
            elif kind is str and value in feature.categories:
                columns[name].append(value)
                continue
            if value is _ABSENT:
                problems.append(
                    Problem(
                        index,
                        name,
                        Reason.MISSING_FEATURE,
                        f"feature `{name}` is missing; send "
                        "every feature" + (" (null is allowed)" if feature.nullable else ""),
                    )
                )
                continue
            checked: float | str | Problem
            if feature.numeric:
                checked, mark = self._number(index, feature, value)
            else:
                checked, mark = self._category(index, feature, value)
            if mark is not None:
                marks = marks or {k: [] for k in MARK_KINDS}
                marks[mark].append(name)
            if isinstance(checked, Problem):
                problems.append(checked)
            else:
                columns[name].append(checked)
        return marks or NO_MARKS, problems

    def _number(self, index: int, feature: _Feature, value: Any) -> tuple[Any, str | None]:
        if value is None or (type(value) is float and value != value):  # null or NaN: missing
            return self._missing(index, feature, math.nan)
        if type(value) is bool or not isinstance(value, (int, float)):
            problem = Problem(
                index,
                feature.name,
                Reason.WRONG_TYPE,
                f"`{feature.name}` must be a number, got {_json_type(value)} {quote(value)}",
            )
            return problem, None
        try:
            number = float(value)
        except OverflowError:  # a JSON integer with hundreds of digits
            number = math.inf
        if math.isinf(number):
            return Problem(
                index, feature.name, Reason.NOT_FINITE, f"`{feature.name}` must be finite"
            ), None
        if feature.integer and not number.is_integer():
            problem = Problem(
                index,
                feature.name,
                Reason.NOT_INTEGER,
                f"`{feature.name}` is an integer feature; got {quote(value)}, "
                "which has a fractional part",
            )
            return problem, None
        if number < feature.low or number > feature.high:
            return number, "out_of_range"
        return number, None

    def _category(self, index: int, feature: _Feature, value: Any) -> tuple[Any, str | None]:
        if value is None or (type(value) is float and value != value):
            return self._missing(index, feature, MISSING_CATEGORY)
        if not isinstance(value, str):
            hint = (
                f'; send categories as strings, e.g. "{str(value)[:40]}"'
                if _is_number(value)
                else ""
            )
            problem = Problem(
                index,
                feature.name,
                Reason.WRONG_TYPE,
                f"`{feature.name}` must be a string, got {_json_type(value)} {quote(value)}{hint}",
            )
            return problem, None
        if value in feature.categories:
            return value, None
        if len(value) > self.max_string_chars:
            problem = Problem(
                index,
                feature.name,
                Reason.VALUE_TOO_LONG,
                f"`{feature.name}` is {len(value)} characters long; at most "
                f"{self.max_string_chars} are accepted (serving.limits.max_string_chars): "
                f"{quote(value)}",
            )
            return problem, None
        if self.unseen_category == "reject":
            problem = Problem(
                index,
                feature.name,
                Reason.UNSEEN_CATEGORY,
                f"`{feature.name}` = {quote(value)} was never seen in training; "
                f"known values: {quote(sorted(feature.categories), 200)}",
            )
            return problem, None
        return value, "unseen_category"

    def _missing(self, index: int, feature: _Feature, filler: Any) -> tuple[Any, str | None]:
        if not feature.nullable:
            problem = Problem(
                index,
                feature.name,
                Reason.MISSING_VALUE,
                f"`{feature.name}` is null or NaN, but it was never missing in training; "
                "send a value",
            )
            return problem, None
        return filler, "missing"


def _json_safe(row: dict[str, Any]) -> dict[str, Any]:
    """The row with NaN replaced by null: the log is strict JSON."""
    return {k: (None if type(v) is float and v != v else v) for k, v in row.items()}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__
