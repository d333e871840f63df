"""The `occam` command line: the one place that knows training, serving and monitoring.

Exit codes (documented in the README):
  0  success (for `train`: the model passed every gate and is labelled stage=production)
  2  bad config, bad command-line usage
  3  bad data: a check failed, or too many "I don't know" labels
  4  `train` only: goals not met or baseline not beaten; saved as stage=candidate, not promoted
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from occam.config import ConfigError, OccamConfig, load_config

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_DATA = 3
EXIT_NOT_PROMOTED = 4

app = typer.Typer(
    help="Occam: from a CSV and a goal to a gated, served and watched classifier.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
ConfigOption = Annotated[
    Path, typer.Option("--config", "-c", help="Project config (YAML).", show_default=True)
]


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Occam's commands. Start with `occam train --config occam.yaml`."""
    # BentoML reports usage to its servers unless told not to; Occam never calls out.
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")


def _error(kind: str, exc: BaseException) -> None:
    """Print an error message verbatim (no markup: messages contain `[column]`), unwrapped."""
    console.print(Text(f"{kind}: ", style="bold red") + Text(str(exc)), soft_wrap=True)


def _load(path: Path) -> OccamConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        _error("config error", exc)
        raise typer.Exit(EXIT_CONFIG) from None


@app.command()
def train(config: ConfigOption = Path("occam.yaml")) -> None:
    """Check the data, score the baseline, search and evaluate the forest, gate it, and save
    the bundle to the BentoML model store (BENTOML_HOME) with its model card."""
    from training.card import goal_rows, verdict
    from training.data import DataError
    from training.labels import LabelQualityError
    from training.pipeline import train as run_training

    cfg = _load(config)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    with progress:
        rounds = progress.add_task("search rounds", total=cfg.search.max_rounds, info="")

        def on_round(index: int, total: int, best: float) -> None:
            progress.update(rounds, completed=index, info=f"best {cfg.scoring} {best:.4f}")

        def on_stage(message: str) -> None:
            progress.console.print(f"- {message}")

        try:
            result = run_training(cfg, on_stage=on_stage, on_round=on_round)
        except (DataError, LabelQualityError) as exc:
            progress.stop()
            _error("data error", exc)
            raise typer.Exit(EXIT_DATA) from None
        except ConfigError as exc:
            # model.params and search.space are checked against scikit-learn when training starts.
            progress.stop()
            _error("config error", exc)
            raise typer.Exit(EXIT_CONFIG) from None
        progress.update(rounds, completed=cfg.search.max_rounds)

    table = Table(title=f"{cfg.project}: goals on the held-out test set")
    for column in ("goal", "threshold", "baseline", "model (95% CI)", "pass"):
        table.add_column(column)
    for row in goal_rows(result.gate.to_dict()):
        table.add_row(*row)
    console.print(table)
    console.print(verdict(result.gate.to_dict()))
    console.print(f"bundle {result.bundle.tag} (stage={result.bundle.stage})")
    console.print(f"model card {result.card_path}\nmetrics {result.metrics_path}")
    raise typer.Exit(EXIT_OK if result.promoted else EXIT_NOT_PROMOTED)


