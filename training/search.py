"""Converging random search: an sklearn ``*SearchCV`` that zooms in on the best region.

Round 1 samples ``n_candidates`` points from the whole space; every later round shrinks the
numeric ranges around the best point so far and drops the weaker half of the categorical
choices. CV, ``n_jobs``, ``cv_results_``, ``best_params_`` and refit come from sklearn's
``BaseSearchCV``.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from sklearn.model_selection._search import BaseSearchCV
from sklearn.model_selection._split import _yields_constant_splits
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval

__all__ = ["Categorical", "ConvergingSearchCV", "Integer", "Real", "parse_space"]

_RESAMPLE_TRIES = 20  # draws per candidate slot before giving up on finding an unseen point


def _check_range(obj: Real | Integer, number: type, cast: type) -> None:
    kind = type(obj).__name__
    for name in ("low", "high"):
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, number):
            raise TypeError(f"{kind} {name} must be {number.__name__}; got {value!r}.")
        if not math.isfinite(cast(value)):
            raise ValueError(f"{kind} {name} must be finite; got {value!r}.")
        object.__setattr__(obj, name, cast(value))
    if not obj.low < obj.high:
        raise ValueError(f"{kind} needs low < high; got low={obj.low!r}, high={obj.high!r}.")
    if obj.log and obj.low <= 0:
        raise ValueError(f"{kind} with log=True needs low > 0; got low={obj.low!r}.")


@dataclass(frozen=True)
class Real:
    """Continuous range ``[low, high]``; sampled log-uniformly when ``log`` (needs low > 0)."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        _check_range(self, numbers.Real, float)


@dataclass(frozen=True)
class Integer:
    """Integer range ``[low, high]``, both inclusive; log-uniform when ``log`` (needs low > 0)."""

    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        _check_range(self, numbers.Integral, int)


@dataclass(frozen=True)
class Categorical:
    """Unordered choices (any Python objects, e.g. str/None/estimators); a non-empty tuple."""

    choices: tuple[Any, ...] | list[Any]

    def __post_init__(self) -> None:
        if not isinstance(self.choices, (tuple, list)) or len(self.choices) == 0:
            raise ValueError(
                f"Categorical needs a non-empty list of choices; got {self.choices!r}."
            )
        object.__setattr__(self, "choices", tuple(self.choices))


Dimension = Real | Integer | Categorical


