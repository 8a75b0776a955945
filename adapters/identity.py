"""Verifying callers: JWT bearer tokens (PyJWT) and API keys.

JWT: HS256 with `AUTH_JWT_SECRET`, and/or RS256/ES256 with keys from `AUTH_JWKS_URL`.
The accepted algorithm follows from which key the token asks for, never from the token
alone: HS256 only with the configured secret, RS256/ES256 only with a JWKS key (so a token
HMAC-signed with the public key, or `alg: none`, is refused). `exp` and `sub` are required;
`iss` / `aud` are checked when configured; `nbf`/`exp` with a few seconds of leeway.

A token's shape is checked strictly before PyJWT sees it (`adapters.token_checks`):
canonical base64url, NumericDates that are numbers in range, bounded claim sizes.

JWKS keys are cached and refreshed: a stale set is refetched in the background (requests
whose key is cached do not wait), an unknown `kid` triggers one refetch (at most every
`min_refetch_s`), and a JWKS outage keeps the last good set in service, so tokens whose key
is cached still verify. One fetch at a time is in flight, shared by every request waiting
for keys, and each waits at most `wait_s` for it; after a failed fetch the next one waits
a backoff (doubling from `backoff_s` up to `backoff_max_s`), and meanwhile a request
needing keys that are not cached is answered at once (503): the identity provider is never
hit once per request.

API keys (`X-API-Key: wdr_<id>_<secret>`) live hashed (SHA-256 of the secret: keys are
256-bit random, so a fast hash is enough) in the `api_keys` table, each with a tenant,
scopes and attribute claims; the stored hash is compared in constant time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import psycopg
from psycopg.types.json import Json
from psycopg_pool import AsyncConnectionPool

from adapters.token_checks import (
    AuthError,
    AuthUnavailable,
    check_claim_sizes,
    check_compact,
)
from domain.identity import Principal, parse_scopes
from observability.redact import redact_url

log = logging.getLogger(__name__)

TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ASYMMETRIC_ALGS = ("RS256", "ES256")
# claims that are not attributes a row filter could use
REGISTERED = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "scope", "scopes", "scp"})
API_KEY_RE = re.compile(r"^wdr_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
MAX_CLAIM_VALUES = 1000  # values of one attribute claim (they become SQL literals)
MAX_CLAIM_VALUE_CHARS = 256


# ------------------------------------------------------------------------------ JWKS


class JwksKeys:
    """The identity provider's signing keys, fetched from its JWKS URL and cached."""

    def __init__(
        self,
        url: str,
        *,
        refresh_s: float = 300.0,
        min_refetch_s: float = 30.0,
        timeout_s: float = 2.0,
        wait_s: float = 2.0,
        backoff_s: float = 1.0,
        backoff_max_s: float = 30.0,
        clock: Any = time.monotonic,
    ) -> None:
        self.url = url
        self.refresh_s, self.min_refetch_s = refresh_s, min_refetch_s
        self.wait_s, self.backoff_s, self.backoff_max_s = wait_s, backoff_s, backoff_max_s
        self._clock = clock
        self._client = httpx.AsyncClient(timeout=timeout_s)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._tried_at: float | None = None  # last attempt
        self._failures = 0  # consecutive failed fetches
        self._retry_at = 0.0  # no fetch before this (a backoff after a failure)
        self._inflight: asyncio.Task[None] | None = None  # the one fetch in flight

    async def aclose(self) -> None:
        if self._inflight is not None and not self._inflight.done():
            self._inflight.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._inflight
        await self._client.aclose()

    async def _fetch(self) -> None:
        self._tried_at = self._clock()
        try:
            response = await self._client.get(self.url)
            response.raise_for_status()
            keyset = jwt.PyJWKSet.from_dict(response.json())
        except Exception as exc:  # any failure is an outage: keep what is cached, back off
            self._failures += 1
            delay = min(self.backoff_max_s, self.backoff_s * 2 ** (self._failures - 1))
            self._retry_at = self._clock() + delay
            log.warning(
                "JWKS fetch from %s failed (keeping %d cached keys; next attempt in %.0fs): %s",
                redact_url(self.url),
                len(self._keys),
                delay,
                type(exc).__name__,
            )
            return
        keys = {}
        for i, k in enumerate(keyset.keys):
            keys[k.key_id or f"#{i}"] = k
        self._keys = keys
        self._fetched_at = self._clock()
        self._failures, self._retry_at = 0, 0.0

    def _due(self, *, missing: bool) -> bool:
        now = self._clock()
        if now < self._retry_at:
            return False  # backing off after a failed fetch
        if self._tried_at is not None and now - self._tried_at < self.min_refetch_s and self._keys:
            return False
        if self._fetched_at is None:
            return True
        return missing or now - self._fetched_at >= self.refresh_s

    def _start_fetch(self) -> asyncio.Task[None]:
        """The fetch in flight, started if there is none: every caller shares it."""
        if self._inflight is None or self._inflight.done():
            self._inflight = asyncio.create_task(self._fetch())
        return self._inflight

    async def settled(self) -> None:
        """Returns once no fetch is in flight (a background refresh included)."""
        if self._inflight is not None:
            await asyncio.shield(self._inflight)

    def _find(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is not None:
            return self._keys.get(kid)
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    async def key(self, kid: str | None) -> jwt.PyJWK:
        found = self._find(kid)
        if self._due(missing=found is None):
            task = self._start_fetch()
            if found is None:  # only a caller that needs new keys waits, and not for long
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(task), self.wait_s)
                found = self._find(kid)
        if found is not None:
            return found
        if not self._keys:
            raise AuthUnavailable("the identity provider's signing keys are unavailable")
        raise AuthError("token signed with an unknown key")

    @property
    def cached(self) -> int:
        return len(self._keys)


