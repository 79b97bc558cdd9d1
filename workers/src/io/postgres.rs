//! The PostgreSQL landing store: raw trips landed idempotently with `COPY`,
//! per-source ingest progress, rejected records, and the outbox the relay
//! publishes from.
//!
//! Landing a batch is one transaction: `COPY` into a session-temporary
//! staging table, then `INSERT … SELECT … ON CONFLICT (source, source_row) DO
//! NOTHING` into the landing table under a transaction-level advisory lock,
//! then the source's progress row. Ids are drawn under that lock, so they
//! follow landing order. The relay reads each completed source as an outbox
//! in (pickup, id) order: a landed source no longer changes, so that order
//! is stable and a keyset position in it survives restarts.

use std::borrow::Cow;
use std::fmt::Write as _;
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
use crate::trip::{
    Micros, NULL_I32, SourceRef, Trip, TripBatch, format_micros, micros_from_naive,
    naive_from_micros,
};

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

    /// Lands `trips` (all from `source`, in row order) and rejected records,
    /// and advances the source's progress to `next_row`, in one transaction.
    pub async fn land(
        &self,
        source: &str,
        trips: &[Trip],
        rejected: &[(SourceRef, Reason, String)],
        next_row: u64,
    ) -> Result<Landed, PgError> {
        let mut tx = self.pool.begin().await.map_err(self.query_err("begin"))?;
        let mut inserted = 0;
        if !trips.is_empty() {
            sqlx::query(AssertSqlSafe(format!(
                "CREATE TEMP TABLE IF NOT EXISTS taxistream_staging ON COMMIT DELETE ROWS \
                 AS SELECT {COLUMNS} FROM {} WITH NO DATA",
                self.qualified
            )))
            .execute(&mut *tx)
            .await
            .map_err(self.query_err("create staging table"))?;
            let mut copy = tx
                .copy_in_raw(&format!("COPY taxistream_staging ({COLUMNS}) FROM STDIN"))
                .await
                .map_err(self.query_err("start COPY"))?;
            let mut buf = String::with_capacity(trips.len() * 200);
            for t in trips {
                copy_row(&mut buf, t);
            }
            copy.send(buf.into_bytes())
                .await
                .map_err(self.query_err("COPY rows"))?;
            copy.finish().await.map_err(self.query_err("finish COPY"))?;
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(format!("taxistream.landing.{}", self.qualified))
                .execute(&mut *tx)
                .await
                .map_err(self.query_err("take landing lock"))?;
            inserted = sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {t} ({COLUMNS}) SELECT {COLUMNS} FROM taxistream_staging \
                 ORDER BY source_row ON CONFLICT (source, source_row) DO NOTHING",
                t = self.qualified
            )))
            .execute(&mut *tx)
            .await
            .map_err(self.query_err("insert landed rows"))?
            .rows_affected();
        }
        for (src, reason, detail) in rejected {
            sqlx::query(AssertSqlSafe(format!(
                "INSERT INTO {}_dead_letters (source, source_row, reason, detail) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (source, source_row) DO NOTHING",
                self.qualified
            )))
            .bind(&src.source)
            .bind(src.row as i64)
            .bind(reason.as_str())
            .bind(detail)
            .execute(&mut *tx)
            .await
            .map_err(self.query_err("insert dead letter"))?;
        }
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {t}_ingest_progress (source, next_row) VALUES ($1, $2) \
             ON CONFLICT (source) DO UPDATE SET \
             next_row = GREATEST({t}_ingest_progress.next_row, EXCLUDED.next_row), updated_at = now()",
            t = self.qualified
        )))
        .bind(source)
        .bind(next_row as i64)
        .execute(&mut *tx)
        .await
        .map_err(self.query_err("advance ingest progress"))?;
        tx.commit()
            .await
            .map_err(self.query_err("commit landing"))?;
        Ok(Landed {
            inserted,
            duplicates: trips.len() as u64 - inserted,
        })
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
             LEFT JOIN LATERAL (SELECT x.pickup, x.id FROM {t} x WHERE x.source = p.source \
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
            // the planner from a range scan of the (source, pickup, id) index.
            "SELECT {OUTBOX_COLUMNS} FROM {} WHERE source = $1 \
             AND (pickup, id) > (COALESCE($2, '-infinity'::timestamp), $3) \
             AND pickup <= COALESCE($4, 'infinity'::timestamp) \
             ORDER BY pickup, id LIMIT $5",
            self.qualified
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

/// Appends `t` as one line of PostgreSQL's COPY text format.
fn copy_row(buf: &mut String, t: &Trip) {
    fn text(buf: &mut String, s: &str) {
        for c in s.chars() {
            match c {
                '\\' => buf.push_str("\\\\"),
                '\t' => buf.push_str("\\t"),
                '\n' => buf.push_str("\\n"),
                '\r' => buf.push_str("\\r"),
                c => buf.push(c),
            }
        }
    }
    fn opt<T: std::fmt::Display>(buf: &mut String, v: Option<T>) {
        match v {
            Some(v) => {
                let _ = write!(buf, "{v}");
            }
            None => buf.push_str("\\N"),
        }
    }
    fn float(buf: &mut String, v: f64) {
        if v.is_nan() {
            buf.push_str("NaN");
        } else if v.is_infinite() {
            buf.push_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
        } else {
            let _ = write!(buf, "{v}");
        }
    }
    text(buf, &t.source.source);
    let _ = write!(buf, "\t{}\t{}\t", t.source.row, t.dataset.as_str());
    opt(buf, t.vendor_id);
    let _ = write!(
        buf,
        "\t{}\t{}\t",
        format_micros(t.pickup),
        format_micros(t.dropoff)
    );
    opt(buf, t.passenger_count);
    buf.push('\t');
    float(buf, t.trip_distance);
    buf.push('\t');
    opt(buf, t.ratecode_id);
    buf.push('\t');
    opt(buf, t.store_and_fwd.map(|b| if b { "t" } else { "f" }));
    let _ = write!(buf, "\t{}\t{}\t", t.pu_location_id, t.do_location_id);
    opt(buf, t.payment_type);
    for v in [
        t.fare_amount,
        t.extra,
        t.mta_tax,
        t.tip_amount,
        t.tolls_amount,
        t.improvement_surcharge,
        t.total_amount,
    ] {
        buf.push('\t');
        float(buf, v);
    }
    for v in [
        t.congestion_surcharge,
        t.airport_fee,
        t.cbd_congestion_fee,
        t.ehail_fee,
    ] {
        buf.push('\t');
        match v {
            Some(v) => float(buf, v),
            None => buf.push_str("\\N"),
        }
    }
    buf.push('\t');
    opt(buf, t.trip_type);
    buf.push_str(if t.refund { "\tt\n" } else { "\tf\n" });
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

    #[test]
    fn copy_text_escapes_source_names() {
        let mut buf = String::new();
        let trip = Trip {
            source: SourceRef {
                source: "a\tb\\c\nd".into(),
                row: 3,
            },
            dataset: Dataset::Green,
            vendor_id: None,
            pickup: 0,
            dropoff: 1_000_000,
            passenger_count: Some(2),
            trip_distance: 1.25,
            ratecode_id: None,
            store_and_fwd: Some(true),
            pu_location_id: 1,
            do_location_id: 2,
            payment_type: None,
            fare_amount: -3.5,
            extra: 0.0,
            mta_tax: 0.5,
            tip_amount: 0.0,
            tolls_amount: 0.0,
            improvement_surcharge: 0.3,
            total_amount: -2.7,
            congestion_surcharge: None,
            airport_fee: Some(1.75),
            cbd_congestion_fee: None,
            ehail_fee: None,
            trip_type: Some(1),
            refund: true,
        };
        copy_row(&mut buf, &trip);
        assert_eq!(
            buf,
            "a\\tb\\\\c\\nd\t3\tgreen\t\\N\t1970-01-01 00:00:00\t1970-01-01 00:00:01\t2\t1.25\t\\N\tt\t1\t2\t\\N\t-3.5\t0\t0.5\t0\t0\t0.3\t-2.7\t\\N\t1.75\t\\N\t\\N\t1\tt\n"
        );
        assert_eq!(buf.matches('\t').count() + 1, COLUMNS.split(',').count());
    }
}
