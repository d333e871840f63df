"""The `occam` command line: the one place that knows training, serving and monitoring.

Exit codes (documented in the README):
  0  success (for `train`: the model passed every gate and is labelled stage=production)
  2  bad config, bad command-line usage
  3  bad data: a check failed, or too many "I don't know" labels
  4  `train`, `retrain`: goals not met, baseline not beaten, or (retrain) the challenger did
     not pass the gate against the champion; saved as stage=candidate, not promoted
  5  model error: no servable bundle, or a bundle refused (bad manifest, changed file, unsigned
     or mis-signed while a signing key is set); for `promote`/`rollback` also an unknown tag or
     nothing to roll back to. The message names the bundle and the file.
  6  `monitor`: its checkpoint is refused (corrupt, tampered or not an Occam checkpoint)
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

import monitoring


def _command(argv: list[str]) -> str | None:
    """The subcommand named on the command line (the only global option is a flag)."""
    return next((a for a in argv if not a.startswith("-")), None)


if _command(sys.argv[1:]) == "monitor":  # before the config's imports load numpy and pandas
    monitoring.keep_pyarrow_out()
    monitoring.one_math_thread()

from occam.config import ConfigError, OccamConfig, load_config  # noqa: E402

if TYPE_CHECKING:
    from occam.metadata import BundleMetadata

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_DATA = 3
EXIT_NOT_PROMOTED = 4
EXIT_MODEL = 5
EXIT_CHECKPOINT = 6  # occam monitor: checkpoint refused

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
    """The config; also makes its signing key (`output.signing_key_file`) the process's key
    unless the environment names one, so that child processes (the service's workers) use it.
    A config or key that cannot be used exits 2."""
    from occam.signing import SIGNING_KEY_ENV, SIGNING_KEY_FILE_ENV, SigningKeyError, signing_key

    try:
        cfg = load_config(path)
        key_file = cfg.output.signing_key_file
        if key_file and not (
            os.environ.get(SIGNING_KEY_ENV) or os.environ.get(SIGNING_KEY_FILE_ENV)
        ):
            os.environ[SIGNING_KEY_FILE_ENV] = str(key_file)
        signing_key()  # a configured key that cannot be used stops here, not mid-training
        return cfg
    except (ConfigError, SigningKeyError) as exc:
        _error("config error", exc)
        raise typer.Exit(EXIT_CONFIG) from None


def _check_bind(cfg: OccamConfig, host: str, what: str) -> None:
    """Exit 2 when `what` may not listen on `host`: not loopback and no API keys, unless
    `serving.auth.allow_anonymous`; also when a keys file cannot be read."""
    from occam.auth import KeyFileError, KeyStore, bind_refusal, keys_files

    try:
        store = KeyStore.load(keys_files(cfg.serving.auth.keys_file))
    except KeyFileError as exc:
        _error("config error", exc)
        raise typer.Exit(EXIT_CONFIG) from None
    refusal = bind_refusal(host, store, cfg.serving.auth.allow_anonymous, what)
    if refusal is not None:
        _error("config error", RuntimeError(refusal))
        raise typer.Exit(EXIT_CONFIG)


def _model_error(exc: BaseException) -> typer.Exit:
    _error("model error", exc)
    return typer.Exit(EXIT_MODEL)


@app.command()
def init(
    data: Annotated[Path, typer.Argument(help="The CSV (or Parquet) file to learn from.")],
    target: Annotated[str, typer.Option("--target", "-t", help="Column holding the label.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Config file to write.")] = Path(
        "occam.yaml"
    ),
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out file.")] = False,
    quick: Annotated[
        bool, typer.Option("--quick", help="A small, fast search (for a first look or tests).")
    ] = False,
) -> None:
    """Write a commented starter config for DATA: features and their kinds, excluded columns
    and why, the time column and a proposed split, the class balance, and goals proposed from
    a quick baseline and model (goals stay a product decision). Never replaces an existing
    file without --force. Exit 2: --out exists; exit 3: the data or target cannot be used."""
    from training.data import DataError
    from training.init import write_starter

    try:
        starter = write_starter(data, target, out, force=force, quick=quick)
    except FileExistsError as exc:
        _error("init refused", exc)
        raise typer.Exit(EXIT_CONFIG) from None
    except DataError as exc:
        _error("data error", exc)
        raise typer.Exit(EXIT_DATA) from None
    time = starter.time
    console.print(
        Text(
            f"wrote {out}: {len(starter.numeric)} numeric, {len(starter.categorical)} "
            f"categorical, {len(starter.excluded)} excluded column(s); time column "
            + (f"{time.name} ({time.format})" if time else "none (random split)")
        ),
        soft_wrap=True,
    )
    if starter.unlabelled:
        console.print(
            Text(
                f"warning: {starter.unlabelled} row(s) have no {target}; training refuses them: "
                "drop them from the file or label them"
            ),
            soft_wrap=True,
        )
    for goal in starter.quick.goals:
        console.print(
            Text(
                f"  goal {goal.metric} >= {goal.threshold:.2f} (quick model "
                f"{goal.quick_model:.3f}, baseline {goal.baseline:.3f}): a proposal, edit it"
            )
        )
    console.print(
        Text(
            "next:\n"
            f"  occam train --config {out}\n"
            f"  occam serve --config {out}\n"
            f"  occam monitor --config {out}"
        ),
        soft_wrap=True,
    )


@app.command()
def train(config: ConfigOption = Path("occam.yaml")) -> None:
    """Check the data, score the baseline, search and evaluate the forest, gate it, and save
    the bundle to the BentoML model store (BENTOML_HOME) with its model card."""
    from occam.bundle import BundleError
    from training.card import goal_rows, verdict
    from training.pipeline import train as run_training

    cfg = _load(config)
    result = _with_progress(cfg, run_training)
    table = Table(title=f"{cfg.project}: goals on the held-out test set")
    for column in ("goal", "threshold", "baseline", "model (95% CI)", "pass"):
        table.add_column(column)
    for row in goal_rows(result.metadata.gate):
        table.add_row(*row)
    console.print(table)
    console.print(verdict(result.metadata.gate))
    try:  # promoted: the bundles it replaces are retired; either way, the audit log says so
        _record_training(result)
    except BundleError as exc:
        raise _model_error(exc) from None
    console.print(f"bundle {result.bundle.tag} (stage={result.bundle.stage})")
    console.print(f"model card {result.card_path}\nmetrics {result.metrics_path}")
    _track(cfg, result.metadata, result.card_path, result.bundle, "train")
    raise typer.Exit(EXIT_OK if result.promoted else EXIT_NOT_PROMOTED)


_Result = TypeVar("_Result")


def _with_progress(cfg: OccamConfig, run: Callable[..., _Result]) -> _Result:
    """Run a training (`run(cfg, on_stage=..., on_round=...)`) under a progress bar and return
    its result; bad data, a bad config or a bundle error ends the command with its exit code."""
    from occam.bundle import BundleError
    from training.data import DataError
    from training.labels import LabelQualityError

    with _progress() as progress:
        rounds = progress.add_task("search rounds", total=cfg.search.max_rounds, info="")

        def on_round(index: int, total: int, best: float) -> None:
            progress.update(rounds, completed=index, info=f"best {cfg.scoring} {best:.4f}")

        def on_stage(message: str) -> None:
            progress.console.print(Text(f"- {message}"))

        try:
            result = run(cfg, on_stage=on_stage, on_round=on_round)
        except (DataError, LabelQualityError) as exc:
            progress.stop()
            _error("data error", exc)
            raise typer.Exit(EXIT_DATA) from None
        except ConfigError as exc:
            # model.params and search.space are checked against scikit-learn when training starts.
            progress.stop()
            _error("config error", exc)
            raise typer.Exit(EXIT_CONFIG) from None
        except BundleError as exc:
            progress.stop()
            raise _model_error(exc) from None
        progress.update(rounds, completed=cfg.search.max_rounds)
    return result


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _track(
    cfg: OccamConfig,
    metadata: BundleMetadata,
    card: Path,
    bundle: Any,
    kind: str,
    eval_rows: Any = None,
    gate: dict[str, Any] | None = None,
) -> None:
    """Log the run to MLflow (`tracking.*`); a failure is reported, never fatal."""
    from training.tracking import holdout_rows, log_run

    if not cfg.tracking.enabled:
        return
    rows = eval_rows if eval_rows is not None else holdout_rows(bundle)
    outcome = log_run(cfg, metadata, card, bundle, kind=kind, eval_rows=rows, gate=gate)
    if outcome.ok:
        version = f", model version {outcome.model_version}" if outcome.model_version else ""
        console.print(Text(f"MLflow run {outcome.run_id} in {cfg.tracking.uri}{version}"))
    else:
        console.print(Text(f"MLflow tracking failed (training stands): {outcome.error}"))


def _record_challenge(result: Any) -> None:
    """The champion-vs-challenger verdict of `occam retrain` into the registry's audit log: a
    promotion retires the champion, a refusal is recorded with the gate table."""
    from occam.registry import GateRow, record_decision

    gate = result.gate
    rows = [
        GateRow(
            metric=c.metric,
            threshold=c.threshold,
            score=c.challenger,
            lower=c.difference_low,  # the paired difference's interval, as the registry says
            upper=c.difference_high,
            against="champion",
            against_score=c.champion,
            passed=c.passed,
        )
        for c in gate.comparisons
    ]
    reason = "occam retrain: " + (
        f"challenger beats or ties champion {gate.champion}"
        if gate.passed
        else "; ".join(gate.reasons())
    )
    record_decision(result.train.bundle.tag, promoted=result.promoted, reason=reason, gate=rows)


@app.command()
def retrain(config: ConfigOption = Path("occam.yaml")) -> None:
    """Retrain on production feedback and gate the challenger against the champion.

    Joins the prediction log (serving.log_dir) with its feedback, adds the original data under
    the `retrain.original` rule, trains a challenger with the same checks, goals and search,
    and scores champion (newest stage=production bundle) and challenger on the newest labelled
    rows neither trained on. The challenger is saved as stage=production only when it meets
    every goal, is within `retrain.tolerance` of the champion on each, and passes the slice
    floors; the table goes into its model card (`<output.reports_dir>/retrain`).

    Exit 0: promoted (or passed and held as a candidate, `retrain.promote: false`). Exit 4: not
    promoted (saved as stage=candidate). Exit 3: bad data, no
    champion, or too few labelled rows. Exit 2: bad config."""
    from occam.bundle import BundleError
    from training.challenger import TABLE_HEADER, table_rows
    from training.retrain import retrain as run_retrain
    from training.tracking import EvalRows

    cfg = _load(config)
    result = _with_progress(cfg, run_retrain)
    gate = result.gate
    table = Table(title=f"{cfg.project}: champion vs challenger on the {gate.rows} newest rows")
    for column in TABLE_HEADER:
        table.add_column(column)
    for row in table_rows(gate):
        table.add_row(*row)
    console.print(table)
    if result.held:  # retrain.promote is false: the audit log records the later promotion
        console.print(
            f"passed the gate; held as stage=candidate for a shadow run (retrain.promote=false): "
            f"`occam promote {gate.challenger}` makes it production"
        )
    elif gate.passed:
        console.print(f"promoted: {gate.challenger} replaces {gate.champion}")
    else:
        console.print(Text("not promoted:\n" + "\n".join(f"  - {r}" for r in gate.reasons())))
    console.print(f"bundle {result.train.bundle.tag} (stage={result.train.bundle.stage})")
    console.print(f"model card {result.train.card_path}")
    try:
        if not result.held:
            _record_challenge(result)
    except BundleError as exc:
        raise _model_error(exc) from None
    rows = EvalRows(result.labels, result.challenger_proba, result.classes, result.positive, "gate")
    _track(
        cfg,
        result.train.metadata,
        result.train.card_path,
        result.train.bundle,
        "retrain",
        rows,
        gate.to_dict(),
    )
    raise typer.Exit(EXIT_OK if result.promoted or result.held else EXIT_NOT_PROMOTED)


def _record_training(result: Any) -> None:
    """The training gate's verdict into the registry and its audit log (`occam.registry`)."""
    from occam.registry import GateRow, record_decision
    from training.card import verdict

    rows = [
        GateRow(
            metric=g.metric,
            threshold=g.threshold,
            score=g.model,
            lower=g.ci_low,
            upper=g.ci_high,
            against="baseline",
            against_score=g.baseline,
            passed=g.passed,
        )
        for g in result.gate.goals
    ]
    reason = f"occam train: {verdict(result.metadata.gate)}"
    record_decision(result.bundle.tag, promoted=result.promoted, reason=reason, gate=rows)


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
    GET /model, /readyz, /metrics, POST /admin/reload (see docs/service.md). Runs until stopped
    (Ctrl+C). Without a pinned tag, a bundle promoted later is swapped in without a restart.

    Exit 2: bad config, an unreadable keys file, or a non-loopback --host without API keys
    (see serving.auth). Exit 5: no servable bundle (none promoted, the pinned one not
    promoted) or the bundle is refused (bad manifest, files changed since training, unsigned
    or mis-signed while a signing key is set); the message names the file."""
    import importlib.util

    from occam.bundle import BundleError, resolve_serving_bundle

    cfg = _load(config)
    serving = cfg.serving
    _check_bind(cfg, host or serving.host, "occam serve")
    pinned = model_tag or os.environ.get("OCCAM_MODEL_TAG") or serving.model_tag
    try:  # check once here, with a clear message, rather than in every worker
        bundle = resolve_serving_bundle(cfg.output.model_name, pinned)
    except BundleError as exc:
        raise _model_error(exc) from None
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
        # A pin stays a pin; without one every worker follows the production label (and
        # swaps in a newly promoted bundle without a restart: serving.reload_interval_seconds).
        "OCCAM_MODEL_TAG": pinned or "",
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

    Exit 2: bad config, an unreadable keys file, or a non-loopback --host without API keys
    (see serving.auth). Exit 5: the served bundle is refused (bad manifest, changed files,
    unsigned or mis-signed while a signing key is set). Exit 6: the checkpoint is refused (not
    an Occam checkpoint, corrupt or tampered; nothing in it is run). Exit 1: the port cannot be
    bound. With no promoted bundle yet it starts and waits for one."""
    from monitoring.sidecar import main as run_monitor
    from monitoring.state import CheckpointError
    from occam.bundle import BundleError, BundleNotFound, resolve_serving_bundle

    cfg = _load(config)
    _check_bind(cfg, host or cfg.monitoring.host, "occam monitor")
    try:  # the bundle the service serves: refuse to watch one that must not be served
        resolve_serving_bundle(cfg.output.model_name, cfg.serving.model_tag)
    except BundleNotFound:
        pass  # nothing promoted yet: the monitor counts records and looks again later
    except BundleError as exc:
        raise _model_error(exc) from None
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
    except CheckpointError as exc:
        _error("monitor checkpoint refused", exc)
        raise typer.Exit(EXIT_CHECKPOINT) from None
    except OSError as exc:
        _error("monitor error", exc)
        raise typer.Exit(1) from None


keys_app = typer.Typer(help="API keys of the service and the monitor (see serving.auth).")
app.add_typer(keys_app, name="keys")


@keys_app.command("add")
def keys_add(
    ident: Annotated[str, typer.Option("--id", help="Name of the key (logged; the key is not)")],
    scopes: Annotated[
        str, typer.Option(help="Comma-separated scopes: predict, feedback, admin, metrics")
    ],
    config: ConfigOption = Path("occam.yaml"),
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="Keys file to append to (default: serving.auth.keys_file, then "
            "$OCCAM_API_KEYS_FILE)",
        ),
    ] = None,
) -> None:
    """Create an API key: print it once on stdout (nothing else goes there) and append its
    SHA-256 hash, id and scopes to the keys file. Exit 2: bad config, id or scopes, or no
    keys file given."""
    from occam.auth import KEYS_FILE_ENV, KeyFileError, add_key

    cfg = _load(config)
    path = file or cfg.serving.auth.keys_file or os.environ.get(KEYS_FILE_ENV)
    if path is None:
        _error(
            "config error",
            RuntimeError(
                f"no keys file: pass --file PATH, set serving.auth.keys_file or ${KEYS_FILE_ENV}"
            ),
        )
        raise typer.Exit(EXIT_CONFIG)
    wanted = [scope.strip() for scope in scopes.split(",") if scope.strip()]
    try:
        key = add_key(Path(path), ident, wanted)
    except KeyFileError as exc:
        _error("config error", exc)
        raise typer.Exit(EXIT_CONFIG) from None
    console.print(f"added key {ident!r} ({', '.join(sorted(set(wanted)))}) to {path}")
    sys.stdout.write(key + "\n")
    sys.stdout.flush()