def _is_whole(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value == int(value)


def _parse_range(spec: Mapping[str, Any]) -> Real | Integer:
    if set(spec) - {"low", "high", "log", "type"} or not {"low", "high"} <= set(spec):
        raise ValueError(
            f"a range needs keys 'low' and 'high' (optional 'log', 'type'); got {dict(spec)!r}."
        )
    low, high, log, kind = spec["low"], spec["high"], spec.get("log", False), spec.get("type")
    # PyYAML reads `1e-3` (no dot) as a string: accept numeric strings as floats.
    low, high = (float(v) if isinstance(v, str) else v for v in (low, high))
    if log not in (True, False):
        raise ValueError(f"'log' must be true or false; got {log!r}.")
    if kind is None:
        kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
    if kind == "float":
        return Real(low, high, log)
    if kind == "int" and all(_is_whole(v) for v in (low, high)):
        return Integer(int(low), int(high), log)
    raise ValueError(f"'type' must be 'int' (with whole bounds) or 'float'; got {dict(spec)!r}.")


def parse_space(raw: Mapping[str, Any]) -> dict[str, Dimension]:
    """Turn a plain mapping (e.g. from YAML) into ``{name: Real | Integer | Categorical}``.

    Per parameter: a list -> ``Categorical``; a mapping ``{low, high[, log][, type]}`` ->
    ``Integer`` when both bounds are ints else ``Real`` (``type: int|float`` forces the kind);
    an existing dimension passes through. Anything else raises ``ValueError`` naming it.
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"param_space must map names to ranges/lists; got {raw!r}.")
    space: dict[str, Dimension] = {}
    for name, spec in raw.items():
        try:
            if isinstance(spec, (Real, Integer, Categorical)):
                space[name] = spec
            elif isinstance(spec, (list, tuple)):
                space[name] = Categorical(tuple(spec))
            elif isinstance(spec, Mapping):
                space[name] = _parse_range(spec)
            else:
                raise ValueError(
                    f"expected a list of choices or a mapping with 'low'/'high'; got {spec!r}. "
                    f"To pin one value use a one-element list: [{spec!r}]."
                )
        except (ValueError, TypeError) as err:
            raise ValueError(f"param_space[{name!r}]: {err}") from None
    return space


def _fwd(dim: Real | Integer, value: float) -> float:
    return math.log(value) if dim.log else float(value)


def _inv(dim: Real | Integer, value: float) -> float:
    return math.exp(value) if dim.log else value


def _sample(dim: Dimension, kept: list[int], rng: np.random.RandomState) -> float | int:
    """One draw; a categorical draw is an index into the ORIGINAL choices (from ``kept``)."""
    if isinstance(dim, Categorical):
        return kept[int(rng.randint(len(kept)))]
    pad = 0.5 if isinstance(dim, Integer) else 0.0  # so the end integers get a full bin
    value = _inv(dim, rng.uniform(_fwd(dim, dim.low - pad), _fwd(dim, dim.high + pad)))
    if isinstance(dim, Integer):
        return int(np.clip(np.rint(value), dim.low, dim.high))
    return float(np.clip(value, dim.low, dim.high))


class ConvergingSearchCV(BaseSearchCV):
    """Random search that narrows the space around the best point after every round.

    Parameters
    ----------
    estimator : sklearn estimator to tune (cloned for every fit).
    param_space : ``{name: Real | Integer | Categorical}``, or the raw form of ``parse_space``.
    n_candidates : new points per round (>= 1); the budget is ``n_candidates * max_rounds``
        points, each fitted once per CV split. Fewer are tried once the space is exhausted.
    max_rounds : hard cap on rounds (>= 1).
    tol : stop once a round raises the best mean test score by less than ``tol`` (score units,
        >= 0; 0 never stops early), provided at least ``min_rounds`` rounds ran.
    shrink : factor in (0, 1) applied per round to each numeric range width (in log space for
        ``log`` dimensions), centred on the best value, clipped to the original bounds.
    min_rounds : rounds always run before ``tol`` may stop the search (>= 1).
    scoring, n_jobs, refit, cv, verbose, error_score, return_train_score : as in
        ``RandomizedSearchCV``. With multi-metric scoring the search follows
        ``mean_test_<refit>``, so ``refit`` must then be a metric name.
    random_state : int, RandomState or None; seeds the sampling (same int -> same candidates).
    progress : optional ``progress(round_index, max_rounds, best_score)`` called after each
        round; ``round_index`` is 1-based, ``best_score`` the best mean test score so far.

    Attributes
    ----------
    n_rounds_ : rounds actually run.
    round_best_scores_ : best mean test score so far after each round (NaN while all failed).
    space_history_ : the space (``{name: dimension}``) sampled in each round.
    Plus all ``RandomizedSearchCV`` attributes (``cv_results_``, ``best_params_``, ...).
    """

    _parameter_constraints: ClassVar[dict] = {
        **BaseSearchCV._parameter_constraints,
        "param_space": [Mapping],
        "n_candidates": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_rounds": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "shrink": [Interval(numbers.Real, 0, 1, closed="neither")],
        "min_rounds": [Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "progress": [callable, None],
    }

    def __init__(
        self,
        estimator: Any,
        param_space: Mapping[str, Any],
        *,
        n_candidates: int = 8,
        max_rounds: int = 5,
        tol: float = 1e-3,
        shrink: float = 0.5,
        min_rounds: int = 2,
        scoring: Any = None,
        n_jobs: int | None = None,
        refit: bool | str | Callable[..., int] = True,
        cv: Any = None,
        verbose: int = 0,
        random_state: int | np.random.RandomState | None = None,
        error_score: Any = np.nan,
        return_train_score: bool = False,
        progress: Callable[[int, int, float], None] | None = None,
    ) -> None:
        super().__init__(
            estimator=estimator,
            scoring=scoring,
            n_jobs=n_jobs,
            refit=refit,
            cv=cv,
            verbose=verbose,
            error_score=error_score,
            return_train_score=return_train_score,
        )
        self.param_space = param_space
        self.n_candidates = n_candidates
        self.max_rounds = max_rounds
        self.tol = tol
        self.shrink = shrink
        self.min_rounds = min_rounds
        self.random_state = random_state
        self.progress = progress

    def __getstate__(self) -> dict[str, Any]:
        # scikit-learn >= 1.9 sends the search object itself (`caller=self`) to every joblib
        # worker; a progress callback holding a console or lock cannot be pickled and is
        # meaningless in a worker, so it is left out of the pickled state.
        state = dict(super().__getstate__())  # a copy: the base returns the live __dict__
        state["progress"] = None
        return state

    def _narrow(
        self,
        space: dict[str, Dimension],
        current: dict[str, Dimension],
        kept: dict[str, list[int]],
        records: list[tuple[Any, ...]],
        scores: np.ndarray,
        round_: int,
    ) -> dict[str, Dimension]:
        """Space for round ``round_`` (>= 2); updates ``kept`` categorical indices in place."""
        best = records[int(np.argmax(scores))]
        new: dict[str, Dimension] = {}
        for j, (name, dim) in enumerate(space.items()):
            if isinstance(dim, Categorical):
                # Round 1 draws the numeric values from the whole space, so a choice's best score
                # then says more about where its numeric draws landed than about the choice:
                # prune only once every kept choice was also tried in a narrowed region.
                if round_ > 2:
                    top: dict[int, float] = {}  # best score per choice index so far
                    for rec, score in zip(records, scores, strict=True):
                        top[rec[j]] = max(top.get(rec[j], -np.inf), score)
                    ranked = sorted((i for i in kept[name] if i in top), key=top.__getitem__)
                    keep = set(ranked[::-1][: math.ceil(len(ranked) / 2)]) | {best[j]}
                    kept[name] = [i for i in kept[name] if i in keep or i not in top]
                new[name] = Categorical(tuple(dim.choices[i] for i in kept[name]))
                continue
            half = (_fwd(dim, dim.high) - _fwd(dim, dim.low)) * self.shrink ** (round_ - 1) / 2
            lo, hi = (_inv(dim, _fwd(dim, best[j]) + d) for d in (-half, half))
            if isinstance(dim, Integer):
                ilo = min(max(dim.low, math.floor(lo)), best[j])
                ihi = max(min(dim.high, math.ceil(hi)), best[j])
                if ilo == ihi:  # keep a valid range; the duplicate check ends exhausted spaces
                    ilo, ihi = (ilo, ihi + 1) if ihi < dim.high else (ilo - 1, ihi)
                new[name] = Integer(ilo, ihi, dim.log)
            else:
                flo, fhi = min(max(dim.low, lo), best[j]), max(min(dim.high, hi), best[j])
                new[name] = Real(flo, fhi, dim.log) if flo < fhi else current[name]
        return new

    @staticmethod
    def _params(space: dict[str, Dimension], rec: tuple[Any, ...]) -> dict[str, Any]:
        """Record (numbers, categorical indices) -> the estimator's parameter dict."""
        return {
            n: d.choices[v] if isinstance(d, Categorical) else v
            for (n, d), v in zip(space.items(), rec, strict=True)
        }

    def _run_search(self, evaluate_candidates: Callable[..., dict[str, Any]]) -> None:
        space = parse_space(self.param_space)
        if not space:
            raise ValueError("param_space is empty; give at least one parameter to search.")
        if not _yields_constant_splits(self._checked_cv_orig):
            warnings.warn(
                "cv gives different splits on every call, so rounds are scored on different "
                "splits; pass an int random_state to the splitter for comparable rounds.",
                UserWarning,
                stacklevel=4,  # the caller of fit(), past BaseSearchCV.fit and its wrapper
            )
        key = f"mean_test_{self.refit}" if isinstance(self.refit, str) else "mean_test_score"
        rng = check_random_state(self.random_state)
        kept = {
            n: list(range(len(d.choices))) for n, d in space.items() if isinstance(d, Categorical)
        }
        current, seen = dict(space), set()
        records: list[tuple[Any, ...]] = []
        scores = np.empty(0)
        self.n_rounds_ = 0
        self.round_best_scores_: list[float] = []
        self.space_history_: list[dict[str, Dimension]] = []
        for round_ in range(1, self.max_rounds + 1):
            if round_ > 1:
                current = self._narrow(space, current, kept, records, scores, round_)
            batch: list[tuple[Any, ...]] = []
            for _ in range(self.n_candidates * _RESAMPLE_TRIES):
                if len(batch) == self.n_candidates:
                    break
                rec = tuple(_sample(current[n], kept.get(n, []), rng) for n in space)
                if rec not in seen:
                    seen.add(rec)
                    batch.append(rec)
            if not batch:  # every reachable point was already evaluated
                break
            results = evaluate_candidates([self._params(space, rec) for rec in batch])
            if key not in results:
                raise ValueError(
                    f"ConvergingSearchCV follows {key!r}, which the results lack; with "
                    "multi-metric scoring pass refit=<one of the scoring names>."
                )
            records.extend(batch)
            scores = np.asarray(results[key], dtype=float)
            scores = np.where(np.isnan(scores), -np.inf, scores)  # failed fits rank last
            best = float(scores.max())
            previous = self.round_best_scores_[-1] if self.round_best_scores_ else None
            self.space_history_.append(current)
            self.round_best_scores_.append(best if np.isfinite(best) else float("nan"))
            self.n_rounds_ = round_
            if self.progress is not None:
                self.progress(round_, self.max_rounds, self.round_best_scores_[-1])
            if previous is None or round_ < self.min_rounds:
                continue
            if math.isnan(previous):  # earlier rounds all failed: any finite score is progress
                gain = math.inf if np.isfinite(best) else 0.0
            else:
                gain = best - previous
            if gain < self.tol:
                break
