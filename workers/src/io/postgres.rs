//! The PostgreSQL landing store: raw trips landed idempotently with `COPY`,
//! per-source ingest progress, rejected records, and the outbox the relay
//! publishes from.
//!
//! Landing a batch is one transaction: the source's progress is read, the
//! rows past it are copied (binary `COPY`) straight into the landing table,
//! rejected records are added in one statement, and the progress is
//! advanced. Two batches of a source may be written at once on two
//! connections and are committed in order. The relay reads each completed
//! source as an outbox in (pickup, id) order: a landed source no longer
//! changes, so that order is stable and a keyset position in it survives
//! restarts.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;

use sqlx::migrate::{Migration, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow, PgSslMode};
use sqlx::{AssertSqlSafe, ConnectOptions, PgConnection, Postgres, Row, SqlSafeStr, Transaction};
use taxistream_crds::pipeline::{Dataset, PgSslMode as SslMode};

use crate::config::Secret;
use crate::dead_letter::Reason;
use crate::trip::{Micros, NULL_I32, SourceRef, TripBatch, micros_from_naive, naive_from_micros};

mod binary_copy;

/// Errors of the landing store, naming the table or source involved.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL is never included: it holds the password.
    #[error("invalid PostgreSQL URL (value not shown): {0}")]
    Url(String),
    #[error("invalid identifier {0:?}: must match [a-z_][a-z0-9_]{{0,62}}")]
    Identifier(String),
    #[error("connecting to PostgreSQL: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("migrating {table}: {source}")]
    Migrate {
        table: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("{what} ({table}): {source}")]
    Query {
        what: &'static str,
        table: String,
        source: sqlx::Error,
    },
    #[error("{table} row id {id}: {detail}")]
    BadRow {
        table: String,
        id: i64,
        detail: String,
    },
    #[error("{table}: source {input:?} was not registered before landing it")]
    Unregistered { table: String, input: String },
}

/// Maps a failed query on `table` to [`PgError::Query`].
fn query_err<'a>(table: &'a str, what: &'static str) -> impl FnOnce(sqlx::Error) -> PgError + 'a {
    move |source| PgError::Query {
        what,
        table: table.to_owned(),
        source,
    }
}

/// Embedded migration templates (see `workers/migrations/`).
static TEMPLATES: Migrator = sqlx::migrate!("./migrations");

fn valid_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && s.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn ssl_mode(mode: SslMode) -> PgSslMode {
    match mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        SslMode::Require => PgSslMode::Require,
        SslMode::VerifyCa => PgSslMode::VerifyCa,
        SslMode::VerifyFull => PgSslMode::VerifyFull,
    }
}

/// Connection parameters of the landing store.
#[derive(Debug, Clone)]
pub struct PgSettings {
    pub url: Secret,
    /// `None` keeps whatever `sslmode` the URL names.
    pub ssl_mode: Option<SslMode>,
    pub ca_file: Option<String>,
    pub schema: String,
    pub table: String,
}

/// Result of landing one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Landed {
    /// Rows new to the table.
    pub inserted: u64,
    /// Rows already present from an earlier run (same source identity).
    pub duplicates: u64,
}

/// Rows read from the outbox, column by column: one source, one dataset.
#[derive(Debug, Clone, Default)]
pub struct OutboxBatch {
    /// Landing id of each row.
    pub ids: Vec<i64>,
    pub trips: TripBatch,
}

/// The landing store of one pipeline.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// For sessions outside the pool (source locks).
    options: PgConnectOptions,
    schema: String,
    table: String,
    /// `schema.table`
    qualified: String,
}

const COLUMNS: &str = "source, source_row, dataset, vendor_id, pickup, dropoff, passenger_count, \
    trip_distance, ratecode_id, store_and_fwd, pu_location_id, do_location_id, payment_type, \
    fare_amount, extra, mta_tax, tip_amount, tolls_amount, improvement_surcharge, total_amount, \
    congestion_surcharge, airport_fee, cbd_congestion_fee, ehail_fee, trip_type, refund";

