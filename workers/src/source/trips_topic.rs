//! The trips topic as the `aggregate` stage reads it: one decoded message
//! per pull, its partitions' window state restored from PostgreSQL when
//! they are assigned, and that state saved there as checkpoints.
//!
//! # Checkpoints
//!
//! A partition's progress is its checkpoint in PostgreSQL: the next offset,
//! the engine snapshot and the per-source positions
//! ([`PartitionCheckpoint`]). The driver hands [`TripsTopic::commit`] the
//! dirty partitions' checkpoints only once every window result and dead
//! letter before them has been acknowledged ([`crate::flow`]); the offsets
//! are committed to Kafka right after, for lag monitoring and the
//! rebalance callback. The checkpoint, not the Kafka offset, is where a
//! partition resumes: on assignment it is loaded and handed to the
//! transform, and the messages before its offset are skipped.
//!
//! Rebalances run inside the consumer's poll, before the message it
//! returns: that message waits until the transform has the new state.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::message::{BorrowedMessage, Headers};

use crate::dead_letter::{DeadLetter, RawMessage};
use crate::error::StageError;
use crate::flow::{BatchSource, Partition, Pull, Rebalance};
use crate::io::codec::{self, DecodeError, TripBatchMessage, TripsContent};
use crate::io::kafka::{Assignment, KafkaSettings};
use crate::io::postgres::{Checkpoint, PgStore};
use crate::metrics::Metrics;
use crate::source::consumer::GroupConsumer;
use crate::trip::Micros;
use crate::window::EngineSnapshot;

/// How long one wait for a message lasts before the source reports idle.
const POLL: Duration = Duration::from_millis(50);

/// Fetch sizes of the trips consumer. A broker answers a fetch as soon as
/// `fetch.min.bytes` are there; with the default of one byte each round trip
/// brought one record batch (tansu), and the stage waited on round trips,
/// not on CPU. Asking for 4 MiB, waited for at most 100 ms, lets one round
/// trip carry many batches: 1.4–1.6× the rows/s on the 5M-row month. Both
/// are fields of the Fetch request every Kafka broker honours. The cost is
/// up to 100 ms more before a trickling topic's trips are windowed; a
/// window's close time, which results are stamped with, comes after it.
/// The prefetch queue is capped at 16 MiB (librdkafka's default is 64 MiB:
/// with big fetches it fills up, and the stage then peaked at 263–425 MiB
/// against the pod's default memory limit of 512 MiB). A full queue makes
/// librdkafka wait `fetch.queue.backoff.ms` before fetching again, 1 s by
/// default, which with the cap alone cut the stage to 173 k rows/s; 10 ms
/// keeps it fed: 1.04–1.06 M rows/s at a peak of 90–97 MiB (64 MiB queue:
/// 0.89–1.00 M rows/s). Those two are client-side settings, so any broker
/// will do.
const FETCH: [(&str, &str); 4] = [
    ("fetch.min.bytes", "4194304"),
    ("fetch.wait.max.ms", "100"),
    ("queued.max.messages.kbytes", "16384"),
    ("fetch.queue.backoff.ms", "10"),
];

/// Schemas of the trips topic this stage reads (see [`codec`] for why
/// `trip/2` still is).
const KNOWN_SCHEMAS: [&str; 3] = [
    codec::TRIP_BATCH_SCHEMA,
    codec::TRIP_SCHEMA,
    codec::WATERMARK_SCHEMA,
];

/// One message of the trips topic, decoded, with where it came from.
#[derive(Debug)]
pub struct TripsMessage {
    pub from: Origin,
    pub content: Content,
}

/// Where a message came from.
#[derive(Debug)]
pub struct Origin {
    pub partition: Partition,
    pub offset: i64,
    /// The message key, kept for the dead letters of its trips.
    pub key: Option<Vec<u8>>,
}

/// `topic/partition@offset`, as dead letters name a message.
impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (topic, partition) = &self.partition;
        write!(f, "{topic}/{partition}@{}", self.offset)
    }
}

#[derive(Debug)]
pub enum Content {
    Trips(Box<TripBatchMessage>),
    /// Event time has reached this watermark on every source in flight.
    Watermark(Micros),
    /// The message does not decode; the letter carries its bytes.
    Malformed(Box<DeadLetter>),
}

/// A partition's window state as of a checkpoint, decoded.
#[derive(Debug, Clone)]
pub struct PartitionCheckpoint {
    pub partition: Partition,
    /// The first offset not covered.
    pub next_offset: i64,
    /// Per source, the last (pickup, landing id) counted.
    pub positions: BTreeMap<String, (Micros, i64)>,
    /// `None` for a partition never checkpointed: a new engine. Stored as
    /// JSON `null` then, so what is saved always loads back as it was.
    pub snapshot: Option<EngineSnapshot>,
}

