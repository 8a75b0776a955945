"""`resolver token` and `resolver api-key create`."""

from __future__ import annotations

import jwt
import pytest
from psycopg_pool import AsyncConnectionPool

from adapters.identity import ApiKeyStore
from service.cli import main, parse_ttl

SECRET = "cli-secret-that-is-long-enough-for-hs256"


def test_token_mints_a_verifiable_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTH_JWT_SECRET", SECRET)
    monkeypatch.setenv("AUTH_AUDIENCE", "wdr")
    code = main(
        [
            "token",
            "--tenant",
            "acme",
            "--scope",
            "data:read widgets:read",
            "--claim",
            "regions=west,midwest",
            "--ttl",
            "15m",
        ]
    )
    assert code == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="wdr")
    assert claims["tenant"] == "acme" and claims["scope"] == "data:read widgets:read"
    assert claims["regions"] == ["west", "midwest"]
    assert claims["exp"] - claims["iat"] == 900


def test_token_without_secret_or_with_unknown_scope_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTH_JWT_SECRET", raising=False)
    assert main(["token", "--tenant", "acme", "--scope", "data:read"]) == 2
    monkeypatch.setenv("AUTH_JWT_SECRET", SECRET)
    with pytest.raises(SystemExit):
        main(["token", "--tenant", "acme", "--scope", "data:write"])


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("15m", 900), ("1h", 3600), ("2d", 172800)]
)
def test_ttl_spellings(text: str, seconds: float) -> None:
    assert parse_ttl(text) == seconds


async def test_api_key_create_prints_a_working_key_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], fresh_pg_url: str
) -> None:
    import asyncio

    monkeypatch.setenv("DATABASE_URL", fresh_pg_url)
    code = await asyncio.to_thread(
        main,
        [
            "api-key",
            "create",
            "--tenant",
            "acme",
            "--scope",
            "data:read",
            "--claim",
            "regions=west",
        ],
    )
    assert code == 0
    out = capsys.readouterr()
    key = out.out.strip()
    assert "shown once" in out.err
    pool = AsyncConnectionPool(fresh_pg_url, min_size=1, max_size=1, open=False)
    await pool.open()
    try:
        p = await ApiKeyStore(pool).verify(key)
    finally:
        await pool.close()
    assert p.tenant == "acme" and p.attributes["regions"] == ("west",)