impl PgStore {
    /// Connects (TLS as configured) and applies pending migrations.
    pub async fn connect(settings: &PgSettings, max_connections: u32) -> Result<Self, PgError> {
        for ident in [&settings.schema, &settings.table] {
            if !valid_identifier(ident) {
                return Err(PgError::Identifier(ident.clone()));
            }
        }
        let mut opts = PgConnectOptions::from_str(settings.url.expose())
            .map_err(|e| PgError::Url(redact(&e.to_string(), &settings.url)))?
            .application_name("taxistream-worker");
        if let Some(mode) = settings.ssl_mode {
            opts = opts.ssl_mode(ssl_mode(mode));
        }
        if let Some(ca) = &settings.ca_file {
            opts = opts.ssl_root_cert(Path::new(ca));
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(30))
            .connect_with(opts.clone())
            .await
            .map_err(PgError::Connect)?;
        let store = Self {
            pool,
            options: opts,
            qualified: format!("{}.{}", settings.schema, settings.table),
            schema: settings.schema.clone(),
            table: settings.table.clone(),
        };
        store.migrate().await?;
        Ok(store)
    }

    fn migrator(&self) -> Migrator {
        let migrations = TEMPLATES
            .iter()
            .map(|m| {
                let sql = m
                    .sql
                    .as_str()
                    .replace("__SCHEMA__", &self.schema)
                    .replace("__TABLE__", &self.table);
                Migration::new(
                    m.version,
                    m.description.clone(),
                    m.migration_type,
                    AssertSqlSafe(sql).into_sql_str(),
                    m.no_tx,
                )
            })
            .collect();
        let mut migrator = Migrator::with_migrations(migrations);
        // One history table per landing table, so two pipelines sharing a
        // database (or a schema) migrate independently.
        migrator.dangerous_set_table_name(format!(
            "{}._taxistream_{}_migrations",
            self.schema, self.table
        ));
        migrator.create_schema(Cow::Owned(self.schema.clone()));
        migrator
    }

    async fn migrate(&self) -> Result<(), PgError> {
        self.migrator()
            .run(&self.pool)
            .await
            .map_err(|source| PgError::Migrate {
                table: self.qualified.clone(),
                source,
            })
    }

