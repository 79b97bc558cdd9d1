//! The `aggregate` stage: the trips topic, consumed in a group, through one
//! window engine per assigned partition, to the aggregates topic.
//!
//! # Effectively-once without Kafka transactions
//!
//! Each partition's progress is a *checkpoint*: the engine's snapshot (its
//! open windows and the carried watermark), the next offset it covers, and
//! per source the last (pickup, landing id) counted. A checkpoint is written
//! to PostgreSQL only after every window result and dead letter produced by
//! the records before that offset has been acknowledged by the broker; the
//! offset is committed to Kafka right after. So an offset is committed only
//! once every window that contains records at or before it has been emitted,
//! or is held in the snapshot that goes with it.
//!
//! When a partition is assigned (at start, after a crash, after a
//! rebalance), its checkpoint is restored and the records before its offset
//! are skipped. Replaying the rest through the restored engine reproduces
//! the same windows bit for bit (the engine is deterministic), so results
//! emitted after the checkpoint and before the crash come out again with the
//! same values, and the sink's idempotent upserts absorb them.
//!
//! # Event time
//!
//! Windows close on the watermark the relay carries (stamped on every trip
//! and sent as markers to every partition), not on the pickups a partition
//! happens to see, so which zones share a partition changes nothing: every
//! engine closes the same windows at the same event time, and the
//! end-of-source watermark closes the last windows of a finished source
//! without any idle timeout.
//!
//! The relay may publish a trip twice after a crash of its own. It publishes
//! each source in (pickup, landing id) order, so in a partition the trips of
//! one source arrive in increasing order of that pair; a copy is at or before
//! the last pair counted for its source and is dropped here (counted in
//! `records_in`, never in a window).
//!
//! # Batches
//!
//! A `trip/3` message is decoded straight into a columnar batch; copies
//! and trips the validator rejects are masked out, and the rest go through
//! the engine in one call with their carried stamps. A rejected or late trip
//! is dead-lettered on its own, as a one-trip `trip/3` message whose origin
//! names the message it came in and its index there (`topic/partition@offset#i`). A `trip/2` message (a relay not upgraded
//! yet) is a batch of one; see [`codec`] for why both are read.
//!
//! On revocation the partition's open state is dropped without a checkpoint:
//! the next owner resumes from the last one.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::dead_letter::Reason;
use crate::error::StageError;
use crate::io::codec::{self, TripBatchMessage, TripsContent};
use crate::io::kafka::{
    Assignment, GroupContext, KafkaIoError, KafkaSettings, dead_letter_headers, schema_headers,
};
use crate::io::postgres::{Checkpoint, PgStore};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::stage::runtime::{CommonArgs, StageRuntime};
use crate::trip::Micros;
use crate::validate::Validator;
use crate::window::{EngineSnapshot, WindowConfig, WindowEngine, WindowResult};
use crate::zones::ZoneLookup;

const STAGE: &str = "aggregate";

/// `taxistream-worker aggregate`
#[derive(Debug, Clone, clap::Args)]
pub struct AggregateArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// How often progress is checkpointed and committed.
    #[arg(long, default_value_t = 1000)]
    pub commit_interval_ms: u64,
    /// With `--exit-when-idle`: how long without a message counts as idle.
    #[arg(long, default_value_t = 5000)]
    pub idle_ms: u64,
}

/// Aggregate settings independent of where they came from.
#[derive(Debug, Clone)]
pub struct AggregateOptions {
    pub group: String,
    pub trips_topic: String,
    pub aggregates_topic: String,
    pub dead_letter_topic: String,
    pub window: WindowConfig,
    pub commit_interval: Duration,
    /// Exit after this long without input, closing every open window
    /// first (end of input). `None` runs until shutdown.
    pub exit_when_idle: Option<Duration>,
}

struct PartitionState {
    topic: String,
    partition: i32,
    engine: WindowEngine,
    next_offset: i64,
    /// Per source, the last (pickup, landing id) counted.
    positions: BTreeMap<String, (Micros, i64)>,
    /// Progress since the last checkpoint.
    dirty: bool,
}