pub struct TripsTopic {
    consumer: GroupConsumer,
    store: PgStore,
    group: String,
    /// With `--exit-when-idle`: this long without a message ends the input.
    idle: Option<Duration>,
    last_message: Instant,
    metrics: Metrics,
    /// The partitions held, each with the next offset to hand on.
    held: HashMap<Partition, i64>,
    /// Rebalances taken from the consumer, not yet handed to the transform.
    changes: VecDeque<Assignment>,
    /// A message that came after those rebalances.
    pending: Option<TripsMessage>,
    /// Trips handed on (and malformed messages, one each).
    pub records: u64,
    pub checkpoints: u64,
}

impl TripsTopic {
    pub fn subscribe(
        kafka: &KafkaSettings,
        store: PgStore,
        group: &str,
        topic: &str,
        idle: Option<Duration>,
        metrics: &Metrics,
    ) -> Result<Self, StageError> {
        let mut settings = kafka.clone();
        // Before the operator's own properties, which still win.
        let fetch = FETCH
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        settings.extra.splice(0..0, fetch);
        Ok(Self {
            consumer: GroupConsumer::subscribe(&settings, group, topic, metrics)?,
            store,
            group: group.to_owned(),
            idle,
            last_message: Instant::now(),
            metrics: metrics.clone(),
            held: HashMap::new(),
            changes: VecDeque::new(),
            pending: None,
            records: 0,
            checkpoints: 0,
        })
    }

    /// The last synchronous commit of the offsets already checkpointed,
    /// before leaving the group; a failure only delays what lag monitoring
    /// sees.
    pub fn close(&self) {
        if let Err(e) = self.consumer.commit(&self.consumer.ready(), true) {
            tracing::warn!(error = %e, "final offset commit failed");
        }
    }

    /// Whether a message at `offset` of `partition` is still to be handed on.
    fn wanted(&self, partition: &Partition, offset: i64) -> bool {
        // Not held: fetched before its partition was revoked. Before the
        // next offset: already in the restored state.
        self.held.get(partition).is_some_and(|&next| offset >= next)
    }

    /// The oldest rebalance not handed on yet, as the transform takes it;
    /// `None` when it changes nothing.
    async fn rebalance(
        &mut self,
        change: &Assignment,
    ) -> Result<Option<Rebalance<Vec<PartitionCheckpoint>>>, StageError> {
        match change {
            Assignment::Revoked(parts) => {
                let lost: Vec<Partition> = parts
                    .iter()
                    .filter(|p| self.held.remove(*p).is_some())
                    .cloned()
                    .collect();
                Ok((!lost.is_empty()).then_some(Rebalance::Revoked(lost)))
            }
            Assignment::Assigned(parts) => {
                let mut gained = Vec::new();
                for p in parts.iter().filter(|p| !self.held.contains_key(*p)) {
                    gained.push(self.load(p).await?);
                }
                for cp in &gained {
                    self.held.insert(cp.partition.clone(), cp.next_offset);
                }
                // Idle time counts from when there is something to read.
                self.last_message = Instant::now();
                Ok((!gained.is_empty()).then_some(Rebalance::Assigned(gained)))
            }
        }
    }

    async fn load(&self, partition: &Partition) -> Result<PartitionCheckpoint, StageError> {
        let (topic, number) = partition;
        let Some(cp) = self
            .store
            .load_checkpoint(&self.group, topic, *number)
            .await?
        else {
            return Ok(PartitionCheckpoint {
                partition: partition.clone(),
                next_offset: 0,
                positions: BTreeMap::new(),
                snapshot: None,
            });
        };
        let bad = |e: serde_json::Error| StageError::Other {
            what: "decoding checkpoint",
            detail: format!("{topic}/{number}: {e}"),
        };
        Ok(PartitionCheckpoint {
            partition: partition.clone(),
            next_offset: cp.next_offset,
            positions: serde_json::from_str(&cp.source_positions).map_err(bad)?,
            snapshot: serde_json::from_slice(&cp.snapshot).map_err(bad)?,
        })
    }

    /// Hands `message` on, or drops it when it is not wanted.
    fn release(&mut self, message: TripsMessage) -> Option<TripsMessage> {
        let from = &message.from;
        if !self.wanted(&from.partition, from.offset) {
            return None;
        }
        self.held.insert(from.partition.clone(), from.offset + 1);
        let records = match &message.content {
            Content::Trips(t) => t.len() as u64,
            Content::Watermark(_) => 0,
            Content::Malformed(_) => 1,
        };
        self.metrics.records_in(records);
        self.records += records;
        Some(message)
    }
}