    fn query_err(&self, what: &'static str) -> impl FnOnce(sqlx::Error) -> PgError + '_ {
        query_err(&self.qualified, what)
    }

    /// The pool, for tests and tools that inspect the store.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// `schema.table` of the landing table.
    pub fn qualified_table(&self) -> &str {
        &self.qualified
    }

    /// Where landing of `source` stands: the next row to land and whether
    /// the source was completed.
    pub async fn progress(&self, source: &str) -> Result<Option<(u64, bool)>, PgError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT next_row, completed FROM {}_ingest_progress WHERE source = $1",
            self.qualified
        )))
        .bind(source)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_err("read ingest progress"))?;
        Ok(row.map(|r| (r.get::<i64, _>(0).max(0) as u64, r.get::<bool, _>(1))))
    }

    /// Marks `source` as fully landed; later runs skip it without reading it.
    pub async fn complete(&self, source: &str, next_row: u64) -> Result<(), PgError> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {t}_ingest_progress (source, next_row, completed) VALUES ($1, $2, true) \
             ON CONFLICT (source) DO UPDATE SET completed = true, \
             next_row = GREATEST({t}_ingest_progress.next_row, EXCLUDED.next_row), updated_at = now()",
            t = self.qualified
        )))
        .bind(source)
        .bind(next_row as i64)
        .execute(&self.pool)
        .await
        .map_err(self.query_err("complete ingest progress"))?;
        Ok(())
    }

    /// Lands the rows of `trips` (all from `source`, in row order) and
    /// rejected records, and advances the source's progress to `next_row`,
    /// in one transaction: [`PgStore::prepare`] then [`PreparedLanding::commit`].
    pub async fn land(
        &self,
        source: &str,
        trips: &TripBatch,
        rejected: &[(SourceRef, Reason, String)],
        next_row: u64,
    ) -> Result<Landed, PgError> {
        self.register(source).await?;
        self.prepare(source, trips, rejected, next_row)
            .await?
            .commit()
            .await
    }

    /// Gives `source` its progress row (and with it its source key), if it
    /// has none yet. Committed on its own, before any batch of the source:
    /// were the first two batches, prepared at once, to race to create it,
    /// the second one's transaction could win, and the first would wait on
    /// a transaction that commits only after it.
    pub async fn register(&self, source: &str) -> Result<(), PgError> {
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {}_ingest_progress (source, next_row) VALUES ($1, 0) \
             ON CONFLICT (source) DO NOTHING",
            self.qualified
        )))
        .bind(source)
        .execute(&self.pool)
        .await
        .map_err(self.query_err("register source"))?;
        Ok(())
    }

    /// Writes a batch into an open transaction without committing it (the
    /// source must have been [registered](PgStore::register)): the
    /// rows of `trips` (all from `source`, in row order) past the source's
    /// recorded progress, and the rejected records past it. Rows below that
    /// progress were landed (or dead-lettered) by an earlier transaction
    /// and are counted as duplicates without touching the table.
    ///
    /// The progress row is not locked until the commit, so the next batch
    /// of the same source can be prepared on a second connection while this
    /// one is still being written; committing them in order keeps the
    /// committed progress a prefix of the source. Should another process
    /// land the same rows at the same time (a replica that lost its claim),
    /// the source identity makes the later one fail instead of landing
    /// them twice.
    pub async fn prepare(
        &self,
        source: &str,
        trips: &TripBatch,
        rejected: &[(SourceRef, Reason, String)],
        next_row: u64,
    ) -> Result<PreparedLanding, PgError> {
        let mut tx = self.pool.begin().await.map_err(self.query_err("begin"))?;
        let (landed_to, source_key): (i64, i64) = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT next_row, source_key FROM {}_ingest_progress WHERE source = $1",
            self.qualified
        )))
        .bind(source)
        .fetch_optional(&mut *tx)
        .await
        .map_err(self.query_err("read ingest progress"))?
        .ok_or_else(|| PgError::Unregistered {
            table: self.qualified.clone(),
            input: source.to_owned(),
        })?;
        let landed_to = landed_to.max(0) as u64;
        let new: Vec<usize> = (0..trips.len())
            .filter(|&i| trips.row[i] >= landed_to)
            .collect();
        let mut inserted = 0;
        if !new.is_empty() {
            inserted = self
                .copy_rows(&mut tx, (source, source_key), trips, &new)
                .await?;
        }
        let rejected: Vec<_> = rejected
            .iter()
            .filter(|(src, _, _)| src.row >= landed_to)
            .collect();
        if !rejected.is_empty() {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {}_dead_letters (source, source_row, reason, detail) \
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[]) \
                 ON CONFLICT (source, source_row) DO NOTHING",
                self.qualified
            )))
            .bind(
                rejected
                    .iter()
                    .map(|r| r.0.source.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(rejected.iter().map(|r| r.0.row as i64).collect::<Vec<_>>())
            .bind(rejected.iter().map(|r| r.1.as_str()).collect::<Vec<_>>())
            .bind(rejected.iter().map(|r| r.2.as_str()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(self.query_err("insert dead letters"))?;
        }
        // Past every row handled here, whatever the caller passed: rows
        // below the progress must never be landed again.
        let next_row = new
            .iter()
            .map(|&i| trips.row[i])
            .chain(rejected.iter().map(|r| r.0.row))
            .max()
            .map_or(next_row, |last| next_row.max(last + 1));
        Ok(PreparedLanding {
            tx,
            qualified: self.qualified.clone(),
            source: source.to_owned(),
            next_row,
            landed: Landed {
                inserted,
                duplicates: (trips.len() - new.len()) as u64,
            },
        })
    }

    /// Copies rows `rows` of `trips` into the landing table in binary
    /// `COPY` format, under the source's name and key, sent in pieces so
    /// the server inserts the first while the next is encoded. Returns the
    /// rows copied.
    async fn copy_rows(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        source: (&str, i64),
        trips: &TripBatch,
        rows: &[usize],
    ) -> Result<u64, PgError> {
        const PIECE_BYTES: usize = 1 << 20;
        let mut copy = tx
            .copy_in_raw(&format!(
                "COPY {} (source_key, {COLUMNS}) FROM STDIN (FORMAT binary)",
                self.qualified
            ))
            .await
            .map_err(self.query_err("start COPY"))?;
        let mut buf = Vec::with_capacity(PIECE_BYTES + 1024);
        binary_copy::header(&mut buf);
        for &i in rows {
            binary_copy::row(&mut buf, source, trips, i);
            if buf.len() >= PIECE_BYTES {
                copy.send(buf.as_slice())
                    .await
                    .map_err(self.query_err("COPY rows"))?;
                buf.clear();
            }
        }
        binary_copy::trailer(&mut buf);
        copy.send(buf.as_slice())
            .await
            .map_err(self.query_err("COPY rows"))?;
        copy.finish().await.map_err(self.query_err("finish COPY"))
    }

    /// Claims `source` for this process with a session-level advisory lock,
    /// so ingest replicas work on different sources at the same time. With
    /// `wait`, blocks until the current holder is done; without, returns
    /// `None` when another replica holds it. The claim ends when the
    /// returned lock is dropped (or the process dies: the session closes).
    pub async fn claim_source(
        &self,
        source: &str,
        wait: bool,
    ) -> Result<Option<SourceClaim>, PgError> {
        let mut conn = self.options.connect().await.map_err(PgError::Connect)?;
        let key = format!("taxistream.ingest.{}.{source}", self.qualified);
        let got = if wait {
            sqlx::query("SELECT pg_advisory_lock(hashtext($1))")
                .bind(&key)
                .execute(&mut conn)
                .await
                .map_err(self.query_err("wait for source claim"))?;
            true
        } else {
            sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock(hashtext($1))")
                .bind(&key)
                .fetch_one(&mut conn)
                .await
                .map_err(self.query_err("claim source"))?
        };
        Ok(got.then_some(SourceClaim { _session: conn }))
    }

    /// Opens the relay's transaction: locks its progress row (so a second
    /// relay replica waits as a standby) and returns what it last recorded.
    pub async fn begin_relay(&self, relay: &str) -> Result<RelayTx, PgError> {
        let mut tx = self.pool.begin().await.map_err(self.query_err("begin"))?;
        // The outbox reads must walk the (source_key, pickup, id) index.
        // Before the landing table has statistics (a month landed moments
        // ago, not yet analyzed), or while they predate a new source, the
        // planner expects a few hundred rows and would sort the whole rest
        // of the source on every round: 0.5 s per round on a 1M-row month
        // instead of 7 ms.
        sqlx::query("SET LOCAL enable_sort = off")
            .execute(&mut *tx)
            .await
            .map_err(self.query_err("begin"))?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {}_relay_progress (relay) VALUES ($1) ON CONFLICT (relay) DO NOTHING",
            self.qualified
        )))
        .bind(relay)
        .execute(&mut *tx)
        .await
        .map_err(self.query_err("create relay progress"))?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT watermark, key_groups FROM {}_relay_progress WHERE relay = $1 FOR UPDATE",
            self.qualified
        )))
        .bind(relay)
        .fetch_one(&mut *tx)
        .await
        .map_err(self.query_err("lock relay progress"))?;
        Ok(RelayTx {
            tx,
            watermark: row.get(0),
            key_groups: row.get(1),
            relay: relay.to_owned(),
            qualified: self.qualified.clone(),
        })
    }

    /// Rows landed so far.
    pub async fn count(&self) -> Result<i64, PgError> {
        sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM {}",
            self.qualified
        )))
        .fetch_one(&self.pool)
        .await
        .map_err(self.query_err("count"))
    }
}