# ------------------------------------------------------------------------------ JWT


@dataclass(frozen=True)
class JwtConfig:
    secret: str | None = None
    issuer: str | None = None
    audience: str | None = None
    leeway_s: float = 5.0
    tenant_claim: str = "tenant"


def principal_from_claims(claims: Mapping[str, Any], *, tenant_claim: str, via: Any) -> Principal:
    check_claim_sizes(claims)
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise AuthError("token has no subject (sub)")
    tenant = claims.get(tenant_claim)
    if not isinstance(tenant, str) or not TENANT_RE.match(tenant):
        raise AuthError(f"token has no valid tenant claim ({tenant_claim})")
    attributes = {k: v for k, v in claims.items() if k not in REGISTERED and k != tenant_claim}
    check_attributes(attributes)
    return Principal.build(
        subject=subject, tenant=tenant, scopes=parse_scopes(claims), attributes=attributes, via=via
    )


def check_attributes(attributes: Mapping[str, Any]) -> None:
    """Attribute claims become literals in every filtered query: bound their size."""
    for name, value in attributes.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        if len(items) > MAX_CLAIM_VALUES:
            raise AuthError(f"claim {name!r} has more than {MAX_CLAIM_VALUES} values")
        if any(isinstance(v, str) and len(v) > MAX_CLAIM_VALUE_CHARS for v in items):
            raise AuthError(f"claim {name!r} has a value over {MAX_CLAIM_VALUE_CHARS} characters")


class JwtVerifier:
    def __init__(self, config: JwtConfig, jwks: JwksKeys | None = None) -> None:
        if not config.secret and jwks is None:
            raise ValueError("a JWT verifier needs a secret or a JWKS URL")
        self.config, self.jwks = config, jwks

    async def verify(self, token: str) -> Principal:
        cfg = self.config
        check_compact(token)  # strict shape, before any key lookup or PyJWT
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("malformed token") from None
        alg = header.get("alg")
        key: Any
        if alg == "HS256" and cfg.secret:
            key = cfg.secret
        elif alg in ASYMMETRIC_ALGS and self.jwks is not None:
            kid = header.get("kid")
            jwk = await self.jwks.key(kid if isinstance(kid, str) else None)
            if jwk.algorithm_name != alg:  # the key's own (or its type's) algorithm
                raise AuthError("token algorithm does not match its key")
            key = jwk.key
        else:
            raise AuthError(f"token algorithm {alg!r} is not accepted")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=cfg.audience,
                issuer=cfg.issuer,
                leeway=cfg.leeway_s,
                options={"require": ["exp", "sub"], "verify_aud": cfg.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("token not yet valid") from None
        except jwt.InvalidIssuerError:
            raise AuthError("token issuer not accepted") from None
        except jwt.InvalidAudienceError:
            raise AuthError("token audience not accepted") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"token lacks the {exc.claim!r} claim") from None
        except jwt.PyJWTError:
            raise AuthError("token signature or format is invalid") from None
        return principal_from_claims(claims, tenant_claim=cfg.tenant_claim, via="jwt")


