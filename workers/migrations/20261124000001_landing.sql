-- Landing store of one pipeline. `__SCHEMA__` and `__TABLE__` are replaced
-- with the pipeline's configured schema and table (identifiers validated as
-- [a-z_][a-z0-9_]{0,62}) before this runs; see workers/src/io/postgres.rs.

CREATE SCHEMA IF NOT EXISTS __SCHEMA__;

-- Raw trips, one row per source record. `id` is the landing order: rows are
-- inserted under a transaction-level advisory lock, so ids become visible in
-- increasing order and the relay can read the table as an outbox by id.
CREATE TABLE IF NOT EXISTS __SCHEMA__.__TABLE__ (
    id                    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source                TEXT NOT NULL,
    source_row            BIGINT NOT NULL,
    dataset               TEXT NOT NULL,
    vendor_id             INTEGER,
    pickup                TIMESTAMP NOT NULL,
    dropoff               TIMESTAMP NOT NULL,
    passenger_count       INTEGER,
    trip_distance         DOUBLE PRECISION NOT NULL,
    ratecode_id           INTEGER,
    store_and_fwd         BOOLEAN,
    pu_location_id        INTEGER NOT NULL,
    do_location_id        INTEGER NOT NULL,
    payment_type          INTEGER,
    fare_amount           DOUBLE PRECISION NOT NULL,
    extra                 DOUBLE PRECISION NOT NULL,
    mta_tax               DOUBLE PRECISION NOT NULL,
    tip_amount            DOUBLE PRECISION NOT NULL,
    tolls_amount          DOUBLE PRECISION NOT NULL,
    improvement_surcharge DOUBLE PRECISION NOT NULL,
    total_amount          DOUBLE PRECISION NOT NULL,
    congestion_surcharge  DOUBLE PRECISION,
    airport_fee           DOUBLE PRECISION,
    cbd_congestion_fee    DOUBLE PRECISION,
    ehail_fee             DOUBLE PRECISION,
    trip_type             INTEGER,
    refund                BOOLEAN NOT NULL,
    landed_at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- The source identity: landing the same file twice inserts nothing.
    CONSTRAINT __TABLE___source_identity UNIQUE (source, source_row)
);

-- Records the validator rejected, with their reason: nothing is dropped silently.
CREATE TABLE IF NOT EXISTS __SCHEMA__.__TABLE___dead_letters (
    source     TEXT NOT NULL,
    source_row BIGINT NOT NULL,
    reason     TEXT NOT NULL,
    detail     TEXT NOT NULL,
    landed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (source, source_row)
);

-- How far each source has been landed; an interrupted ingest resumes here.
CREATE TABLE IF NOT EXISTS __SCHEMA__.__TABLE___ingest_progress (
    source     TEXT PRIMARY KEY,
    next_row   BIGINT NOT NULL,
    completed  BOOLEAN NOT NULL DEFAULT false,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The outbox relay's read position, updated in the transaction that read the rows.
CREATE TABLE IF NOT EXISTS __SCHEMA__.__TABLE___relay_progress (
    relay      TEXT PRIMARY KEY,
    last_id    BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