/// The aggregate stage's saved state of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
    /// Serialised per-source positions of the last counted trips (JSON).
    pub source_positions: String,
    /// Serialised engine snapshot.
    pub snapshot: Vec<u8>,
}

impl PgStore {
    /// The checkpoint of `topic`/`partition` for `group`, if one was saved.
    pub async fn load_checkpoint(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<Checkpoint>, PgError> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT next_offset, source_positions, snapshot FROM {}_aggregate_checkpoints \
             WHERE consumer_group = $1 AND topic = $2 AND kafka_partition = $3",
            self.qualified
        )))
        .bind(group)
        .bind(topic)
        .bind(partition)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.query_err("load checkpoint"))?;
        Ok(row.map(|r| Checkpoint {
            topic: topic.to_owned(),
            partition,
            next_offset: r.get(0),
            source_positions: r.get(1),
            snapshot: r.get(2),
        }))
    }

    /// Saves checkpoints of several partitions atomically.
    pub async fn save_checkpoints(
        &self,
        group: &str,
        checkpoints: &[Checkpoint],
    ) -> Result<(), PgError> {
        if checkpoints.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(self.query_err("begin"))?;
        for c in checkpoints {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {}_aggregate_checkpoints \
                 (consumer_group, topic, kafka_partition, next_offset, source_positions, snapshot) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (consumer_group, topic, kafka_partition) DO UPDATE SET \
                 next_offset = EXCLUDED.next_offset, source_positions = EXCLUDED.source_positions, \
                 snapshot = EXCLUDED.snapshot, updated_at = now()",
                self.qualified
            )))
            .bind(group)
            .bind(&c.topic)
            .bind(c.partition)
            .bind(c.next_offset)
            .bind(&c.source_positions)
            .bind(&c.snapshot)
            .execute(&mut *tx)
            .await
            .map_err(self.query_err("save checkpoint"))?;
        }
        tx.commit()
            .await
            .map_err(self.query_err("commit checkpoints"))
    }
}

