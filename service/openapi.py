"""`/docs.json` that tells the truth about Occam's requests and answers.

BentoML documents every API with 200/400/404/500 and its own error schema, knows the request
bodies only as far as the pydantic models go (rows are "objects"), and does not see the mounted
GET /model. `DocumentedService` (passed as `service_class` to `@bentoml.service`) adds what the
service really does: in a running server, each row's exact schema from the served bundle
(features, types, nullability, categories when unseen ones are refused, the row limit) and the
classes feedback accepts; 202 from /feedback, Occam's error body on 400, 413 and 415, the 503
while the model loads, and the GET /model route.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from _bentoml_sdk.service.factory import Service
from bentoml._internal.service.openapi.specification import (
    MediaType,
    OpenAPISpecification,
    Operation,
    PathItem,
    Reference,
    Response,
    Schema,
)
from pydantic import BaseModel

from occam.errors import ErrorBody
from occam.schema import canonical_text
from service.messages import ID_PATTERN
from service.runtime import current_runtime

ERROR_SCHEMA = "OccamError"
_REF = "#/components/schemas/{}"
_ERRORS = {
    "400": "Refused: the body names each problem by row, field and reason",
    "401": "Refused: no API key, or an unknown one (reason missing_key / unknown_key)",
    "403": "Refused: the API key lacks this route's scope (reason missing_scope)",
    "408": "Refused: the body did not arrive within serving.limits.body_timeout_seconds",
    "413": "Refused: the body is larger than serving.max_body_bytes",
    "415": "Refused: the content type is not application/json",
}
_PREDICT_ERRORS = {
    "422": "Refused: a category sent as a JSON number or boolean reads as no category seen in "
    "training (reason unmatched_category)",
}
_FEEDBACK_ERRORS = {
    "409": "Refused: a prediction id already has a label (reason duplicate_label)",
    "429": "Refused: too many feedback requests for this key; see the Retry-After header",
}


def openapi_schemas(model: type[BaseModel], name: str) -> dict[str, dict[str, Any]]:
    """`model`'s JSON schema as OpenAPI 3.0 component schemas: `name` and the models it
    refers to (`int | None` becomes `nullable`, as OpenAPI 3.0 has no null type)."""
    raw = model.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = raw.pop("$defs", {})
    return {name: _openapi30(raw), **{key: _openapi30(value) for key, value in defs.items()}}


def _openapi30(node: Any) -> Any:
    if isinstance(node, list):
        return [_openapi30(item) for item in node]
    if not isinstance(node, dict):
        return node
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options and len(options) == 2:
        rest = {key: value for key, value in node.items() if key != "anyOf"}
        (kept,) = [option for option in options if option != {"type": "null"}]
        return _openapi30({**rest, **kept, "nullable": True})
    if node.get("type") == "null":
        return {"nullable": True}
    return {key: _openapi30(value) for key, value in node.items()}


def _json(description: str, schema: Schema | Reference | None = None) -> Response:
    ref = schema or Reference(_REF.format(ERROR_SCHEMA))
    return Response(description=description, content={"application/json": MediaType(schema=ref)})


def _row_schema(runtime: Any) -> Schema:
    """One request row of the served bundle, as the validator checks it."""
    reject_unseen = runtime.serving.unseen_category == "reject"
    properties: dict[str, Any] = {}
    for spec in runtime.bundle.schema.features:
        if spec.kind == "numeric":
            properties[spec.name] = Schema(
                type="integer" if spec.dtype == "integer" else "number",
                nullable=spec.nullable or None,
                description=f"Training range [{spec.minimum}, {spec.maximum}]; numbers far "
                "outside are accepted and marked for the monitor",
            )
        else:
            categories = list(spec.categories or ())
            text = Schema(
                type="string",
                nullable=spec.nullable or None,
                enum=categories if reject_unseen else None,
                maxLength=None if reject_unseen else runtime.serving.limits.max_string_chars,
                description=None
                if reject_unseen
                else f"Seen in training: {', '.join(categories[:50])}; others are accepted "
                "and marked for the monitor",
            )
            properties[spec.name] = with_codes(text, categories)
    return Schema(
        type="object",
        required=list(properties),
        properties=properties,
        additionalProperties=False,
    )


def category_codes(categories: Sequence[str]) -> tuple[list[int | float], list[bool]]:
    """The JSON numbers and booleans whose `occam.schema.canonical_text` is one of `categories`
    (the one form of each: 12 for "12", 2.5 for "2.5", true for "True"); what the validator
    accepts besides the strings themselves."""
    numbers: list[int | float] = []
    flags: list[bool] = []
    for category in categories:
        if category in ("True", "False"):
            flags.append(category == "True")
            continue
        try:
            number: int | float = int(category)
        except ValueError:
            try:
                number = float(category)
            except ValueError:
                continue
        try:
            same = canonical_text(number) == category
        except ValueError:  # "inf": no number has that text
            same = False
        if same:
            numbers.append(number)
    return numbers, flags


def with_codes(text: Schema, categories: Sequence[str]) -> Schema:
    """`text` (the string form of a category or label), or when some of `categories` can also
    be sent as JSON numbers or booleans (`category_codes`), any of the three forms."""
    numbers, flags = category_codes(categories)
    if not numbers and not flags:
        return text
    forms = [text]
    if numbers:
        forms.append(Schema(type="number", enum=numbers))
    if flags:
        forms.append(Schema(type="boolean", enum=flags))
    return Schema(
        anyOf=forms,
        description=(text.description + "; " if text.description else "")
        + "a category may also be sent as the JSON number or boolean that reads as it "
        '(12 or 12.0 for "12", true for "True")',
    )


def _request_schemas(spec: OpenAPISpecification, runtime: Any) -> None:
    """Replace the generic row and label schemas by the served bundle's exact ones."""
    limit = runtime.serving.max_rows
    example = runtime.self_test.example if runtime.self_test else None
    bodies = {
        ("/predict", "instances"): Schema(
            type="array",
            minItems=1,
            maxItems=limit,
            items=_row_schema(runtime),
            example=[example] if example is not None else None,
        ),
        ("/feedback", "labels"): Schema(
            type="array",
            minItems=1,
            maxItems=limit,
            items=Schema(
                type="object",
                required=["id", "label"],
                properties={
                    "id": Schema(type="string", pattern=ID_PATTERN),
                    "label": with_codes(
                        Schema(type="string", enum=list(runtime.classes)), runtime.classes
                    ),
                },
                additionalProperties=False,
            ),
        ),
    }
    for (route, field), schema in bodies.items():
        item = spec.paths.get(route)
        if item is None or not isinstance(item.post, dict):
            continue
        body = item.post["requestBody"]["content"]["application/json"].schema
        body.properties[field] = schema


