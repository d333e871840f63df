"""Validation rules, called directly: each bad input kind gives its reason, row and field."""

from __future__ import annotations

import math
from typing import Any

import pytest

from occam import errors as p
from occam.errors import Reason
from occam.schema import MISSING_CATEGORY, FeatureSchema, FeatureSpec
from service.validation import Validator, check_labels

SCHEMA = FeatureSchema(
    features=(
        FeatureSpec("distance", "numeric", "integer", False, 0.0, minimum=100.0, maximum=300.0),
        FeatureSpec("temp", "numeric", "number", True, 0.1, minimum=-10.0, maximum=30.0),
        FeatureSpec("origin", "categorical", "string", False, 0.0, categories=("EWR", "JFK")),
        FeatureSpec("carrier", "categorical", "string", True, 0.2, categories=("AA", "UA")),
    )
)
ROW = {"distance": 200, "temp": 12.5, "origin": "JFK", "carrier": "UA"}


def validator(**kwargs: Any) -> Validator:
    options = {"max_rows": 5, "unseen_category": "accept", "out_of_range_factor": 0.5, **kwargs}
    return Validator(SCHEMA, **options)


def only_problem(rows: list[Any], **kwargs: Any) -> p.Problem:
    valid, problems = validator(**kwargs).validate(rows)
    assert valid is None
    assert len(problems) == 1, problems
    return problems[0]


def test_a_valid_row_gives_training_coerced_columns_and_no_marks() -> None:
    # An integer feature takes a JSON number without a fractional part, 150.0 as well as 150.
    valid, problems = validator().validate([ROW, {**ROW, "distance": 150.0, "temp": 3}])
    assert problems == []
    assert valid is not None and len(valid) == 2
    assert valid.columns == {
        "distance": [200.0, 150.0],
        "temp": [12.5, 3.0],
        "origin": ["JFK", "JFK"],
        "carrier": ["UA", "UA"],
    }
    assert valid.received == [ROW, {**ROW, "distance": 150.0, "temp": 3}]
    assert valid.marks[0] == {"unseen_category": [], "out_of_range": [], "missing": []}


@pytest.mark.parametrize(
    ("row", "reason", "field"),
    [
        ({k: v for k, v in ROW.items() if k != "temp"}, Reason.MISSING_FEATURE, "temp"),
        ({**ROW, "colour": "red"}, Reason.UNKNOWN_FEATURE, "colour"),
        ({**ROW, "distance": "200"}, Reason.WRONG_TYPE, "distance"),
        ({**ROW, "distance": True}, Reason.WRONG_TYPE, "distance"),
        ({**ROW, "distance": [200]}, Reason.WRONG_TYPE, "distance"),
        ({**ROW, "origin": 3}, Reason.UNMATCHED_CATEGORY, "origin"),
        ({**ROW, "origin": {"code": "JFK"}}, Reason.WRONG_TYPE, "origin"),
        ({**ROW, "origin": ["JFK"]}, Reason.WRONG_TYPE, "origin"),
        ({**ROW, "distance": None}, Reason.MISSING_VALUE, "distance"),
        ({**ROW, "distance": math.nan}, Reason.MISSING_VALUE, "distance"),
        ({**ROW, "origin": None}, Reason.MISSING_VALUE, "origin"),
        ({**ROW, "distance": math.inf}, Reason.NOT_FINITE, "distance"),
        ({**ROW, "temp": -math.inf}, Reason.NOT_FINITE, "temp"),
        ({**ROW, "distance": 10**400}, Reason.NOT_FINITE, "distance"),
        ({**ROW, "distance": 150.5}, Reason.NOT_INTEGER, "distance"),
        ({**ROW, "distance": 1e3 + 0.25}, Reason.NOT_INTEGER, "distance"),  # out of range too
        ({**ROW, "origin": "x" * 300}, Reason.VALUE_TOO_LONG, "origin"),
    ],
)
def test_each_bad_value_is_refused_naming_row_field_and_reason(
    row: dict[str, Any], reason: str, field: str
) -> None:
    problem = only_problem([ROW, row])
    assert (problem.row, problem.field, problem.reason) == (1, field, reason)
    assert field in problem.message


CODES = FeatureSchema(
    features=(
        FeatureSpec("gear", "categorical", "string", True, 0.1, categories=("12", "2.5", "7")),
        FeatureSpec("flag", "categorical", "string", False, 0.0, categories=("False", "True")),
    )
)
CODE_ROW = {"gear": "12", "flag": "True"}