/// A source claimed by [`PgStore::claim_source`]; dropping it closes the
/// session that holds the lock.
pub struct SourceClaim {
    _session: PgConnection,
}

/// A batch written by [`PgStore::prepare`], not committed yet.
pub struct PreparedLanding {
    tx: Transaction<'static, Postgres>,
    qualified: String,
    source: String,
    next_row: u64,
    landed: Landed,
}

impl PreparedLanding {
    /// Advances the source's progress and commits. Batches of one source
    /// must be committed in the order they were read.
    pub async fn commit(mut self) -> Result<Landed, PgError> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {}_ingest_progress SET next_row = GREATEST(next_row, $2), updated_at = now() \
             WHERE source = $1",
            self.qualified
        )))
        .bind(&self.source)
        .bind(self.next_row as i64)
        .execute(&mut *self.tx)
        .await
        .map_err(query_err(&self.qualified, "advance ingest progress"))?;
        self.tx
            .commit()
            .await
            .map_err(query_err(&self.qualified, "commit landing"))?;
        Ok(self.landed)
    }
}

/// The relay's open transaction over its progress row.
pub struct RelayTx {
    tx: Transaction<'static, Postgres>,
    /// Last watermark sent, µs.
    pub watermark: Option<Micros>,
    /// Key groups pinned at the first publication.
    pub key_groups: Option<i32>,
    relay: String,
    qualified: String,
}

/// A source the relay has not finished, as of the open transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelaySource {
    pub source: String,
    /// Fully landed: its order can no longer change.
    pub completed: bool,
    /// Last published (pickup, id).
    pub position: Option<(Micros, i64)>,
    /// The next row in (pickup, id) order after `position`; for a source
    /// still landing, its earliest landed row so far.
    pub next: Option<(Micros, i64)>,
}