/// What an aggregate run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AggregateStats {
    pub records: u64,
    pub duplicates: u64,
    pub windows: u64,
    pub dead_letters: u64,
    pub checkpoints: u64,
}

/// In-flight produce requests that must be acknowledged before a checkpoint.
#[derive(Default)]
struct Inflight {
    deliveries: Vec<(DeliveryFuture, Option<Instant>)>,
}

struct Aggregator<'a> {
    opts: &'a AggregateOptions,
    store: &'a PgStore,
    producer: &'a FutureProducer,
    consumer: &'a StreamConsumer<GroupContext>,
    metrics: &'a Metrics,
    zones: &'static ZoneLookup,
    validator: Validator,
    partitions: HashMap<(String, i32), PartitionState>,
    inflight: Inflight,
    stats: AggregateStats,
    emitted: Vec<WindowResult>,
    late: Vec<usize>,
    valid: Vec<bool>,
    /// The message being handled, decoded.
    decoded: TripBatchMessage,
    /// Rows of `decoded` that go into the windows: neither copies nor invalid.
    include: Vec<bool>,
    /// Rows of `decoded` rejected by the validator, with why.
    invalid: Vec<(usize, Reason, String)>,
    /// A dead-lettered row, encoded on its own.
    row_buf: Vec<u8>,
}

impl<'a> Aggregator<'a> {
    async fn assign(&mut self, parts: Vec<(String, i32)>) -> Result<(), StageError> {
        for (topic, partition) in parts {
            let key = (topic.clone(), partition);
            if self.partitions.contains_key(&key) {
                continue;
            }
            let cp = self
                .store
                .load_checkpoint(&self.opts.group, &topic, partition)
                .await?;
            let (engine, next_offset, positions) = match cp {
                Some(cp) => {
                    let bad = |e: serde_json::Error| StageError::Other {
                        what: "decoding checkpoint",
                        detail: format!("{topic}/{partition}: {e}"),
                    };
                    let snap: EngineSnapshot = serde_json::from_slice(&cp.snapshot).map_err(bad)?;
                    let positions = serde_json::from_str(&cp.source_positions).map_err(bad)?;
                    let engine = WindowEngine::restore(snap, self.zones)?;
                    (engine, cp.next_offset, positions)
                }
                None => (
                    WindowEngine::new(self.opts.window, self.zones),
                    0,
                    BTreeMap::new(),
                ),
            };
            tracing::info!(%topic, partition, next_offset, open_windows = engine.open_windows(), "partition assigned");
            self.partitions.insert(
                key,
                PartitionState {
                    topic,
                    partition,
                    engine,
                    next_offset,
                    positions,
                    dirty: false,
                },
            );
        }
        Ok(())
    }

    fn revoke(&mut self, parts: Vec<(String, i32)>) {
        for key in parts {
            if let Some(state) = self.partitions.remove(&key) {
                tracing::info!(
                    topic = %key.0,
                    partition = key.1,
                    dropped_open_windows = state.engine.open_windows(),
                    "partition revoked; its next owner resumes from the last checkpoint"
                );
            }
        }
    }

    fn dead_letter(
        &mut self,
        payload: &[u8],
        key: Option<&[u8]>,
        reason: Reason,
        detail: &str,
        origin: &str,
    ) -> Result<(), StageError> {
        let record = FutureRecord {
            topic: self.opts.dead_letter_topic.as_str(),
            partition: None,
            payload: Some(payload),
            key,
            timestamp: None,
            headers: Some(dead_letter_headers(reason, detail, STAGE, origin)),
        };
        let d = self
            .producer
            .send_result(record)
            .map_err(|(source, _)| KafkaIoError::Topic {
                what: "enqueue dead letter",
                topic: self.opts.dead_letter_topic.clone(),
                source,
            })?;
        self.inflight.deliveries.push((d, None));
        self.metrics.dead_letter(reason);
        self.stats.dead_letters += 1;
        Ok(())
    }