def code_validator(**kwargs: Any) -> Validator:
    options = {"max_rows": 50, "unseen_category": "accept", "out_of_range_factor": 0.5, **kwargs}
    return Validator(CODES, **options)


@pytest.mark.parametrize("policy", ["accept", "reject"])
@pytest.mark.parametrize(
    ("gear", "flag", "text"),
    [(12, True, "12"), (12.0, False, "12"), (2.5, True, "2.5"), (7, False, "7")],
)
def test_a_category_sent_as_a_number_or_boolean_that_reads_as_a_known_one_is_it(
    gear: Any, flag: bool, text: str, policy: Any
) -> None:
    """Rows straight from pandas records: 12, 12.0 and "12" are the same category, as training
    read them (`canonical_text`); the log keeps the text, so the monitor sees one category."""
    as_text = code_validator(unseen_category=policy).validate([{"gear": text, "flag": str(flag)}])
    as_code = code_validator(unseen_category=policy).validate([{"gear": gear, "flag": flag}])
    assert as_code[1] == [] and as_text[1] == []
    assert as_code[0] is not None and as_text[0] is not None
    assert as_code[0].columns == as_text[0].columns == {"gear": [text], "flag": [str(flag)]}
    assert as_code[0].received == as_text[0].received == [{"gear": text, "flag": str(flag)}]
    assert as_code[0].marks == as_text[0].marks


@pytest.mark.parametrize("policy", ["accept", "reject"])
@pytest.mark.parametrize(
    ("gear", "why"),
    [
        (3, "reads as the category '3', which was never seen in training"),
        (12.5, "reads as the category '12.5', which was never seen in training"),
        (True, "reads as the category 'True', which was never seen in training"),
        (10**400, "which was never seen in training"),
    ],
)
def test_a_number_or_boolean_that_reads_as_no_known_category_is_a_422_naming_why(
    gear: Any, why: str, policy: Any
) -> None:
    """Never guessed into a new category, whatever the unseen-category policy."""
    valid, problems = code_validator(unseen_category=policy).validate(
        [CODE_ROW, {**CODE_ROW, "gear": gear}]
    )
    assert valid is None and len(problems) == 1
    [problem] = problems
    assert (problem.row, problem.field, problem.reason) == (1, "gear", Reason.UNMATCHED_CATEGORY)
    assert problem.reason.status == 422 and p.status_of(problems) == 422
    assert "`gear` is categorical" in problem.message and why in problem.message
    assert "'12'" in problem.message  # the known values are named
    assert len(problem.message) <= p.MAX_MESSAGE_CHARS


def test_a_null_or_nan_code_is_still_a_missing_value() -> None:
    valid, problems = code_validator().validate([{**CODE_ROW, "gear": math.nan}])
    assert problems == [] and valid is not None
    assert valid.columns["gear"] == [MISSING_CATEGORY] and valid.received[0]["gear"] is None
    problem = code_validator().validate([{**CODE_ROW, "flag": None}])[1][0]
    assert (problem.field, problem.reason) == ("flag", Reason.MISSING_VALUE)


@pytest.mark.parametrize(
    ("labels", "texts"),
    [
        (["1", "0"], ["1", "0"]),
        ([1, 0], ["1", "0"]),
        ([1.0, 0], ["1", "0"]),
        ([True, False], None),  # reads as "True": no class
    ],
)
def test_feedback_labels_sent_as_numbers_read_as_their_text(
    labels: list[Any], texts: list[str] | None
) -> None:
    found, problems = check_labels(labels, ["0", "1"])
    if texts is None:
        assert [(q.row, q.field, q.reason) for q in problems] == [
            (0, "label", Reason.UNKNOWN_LABEL),
            (1, "label", Reason.UNKNOWN_LABEL),
        ]
        assert "label True (read as 'True') is not a class" in problems[0].message
        assert "['0', '1']" in problems[0].message
    else:
        assert problems == [] and found == texts


def test_feedback_labels_of_boolean_classes_and_unknown_ones() -> None:
    assert check_labels([True, "False"], ["False", "True"]) == (["True", "False"], [])
    _, problems = check_labels(["maybe", 2, math.inf, None], ["False", "True"])
    assert [q.row for q in problems] == [0, 1, 2, 3]
    assert {q.reason for q in problems} == {Reason.UNKNOWN_LABEL}
    assert "label 'maybe' is not a class" in problems[0].message


def test_a_row_that_is_not_an_object_is_refused() -> None:
    problem = only_problem([ROW, ["JFK", 200]])
    assert (problem.row, problem.field, problem.reason) == (1, None, Reason.NOT_AN_OBJECT)


