"""The model: one scikit-learn Pipeline (imputation, categorical encoding, Random Forest).

Inputs reach it through `FeatureSchema.coerce` (numbers as floats, categories as strings with
missing ones as `MISSING_CATEGORY`), both in training and in serving.
"""

from __future__ import annotations

from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from occam.config import ConfigError

#: Prefix of the forest's parameters inside the pipeline (search spaces use bare names).
FOREST = "forest"


def make_pipeline(
    numeric: list[str], categorical: list[str], params: dict[str, Any], seed: int
) -> Pipeline:
    """An unfitted pipeline; `params` are RandomForestClassifier keyword arguments.

    Unknown categories encode as -1 (the forest sends them down one side of each split) so an
    unseen value never raises at serving time; the service marks them for the monitor.
    """
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        transformers.append(("numeric", SimpleImputer(strategy="median"), numeric))
    if categorical:
        encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)
        transformers.append(("categorical", encoder, categorical))
    forest_params = {"n_jobs": 1, **params, "random_state": seed}
    try:
        forest = RandomForestClassifier(**forest_params)
        forest._validate_params()
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"model.params: {exc}; see scikit-learn's RandomForestClassifier for allowed values"
        ) from None
    return Pipeline(
        [
            ("prepare", ColumnTransformer(transformers, verbose_feature_names_out=False)),
            (FOREST, forest),
        ]
    )


def forest_space(raw: dict[str, Any]) -> dict[str, Any]:
    """The config's `search.space` as a search space over the pipeline's forest parameters."""
    from training.search import parse_space

    valid = RandomForestClassifier().get_params()
    unknown = sorted(set(raw) - set(valid))
    if unknown:
        raise ConfigError(
            f"search.space: {unknown} are not RandomForestClassifier parameters; allowed: "
            f"{sorted(valid)}"
        )
    try:
        space = parse_space(raw)
    except ValueError as exc:
        raise ConfigError(f"search.space: {exc}") from None
    return {f"{FOREST}__{name}": value for name, value in space.items()}