/// What a relay round changes in its progress, committed with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RelayProgress {
    /// New (pickup, id) positions by source.
    pub positions: Vec<(String, (Micros, i64))>,
    /// Sources completed and fully published.
    pub finished: Vec<String>,
    pub watermark: Option<Micros>,
    pub key_groups: Option<i32>,
}

fn naive(us: Micros) -> NaiveDateTime {
    naive_from_micros(us).unwrap_or_default()
}

impl RelayTx {
    /// The sources not finished yet: every completed one, and the ones still
    /// landing that landed a batch within `idle` (an ingest that stopped
    /// must not hold event time back forever).
    pub async fn sources(&mut self, idle: Duration) -> Result<Vec<RelaySource>, PgError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT p.source, p.completed, r.last_pickup, r.last_id, n.pickup, n.id \
             FROM {t}_ingest_progress p \
             LEFT JOIN {t}_relay_sources r ON r.relay = $1 AND r.source = p.source \
             LEFT JOIN LATERAL (SELECT x.pickup, x.id FROM {t} x WHERE x.source_key = p.source_key \
               AND (x.pickup, x.id) > (COALESCE(r.last_pickup, '-infinity'), COALESCE(r.last_id, 0)) \
               ORDER BY x.pickup, x.id LIMIT 1) n ON true \
             WHERE NOT COALESCE(r.finished, false) \
               AND (p.completed OR p.updated_at > now() - make_interval(secs => $2)) \
             ORDER BY p.source",
            t = self.qualified
        )))
        .bind(&self.relay)
        .bind(idle.as_secs_f64())
        .fetch_all(&mut *self.tx)
        .await
        .map_err(query_err(&self.qualified, "read relay sources"))?;
        let pair = |p: Option<NaiveDateTime>, id: Option<i64>| {
            p.zip(id).map(|(p, id)| (micros_from_naive(p), id))
        };
        Ok(rows
            .iter()
            .map(|r| RelaySource {
                source: r.get(0),
                completed: r.get(1),
                position: pair(r.get(2), r.get(3)),
                next: pair(r.get(4), r.get(5)),
            })
            .collect())
    }

    /// The latest pickup published from any source, if any.
    pub async fn published_high(&mut self) -> Result<Option<Micros>, PgError> {
        let high: Option<NaiveDateTime> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT max(last_pickup) FROM {}_relay_sources WHERE relay = $1",
            self.qualified
        )))
        .bind(&self.relay)
        .fetch_one(&mut *self.tx)
        .await
        .map_err(query_err(&self.qualified, "read relay sources"))?;
        Ok(high.map(micros_from_naive))
    }

    /// Up to `limit` rows of `source` after `after` in (pickup, id) order,
    /// with pickups no later than `up_to`, into `out` (cleared first). The
    /// rows stream into the columns as they arrive; a row of another
    /// dataset than the first (a source has one) ends the batch early, so a
    /// batch never mixes datasets.
    pub async fn fetch_ordered(
        &mut self,
        source: &str,
        after: Option<(Micros, i64)>,
        up_to: Option<Micros>,
        limit: i64,
        out: &mut OutboxBatch,
    ) -> Result<(), PgError> {
        use futures::TryStreamExt;
        out.ids.clear();
        out.trips.clear();
        if *out.trips.source != *source {
            out.trips.source = Arc::from(source);
        }
        let (after_pickup, after_id) = after.map_or((None, 0), |(p, id)| (Some(naive(p)), id));
        let sql = format!(
            // Infinite bounds rather than `IS NULL OR`, which would keep
            // the planner from a range scan of the (source_key, pickup, id) index.
            "SELECT {OUTBOX_COLUMNS} FROM {t} \
             WHERE source_key = (SELECT source_key FROM {t}_ingest_progress WHERE source = $1) \
             AND (pickup, id) > (COALESCE($2, '-infinity'::timestamp), $3) \
             AND pickup <= COALESCE($4, 'infinity'::timestamp) \
             ORDER BY pickup, id LIMIT $5",
            t = self.qualified
        );
        let mut rows = sqlx::query(AssertSqlSafe(sql))
            .bind(source)
            .bind(after_pickup)
            .bind(after_id)
            .bind(up_to.map(naive))
            .bind(limit)
            .fetch(&mut *self.tx);
        while let Some(r) = rows
            .try_next()
            .await
            .map_err(query_err(&self.qualified, "read outbox"))?
        {
            if !push_outbox_row(&r, out, &self.qualified)? {
                break;
            }
        }
        Ok(())
    }

    /// Records the round's progress and commits, in the transaction that
    /// read the rows.
    pub async fn commit(mut self, progress: &RelayProgress) -> Result<(), PgError> {
        for (source, (pickup, id)) in &progress.positions {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {}_relay_sources (relay, source, last_pickup, last_id) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (relay, source) DO UPDATE SET \
                 last_pickup = EXCLUDED.last_pickup, last_id = EXCLUDED.last_id, updated_at = now()",
                self.qualified
            )))
            .bind(&self.relay)
            .bind(source)
            .bind(naive(*pickup))
            .bind(id)
            .execute(&mut *self.tx)
            .await
            .map_err(query_err(&self.qualified, "advance relay position"))?;
        }
        for source in &progress.finished {
            // A source with no valid row has no position yet: its row is
            // created finished, at the epoch (it publishes nothing).
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {}_relay_sources (relay, source, last_pickup, last_id, finished) \
                 VALUES ($1, $2, 'epoch', 0, true) ON CONFLICT (relay, source) DO UPDATE SET \
                 finished = true, updated_at = now()",
                self.qualified
            )))
            .bind(&self.relay)
            .bind(source)
            .execute(&mut *self.tx)
            .await
            .map_err(query_err(&self.qualified, "finish relay source"))?;
        }
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE {}_relay_progress SET watermark = COALESCE($2, watermark), \
             key_groups = COALESCE(key_groups, $3), updated_at = now() WHERE relay = $1",
            self.qualified
        )))
        .bind(&self.relay)
        .bind(progress.watermark)
        .bind(progress.key_groups)
        .execute(&mut *self.tx)
        .await
        .map_err(query_err(&self.qualified, "advance relay progress"))?;
        self.tx
            .commit()
            .await
            .map_err(query_err(&self.qualified, "commit relay progress"))
    }
}

