"""All configuration, from the environment (or a .env file). With none set, the service
runs on embedded defaults: embedded PostgreSQL, an in-process cache, the embedded DuckDB
warehouse, and no LLM (question widgets then degrade loudly as bedrock_unconfigured)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, alias="PORT")
    log_level: str = "INFO"

    config_dir: Path = REPO_ROOT / "config"
    data_dir: Path = REPO_ROOT / ".data"

    # PostgreSQL: DATABASE_URL, or an embedded server under data_dir/pg
    database_url: str | None = None
    pg_statement_timeout_ms: int = 3000
    pg_connect_timeout_s: float = 2.0
    pg_pool_max: int = 10
    auto_migrate: bool = True
    seed_demo: bool = True

    # Cache: REDIS_URL, or in-process
    redis_url: str | None = None
    cache_prefix: str = "wdr:"
    cache_socket_timeout_s: float = 0.1

    # Warehouse: DATABRICKS_* or embedded DuckDB
    databricks_host: str | None = None
    databricks_http_path: str | None = None
    databricks_token: str | None = None
    databricks_query_timeout_s: float = 30.0
    duckdb_statement_timeout_s: float = 10.0

    # LLM: Bedrock via langchain-aws (credentials come the standard AWS way)
    bedrock_model_id: str | None = None
    aws_region: str = "us-east-1"
    bedrock_endpoint_url: str | None = None
    bedrock_timeout_s: float = 20.0

    # Safety and limits
    max_body_bytes: int = 1_048_576
    max_rows: int = 10_000
    default_row_limit: int = 1000

    @property
    def databricks_configured(self) -> bool:
        return bool(self.databricks_host and self.databricks_http_path and self.databricks_token)
