"""Issue 18: one redaction of credentials (URLs in every form, `password=` pairs) and log
lines that a caller's or a warehouse's text cannot forge."""

from __future__ import annotations

import io
import json
import logging

import pytest

from domain.failures import FailureKind, WarehouseFailure
from observability.logs import TEXT_FORMAT, JsonFormatter, TextFormatter, escape_controls
from observability.redact import loggable_error, redact_text, redact_url

SECRET = "s3cr3t-VALUE"

URLS = {
    "redis password in the query": (f"redis://h:6379/0?password={SECRET}", "redis://h:6379/0"),
    "redis password in userinfo": (f"redis://:{SECRET}@h:6379/0", "redis://***@h:6379/0"),
    "redis user and password": (f"rediss://default:{SECRET}@h:6380/1", "rediss://***@h:6380/1"),
    "postgres userinfo": (f"postgresql://app:{SECRET}@db:5432/x", "postgresql://***@db:5432/x"),
    "postgres query password": (
        f"postgresql://db/x?sslmode=require&password={SECRET}",
        "postgresql://db/x?sslmode=require&password=***",
    ),
    "a token in a JWKS URL": (
        f"https://idp.example/jwks?access_token={SECRET}",
        "https://idp.example/jwks?access_token=***",
    ),
    "an unknown query key": (f"https://h/x?k={SECRET}", "https://h/x?k=***"),
    "userinfo and query": (
        f"http://u:{SECRET}@127.0.0.1:1/jwks?token={SECRET}",
        "http://***@127.0.0.1:1/jwks?token=***",
    ),
    "a fragment": (f"https://h/x#{SECRET}", "https://h/x#***"),
    "a username only": (f"redis://{SECRET}@h", "redis://***@h"),
    "an OTLP endpoint": (
        f"http://otel:4318/v1/traces?api-key={SECRET}",
        "http://otel:4318/v1/traces?api-key=***",
    ),
    "a port out of range": (f"redis://:{SECRET}@h:99999/0", "***"),
}


@pytest.mark.parametrize("case", list(URLS))
def test_credentials_in_any_url_form_are_redacted(case: str) -> None:
    url, expected = URLS[case]
    out = redact_url(url)
    assert SECRET not in out
    assert out.startswith(expected), out
    assert SECRET not in redact_text(f"connecting to {url} failed")


@pytest.mark.parametrize(
    "text",
    [
        f"password={SECRET}",
        f"host=db user=app password='{SECRET}' dbname=x",
        f"Authorization: Bearer {SECRET}",
        f'token: "{SECRET}"',
        f"api_key={SECRET}&x=1",
    ],
)
def test_credentials_outside_urls_are_redacted(text: str) -> None:
    assert SECRET not in redact_text(text)


def test_a_url_without_credentials_is_kept() -> None:
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_text("see https://example.com/a/b") == "see https://example.com/a/b"


def _text_line(msg: str, *args: object, exc: bool = False) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter(TEXT_FORMAT))
    logger = logging.getLogger("test.log_safety")
    logger.propagate = False
    logger.handlers = [handler]
    if exc:
        try:
            raise ValueError(f"boom\n{args[0]}")
        except ValueError:
            logger.exception(msg, *args)
    else:
        logger.warning(msg, *args)
    return stream.getvalue()


FORGED = "2026-01-01 00:00:00,000 INFO resolver: forged"


@pytest.mark.parametrize(
    "control", ["\n", "\r", "\r\n", "\x1b[2K\r", "\x85", "\u2028", "\u2029", "\x00", "\x0b", "\x0c"]
)
def test_a_text_log_line_cannot_be_forged(control: str) -> None:
    out = _text_line("widget %s failed", f"x{control}{FORGED}")
    assert out.count("\n") == 1 and out.endswith("\n")  # one record, one line
    assert FORGED in out and not out.splitlines()[0].startswith(FORGED)
    assert control not in out.rstrip("\n")


def test_a_traceback_is_marked_as_continuation_lines() -> None:
    out = _text_line("failed with %s", FORGED, exc=True)
    first, *rest = out.rstrip("\n").split("\n")
    assert "failed with" in first
    assert rest and all(line.startswith("  | ") for line in rest)


def test_a_text_log_line_is_redacted() -> None:
    out = _text_line("cache at %s is down", f"redis://h:6379/0?password={SECRET}")
    assert SECRET not in out and "password=***" in out


def test_a_json_log_line_is_redacted() -> None:
    record = logging.LogRecord(
        "x", logging.WARNING, __file__, 1, "url %s", (f"redis://:{SECRET}@h/0",), None
    )
    doc = json.loads(JsonFormatter().format(record))
    assert SECRET not in json.dumps(doc) and doc["msg"] == "url redis://***@h/0"


def test_escape_controls_keeps_printable_text() -> None:
    assert escape_controls("plain é ü 漢字 'quoted'") == "plain é ü 漢字 'quoted'"
    assert escape_controls("a\nb\tc\x1b") == "a\\nb\\tc\\x1b"


def test_a_warehouse_failure_is_logged_by_kind_only() -> None:
    exc = WarehouseFailure(
        f"Could not convert string 'west-{SECRET}'", kind=FailureKind.databricks_error
    )
    assert loggable_error(exc) == "WarehouseFailure(kind=databricks_error)"
    assert loggable_error(ValueError(SECRET)) == "ValueError"
