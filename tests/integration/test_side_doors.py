"""Issue 18, against the real `resolver serve` (real PostgreSQL and Redis, plain sockets and
HTTP): request heads are bounded before authentication (431), tokens are refused for odd
shapes PyJWT would let through, credentials never show in `/readyz` or the log, `/readyz`
tells an anonymous caller its status only, and a loopback caller is no one special with auth
on. The service runs with credentials in its DATABASE_URL (userinfo; PostgreSQL here trusts
loopback, so they are not checked) and its REDIS_URL (the query string), and a JWKS URL
with credentials pointing at a closed port."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import select
import socket
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg
import pytest
import pytest_asyncio

from adapters.identity import mint_token
from fakes.bedrock_converse import MODEL_ID, ConverseServer, ToolCall
from fakes.jwks_server import JwksServer
from tests.support.servers import (
    FAKE_AWS_ENV,
    Service,
    create_database,
    drop_database,
    free_port,
    resolver_serve,
    running_service,
)

SECRET = "side-doors-secret-0123456789abcdef0123"
PG_PASSWORD = "pg-userinfo-s3cret"
REDIS_PASSWORD = "redis-query-s3cret"
JWKS_PASSWORD = "jwks-userinfo-s3cret"
JWKS_TOKEN = "jwks-query-s3cret"
SECRETS = (PG_PASSWORD, REDIS_PASSWORD, JWKS_PASSWORD, JWKS_TOKEN)
MAX_HEADER_BYTES = 32_768  # the default HTTP_MAX_HEADER_BYTES
MAX_HEADERS = 100  # the default HTTP_MAX_HEADERS
ROW_MARK = "row-secret-7f3a"
FORGED = "2026-01-01 00:00:00,000 WARNING resolver: forged"
# the model's SQL: the warehouse's error quotes a row's value (and a literal with a newline)
LEAKY_SQL = (
    f"SELECT CAST(region || '{ROW_MARK}\n{FORGED}' AS INT) AS n FROM main.claims.claim_events"
)


@dataclass
class Served:
    base: str
    port: int
    pid: int
    log: Path


def _with_password(url: str) -> str:
    scheme, rest = url.split("://", 1)
    user_host = rest.split("@", 1)[-1]
    return f"{scheme}://postgres:{PG_PASSWORD}@{user_host}"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    db = create_database("wdr_side")
    port = free_port()
    work = tmp_path_factory.mktemp("side")
    converse = ConverseServer(default=ToolCall(sql=LEAKY_SQL)).start()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REDIS_", "DATABRICKS_", "AUTH_", "DATABASE_", "BEDROCK_"))
    }
    env |= {
        "DATABASE_URL": _with_password(db),
        "SEED_DEMO": "true",  # a fresh database: the demo catalog and widgets
        "REDIS_URL": f"redis://127.0.0.1:6379/0?password={REDIS_PASSWORD}",
        "CACHE_PREFIX": f"wdr-test:{Path(db).name}:",
        "PORT": str(port),
        "DATA_DIR": str(work),
        "AUTH_JWT_SECRET": SECRET,
        "AUTH_JWKS_URL": (
            f"http://jwks:{JWKS_PASSWORD}@127.0.0.1:{free_port()}/jwks?token={JWKS_TOKEN}"
        ),
        "LOG_FORMAT": "text",
        "LOG_LEVEL": "INFO",
        "BEDROCK_MODEL_ID": MODEL_ID,
        "BEDROCK_ENDPOINT_URL": converse.url,
    } | FAKE_AWS_ENV
    try:
        with resolver_serve(env, work / "serve.log") as proc:
            yield Served(f"http://127.0.0.1:{port}", port, proc.pid, work / "serve.log")
    finally:
        converse.stop()
        drop_database(db)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token(scopes: str = "data:read", **claims: Any) -> str:
    return mint_token(SECRET, tenant="default", scopes=scopes, claims=claims)


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text[:500]
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    return body


# ------------------------------------------------------------------ request heads (431)


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return data


def send_head(port: int, head: bytes, *, filler: bytes = b"", up_to: int = 0) -> tuple[bytes, int]:
    """Send `head`, then `filler` repeated up to `up_to` bytes (a header still arriving),
    then the end of the head; stop sending as soon as the server answers or closes. The
    answer, and how many bytes the server let the client send."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(60)
        try:
            sock.sendall(head)
            sent += len(head)
            while sent < up_to:
                sock.sendall(filler)
                sent += len(filler)
                if select.select([sock], [], [], 0)[0]:  # answered (or closed): stop
                    break
            else:
                sock.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        return _read_all(sock), sent


