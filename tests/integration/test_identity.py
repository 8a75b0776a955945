"""Verifying callers: HS256 tokens, RS256/ES256 through a local JWKS server, API keys in
the real PostgreSQL; every bad-credential case is refused with a reason."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Iterator

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from psycopg_pool import AsyncConnectionPool

from adapters.identity import (
    ApiKeyStore,
    AuthError,
    AuthUnavailable,
    JwksKeys,
    JwtConfig,
    JwtVerifier,
    mint_token,
)
from adapters.pg_migrate import migrate
from fakes.jwks_server import JwksServer, SigningKey

SECRET = "test-secret-at-least-32-bytes-long!!"


def b64(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


@pytest.fixture
def hs() -> JwtVerifier:
    return JwtVerifier(JwtConfig(secret=SECRET, issuer="me", audience="wdr", leeway_s=5))


def hs_token(**over: object) -> str:
    claims: dict[str, object] = {"regions": ["west"]}
    kwargs: dict[str, object] = {"tenant": "acme", "scopes": "data:read widgets:read"}
    for k in ("tenant", "scopes", "ttl_s", "subject", "now"):
        if k in over:
            kwargs[k] = over.pop(k)
    claims |= over
    return mint_token(SECRET, issuer="me", audience="wdr", claims=claims, **kwargs)  # type: ignore[arg-type]


async def test_hs256_token_gives_principal(hs: JwtVerifier) -> None:
    p = await hs.verify(hs_token())
    assert (p.subject, p.tenant, p.via) == ("cli-user", "acme", "jwt")
    assert p.scopes == {"data:read", "widgets:read"}
    assert p.attributes["regions"] == ("west",)
    assert "iss" not in p.attributes and "tenant" not in p.attributes


async def test_scopes_list_claim_is_accepted(hs: JwtVerifier) -> None:
    now = int(time.time())
    token = jwt.encode(
        {
            "sub": "s",
            "tenant": "t",
            "scopes": ["audit:read"],
            "exp": now + 60,
            "iss": "me",
            "aud": "wdr",
        },
        SECRET,
        algorithm="HS256",
    )
    assert (await hs.verify(token)).scopes == {"audit:read"}


async def test_clock_skew_within_leeway_is_tolerated(hs: JwtVerifier) -> None:
    await hs.verify(hs_token(ttl_s=-2))  # expired 2 s ago, leeway 5 s
    await hs.verify(hs_token(nbf=int(time.time()) + 2))


def forged_none() -> str:
    now = int(time.time())
    payload = {"sub": "x", "tenant": "acme", "scope": "widgets:write", "exp": now + 60}
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(payload)}."


BAD_HS = {
    "garbage": lambda: "not-a-token",
    "three_garbage_parts": lambda: "a.b.c",
    "bad_signature": lambda: (
        hs_token()[:-4] + ("AAAA" if not hs_token().endswith("AAAA") else "BBBB")
    ),
    "other_secret": lambda: mint_token(
        "another-secret-also-32-bytes-long!!",
        tenant="acme",
        scopes="data:read",
        issuer="me",
        audience="wdr",
    ),
    "alg_none": forged_none,
    "alg_none_uppercase": lambda: forged_none().replace(
        b64({"alg": "none", "typ": "JWT"}), b64({"alg": "NONE"})
    ),
    "expired": lambda: hs_token(ttl_s=-60),
    "not_yet_valid": lambda: hs_token(nbf=int(time.time()) + 120),
    "wrong_issuer": lambda: hs_token(iss="evil"),
    "wrong_audience": lambda: hs_token(aud="other"),
    "no_tenant": lambda: jwt.encode(
        {"sub": "s", "exp": int(time.time()) + 60, "iss": "me", "aud": "wdr"}, SECRET
    ),
    "bad_tenant": lambda: hs_token(tenant="a b/../c"),
    "no_sub": lambda: jwt.encode(
        {"tenant": "t", "exp": int(time.time()) + 60, "iss": "me", "aud": "wdr"}, SECRET
    ),
    "no_exp": lambda: jwt.encode({"sub": "s", "tenant": "t", "iss": "me", "aud": "wdr"}, SECRET),
    "hs512": lambda: jwt.encode(
        {"sub": "s", "tenant": "t", "exp": int(time.time()) + 60, "iss": "me", "aud": "wdr"},
        SECRET,
        algorithm="HS512",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_HS))
async def test_bad_hs256_credentials_are_refused(hs: JwtVerifier, case: str) -> None:
    with pytest.raises(AuthError) as err:
        await hs.verify(BAD_HS[case]())
    assert err.value.error == "invalid_token"
    assert err.value.detail


# ------------------------------------------------------------------------------ JWKS


@pytest.fixture
def idp() -> Iterator[JwksServer]:
    with JwksServer() as srv:
        yield srv


@pytest.fixture
async def jwks(idp: JwksServer) -> AsyncIterator[JwksKeys]:
    keys = JwksKeys(idp.url, refresh_s=300, min_refetch_s=0)
    yield keys
    await keys.aclose()


def rs_verifier(idp: JwksServer, jwks: JwksKeys, secret: str | None = None) -> JwtVerifier:
    return JwtVerifier(JwtConfig(secret=secret, issuer=idp.issuer, audience=idp.audience), jwks)


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
async def test_jwks_tokens_verify(idp: JwksServer, jwks: JwksKeys, alg: str) -> None:
    v = rs_verifier(idp, jwks)
    p = await v.verify(idp.mint(alg=alg, tenant="globex", scope="data:read", regions=["west"]))
    assert p.tenant == "globex" and p.attributes["regions"] == ("west",)


async def test_keys_are_cached_and_survive_a_jwks_outage(idp: JwksServer, jwks: JwksKeys) -> None:
    v = rs_verifier(idp, jwks)
    await v.verify(idp.mint())
    fetched = idp.requests
    await v.verify(idp.mint())
    assert idp.requests == fetched  # cached, not fetched per token
    idp.down = True
    jwks.refresh_s = 0  # the set is stale: a refetch is attempted (in the background), fails
    await v.verify(idp.mint())  # the cached key still verifies, without waiting for it
    await jwks.settled()
    assert idp.requests > fetched
    idp.stop()  # the port closed altogether
    await v.verify(idp.mint(alg="ES256"))


async def test_unknown_kid_triggers_one_refetch_then_rotation_works(
    idp: JwksServer, jwks: JwksKeys
) -> None:
    v = rs_verifier(idp, jwks)
    await v.verify(idp.mint())
    new = idp.rotate("RS256")
    await v.verify(idp.mint(key=new))
    with pytest.raises(AuthError, match="unknown key"):
        await v.verify(idp.mint(key=SigningKey.generate("RS256")))


async def test_no_cached_keys_and_jwks_down_is_unavailable(idp: JwksServer, jwks: JwksKeys) -> None:
    idp.down = True
    with pytest.raises(AuthUnavailable):
        await rs_verifier(idp, jwks).verify(idp.mint())


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("callers", [2, 16])
@pytest.mark.parametrize("outcome", ["down", "up"])
async def test_one_jwks_fetch_in_flight_is_shared_by_every_caller(
    idp: JwksServer, callers: int, outcome: str
) -> None:
    """Issue 18: no cached keys and a slow identity provider: the callers share one fetch
    (the provider sees one request), and all get its outcome."""
    keys = JwksKeys(idp.url, min_refetch_s=0, wait_s=30)
    try:
        v = rs_verifier(idp, keys)
        idp.down = outcome == "down"
        idp.hold()
        tokens = [idp.mint(subject=f"u{i}") for i in range(callers)]
        tasks = [asyncio.create_task(v.verify(t)) for t in tokens]
        assert await asyncio.to_thread(idp.arrived.wait, 30)  # the fetch is in flight
        idp.release()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert idp.requests == 1
        if outcome == "down":
            assert all(isinstance(r, AuthUnavailable) for r in results), results
        else:
            assert [r.subject for r in results] == [f"u{i}" for i in range(callers)]  # type: ignore[union-attr]
    finally:
        idp.release()
        await keys.aclose()


@pytest.mark.parametrize("idp_state", ["503", "404"])
async def test_a_failed_jwks_fetch_backs_off_and_callers_do_not_hit_the_provider(
    idp: JwksServer, idp_state: str
) -> None:
    """Issue 18: after a failed fetch (no keys cached) requests are answered at once (503)
    without a fetch, until the backoff (doubling, capped) has passed."""
    clock = FakeClock()
    keys = JwksKeys(idp.url, min_refetch_s=0, backoff_s=1.0, backoff_max_s=4.0, clock=clock)
    try:
        v = rs_verifier(idp, keys)
        token = idp.mint()
        if idp_state == "503":
            idp.down = True
        else:
            keys.url = idp.url + ".missing"
        seen = lambda: idp.requests  # noqa: E731
        for delay in (1.0, 2.0, 4.0, 4.0):  # the backoff doubles up to backoff_max_s
            before = seen()
            with pytest.raises(AuthUnavailable):
                await v.verify(token)  # a fetch, which fails
            fetched = seen() - before
            assert fetched == 1
            for _ in range(20):  # within the backoff: no fetch at all
                with pytest.raises(AuthUnavailable):
                    await v.verify(token)
            assert seen() - before == fetched
            clock.now += delay - 0.01
            with pytest.raises(AuthUnavailable):
                await v.verify(token)
            assert seen() - before == fetched  # not yet
            clock.now += 0.02
        idp.down = False
        keys.url = idp.url
        assert (await v.verify(token)).tenant == "acme"  # the provider is back: keys again
    finally:
        await keys.aclose()


async def test_a_caller_waits_for_keys_at_most_wait_s(idp: JwksServer) -> None:
    """Issue 18: a provider that does not answer holds no request longer than wait_s."""
    keys = JwksKeys(idp.url, wait_s=0.05, timeout_s=30)
    try:
        idp.hold()
        with pytest.raises(AuthUnavailable):
            await rs_verifier(idp, keys).verify(idp.mint())
        assert idp.requests == 1
    finally:
        idp.release()
        await keys.aclose()


def public_pem(idp: JwksServer) -> bytes:
    return (
        idp.key("RS256")
        .private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def confused(idp: JwksServer) -> str:
    """HS256 signed with the RSA public key as the HMAC secret (the classic confusion)."""
    now = int(time.time())
    payload = {
        "sub": "x",
        "tenant": "acme",
        "scope": "widgets:write",
        "exp": now + 60,
        "iss": idp.issuer,
        "aud": idp.audience,
    }
    header = b64({"alg": "HS256", "typ": "JWT", "kid": idp.key("RS256").kid})
    import hashlib
    import hmac

    signing_input = f"{header}.{b64(payload)}".encode()
    sig = hmac.new(public_pem(idp), signing_input, hashlib.sha256).digest()
    return f"{signing_input.decode()}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


@pytest.mark.parametrize("with_secret", [False, True])
async def test_hs_rs_key_confusion_is_refused(
    idp: JwksServer, jwks: JwksKeys, with_secret: bool
) -> None:
    v = rs_verifier(idp, jwks, secret=SECRET if with_secret else None)
    await v.verify(idp.mint())
    with pytest.raises(AuthError):
        await v.verify(confused(idp))


async def test_jwks_alg_must_match_the_key(idp: JwksServer, jwks: JwksKeys) -> None:
    v = rs_verifier(idp, jwks)
    token = idp.mint(alg="ES256")
    # relabel the ES256 token as RS256 with the EC key's kid
    _head, body, sig = token.split(".")
    kid = idp.key("ES256").kid
    relabeled = f"{b64({'alg': 'RS256', 'kid': kid, 'typ': 'JWT'})}.{body}.{sig}"
    with pytest.raises(AuthError):
        await v.verify(relabeled)


async def test_jwks_wrong_issuer_audience_and_expiry(idp: JwksServer, jwks: JwksKeys) -> None:
    v = rs_verifier(idp, jwks)
    for token in (idp.mint(iss="https://evil/"), idp.mint(aud="other"), idp.mint(ttl_s=-60)):
        with pytest.raises(AuthError):
            await v.verify(token)


async def test_hs256_is_refused_when_only_jwks_is_configured(
    idp: JwksServer, jwks: JwksKeys
) -> None:
    with pytest.raises(AuthError, match="not accepted"):
        await rs_verifier(idp, jwks).verify(hs_token())


# ------------------------------------------------------------------------------ API keys


@pytest.fixture
async def key_store(fresh_pg_url: str) -> AsyncIterator[ApiKeyStore]:
    await migrate(fresh_pg_url)
    pool = AsyncConnectionPool(
        fresh_pg_url, min_size=1, max_size=2, open=False, kwargs={"autocommit": True}
    )
    await pool.open()
    yield ApiKeyStore(pool, cache_s=0)
    await pool.close()


async def test_api_key_round_trip_and_refusals(key_store: ApiKeyStore) -> None:
    key = await key_store.create(
        tenant="acme", scopes=["data:read"], claims={"regions": ["west", 1]}
    )
    p = await key_store.verify(key)
    assert (p.tenant, p.via, p.scopes) == ("acme", "api_key", {"data:read"})
    assert p.attributes["regions"] == ("1", "west")
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    unknown = "wdr_" + "0" * 16 + "_" + key.rsplit("_", 1)[1]
    for bad in (tampered, unknown, "nope", key + "x", ""):
        with pytest.raises(AuthError):
            await key_store.verify(bad)


async def test_only_the_hash_is_stored(key_store: ApiKeyStore, fresh_pg_url: str) -> None:
    key = await key_store.create(tenant="acme", scopes=["data:read"])
    import psycopg

    with psycopg.connect(fresh_pg_url) as conn:
        rows = conn.execute("SELECT key_id, key_hash FROM api_keys").fetchall()
    secret = key.rsplit("_", 1)[1]
    assert len(rows) == 1 and secret not in rows[0][1] and rows[0][0] in key


async def test_oversized_attribute_claims_are_refused(hs: JwtVerifier) -> None:
    with pytest.raises(AuthError, match="more than"):
        await hs.verify(hs_token(regions=[f"r{i}" for i in range(1001)]))
    with pytest.raises(AuthError, match="characters"):
        await hs.verify(hs_token(regions=["x" * 257]))
    assert (await hs.verify(hs_token(regions=[f"r{i}" for i in range(1000)]))).attributes


@pytest.mark.parametrize(
    "kw",
    [
        {"subject": "s" * 300},
        {"claims": {"regions": ["w" * 9000]}},
        {"claims": {"profile": {"a": {"b": "x" * 9000}}}},
    ],
    ids=["long subject", "oversized list claim", "oversized nested claim"],
)
async def test_an_api_key_takes_the_claim_bounds_of_a_token(
    key_store: ApiKeyStore, kw: dict[str, object]
) -> None:
    with pytest.raises(ValueError, match="over"):
        await key_store.create(tenant="acme", scopes=["data:read"], **kw)  # type: ignore[arg-type]
