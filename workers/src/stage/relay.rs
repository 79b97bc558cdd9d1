//! The `relay` stage: the outbox relay from the PostgreSQL landing table to
//! the trips topic, in event-time order, carrying the watermark.
//!
//! # Order and watermark
//!
//! A landed TLC file is history: once its source is completed, the relay
//! reads it in (pickup, id) order, merging every completed source by pickup.
//! Sources still landing hold event time back at their earliest landed
//! pickup (until they have landed nothing for `source_idle`), so one month
//! never makes another month's trips late, and a finished source no longer
//! holds anything back. The *frontier* is the earliest pickup still to be
//! published over the sources in flight; no later trip of those sources is
//! earlier. Every trip is stamped with the frontier as of its publication,
//! and a marker with the frontier goes to every partition of the trips topic
//! whenever it moves, so partitions that get no trips still close their
//! windows. When no source is in flight, the frontier moves past the last
//! published pickup by a window and the allowed lateness: the end-of-source
//! watermark that closes every window of the finished sources.
//!
//! # Batches
//!
//! A round's trips go out as `trip/3` messages (see [`codec`]): the trips
//! bound for one key group, in publication order, a few thousand per
//! message, each trip with its own stamp, landing id and origin. One
//! message per trip would cap the relay at the broker's per-message rate.
//!
//! # Exactly once and crash recovery
//!
//! Each round is one PostgreSQL transaction: lock the relay's progress row,
//! read the next rows, publish them with the idempotent producer, wait for
//! every acknowledgement, then store each source's new (pickup, id) position
//! and the watermark sent, and commit. A crash before the commit re-publishes
//! that round's rows on restart (nothing is skipped); in each partition the
//! trips of one source arrive in strictly increasing (pickup, landing id)
//! order, so the aggregate drops copies at or before the last one it counted.
//!
//! Only one replica relays at a time: the others wait on the row lock, as
//! hot standbys.
//!
//! # Key groups
//!
//! Keys are routed to `murmur2(key) % key_groups` with an explicit partition.
//! `key_groups` is the trips topic's partition count at the first
//! publication, stored in PostgreSQL and never changed, so growing the topic
//! later does not move a key (which would split its windows over two
//! engines). Partitions beyond the pinned count receive only watermark
//! markers; a warning says so.
//!
//! Replay mode paces publication by pickup time: a trip is published when
//! `(pickup − first pickup) / speedup` has elapsed since the first one. A
//! stretch without pickups that would take more than a minute of wall time
//! (a month's stray early pickups come first in pickup order, days before
//! the rest) is shortened to a minute. A speed-up that is not a positive
//! finite number disables pacing, with a warning.

use std::time::{Duration, Instant};

use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tokio::time::sleep;

use crate::error::StageError;
use crate::io::codec;
use crate::io::kafka::{KafkaIoError, KafkaSettings, schema_headers};
use crate::io::postgres::{OutboxBatch, PgStore, RelayProgress, RelaySource};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::stage::runtime::{CommonArgs, StageRuntime};
use crate::trip::{MICROS_PER_SECOND, Micros};
use crate::window::{GroupBy, KeyMapper, WindowConfig};
use crate::zones::ZoneLookup;

/// `taxistream-worker relay`
#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Rows per transaction.
    #[arg(long, default_value_t = 5000)]
    pub batch: i64,
    /// How long to wait before looking again when the outbox is empty.
    #[arg(long, default_value_t = 500)]
    pub poll_ms: u64,
    /// A source still landing that has landed nothing for this long stops
    /// holding event time back.
    #[arg(long, default_value_t = 600)]
    pub source_idle_s: u64,
}

/// Relay settings independent of where they came from.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Name of the progress row (one per pipeline).
    pub name: String,
    pub topic: String,
    pub group_by: GroupBy,
    pub batch: i64,
    pub poll: Duration,
    pub replay_speedup: Option<f64>,
    pub exit_when_idle: bool,
    /// Window size plus allowed lateness: how far past the last published
    /// pickup the end-of-source watermark goes, to close its last windows.
    pub close_after: Micros,
    /// See [`RelayArgs::source_idle_s`].
    pub source_idle: Duration,
}

