"""Label quality: unknown share, majority vote, agreement, likely label errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from occam.config import OccamConfig, parse_config
from training.labels import (
    LabelQualityError,
    find_label_issues,
    fleiss_kappa,
    majority_vote,
    resolve_labels,
)


def cfg(**labels: object) -> OccamConfig:
    return parse_config(
        {
            "project": "t",
            "data": {"path": "x.csv", "target": "y"},
            "labels": labels,
            "goals": [{"metric": "accuracy", "threshold": 0.5}],
        }
    )


def test_unknown_labels_are_dropped_and_counted(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": range(10), "y": ["a"] * 5 + ["b"] * 4 + ["?"]})
    known, report = resolve_labels(frame, cfg(unknown_values=["?"]), tmp_path)
    assert len(known) == 9 and report.unknown_rows == 1 and report.unknown_share == 0.1


def test_too_many_unknown_labels_stop_training(tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": range(10), "y": ["a"] * 5 + ["?"] * 5})
    with pytest.raises(LabelQualityError, match="may not be in the") as err:
        resolve_labels(frame, cfg(unknown_values=["?"], max_unknown_share=0.2), tmp_path)
    assert "5 of 10" in str(err.value) and "50.0%" in str(err.value)


def test_majority_vote_ties_become_unknown() -> None:
    votes = pd.DataFrame(
        {
            "r1": ["a", "a", "a", None],
            "r2": ["a", "b", "b", None],
            "r3": ["b", None, "b", None],
        }
    )
    assert majority_vote(votes, "?").tolist() == ["a", "?", "b", "?"]


def test_fleiss_kappa_known_values() -> None:
    perfect = pd.DataFrame({"r1": list("abab"), "r2": list("abab"), "r3": list("abab")})
    assert fleiss_kappa(perfect) == pytest.approx(1.0)
    # Wikipedia's worked example gives 0.210 for 14 raters; here a hand-computed 2-rater case:
    # items (a,a) (a,b) (b,b) (b,a): P_bar = 0.5, P_e = 0.5 -> kappa 0.
    mixed = pd.DataFrame({"r1": list("aabb"), "r2": list("abba")})
    assert fleiss_kappa(mixed) == pytest.approx(0.0)
    assert fleiss_kappa(pd.DataFrame({"r1": list("ab")})) is None


def test_annotators_vote_report_kappa_and_write_disagreements(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "x": range(6),
            "r1": ["a", "a", "b", "b", "a", "b"],
            "r2": ["a", "a", "b", "a", "b", "b"],
            "r3": ["a", "b", "b", "a", "a", "b"],
        }
    )
    known, report = resolve_labels(frame, cfg(annotators=["r1", "r2", "r3"]), tmp_path)
    assert known["y"].tolist() == ["a", "a", "b", "a", "a", "b"]
    assert report.disagreeing_rows == 3 and report.kappa is not None
    written = pd.read_csv(report.disagreement_file)
    assert written["row"].tolist() == [1, 3, 4]


def test_cleanlab_finds_flipped_labels() -> None:
    rng = np.random.default_rng(0)
    n = 400
    y = pd.Series(rng.choice(["a", "b"], size=n))
    proba = np.where((y == "a").to_numpy()[:, None], [0.95, 0.05], [0.05, 0.95])
    flipped = [3, 50, 200]
    y.iloc[flipped] = y.iloc[flipped].map({"a": "b", "b": "a"})
    found = find_label_issues(y, proba, ["a", "b"])
    assert sorted(found.tolist()) == flipped


def test_numeric_labels_are_read_as_their_canonical_text(tmp_path: Path) -> None:
    # read_csv gives a 0/1 column with a gap as floats; -1 means "I don't know"
    frame = pd.DataFrame({"x": range(6), "y": [1.0, 0.0, 1.0, -1.0, 0.0, 1.0]})
    known, report = resolve_labels(frame, cfg(unknown_values=[-1]), tmp_path)
    assert list(known["y"]) == ["1", "0", "1", "0", "1"] and report.unknown_rows == 1


def test_labellers_are_scored_against_the_others_majority(tmp_path: Path) -> None:
    from training.labels import human_level, labeller_scores

    truth = np.array(["a", "b"] * 50)
    wrong = truth.copy()
    wrong[:20] = np.where(truth[:20] == "a", "b", "a")  # c is wrong on 20 of 100 rows
    frame = pd.DataFrame({"p": truth, "q": truth, "c": wrong})
    config = parse_config(
        {
            "project": "t",
            "data": {"path": "x.csv", "target": "y"},
            "labels": {"annotators": ["p", "q", "c"]},
            "goals": [{"metric": "accuracy", "threshold": "human"}],
        }
    )
    scores = {s.name: s for s in labeller_scores(frame, frame, config, ["a", "b"], "b")}
    # c against p and q (who agree everywhere): 80 of 100
    assert scores["c"].accuracy == 0.8 and scores["c"].rows == 100
    assert scores["c"].goals["accuracy"] == 0.8
    # p against q and c: they tie on the 20 rows c gets wrong, which are left out
    assert scores["p"].rows == 80 and scores["p"].accuracy == 1.0 and scores["p"].kappa == 1.0
    assert human_level(list(scores.values()), "accuracy") == pytest.approx((1 + 1 + 0.8) / 3)