    fn on_message(&mut self, msg: &BorrowedMessage<'_>) -> Result<(), StageError> {
        let key = (msg.topic().to_owned(), msg.partition());
        let offset = msg.offset();
        let Some(state) = self.partitions.get(&key) else {
            // A message fetched before its partition was revoked.
            return Ok(());
        };
        if offset < state.next_offset {
            // Already in the restored snapshot.
            return Ok(());
        }
        let payload = msg.payload().unwrap_or_default();
        let schema = msg
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == codec::SCHEMA_HEADER))
            .and_then(|h| h.value);
        let known = [
            codec::TRIP_BATCH_SCHEMA,
            codec::TRIP_SCHEMA,
            codec::WATERMARK_SCHEMA,
        ];
        let decoded = match schema {
            Some(s) if !known.iter().any(|k| k.as_bytes() == s) => {
                Err(codec::DecodeError::Invalid {
                    field: "schema header",
                    detail: format!(
                        "{:?} is none of {}",
                        String::from_utf8_lossy(s),
                        known.join(", ")
                    ),
                })
            }
            _ => codec::decode_trips_topic(payload, &mut self.decoded),
        };
        match decoded {
            Ok(TripsContent::Trips) => self.on_trips(&key, offset, msg.key()),
            Ok(TripsContent::Watermark(w)) => {
                self.advance(&key, offset);
                self.watermark(&key, w)
            }
            Err(e) => {
                self.metrics.records_in(1);
                self.stats.records += 1;
                let (reason, detail) = (e.reason(), e.to_string());
                let origin = format!("{}/{}@{}", key.0, key.1, offset);
                tracing::warn!(%origin, %reason, %detail, "malformed trip message");
                self.dead_letter(payload, msg.key(), reason, &detail, &origin)?;
                self.advance(&key, offset);
                Ok(())
            }
        }
    }

    /// The trips of one message, now in `decoded`: drops re-published
    /// copies, validates and windows the rest as one batch.
    fn on_trips(
        &mut self,
        key: &(String, i32),
        offset: i64,
        message_key: Option<&[u8]>,
    ) -> Result<(), StageError> {
        let n = self.decoded.len();
        self.metrics.records_in(n as u64);
        self.stats.records += n as u64;
        let Some(state) = self.partitions.get_mut(key) else {
            return Ok(());
        };
        let trips = &self.decoded.trips;
        // A partition sees each source's trips in increasing (pickup,
        // landing id) order: one at or before the last counted is a copy.
        let counted_before = state.positions.get(&*trips.source).copied();
        let mut last = counted_before;
        self.include.clear();
        for (&pickup, &id) in trips.pickup.iter().zip(&self.decoded.landing_id) {
            let fresh = last.is_none_or(|l| (pickup, id) > l);
            if fresh {
                last = Some((pickup, id));
            } else {
                self.stats.duplicates += 1;
            }
            self.include.push(fresh);
        }
        // Field checks: the message may not have come from our relay.
        let mut reasons = Vec::new();
        self.validator.check(trips, &mut self.valid, |dl| {
            reasons.push((dl.reason, dl.detail));
        });
        self.invalid.clear();
        let mut reasons = reasons.into_iter();
        for (i, valid) in self.valid.iter().enumerate() {
            if *valid {
                continue;
            }
            let reason = reasons.next();
            if let (true, Some((reason, detail))) = (self.include[i], reason) {
                self.include[i] = false;
                self.invalid.push((i, reason, detail));
            }
        }
        let closed_at = Instant::now();
        self.emitted.clear();
        self.late.clear();
        state.engine.push_carried(
            trips,
            Some(&self.include),
            &self.decoded.watermark,
            &mut self.emitted,
            &mut self.late,
        );
        let watermark = state.engine.watermark();
        if let Some(l) = last.filter(|_| last != counted_before) {
            match state.positions.get_mut(&*trips.source) {
                Some(p) => *p = l,
                None => {
                    state.positions.insert(trips.source.to_string(), l);
                }
            }
        }
        state.next_offset = offset + 1;
        state.dirty = true;

        let origin = format!("{}/{}@{}", key.0, key.1, offset);
        let invalid = std::mem::take(&mut self.invalid);
        for (i, reason, detail) in &invalid {
            self.dead_letter_row(*i, message_key, *reason, detail, &origin)?;
        }
        self.invalid = invalid;
        if !self.late.is_empty() {
            let detail = format!(
                "every window of this trip had closed (watermark {})",
                watermark.map_or_else(|| "unset".into(), crate::trip::format_micros)
            );
            let late = std::mem::take(&mut self.late);
            for &i in &late {
                self.dead_letter_row(i, message_key, Reason::Late, &detail, &origin)?;
            }
            self.late = late;
        }
        let emitted = std::mem::take(&mut self.emitted);
        for r in &emitted {
            self.produce_window(r, Some(closed_at))?;
        }
        self.emitted = emitted;
        self.reap_deliveries()
    }

    /// Dead-letters row `i` of the message being handled, on its own as a
    /// one-trip `trip/3` message: its neighbours in the batch were fine. Its
    /// origin is the message's with `#i`, so it names one trip.
    fn dead_letter_row(
        &mut self,
        i: usize,
        message_key: Option<&[u8]>,
        reason: Reason,
        detail: &str,
        message_origin: &str,
    ) -> Result<(), StageError> {
        let origin = format!("{message_origin}#{i}");
        let mut buf = std::mem::take(&mut self.row_buf);
        codec::encode_trip_batch(
            &self.decoded.trips,
            &self.decoded.landing_id,
            &self.decoded.watermark,
            &[i],
            &mut buf,
        );
        let sent = self.dead_letter(&buf, message_key, reason, detail, &origin);
        self.row_buf = buf;
        sent
    }

    fn advance(&mut self, key: &(String, i32), offset: i64) {
        if let Some(state) = self.partitions.get_mut(key) {
            state.next_offset = offset + 1;
            state.dirty = true;
        }
    }

    /// A watermark marker: the windows it closes.
    fn watermark(&mut self, key: &(String, i32), progress: Micros) -> Result<(), StageError> {
        let Some(state) = self.partitions.get_mut(key) else {
            return Ok(());
        };
        let closed_at = Instant::now();
        let mut out = std::mem::take(&mut self.emitted);
        out.clear();
        state.engine.advance(progress, &mut out);
        for r in &out {
            self.produce_window(r, Some(closed_at))?;
        }
        self.emitted = out;
        self.reap_deliveries()
    }

    fn produce_window(
        &mut self,
        r: &WindowResult,
        closed_at: Option<Instant>,
    ) -> Result<(), StageError> {
        let value = codec::encode_window(r).map_err(|e| StageError::Other {
            what: "encoding window result",
            detail: e.to_string(),
        })?;
        let key = crate::io::cassandra::group_key(r);
        // The message timestamp is when the window closed (now, at the end
        // of input), so a reader downstream can tell how long a result took
        // to reach it (`make bench`), however long it waited here.
        let closed_ms = std::time::SystemTime::now()
            .checked_sub(closed_at.map_or(Duration::ZERO, |t| t.elapsed()))
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        let record = FutureRecord::to(&self.opts.aggregates_topic)
            .key(key.as_bytes())
            .payload(value.as_slice())
            .timestamp(closed_ms)
            .headers(schema_headers(codec::WINDOW_SCHEMA));
        let d = self
            .producer
            .send_result(record)
            .map_err(|(source, _)| KafkaIoError::Topic {
                what: "enqueue window result",
                topic: self.opts.aggregates_topic.clone(),
                source,
            })?;
        self.inflight.deliveries.push((d, closed_at));
        self.metrics.records_out(1);
        self.stats.windows += 1;
        Ok(())
    }

    /// End of input: closes every open window of every partition.
    fn close_all(&mut self) -> Result<(), StageError> {
        let keys: Vec<_> = self.partitions.keys().cloned().collect();
        for k in keys {
            let mut out = Vec::new();
            if let Some(state) = self.partitions.get_mut(&k) {
                state.engine.flush(&mut out);
                state.dirty = true;
            }
            for r in &out {
                self.produce_window(r, None)?;
            }
        }
        Ok(())
    }

    fn delivered(
        &self,
        result: Result<
            rdkafka::producer::future_producer::OwnedDeliveryResult,
            futures::channel::oneshot::Canceled,
        >,
        closed_at: Option<Instant>,
    ) -> Result<(), StageError> {
        match result {
            Ok(Ok(_)) => {
                if let Some(t) = closed_at {
                    self.metrics.window_emitted(t.elapsed());
                }
                Ok(())
            }
            Ok(Err((source, _))) => Err(KafkaIoError::Op {
                what: "produce window result or dead letter",
                source,
            }
            .into()),
            Err(_) => Err(StageError::Other {
                what: "produce",
                detail: "producer dropped before delivery".into(),
            }),
        }
    }

    /// Takes the acknowledgements that have already arrived (in order, up to
    /// the first pending one), so emit latency is measured when the broker
    /// answers rather than at the next checkpoint.
    fn reap_deliveries(&mut self) -> Result<(), StageError> {
        use futures::FutureExt;
        let mut done = 0;
        while let Some((d, closed_at)) = self.inflight.deliveries.get_mut(done) {
            let closed_at = *closed_at;
            match d.now_or_never() {
                Some(result) => {
                    self.delivered(result, closed_at)?;
                    done += 1;
                }
                None => break,
            }
        }
        self.inflight.deliveries.drain(..done);
        Ok(())
    }

    async fn await_deliveries(&mut self) -> Result<(), StageError> {
        let pending = std::mem::take(&mut self.inflight.deliveries);
        for (d, closed_at) in pending {
            let result = d.await;
            self.delivered(result, closed_at)?;
        }
        Ok(())
    }

    /// Makes everything processed so far durable: results acknowledged,
    /// then checkpoints saved, then offsets committed.
    async fn checkpoint(&mut self) -> Result<(), StageError> {
        let started = Instant::now();
        self.await_deliveries().await?;
        let mut cps = Vec::new();
        for state in self.partitions.values_mut().filter(|s| s.dirty) {
            let encode_err = |e: serde_json::Error| StageError::Other {
                what: "encoding checkpoint",
                detail: e.to_string(),
            };
            cps.push(Checkpoint {
                topic: state.topic.clone(),
                partition: state.partition,
                next_offset: state.next_offset,
                source_positions: serde_json::to_string(&state.positions).map_err(encode_err)?,
                snapshot: serde_json::to_vec(&state.engine.snapshot()).map_err(encode_err)?,
            });
        }
        if cps.is_empty() {
            return Ok(());
        }
        self.store.save_checkpoints(&self.opts.group, &cps).await?;
        let offsets: HashMap<(String, i32), i64> = cps
            .iter()
            .map(|c| ((c.topic.clone(), c.partition), c.next_offset))
            .collect();
        if let Ok(mut ready) = self.consumer.context().ready.lock() {
            ready.extend(offsets.clone());
        }
        // The checkpoint is authoritative; a failed commit only delays what
        // lag monitoring sees.
        if let Err(e) = crate::io::kafka::commit_async(self.consumer, &offsets) {
            tracing::warn!(error = %e, "offset commit failed");
        }
        for state in self.partitions.values_mut() {
            state.dirty = false;
        }
        self.stats.checkpoints += 1;
        self.metrics.batch("checkpoint", started.elapsed());
        Ok(())
    }
}