impl RelayOptions {
    /// `close_after` for `window`.
    pub fn close_after(window: &WindowConfig) -> Micros {
        window.size.saturating_add(window.allowed_lateness)
    }
}

/// What a relay run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    pub published: u64,
    pub markers: u64,
    pub rounds: u64,
}

/// The longest wall-clock pause replay makes for a stretch with no pickups.
const MAX_GAP: Duration = Duration::from_secs(60);

/// Event-time pacing for replay mode.
struct Pacer {
    speedup: f64,
    origin: Option<(Micros, Instant)>,
    /// Pickup times jitter; never wait for an earlier time than already reached.
    high: Micros,
}

impl Pacer {
    /// `None` (no pacing) unless `speedup` is a positive finite number: a
    /// zero would wait forever and a negative or NaN one has no meaning.
    fn new(speedup: f64) -> Option<Self> {
        (speedup.is_finite() && speedup > 0.0).then_some(Self {
            speedup,
            origin: None,
            high: Micros::MIN,
        })
    }

    fn delay(&mut self, pickup: Micros) -> Duration {
        let now = Instant::now();
        let (mut first, mut started) = *self.origin.get_or_insert((pickup, now));
        if self.high != Micros::MIN && pickup > self.high {
            let gap_s = (pickup - self.high) as f64 / MICROS_PER_SECOND as f64 / self.speedup;
            // In pickup order a month's stray early pickups come first, days
            // before the rest: an empty stretch of event time is shortened
            // rather than waited out.
            if gap_s > MAX_GAP.as_secs_f64() {
                (first, started) = (pickup, now + MAX_GAP);
                self.origin = Some((first, started));
            }
        }
        self.high = self.high.max(pickup);
        let event_elapsed = (self.high - first).max(0) as f64 / MICROS_PER_SECOND as f64;
        let wait = event_elapsed / self.speedup;
        // Beyond a year of wall time is a configuration mistake, not a plan.
        let due = started + Duration::from_secs_f64(wait.min(365.0 * 86_400.0));
        due.saturating_duration_since(Instant::now())
    }
}

/// Kafka's murmur2 (the Java client's default partitioner hash).
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let chunks = data.chunks_exact(4);
    let rest = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    if !rest.is_empty() {
        for (i, b) in rest.iter().enumerate().rev() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// The partition of `key` among `key_groups`.
fn key_group(key: &[u8], key_groups: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % key_groups.max(1) as u32) as i32
}

/// The key group of every key index: keys have a small domain, so each is
/// hashed once rather than once per trip.
struct KeyGroups {
    key_groups: i32,
    of_key: Vec<i32>,
}

impl KeyGroups {
    fn new(keys: &KeyMapper, key_groups: i32) -> Self {
        let of_key = (0..keys.key_count())
            .map(|k| {
                let key = keys.info(k as u16).key.to_string();
                key_group(key.as_bytes(), key_groups)
            })
            .collect();
        Self { key_groups, of_key }
    }
}

/// What one round publishes: the source chosen, and the bound on pickups
/// that keeps the merge over sources in pickup order.
#[derive(Debug, PartialEq)]
struct Plan<'a> {
    /// Earliest pickup still to publish over the sources in flight.
    frontier: Option<Micros>,
    next: Option<(&'a RelaySource, Option<Micros>)>,
    finished: Vec<String>,
}

/// Decides a round from the sources' state (pure, for tests).
fn plan(sources: &[RelaySource]) -> Plan<'_> {
    let finished = sources
        .iter()
        .filter(|s| s.completed && s.next.is_none())
        .map(|s| s.source.clone())
        .collect();
    let in_flight: Vec<&RelaySource> = sources.iter().filter(|s| s.next.is_some()).collect();
    let frontier = in_flight.iter().filter_map(|s| s.next.map(|n| n.0)).min();
    let chosen = in_flight
        .iter()
        .filter(|s| s.completed)
        .min_by_key(|s| s.next)
        .copied();
    let next = chosen.and_then(|c| {
        let bound = in_flight
            .iter()
            .filter(|s| s.source != c.source)
            .filter_map(|s| s.next.map(|n| n.0))
            .min();
        let first = c.next.map_or(Micros::MAX, |n| n.0);
        // Waiting for a source still landing whose earliest row is earlier.
        bound.is_none_or(|b| first <= b).then_some((c, bound))
    });
    Plan {
        frontier,
        next,
        finished,
    }
}

