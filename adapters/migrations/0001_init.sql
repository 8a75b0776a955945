-- 0001_init: catalog, KPI history, widgets, the SQL generation log, and change notification.
-- Applied once by adapters/pg_migrate.py inside a transaction holding the migration lock.

CREATE TABLE IF NOT EXISTS metrics_catalog (
    name              text PRIMARY KEY,
    description       text NOT NULL DEFAULT '',
    unit              text NOT NULL DEFAULT '',
    owner             text NOT NULL DEFAULT '',
    definition        jsonb NOT NULL,
    last_validated_at timestamptz,
    governance_status text NOT NULL DEFAULT 'validated',
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS kpi_metrics_history (
    id          bigserial PRIMARY KEY,
    metric_name text NOT NULL,
    recorded_at timestamptz NOT NULL,
    value       double precision,
    dimensions  jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX IF NOT EXISTS kpi_metrics_history_metric_time_idx
    ON kpi_metrics_history (metric_name, recorded_at);

CREATE TABLE IF NOT EXISTS widgets (
    id         text PRIMARY KEY,
    spec       jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS sql_generation_log (
    id             bigserial PRIMARY KEY,
    widget_id      text,
    metric_id      text,
    question       text,
    model_id       text,
    prompt_hash    text,
    generated_sql  text,
    safety_allowed boolean,
    safety_rule    text,
    latency_ms     double precision,
    input_tokens   integer,
    output_tokens  integer,
    failure_kind   text,
    generator      text,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS sql_generation_log_created_idx ON sql_generation_log (created_at);

-- Every change to a widget or a catalog entry is announced on channel `resolver_registry`
-- as '<table>:<id>' so each service instance reloads its in-process registry snapshot.
CREATE OR REPLACE FUNCTION resolver_registry_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    key text;
BEGIN
    IF TG_TABLE_NAME = 'widgets' THEN
        key := CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END;
    ELSE
        key := CASE WHEN TG_OP = 'DELETE' THEN OLD.name ELSE NEW.name END;
    END IF;
    PERFORM pg_notify('resolver_registry', TG_TABLE_NAME || ':' || key);
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS widgets_notify ON widgets;
CREATE TRIGGER widgets_notify
    AFTER INSERT OR UPDATE OR DELETE ON widgets
    FOR EACH ROW EXECUTE FUNCTION resolver_registry_notify();

DROP TRIGGER IF EXISTS metrics_catalog_notify ON metrics_catalog;
CREATE TRIGGER metrics_catalog_notify
    AFTER INSERT OR UPDATE OR DELETE ON metrics_catalog
    FOR EACH ROW EXECUTE FUNCTION resolver_registry_notify();