@app.command()
def serve(
    config: ConfigOption = Path("occam.yaml"),
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default: serving.port)")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Server processes (default: serving.workers)")
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: serving.host)")
    ] = None,
    model_tag: Annotated[
        str | None,
        typer.Option(
            "--model-tag",
            help="Serve this bundle (name:version) instead of the newest stage=production one; "
            "default: $OCCAM_MODEL_TAG, then serving.model_tag",
        ),
    ] = None,
) -> None:
    """Serve the promoted model over HTTP with BentoML: POST /predict, POST /feedback,
    GET /model, /readyz, /metrics (see docs/service.md). Runs until stopped (Ctrl+C).

    Exit 2: bad config. Exit 5: no servable bundle (none promoted, the pinned one not
    promoted, or its files changed since training)."""
    import importlib.util
    import sys

    from occam.bundle import BundleError, resolve_serving_bundle

    exit_no_model = 5
    cfg = _load(config)
    serving = cfg.serving
    pinned = model_tag or os.environ.get("OCCAM_MODEL_TAG") or serving.model_tag
    try:  # check once here, with a clear message, rather than in every worker
        bundle = resolve_serving_bundle(cfg.output.model_name, pinned)
    except BundleError as exc:
        _error("model error", exc)
        raise typer.Exit(exit_no_model) from None
    spec = importlib.util.find_spec("service")
    if spec is None or spec.origin is None:
        _error("install error", RuntimeError("the `service` package is not importable"))
        raise typer.Exit(EXIT_CONFIG)
    overrides = [
        f"services.occam.workers={workers or serving.workers}",
        f"services.occam.logging.access.enabled={str(serving.access_log).lower()}",
    ]
    env = {
        **os.environ,
        "OCCAM_CONFIG": str(config.resolve()),
        # Every worker serves the bundle checked above, even if a newer one is promoted meanwhile.
        "OCCAM_MODEL_TAG": bundle.tag,
        "BENTOML_DO_NOT_TRACK": "True",
        "BENTOML_CONFIG_OPTIONS": " ".join(
            [os.environ.get("BENTOML_CONFIG_OPTIONS", ""), *overrides]
        ).strip(),
    }
    address, number = host or serving.host, serving.port if port is None else port
    command = [
        sys.executable, "-m", "bentoml", "serve", "service.app:Occam",
        "--host", address, "--port", str(number),
        "--working-dir", str(Path(spec.origin).parent.parent),
    ]  # fmt: skip
    console.print(f"serving {bundle.tag} on {address}:{number} (log in {serving.log_dir})")
    os.execve(sys.executable, command, env)  # BentoML takes over this process and its signals


@app.command()
def demo(
    config: ConfigOption = Path("occam.yaml"),
    rows_per_second: Annotated[
        float, typer.Option(min=1, help="Replay pace; the production months take ~1 min at 500")
    ] = 500.0,
    feedback_share: Annotated[
        float, typer.Option(min=0, max=1, help="Share of replayed rows whose true label is sent")
    ] = 0.3,
    keep_running: Annotated[
        bool, typer.Option(help="Keep the service, monitor and Prometheus up after the replay")
    ] = False,
) -> None:
    """The main job: train if no model is promoted, start the service, the monitor and
    Prometheus (when installed), replay held-out then production traffic with feedback, and
    say what the monitor concludes as it goes."""
    from occam.demo import run_demo

    _load(config)  # a bad config stops here with the usual message
    result = run_demo(
        config.resolve(),
        say=lambda message: console.print(Text(message), soft_wrap=True),
        rows_per_second=rows_per_second,
        feedback_share=feedback_share,
        keep_running=keep_running,
    )
    raise typer.Exit(result.exit_code)


@app.command()
def monitor(
    config: ConfigOption = Path("occam.yaml"),
    port: Annotated[
        int | None,
        typer.Option(help="Metrics port (default: monitoring.port; 0 picks a free port)"),
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Metrics address (default: monitoring.host)")
    ] = None,
    once: Annotated[
        bool,
        typer.Option(
            "--once", help="Read the log to its end, check once, save the checkpoint and exit"
        ),
    ] = False,
    max_seconds: Annotated[
        float | None, typer.Option(min=0, help="Stop after this many seconds")
    ] = None,
) -> None:
    """Watch the service's prediction log (serving.log_dir): drift, data quality, live goal
    metrics from feedback, and the retrain recommendation, exported for Prometheus on
    /metrics (see docs/metrics.md). Runs until SIGTERM or Ctrl+C, then saves its checkpoint.

    Exit 2: bad config. Exit 1: the checkpoint cannot be read or the port cannot be bound."""
    from monitoring.sidecar import main as run_monitor
    from monitoring.state import CheckpointError

    cfg = _load(config)
    log_dir = cfg.serving.log_dir
    state_dir = cfg.monitoring.state_dir
    if state_dir is not None and not state_dir.is_absolute():  # like every path: config-relative
        monitoring = cfg.monitoring.model_copy(
            update={"state_dir": (config.parent / state_dir).resolve()}
        )
        cfg = cfg.model_copy(update={"monitoring": monitoring})

    def ready(url: str) -> None:
        console.print(Text(f"monitoring {log_dir}; metrics on {url}"), soft_wrap=True)

    try:
        run_monitor(cfg, port=port, host=host, once=once, max_seconds=max_seconds, on_ready=ready)
    except (CheckpointError, OSError) as exc:
        _error("monitor error", exc)
        raise typer.Exit(1) from None


if __name__ == "__main__":  # pragma: no cover
    app()
