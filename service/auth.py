"""Who is calling, from the request's credentials (no HTTP framework here: service/deps.py
turns the outcome into the principal dependency and 401/403 problems).

- `Authorization: Bearer <jwt>`: verified by `adapters.identity.JwtVerifier` (needs
  AUTH_JWT_SECRET or AUTH_JWKS_URL; without either a bearer token is refused).
- `X-API-Key: wdr_...`: looked up (hashed) in the `api_keys` table.
- Neither: dev mode (no auth settings) accepts the request as the dev principal, from a
  loopback client only (or any client with AUTH_DEV_OPEN); otherwise a 401.

The client address is the socket's peer: forwarding headers are never trusted, so a
request relayed by a proxy on the same host counts as loopback. That is why only dev
mode looks at it at all: with auth on, a loopback caller is an anonymous caller like any
other (no route, /readyz's details included, opens to it). In dev mode the Host header must
name a loopback host too (`service.middleware.RequestGuard`), against DNS rebinding. Run
dev mode only where that is acceptable (the docker-compose file sets a secret).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from contextlib import AsyncExitStack

from adapters.identity import (
    ApiKeyStore,
    AuthError,
    AuthUnavailable,
    JwksKeys,
    JwtConfig,
    JwtVerifier,
)
from domain.access import AccessPolicy, RowAccess
from domain.identity import DEV_PRINCIPAL, Principal
from service.settings import Settings

log = logging.getLogger("resolver")

__all__ = ["AuthError", "AuthUnavailable", "Authenticator", "is_loopback", "open_authenticator"]


def is_loopback(host: str | None) -> bool:
    return _is_loopback(host) if host else False


@functools.lru_cache(maxsize=1024)
def _is_loopback(host: str) -> bool:
    """(Cached: dev mode asks it on every request, and parsing an address costs.)"""
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)  # ::ffff:127.0.0.1 from a dual-stack socket
    return bool(addr.is_loopback or (mapped is not None and mapped.is_loopback))


class Authenticator:
    def __init__(
        self,
        *,
        mode: str,
        policy: AccessPolicy,
        verifier: JwtVerifier | None = None,
        api_keys: ApiKeyStore | None = None,
    ) -> None:
        self.mode, self.policy = mode, policy
        self.verifier, self.api_keys = verifier, api_keys

    @property
    def dev(self) -> bool:
        return self.mode in ("dev", "dev-open")

    async def authenticate(
        self, *, authorization: str | None, api_key: str | None, client_host: str | None
    ) -> Principal:
        """The principal, or AuthError (401) / AuthUnavailable (503)."""
        if authorization is not None and api_key is not None:
            raise AuthError(
                "send either a bearer token or an API key, not both", error="invalid_request"
            )
        if authorization is not None:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthError(
                    "the Authorization header must be 'Bearer <token>'", error="invalid_request"
                )
            if self.verifier is None:
                raise AuthError(
                    "bearer tokens are not accepted: no AUTH_JWT_SECRET or AUTH_JWKS_URL is set"
                )
            return await self.verifier.verify(token.strip())
        if api_key is not None:
            if self.api_keys is None:
                raise AuthError("API keys are not accepted here")
            return await self.api_keys.verify(api_key.strip())
        if self.mode == "dev-open" or (self.mode == "dev" and is_loopback(client_host)):
            return DEV_PRINCIPAL
        raise AuthError(
            "credentials required (a bearer token or an X-API-Key)", error="invalid_request"
        )

    def access(self, principal: Principal) -> RowAccess:
        return self.policy.access_for(principal)

    def describe(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "jwt": self.verifier is not None,
            "jwks_keys": (
                self.verifier.jwks.cached
                if self.verifier is not None and self.verifier.jwks is not None
                else None
            ),
            "api_keys": self.api_keys is not None,
        }


async def open_authenticator(
    settings: Settings, policy: AccessPolicy, api_keys: ApiKeyStore | None, stack: AsyncExitStack
) -> Authenticator:
    verifier = None
    if settings.auth_jwt_secret or settings.auth_jwks_url:
        jwks = None
        if settings.auth_jwks_url:
            jwks = JwksKeys(
                settings.auth_jwks_url,
                refresh_s=settings.auth_jwks_refresh_s,
                wait_s=settings.auth_jwks_wait_s,
                backoff_s=settings.auth_jwks_backoff_s,
                backoff_max_s=max(settings.auth_jwks_backoff_s, settings.auth_jwks_backoff_max_s),
            )
            stack.push_async_callback(jwks.aclose)
        verifier = JwtVerifier(
            JwtConfig(
                secret=settings.auth_jwt_secret.get_secret_value()
                if settings.auth_jwt_secret
                else None,
                issuer=settings.auth_issuer,
                audience=settings.auth_audience,
                leeway_s=settings.auth_leeway_s,
                tenant_claim=settings.auth_tenant_claim,
            ),
            jwks,
        )
    mode = settings.auth_mode
    if mode == "dev":
        log.warning(
            "auth: DEV MODE: requests without credentials run as the dev principal (tenant "
            "'default', every scope, no row filters) from loopback clients; set "
            "AUTH_JWT_SECRET or AUTH_JWKS_URL to require credentials"
        )
    elif mode == "dev-open":
        log.warning(
            "auth: DEV MODE OPEN TO EVERY CLIENT (AUTH_DEV_OPEN=true): anyone who reaches "
            "the port can read and write every widget of tenant 'default'"
        )
    else:
        log.info("auth: credentials required (%s)", mode)
    return Authenticator(mode=mode, policy=policy, verifier=verifier, api_keys=api_keys)
