"""`resolver`: the service's command line.

resolver serve            run the HTTP service (PORT, default 8000; --workers N processes)
resolver migrate          apply schema migrations to DATABASE_URL (or the embedded server)
resolver seed             load the demo catalog, widgets and metric history (on request only:
                          a plain boot never seeds a DATABASE_URL database, see SEED_DEMO)
resolver check-sql ...    run the SQL safety layer over SQL on stdin or a JSONL file
resolver openapi [PATH]   write the OpenAPI document (default docs/api/openapi.yaml)
resolver graph [PATH]     write the mermaid drawing of the compiled graph
resolver settings-doc [PATH]  write the settings reference (default docs/settings.md)
resolver token --tenant T --scope "data:read ..." [--claim regions=west,midwest] [--ttl 1h]
                          mint an HS256 token with AUTH_JWT_SECRET (to try the secured service)
resolver api-key create --tenant T --scope data:read [--scope ...] [--claim k=v,...]
                          store a new API key (hashed) and print it once
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from pydantic import ValidationError

from domain.config import first_error
from service.settings import REPO_ROOT, Settings


def _policy_refusal(settings: Settings) -> str | None:
    """Why the access policy stops the boot (said before any server starts, without a
    traceback); None when it loads or ROW_FILTERS_DISABLED=true. The service checks it
    again, against the catalog, when it opens its resources."""
    from domain.access import PolicyError, load_policy

    if settings.row_filters_disabled:
        return None
    try:
        load_policy(settings.access_policy_path)
    except PolicyError as exc:
        return str(exc)
    return None


def _serve(settings: Settings, workers: int | None = None) -> int:
    import uvicorn

    refusal = _policy_refusal(settings)
    if refusal is not None:
        print(f"resolver serve: refusing to start: {refusal}", file=sys.stderr)
        return 2
    workers = workers or settings.workers
    if workers > 1:
        import os
        import tempfile

        # N processes on one port: they must share the cache and the per-key leases, or
        # each would run its own backend queries and keep its own answers
        if not settings.redis_url:
            print(
                "resolver serve --workers N needs REDIS_URL: the workers share the result "
                "cache and the per-key leases through Redis",
                file=sys.stderr,
            )
            return 2
        if not settings.database_url:  # one embedded server, started here, for all workers
            from adapters.embedded_pg import start_embedded_postgres

            os.environ["DATABASE_URL"] = start_embedded_postgres(settings.data_dir / "pg")
        # prometheus-client's multiprocess mode, so any worker answering GET /metrics
        # reports the sum of all of them
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="wdr-metrics-")
        # PostgreSQL started (embedded), migrated and seeded once, here, before the workers:
        # they only attach, so they never race on CREATE DATABASE or a migration
        try:
            url = asyncio.run(_prepare_database(settings))
        except ValueError as exc:  # the seed's config files: named entries
            print(f"refusing to start: {exc}", file=sys.stderr)
            return 2
        os.environ |= {
            "DATABASE_URL": url,
            "AUTO_MIGRATE": "false",
            "SEED_DEMO": "false",
        }
        uvicorn.run(
            "service.app:create_worker_app",
            factory=True,
            workers=workers,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level.lower(),
            access_log=False,
            # header read timeout and head size limits (from the environment)
            http="service.http_server:BoundedHttpToolsProtocol",
        )
        return 0

    from service.app import create_app
    from service.http_server import protocol_with

    uvicorn.run(
        create_app(settings),
        # header read timeout and head size limits (431 before the app sees the request)
        http=protocol_with(
            settings.http_header_timeout_s,
            max_header_bytes=settings.http_max_header_bytes,
            max_headers=settings.http_max_headers,
        ),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        # uvicorn's own loggers go through ours (service.cli.main configured them):
        # redacted, control characters escaped, in both formats
        log_config=None,
    )
    return 0


async def _prepare_database(settings: Settings) -> str:
    """DATABASE_URL (or the embedded server's, which stays up while this process lives),
    migrated and seeded as the settings say."""
    from adapters.pg_migrate import migrate
    from adapters.pg_seed import seed
    from service.wiring import database_url

    url = await database_url(settings)
    if settings.auto_migrate:
        await migrate(url)
    if settings.seed_at_boot:
        await seed(url, settings.config_dir, trigger="boot")
    return url


def _migrate(settings: Settings, *, seed_too: bool) -> int:
    from adapters.pg_migrate import migrate
    from adapters.pg_seed import seed
    from service.wiring import database_url

    async def run() -> None:
        url = await database_url(settings)
        applied = await migrate(url)
        print(f"migrations applied: {applied or 'none (up to date)'}")
        if seed_too:
            report = await seed(url, settings.config_dir, trigger="command")
            print(f"seeded: {report}")

    asyncio.run(run())
    return 0


def write_openapi(path: Path) -> None:
    import yaml

    from service.app import create_app

    doc = create_app(Settings()).openapi()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def graph_mermaid() -> str:
    from graph.builder import build_graph

    return build_graph().compile().get_graph().draw_mermaid()


def parse_ttl(text: str) -> float:
    """`90`, `90s`, `15m`, `1h`, `2d` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    try:
        value = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad duration {text!r} (e.g. 900, 15m, 1h, 2d)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("the duration must be positive")
    return value


def parse_claims(items: list[str]) -> dict[str, list[str]]:
    """`regions=west,midwest` -> {"regions": ["west", "midwest"]} (always a list)."""
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"--claim {item!r}: expected NAME=VALUE[,VALUE...]")
        out.setdefault(name.strip(), []).extend(v for v in values.split(",") if v)
    return out