MB = 1 << 20
CHUNK = b"a" * 65536
HEADS: dict[str, tuple[bytes, bytes, int]] = {
    # one header's value, 64 MB, still arriving
    "one 64 MB header value": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ", CHUNK, 64 * MB),
    # a header name that never ends
    "a 64 MB header name": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-", CHUNK, 64 * MB),
    # the request target itself
    "a 64 MB URL": (b"GET /healthz?q=", CHUNK, 64 * MB),
    # many headers, each small, together over the byte limit
    "many 1 KB headers": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
        b"".join(b"X-%d: %s\r\n" % (i, b"b" * 1000) for i in range(60)),
        64 * MB,
    ),
    # more header fields than allowed, well within the byte limit
    "more fields than allowed": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS + 1)),
        b"",
        0,
    ),
    # a credential header, before any authentication happens
    "a 1 MB bearer token": (
        b"POST /v1/widgets/open-issues-kpi/data HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ",
        CHUNK,
        MB,
    ),
}


@pytest.mark.parametrize("case", list(HEADS))
def test_an_oversized_request_head_is_a_431_problem_before_anything_reads_it(
    served: Served, case: str
) -> None:
    head, filler, up_to = HEADS[case]
    answer, sent = send_head(served.port, head, filler=filler, up_to=up_to)
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large", answer[:300]
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in headers
    assert json.loads(body)["status"] == 431
    if up_to >= 64 * MB:  # cut off long before the client finished (socket buffers aside)
        assert sent < up_to // 4, sent
    assert httpx.get(served.base + "/healthz").status_code == 200


def test_a_head_within_the_limits_is_served(served: Served) -> None:
    headers = {f"X-{i}": "v" * 200 for i in range(MAX_HEADERS - 10)}
    assert httpx.get(served.base + "/healthz", headers=headers).status_code == 200


def _peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_parallel_huge_headers_take_no_memory_and_health_still_answers(served: Served) -> None:
    """The issue's figure: 16 parallel 32 MB headers took 300 MB and stalled /healthz."""
    before = _peak_rss_bytes(served.pid)
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
    with ThreadPoolExecutor(16) as pool:
        results = list(
            pool.map(lambda _: send_head(served.port, head, filler=CHUNK, up_to=32 * MB), range(16))
        )
    assert all(answer.startswith(b"HTTP/1.1 431") for answer, _ in results), [
        a[:40] for a, _ in results
    ]
    grown = _peak_rss_bytes(served.pid) - before
    assert grown < 64 * MB, f"the server's peak memory grew by {grown / MB:.0f} MB"
    assert httpx.get(served.base + "/healthz").status_code == 200


