-- Checkpoints of the aggregate stage: per consumer group and trips-topic
-- partition, the open windows (an engine snapshot) and the next offset they
-- cover. Written after every window they imply has been acknowledged by the
-- broker and before the offset is committed to Kafka; restored when the
-- partition is assigned, so a crash or rebalance replays from this offset and
-- reproduces the same windows.
CREATE TABLE IF NOT EXISTS __SCHEMA__.__TABLE___aggregate_checkpoints (
    consumer_group TEXT NOT NULL,
    topic          TEXT NOT NULL,
    kafka_partition INTEGER NOT NULL,
    next_offset    BIGINT NOT NULL,
    -- Highest landing id counted; lower ids in this partition are re-published duplicates.
    max_landing_id BIGINT NOT NULL,
    snapshot       BYTEA NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, kafka_partition)
);
