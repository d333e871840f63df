"""API keys with scopes: the key store shared by the service and the monitor.

Keys live hashed in a keys file (JSON lines, one key per line):
`{"id": "demo", "sha256": "<hex SHA-256 of the key>", "scopes": ["predict", "feedback"]}`.
The file comes from `serving.auth.keys_file` and/or the environment (`OCCAM_API_KEYS_FILE`);
`occam keys add` creates a key, prints it once and appends its hash. A key itself is never
stored nor logged; a presented key is hashed and compared with every stored hash in constant
time.

Clients send `Authorization: Bearer <key>` (or `X-API-Key: <key>`). With keys configured,
every call that needs a scope gets 401 without a key or with an unknown one and 403 with a key
that lacks the scope; without keys, calls are anonymous, which a server allows only on a
loopback address unless `serving.auth.allow_anonymous` is true (`bind_refusal`).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from occam.config import AuthConfig
from occam.errors import Problem, Reason, error_body

Scope = Literal["predict", "feedback", "admin", "metrics"]
SCOPES: tuple[Scope, ...] = ("predict", "feedback", "admin", "metrics")
KEYS_FILE_ENV = "OCCAM_API_KEYS_FILE"
#: The key id of anonymous calls (no keys configured), e.g. for rate limits.
ANONYMOUS = "anonymous"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")


class KeyFileError(ValueError):
    """A keys file that cannot be used; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class ApiKey:
    """A stored key: its id (safe to log), the SHA-256 hex of the key, its scopes."""

    id: str
    sha256: str
    scopes: frozenset[str]


def digest(key: str) -> str:
    """The SHA-256 hex digest under which `key` is stored."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Verdict:
    """The outcome of `KeyStore.check`: the caller's key id, or the problem to answer with."""

    key_id: str | None
    problem: Problem | None


class KeyStore:
    """The configured keys; empty means anonymous calls (see the module docstring)."""

    def __init__(self, keys: Sequence[ApiKey] = ()) -> None:
        self.keys = tuple(keys)

    def __bool__(self) -> bool:
        return bool(self.keys)

    @classmethod
    def load(cls, paths: Iterable[Path]) -> KeyStore:
        """Read the keys of every file in `paths`; raise `KeyFileError` on a bad line."""
        keys: list[ApiKey] = []
        for path in paths:
            keys.extend(read_keys(path))
        seen: set[str] = set()
        for key in keys:
            if key.id in seen:
                raise KeyFileError(f"key id {key.id!r} appears twice; ids must be unique")
            seen.add(key.id)
        return cls(keys)

    def authenticate(self, token: str) -> ApiKey | None:
        """The stored key matching `token`, None if none does. Every stored hash is compared
        (in constant time), so the answer's timing does not depend on which key matched."""
        presented = digest(token).encode()
        found: ApiKey | None = None
        for key in self.keys:
            if hmac.compare_digest(presented, key.sha256.encode()):
                found = key
        return found

    def check(self, token: str | None, scope: Scope) -> Verdict:
        """Whether a call presenting `token` (None: no key sent) may use `scope`."""
        if not self.keys:
            return Verdict(ANONYMOUS, None)
        if not token:
            return Verdict(
                None,
                Problem(
                    None,
                    "authorization",
                    Reason.MISSING_KEY,
                    f"this call needs an API key with scope `{scope}`; send "
                    "`Authorization: Bearer <key>` (create one with `occam keys add`)",
                ),
            )
        key = self.authenticate(token)
        if key is None:
            return Verdict(
                None,
                Problem(
                    None,
                    "authorization",
                    Reason.UNKNOWN_KEY,
                    "the API key is not known (revoked, mistyped, or from another keys file)",
                ),
            )
        if scope not in key.scopes:
            return Verdict(
                key.id,
                Problem(
                    None,
                    "authorization",
                    Reason.MISSING_SCOPE,
                    f"API key {key.id!r} lacks scope `{scope}` (it has: "
                    f"{', '.join(sorted(key.scopes)) or 'none'})",
                ),
            )
        return Verdict(key.id, None)


