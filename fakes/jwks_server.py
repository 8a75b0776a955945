"""A local identity provider's JWKS endpoint for tests (loopback only).

It serves `GET /.well-known/jwks.json` with the public halves of an RSA (RS256) and an
EC P-256 (ES256) key, exactly as an identity provider does (RFC 7517), and mints tokens
signed with the private halves. It can go down (`srv.down = True` answers 503; `stop()`
closes the port), rotate keys, and hold its answers (`srv.hold()` ... `srv.release()`: a
slow identity provider, with `srv.arrived` set once a request is waiting), to test caching,
outages and single flight. `srv.requests` counts the requests it got.

    with JwksServer() as idp:
        verifier = JwtVerifier(JwtConfig(), JwksKeys(idp.url))
        token = idp.mint(tenant="acme", scope="data:read", alg="RS256")
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

JWKS_PATH = "/.well-known/jwks.json"


@dataclass
class SigningKey:
    alg: str
    kid: str
    private: Any

    @classmethod
    def generate(cls, alg: str) -> SigningKey:
        private: Any
        if alg == "RS256":
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
        else:
            raise ValueError(alg)
        return cls(alg=alg, kid=f"{alg.lower()}-{uuid.uuid4().hex[:8]}", private=private)

    def public_jwk(self) -> dict[str, Any]:
        algo = RSAAlgorithm if self.alg == "RS256" else ECAlgorithm
        jwk: dict[str, Any] = json.loads(algo.to_jwk(self.private.public_key()))
        return jwk | {"kid": self.kid, "alg": self.alg, "use": "sig"}


@dataclass
class JwksServer:
    issuer: str = "https://idp.test/"
    audience: str | None = "widget-resolver"
    keys: list[SigningKey] = field(
        default_factory=lambda: [SigningKey.generate("RS256"), SigningKey.generate("ES256")]
    )
    down: bool = False
    requests: int = 0
    arrived: threading.Event = field(default_factory=threading.Event)
    _gate: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        server = self
        self._gate.set()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.requests += 1
                server.arrived.set()
                server._gate.wait(30)
                if server.down:
                    self.send_response(503)
                    self.end_headers()
                    return
                if self.path != JWKS_PATH:
                    self.send_response(404)
                    self.end_headers()
                    return
                body = json.dumps({"keys": [k.public_jwk() for k in server.keys]}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}{JWKS_PATH}"

    def start(self) -> JwksServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._gate.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> JwksServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def hold(self) -> None:
        """Requests wait (until `release`) before being answered."""
        self.arrived.clear()
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def key(self, alg: str) -> SigningKey:
        return next(k for k in self.keys if k.alg == alg)

    def rotate(self, alg: str = "RS256") -> SigningKey:
        """Replace the key of `alg` with a new one (the old kid disappears from the JWKS)."""
        new = SigningKey.generate(alg)
        self.keys = [k for k in self.keys if k.alg != alg] + [new]
        return new

    def mint(
        self,
        *,
        tenant: str = "acme",
        scope: str = "data:read",
        alg: str = "RS256",
        subject: str = "user-1",
        ttl_s: int = 300,
        key: SigningKey | None = None,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        signer = key or self.key(alg)
        now = int(time.time())
        payload: dict[str, Any] = {
            "sub": subject,
            "tenant": tenant,
            "scope": scope,
            "iss": self.issuer,
            "iat": now,
            "exp": now + ttl_s,
        }
        if self.audience:
            payload["aud"] = self.audience
        payload |= claims
        return jwt.encode(
            payload,
            signer.private,
            algorithm=signer.alg,
            headers={"kid": signer.kid, **(headers or {})},
        )
