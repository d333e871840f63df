"""The columnar paths give today's answers: the validator's column-at-a-time check against its
row-at-a-time reference on random valid and invalid batches (accepted rows, marks, the rows
logged, and every problem of a refused batch), and the runtime's answers and log records."""

from __future__ import annotations

import math
import random
import re
import uuid
from typing import Any

import pytest

from occam.errors import error_body
from occam.records import PredictionRecord
from occam.schema import FeatureSchema, FeatureSpec
from service.messages import ID_PATTERN
from service.predictor import reference_instances
from service.runtime import new_ids
from service.validation import Validator, ValidRows

from .conftest import read_log

SCHEMA = FeatureSchema(
    features=(
        FeatureSpec("count", "numeric", "integer", False, 0.0, minimum=0.0, maximum=50.0),
        FeatureSpec("level", "numeric", "number", True, 0.1, minimum=-1.0, maximum=1.0),
        FeatureSpec("wide", "numeric", "number", False, 0.0),  # no range: never marked
        FeatureSpec("code", "categorical", "string", True, 0.1, categories=("12", "2.5", "7")),
        FeatureSpec("flag", "categorical", "string", False, 0.0, categories=("False", "True")),
        FeatureSpec("city", "categorical", "string", False, 0.0, categories=("AMS", "OSL")),
    )
)

GOOD: dict[str, list[Any]] = {
    "count": [0, 3, 50, 7.0, 49],
    "level": [0.5, -1.0, 1, 0.0, None, math.nan],
    "wide": [1e300, -5, 0.25, 10**15],
    "code": ["12", "7", 12, 12.0, 7, 2.5, "2.5", None, math.nan],
    "flag": ["True", "False", True, False],
    "city": ["AMS", "OSL"],
}
MARKED: dict[str, list[Any]] = {
    "count": [200, -300, 1e6],  # out of range
    "level": [5.0, -30],
    "city": ["LHR", "BER"],  # unseen (accepted and marked unless the policy rejects)
}
BAD: dict[str, list[Any]] = {
    "count": [2.5, "3", True, None, math.inf, 10**400, [1]],
    "level": [math.inf, "x", False, {"a": 1}],
    "wide": [None, math.nan, -math.inf],
    "code": [3, 12.5, True, ["12"], {"x": 1}],
    "flag": [1, 0, None, "yes"],
    "city": ["x" * 300, 5, None],
}


def random_row(rng: random.Random, bad: float, marked: float) -> Any:
    roll = rng.random()
    if roll < bad / 10:
        return rng.choice([["AMS", 3], "row", None, 7])
    row: dict[str, Any] = {}
    for name in SCHEMA.names:
        pool = GOOD[name]
        if rng.random() < marked and name in MARKED:
            pool = MARKED[name]
        if rng.random() < bad / len(SCHEMA.names):
            pool = BAD[name]
        row[name] = rng.choice(pool)
    if rng.random() < bad / 5:
        del row[rng.choice(SCHEMA.names)]
    if rng.random() < bad / 5:
        row["extra"] = 1
    return row


