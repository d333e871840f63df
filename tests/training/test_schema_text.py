"""`canonical_text`: the one text form of labels and categories (training, serving, feedback)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from occam.schema import MISSING_CATEGORY, FeatureSchema, canonical_text


def test_strings_are_kept_as_they_are() -> None:
    assert canonical_text("3") == "3"
    assert canonical_text("12.0") == "12.0"
    assert canonical_text(" spaced ") == " spaced "
    assert canonical_text("") == ""


def test_integers_become_their_digits_and_match_the_same_string() -> None:
    assert canonical_text(3) == "3" == canonical_text("3")
    assert canonical_text(-7) == "-7"
    assert canonical_text(np.int64(12)) == "12"
    assert canonical_text(np.int8(0)) == "0"


def test_integral_floats_are_integers() -> None:
    assert canonical_text(12.0) == "12"
    assert canonical_text(np.float64(12.0)) == "12"
    assert canonical_text(-0.0) == "0"
    assert canonical_text(1e16) == "10000000000000000"


def test_other_finite_floats_use_repr() -> None:
    assert canonical_text(0.5) == "0.5"
    assert canonical_text(np.float32(0.25)) == "0.25"
    assert canonical_text(2.675) == repr(2.675)


def test_booleans_match_pandas_astype_str() -> None:
    assert canonical_text(True) == "True"
    assert canonical_text(False) == "False"
    assert canonical_text(np.bool_(True)) == "True"
    assert list(pd.Series([True, False]).astype(str)) == [
        canonical_text(True),
        canonical_text(False),
    ]


@pytest.mark.parametrize("missing", [None, math.nan, np.nan, np.float64("nan"), pd.NA, pd.NaT])
def test_missing_values_are_none(missing: object) -> None:
    assert canonical_text(missing) is None


@pytest.mark.parametrize("bad", [math.inf, -math.inf, [1], {"a": 1}, b"x", pd.Timestamp(0)])
def test_anything_else_is_a_value_error(bad: object) -> None:
    with pytest.raises(ValueError):
        canonical_text(bad)


def test_a_code_column_with_gaps_maps_like_the_integer_column() -> None:
    # What read_csv gives an integer code column with gaps: floats and NaN.
    with_gaps = pd.Series([12, None, 3]).astype(float)
    assert [canonical_text(v) for v in with_gaps] == ["12", None, "3"]
    assert [canonical_text(v) for v in pd.Series([12, 3])] == ["12", "3"]


def test_schema_learns_numeric_codes_as_their_text() -> None:
    frame = pd.DataFrame(
        {
            "code": [12.0, 3.0, None, 12.0],  # an integer code column with a gap
            "flag": [True, False, True, True],
            "x": [1, 2, 3, 4],
            "y": [0.5, 1.5, None, 2.0],
        }
    )
    schema = FeatureSchema.from_frame(frame, numeric=["x", "y"], categorical=["code", "flag"])
    assert schema["code"].categories == ("12", "3") and schema["code"].nullable
    assert schema["flag"].categories == ("False", "True")
    assert schema["x"].dtype == "integer" and schema["y"].dtype == "number"
    assert schema["y"].missing_share == 0.25 and schema["y"].maximum == 2.0


@pytest.mark.parametrize("sent", [3, "3", 3.0, np.int64(3)])
def test_a_category_sent_as_3_or_as_text_is_the_same_category(sent: object) -> None:
    schema = FeatureSchema.from_frame(pd.DataFrame({"c": [3, 4]}), numeric=[], categorical=["c"])
    coerced = schema.coerce(pd.DataFrame({"c": [sent, None]}, dtype=object))
    assert list(coerced["c"]) == ["3", MISSING_CATEGORY]


def test_coercion_keeps_numbers_as_floats_and_missing_as_nan() -> None:
    schema = FeatureSchema.from_frame(
        pd.DataFrame({"n": [1, 2], "c": ["a", "b"]}), numeric=["n"], categorical=["c"]
    )
    coerced = schema.coerce(pd.DataFrame({"n": ["7", None], "c": ["a", float("nan")]}))
    assert coerced["n"].dtype == float and coerced["n"].iloc[0] == 7.0
    assert np.isnan(coerced["n"].iloc[1])
    assert list(coerced["c"]) == ["a", MISSING_CATEGORY]
