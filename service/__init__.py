"""The Occam service: strict input validation, fast inference, a prediction log and feedback.

`service.app:Occam` is the BentoML service (`bentoml serve service.app:Occam`, or `occam serve`).
Its parts are plain modules that can be used and tested without a server:

- `validation`: request rows checked against the bundle's feature schema;
- `predictor`: the forest in ONNX Runtime (or scikit-learn as the fallback) and its self-test;
- `log`: the JSON-lines prediction log writer (the format is `occam.records`);
- `metrics`: the service's Prometheus counters;
- `runtime`: the above put together: predict, feedback, rejections, the model document;
- `http`: the ASGI guard (API keys and scopes, feedback rate limit, body size and read
  timeout, content type, client disconnects, uniform 4xx bodies);
- `wire`: below ASGI: header size and read timeout, route-template labels for BentoML's
  request metrics;
- `messages`, `openapi`: the request/response models and the OpenAPI document (/docs.json).

Reason codes, `Problem` and the error body are `occam.errors`; API keys are `occam.auth`.
"""
