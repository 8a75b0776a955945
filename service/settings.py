"""All configuration, from the environment (or a .env file). With none set, the service
runs on embedded defaults: embedded PostgreSQL, an in-process cache, the embedded DuckDB
warehouse, and no LLM (question widgets then degrade loudly as bedrock_unconfigured)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"  # the address `resolver serve` listens on (0.0.0.0: every interface)
    port: int = Field(default=8000, alias="PORT")  # the port `resolver serve` listens on
    log_level: str = (
        "INFO"  # DEBUG, INFO, WARNING or ERROR (DEBUG adds the embedded PostgreSQL's own output)
    )

    config_dir: Path = (
        REPO_ROOT / "config"
    )  # metrics.yaml, metric_routing.yaml, widgets.yaml, access_policy.yaml
    data_dir: Path = REPO_ROOT / ".data"  # the embedded PostgreSQL's data (data_dir/pg)

    # PostgreSQL: DATABASE_URL, or an embedded server under data_dir/pg
    database_url: str | None = None  # postgresql://... (unset: the embedded server)
    pg_statement_timeout_ms: int = 3000  # PostgreSQL statement_timeout of every query
    pg_connect_timeout_s: float = 2.0  # giving up on a new PostgreSQL connection after this
    pg_pool_max: int = 10  # PostgreSQL connections per process, at most
    auto_migrate: bool = True  # apply schema migrations at boot
    # Seeding at boot (issue 18): None (the default) seeds the embedded database only, never
    # a DATABASE_URL one; true seeds any. A boot seed upserts the catalog from metrics.yaml
    # and tops up the demo history, but inserts the demo widgets only into a database never
    # seeded before (a deleted widget stays deleted). `resolver seed` seeds on request.
    seed_demo: bool | None = None

    # Cache: REDIS_URL, or in-process
    redis_url: str | None = None  # redis://... (unset: an in-process cache and leases)
    cache_prefix: str = "wdr:"  # prefix of every Redis key (cache entries, leases, rate limits)
    cache_socket_timeout_s: float = (
        0.1  # a Redis call slower than this is a miss (and trips the breaker); leases: >= 0.25
    )
    # near copies of answers in each process, dropped when Redis says the key changed
    # (client-side caching, CLIENT TRACKING BCAST: adapters/near_cache.py); REDIS_URL only
    cache_near: bool = True
    cache_near_max_age_s: float = Field(default=5.0, gt=0, le=3600)  # a copy's longest life
    cache_near_max_mb: int = Field(default=64, ge=1)  # the copies' bytes, at most (LRU)

    # Warehouse: DATABRICKS_* or embedded DuckDB
    databricks_host: str | None = None  # the workspace host (with HTTP_PATH and TOKEN: Databricks)
    databricks_http_path: str | None = None  # the SQL warehouse's HTTP path
    databricks_token: str | None = None  # a personal access token or service principal token
    databricks_query_timeout_s: float = 30.0  # a warehouse statement is cancelled after this
    duckdb_statement_timeout_s: float = 10.0  # the embedded DuckDB warehouse's statement deadline

    # LLM: Bedrock via langchain-aws (credentials come the standard AWS way)
    bedrock_model_id: str | None = None  # the model for free-text questions (unset: no LLM)
    aws_region: str = "us-east-1"  # the Bedrock region
    bedrock_endpoint_url: str | None = (
        None  # another Bedrock runtime endpoint (a VPC endpoint, a local fake)
    )
    bedrock_timeout_s: float = 20.0  # one model call, at most

    # LLM guardrails and prompt caching (issue 12): BEDROCK_GUARDRAIL_ID (+ version) guards
    # the question (the last turn); an intervention degrades as llm_refused. The prompt's
    # static part (role, rules, schema) is a cache point where the model supports it
    # (None = decide by model: Anthropic Claude and Amazon Nova). An application inference
    # profile ARN as BEDROCK_MODEL_ID needs its base model in BEDROCK_BASE_MODEL_ID.
    bedrock_guardrail_id: str | None = None  # a Bedrock guardrail checking each question
    bedrock_guardrail_version: str = "DRAFT"  # DRAFT or a version number of BEDROCK_GUARDRAIL_ID
    bedrock_prompt_cache: bool | None = (
        None  # cache the prompt's static part (unset: decide by model)
    )
    bedrock_base_model_id: str | None = (
        None  # the base model of an application inference profile ARN
    )

    # Safety and limits
    max_body_bytes: int = 1_048_576  # a bigger request body is refused (413)
    # Per-tenant widget limits (issue 18): what one tenant can make every instance hold.
    widget_max_per_tenant: int = Field(default=500, ge=1)  # widgets a tenant holds; more: 409
    widget_spec_max_bytes: int = Field(default=256 * 1024, ge=1024)  # a spec's JSON; over: 413
    widget_mock_data_max_bytes: int = Field(default=128 * 1024, ge=256)  # mock_data JSON; over: 422
    max_rows: int = 10_000  # the most rows any query may return (the safety check enforces a LIMIT)
    default_row_limit: int = 1000  # the LIMIT of a query whose intent sets none

    # Issue 9: client-side deadlines on every outside call (seconds). A deadline that fires
    # answers *_timeout / *_unavailable at once and cancels the statement in the background.
    pg_deadline_s: float = 4.0  # one gateway query or registry read/write, end to end
    pg_keepalives_idle_s: int = 5  # TCP keepalives on every PostgreSQL connection
    registry_ping_interval_s: float = 5.0  # the listener checks its link this often...
    registry_ping_timeout_s: float = 2.0  # ...and drops it when a check takes longer
    registry_backoff_max_s: float = 2.0  # reconnect attempts at least this often
    generation_log_deadline_s: float = 1.0  # writing a sql_generation_log row, or reading a verified answer, at most (else dropped, logged)
    readyz_probe_timeout_s: float = 1.5  # each /readyz probe (they run concurrently)
    http_header_timeout_s: float = 10.0  # a request's headers must arrive within this...
    http_body_timeout_s: float = 30.0  # ...and its body within this: else a 408 problem
    # Issue 18: a request's head (request line + headers) is bounded before anything reads
    # it (authentication included): over either limit the server answers a 431 problem and
    # closes the connection (service/http_server.py).
    http_max_header_bytes: int = Field(default=32_768, ge=4096)  # request line + headers: 431
    http_max_headers: int = Field(default=100, ge=16)  # header fields per request: 431

    # Identity, tenants and row-level security (issue 10). With none of AUTH_JWT_SECRET,
    # AUTH_JWKS_URL or AUTH_REQUIRED set the service is in dev mode: requests without
    # credentials run as the dev principal (tenant `default`, every scope, no row filters),
    # from loopback clients only unless AUTH_DEV_OPEN=true. Presented credentials (a bearer
    # token, an X-API-Key) are always verified.
    auth_jwt_secret: SecretStr | None = None  # HS256
    auth_jwks_url: str | None = None  # RS256 / ES256, keys cached and refreshed
    auth_issuer: str | None = None  # checked when set
    auth_audience: str | None = None  # checked when set
    auth_leeway_s: float = Field(default=5.0, ge=0, le=300)  # clock skew tolerance
    auth_tenant_claim: str = "tenant"  # the JWT claim naming the tenant
    auth_jwks_refresh_s: float = Field(default=300.0, gt=0)  # refetch the JWKS this often
    # JWKS outage with no cached keys (issue 18): one fetch in flight, shared by every
    # request; after a failure, requests get a 503 without a fetch for a doubling backoff
    auth_jwks_wait_s: float = Field(default=2.0, gt=0)  # a request waits for keys this long
    auth_jwks_backoff_s: float = Field(default=1.0, gt=0)  # no fetch this long after a failure
    auth_jwks_backoff_max_s: float = Field(default=30.0, gt=0)  # the doubling backoff's cap
    auth_required: bool = False  # API keys only, no dev principal
    auth_dev_open: bool = False  # dev mode accepts credential-less requests from ANY client
    access_policy_file: Path | None = None  # default: config_dir / access_policy.yaml
    # The access policy is required: a missing, empty or malformed one stops the boot. Only
    # ROW_FILTERS_DISABLED=true starts without it (no row filters: every principal reads
    # every row); /readyz then says so.
    row_filters_disabled: bool = False
    llm_rate_limit: str = "30/minute"  # LLM generations per tenant (`limits` notation)
    refresh_min_interval_s: float = Field(default=5.0, ge=0)  # forced-refresh debounce

    @field_validator(
        "auth_jwt_secret", "auth_jwks_url", "auth_issuer", "auth_audience", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @model_validator(mode="after")
    def _auth_consistent(self) -> Settings:
        if self.auth_jwt_secret is not None and len(self.auth_jwt_secret.get_secret_value()) < 32:
            raise ValueError(
                "AUTH_JWT_SECRET must be at least 32 characters (HS256 needs 256 bits)"
            )
        if self.auth_dev_open and self.auth_enabled:
            raise ValueError(
                "AUTH_DEV_OPEN opens dev mode to every client: it cannot be combined with "
                "AUTH_JWT_SECRET, AUTH_JWKS_URL or AUTH_REQUIRED"
            )
        if self.row_filters_disabled and self.access_policy_file is not None:
            raise ValueError(
                "ROW_FILTERS_DISABLED=true runs with no row filters: it cannot be combined with "
                "ACCESS_POLICY_FILE (unset one of them)"
            )
        from limits import parse

        try:
            parse(self.llm_rate_limit)
        except ValueError as exc:
            raise ValueError(f"LLM_RATE_LIMIT {self.llm_rate_limit!r}: {exc}") from None
        return self

    @property
    def seed_at_boot(self) -> bool:
        """SEED_DEMO, or when unset: seed the embedded database (no DATABASE_URL) only."""
        return self.seed_demo if self.seed_demo is not None else self.database_url is None

    @property
    def auth_enabled(self) -> bool:
        return bool(self.auth_jwt_secret or self.auth_jwks_url or self.auth_required)

    @property
    def auth_mode(self) -> str:
        """`jwt` / `api_key` (credentials required), `dev` (loopback), `dev-open`."""
        if self.auth_jwt_secret or self.auth_jwks_url:
            return "jwt"
        if self.auth_required:
            return "api_key"
        return "dev-open" if self.auth_dev_open else "dev"

    @property
    def access_policy_path(self) -> Path:
        return self.access_policy_file or self.config_dir / "access_policy.yaml"

    # Freshness at scale (issue 11): leases per cache key (Redis when REDIS_URL is set, else
    # in-process), background refreshes, workers.
    lease_ttl_s: float | None = None  # None: the longest backend path (LLM + warehouse) + 10 s
    lease_heartbeat_s: float = Field(default=1.0, gt=0)  # a leader silent 3x this is taken over
    failure_backoff_s: float = Field(default=5.0, ge=0)  # retry a failing backend after this
    refresh_ahead: bool = True  # re-resolve recently read entries shortly before they expire
    refresh_concurrency: int = Field(default=4, ge=1)  # background refreshes at once, per process
    refresh_ahead_max_keys: int = Field(default=1000, ge=1)  # keys kept warm, per process
    # take the steps of a cache answer with the graph's own nodes, without the Pregel loop
    # (graph/runner.py: same answer, ~20x cheaper); false hands every run to the compiled
    # graph right after cache_lookup
    fast_lane: bool = True

    # Rollups (issue 21, README "Rollups"): config/rollups.yaml's rollups built by the
    # warehouse into PostgreSQL (one statement per partition, once per fleet) and answering
    # the intents they can answer exactly. Off: every warehouse intent takes today's path.
    rollups_enabled: bool = False
    # every instance checks this often for missing partitions and update-window partitions
    # older than their rollup's max_age_seconds (builds are leased: one instance runs each)
    rollup_check_interval_s: float = Field(default=60.0, gt=0)
    rollup_max_rows: int = Field(default=200_000, ge=1)  # rows of one partition's statement
    # Refresh when the data changes (issue 21): every DATA_VERSION_INTERVAL_S each source's
    # data version is probed once across the fleet (Delta `DESCRIBE HISTORY`, the
    # kpi_metrics_history trigger's counter); an answer stays fresh while its versions hold
    # and is refreshed (and open dashboards told) when they move. A version not confirmed
    # for DATA_VERSION_VALID_S (default five intervals) falls back to the TTL.
    change_refresh: bool = False
    data_version_interval_s: float = Field(default=3.0, gt=0)  # probe each source this often
    data_version_valid_s: float | None = Field(default=None, gt=0)  # unset: 5 intervals
    change_refresh_concurrency: int = Field(default=8, ge=1)  # refreshes after a change, at once
    # How the connector reaches Databricks: thrift (its default backend), kernel (use_kernel,
    # the supported Statement Execution path; needs the [kernel] extra) or sea (the
    # deprecated use_sea client, only where asked for: the local Statement Execution fake).
    databricks_transport: Literal["thrift", "kernel", "sea"] = "thrift"

    @field_validator("databricks_transport")
    @classmethod
    def _transport_installed(cls, v: str) -> str:
        import importlib.util

        if v == "kernel" and importlib.util.find_spec("databricks_sql_kernel") is None:
            raise ValueError(
                "DATABRICKS_TRANSPORT=kernel needs the connector's kernel extension: "
                "pip install 'databricks-sql-connector[kernel]'"
            )
        return v

    @property
    def effective_data_version_valid_s(self) -> float:
        return self.data_version_valid_s or 5 * self.data_version_interval_s

    @property
    def effective_lease_ttl_s(self) -> float:
        """Longer than any backend path: a live leader never loses its lease mid-query."""
        if self.lease_ttl_s is not None:
            return max(self.lease_ttl_s, 3 * self.lease_heartbeat_s + 0.1)
        longest = max(
            self.pg_statement_timeout_ms / 1000,
            self.bedrock_timeout_s + self.databricks_query_timeout_s,
            self.duckdb_statement_timeout_s,
        )
        return longest + 10.0

    # Observability (issue 13). Traces use the standard OTEL_* variables (on when
    # OTEL_EXPORTER_OTLP_ENDPOINT is set), LangSmith its LANGSMITH_* ones; multiprocess
    # metrics PROMETHEUS_MULTIPROC_DIR (set by `resolver serve` itself when WORKERS > 1).
    metrics_enabled: bool = True  # METRICS_ENABLED: Prometheus families and GET /metrics
    log_format: Literal["text", "json"] = "text"  # LOG_FORMAT=json: one JSON object per line
    otel_record_sql: bool = False  # OTEL_RECORD_SQL: SQL text on spans (else only its hash)
    workers: int = Field(default=1, ge=1, le=64)  # WORKERS: uvicorn worker processes

    @model_validator(mode="after")
    def _bedrock_options(self) -> Settings:
        model = self.bedrock_model_id or ""
        if "application-inference-profile" in model and not self.bedrock_base_model_id:
            raise ValueError(
                "BEDROCK_BASE_MODEL_ID is required when BEDROCK_MODEL_ID is an application "
                "inference profile ARN (the base model decides tool use and prompt caching)"
            )
        if not re.fullmatch(r"DRAFT|[0-9]{1,8}", self.bedrock_guardrail_version):
            raise ValueError("BEDROCK_GUARDRAIL_VERSION must be DRAFT or a version number")
        if self.bedrock_guardrail_id is not None and not self.bedrock_guardrail_id.strip():
            raise ValueError("BEDROCK_GUARDRAIL_ID must not be blank")
        return self

    @property
    def databricks_configured(self) -> bool:
        return bool(self.databricks_host and self.databricks_http_path and self.databricks_token)
