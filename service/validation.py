"""Input validation: every request row is checked against the bundle's feature schema before the
model sees it.

A request is all-or-nothing: one bad row refuses the whole request (a 4xx listing every problem
by row, field and reason), so a client never receives answers whose order it has to guess.
Nothing is filled with a silent default: a missing feature is an error, a `null` is accepted
only for features that had missing values in training (the pipeline's imputer knows them).
Numbers are JSON numbers (not strings, not booleans). Categories are compared with the
categories seen in training as text: a JSON string as it is; a JSON number or boolean through
`occam.schema.canonical_text` (the coercion training applied: 12 and 12.0 -> "12", true ->
"True", 2.5 -> "2.5"), accepted only when that text is a category seen in training (it is then
used, and logged, as that text), otherwise refused with `unmatched_category` (422) whatever the
unseen-category policy: a number is never guessed into a new category.

Accepted rows may carry *marks* for the monitor (they are logged, not refused):
`unseen_category` (a category never seen in training, when `serving.unseen_category` is
"accept"), `out_of_range` (a number further than `out_of_range_factor` training ranges outside
the training [min, max]) and `missing` (a null accepted for a nullable feature).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Literal

import numpy as np

from occam.errors import Problem, Reason, quote
from occam.records import MARK_KINDS
from occam.schema import MISSING_CATEGORY, FeatureSchema, canonical_text

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
        # The numeric features (with their schema positions) as the columnar path's vectors.
        self._numeric = tuple((i, f) for i, f in enumerate(self._features) if f.numeric)
        numeric = [f for _, f in self._numeric]
        self._nullable = np.array([f.nullable for f in numeric], dtype=bool)
        self._integer = np.array([f.integer for f in numeric], dtype=bool)
        self._low = np.array([[f.low] for f in numeric], dtype=np.float64).reshape(-1, 1)
        self._high = np.array([[f.high] for f in numeric], dtype=np.float64).reshape(-1, 1)

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
        """Check every row; return the accepted rows, or None and every problem found.

        Requests of at least `COLUMNAR_ROWS` rows are checked column by column first
        (`_validate_columns`); a request that path does not accept whole, and every smaller one,
        is checked row by row (`validate_rows`), which names every problem. Both give the same
        accepted rows (tests/service/test_columnar.py compares them on random batches).
        """
        problem = self.check_count(len(instances))
        if problem is not None:
            return None, [problem]
        if len(instances) >= COLUMNAR_ROWS:
            valid = self._validate_columns(instances)
            if valid is not None:
                return valid, []
        return self.validate_rows(instances)

    def _validate_columns(self, instances: list[Any]) -> ValidRows | None:
        """The accepted rows, checked one feature at a time over all rows (one numpy matrix for
        the numbers, sets for the categories); None when any row has any problem, or a value
        this path leaves to `validate_rows`."""
        width = len(self._features)
        for row in instances:
            if type(row) is not dict or len(row) != width:
                return None
        marked: dict[int, list[tuple[int, str, str]]] = {}  # row: (position, kind, feature)
        unsafe: set[int] = set()  # rows with a null or NaN: logged with null
        recoded: dict[int, dict[str, str]] = {}
        columns: dict[str, list[Any]] = {}
        try:
            numbers = self._number_columns(instances, marked, unsafe)
            if numbers is None:
                return None
            for position, feature in enumerate(self._features):
                if feature.numeric:
                    columns[feature.name] = numbers[feature.name]
                    continue
                values = list(map(itemgetter(feature.name), instances))
                column = self._category_column(position, feature, values, marked, unsafe, recoded)
                if column is None:
                    return None
                columns[feature.name] = column
        except (KeyError, TypeError):  # a row lacks a feature; an unhashable category
            return None
        received: list[dict[str, Any]] = instances
        if unsafe or recoded:
            received = list(instances)
            for index in unsafe | set(recoded):
                row = instances[index]
                if index in unsafe:
                    row = _json_safe(row)
                if index in recoded:
                    row = {**row, **recoded[index]}
                received[index] = row
        marks = [NO_MARKS] * len(instances)
        for index, found in marked.items():
            row_marks: dict[str, list[str]] = {kind: [] for kind in MARK_KINDS}
            for _, kind, name in sorted(found):  # schema order, as the row path marks
                row_marks[kind].append(name)
            marks[index] = row_marks
        return ValidRows(columns=columns, received=received, marks=marks)

    def _number_columns(
        self,
        instances: list[dict[str, Any]],
        marked: dict[int, list[tuple[int, str, str]]],
        unsafe: set[int],
    ) -> dict[str, list[float]] | None:
        """Every numeric feature's column as floats (NaN for missing), marking out-of-range and
        missing values; None at the first problem. Raises KeyError for a missing feature."""
        numeric = self._numeric
        if not numeric:
            return {}
        rows: list[list[Any]] = []
        for _, feature in numeric:
            values = list(map(itemgetter(feature.name), instances))
            kinds = set(map(type, values))
            if not kinds <= _NUMBER_KINDS:
                return None
            if type(None) in kinds:
                values = [math.nan if value is None else value for value in values]
            rows.append(values)
        try:
            matrix = np.array(rows, dtype=np.float64)
        except OverflowError:  # a JSON integer with hundreds of digits
            return None
        missing = np.isnan(matrix)
        if missing.any():
            if (missing.any(axis=1) & ~self._nullable).any():
                return None
            for j, index in zip(*np.nonzero(missing), strict=True):
                position, feature = numeric[j]
                marked.setdefault(int(index), []).append((position, "missing", feature.name))
            unsafe.update(np.flatnonzero(missing.any(axis=0)).tolist())
        if np.isinf(matrix).any():
            return None
        integers = matrix[self._integer]
        if (np.mod(integers, 1) != 0)[~missing[self._integer]].any():
            return None
        outside = (matrix < self._low) | (matrix > self._high)
        if outside.any():
            for j, index in zip(*np.nonzero(outside), strict=True):
                position, feature = numeric[j]
                marked.setdefault(int(index), []).append((position, "out_of_range", feature.name))
        return {feature.name: matrix[j].tolist() for j, (_, feature) in enumerate(numeric)}

    def _category_column(
        self,
        position: int,
        feature: _Feature,
        values: list[Any],
        marked: dict[int, list[tuple[int, str, str]]],
        unsafe: set[int],
        recoded: dict[int, dict[str, str]],
    ) -> list[str] | None:
        distinct = set(values)
        unseen = distinct - feature.categories
        if not unseen:
            return values
        kinds = set(map(type, values))  # all values: the set above holds True for 1
        if bool in kinds and kinds & {int, float}:
            return None  # True == 1 in a set: leave such a mix to the row path
        texts: dict[Any, str] = {}
        for value in unseen:
            if type(value) is str:
                if len(value) > self.max_string_chars or self.unseen_category == "reject":
                    return None
            elif value is None or (type(value) is float and value != value):
                if not feature.nullable:
                    return None
            elif type(value) in _CODE_KINDS:
                try:
                    text = canonical_text(value)
                except (ValueError, OverflowError):
                    return None
                if text is None or text not in feature.categories:
                    return None
                texts[value] = text
            else:
                return None
        column: list[str] = list(values)
        name = feature.name
        for index, value in enumerate(values):
            if value not in unseen:
                continue
            if type(value) is str:
                marked.setdefault(index, []).append((position, "unseen_category", name))
            elif value in texts:
                column[index] = texts[value]
                recoded.setdefault(index, {})[name] = texts[value]
            else:  # null or NaN
                column[index] = MISSING_CATEGORY
                marked.setdefault(index, []).append((position, "missing", name))
                unsafe.add(index)
        return column

    def validate_rows(self, instances: list[Any]) -> tuple[ValidRows | None, list[Problem]]:
        """Check every row one at a time (the reference path, naming every problem)."""
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
            row_marks, row_problems, recoded = self._check_row(index, row, columns)
            problems.extend(row_problems)
            if row_marks["missing"]:
                row = _json_safe(row)
            received.append(row if recoded is None else {**row, **recoded})
            marks.append(row_marks)
        if problems:
            return None, problems
        return ValidRows(columns=columns, received=received, marks=marks), []

    def _check_row(
        self, index: int, row: dict[str, Any], columns: dict[str, list[Any]]
    ) -> tuple[dict[str, list[str]], list[Problem], dict[str, str] | None]:
        """The row's marks, its problems and the categories it sent as numbers or booleans
        ({feature: canonical text}, None when none): the log keeps the text."""
        marks: dict[str, list[str]] | None = None
        problems: list[Problem] = []
        recoded: dict[str, str] | None = None
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
                continue
            columns[name].append(checked)
            if type(checked) is str and kind is not str and checked is not MISSING_CATEGORY:
                recoded = recoded or {}
                recoded[name] = checked
        return marks or NO_MARKS, problems, recoded

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
        if type(value) in (int, float, bool):
            return self._category_code(index, feature, value)
        if not isinstance(value, str):
            problem = Problem(
                index,
                feature.name,
                Reason.WRONG_TYPE,
                f"`{feature.name}` must be a string (or a number or boolean naming a category "
                f"seen in training), got {_json_type(value)} {quote(value)}",
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

    def _category_code(
        self, index: int, feature: _Feature, value: bool | int | float
    ) -> tuple[Any, str | None]:
        """A JSON number or boolean sent for a category: its canonical text when that is a
        category seen in training, else an `unmatched_category` problem saying why."""
        try:
            text = canonical_text(value)
        except (ValueError, OverflowError):  # +-inf: no category text at all
            text = None
        if text is not None and text in feature.categories:
            return text, None
        shown = f"{_json_type(value)} {quote(value)}"
        why = (
            "has no category text"
            if text is None
            else f"reads as the category {quote(text)}, which was never seen in training"
        )
        problem = Problem(
            index,
            feature.name,
            Reason.UNMATCHED_CATEGORY,
            f"`{feature.name}` is categorical; the {shown} {why}; send one of the known "
            f"values (as strings): {quote(sorted(feature.categories), 200)}",
        )
        return problem, None

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


#: Requests of at least this many rows are checked column by column first: below it numpy's
#: fixed cost per call outweighs the per-row Python it saves (measured: about 30 rows).
COLUMNAR_ROWS = 32
#: The value types a numeric column may hold on the columnar path (null: missing).
_NUMBER_KINDS = frozenset({int, float, type(None)})
#: The JSON scalars a category may be sent as besides a string (`canonical_text`).
_CODE_KINDS = frozenset({int, float, bool})


def check_labels(
    labels: Sequence[object], classes: Sequence[str]
) -> tuple[list[str], list[Problem]]:
    """Feedback labels as class names, or the problems: a JSON number or boolean is read as its
    `canonical_text` (1 -> "1", true -> "True"), as training read the target column; a label
    that is (or reads as) no class of the model is an `unknown_label` problem naming it."""
    known = frozenset(classes)
    texts: list[str] = []
    problems: list[Problem] = []
    for index, label in enumerate(labels):
        if type(label) is str and label in known:
            texts.append(label)
            continue
        try:
            text = canonical_text(label)
        except (ValueError, OverflowError):  # +-inf, or not a JSON scalar
            text = None
        if text is not None and text in known:
            texts.append(text)
            continue
        read_as = f" (read as {quote(text)})" if text is not None and text != label else ""
        problems.append(
            Problem(
                index,
                "label",
                Reason.UNKNOWN_LABEL,
                f"label {quote(label)}{read_as} is not a class of this model; classes are "
                f"{quote(list(classes), 200)}",
            )
        )
    return texts, problems


def _json_safe(row: dict[str, Any]) -> dict[str, Any]:
    """The row with NaN replaced by null: the log is strict JSON."""
    return {k: (None if type(v) is float and v != v else v) for k, v in row.items()}


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