def mint_token(
    secret: str,
    *,
    tenant: str,
    scopes: list[str] | str,
    subject: str = "cli-user",
    claims: Mapping[str, Any] | None = None,
    ttl_s: float = 3600.0,
    issuer: str | None = None,
    audience: str | None = None,
    tenant_claim: str = "tenant",
    now: float | None = None,
) -> str:
    """An HS256 token (what `resolver token` prints; tests use it too)."""
    issued = int(now if now is not None else time.time())
    payload: dict[str, Any] = {
        "sub": subject,
        tenant_claim: tenant,
        "scope": scopes if isinstance(scopes, str) else " ".join(scopes),
        "iat": issued,
        "exp": issued + int(ttl_s),
    }
    if issuer:
        payload["iss"] = issuer
    if audience:
        payload["aud"] = audience
    payload |= dict(claims or {})
    return jwt.encode(payload, secret, algorithm="HS256")


# ------------------------------------------------------------------------------ API keys


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class _KeyRow:
    key_hash: str
    principal: Principal
    loaded_at: float


class ApiKeyStore:
    """API keys in the `api_keys` table. Lookups are cached for `cache_s` seconds (so a
    PostgreSQL blip does not lock service callers out, and revocation takes effect within
    that time)."""

    def __init__(self, pool: AsyncConnectionPool, *, cache_s: float = 30.0) -> None:
        self._pool, self._cache_s = pool, cache_s
        self._cache: dict[str, _KeyRow] = {}

    async def create(
        self,
        *,
        tenant: str,
        scopes: list[str],
        subject: str | None = None,
        claims: Mapping[str, Any] | None = None,
    ) -> str:
        if not TENANT_RE.match(tenant):
            raise ValueError(f"invalid tenant {tenant!r}")
        try:  # the same bounds as a token's claims
            check_claim_sizes({"sub": subject or "", **dict(claims or {})})
        except AuthError as exc:
            raise ValueError(exc.detail) from None
        key_id = uuid.uuid4().hex[:16]
        secret = secrets.token_urlsafe(32)
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO api_keys (key_id, key_hash, tenant, subject, scopes, claims)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    key_id,
                    _hash(secret),
                    tenant,
                    subject or f"api-key:{key_id}",
                    scopes,
                    Json(dict(claims or {})),
                ),
            )
        return f"wdr_{key_id}_{secret}"

    async def _load(self, key_id: str) -> _KeyRow | None:
        cached = self._cache.get(key_id)
        if cached is not None and time.monotonic() - cached.loaded_at < self._cache_s:
            return cached
        try:
            async with self._pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT key_hash, tenant, subject, scopes, claims FROM api_keys"
                    " WHERE key_id = %s AND revoked_at IS NULL",
                    (key_id,),
                )
                row = await cur.fetchone()
        except psycopg.Error as exc:  # includes PoolTimeout
            if cached is not None:
                return cached
            raise AuthUnavailable("the API key store is unavailable") from exc
        if row is None:
            self._cache.pop(key_id, None)
            return None
        key_hash, tenant, subject, scopes, claims = row
        principal = Principal.build(
            subject=subject,
            tenant=tenant,
            scopes=scopes or [],
            attributes=claims or {},
            via="api_key",
        )
        loaded = _KeyRow(key_hash, principal, time.monotonic())
        self._cache[key_id] = loaded
        return loaded

    async def verify(self, presented: str) -> Principal:
        match = API_KEY_RE.match(presented)
        if match is None:
            raise AuthError("malformed API key")
        key_id, secret = match.groups()
        row = await self._load(key_id)
        # always hash and compare, found or not: no timing difference between the cases
        expected = row.key_hash if row is not None else "0" * 64
        if not hmac.compare_digest(_hash(secret), expected) or row is None:
            raise AuthError("unknown API key")
        return row.principal