/// Runs the aggregate loop until shutdown (or idle, see
/// [`AggregateOptions::exit_when_idle`]).
pub async fn aggregate(
    store: &PgStore,
    kafka: &KafkaSettings,
    opts: &AggregateOptions,
    metrics: &Metrics,
    shutdown: &Shutdown,
    ready: &crate::health::Ready,
) -> Result<AggregateStats, StageError> {
    let (ctx, events) = GroupContext::new(metrics.clone());
    let consumer = kafka.consumer(&opts.group, ctx)?;
    consumer
        .subscribe(&[&opts.trips_topic])
        .map_err(|source| KafkaIoError::Topic {
            what: "subscribe",
            topic: opts.trips_topic.clone(),
            source,
        })?;
    let producer = kafka.producer()?;
    let mut agg = Aggregator {
        opts,
        store,
        producer: &producer,
        consumer: &consumer,
        metrics,
        zones: ZoneLookup::embedded(),
        // Kafka carries every month; only the record-level checks apply here.
        validator: Validator::new(None, 365 * 1000),
        partitions: HashMap::new(),
        inflight: Inflight::default(),
        stats: AggregateStats::default(),
        emitted: Vec::new(),
        late: Vec::new(),
        valid: Vec::new(),
        decoded: TripBatchMessage::default(),
        include: Vec::new(),
        invalid: Vec::new(),
        row_buf: Vec::new(),
    };
    ready.set(true);
    let result = run_loop(&mut agg, &consumer, &events, opts, shutdown).await;
    ready.set(false);
    match result {
        Ok(()) => {
            // Graceful: what was processed becomes durable before leaving the group.
            agg.checkpoint().await?;
            for s in agg.partitions.values() {
                let e = s.engine.stats();
                tracing::info!(
                    topic = %s.topic,
                    partition = s.partition,
                    next_offset = s.next_offset,
                    records = e.records,
                    late = e.late,
                    windows = e.windows_emitted,
                    "partition at exit"
                );
            }
            if let Ok(ready) = consumer.context().ready.lock() {
                let offsets: HashMap<_, _> = ready.clone();
                drop(ready);
                if let Err(e) = crate::io::kafka::commit_sync(&consumer, &offsets) {
                    tracing::warn!(error = %e, "final offset commit failed");
                }
            }
            Ok(agg.stats)
        }
        Err(e) => Err(e),
    }
}