/// The trips topic's partition count, from the broker's metadata.
async fn partition_count(producer: &FutureProducer, topic: &str) -> Result<i32, StageError> {
    let producer = producer.clone();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let md = producer
            .client()
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .map_err(|source| KafkaIoError::Topic {
                what: "read metadata",
                topic: topic.clone(),
                source,
            })?;
        let n = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len() as i32);
        if n == 0 {
            return Err(StageError::Other {
                what: "trips topic",
                detail: format!("{topic} has no partitions (does it exist?)"),
            });
        }
        Ok(n)
    })
    .await
    .map_err(|e| StageError::Other {
        what: "read metadata",
        detail: e.to_string(),
    })?
}

struct Publisher<'a> {
    producer: &'a FutureProducer,
    topic: &'a str,
    deliveries: Vec<DeliveryFuture>,
    /// Markers to partitions beyond the key groups.
    extra: Vec<DeliveryFuture>,
    buf: Vec<u8>,
    /// Row indices of the trips bound for each key group, reused.
    runs: Vec<Vec<usize>>,
}

impl Publisher<'_> {
    fn send(&mut self, key: Option<&[u8]>, partition: i32, schema: &str) -> Result<(), StageError> {
        let mut record = FutureRecord::<[u8], [u8]>::to(self.topic)
            .partition(partition)
            .payload(self.buf.as_slice())
            .headers(schema_headers(schema));
        if let Some(k) = key {
            record = record.key(k);
        }
        let d = self
            .producer
            .send_result(record)
            .map_err(|(source, _)| KafkaIoError::Topic {
                what: "enqueue",
                topic: self.topic.to_owned(),
                source,
            })?;
        self.deliveries.push(d);
        Ok(())
    }

    /// Sends rows `rows` of `outbox` (stamped with `stamps`), one message per
    /// key group and at most [`codec::MAX_TRIPS_PER_MESSAGE`] trips, each
    /// key group's trips in publication order.
    fn trips(
        &mut self,
        outbox: &OutboxBatch,
        stamps: &[Micros],
        rows: std::ops::Range<usize>,
        key_idx: &[u16],
        groups: &KeyGroups,
    ) -> Result<(), StageError> {
        self.runs
            .resize_with(groups.key_groups.max(0) as usize, Vec::new);
        for run in &mut self.runs {
            run.clear();
        }
        for i in rows {
            let g = groups.of_key[usize::from(key_idx[i])];
            self.runs[g as usize].push(i);
        }
        let runs = std::mem::take(&mut self.runs);
        for (g, run) in runs.iter().enumerate() {
            let key = g.to_string();
            for chunk in run.chunks(codec::MAX_TRIPS_PER_MESSAGE) {
                codec::encode_trip_batch(&outbox.trips, &outbox.ids, stamps, chunk, &mut self.buf);
                self.send(Some(key.as_bytes()), g as i32, codec::TRIP_BATCH_SCHEMA)?;
            }
        }
        self.runs = runs;
        Ok(())
    }

    /// Sends `watermark` to every partition. Partitions beyond the key
    /// groups hold no key, so a marker they miss (the producer may not know
    /// a partition added moments ago) costs nothing: best effort there.
    fn marker(
        &mut self,
        watermark: Micros,
        key_groups: i32,
        partitions: i32,
    ) -> Result<u64, StageError> {
        codec::encode_watermark(watermark, &mut self.buf);
        for p in 0..key_groups {
            self.send(None, p, codec::WATERMARK_SCHEMA)?;
        }
        for p in key_groups..partitions {
            let record = FutureRecord::<[u8], [u8]>::to(self.topic)
                .partition(p)
                .payload(self.buf.as_slice())
                .headers(schema_headers(codec::WATERMARK_SCHEMA));
            match self.producer.send_result(record) {
                Ok(d) => self.extra.push(d),
                Err((e, _)) => tracing::debug!(partition = p, error = %e, "marker not sent"),
            }
        }
        Ok(partitions as u64)
    }

    async fn acknowledged(&mut self) -> Result<(), StageError> {
        for d in self.extra.drain(..) {
            if let Ok(Err((e, _))) = d.await {
                tracing::debug!(error = %e, "marker to a partition beyond the key groups not delivered");
            }
        }
        for d in self.deliveries.drain(..) {
            match d.await {
                Ok(Ok(_)) => {}
                Ok(Err((source, _))) => {
                    return Err(KafkaIoError::Topic {
                        what: "publish",
                        topic: self.topic.to_owned(),
                        source,
                    }
                    .into());
                }
                Err(_) => {
                    return Err(StageError::Other {
                        what: "publish",
                        detail: "producer dropped before delivery".into(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// The topic's partitions, looked up again now and then to notice growth.
struct Partitions {
    count: i32,
    checked: Option<Instant>,
    warned_for: i32,
}

impl Partitions {
    async fn current(
        &mut self,
        producer: &FutureProducer,
        topic: &str,
        key_groups: Option<i32>,
    ) -> Result<i32, StageError> {
        if self
            .checked
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            self.count = partition_count(producer, topic).await?;
            self.checked = Some(Instant::now());
        }
        if let Some(k) = key_groups {
            if self.count < k {
                return Err(StageError::Other {
                    what: "trips topic",
                    detail: format!(
                        "{topic} has {} partitions, fewer than the {k} key groups pinned at its first publication",
                        self.count
                    ),
                });
            }
            if self.count > k && self.warned_for != self.count {
                tracing::warn!(
                    %topic,
                    partitions = self.count,
                    key_groups = k,
                    "the trips topic has more partitions than the key groups pinned at its first publication; \
                     keys stay on their partitions and the new ones only carry watermarks"
                );
                self.warned_for = self.count;
            }
        }
        Ok(self.count)
    }
}

/// Runs the relay until shutdown (or until every source is published and
/// its end-of-source watermark sent, with `exit_when_idle`).
pub async fn relay(
    store: &PgStore,
    producer: &FutureProducer,
    opts: &RelayOptions,
    metrics: &Metrics,
    shutdown: &Shutdown,
) -> Result<RelayStats, StageError> {
    let keys = KeyMapper::new(opts.group_by, ZoneLookup::embedded());
    let mut groups: Option<KeyGroups> = None;
    let mut key_idx = Vec::new();
    let mut outbox = OutboxBatch::default();
    let mut stamps: Vec<Micros> = Vec::new();
    let mut pacer = opts.replay_speedup.and_then(|speedup| {
        let p = Pacer::new(speedup);
        if p.is_none() {
            tracing::warn!(
                speedup,
                "replay speed-up is not a positive number; publishing without pacing"
            );
        }
        p
    });
    let mut publisher = Publisher {
        producer,
        topic: &opts.topic,
        deliveries: Vec::new(),
        extra: Vec::new(),
        buf: Vec::new(),
        runs: Vec::new(),
    };
    let mut partitions = Partitions {
        count: 0,
        checked: None,
        warned_for: 0,
    };
    // In replay mode a round spans at most about a second of wall time, so
    // the progress row never lags far behind what is published.
    let round_budget = Duration::from_secs(1);
    let mut stats = RelayStats::default();
    while !shutdown.requested() {
        let round_start = Instant::now();
        let mut tx = tokio::select! {
            tx = store.begin_relay(&opts.name) => tx?,
            () = shutdown.wait() => break,
        };
        let sources = tx.sources(opts.source_idle).await?;
        let plan = plan(&sources);
        let target = match plan.frontier {
            Some(f) => Some(f),
            None => tx
                .published_high()
                .await?
                .map(|h| h.saturating_add(opts.close_after)),
        };
        let sent = tx.watermark;
        let advance = target.filter(|t| sent.is_none_or(|s| *t > s));
        match plan.next {
            Some((s, bound)) => {
                tx.fetch_ordered(&s.source, s.position, bound, opts.batch, &mut outbox)
                    .await?
            }
            None => outbox.ids.clear(),
        }
        let n = outbox.ids.len();
        if n == 0 && advance.is_none() && plan.finished.is_empty() {
            drop(tx);
            if opts.exit_when_idle && plan.frontier.is_none() {
                break;
            }
            tokio::select! {
                () = sleep(opts.poll) => continue,
                () = shutdown.wait() => break,
            }
        }
        let key_groups = match tx.key_groups {
            Some(k) => k,
            None => partitions.current(producer, &opts.topic, None).await?,
        };
        let partition_count = partitions
            .current(producer, &opts.topic, Some(key_groups))
            .await?;
        let mut watermark = sent.max(advance);
        // The frontier also bounds this round's rows, so markers go first.
        if let Some(w) = advance {
            stats.markers += publisher.marker(w, key_groups, partition_count)?;
        }
        let round_groups = match groups.take() {
            Some(g) if g.key_groups == key_groups => g,
            _ => KeyGroups::new(&keys, key_groups),
        };
        keys.fill(&outbox.trips, &mut key_idx);
        stamps.clear();
        // Rows up to `sent_to` are published; with pacing, the rows due so
        // far go out before each wait.
        let mut sent_to = 0;
        let mut end = n;
        for i in 0..n {
            let pickup = outbox.trips.pickup[i];
            if let Some(p) = pacer.as_mut() {
                let wait = p.delay(pickup);
                if !wait.is_zero() {
                    if round_start.elapsed() >= round_budget || shutdown.requested() {
                        end = i;
                        break;
                    }
                    publisher.trips(&outbox, &stamps, sent_to..i, &key_idx, &round_groups)?;
                    sent_to = i;
                    sleep(wait).await;
                }
            }
            // Rows come in pickup order, bounded by every other source's
            // next pickup: nothing published later is earlier than this one.
            let stamp = watermark.map_or(pickup, |w| w.max(pickup));
            watermark = Some(stamp);
            stamps.push(stamp);
        }
        publisher.trips(&outbox, &stamps, sent_to..end, &key_idx, &round_groups)?;
        let last = end
            .checked_sub(1)
            .map(|i| (outbox.trips.pickup[i], outbox.ids[i]));
        let published = end as u64;
        groups = Some(round_groups);
        publisher.acknowledged().await?;
        let mut progress = RelayProgress {
            finished: plan.finished,
            watermark,
            key_groups: Some(key_groups),
            ..Default::default()
        };
        if let (Some((s, _)), Some(last)) = (plan.next, last) {
            progress.positions.push((s.source.clone(), last));
        }
        tx.commit(&progress).await?;
        metrics.records_in(published);
        metrics.records_out(published);
        metrics.batch("publish", round_start.elapsed());
        stats.published += published;
        stats.rounds += 1;
    }
    Ok(stats)
}

/// The relay's producer. A round enqueues all its messages and then waits
/// for every acknowledgement, so lingering for more messages would only
/// leave each round idle for the linger.
pub fn producer(kafka: &KafkaSettings) -> Result<FutureProducer, KafkaIoError> {
    kafka.producer_lingering(Duration::ZERO)
}

/// Entry point of `taxistream-worker relay`.
pub async fn main(args: RelayArgs) -> Result<(), StageError> {
    let rt = StageRuntime::start("relay", &args.common).await?;
    let w = &rt.config.worker;
    let store = rt.landing_store(2).await?;
    let kafka = rt.kafka()?;
    rt.backends_answer(args.common.exit_when_idle).await?;
    let producer = producer(&kafka)?;
    rt.ready.set(true);
    let opts = RelayOptions {
        name: rt.config.group_id("relay"),
        topic: w.topics.trips.clone(),
        group_by: w.aggregation.group_by,
        batch: args.batch,
        poll: Duration::from_millis(args.poll_ms),
        replay_speedup: w.source.replay_speedup,
        exit_when_idle: args.common.exit_when_idle,
        close_after: RelayOptions::close_after(&WindowConfig::from_aggregation(&w.aggregation)?),
        source_idle: Duration::from_secs(args.source_idle_s),
    };
    let stats = relay(&store, &producer, &opts, &rt.metrics, &rt.shutdown).await?;
    tracing::info!(
        published = stats.published,
        markers = stats.markers,
        "relay stopped"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_waits_for_event_time_over_speedup_and_never_backwards() {
        let mut p = Pacer::new(60.0).unwrap();
        let t0 = 1_738_368_000_000_000;
        assert!(p.delay(t0).is_zero());
        // Ten event minutes later is ten wall seconds later at 60x.
        let d = p.delay(t0 + 600 * MICROS_PER_SECOND);
        assert!(
            d > Duration::from_millis(9_900) && d <= Duration::from_secs(10),
            "{d:?}"
        );
        // A record a minute behind the newest does not pull the schedule back.
        let e = p.delay(t0 + 540 * MICROS_PER_SECOND);
        assert!(e > Duration::from_millis(9_800), "{e:?}");
    }

    #[test]
    fn replay_shortens_empty_stretches_of_event_time() {
        let mut p = Pacer::new(60.0).unwrap();
        let t0 = 1_738_368_000_000_000;
        assert!(p.delay(t0).is_zero());
        // Two weeks later would be five and a half hours at 60x.
        let two_weeks = 14 * 86_400 * MICROS_PER_SECOND;
        let d = p.delay(t0 + two_weeks);
        assert!(
            d <= MAX_GAP && d > MAX_GAP - Duration::from_millis(100),
            "{d:?}"
        );
        // Pacing resumes from there at the same speed.
        let e = p.delay(t0 + two_weeks + 60 * MICROS_PER_SECOND);
        assert!(
            e > MAX_GAP && e <= MAX_GAP + Duration::from_secs(1),
            "{e:?}"
        );
    }

    #[test]
    fn speedups_that_cannot_pace_disable_pacing() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(Pacer::new(bad).is_none(), "{bad}");
        }
        let mut tiny = Pacer::new(f64::MIN_POSITIVE).unwrap();
        tiny.delay(0);
        assert!(tiny.delay(3_600 * MICROS_PER_SECOND) <= Duration::from_secs(366 * 86_400));
    }

    #[test]
    fn murmur2_spreads_keys_and_is_stable() {
        // Values of Kafka's Utils.murmur2 for these keys.
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        let mut used = [false; 6];
        for zone in 1..=265 {
            used[key_group(zone.to_string().as_bytes(), 6) as usize] = true;
        }
        assert!(used.iter().all(|u| *u));
    }

    fn src(name: &str, completed: bool, next: Option<i64>) -> RelaySource {
        RelaySource {
            source: name.into(),
            completed,
            position: None,
            next: next.map(|n| (n, 1)),
        }
    }

    #[test]
    fn plan_merges_completed_sources_and_waits_for_earlier_ones_still_landing() {
        let s = [
            src("a", true, Some(50)),
            src("b", true, Some(10)),
            src("c", true, None),
        ];
        let p = plan(&s);
        assert_eq!(p.frontier, Some(10));
        assert_eq!(
            p.next.map(|(s, b)| (s.source.as_str(), b)),
            Some(("b", Some(50)))
        );
        assert_eq!(p.finished, vec!["c".to_string()]);

        // A source still landing with an earlier row holds the others back.
        let s = [src("a", true, Some(50)), src("d", false, Some(20))];
        let p = plan(&s);
        assert_eq!((p.frontier, p.next), (Some(20), None));
        // Nothing in flight: the caller sends the end-of-source watermark.
        let s = [src("c", true, None)];
        assert_eq!(plan(&s).frontier, None);
    }
}