def test_request_level_problems_empty_and_too_many_rows() -> None:
    assert only_problem([]).reason == Reason.EMPTY_REQUEST
    too_many = only_problem([ROW] * 6)
    assert (too_many.row, too_many.reason) == (None, Reason.TOO_MANY_ROWS)
    assert "at most 5" in too_many.message


def test_every_problem_of_every_row_is_listed() -> None:
    rows = [{"distance": "x"}, ROW, {**ROW, "extra": 1, "origin": [5]}]
    _, problems = validator().validate(rows)
    found = {(q.row, q.field, q.reason) for q in problems}
    assert found == {
        (0, "distance", Reason.WRONG_TYPE),
        (0, "temp", Reason.MISSING_FEATURE),
        (0, "origin", Reason.MISSING_FEATURE),
        (0, "carrier", Reason.MISSING_FEATURE),
        (2, "extra", Reason.UNKNOWN_FEATURE),
        (2, "origin", Reason.WRONG_TYPE),
    }


def test_null_is_accepted_where_training_had_missing_values_and_marked() -> None:
    valid, problems = validator().validate([{**ROW, "temp": None, "carrier": math.nan}])
    assert problems == [] and valid is not None
    assert math.isnan(valid.columns["temp"][0])
    assert valid.columns["carrier"] == [MISSING_CATEGORY]
    assert valid.marks[0]["missing"] == ["temp", "carrier"]
    assert valid.received[0]["carrier"] is None  # NaN is logged as null: the log is strict JSON


def test_an_unseen_category_is_accepted_and_marked_by_default() -> None:
    valid, problems = validator().validate([{**ROW, "origin": "LGA"}])
    assert problems == [] and valid is not None
    assert valid.columns["origin"] == ["LGA"]
    assert valid.marks[0]["unseen_category"] == ["origin"]


def test_an_unseen_category_is_refused_when_the_policy_says_reject() -> None:
    problem = only_problem([{**ROW, "origin": "LGA"}], unseen_category="reject")
    assert (problem.row, problem.field, problem.reason) == (0, "origin", Reason.UNSEEN_CATEGORY)
    assert "EWR" in problem.message  # the message lists the known values


@pytest.mark.parametrize(
    ("temp", "marked"),
    [(-10.0, False), (-30.0, False), (-30.5, True), (50.0, False), (50.5, True), (1e12, True)],
)
def test_a_number_far_outside_the_training_range_is_accepted_and_marked(
    temp: float, marked: bool
) -> None:
    # range [-10, 30], factor 0.5: marked outside [-30, 50]
    valid, problems = validator().validate([{**ROW, "temp": temp}])
    assert problems == [] and valid is not None
    assert (valid.marks[0]["out_of_range"] == ["temp"]) is marked


def test_the_factor_comes_from_the_config() -> None:
    valid, _ = validator(out_of_range_factor=0.0).validate([{**ROW, "distance": 301}])
    assert valid is not None and valid.marks[0]["out_of_range"] == ["distance"]


def test_error_body_lists_and_counts_problems() -> None:
    problems = [p.Problem(i, "temp", Reason.WRONG_TYPE, "bad") for i in range(60)]
    body = p.error_body(problems)
    assert len(body["problems"]) == p.MAX_LISTED_PROBLEMS
    assert body["more_problems"] == 10
    assert body["problems"][0] == {
        "row": 0,
        "field": "temp",
        "reason": "wrong_type",
        "message": "bad",
    }
    assert "60 problem(s) in 60 row(s)" in body["error"]


def test_counted_takes_each_rows_first_problem_and_every_request_problem() -> None:
    problems = [
        p.Problem(0, "a", Reason.WRONG_TYPE, ""),
        p.Problem(0, "b", Reason.MISSING_FEATURE, ""),
        p.Problem(None, None, Reason.TOO_MANY_ROWS, ""),
        p.Problem(3, "c", Reason.NOT_FINITE, ""),
    ]
    assert [q.reason for q in p.counted(problems)] == [
        Reason.WRONG_TYPE,
        Reason.TOO_MANY_ROWS,
        Reason.NOT_FINITE,
    ]


def test_a_refused_feedback_says_no_label_was_logged() -> None:
    problems = [p.Problem(0, "label", Reason.UNKNOWN_LABEL, "bad")]
    assert p.error_body(problems)["error"].endswith("nothing was predicted")
    body = p.error_body(problems, p.FEEDBACK_OUTCOME)
    assert body["error"] == "request refused: 1 problem(s) in 1 row(s); no label was logged"
