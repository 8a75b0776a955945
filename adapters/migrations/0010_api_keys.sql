-- 0010_api_keys (issue 10): API keys for service callers, stored hashed. `resolver api-key
-- create` prints a key once; only the SHA-256 of its secret part is kept here.
CREATE TABLE IF NOT EXISTS api_keys (
    key_id     text PRIMARY KEY,
    key_hash   text NOT NULL,
    tenant     text NOT NULL,
    subject    text NOT NULL,
    scopes     text[] NOT NULL DEFAULT '{}',
    claims     jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
