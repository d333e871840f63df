"""The demo's replay against a real service: a window is filled past refused requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from occam.demo import _refusal_line, fill_window
from occam.loopback import ReplayStats, replay
from tests.conftest import ROOT, small_config, write_config
from tests.service.conftest import occam_serve
from training.data import load_frame

pytestmark = pytest.mark.integration


def test_a_demo_window_is_filled_past_refused_requests(tmp_path: Path, trained: Any) -> None:
    """The demo's window is `rows` answered predictions, as the monitor counts them: a request
    the service refuses (all or nothing) is replaced by the next rows, and the refusal is kept
    by field and reason. Before, the window came up short and the demo timed out waiting for
    a count the monitor never made."""
    raw = small_config(tmp_path)
    raw["output"]["model_name"] = trained.bundle.tag.split(":")[0]
    config_path = write_config(tmp_path, raw)
    frame = load_frame(ROOT / "data" / "flights.csv.gz").iloc[50_000:50_400]
    frame = frame.reset_index(drop=True)
    frame["carrier"] = frame["carrier"].astype(object)
    frame.loc[60, "carrier"] = 12345  # a number that is no known carrier: refused, 422
    features = trained.bundle.schema.names
    stats = ReplayStats()
    with occam_serve(config_path, OCCAM_MODEL_TAG=trained.bundle.tag) as server:

        def send(part: pd.DataFrame) -> None:
            replay(server.url, part, features, "late", stats=stats, feedback_share=0)

        cursor = fill_window(send, frame, 0, 200, stats)
        assert stats.rows == 200 and stats.rejected_requests == 1
        assert stats.refusals == {"carrier: unmatched_category": 1}
        assert cursor == 250  # rows 50-99 went in the refused request
        assert stats.index == [*range(50), *range(100, 250)]
        assert stats.truth == frame["late"].astype(str).iloc[stats.index].tolist()
        line = _refusal_line({}, stats.refusals)
        assert "refused 1 request(s) (carrier: unmatched_category x1)" in line
        # the frame's end: the window comes up short and says so by its count
        rest = fill_window(send, frame, cursor, 200, stats)
        assert rest == len(frame) and stats.rows == 350
