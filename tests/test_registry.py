"""The registry on the real BentoML store: one production bundle per name, promote, rollback,
rejections, the audit log, signatures kept valid across stage changes, and the CLI commands."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from occam.bundle import (
    CANDIDATE,
    PRODUCTION,
    RETIRED,
    BundleIntegrityError,
    get_bundle,
    list_bundles,
    resolve_serving_bundle,
    set_stage,
)
from occam.registry import (
    AUDIT_LOG_ENV,
    Action,
    AlreadyInProduction,
    AuditRecord,
    GateRow,
    RegistryError,
    audit_log_path,
    promote,
    read_history,
    record_decision,
    rollback,
)
from occam.signing import SIGNING_KEY_ENV
from tests.bundles import make_bundle, model_name, occam, rewrite_with_hash
from tests.conftest import ROOT

KEY = "k" * 32


def stages(name: str) -> dict[str, str]:
    return {b.tag: b.stage for b in list_bundles(name)}


def test_the_audit_log_lives_beside_the_model_store(
    bentoml_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(AUDIT_LOG_ENV, raising=False)
    assert audit_log_path() == bentoml_home / "occam" / "audit.jsonl"
    monkeypatch.setenv(AUDIT_LOG_ENV, str(tmp_path / "audit.jsonl"))
    assert audit_log_path() == tmp_path / "audit.jsonl"


def test_promote_then_rollback_keeps_one_production_and_records_each(bentoml_home: Path) -> None:
    name = model_name()
    first = make_bundle(name, promoted=True)
    record_decision(first.tag, promoted=True, reason="first model")
    second = make_bundle(name, promoted=False)
    assert stages(name) == {first.tag: PRODUCTION, second.tag: CANDIDATE}

    promoted = promote(second.tag, reason="better on July", command="occam promote")
    assert stages(name) == {first.tag: RETIRED, second.tag: PRODUCTION}
    assert resolve_serving_bundle(name, None).tag == second.tag
    assert (promoted.action, promoted.from_tag, promoted.to_tag) == (
        Action.PROMOTE,
        first.tag,
        second.tag,
    )

    back = rollback(name, reason="worse live AUC")
    assert stages(name) == {first.tag: PRODUCTION, second.tag: RETIRED}
    assert (back.action, back.from_tag, back.to_tag) == (Action.ROLLBACK, second.tag, first.tag)
    # rolling back the rollback returns to where it started
    again = rollback(name, reason="false alarm")
    assert (again.from_tag, again.to_tag) == (first.tag, second.tag)
    assert stages(name) == {first.tag: RETIRED, second.tag: PRODUCTION}

    history = read_history(name)
    assert [(r.action, r.from_tag, r.to_tag) for r in history] == [
        (Action.PROMOTE, None, first.tag),
        (Action.PROMOTE, first.tag, second.tag),
        (Action.ROLLBACK, second.tag, first.tag),
        (Action.ROLLBACK, first.tag, second.tag),
    ]
    assert [r.reason for r in history] == [
        "first model",
        "better on July",
        "worse live AUC",
        "false alarm",
    ]
    assert history[1].command == "occam promote"
    assert {r.host for r in history} == {socket.gethostname()} and all(r.user for r in history)
    assert all(r.model == name for r in history)


def test_training_promotion_retires_the_older_production_bundle(bentoml_home: Path) -> None:
    name = model_name()
    old = make_bundle(name, promoted=True)
    new = make_bundle(name, promoted=True)  # training labels a passing bundle production
    assert stages(name) == {old.tag: PRODUCTION, new.tag: PRODUCTION}
    record = record_decision(new.tag, promoted=True, reason="occam train: promoted")
    assert stages(name) == {old.tag: RETIRED, new.tag: PRODUCTION}
    assert (record.from_tag, record.to_tag) == (old.tag, new.tag)


def test_a_rejection_is_recorded_with_its_gate_and_changes_nothing(bentoml_home: Path) -> None:
    name = model_name()
    champion = make_bundle(name, promoted=True)
    challenger = make_bundle(name, promoted=False)
    rows = [
        GateRow("roc_auc", 0.7, 0.68, 0.66, 0.70, "champion", 0.72, False),
        GateRow("recall", None, math.nan, None, None, "champion", None, True),
    ]
    record = record_decision(challenger.tag, promoted=False, reason="below champion", gate=rows)
    assert stages(name) == {champion.tag: PRODUCTION, challenger.tag: CANDIDATE}
    (read,) = read_history(name)
    assert read == record
    assert (read.action, read.from_tag, read.to_tag) == (
        Action.REJECT,
        champion.tag,
        challenger.tag,
    )
    assert read.gate is not None and read.gate[0] == rows[0]
    assert read.gate[1].score is None  # NaN is written as null: the log stays strict JSON


def test_refusals_change_nothing_and_record_nothing(bentoml_home: Path) -> None:
    name = model_name()
    only = make_bundle(name, promoted=True)
    with pytest.raises(RegistryError, match="no previous production bundle"):
        rollback(name, reason="x")
    with pytest.raises(AlreadyInProduction):
        promote(only.tag, reason="x")
    with pytest.raises(RegistryError, match="nothing to roll back"):
        rollback(model_name(), reason="x")

    tampered = make_bundle(name, promoted=False)
    (tampered.path / "reference.csv.gz").write_bytes(b"changed")
    with pytest.raises(BundleIntegrityError, match=r"reference\.csv\.gz does not match"):
        promote(tampered.tag, reason="x")
    assert stages(name) == {only.tag: PRODUCTION, tampered.tag: CANDIDATE}
    assert read_history(name) == []


def test_stage_changes_are_re_signed(bentoml_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    name = model_name()
    first = make_bundle(name, promoted=True)
    second = make_bundle(name, promoted=False)
    promote(second.tag, reason="x")
    served = resolve_serving_bundle(name, None)  # verifies the new signature
    assert served.tag == second.tag and served.signature != second.signature
    get_bundle(first.tag).verify()  # the retired one is signed as retired
    rollback(name, reason="y")
    assert resolve_serving_bundle(name, None).tag == first.tag

    # a signed bundle's stage cannot change without the key: its signature would break
    monkeypatch.delenv(SIGNING_KEY_ENV)
    with pytest.raises(BundleIntegrityError, match="is signed: set the signing key"):
        set_stage(get_bundle(second.tag), CANDIDATE)


def test_demoting_a_tampered_bundle_drops_its_signature(
    bentoml_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SIGNING_KEY_ENV, KEY)
    name = model_name()
    broken = make_bundle(name, promoted=True)
    good = make_bundle(name, promoted=False)
    rewrite_with_hash(broken, "model.onnx", b"evil")
    promote(good.tag, reason="replace the tampered one")
    retired = get_bundle(broken.tag)
    assert retired.stage == RETIRED and retired.signature is None  # never blessed
    with pytest.raises(BundleIntegrityError, match="not signed"):
        promote(broken.tag, reason="try it back")


def test_history_skips_lines_that_are_not_records(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "audit.jsonl"
    monkeypatch.setenv(AUDIT_LOG_ENV, str(path))
    record = AuditRecord(
        at="2026-01-01T00:00:00.000+00:00",
        action=Action.PROMOTE,
        model="m",
        from_tag=None,
        to_tag="m:1",
        reason="r",
        user="u",
        host="h",
        command="c",
    )
    path.write_text('{"cut": \n' + record.to_json() + "\nnot json\n" + '{"action": "nope"}\n')
    assert read_history() == [record]
    assert read_history("other") == []


def test_cli_promote_rollback_and_history(tmp_path: Path) -> None:
    name = model_name()
    first = make_bundle(name, promoted=True)
    second = make_bundle(name, promoted=False)

    nothing = occam(tmp_path, name, "rollback")
    assert nothing.returncode == 5, nothing.stderr
    assert "no previous production bundle" in nothing.stderr
    unknown = occam(tmp_path, name, "promote", f"{name}:nosuchversion")
    assert unknown.returncode == 5 and "no model" in unknown.stderr

    done = occam(tmp_path, name, "promote", second.version, "--reason", "ticket OPS-1")
    assert done.returncode == 0, done.stderr
    assert f"promoted {second.tag} (was {first.tag})" in done.stderr
    same = occam(tmp_path, name, "promote", second.tag)
    assert same.returncode == 0 and "already in production" in same.stderr
    back = occam(tmp_path, name, "rollback", "-r", "ticket OPS-2")
    assert back.returncode == 0, back.stderr
    assert f"rolled back from {second.tag} to {first.tag}" in back.stderr
    assert stages(name) == {first.tag: PRODUCTION, second.tag: RETIRED}

    lines = occam(tmp_path, name, "history", "--json").stdout.splitlines()
    records = [AuditRecord.from_json(line) for line in lines]
    assert [(r.action, r.reason) for r in records] == [
        (Action.PROMOTE, "ticket OPS-1"),
        (Action.ROLLBACK, "ticket OPS-2"),
    ]
    assert " promote --config " in records[0].command
    assert records[0].command.endswith("--reason 'ticket OPS-1'")
    assert json.loads(lines[0])["to_tag"] == second.tag
    table = occam(tmp_path, name, "history")
    assert table.returncode == 0 and "ticket OPS-2" in table.stdout and "rollback" in table.stdout


def test_concurrent_promotions_leave_one_production_and_a_consistent_log() -> None:
    name = model_name()
    make_bundle(name, promoted=True)
    candidates = [make_bundle(name, promoted=False) for _ in range(4)]
    code = "import sys; from occam.registry import promote; promote(sys.argv[1], reason='race')"
    racers = [
        subprocess.Popen([sys.executable, "-c", code, c.tag], cwd=ROOT, stderr=subprocess.PIPE)
        for c in candidates
    ]
    assert [p.wait(timeout=120) for p in racers] == [0] * 4, [p.stderr for p in racers]
    production = [tag for tag, stage in stages(name).items() if stage == PRODUCTION]
    history = read_history(name)
    assert len(production) == 1 and len(history) == 4
    # each promotion replaced the one before it: the lock serialised them
    assert [r.from_tag for r in history[1:]] == [r.to_tag for r in history[:-1]]
    assert history[-1].to_tag == production[0]


def test_rollback_in_a_store_from_before_the_registry(bentoml_home: Path) -> None:
    # Before the registry every passing training left its bundle production: several at once.
    name = model_name()
    older = make_bundle(name, promoted=True)
    newer = make_bundle(name, promoted=True)
    record = rollback(name, reason="the newest is worse")
    assert (record.from_tag, record.to_tag) == (newer.tag, older.tag)
    assert stages(name) == {older.tag: PRODUCTION, newer.tag: RETIRED}
