"""The registry: which bundle of a model is in production, and the audit log of every decision.

The source of truth is the BentoML model store that every replica reads: the ``stage`` label of
each bundle (`occam.bundle`). At most one bundle of a model name is ``production``; promoting
one relabels the one it replaces ``retired``; both labels are re-signed when a signing key is
set. A rejected bundle stays ``candidate``.

Every promotion, rejection and rollback is appended to the audit log, one JSON object per line
(`AuditRecord`), at `audit_log_path()`: ``$OCCAM_AUDIT_LOG`` when set, else
``<BENTOML_HOME>/occam/audit.jsonl`` beside the model store, so every replica that shares the
store shares the log. Writers hold an exclusive lock (``registry.lock`` in the same folder)
while they relabel and append, so two promotions never interleave.

Public: `promote`, `rollback`, `record_decision` (the training gate's promoted/rejected result),
`read_history` (for `occam history` and the service's ``GET /model``), `audit_log_path`,
`AuditRecord`, `GateRow`, `Action`, `RegistryError`, `AlreadyInProduction`.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import logging
import math
import os
import shlex
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from occam.bundle import (
    PRODUCTION,
    RETIRED,
    Bundle,
    BundleError,
    BundleNotFound,
    get_bundle,
    list_bundles,
    set_stage,
)

log = logging.getLogger(__name__)

AUDIT_LOG_ENV = "OCCAM_AUDIT_LOG"
#: Stages of bundles that served once: what a rollback without an audit record goes back to.
_SERVED = (RETIRED, PRODUCTION)
AUDIT_FILE = "audit.jsonl"
LOCK_FILE = "registry.lock"
#: Longest `reason` and `command` kept in a record (characters); longer ones are cut.
MAX_TEXT = 2000


class RegistryError(BundleError):
    """A stage change that cannot be made (nothing to roll back to, already in production)."""


class AlreadyInProduction(RegistryError):
    """`promote` of the bundle that already is the only production one: nothing to change."""


class Action(StrEnum):
    """What a record says happened."""

    PROMOTE = "promote"  # the bundle became production (`occam promote`, or training passed)
    REJECT = "reject"  # a gate refused the bundle: it stays candidate, production is unchanged
    ROLLBACK = "rollback"  # production went back to the bundle it replaced


@dataclass(frozen=True)
class GateRow:
    """One goal of a gate's table: the new model's score against a threshold and a reference.

    `against` names the reference (``baseline`` for training, ``champion`` for a retrain);
    `lower`/`upper` bound the new score (or the paired difference, as the gate states).
    Unknown numbers are None.
    """

    metric: str
    threshold: float | None
    score: float | None
    lower: float | None
    upper: float | None
    against: str
    against_score: float | None
    passed: bool


@dataclass(frozen=True)
class AuditRecord:
    """One line of the audit log.

    `at`: UTC time (ISO 8601). `model`: the model name. `from_tag`: production before (None if
    there was none); `to_tag`: production after for promote/rollback, the refused bundle for a
    reject. `user`, `host`, `command`: who or what acted (the OS user, the host name, the
    command line). `reason`: why, as given. `gate`: the gate table, when one decided.
    """

    at: str
    action: Action
    model: str
    from_tag: str | None
    to_tag: str | None
    reason: str
    user: str
    host: str
    command: str
    gate: tuple[GateRow, ...] | None = None

    def to_json(self) -> str:
        data = asdict(self)
        data["action"] = self.action.value
        data["gate"] = None if self.gate is None else [asdict(_finite(r)) for r in self.gate]
        return json.dumps(data, sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, line: str) -> AuditRecord:
        """Parse one line; `ValueError` (or `KeyError`/`TypeError`) when it is not a record."""
        data = json.loads(line)
        gate = data.get("gate")
        return cls(
            at=str(data["at"]),
            action=Action(data["action"]),
            model=str(data["model"]),
            from_tag=data.get("from_tag"),
            to_tag=data.get("to_tag"),
            reason=str(data.get("reason", "")),
            user=str(data.get("user", "")),
            host=str(data.get("host", "")),
            command=str(data.get("command", "")),
            gate=None if gate is None else tuple(GateRow(**row) for row in gate),
        )


def _finite(row: GateRow) -> GateRow:
    """The row with NaN and infinite numbers as None (unknown): the log stays strict JSON."""

    def known(value: float | None) -> float | None:
        return None if value is None or not math.isfinite(value) else value

    return replace(
        row,
        threshold=known(row.threshold),
        score=known(row.score),
        lower=known(row.lower),
        upper=known(row.upper),
        against_score=known(row.against_score),
    )


def audit_log_path() -> Path:
    """``$OCCAM_AUDIT_LOG``, else ``audit.jsonl`` in ``<BENTOML_HOME>/occam/``."""
    configured = os.environ.get(AUDIT_LOG_ENV)
    if configured:
        return Path(configured)
    from bentoml._internal.configuration.containers import BentoMLContainer

    return Path(BentoMLContainer.bentoml_home.get()) / "occam" / AUDIT_FILE


def read_history(model: str | None = None, path: Path | None = None) -> list[AuditRecord]:
    """The audit records, oldest first (only `model`'s when given); [] when there is no log.

    A line that is not a record (cut short by a full disk, edited by hand) is skipped with a
    warning naming its line number: the history is shown, never refused.
    """
    path = path or audit_log_path()
    try:
        text = path.read_text(encoding="utf8", errors="replace")
    except FileNotFoundError:
        return []
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = AuditRecord.from_json(line)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("%s line %d is not an audit record, skipped: %s", path, number, exc)
            continue
        if model is None or record.model == model:
            records.append(record)
    return records


def promote(
    tag: str, *, reason: str, gate: Sequence[GateRow] | None = None, command: str | None = None
) -> AuditRecord:
    """Make `tag` the production bundle of its model; the previous one becomes ``retired``.

    The bundle is verified first (manifest, and signature when a key is set). Raises
    `RegistryError` when it already is the only production bundle, `BundleNotFound` or
    `BundleIntegrityError` when it cannot be promoted. Appends a ``promote`` record.
    """
    with _locked():
        bundle = get_bundle(tag)
        others = [b for b in _production(bundle.name) if b.tag != bundle.tag]
        if bundle.stage == PRODUCTION and not others:
            raise AlreadyInProduction(f"bundle {bundle.tag} is already in production")
        return _switch(bundle, others, Action.PROMOTE, reason, gate, command)


def rollback(name: str, *, reason: str, command: str | None = None) -> AuditRecord:
    """Put back the production bundle that the current one replaced; one call, one record.

    The target is read from the audit log (the `from_tag` of the newest promote or rollback to
    the current bundle); without such a record, the newest other ``retired`` (or, in a store
    older than the registry, ``production``) bundle. Raises
    `RegistryError` when nothing is in production or there is nothing to go back to.
    """
    with _locked():
        current = _production(name)
        if not current:
            raise RegistryError(f"no bundle of {name!r} is in production: nothing to roll back")
        target = _previous(name, current[0])
        if target is None:
            raise RegistryError(
                f"no previous production bundle of {name!r} to roll back to from "
                f"{current[0].tag}; promote one by tag with `occam promote TAG`"
            )
        return _switch(target, current, Action.ROLLBACK, reason, None, command)


def record_decision(
    tag: str,
    *,
    promoted: bool,
    reason: str,
    gate: Sequence[GateRow] | None = None,
    command: str | None = None,
) -> AuditRecord:
    """Record a gate's verdict on a new bundle, for training and retraining alike.

    Promoted: `tag` becomes the production bundle (it may carry the label already, as training
    saves it) and any other production bundle of its name is retired; a ``promote`` record.
    Rejected: nothing changes in the store; a ``reject`` record whose `from_tag` is the bundle
    that stays in production.
    """
    if promoted:
        with _locked():
            bundle = get_bundle(tag)
            others = [b for b in _production(bundle.name) if b.tag != bundle.tag]
            return _switch(bundle, others, Action.PROMOTE, reason, gate, command)
    with _locked():
        bundle = get_bundle(tag)
        current = _production(bundle.name)
        record = _record(
            Action.REJECT,
            bundle.name,
            current[0].tag if current else None,
            bundle.tag,
            reason,
            gate,
            command,
        )
        _append(record)
        return record


def _switch(
    target: Bundle,
    replaced: list[Bundle],
    action: Action,
    reason: str,
    gate: Sequence[GateRow] | None,
    command: str | None,
) -> AuditRecord:
    """Label `target` production (verified, re-signed), retire `replaced`, append the record.

    The new production label is written before the old ones are retired: a replica that looks
    in between sees two production bundles for an instant (and serves one of them), never none.
    """
    replaced = [b for b in replaced if b.tag != target.tag]
    if target.stage != PRODUCTION:
        set_stage(target, PRODUCTION)
    else:
        target.verify()  # already labelled (training): still refuse a tampered bundle
    for old in replaced:
        set_stage(old, RETIRED, check=False)
    record = _record(
        action,
        target.name,
        replaced[0].tag if replaced else None,
        target.tag,
        reason,
        gate,
        command,
    )
    _append(record)
    log.info("%s: %s -> %s", action.value, record.from_tag, record.to_tag)
    return record


def _production(name: str) -> list[Bundle]:
    """Bundles of `name` labelled production, newest first (one, unless mid-change)."""
    return [b for b in list_bundles(name) if b.stage == PRODUCTION]


def _previous(name: str, current: Bundle) -> Bundle | None:
    for record in reversed(read_history(name)):
        moved = record.action in (Action.PROMOTE, Action.ROLLBACK)
        if moved and record.to_tag == current.tag and record.from_tag:
            try:
                return get_bundle(record.from_tag)
            except BundleNotFound:
                log.warning("audit log names %s, no longer in the store", record.from_tag)
                break
    # No record (a store from before the audit log): the newest other bundle that served.
    served = [b for b in list_bundles(name) if b.tag != current.tag and b.stage in _SERVED]
    return served[0] if served else None


def _record(
    action: Action,
    model: str,
    from_tag: str | None,
    to_tag: str | None,
    reason: str,
    gate: Sequence[GateRow] | None,
    command: str | None,
) -> AuditRecord:
    return AuditRecord(
        at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        action=action,
        model=model,
        from_tag=from_tag,
        to_tag=to_tag,
        reason=reason[:MAX_TEXT],
        user=_user(),
        host=socket.gethostname(),
        command=(command if command is not None else _command_line())[:MAX_TEXT],
        gate=None if gate is None else tuple(_finite(row) for row in gate),
    )


def _command_line() -> str:
    """This process's command line, the program by its file name (``occam promote ...``)."""
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else ""


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        return f"uid {os.getuid()}"


@contextmanager
def _locked() -> Iterator[None]:
    """Hold the registry's exclusive lock (a `flock` on ``registry.lock``, shared by every
    process on this store's file system)."""
    folder = audit_log_path().parent
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _append(record: AuditRecord) -> None:
    """Append one line and fsync it; called with the lock held."""
    path = audit_log_path()
    with path.open("a", encoding="utf8") as stream:
        stream.write(record.to_json() + "\n")
        stream.flush()
        os.fsync(stream.fileno())
