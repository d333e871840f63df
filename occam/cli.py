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


if __name__ == "__main__":  # pragma: no cover
    app()
