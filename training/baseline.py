"""Baselines: the trivial models the real one must beat by `baseline.margin`."""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.dummy import DummyClassifier

from occam.config import BaselineConfig

_OPS = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


class RuleClassifier(ClassifierMixin, BaseEstimator):
    """`if X[feature] <op> value then `then` else `otherwise``: a one-line rule as a classifier.

    Probabilities are one-hot (the rule is certain). Rows where the feature is missing get
    `otherwise`.
    """

    def __init__(
        self, feature: str = "", op: str = ">", value: Any = 0, then: str = "", otherwise: str = ""
    ) -> None:
        self.feature = feature
        self.op = op
        self.value = value
        self.then = then
        self.otherwise = otherwise

    def fit(self, X: pd.DataFrame, y: Any) -> RuleClassifier:
        if self.feature not in X.columns:
            raise ValueError(
                f"baseline.rule.feature={self.feature!r} is not a feature; "
                f"pick one of {list(X.columns)}"
            )
        if self.op not in _OPS:
            raise ValueError(f"baseline.rule.op={self.op!r}; allowed: {sorted(_OPS)}")
        self.classes_ = np.unique(np.asarray(y).astype(str))
        for name in ("then", "otherwise"):
            if getattr(self, name) not in self.classes_:
                raise ValueError(
                    f"baseline.rule.{name}={getattr(self, name)!r} is not a class; "
                    f"classes are {list(self.classes_)}"
                )
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        column = X[self.feature]
        value = self.value
        if pd.api.types.is_numeric_dtype(column) and not isinstance(value, str):
            hit = _OPS[self.op](column.astype(float), float(value)).fillna(False)
        else:
            hit = _OPS[self.op](column.astype(str), str(value))
        return np.where(np.asarray(hit, dtype=bool), self.then, self.otherwise)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        predicted = self.predict(X)
        return (predicted[:, None] == self.classes_[None, :]).astype(float)


def make_baseline(config: BaselineConfig, seed: int) -> BaseEstimator:
    """The configured baseline, unfitted."""
    if config.strategy == "rule":
        assert config.rule is not None  # guaranteed by the config model
        rule = config.rule
        return RuleClassifier(rule.feature, rule.op, rule.value, rule.then, rule.otherwise)
    return DummyClassifier(strategy=config.strategy, random_state=seed)
