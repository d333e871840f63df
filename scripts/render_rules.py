"""Render prometheus/alerts.yml with other `for:` durations and/or another runbook base URL.

The shipped rules wait minutes to hours before firing; an integration test wants seconds. Some
rules may need their own `for:` there: `--for-alert NAME=DURATION` sets one rule's (it wins over
`--for`), e.g. the scrape-health rules of a demo that scrapes every second with a one-second
timeout on a loaded machine. The runbook links point at
https://github.com/occam/occam/blob/main/docs/runbooks.md; a fork or an internal wiki wants its
own base. Rendering edits only those two things, line by line, so the
output keeps the comments and layout of the source.

    python scripts/render_rules.py prometheus/alerts.yml /tmp/alerts.yml --for 5s
    python scripts/render_rules.py prometheus/alerts.yml /tmp/a.yml --for 5s \
        --for-alert OccamServiceDown=30s
    python scripts/render_rules.py prometheus/alerts.yml out.yml --runbook-base https://wiki/x.md
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

DEFAULT_RUNBOOK_BASE = "https://github.com/occam/occam/blob/main/docs/runbooks.md"
_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
_FOR_LINE = re.compile(r"^(?P<indent>\s+)for:\s*\S+(?P<rest>.*)$")
_ALERT_LINE = re.compile(r"^\s*-?\s*alert:\s*(?P<name>\S+)")


def render_rules(
    src: str | Path,
    dst: str | Path,
    for_override: str | None = None,
    runbook_base: str | None = None,
    for_alerts: Mapping[str, str] | None = None,
) -> Path:
    """Write `src` to `dst` with every rule's `for:` set to `for_override` (a Prometheus
    duration such as "5s"; None keeps the shipped ones), the rules named in `for_alerts` (alert
    name -> duration) set to theirs instead, and runbook links rebased onto `runbook_base` (None
    keeps the default). Returns `dst`. Raises ValueError on a bad duration or an alert name
    that is not in `src`.
    """
    source = Path(src).read_text()
    wanted = dict(for_alerts or {})
    for name, duration in [("--for", for_override), *wanted.items()]:
        if duration is not None and not _DURATION.match(duration):
            raise ValueError(f"{name}={duration!r} is not a Prometheus duration like 5s")
    names = {rule.get("alert") for rule in _rules(source)}
    unknown = sorted(set(wanted) - names)
    if unknown:
        raise ValueError(f"no alert named {', '.join(unknown)} in {src}")
    text = _set_for(source, for_override, wanted)
    if runbook_base is not None:
        text = text.replace(DEFAULT_RUNBOOK_BASE + "#", runbook_base.rstrip("#") + "#")
    _check(source, text, for_override, runbook_base, wanted)
    out = Path(dst)
    partial = out.with_name(out.name + ".partial")  # a reader never sees a half-written file
    partial.write_text(text)
    partial.replace(out)
    return out


def _duration(
    alert: str | None, for_override: str | None, for_alerts: Mapping[str, str]
) -> str | None:
    """The `for:` a rule gets: its own entry of `for_alerts`, else `for_override` (None: keep
    the shipped one)."""
    return for_alerts.get(alert, for_override) if alert is not None else for_override


def _set_for(source: str, for_override: str | None, for_alerts: Mapping[str, str]) -> str:
    """`source` with the `for:` line of each rule replaced, line by line (comments and layout
    kept): the rule's own entry of `for_alerts`, else `for_override`, else unchanged."""
    lines, alert = [], None
    for line in source.splitlines(keepends=True):
        found = _ALERT_LINE.match(line)
        if found:
            alert = found["name"].strip("\"'")
        duration = _duration(alert, for_override, for_alerts)
        body = line.rstrip("\r\n")
        match = _FOR_LINE.match(body)
        if match and duration is not None:
            line = f"{match['indent']}for: {duration}{match['rest']}{line[len(body) :]}"
        lines.append(line)
    return "".join(lines)


def _check(
    source: str,
    text: str,
    for_override: str | None,
    runbook_base: str | None,
    for_alerts: Mapping[str, str],
) -> None:
    """The rendered rules are the source rules with only `for:` and runbook links changed."""
    before, after = _rules(source), _rules(text)
    for old, new in zip(before, after, strict=True):
        expected = dict(old)
        duration = _duration(old.get("alert"), for_override, for_alerts)
        if duration is not None and "for" in old:
            expected["for"] = duration
        url = new.get("annotations", {}).get("runbook_url")
        if runbook_base is not None and url is not None:
            expected["annotations"] = {**old["annotations"], "runbook_url": url}
            if not url.startswith(runbook_base.rstrip("#") + "#"):
                raise ValueError(f"{old.get('alert')}: runbook_url {url!r} was not rebased")
        if new != expected:
            raise ValueError(f"{old.get('alert')}: rendering changed more than for/runbook_url")
        if duration is not None and new.get("for") != duration:
            raise ValueError(f"{old.get('alert')}: has no `for:` to override")


def _rules(text: str) -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(text)["groups"] for rule in group["rules"]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="the rule file, e.g. prometheus/alerts.yml")
    parser.add_argument("dst", type=Path, help="where to write the rendered rules")
    parser.add_argument("--for", dest="for_override", help="every rule's `for:`, e.g. 5s")
    parser.add_argument(
        "--for-alert",
        action="append",
        default=[],
        metavar="NAME=DURATION",
        help="one rule's `for:` (wins over --for), e.g. OccamServiceDown=30s; repeatable",
    )
    parser.add_argument("--runbook-base", help=f"replaces {DEFAULT_RUNBOOK_BASE}")
    args = parser.parse_args(argv)
    for_alerts = {}
    for item in args.for_alert:
        name, sep, duration = item.partition("=")
        if not sep or not name or not duration:
            parser.error(f"--for-alert {item!r}: expected NAME=DURATION, e.g. OccamServiceDown=30s")
        for_alerts[name] = duration
    try:
        render_rules(args.src, args.dst, args.for_override, args.runbook_base, for_alerts)
    except (OSError, ValueError) as err:
        parser.error(str(err))


if __name__ == "__main__":
    main()
