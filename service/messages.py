"""The JSON bodies of the API, as pydantic models: they drive BentoML's OpenAPI document
(`/docs.json`) and the first, shape-level check of each request.

Rows are checked against the model's feature schema afterwards (`service.validation`): the
schema is known only once the bundle is loaded, so `instances` is typed as objects here. The
error body of every refusal is `occam.errors.ErrorBody`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

#: A prediction id: the hex form of a random UUID (32 lowercase hex digits).
ID_PATTERN = r"^[0-9a-f]{32}$"
_EXAMPLE_ROW = {
    "carrier": "UA",
    "origin": "EWR",
    "dest": "DEN",
    "sched_hour": 10,
    "day_of_week": "Tue",
    "distance": 1605,
    "temp": 41.0,
    "dewp": 28.04,
    "humid": 59.65,
    "wind_dir": 260,
    "wind_speed": 13.81,
    "precip": 0.0,
    "pressure": 1012.4,
    "visib": 10.0,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictRequest(_Strict):
    """Rows to classify: one object per row, every feature of the model (see GET /model)."""

    instances: Annotated[
        list[dict[str, Any]],
        Field(
            min_length=1,
            description="1 to serving.max_rows rows, each {feature: value} with every feature "
            "of the model and nothing else; null only where GET /model says nullable",
            examples=[[_EXAMPLE_ROW]],
        ),
    ]


class Prediction(_Strict):
    id: str = Field(description="Unique per row; send it back with the true label to /feedback")
    label: str = Field(description="The answer: the top class, or the abstain label")
    probabilities: dict[str, float] = Field(description="{class: probability}, always given")
    abstained: bool = Field(description="True when the top probability is under the threshold")


class PredictResponse(_Strict):
    model_version: str
    predictions: list[Prediction]


class FeedbackItem(_Strict):
    id: Annotated[str, Field(pattern=ID_PATTERN, description="A prediction's id")]
    label: str | int | float | bool = Field(
        description="The true class (one of GET /model's `classes`); a JSON number or boolean "
        'is read as its text, as training read the target column (1 -> "1", true -> "True")'
    )


class FeedbackRequest(_Strict):
    """Ground truth that arrived after the prediction."""

    labels: Annotated[list[FeedbackItem], Field(min_length=1, description="1 to max_rows labels")]


class FeedbackResponse(_Strict):
    accepted: int = Field(description="Labels logged")