fn dataset_from(s: &str) -> Option<Dataset> {
    Some(match s {
        "yellow" => Dataset::Yellow,
        "green" => Dataset::Green,
        "fhv" => Dataset::Fhv,
        "fhvhv" => Dataset::Fhvhv,
        _ => return None,
    })
}

/// Columns of an outbox read, in the order [`push_outbox_row`] takes them:
/// the source is the one asked for and the refund flag follows from the
/// amounts, so neither is read.
const OUTBOX_COLUMNS: &str = "id, source_row, dataset, vendor_id, pickup, dropoff, \
    passenger_count, trip_distance, ratecode_id, store_and_fwd, pu_location_id, do_location_id, \
    payment_type, fare_amount, extra, mta_tax, tip_amount, tolls_amount, improvement_surcharge, \
    total_amount, congestion_surcharge, airport_fee, cbd_congestion_fee, ehail_fee, trip_type";

/// Appends an outbox row to `out`'s columns, by position; `false` (and
/// nothing appended) when its dataset differs from the batch's first row.
fn push_outbox_row(r: &PgRow, out: &mut OutboxBatch, table: &str) -> Result<bool, PgError> {
    let id: i64 = r.try_get(0).map_err(|e| PgError::BadRow {
        table: table.to_owned(),
        id: 0,
        detail: e.to_string(),
    })?;
    let bad = |detail: String| PgError::BadRow {
        table: table.to_owned(),
        id,
        detail,
    };
    let get = |e: sqlx::Error| bad(e.to_string());
    let dataset_name: &str = r.try_get(2).map_err(get)?;
    let dataset =
        dataset_from(dataset_name).ok_or_else(|| bad(format!("dataset {dataset_name:?}")))?;
    let t = &mut out.trips;
    if out.ids.is_empty() {
        t.dataset = dataset;
    } else if t.dataset != dataset {
        return Ok(false);
    }
    let source_row: i64 = r.try_get(1).map_err(get)?;
    let i32n = |i: usize| -> Result<i32, PgError> {
        Ok(r.try_get::<Option<i32>, _>(i)
            .map_err(get)?
            .unwrap_or(NULL_I32))
    };
    let f64n = |i: usize| -> Result<f64, PgError> {
        Ok(r.try_get::<Option<f64>, _>(i)
            .map_err(get)?
            .unwrap_or(f64::NAN))
    };
    let f64v = |i: usize| -> Result<f64, PgError> { r.try_get(i).map_err(get) };
    let time =
        |i: usize| -> Result<Micros, PgError> { r.try_get(i).map(micros_from_naive).map_err(get) };
    // Every value is read before any column grows, so a bad row leaves
    // the columns the same length.
    let row = u64::try_from(source_row).map_err(|e| bad(e.to_string()))?;
    let vendor_id = i32n(3)?;
    let pickup = time(4)?;
    let dropoff = time(5)?;
    let passenger_count = i32n(6)?;
    let trip_distance = f64v(7)?;
    let ratecode_id = i32n(8)?;
    let store_and_fwd = match r.try_get::<Option<bool>, _>(9).map_err(get)? {
        Some(true) => 1,
        Some(false) => 0,
        None => -1,
    };
    let pu_location_id: i32 = r.try_get(10).map_err(get)?;
    let do_location_id: i32 = r.try_get(11).map_err(get)?;
    let payment_type = i32n(12)?;
    let amounts = [
        f64v(13)?,
        f64v(14)?,
        f64v(15)?,
        f64v(16)?,
        f64v(17)?,
        f64v(18)?,
        f64v(19)?,
    ];
    let fees = [f64n(20)?, f64n(21)?, f64n(22)?, f64n(23)?];
    let trip_type = i32n(24)?;
    out.ids.push(id);
    t.row.push(row);
    t.vendor_id.push(vendor_id);
    t.pickup.push(pickup);
    t.dropoff.push(dropoff);
    t.passenger_count.push(passenger_count);
    t.trip_distance.push(trip_distance);
    t.ratecode_id.push(ratecode_id);
    t.store_and_fwd.push(store_and_fwd);
    t.pu_location_id.push(pu_location_id);
    t.do_location_id.push(do_location_id);
    t.payment_type.push(payment_type);
    t.fare_amount.push(amounts[0]);
    t.extra.push(amounts[1]);
    t.mta_tax.push(amounts[2]);
    t.tip_amount.push(amounts[3]);
    t.tolls_amount.push(amounts[4]);
    t.improvement_surcharge.push(amounts[5]);
    t.total_amount.push(amounts[6]);
    t.congestion_surcharge.push(fees[0]);
    t.airport_fee.push(fees[1]);
    t.cbd_congestion_fee.push(fees[2]);
    t.ehail_fee.push(fees[3]);
    t.trip_type.push(trip_type);
    Ok(true)
}

/// Removes the URL (and its password) from a driver error message.
fn redact(message: &str, url: &Secret) -> String {
    message.replace(url.expose(), "***")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_checked() {
        assert!(valid_identifier("trips"));
        assert!(valid_identifier("_t2"));
        assert!(!valid_identifier("Trips"));
        assert!(!valid_identifier("t;drop table x"));
        assert!(!valid_identifier(""));
        assert!(!valid_identifier(&"a".repeat(64)));
    }
}
