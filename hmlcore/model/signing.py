"""Signed model references: HMAC-SHA256 over the reference's canonical JSON.

A reference names every artifact of a model with its sha256, so a valid signature over the reference
vouches for the whole model. The key is a shared secret, read from one of two settings:

- ``HML_SIGNING_KEY``: the key itself (at least 32 bytes; e.g. ``python -c "import secrets; print(secrets.token_hex(32))"``);
- ``HML_SIGNING_KEY_FILE``: the path of a file holding it, e.g. a Kubernetes secret mounted into the pod
  (surrounding whitespace, such as a trailing newline, is not part of the key).

With a key configured, :meth:`ModelContainer.publish` signs every reference it writes and
:meth:`ModelContainer.load` refuses a reference that is unsigned or wrongly signed before it reads any
artifact. Without a key, references are written unsigned and loaded on their digests alone.

Example:
    >>> key = b"k" * 32
    >>> signed = sign({"name": "m", "artifacts": {}}, key)
    >>> signed["signature"]["algorithm"]
    'hmac-sha256'
    >>> verify(signed, key, source="m.reference.json")
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from hmlcore import _env
from hmlcore.errors import ConfigError, UntrustedModelError

__all__ = ["ALGORITHM", "KEY_ENV", "KEY_FILE_ENV", "MIN_KEY_BYTES", "canonical_json", "sign", "signing_key", "verify"]

#: the environment variable holding the signing key itself
KEY_ENV = _env.SIGNING_KEY.name
#: the environment variable naming a file (a mounted secret) that holds the signing key
KEY_FILE_ENV = _env.SIGNING_KEY_FILE.name
#: the shortest key accepted
MIN_KEY_BYTES = 32
#: the name of the signature's algorithm, recorded with it
ALGORITHM = "hmac-sha256"


def signing_key() -> bytes | None:
    """The configured signing key (``HML_SIGNING_KEY`` or the file ``HML_SIGNING_KEY_FILE`` names), or None.

    Raises:
        ConfigError: both settings are given, the file cannot be read, or the key is shorter than 32 bytes.
    """
    text, path = _env.SIGNING_KEY.get() or "", _env.SIGNING_KEY_FILE.get() or ""
    if text and path:
        raise ConfigError(f"both {KEY_ENV} and {KEY_FILE_ENV} are set: set one of them")
    if path:
        try:
            with open(path, "rb") as handle:
                key = handle.read().strip()
        except OSError as exc:
            raise ConfigError(f"{KEY_FILE_ENV}={path}: the signing key cannot be read: {exc.strerror or exc}") from None
        setting = f"the key in {KEY_FILE_ENV}={path}"
    elif text:
        key, setting = text.strip().encode(), KEY_ENV
    else:
        return None
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"{setting} is {len(key)} bytes; a signing key needs at least {MIN_KEY_BYTES}: "
            'make one with python -c "import secrets; print(secrets.token_hex(32))"'
        )
    return key


def canonical_json(reference: dict[str, Any]) -> bytes:
    """The bytes a signature covers: ``reference`` without its ``signature``, keys sorted, no whitespace, UTF-8."""
    body = {key: value for key, value in reference.items() if key != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _digest(reference: dict[str, Any], key: bytes) -> str:
    return hmac.new(key, canonical_json(reference), hashlib.sha256).hexdigest()


def sign(reference: dict[str, Any], key: bytes) -> dict[str, Any]:
    """A copy of ``reference`` with a ``signature``: ``{"algorithm": "hmac-sha256", "value": <hex>}``."""
    return {**reference, "signature": {"algorithm": ALGORITHM, "value": _digest(reference, key)}}


def verify(reference: dict[str, Any], key: bytes, *, source: str) -> None:
    """Check ``reference``'s signature with ``key``.

    Args:
        reference: the parsed reference JSON.
        key: the signing key.
        source: how the message names the reference (its URL).

    Raises:
        UntrustedModelError: the reference is unsigned, signed with another algorithm, or its signature
            does not match (another key, or the reference was changed after signing).
    """
    signature = reference.get("signature")
    if signature is None:
        raise UntrustedModelError(f"reference {source} is not signed, but a signing key is configured: publish it again with the key set")
    if not isinstance(signature, dict) or signature.get("algorithm") != ALGORITHM or not isinstance(signature.get("value"), str):
        raise UntrustedModelError(f"reference {source} has a malformed signature: expected {{'algorithm': '{ALGORITHM}', 'value': hex}}")
    if not hmac.compare_digest(_digest(reference, key).encode(), signature["value"].encode()):
        raise UntrustedModelError(f"reference {source} has a wrong signature: it was changed after signing or signed with another key")
