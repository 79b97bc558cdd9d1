//! Contract of the Kafka layer against the real broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backends_support;

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use taxistream_worker::io::kafka::{GroupContext, KafkaSettings, commit_sync};
use taxistream_worker::metrics::Metrics;

#[tokio::test]
async fn topics_are_created_idempotently_and_commits_read_back() {
    let bootstrap = backends_support::kafka_bootstrap();
    let kafka = KafkaSettings::plain(bootstrap);
    let topic = backends_support::unique("meta");
    kafka.ensure_topics(&[&topic], 2, 1).await.unwrap();
    // Creating twice is fine: stages call this on every start in dev setups.
    kafka.ensure_topics(&[&topic], 2, 1).await.unwrap();

    let group = backends_support::unique("g");
    let (ctx, _events) = GroupContext::new(Metrics::new("test"));
    let consumer = kafka.consumer(&group, ctx).unwrap();
    let mut ready = HashMap::new();
    ready.insert((topic.clone(), 1), 7i64);
    commit_sync(&consumer, &ready).unwrap();

    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&topic, 1);
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    let e = committed.find_partition(&topic, 1).unwrap();
    assert_eq!(e.offset(), Offset::Offset(7));
}
