"""The service's one error contract: reason codes with their HTTP status, `Problem`, and the
error body model that produces both the JSON of every refusal and its OpenAPI schema.

The reason codes are stable strings: they appear in 4xx bodies, in `rejected` log records and
as the `reason` label of occam_service_rejected_rows_total (a short, fixed list). Each carries
the HTTP status of a request refused for it. Messages and fields quote at most a short prefix
of anything a client sent (`quote`, `MAX_FIELD_CHARS`), so an error body stays small whatever
the request held.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

#: At most this many problems are listed in one error body (all are counted).
MAX_LISTED_PROBLEMS = 50
#: A field name longer than this (a client's unknown key) is cut to this many characters.
MAX_FIELD_CHARS = 64
#: A message longer than this is cut (messages quote input through `quote` already).
MAX_MESSAGE_CHARS = 400
#: How many characters of a client's value a message quotes.
QUOTE_CHARS = 60
#: How the summary of a refused /predict request ends (its rows had problems).
PREDICT_OUTCOME = "nothing was predicted"
#: How the summary of a refused /feedback request ends (its labels had problems).
FEEDBACK_OUTCOME = "no label was logged"


class Reason(StrEnum):
    """Why a request (or one of its rows) was refused; `status` is the HTTP status it gets."""

    status: int

    def __new__(cls, code: str, status: int) -> Reason:
        member = str.__new__(cls, code)
        member._value_ = code
        member.status = status
        return member

    MALFORMED_JSON = ("malformed_json", 400)
    BODY_TOO_LARGE = ("body_too_large", 413)
    UNSUPPORTED_MEDIA_TYPE = ("unsupported_media_type", 415)
    INVALID_REQUEST = ("invalid_request", 400)
    EMPTY_REQUEST = ("empty_request", 400)
    TOO_MANY_ROWS = ("too_many_rows", 400)
    NOT_AN_OBJECT = ("not_an_object", 400)
    MISSING_FEATURE = ("missing_feature", 400)
    UNKNOWN_FEATURE = ("unknown_feature", 400)
    WRONG_TYPE = ("wrong_type", 400)
    NOT_INTEGER = ("not_integer", 400)
    VALUE_TOO_LONG = ("value_too_long", 400)
    MISSING_VALUE = ("missing_value", 400)
    NOT_FINITE = ("not_finite", 400)
    UNSEEN_CATEGORY = ("unseen_category", 400)
    #: A category sent as a JSON number or boolean whose text is no category seen in training.
    UNMATCHED_CATEGORY = ("unmatched_category", 422)
    UNKNOWN_LABEL = ("unknown_label", 400)
    INVALID_VALUE = ("invalid_value", 400)
    MISSING_KEY = ("missing_key", 401)
    UNKNOWN_KEY = ("unknown_key", 401)
    MISSING_SCOPE = ("missing_scope", 403)
    BODY_TIMEOUT = ("body_timeout", 408)
    DUPLICATE_LABEL = ("duplicate_label", 409)
    RATE_LIMITED = ("rate_limited", 429)
    CLIENT_DISCONNECTED = ("client_disconnected", 499)
    MODEL_UNAVAILABLE = ("model_unavailable", 503)


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """`repr(value)` cut to `limit` characters (with "..."): how messages quote client input."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _clip(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 3] + "..."


@dataclass(frozen=True)
class Problem:
    """Why a request (row None) or one of its rows was refused; `field` None for the whole row.

    `field` and `message` are cut to `MAX_FIELD_CHARS` / `MAX_MESSAGE_CHARS` on creation: a
    field may be a client's unknown key, and neither may carry a client's input in full.
    """

    row: int | None
    field: str | None
    reason: Reason
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "field", _clip(self.field, MAX_FIELD_CHARS))
        object.__setattr__(self, "message", _clip(self.message, MAX_MESSAGE_CHARS))


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


def status_of(problems: Sequence[Problem]) -> int:
    """The HTTP status of a refusal: its reasons' status when they agree, else 400."""
    statuses = {problem.reason.status for problem in problems}
    return statuses.pop() if len(statuses) == 1 else 400


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProblemModel(_Strict):
    """One problem of a refused request."""

    row: int | None = Field(description="Index of the row in the request; null: the request")
    field: str | None = Field(description="Feature or field at fault; null: the whole row")
    reason: Reason = Field(description="Short code (see docs/service.md); fixes the HTTP status")
    message: str = Field(description="What was wrong and how to fix it")


class ErrorBody(_Strict):
    """The body of every refusal (4xx) and of 503 from /predict, /feedback and /model."""

    error: str = Field(description="One-line summary")
    problems: list[ProblemModel] = Field(description=f"At most {MAX_LISTED_PROBLEMS} problems")
    more_problems: int = Field(0, description="Problems found beyond those listed")

    @classmethod
    def of(cls, problems: Sequence[Problem], outcome: str = PREDICT_OUTCOME) -> ErrorBody:
        """The body for `problems` (at least one): a summary, the first problems listed.
        `outcome` ends the summary of a refusal with bad rows: what was not done
        (`PREDICT_OUTCOME`, `FEEDBACK_OUTCOME`)."""
        rows = len({p.row for p in problems if p.row is not None})
        if rows:
            summary = f"request refused: {len(problems)} problem(s) in {rows} row(s); {outcome}"
        elif problems[0].reason.status >= 500:  # not a refusal: the service cannot answer
            summary = problems[0].message
        else:
            summary = f"request refused: {problems[0].message}"
        return cls(
            error=summary,
            problems=[
                ProblemModel(row=p.row, field=p.field, reason=p.reason, message=p.message)
                for p in problems[:MAX_LISTED_PROBLEMS]
            ],
            more_problems=max(0, len(problems) - MAX_LISTED_PROBLEMS),
        )


def error_body(problems: Sequence[Problem], outcome: str = PREDICT_OUTCOME) -> dict[str, Any]:
    """The JSON body of a refusal (see `ErrorBody.of`)."""
    return ErrorBody.of(problems, outcome).model_dump(mode="json")