ReasonOption = Annotated[
    str, typer.Option("--reason", "-r", help="Why; kept in the audit log (`occam history`)")
]


def _full_tag(cfg: OccamConfig, tag: str) -> str:
    return tag if ":" in tag else f"{cfg.output.model_name}:{tag}"


@app.command()
def promote(
    tag: Annotated[
        str,
        typer.Argument(help="Bundle to promote: name:version, or a version of output.model_name"),
    ],
    config: ConfigOption = Path("occam.yaml"),
    reason: ReasonOption = "(none given)",
) -> None:
    """Make TAG the production bundle; the one it replaces becomes stage=retired. The bundle is
    verified (and re-signed when a signing key is set) first; the change is appended to the
    audit log. Running services swap it in within serving.reload_interval_seconds.

    Exit 2: bad config. Exit 5: unknown tag or refused bundle (the message says why)."""
    from occam.bundle import BundleError
    from occam.registry import AlreadyInProduction
    from occam.registry import promote as run_promote

    cfg = _load(config)
    try:
        record = run_promote(_full_tag(cfg, tag), reason=reason)
    except AlreadyInProduction as exc:
        console.print(Text(f"{exc}; nothing to do"), soft_wrap=True)
        raise typer.Exit(EXIT_OK) from None
    except BundleError as exc:
        raise _model_error(exc) from None
    console.print(Text(f"promoted {record.to_tag} (was {record.from_tag or 'none'})"))
    _mirror_champion(cfg, record.to_tag)


