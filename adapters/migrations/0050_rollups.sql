-- 0050_rollups: what every instance knows about the rollups (README "Rollups").
-- Each rollup's rows live in its own typed table `rollup_<name>`, created by the builder
-- from its first partition's columns (adapters/rollups.py) and dropped when the rollup's
-- definition changes (its signature).

CREATE TABLE IF NOT EXISTS rollups (
    name             text PRIMARY KEY,
    signature        text NOT NULL,        -- changes whenever the rows' meaning changes
    data_start       timestamptz,          -- the table's first time value (where `all` starts)
    data_start_known boolean NOT NULL DEFAULT false,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- One row per built partition: when it was built and from which data version of the
-- warehouse table (NULL when the source has none, e.g. a build the clock asked for).
CREATE TABLE IF NOT EXISTS rollup_partitions (
    rollup          text NOT NULL REFERENCES rollups (name) ON DELETE CASCADE,
    partition_start timestamptz NOT NULL,
    partition_end   timestamptz NOT NULL,
    built_at        timestamptz NOT NULL,
    data_version    text,
    row_count       integer NOT NULL,
    build_ms        double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (rollup, partition_start)
);
