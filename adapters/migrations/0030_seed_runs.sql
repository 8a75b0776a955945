-- 0030_seed_runs (issue 18): every seed of this database, so that a boot seed (SEED_DEMO)
-- inserts the demo widgets only into a database never seeded before: a widget somebody
-- deleted stays deleted across restarts. `resolver seed` (trigger 'command') always may.
CREATE TABLE IF NOT EXISTS seed_runs (
    id               bigserial PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT now(),
    trigger          text NOT NULL,      -- command | boot | before-0030
    widgets_inserted integer NOT NULL DEFAULT 0,
    history_rows     bigint NOT NULL DEFAULT 0
);

-- A database already in use (it holds widgets, or has written any) counts as seeded.
INSERT INTO seed_runs (trigger)
SELECT 'before-0030'
WHERE EXISTS (SELECT 1 FROM widgets) OR EXISTS (SELECT 1 FROM audit_log);