async fn run_loop(
    agg: &mut Aggregator<'_>,
    consumer: &StreamConsumer<GroupContext>,
    events: &Receiver<Assignment>,
    opts: &AggregateOptions,
    shutdown: &Shutdown,
) -> Result<(), StageError> {
    let mut last_checkpoint = Instant::now();
    let mut last_message = Instant::now();
    let poll = Duration::from_millis(50);
    loop {
        let next = tokio::select! {
            m = tokio::time::timeout(poll, consumer.recv()) => m,
            () = shutdown.wait() => return Ok(()),
        };
        // Rebalance callbacks ran inside recv(): apply them before the message.
        let mut changes = Vec::new();
        while let Ok(ev) = events.try_recv() {
            changes.push(ev);
        }
        for ev in changes {
            match ev {
                Assignment::Revoked(p) => agg.revoke(p),
                Assignment::Assigned(p) => {
                    agg.assign(p).await?;
                    // Idle time counts from when there is something to read.
                    last_message = Instant::now();
                }
            }
        }
        match next {
            Ok(Ok(msg)) => {
                last_message = Instant::now();
                agg.on_message(&msg)?;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
            }
            Err(_) => {
                // Nothing arrived for a moment: take the acknowledgements.
                agg.reap_deliveries()?;
                if let Some(idle) = opts.exit_when_idle
                    && last_message.elapsed() >= idle
                    && !agg.partitions.is_empty()
                {
                    agg.close_all()?;
                    return Ok(());
                }
            }
        }
        if last_checkpoint.elapsed() >= opts.commit_interval {
            agg.checkpoint().await?;
            last_checkpoint = Instant::now();
        }
    }
}

/// Entry point of `taxistream-worker aggregate`.
pub async fn main(args: AggregateArgs) -> Result<(), StageError> {
    let rt = StageRuntime::start(STAGE, &args.common).await?;
    let w = &rt.config.worker;
    let store = rt.landing_store(2).await?;
    let kafka = rt.kafka()?;
    rt.backends_answer(args.common.exit_when_idle).await?;
    let opts = AggregateOptions {
        group: rt.config.group_id(STAGE),
        trips_topic: w.topics.trips.clone(),
        aggregates_topic: w.topics.aggregates.clone(),
        dead_letter_topic: w.topics.dead_letters.clone(),
        window: WindowConfig::from_aggregation(&w.aggregation)?,
        commit_interval: Duration::from_millis(args.commit_interval_ms),
        exit_when_idle: args
            .common
            .exit_when_idle
            .then(|| Duration::from_millis(args.idle_ms)),
    };
    let stats = aggregate(&store, &kafka, &opts, &rt.metrics, &rt.shutdown, &rt.ready).await?;
    tracing::info!(
        records = stats.records,
        windows = stats.windows,
        dead_letters = stats.dead_letters,
        duplicates = stats.duplicates,
        "aggregate stopped"
    );
    Ok(())
}