@app.command()
def rollback(
    config: ConfigOption = Path("occam.yaml"), reason: ReasonOption = "(none given)"
) -> None:
    """Put the previous production bundle back (the one the current one replaced, from the
    audit log); the current one becomes stage=retired. Running it twice returns to where it
    started. The change is appended to the audit log.

    Exit 2: bad config. Exit 5: nothing in production, nothing to go back to, or the previous
    bundle is refused (changed files, bad signature)."""
    from occam.bundle import BundleError
    from occam.registry import rollback as run_rollback

    cfg = _load(config)
    try:
        record = run_rollback(cfg.output.model_name, reason=reason)
    except BundleError as exc:
        raise _model_error(exc) from None
    console.print(Text(f"rolled back from {record.from_tag} to {record.to_tag}"))
    _mirror_champion(cfg, record.to_tag)


def _mirror_champion(cfg: OccamConfig, tag: str | None) -> None:
    """Keep MLflow's `champion` alias on the bundle the BentoML label now names (the label is
    the source of truth; a tracking failure is reported, never fatal)."""
    if tag is None or not cfg.tracking.enabled:
        return
    from training.tracking import mirror_alias

    outcome = mirror_alias(cfg, tag, "champion")
    if not outcome.ok:
        console.print(Text(f"MLflow alias not moved (the registry change stands): {outcome.error}"))