def token_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The key a request presents: `Authorization: Bearer <key>`, else `X-API-Key`."""
    fallback = None
    for name, value in headers:
        lower = name.lower()
        if lower == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        elif lower == b"x-api-key" and value.strip():
            fallback = value.decode("latin-1").strip()
    return fallback


def read_keys(path: Path) -> list[ApiKey]:
    """The keys stored in one keys file (JSON lines); `KeyFileError` names a bad line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise KeyFileError(f"keys file {str(path)!r} cannot be read: {exc.strerror}") from None
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"keys file {str(path)!r} line {number}"
        try:
            raw = json.loads(line)
        except ValueError:
            raise KeyFileError(f"{where}: not JSON; each line is one key object") from None
        if not isinstance(raw, dict) or set(raw) != {"id", "sha256", "scopes"}:
            raise KeyFileError(f'{where}: expected {{"id", "sha256", "scopes"}} and nothing else')
        ident, hashed, scopes = raw["id"], raw["sha256"], raw["scopes"]
        if not isinstance(ident, str) or not _ID.match(ident):
            raise KeyFileError(f"{where}: `id` must match {_ID.pattern}")
        if not isinstance(hashed, str) or not _HEX.match(hashed):
            raise KeyFileError(f"{where}: `sha256` must be 64 lowercase hex digits")
        if not isinstance(scopes, list) or not set(scopes) <= set(SCOPES):
            raise KeyFileError(f"{where}: `scopes` must be a list drawn from {list(SCOPES)}")
        keys.append(ApiKey(ident, hashed, frozenset(scopes)))
    return keys


def keys_files(configured: Path | None) -> list[Path]:
    """The keys files in use: `serving.auth.keys_file` and `$OCCAM_API_KEYS_FILE` (both when
    both are set and differ)."""
    paths = [configured] if configured is not None else []
    env = os.environ.get(KEYS_FILE_ENV)
    if env and (configured is None or Path(env).resolve() != configured.resolve()):
        paths.append(Path(env))
    return paths


def add_key(path: Path, ident: str, scopes: Sequence[str]) -> str:
    """Create a key with `scopes`, append its hash to `path` (created with mode 0600) and
    return the key itself: the only time it exists in clear. Raise `KeyFileError` for a bad
    or taken id, an unknown scope, or an unreadable file."""
    if not _ID.match(ident):
        raise KeyFileError(f"key id {ident!r} must match {_ID.pattern}")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise KeyFileError(f"scopes {unknown or '(none)'} are not allowed; choose from {SCOPES}")
    if path.exists() and any(key.id == ident for key in read_keys(path)):
        raise KeyFileError(f"key id {ident!r} is already in {str(path)!r}; pick another id")
    key = "occam_" + secrets.token_urlsafe(32)
    line = json.dumps({"id": ident, "sha256": digest(key), "scopes": sorted(set(scopes))})
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(descriptor, "a") as file:
        file.write(line + "\n")
    return key


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_refusal(host: str, store: KeyStore, allow_anonymous: bool, what: str) -> str | None:
    """Why a server (`what`, e.g. "occam serve") must not listen on `host` with `store`, or
    None when it may: a non-loopback address needs keys unless anonymous access is allowed."""
    if store or allow_anonymous or is_loopback(host):
        return None
    return (
        f"{what} refuses to listen on {host} without API keys: anyone who can reach it could "
        f"call it. Create a key (`occam keys add --config ... --id NAME --scopes predict,feedback`)"
        f" and set serving.auth.keys_file (or ${KEYS_FILE_ENV}), listen on 127.0.0.1, or set "
        "serving.auth.allow_anonymous: true"
    )


def guard_wsgi(app: Any, store: KeyStore, scope: Scope) -> Any:
    """`app` (a WSGI app, e.g. prometheus_client's `make_wsgi_app`) behind `store`: requests
    without a key holding `scope` get 401/403 with the error body; an empty store lets every
    request through. For the monitor's /metrics when `serving.auth.metrics_scope` is set."""
    if not store:
        return app

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        headers = []
        if "HTTP_AUTHORIZATION" in environ:
            headers.append((b"authorization", environ["HTTP_AUTHORIZATION"].encode("latin-1")))
        if "HTTP_X_API_KEY" in environ:
            headers.append((b"x-api-key", environ["HTTP_X_API_KEY"].encode("latin-1")))
        problem = store.check(token_from_headers(headers), scope).problem
        if problem is None:
            return app(environ, start_response)
        body = json.dumps(error_body([problem])).encode()
        phrase = "Unauthorized" if problem.reason.status == 401 else "Forbidden"
        start_response(
            f"{problem.reason.status} {phrase}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
        )
        return [body]

    return guarded


def metrics_guard(auth: AuthConfig) -> Callable[[Any], Any] | None:
    """What wraps a /metrics WSGI app under `serving.auth`: None (open) unless
    `metrics_scope` is set and keys are configured. Raises `KeyFileError` on a bad file."""
    if not auth.metrics_scope:
        return None
    store = KeyStore.load(keys_files(auth.keys_file))
    if not store:
        return None
    return lambda app: guard_wsgi(app, store, "metrics")
