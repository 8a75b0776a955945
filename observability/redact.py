"""The one redaction of credentials in URLs and in text, used wherever a URL or an outside
error's text is shown: `/readyz`, the boot log, warnings, every log line (the formatters in
observability/logs.py apply `redact_text` to each message).

A URL keeps its scheme, host, port and path; its userinfo (`user:password@`) becomes
`***@`, and every query parameter's value becomes `***` except a few known harmless ones
(`sslmode`, `db`...), so `redis://h:6379/0?password=x`, `postgresql://u:p@h/db` and
`https://h/jwks?token=x` all lose their secret whatever the parameter is called.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

MASK = "***"
# query parameters whose values are never secrets (kept so a URL stays recognisable)
SAFE_QUERY_KEYS = frozenset(
    {
        "db",
        "sslmode",
        "ssl",
        "ssl_cert_reqs",
        "connect_timeout",
        "application_name",
        "protocol",
        "socket_timeout",
        "decode_responses",
        "health_check_interval",
        "target_session_attrs",
        "options",
    }
)
# a URL with a scheme, up to whitespace or a quote (what a log line or an error text holds)
_URL_RE = re.compile(r"""\b[A-Za-z][A-Za-z0-9+.-]{1,31}://[^\s'"<>]+""")
# `password=...` / `token: ...` outside a URL (a libpq conninfo, an exception's text)
_KEYVALUE_RE = re.compile(
    r"""(?i)\b(password|passwd|pwd|secret|token|access_token|api_key|apikey|authorization)"""
    r"""(\s*[=:]\s*)((?:bearer\s+|basic\s+)?(?:'[^']*'|"[^"]*"|[^\s,;&'"]+))"""
)


def redact_url(url: str) -> str:
    """`url` without credentials (userinfo and query values); a string that does not parse
    as a URL is masked whole (it might be one with a typo, secret included)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        hostport = netloc.rsplit("@", 1)[1]
        netloc = f"{MASK}@{hostport}" if host is not None or port is not None else MASK
    query = parts.query
    if query:
        query = "&".join(
            f"{k}={v if k.lower() in SAFE_QUERY_KEYS else MASK}"
            for k, v in parse_qsl(query, keep_blank_values=True)
        )
    fragment = MASK if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def redact_text(text: str) -> str:
    """`text` with every URL in it redacted and `password=...`-like pairs masked."""
    if "://" in text:
        text = _URL_RE.sub(lambda m: redact_url(m.group(0)), text)
    return _KEYVALUE_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)


def loggable_error(exc: BaseException) -> str:
    """What a log line says about an outside failure: its type and degrade kind, never its
    text (a warehouse's error message quotes the statement's literals and the rows' values:
    those stay out of logs; the caller still gets the detail in its own answer)."""
    kind = getattr(exc, "kind", None)
    kind_name = getattr(kind, "value", kind)
    return f"{type(exc).__name__}(kind={kind_name})" if kind_name else type(exc).__name__
