-- A small key per source, so the landing table's indexes hold an 8-byte
-- integer instead of the source's name (a path or URL, often over 80
-- bytes). BIGINT: every landing upsert draws a value, used or not. Every landed row inserts one entry into each index, the pickup
-- index at a random place: with the name in the key those inserts were
-- most of the cost of landing.

ALTER TABLE __SCHEMA__.__TABLE___ingest_progress
    ADD COLUMN IF NOT EXISTS source_key BIGINT GENERATED ALWAYS AS IDENTITY;
ALTER TABLE __SCHEMA__.__TABLE___ingest_progress
    DROP CONSTRAINT IF EXISTS __TABLE___ingest_progress_source_key,
    ADD CONSTRAINT __TABLE___ingest_progress_source_key UNIQUE (source_key);

-- Every landed row's source has a progress row (landed in the same
-- transaction); this only guards the backfill below.
INSERT INTO __SCHEMA__.__TABLE___ingest_progress (source, next_row)
    SELECT source, max(source_row) + 1 FROM __SCHEMA__.__TABLE__ GROUP BY source
    ON CONFLICT (source) DO NOTHING;

ALTER TABLE __SCHEMA__.__TABLE__ ADD COLUMN IF NOT EXISTS source_key BIGINT;
UPDATE __SCHEMA__.__TABLE__ l SET source_key = p.source_key
    FROM __SCHEMA__.__TABLE___ingest_progress p
    WHERE p.source = l.source AND l.source_key IS NULL;
ALTER TABLE __SCHEMA__.__TABLE__ ALTER COLUMN source_key SET NOT NULL;

-- The source identity and the relay's (pickup, id) order within a source,
-- keyed by the small key.
ALTER TABLE __SCHEMA__.__TABLE__
    DROP CONSTRAINT IF EXISTS __TABLE___source_identity,
    DROP CONSTRAINT IF EXISTS __TABLE___source_key_identity,
    ADD CONSTRAINT __TABLE___source_key_identity UNIQUE (source_key, source_row);
DROP INDEX IF EXISTS __SCHEMA__.__TABLE___source_pickup_id;
CREATE INDEX IF NOT EXISTS __TABLE___source_key_pickup_id ON __SCHEMA__.__TABLE__ (source_key, pickup, id);
