"""The feature schema: what a valid input row looks like, learned from the training data.

Training writes it into the bundle; the service validates requests against it; the monitor uses
it to split numeric and categorical drift tests and to flag unseen categories and out-of-range
numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

Kind = Literal["numeric", "categorical"]
#: What a missing categorical value becomes before the pipeline sees it (sklearn and ONNX agree
#: on a string; they do not agree on NaN inside string columns).
MISSING_CATEGORY = "__missing__"


def canonical_text(value: object) -> str | None:
    """The one text form of a label or categorical value, or None when the value is missing.

    Training (target column, categorical columns, `goals_positive_label`,
    `labels.unknown_values`), serving (a categorical value sent as a JSON number or boolean) and
    feedback (`"label": 1`) all go through this, so the same value means the same category
    everywhere. Rules: a string is kept as it is; a boolean becomes "True"/"False" (what pandas
    `astype(str)` gives); an integer becomes its decimal digits; an integral float becomes the
    integer's digits (12.0 -> "12", as pandas reads an integer code column that has gaps); any
    other finite float becomes `repr` (0.5 -> "0.5"); None, NaN and pandas' missing markers are
    None. NumPy scalars follow the rule of their Python kind. Raises `ValueError` on anything else
    (an infinite float, a list, a date...), naming the value's type.
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return "True" if value else "False"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if math.isnan(number):
            return None
        if not math.isfinite(number):
            raise ValueError(f"{number!r} is not a category or label value (it is infinite)")
        if number.is_integer():
            return str(int(number))
        return repr(number)
    raise ValueError(
        f"{value!r} ({type(value).__name__}) is not a category or label value; "
        "use a string, a number or a boolean"
    )


@dataclass(frozen=True)
class FeatureSpec:
    """One input feature.

    `categories` is the sorted list of values seen in training (categorical only); `minimum` and
    `maximum` the observed range (numeric only); `missing_share` the share of missing values in
    training; `nullable` whether a missing value is accepted at serving time (it was seen in
    training, so the pipeline's imputer knows what to do with it).
    """

    name: str
    kind: Kind
    dtype: str
    nullable: bool
    missing_share: float
    categories: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class FeatureSchema:
    features: tuple[FeatureSpec, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def numeric(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "categorical"]

    def __getitem__(self, name: str) -> FeatureSpec:
        for spec in self.features:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @classmethod
    def from_frame(
        cls, frame: pd.DataFrame, numeric: list[str], categorical: list[str]
    ) -> FeatureSchema:
        """Learn the schema of `frame` for the given numeric and categorical columns."""
        specs: list[FeatureSpec] = []
        for name in frame.columns:
            if name not in numeric and name not in categorical:
                continue
            column = frame[name]
            missing = float(column.isna().mean())
            if name in numeric:
                values = pd.to_numeric(column, errors="coerce").dropna()
                specs.append(
                    FeatureSpec(
                        name=name,
                        kind="numeric",
                        dtype="integer" if _is_integral(values) else "number",
                        nullable=missing > 0,
                        missing_share=round(missing, 6),
                        minimum=float(values.min()) if len(values) else None,
                        maximum=float(values.max()) if len(values) else None,
                    )
                )
            else:
                cats = tuple(sorted({t for t in column.map(category_text) if t is not None}))
                specs.append(
                    FeatureSpec(
                        name=name,
                        kind="categorical",
                        dtype="string",
                        nullable=missing > 0,
                        missing_share=round(missing, 6),
                        categories=cats,
                    )
                )
        return cls(features=tuple(specs))

    def to_dict(self) -> dict[str, Any]:
        return {"features": [asdict(f) for f in self.features]}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FeatureSchema:
        specs = []
        for item in raw["features"]:
            item = dict(item)
            if item.get("categories") is not None:
                item["categories"] = tuple(item["categories"])
            specs.append(FeatureSpec(**item))
        return cls(features=tuple(specs))

    def coerce(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Columns in schema order with training dtypes: floats for numeric, objects for the rest.

        Categorical values are turned into their canonical text (`canonical_text`) and missing
        ones into `MISSING_CATEGORY`, so a category seen as the integer 3 or 3.0 in a CSV and as
        "3" in JSON is the same category.
        """
        out = pd.DataFrame(index=frame.index)
        for spec in self.features:
            column = frame[spec.name]
            if spec.kind == "numeric":
                out[spec.name] = pd.to_numeric(column, errors="coerce").astype(float)
            else:
                out[spec.name] = column.map(category_key)
        return out


def category_key(value: object) -> str:
    """The category a training or serving value is to the model: its `category_text`, and
    `MISSING_CATEGORY` for a missing value. Training's schema, checks and slices all use it."""
    text = category_text(value)
    return MISSING_CATEGORY if text is None else text


def category_text(value: object) -> str | None:
    """`canonical_text`, except that a value it refuses (an infinite float, a date object read
    from Parquet) keeps its `str` form: a column of training data is never refused here."""
    try:
        return canonical_text(value)
    except ValueError:
        return str(value)


def _is_integral(values: pd.Series) -> bool:
    if not len(values):
        return False
    return bool(np.all(np.mod(values.to_numpy(dtype=float), 1) == 0))
