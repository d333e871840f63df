"""`canonical_text`: the one text form of labels and categories (training, serving, feedback)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from occam.schema import canonical_text


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
