-- 0011_tenants (issue 10): every widget belongs to a tenant (ids are unique per tenant),
-- the SQL generation log says whose request it was, and every widget write is audited.
ALTER TABLE widgets ADD COLUMN IF NOT EXISTS tenant text NOT NULL DEFAULT 'default';
ALTER TABLE widgets DROP CONSTRAINT IF EXISTS widgets_pkey;
ALTER TABLE widgets ADD PRIMARY KEY (tenant, id);

ALTER TABLE sql_generation_log ADD COLUMN IF NOT EXISTS tenant text NOT NULL DEFAULT 'default';

CREATE TABLE IF NOT EXISTS audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    tenant      text NOT NULL,
    subject     text NOT NULL,
    action      text NOT NULL,          -- widget.create | widget.replace | widget.delete
    widget_id   text NOT NULL,
    before_hash text,                   -- sha256 of the spec before (NULL: none)
    after_hash  text                    -- sha256 of the spec after (NULL: deleted)
);
CREATE INDEX IF NOT EXISTS audit_log_tenant_idx ON audit_log (tenant, id DESC);
