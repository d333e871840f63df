"""Does the per-worker reload poll show in the tail? Single-row /predict at concurrency 8 on
three Occam services up at once: pinned (never polls), polling every 5 s (the default) and
every 0.5 s (10x the default rate), measured in interleaved rounds.

Run: `.venv/bin/python bench/tail_reload_poll.py --bentoml-home <home> --model-tag <tag>`
(about 2 minutes); writes bench/results/serving_tail.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bentoml-home", type=Path, required=True)
    parser.add_argument("--model-tag", required=True)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=2.0)
    args = parser.parse_args()
    os.environ["BENTOML_HOME"] = str(args.bentoml_home)  # before anything imports bentoml
    import yaml

    from bench.bench_serving import RESULTS, interleaved, serve
    from occam.bundle import get_bundle
    from service.predictor import reference_instances

    tag = args.model_tag
    bundle = get_bundle(tag)
    rows = reference_instances(bundle.load_reference().head(1000), bundle.schema)
    single = [{"instances": [row]} for row in rows]
    work = Path(tempfile.mkdtemp(prefix="occam-tail-"))

    def config(name: str, interval: float) -> Path:
        raw = yaml.safe_load((ROOT / "occam.yaml").read_text())
        raw["data"]["path"] = str(ROOT / "data" / "flights.csv.gz")
        raw["output"]["model_name"] = tag.split(":")[0]
        raw["serving"] = {
            "log_dir": str(work / f"logs-{name}"),
            "reload_interval_seconds": interval,
        }
        path = work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    variants = {"pinned": (tag, 5.0), "poll_5s": ("", 5.0), "poll_0.5s": ("", 0.5)}
    with ExitStack() as stack:
        urls = {}
        for name, (pin, interval) in variants.items():
            env = {"OCCAM_MODEL_TAG": pin, "OCCAM_CONFIG": str(config(name, interval))}
            log = work / "servers.log"
            base = stack.enter_context(serve("service.app:Occam", 2, env, single[0], log))
            urls[name] = f"{base}/predict"
        before = os.getloadavg()[0]
        cells = interleaved(urls, single, 8, args.rounds, args.duration)
    out: dict[str, object] = {name: result.to_dict() for name, result in cells.items()}
    out["load_average_1min"] = [round(before, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(out, indent=1))
    (RESULTS / "serving_tail.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
