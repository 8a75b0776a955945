"""A bearer token's shape, checked strictly before PyJWT sees it, and the errors of
verifying a caller (adapters.identity raises them; service/deps.py maps them to problems).

`check_compact`: three canonical base64url segments (no padding, no stray characters, no
non-zero trailing bits), JSON objects without duplicated keys, NumericDate claims (`exp`,
`nbf`, `iat`) that are JSON numbers (not strings, not booleans) between 0 and the year
10000 (PyJWT would take `"9999999999"` and `1e300`), and every claim's value bounded in
size whatever its JSON type (`check_claim_sizes`), so an oversized `sub` never reaches an
audit row or a log line.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from typing import Any

MAX_SUBJECT_CHARS = 256  # `sub` lands in audit rows and logs
MAX_CLAIM_BYTES = 8192  # any one claim's value, as compact JSON, whatever its type
MAX_TOKEN_CHARS = 16384  # a whole compact token
NUMERIC_DATES = ("exp", "nbf", "iat")
MAX_NUMERIC_DATE = 253_402_300_800  # 10000-01-01T00:00:00Z
_SEGMENT_RE = re.compile(r"[A-Za-z0-9_-]+")


class AuthError(Exception):
    """Credentials were presented but are not acceptable: a 401 (`error` is the RFC 6750 code)."""

    def __init__(self, detail: str, *, error: str = "invalid_token") -> None:
        super().__init__(detail)
        self.detail = detail
        self.error = error


class AuthUnavailable(Exception):
    """The credentials cannot be checked right now (identity provider or key store down): a 503."""


def _segment(part: str, what: str) -> bytes:
    """One base64url segment of a compact JWS, decoded: only its canonical encoding (RFC
    7515: no padding, no other characters, unused trailing bits zero) is accepted."""
    if not _SEGMENT_RE.fullmatch(part):
        raise AuthError(f"token {what} is not base64url without padding")
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise AuthError(f"token {what} is not valid base64url") from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode() != part:
        raise AuthError(f"token {what} is not canonical base64url")
    return raw


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise AuthError(f"token repeats the key {k!r}")
        out[k] = v
    return out


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
    except (ValueError, RecursionError):  # UnicodeDecodeError, JSONDecodeError, huge ints
        raise AuthError(f"token {what} is not JSON") from None
    if not isinstance(value, dict):
        raise AuthError(f"token {what} is not a JSON object")
    return value


def check_numeric_dates(claims: Mapping[str, Any]) -> None:
    """`exp`, `nbf`, `iat`, when present, are JSON numbers (RFC 7519 NumericDate: not a
    string, not a boolean) between 0 and the year 10000."""
    for name in NUMERIC_DATES:
        if name not in claims:
            continue
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise AuthError(f"token claim {name!r} is not a number (NumericDate)")
        if not (math.isfinite(value) and 0 < value < MAX_NUMERIC_DATE):
            raise AuthError(f"token claim {name!r} is out of range")


def check_compact(token: str) -> dict[str, Any]:
    """The token's payload, after the checks PyJWT leaves out (see the module docstring);
    AuthError (a 401) on any of them. The signature is verified afterwards by PyJWT."""
    if len(token) > MAX_TOKEN_CHARS:
        raise AuthError(f"token over {MAX_TOKEN_CHARS} characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise AuthError("malformed token (a JWS in compact form has three segments)")
    header = _json_object(_segment(parts[0], "header"), "header")
    claims = _json_object(_segment(parts[1], "payload"), "payload")
    _segment(parts[2], "signature")
    if set(header) & {"b64", "crit"}:  # RFC 7797 unencoded payloads: not for us
        raise AuthError("token header parameters 'b64'/'crit' are not accepted")
    check_numeric_dates(claims)
    check_claim_sizes(claims)
    return claims


def check_claim_sizes(claims: Mapping[str, Any]) -> None:
    """Every claim's value, whatever its JSON type (string, number, list, object), is at
    most MAX_CLAIM_BYTES as compact JSON; `sub` at most MAX_SUBJECT_CHARS characters."""
    for name, value in claims.items():
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_CLAIM_BYTES:
            raise AuthError(f"token claim {name[:64]!r} is over {MAX_CLAIM_BYTES} bytes")
    subject = claims.get("sub")
    if isinstance(subject, str) and len(subject) > MAX_SUBJECT_CHARS:
        raise AuthError(f"token subject (sub) is over {MAX_SUBJECT_CHARS} characters")