# ------------------------------------------------------------------ tokens


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _signed(claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    now = int(time.time())
    payload = {"sub": "u", "tenant": "default", "scope": "data:read", "iat": now, "exp": now + 60}
    payload |= claims
    return jwt.encode(payload, SECRET, algorithm="HS256", headers=header)


def _noncanonical(segment: str) -> str:
    """The same bytes, written with non-zero unused trailing bits (PyJWT decodes it)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    unused = {2: 4, 3: 2}[len(segment) % 4]  # bits of the last character not carrying data
    last = alphabet.index(segment[-1])
    twisted = segment[:-1] + alphabet[last | ((1 << unused) - 1)]
    assert twisted != segment and base64.urlsafe_b64decode(
        twisted + "=" * (-len(twisted) % 4)
    ) == base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    return twisted


def _part(tok: str, i: int, change: Any) -> str:
    parts = tok.split(".")
    parts[i] = change(parts[i])
    return ".".join(parts)


def _payload_with(raw_json: str) -> str:
    """A token whose payload is exactly `raw_json`, correctly signed."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(raw_json.encode())
    signing_input = f"{header}.{body}".encode()
    import hashlib
    import hmac

    sig = hmac.new(SECRET.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(sig)}"


def _good() -> str:
    return _signed({})


def _with_url_chars() -> str:
    """A good token whose signature holds a `-` or `_` (the URL-safe alphabet's own)."""
    for i in range(1000):
        tok = _signed({"jti": str(i)})
        if set(tok.rsplit(".", 1)[1]) & {"-", "_"}:
            return tok
    raise AssertionError("no signature with - or _")


def _padless_header() -> str:
    """A good token whose header's encoding needs padding (its length is not 4n)."""
    for kid in ("a", "ab", "abc"):
        tok = _signed({}, header={"kid": kid})
        if len(tok.split(".")[0]) % 4:
            return tok
    raise AssertionError("no header length")


# every one of these is correctly signed with the service's secret
BAD_TOKENS = {
    "exp as a numeric string": lambda: _signed({"exp": "9999999999"}),
    "exp 1e300": lambda: _signed({"exp": 1e300}),
    "exp infinite": lambda: _payload_with(
        '{"sub":"u","tenant":"default","scope":"data:read","exp":Infinity}'
    ),
    "exp NaN": lambda: _payload_with(
        '{"sub":"u","tenant":"default","scope":"data:read","exp":NaN}'
    ),
    "exp a boolean": lambda: _signed({"exp": True}),
    "exp past the year 10000": lambda: _signed({"exp": 253_402_300_800 + 1}),
    "exp a 5000-digit integer": lambda: _payload_with(
        '{"sub":"u","tenant":"default","scope":"data:read","exp":1' + "0" * 5000 + "}"
    ),
    "nbf as a string": lambda: _signed({"nbf": "0"}),
    "iat as a string": lambda: _signed({"iat": str(int(time.time()))}),
    "iat negative": lambda: _signed({"iat": -1}),
    "exp duplicated": lambda: _payload_with(
        '{"sub":"u","tenant":"default","scope":"data:read","exp":1,"exp":9999999999}'
    ),
    "signature padded": lambda: _good() + "=",
    "signature padded twice": lambda: _good() + "==",
    "signature non-canonical": lambda: _part(_good(), 2, _noncanonical),
    "signature with a stray character": lambda: _part(_good(), 2, lambda s: s[:10] + "!" + s[10:]),
    "signature in standard base64": lambda: _part(
        _with_url_chars(), 2, lambda s: s.replace("-", "+").replace("_", "/")
    ),
    "header padded": lambda: _part(_padless_header(), 0, lambda s: s + "=" * (-len(s) % 4)),
    "payload with whitespace": lambda: _part(_good(), 1, lambda s: s[:8] + " " + s[8:]),
    "a 1000-character sub": lambda: _signed({"sub": "s" * 1000}),
    "an 8 KB string claim": lambda: _signed({"note": "n" * 9000}),
    "a list claim of 3000 values": lambda: _signed({"regions": ["west"] * 3000}),
    "a nested object claim": lambda: _signed({"profile": {"a": [{"b": "x" * 9000}]}}),
    "a deep array claim": lambda: _payload_with(
        '{"sub":"u","tenant":"default","scope":"data:read","exp":9999999999,"d":'
        + "[" * 3000
        + "]" * 3000
        + "}"
    ),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_odd_tokens_are_refused_with_a_401_problem(served: Served, case: str) -> None:
    tok = BAD_TOKENS[case]()
    r = httpx.post(served.base + "/v1/widgets/open-issues-kpi/data", headers=bearer(tok))
    body = _problem(r, 401)
    assert "invalid_token" in r.headers["www-authenticate"], body


def test_a_plain_token_is_accepted(served: Served) -> None:
    r = httpx.post(served.base + "/v1/widgets/open-issues-kpi/data", headers=bearer(_good()))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "headers",
    [
        [("Authorization", "Bearer a"), ("Authorization", "Bearer b")],
        [("Authorization", "Bearer x"), ("Authorization", "Bearer x")],
        [("X-API-Key", "wdr_a"), ("X-API-Key", "wdr_b")],
    ],
    ids=["two bearer tokens", "the same token twice", "two API keys"],
)
def test_a_repeated_credential_header_is_a_400_problem(
    served: Served, headers: list[tuple[str, str]]
) -> None:
    good = ("Authorization", f"Bearer {_good()}")
    fixed = [good if h[0] == "Authorization" else h for h in headers]
    for hs in (headers, fixed):
        r = httpx.post(served.base + "/v1/widgets/open-issues-kpi/data", headers=hs)
        _problem(r, 400)


# ------------------------------------------------------------------ /readyz and loopback


def test_readyz_tells_an_anonymous_loopback_caller_its_status_only(served: Served) -> None:
    r = httpx.get(served.base + "/readyz")
    assert r.status_code == 200 and set(r.json()) == {"status"}, r.text
    no_scope = httpx.get(served.base + "/readyz", headers=bearer(token("data:read")))
    assert set(no_scope.json()) == {"status"}
    bad = httpx.get(served.base + "/readyz", headers=bearer(_good() + "x"))
    _problem(bad, 401)


def test_readyz_details_need_ops_read(served: Served) -> None:
    r = httpx.get(served.base + "/readyz", headers=bearer(token("ops:read")))
    components = r.json()["components"]
    assert components["auth"]["mode"] == "jwt"
    assert {"postgres", "cache", "registry"} <= set(components)
    assert "redis 127.0.0.1:6379/0?password=***" in components["cache"]["kind"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/widgets/open-issues-kpi/data"),
        ("GET", "/v1/widgets"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/v1/audit"),
    ],
)
def test_a_loopback_caller_is_no_one_special_with_auth_on(
    served: Served, method: str, path: str
) -> None:
    r = httpx.request(method, served.base + path)
    _problem(r, 401)


# ------------------------------------------------------------------ credentials


def test_no_credential_shows_in_readyz_or_in_the_log(served: Served) -> None:
    ready = httpx.get(served.base + "/readyz", headers=bearer(token("ops:read")))
    # a JWKS fetch (from the closed port in AUTH_JWKS_URL) fails and is logged
    with JwksServer() as idp:
        r = httpx.post(
            served.base + "/v1/widgets/open-issues-kpi/data",
            headers=bearer(idp.mint(tenant="default")),
        )
    assert r.status_code == 503, r.text
    log = served.log.read_text(errors="replace")
    assert "JWKS fetch from http://***@127.0.0.1:" in log, log[-3000:]
    assert "redis 127.0.0.1:6379/0?password=***" in log  # the boot line names the cache
    for secret in SECRETS:
        assert secret not in ready.text
        assert secret not in r.text
        assert secret not in log, secret


# ------------------------------------------------------------------ in-process, real PostgreSQL


in_module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def dev(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    """Dev mode (no auth settings), called from loopback."""
    async with running_service(database_url=db_url, data_dir=tmp_path_factory.mktemp("d")) as s:
        yield s


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def secured(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    async with running_service(
        database_url=db_url, data_dir=tmp_path_factory.mktemp("s"), auth_jwt_secret=SECRET
    ) as s:
        yield s


@pytest.mark.parametrize(
    "host",
    ["localhost", "localhost:8000", "127.0.0.1", "127.0.0.1:49152", "[::1]", "[::1]:8000"],
)
@in_module_loop
async def test_dev_mode_serves_loopback_host_names(dev: Service, host: str) -> None:
    r = await dev.client.get("/v1/widgets", headers={"Host": host})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8000",
        "127.0.0.1.evil.example",
        "localhost.evil.example:8000",
        "10.0.0.5",
        "[::2]:8000",
        "0.0.0.0",
        "",
    ],
)
@in_module_loop
async def test_dev_mode_refuses_other_host_names_dns_rebinding(dev: Service, host: str) -> None:
    """A DNS-rebinding page reaches 127.0.0.1 under its own name: no dev principal for it."""
    for method, path in (("GET", "/v1/widgets"), ("GET", "/readyz"), ("GET", "/")):
        r = await dev.client.request(method, path, headers={"Host": host})
        body = _problem(r, 403)
        assert body["type"] == "urn:problem:host-not-allowed"
        assert "components" not in r.text


@in_module_loop
async def test_with_auth_on_any_host_name_is_served(secured: Service) -> None:
    r = await secured.client.get(
        "/v1/widgets", headers={"Host": "resolver.example.com"} | bearer(token("widgets:read"))
    )
    assert r.status_code == 200, r.text


@in_module_loop
async def test_a_huge_subject_is_refused_and_never_audited(secured: Service, db_url: str) -> None:
    """In process (no header cap in between): a 1 MB `sub` is a 401, and no audit row."""
    spec = {
        "title": "t",
        "kind": "kpi",
        "data_intent": {"metric_id": "active_issues_count", "time_range": "last_24h"},
        "mock_data": [{"value": 1}],
    }
    s = secured
    for claims in ({"sub": "s" * MB}, {"sub": "s" * 300}, {"blob": {"k": ["v" * 9000]}}):
        tok = mint_token(SECRET, tenant="default", scopes="widgets:write", claims=claims)
        r = await s.client.put("/v1/widgets/side-door-kpi", json=spec, headers=bearer(tok))
        _problem(r, 401)
    ok = mint_token(SECRET, tenant="default", scopes="widgets:write", subject="s" * 256)
    r = await s.client.put("/v1/widgets/side-door-kpi", json=spec, headers=bearer(ok))
    assert r.status_code in (200, 201), r.text
    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT widget_id, length(subject) FROM audit_log").fetchall()
    assert [n for w, n in rows if w == "side-door-kpi"] == [256]  # only the accepted write
    assert max(n for _, n in rows) == 256


# ------------------------------------------------------------------ /docs without a CDN


@in_module_loop
async def test_docs_load_swagger_ui_from_this_origin_under_the_csp(dev: Service) -> None:
    from html.parser import HTMLParser

    from service.routes.dashboard import CSP

    class Refs(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.refs: list[str] = []
            self.inline_scripts = 0

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found = dict(attrs)
            for name in ("src", "href"):
                if found.get(name):
                    self.refs.append(str(found[name]))
            if tag == "script" and not found.get("src"):
                self.inline_scripts += 1

    s = dev
    page = await s.client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CSP
    assert page.headers["x-content-type-options"] == "nosniff"
    parser = Refs()
    parser.feed(page.text)
    assert parser.inline_scripts == 0  # script-src 'self' allows no inline script
    assert parser.refs, page.text
    for ref in parser.refs:
        assert ref.startswith("/") and not ref.startswith("//"), ref  # this origin only
        asset = await s.client.get(ref)
        assert asset.status_code == 200, ref
        assert asset.headers["x-content-type-options"] == "nosniff"
        if ref.endswith("docs.js"):  # our own starter names no other host
            assert "://" not in asset.text
    kinds = {r.rsplit(".", 1)[-1] for r in parser.refs}
    assert {"js", "css"} <= kinds
    assert (await s.client.get("/docs/assets/index.html")).status_code == 404
    assert (await s.client.get("/docs/assets/..%2Fswagger-initializer.js")).status_code == 404


def test_warehouse_error_text_and_row_values_stay_out_of_the_log(served: Served) -> None:
    """The model's SQL fails in the warehouse with an error quoting a row's value and a
    literal holding a newline and a forged log line: the caller gets its answer (degraded),
    the log gets the failure's kind only, one line per record."""
    writer = bearer(token("widgets:write data:read", regions=["west"]))
    spec = {
        "title": "leaky",
        "kind": "table",
        "data_intent": {"metric_id": "claims_insights", "question": "Claims per region?"},
        "mock_data": [{"n": 0}],
    }
    put = httpx.put(served.base + "/v1/widgets/leaky-question", json=spec, headers=writer)
    assert put.status_code in (200, 201), put.text
    r = httpx.post(served.base + "/v1/widgets/leaky-question/data", headers=writer, timeout=60)
    body = r.json()
    assert body["live_data_unavailable"] is True, {
        k: body[k] for k in ("source", "generated_sql", "data", "degraded") if k in body
    }
    log = served.log.read_text(errors="replace")
    assert "leaky-question degraded: databricks_error" in log, log[-3000:]
    assert ROW_MARK not in log and "westrow" not in log
    assert not any(line.startswith(FORGED) for line in log.splitlines())
    # every line is a record of ours (uvicorn's included) or a marked continuation
    record = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+: |  \| ")
    assert all(record.match(line) for line in log.splitlines()), log[-3000:]


@in_module_loop
@pytest.mark.parametrize("outage", ["503", "slow then 503"])
async def test_a_jwks_outage_is_one_fetch_for_many_requests(
    db_url: str, tmp_path: Path, outage: str
) -> None:
    """No cached keys and the identity provider down: 16 concurrent requests share one
    fetch and get a 503 problem each; the provider is not hit once per request."""
    with JwksServer() as idp:
        async with running_service(
            database_url=db_url,
            data_dir=tmp_path,
            auth_jwks_url=idp.url,
            auth_issuer=idp.issuer,
            auth_audience=idp.audience,
            auth_jwks_wait_s=30,
            auth_jwks_backoff_s=600,  # no second fetch within the test, however slow it runs
        ) as s:
            idp.down = True
            if outage != "503":
                idp.hold()
            headers = bearer(idp.mint(tenant="default"))
            calls = [
                asyncio.create_task(s.client.get("/v1/widgets", headers=headers)) for _ in range(16)
            ]
            if outage != "503":
                assert await asyncio.to_thread(idp.arrived.wait, 30)
                idp.release()
            answers = await asyncio.gather(*calls)
            for r in answers:
                _problem(r, 503)
                assert r.headers["retry-after"]
            assert idp.requests == 1
