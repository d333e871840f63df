"""Render prometheus/alerts.yml with other `for:` durations and/or another runbook base URL.

The shipped rules wait minutes to hours before firing; an integration test wants seconds. The
runbook links point at https://github.com/occam/occam/blob/main/docs/runbooks.md; a fork or an
internal wiki wants its own base. Rendering edits only those two things, line by line, so the
output keeps the comments and layout of the source.

    python scripts/render_rules.py prometheus/alerts.yml /tmp/alerts.yml --for 5s
    python scripts/render_rules.py prometheus/alerts.yml out.yml --runbook-base https://wiki/x.md
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import yaml

DEFAULT_RUNBOOK_BASE = "https://github.com/occam/occam/blob/main/docs/runbooks.md"
_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
_FOR_LINE = re.compile(r"^(?P<indent>\s+)for:\s*\S+(?P<rest>.*)$", re.MULTILINE)


def render_rules(
    src: str | Path,
    dst: str | Path,
    for_override: str | None = None,
    runbook_base: str | None = None,
) -> Path:
    """Write `src` to `dst` with every rule's `for:` set to `for_override` (a Prometheus
    duration such as "5s"; None keeps the shipped ones) and runbook links rebased onto
    `runbook_base` (None keeps the default). Returns `dst`. Raises ValueError on a bad duration.
    """
    source = text = Path(src).read_text()
    if for_override is not None:
        if not _DURATION.match(for_override):
            raise ValueError(f"for_override={for_override!r} is not a Prometheus duration like 5s")
        text = _FOR_LINE.sub(lambda m: f"{m['indent']}for: {for_override}{m['rest']}", text)
    if runbook_base is not None:
        text = text.replace(DEFAULT_RUNBOOK_BASE + "#", runbook_base.rstrip("#") + "#")
    _check(source, text, for_override, runbook_base)
    out = Path(dst)
    partial = out.with_name(out.name + ".partial")  # a reader never sees a half-written file
    partial.write_text(text)
    partial.replace(out)
    return out


def _check(source: str, text: str, for_override: str | None, runbook_base: str | None) -> None:
    """The rendered rules are the source rules with only `for:` and runbook links changed."""
    before, after = _rules(source), _rules(text)
    for old, new in zip(before, after, strict=True):
        expected = dict(old)
        if for_override is not None and "for" in old:
            expected["for"] = for_override
        url = new.get("annotations", {}).get("runbook_url")
        if runbook_base is not None and url is not None:
            expected["annotations"] = {**old["annotations"], "runbook_url": url}
            if not url.startswith(runbook_base.rstrip("#") + "#"):
                raise ValueError(f"{old.get('alert')}: runbook_url {url!r} was not rebased")
        if new != expected:
            raise ValueError(f"{old.get('alert')}: rendering changed more than for/runbook_url")
        if for_override is not None and new.get("for") != for_override:
            raise ValueError(f"{old.get('alert')}: has no `for:` to override")


def _rules(text: str) -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(text)["groups"] for rule in group["rules"]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="the rule file, e.g. prometheus/alerts.yml")
    parser.add_argument("dst", type=Path, help="where to write the rendered rules")
    parser.add_argument("--for", dest="for_override", help="every rule's `for:`, e.g. 5s")
    parser.add_argument("--runbook-base", help=f"replaces {DEFAULT_RUNBOOK_BASE}")
    args = parser.parse_args(argv)
    try:
        render_rules(args.src, args.dst, args.for_override, args.runbook_base)
    except (OSError, ValueError) as err:
        parser.error(str(err))


if __name__ == "__main__":
    main()