@app.command()
def history(
    config: ConfigOption = Path("occam.yaml"),
    limit: Annotated[int, typer.Option(min=1, help="Show the newest N records")] = 20,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the records as JSON lines instead of a table")
    ] = False,
) -> None:
    """Show the audit log of output.model_name: every promotion, rejection and rollback, with
    when, who (user@host), why and the gate's verdict, oldest first. Printed on stdout."""
    from occam.registry import audit_log_path, read_history

    cfg = _load(config)
    records = read_history(cfg.output.model_name)[-limit:]
    if as_json:
        for record in records:
            typer.echo(record.to_json())
        return
    table = Table(title=f"{cfg.output.model_name}: audit log {audit_log_path()}")
    for column in ("when (UTC)", "action", "from", "to", "who", "reason", "gate"):
        table.add_column(column)
    for r in records:
        gate = (
            "" if r.gate is None else f"{sum(g.passed for g in r.gate)}/{len(r.gate)} goals passed"
        )
        table.add_row(
            r.at.replace("T", " ")[:19],
            r.action.value,
            r.from_tag or "",
            r.to_tag or "",
            f"{r.user}@{r.host}",
            Text(r.reason),
            gate,
        )
    Console().print(table)


if __name__ == "__main__":  # pragma: no cover
    app()
