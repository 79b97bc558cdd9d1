-- Event-time replay. The relay publishes each completed source in pickup
-- order (keyset pages over this index) and keeps its position per source;
-- the relay's row keeps the last watermark it sent and the number of key
-- groups (trips-topic partitions) it routes keys over, pinned at the first
-- publication so that growing the topic never moves a key.
CREATE INDEX IF NOT EXISTS __TABLE___source_pickup_id ON __SCHEMA__.__TABLE__ (source, pickup, id);

CREATE TABLE IF NOT EXISTS __SCHEMA__.__TABLE___relay_sources (
    relay       TEXT NOT NULL,
    source      TEXT NOT NULL,
    -- Last published row in (pickup, id) order.
    last_pickup TIMESTAMP NOT NULL,
    last_id     BIGINT NOT NULL,
    -- Completed and every row published: no longer holds the watermark back.
    finished    BOOLEAN NOT NULL DEFAULT false,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (relay, source)
);

ALTER TABLE __SCHEMA__.__TABLE___relay_progress
    DROP COLUMN IF EXISTS last_id,
    -- µs of naive local time, like the pickups.
    ADD COLUMN IF NOT EXISTS watermark BIGINT,
    ADD COLUMN IF NOT EXISTS key_groups INTEGER;

-- Per source, the last (pickup, landing id) counted in the partition: copies
-- re-published after a relay crash are at or before it and are dropped.
ALTER TABLE __SCHEMA__.__TABLE___aggregate_checkpoints
    DROP COLUMN IF EXISTS max_landing_id,
    ADD COLUMN IF NOT EXISTS source_positions TEXT NOT NULL DEFAULT '{}';