def same(a: Any, b: Any) -> bool:
    """Equality where NaN equals NaN (the two paths make their own NaN objects)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def assert_same_rows(valid: ValidRows, reference: ValidRows) -> None:
    assert same(valid.columns, reference.columns)
    assert same(valid.received, reference.received)
    assert valid.marks == reference.marks


def assert_same_answer(validator: Validator, batch: list[Any]) -> ValidRows | None:
    """`validate` and the columnar path on its own (at any size) answer as the row path."""
    valid, problems = validator.validate(batch)
    reference, expected = validator.validate_rows(batch)
    assert problems == expected
    if problems:
        assert error_body(problems) == error_body(expected)
    assert (valid is None) == (reference is None)
    if valid is not None and reference is not None:
        assert_same_rows(valid, reference)
    columnar = validator._validate_columns(batch)
    if columnar is not None:
        assert reference is not None  # the columnar path never accepts what the rows refuse
        assert_same_rows(columnar, reference)
    return columnar if columnar is not None else valid


@pytest.mark.parametrize("policy", ["accept", "reject"])
@pytest.mark.parametrize(("bad", "marked"), [(0.0, 0.0), (0.0, 0.2), (0.02, 0.1), (0.3, 0.3)])
def test_columnar_validation_equals_the_row_path_on_random_batches(
    policy: Any, bad: float, marked: float
) -> None:
    validator = Validator(SCHEMA, max_rows=2000, unseen_category=policy, out_of_range_factor=0.5)
    rng = random.Random(f"{policy}-{bad}-{marked}")
    accepted = refused = columnar = 0
    for _ in range(150):
        size = rng.choice([1, 2, 5, 40, 300])
        batch = [random_row(rng, bad, marked) for _ in range(size)]
        valid = assert_same_answer(validator, batch)
        accepted += valid is not None
        refused += valid is None
        columnar += validator._validate_columns(batch) is not None
    # Each setting exercises what it is meant to (both outcomes where rows can be bad).
    if bad == 0 and (policy == "accept" or marked == 0):
        assert refused == 0 and accepted == 150
        assert columnar > 100  # the columnar path answers most valid batches itself
    if bad >= 0.02:
        assert refused > 0 and accepted > 0


def test_columnar_validation_keeps_the_logged_rows_as_sent_when_nothing_changes() -> None:
    validator = Validator(SCHEMA, max_rows=10, unseen_category="accept", out_of_range_factor=0.5)
    rows = [
        {"count": 3, "level": 0.5, "wide": 1.0, "code": "12", "flag": "True", "city": "AMS"},
        {"count": 3, "level": None, "wide": 1.0, "code": 12, "flag": True, "city": "LHR"},
    ]
    valid = assert_same_answer(validator, rows)
    assert valid is not None
    assert valid.received[0] is rows[0]  # untouched rows are not copied
    assert valid.received[1] == {**rows[1], "code": "12", "flag": "True"}
    assert valid.marks[1] == {"unseen_category": ["city"], "out_of_range": [], "missing": ["level"]}


def test_a_mix_of_true_and_1_in_one_column_is_read_value_by_value() -> None:
    """True == 1 in a Python set: the columnar path must not take one for the other."""
    schema = FeatureSchema(
        features=(FeatureSpec("c", "categorical", "string", False, 0.0, categories=("1", "True")),)
    )
    validator = Validator(schema, max_rows=10, unseen_category="accept", out_of_range_factor=0.5)
    valid = assert_same_answer(validator, [{"c": True}, {"c": 1}, {"c": 1.0}])
    assert valid is not None and valid.columns["c"] == ["True", "1", "1"]


def test_ids_are_random_version_4_uuids_in_hex() -> None:
    ids = new_ids(2000)
    assert len(set(ids)) == 2000
    assert all(re.fullmatch(ID_PATTERN, ident) for ident in ids)
    assert {uuid.UUID(hex=ident).version for ident in ids} == {4}
    assert {uuid.UUID(hex=ident).variant for ident in ids} == {uuid.RFC_4122}
    assert len(new_ids(1)[0]) == 32 and new_ids(0) == []


def test_a_large_request_answers_and_logs_as_its_rows_one_at_a_time(
    make_runtime: Any, trained: Any
) -> None:
    """The columnar path of a 300-row request (one row marked) against the same rows sent one
    per request (the row path): the same answers and the same log records."""
    runtime = make_runtime(max_rows=1000)
    reference = trained.bundle.load_reference()
    rows = reference_instances(reference, trained.bundle.schema)[:300]
    rows[5] = {**rows[5], "distance": 1e9, "dest": "XXX"}
    whole = runtime.predict(rows).body["predictions"]
    single = [runtime.predict([row]).body["predictions"][0] for row in rows]
    runtime.close()

    def answer(a: dict[str, Any]) -> tuple[Any, ...]:
        return a["label"], a["probabilities"], a["abstained"]

    assert [answer(a) for a in whole] == [answer(a) for a in single]
    assert any(a["abstained"] for a in whole) and not all(a["abstained"] for a in whole)
    logged = {r.id: r for r in read_log(runtime.serving.log_dir) if isinstance(r, PredictionRecord)}

    def record(a: dict[str, Any]) -> tuple[Any, ...]:
        r = logged[a["id"]]
        return r.features, r.label, r.predicted, r.probabilities, r.abstained, r.marks

    assert [record(a) for a in whole] == [record(a) for a in single]
    assert logged[whole[5]["id"]].marks["unseen_category"] == ["dest"]