/// Decodes a message of the trips topic, checking its schema header first.
fn decode(msg: &BorrowedMessage<'_>) -> TripsMessage {
    let payload = msg.payload().unwrap_or_default();
    let schema = msg
        .headers()
        .and_then(|h| h.iter().find(|h| h.key == codec::SCHEMA_HEADER))
        .and_then(|h| h.value);
    let mut trips = Box::<TripBatchMessage>::default();
    let decoded = match schema {
        Some(s) if !KNOWN_SCHEMAS.iter().any(|k| k.as_bytes() == s) => Err(DecodeError::Invalid {
            field: "schema header",
            detail: format!(
                "{:?} is none of {}",
                String::from_utf8_lossy(s),
                KNOWN_SCHEMAS.join(", ")
            ),
        }),
        _ => codec::decode_trips_topic(payload, &mut trips),
    };
    let from = Origin {
        partition: (msg.topic().to_owned(), msg.partition()),
        offset: msg.offset(),
        key: msg.key().map(<[u8]>::to_vec),
    };
    let content = match decoded {
        Ok(TripsContent::Trips) => Content::Trips(trips),
        Ok(TripsContent::Watermark(w)) => Content::Watermark(w),
        Err(e) => {
            let field = match &e {
                DecodeError::Invalid { field, .. } => Some(*field),
                _ => None,
            };
            Content::Malformed(Box::new(DeadLetter::message(
                from.to_string(),
                e.reason(),
                field,
                e.to_string(),
                RawMessage {
                    key: from.key.clone(),
                    value: payload.to_vec(),
                },
            )))
        }
    };
    TripsMessage { from, content }
}

impl BatchSource for TripsTopic {
    type Batch = TripsMessage;
    type State = Vec<PartitionCheckpoint>;
    type Error = StageError;

    async fn pull(&mut self) -> Result<Pull<TripsMessage, Vec<PartitionCheckpoint>>, StageError> {
        loop {
            if let Some(change) = self.changes.front().cloned() {
                let taken = self.rebalance(&change).await?;
                // Only once its state is in hand, so a cancelled pull
                // loses no rebalance.
                self.changes.pop_front();
                match taken {
                    Some(r) => return Ok(Pull::Rebalance(r)),
                    None => continue,
                }
            }
            if let Some(message) = self.pending.take() {
                match self.release(message) {
                    Some(m) => {
                        return Ok(Pull::Batch {
                            batch: m,
                            barrier: false,
                        });
                    }
                    None => continue,
                }
            }
            let msg = self.consumer.recv(POLL).await;
            self.changes.extend(self.consumer.changes());
            let Some(msg) = msg else {
                if !self.changes.is_empty() {
                    continue;
                }
                let drained = self.idle.is_some_and(|idle| {
                    self.last_message.elapsed() >= idle && !self.held.is_empty()
                });
                return Ok(if drained { Pull::End } else { Pull::Idle });
            };
            self.last_message = Instant::now();
            // Skipped without decoding unless a rebalance may still make it wanted.
            let partition = (msg.topic().to_owned(), msg.partition());
            if self.changes.is_empty() && !self.wanted(&partition, msg.offset()) {
                continue;
            }
            self.pending = Some(decode(&msg));
        }
    }

    async fn commit(&mut self, state: Vec<PartitionCheckpoint>) -> Result<(), StageError> {
        if state.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let encode_err = |e: serde_json::Error| StageError::Other {
            what: "encoding checkpoint",
            detail: e.to_string(),
        };
        let mut checkpoints = Vec::with_capacity(state.len());
        for cp in &state {
            checkpoints.push(Checkpoint {
                topic: cp.partition.0.clone(),
                partition: cp.partition.1,
                next_offset: cp.next_offset,
                source_positions: serde_json::to_string(&cp.positions).map_err(encode_err)?,
                snapshot: serde_json::to_vec(&cp.snapshot).map_err(encode_err)?,
            });
        }
        self.store
            .save_checkpoints(&self.group, &checkpoints)
            .await?;
        let offsets: HashMap<Partition, i64> = state
            .into_iter()
            .map(|cp| (cp.partition, cp.next_offset))
            .collect();
        self.consumer.mark_ready(&offsets);
        // The checkpoint is authoritative; a failed commit only delays what
        // lag monitoring sees.
        if let Err(e) = self.consumer.commit(&offsets, false) {
            tracing::warn!(error = %e, "offset commit failed");
        }
        self.checkpoints += 1;
        self.metrics.batch("checkpoint", started.elapsed());
        Ok(())
    }
}