def document(spec: OpenAPISpecification, runtime: Any = None) -> OpenAPISpecification:
    """Add Occam's real requests (when `runtime` serves a bundle) and answers to BentoML's
    generated spec, in place, and return it."""
    if runtime is not None:
        _request_schemas(spec, runtime)
    components: Any = spec.components  # a dict at run time, typed as an attrs class
    components.setdefault("schemas", {}).update(openapi_schemas(ErrorBody, ERROR_SCHEMA))
    unavailable = _json("The model is still loading or failed its self-test (see /readyz)")
    for route in ("/predict", "/feedback"):
        item = spec.paths.get(route)
        if item is None or not isinstance(item.post, dict):
            continue
        # BentoML leaves the body optional, but a request without one is refused.
        item.post["requestBody"]["required"] = True
        responses: dict[Any, Any] = item.post["responses"]
        errors = {**_ERRORS, **(_FEEDBACK_ERRORS if route == "/feedback" else _PREDICT_ERRORS)}
        for code, description in errors.items():
            responses.pop(int(code), None)
            responses[code] = _json(description)
        if route == "/predict":
            responses["503"] = unavailable
        else:  # feedback is accepted for the log, not processed: 202
            responses["202"] = responses.pop(200, None) or responses.pop("200")
    spec.paths["/model"] = PathItem(
        get=Operation(
            responses={
                "200": _json(
                    "Model version, classes, feature schema, goals and results, abstain "
                    "threshold, request limits and an example request",
                    Schema(type="object"),
                ),
                "503": unavailable,
            },
            tags=["Service APIs"],
            description="What a client needs to build valid requests (see docs/service.md)",
        )
    )
    return spec


class DocumentedService(Service):  # type: ignore[type-arg]
    """A BentoML `Service` whose OpenAPI document is completed by `document`."""

    @property
    def openapi_spec(self) -> OpenAPISpecification:
        return document(super().openapi_spec, current_runtime())
