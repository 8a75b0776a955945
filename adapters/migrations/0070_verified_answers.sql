-- Verified answers (issue 23): an owner's answer to a free-text question, as written, per
-- tenant: a data intent over a catalog metric (compiled at each run) or checked SQL (kept
-- unfiltered: each caller's row filters are applied at each run); who verified it and when.
-- A catalog change that breaks it sets needs_reverification (and why): it is not served
-- until verified again. Writes are audited in audit_log (answer.verify / answer.unverify).
CREATE TABLE IF NOT EXISTS verified_answers (
    tenant                text NOT NULL,
    question              text NOT NULL,
    widget_id             text NOT NULL,
    intent                jsonb,
    sql                   text,
    verified_by           text NOT NULL,
    verified_at           timestamptz NOT NULL DEFAULT now(),
    needs_reverification  boolean NOT NULL DEFAULT false,
    reverification_reason text,
    PRIMARY KEY (tenant, question),
    CHECK ((intent IS NULL) <> (sql IS NULL))
);
