"""Bundle signatures: an HMAC-SHA256 over a bundle's manifest, its tag and its stage label.

The manifest (``manifest.json``) holds the SHA-256 of every file of a bundle, so a signature
over the manifest covers every file; adding the tag stops a signature from being copied to
another bundle, and adding the stage stops ``stage: candidate`` from being flipped to
``production`` by hand. The signature is stored as the BentoML label ``signature`` beside the
``stage`` label, so that both change together in one atomic write of ``model.yaml``.

Signing is optional and on as soon as a key is found, in this order:

1. ``OCCAM_SIGNING_KEY``: the key itself (at least 16 bytes; e.g. 64 hex characters);
2. ``OCCAM_SIGNING_KEY_FILE``: a file holding the key (surrounding whitespace ignored).

The CLI sets ``OCCAM_SIGNING_KEY_FILE`` from the config key ``output.signing_key_file`` when
neither variable is set, so that the service's workers and other child processes use it too.
With a key, training signs its bundle, promotion re-signs, and loading refuses a bundle that is
unsigned or whose signature does not match: before anything is unpickled.

Limits: whoever holds the key can sign anything; a signature does not say *when* a stage was
set, so an old ``model.yaml`` copied back by someone with write access to the model store
restores an old (once valid) stage. Keep the store writable only by the deploying user.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

SIGNING_KEY_ENV = "OCCAM_SIGNING_KEY"
SIGNING_KEY_FILE_ENV = "OCCAM_SIGNING_KEY_FILE"
#: Shortest key accepted (bytes); a shorter HMAC key is easy to guess.
MIN_KEY_BYTES = 16
#: Prefix of a stored signature, so that a future scheme can be told apart.
SCHEME = "hmac-sha256"
KEY_HELP = "make one with `python -c 'import secrets; print(secrets.token_hex(32))' > KEYFILE`"


class SigningKeyError(ValueError):
    """A configured signing key that cannot be used (unreadable file, too short)."""


def signing_key() -> bytes | None:
    """The signing key from the environment, or None when signing is off.

    Raises `SigningKeyError` naming the variable when the key is set but unusable: a key that
    is configured and broken must never silently turn signing off.
    """
    raw = os.environ.get(SIGNING_KEY_ENV, "")
    source = SIGNING_KEY_ENV
    if not raw:
        file = os.environ.get(SIGNING_KEY_FILE_ENV, "")
        if not file:
            return None
        source = f"{SIGNING_KEY_FILE_ENV}={file}"
        raw = read_key_file(Path(file), source)
    key = raw.strip().encode()
    if len(key) < MIN_KEY_BYTES:
        raise SigningKeyError(
            f"{source}: the signing key has {len(key)} bytes, at least {MIN_KEY_BYTES} are "
            f"needed; {KEY_HELP}"
        )
    return key


def read_key_file(path: Path, source: str) -> str:
    """The text of a key file; `SigningKeyError` naming `source` when it cannot be read."""
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SigningKeyError(
            f"{source}: cannot read the signing key file ({exc}); {KEY_HELP}"
        ) from None


def sign(key: bytes, *, tag: str, stage: str, manifest: bytes) -> str:
    """The signature of a bundle (`tag`, its `stage` label and the raw bytes of its manifest)."""
    message = json.dumps(
        {"tag": tag, "stage": stage, "manifest_sha256": hashlib.sha256(manifest).hexdigest()},
        sort_keys=True,
    ).encode()
    return f"{SCHEME}:{hmac.new(key, message, hashlib.sha256).hexdigest()}"


def matches(key: bytes, signature: str, *, tag: str, stage: str, manifest: bytes) -> bool:
    """Whether `signature` is this key's signature of the bundle (constant-time comparison)."""
    expected = sign(key, tag=tag, stage=stage, manifest=manifest)
    return hmac.compare_digest(expected.encode(), signature.encode())