def _scopes(raw: list[str]) -> list[str]:
    from domain.identity import ALL_SCOPES

    scopes = sorted({s for item in raw for s in item.replace(",", " ").split()})
    unknown = [s for s in scopes if s not in ALL_SCOPES]
    if unknown:
        raise SystemExit(f"unknown scope(s) {unknown}; known: {sorted(ALL_SCOPES)}")
    return scopes


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.identity import mint_token

    if settings.auth_jwt_secret is None:
        print("AUTH_JWT_SECRET is not set: there is no secret to sign with", file=sys.stderr)
        return 2
    print(
        mint_token(
            settings.auth_jwt_secret.get_secret_value(),
            tenant=args.tenant,
            scopes=_scopes(args.scope),
            subject=args.subject,
            claims=parse_claims(args.claim),
            ttl_s=args.ttl,
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
            tenant_claim=settings.auth_tenant_claim,
        )
    )
    return 0


def _api_key_create(settings: Settings, args: argparse.Namespace) -> int:
    from psycopg_pool import AsyncConnectionPool

    from adapters.identity import ApiKeyStore
    from adapters.pg_migrate import migrate
    from service.wiring import database_url

    async def run() -> str:
        url = await database_url(settings)
        await migrate(url)
        pool = AsyncConnectionPool(
            url, min_size=1, max_size=1, open=False, kwargs={"autocommit": True}
        )
        await pool.open()
        try:
            return await ApiKeyStore(pool).create(
                tenant=args.tenant,
                scopes=_scopes(args.scope),
                subject=args.subject,
                claims=parse_claims(args.claim),
            )
        finally:
            await pool.close()

    try:
        key = asyncio.run(run())
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(key)
    print("(shown once: only its hash is stored)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "check-sql":
        from sqlsafety.cli import check_sql_main

        return check_sql_main(argv[1:])
    parser = argparse.ArgumentParser(
        prog="resolver", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_serve = sub.add_parser(
        "serve",
        help="run the HTTP service",
        description="Run the HTTP service on HOST:PORT (environment variables; default "
        "127.0.0.1:8000, e.g. `PORT=8001 HOST=0.0.0.0 resolver serve`). Every setting is "
        "read from the environment or a .env file: docs/settings.md lists them all.",
    )
    p_serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes sharing Redis (default WORKERS, 1); needs REDIS_URL when > 1",
    )
    sub.add_parser("migrate", help="apply schema migrations")
    sub.add_parser(
        "seed",
        help="migrate, then load the demo catalog, widgets (missing ones, audited) and history",
    )
    sub.add_parser("check-sql", help="run the SQL safety layer (see resolver check-sql --help)")
    p_oa = sub.add_parser("openapi", help="write the OpenAPI document")
    p_oa.add_argument("path", nargs="?", default=str(REPO_ROOT / "docs/api/openapi.yaml"))
    p_gr = sub.add_parser("graph", help="write the mermaid drawing of the graph")
    p_gr.add_argument("path", nargs="?", default=str(REPO_ROOT / "docs/graph.md"))
    p_sd = sub.add_parser("settings-doc", help="write the settings reference from Settings")
    p_sd.add_argument("path", nargs="?", default=str(REPO_ROOT / "docs/settings.md"))
    p_tok = sub.add_parser("token", help="mint an HS256 token with AUTH_JWT_SECRET")
    p_tok.add_argument("--tenant", required=True)
    p_tok.add_argument("--scope", action="append", default=[], help='"data:read widgets:read"')
    p_tok.add_argument("--claim", action="append", default=[], help="NAME=VALUE[,VALUE...]")
    p_tok.add_argument("--ttl", type=parse_ttl, default=3600.0, help="e.g. 15m, 1h (default 1h)")
    p_tok.add_argument("--subject", default="cli-user")
    p_key = sub.add_parser("api-key", help="manage API keys")
    key_sub = p_key.add_subparsers(dest="key_cmd", required=True)
    p_kc = key_sub.add_parser("create", help="store a new API key and print it once")
    p_kc.add_argument("--tenant", required=True)
    p_kc.add_argument("--scope", action="append", default=[], required=True)
    p_kc.add_argument("--claim", action="append", default=[], help="NAME=VALUE[,VALUE...]")
    p_kc.add_argument("--subject", default=None)
    args = parser.parse_args(argv)
    if args.cmd == "settings-doc":  # needs no valid configuration
        from service.settings_doc import settings_markdown

        Path(args.path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.path).write_text(settings_markdown())
        print(f"wrote {args.path}")
        return 0
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"resolver: invalid settings: {first_error(exc)}", file=sys.stderr)
        return 2
    from observability.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    if args.cmd == "serve":
        return _serve(settings, args.workers)
    if args.cmd == "token":
        return _token(settings, args)
    if args.cmd == "api-key":
        return _api_key_create(settings, args)
    if args.cmd in ("migrate", "seed"):
        return _migrate(settings, seed_too=args.cmd == "seed")
    if args.cmd == "openapi":
        write_openapi(Path(args.path))
        print(f"wrote {args.path}")
        return 0
    if args.cmd == "graph":
        Path(args.path).parent.mkdir(parents=True, exist_ok=True)
        Path(args.path).write_text(
            "# The resolution graph\n\nGenerated by `make graph` from the compiled graph.\n\n```mermaid\n"
            + graph_mermaid()
            + "```\n"
        )
        print(f"wrote {args.path}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
