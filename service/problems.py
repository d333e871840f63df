"""Why a request was refused: reason codes, `Problem`, and the 4xx body built from them.

The reason codes are stable strings: they appear in 4xx bodies, in `rejected` log records and
as the `reason` label of occam_service_rejected_rows_total (a short, fixed list).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MALFORMED_JSON = "malformed_json"
BODY_TOO_LARGE = "body_too_large"
UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
INVALID_REQUEST = "invalid_request"
EMPTY_REQUEST = "empty_request"
TOO_MANY_ROWS = "too_many_rows"
NOT_AN_OBJECT = "not_an_object"
MISSING_FEATURE = "missing_feature"
UNKNOWN_FEATURE = "unknown_feature"
WRONG_TYPE = "wrong_type"
MISSING_VALUE = "missing_value"
NOT_FINITE = "not_finite"
UNSEEN_CATEGORY = "unseen_category"
UNKNOWN_LABEL = "unknown_label"
INVALID_VALUE = "invalid_value"
REASONS = (
    MALFORMED_JSON,
    BODY_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
    INVALID_REQUEST,
    EMPTY_REQUEST,
    TOO_MANY_ROWS,
    NOT_AN_OBJECT,
    MISSING_FEATURE,
    UNKNOWN_FEATURE,
    WRONG_TYPE,
    MISSING_VALUE,
    NOT_FINITE,
    UNSEEN_CATEGORY,
    UNKNOWN_LABEL,
    INVALID_VALUE,
)
#: At most this many problems are listed in one 4xx body (all are counted).
MAX_LISTED_PROBLEMS = 50


@dataclass(frozen=True)
class Problem:
    """Why a request (row None) or one of its rows was refused; `field` None for the whole row."""

    row: int | None
    field: str | None
    reason: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "field": self.field,
            "reason": self.reason,
            "message": self.message,
        }


def counted(problems: Sequence[Problem]) -> list[Problem]:
    """The problems that are counted and logged: each bad row's first problem, and every
    problem that concerns the whole request (row None)."""
    seen: set[int] = set()
    out = []
    for problem in problems:
        if problem.row is None:
            out.append(problem)
        elif problem.row not in seen:
            seen.add(problem.row)
            out.append(problem)
    return out


def error_body(problems: Sequence[Problem]) -> dict[str, Any]:
    """The JSON body of a refusal: a one-line summary and the problems (at most
    `MAX_LISTED_PROBLEMS` listed, the rest counted in `more_problems`)."""
    rows = len({p.row for p in problems if p.row is not None})
    if rows:
        summary = (
            f"request refused: {len(problems)} problem(s) in {rows} row(s); nothing was predicted"
        )
    else:
        summary = f"request refused: {problems[0].message}"
    return {
        "error": summary,
        "problems": [p.to_dict() for p in problems[:MAX_LISTED_PROBLEMS]],
        "more_problems": max(0, len(problems) - MAX_LISTED_PROBLEMS),
    }
