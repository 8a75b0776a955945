-- 0040: refresh when the data changes (PostgreSQL metrics). Every statement that changes
-- kpi_metrics_history bumps, once per metric it touched, that metric's version in
-- kpi_metric_versions and sends NOTIFY kpi_metrics_changed '{"metric", "version"}' (at
-- commit), so every instance invalidates and refreshes the answers over that metric at
-- once; the version table is what the periodic probe reads (adapters/data_versions.py).
CREATE TABLE IF NOT EXISTS kpi_metric_versions (
    metric_name text PRIMARY KEY,
    version     bigint NOT NULL DEFAULT 0,
    changed_at  timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION kpi_metric_bump(m text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
BEGIN
    INSERT INTO kpi_metric_versions AS kv (metric_name, version, changed_at)
    VALUES (m, 1, now())
    ON CONFLICT (metric_name)
    DO UPDATE SET version = kv.version + 1, changed_at = now()
    RETURNING version INTO v;
    PERFORM pg_notify('kpi_metrics_changed', json_build_object('metric', m, 'version', v)::text);
END;
$$;

-- statement-level triggers with transition tables (one per event: an INSERT has no old
-- rows, a DELETE no new ones), so a bulk load is one change per metric, not one per row
CREATE OR REPLACE FUNCTION kpi_metrics_history_new_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM kpi_metric_bump(m) FROM (SELECT DISTINCT metric_name AS m FROM new_rows) t;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION kpi_metrics_history_old_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM kpi_metric_bump(m) FROM (SELECT DISTINCT metric_name AS m FROM old_rows) t;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION kpi_metrics_history_both_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM kpi_metric_bump(m) FROM (
        SELECT metric_name AS m FROM new_rows UNION SELECT metric_name FROM old_rows
    ) t;
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS kpi_metrics_history_versions_ins ON kpi_metrics_history;
CREATE TRIGGER kpi_metrics_history_versions_ins AFTER INSERT ON kpi_metrics_history
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION kpi_metrics_history_new_rows();

DROP TRIGGER IF EXISTS kpi_metrics_history_versions_del ON kpi_metrics_history;
CREATE TRIGGER kpi_metrics_history_versions_del AFTER DELETE ON kpi_metrics_history
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION kpi_metrics_history_old_rows();

DROP TRIGGER IF EXISTS kpi_metrics_history_versions_upd ON kpi_metrics_history;
CREATE TRIGGER kpi_metrics_history_versions_upd AFTER UPDATE ON kpi_metrics_history
    REFERENCING NEW TABLE AS new_rows OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION kpi_metrics_history_both_rows();
