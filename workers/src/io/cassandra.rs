//! The Cassandra results store: one row per (group key, day, window start),
//! written with a prepared, idempotent `INSERT` (an upsert in CQL), so a
//! window re-emitted after a crash or rebalance overwrites itself with the
//! same values.
//!
//! Table layout (`taxistream_crds::results_table`, which the operator's
//! CassandraSink controller creates it from):
//!
//! ```text
//! PRIMARY KEY ((group_key, day), window_start)
//! ```
//!
//! `group_key` is the zone id or payment type code as text, or the borough
//! name; `day` is the (naive local) date of the window start, which bounds a
//! partition to one key-day. Timestamps are the naive New York clock stored
//! as if it were UTC, exactly as the TLC publishes it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use futures::{StreamExt, TryStreamExt};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::{Session, TlsContext};
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::statement::Consistency as CqlConsistency;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlDate, CqlTimestamp};
use taxistream_crds::pipeline::GroupBy;
use taxistream_crds::results_table;
use taxistream_crds::sink::Consistency;
use taxistream_crds::worker_config::{CassandraConfig, TlsFiles};

use crate::config::{ConfigError, Secret};
use crate::trip::{MICROS_PER_SECOND, Micros};
use crate::window::WindowResult;

/// Errors of the results store, naming the table or statement.
#[derive(Debug, thiserror::Error)]
pub enum CassandraError {
    #[error("connecting to Cassandra at {contact_points}: {detail}")]
    Connect {
        contact_points: String,
        detail: String,
    },
    #[error("TLS for Cassandra ({file}): {detail}")]
    Tls { file: String, detail: String },
    #[error("preparing the upsert into {table}: {detail}")]
    Prepare { table: String, detail: String },
    #[error(
        "upserting window {key}@{window_start} into {table} (after {attempts} attempts): {detail}"
    )]
    Write {
        table: String,
        key: String,
        window_start: String,
        attempts: usize,
        detail: String,
    },
    #[error(
        "localDatacenter {wanted:?} is not a datacenter of the cluster at {contact_points} \
         (it has: {found}); requests would go to remote nodes"
    )]
    Datacenter {
        wanted: String,
        contact_points: String,
        found: String,
    },
    #[error("invalid identifier {0:?}")]
    Identifier(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The partition key text of a result.
pub fn group_key(r: &WindowResult) -> String {
    match r.group_by {
        GroupBy::Borough => r.key_name.to_string(),
        _ => r.key.to_string(),
    }
}

fn group_by_name(g: GroupBy) -> &'static str {
    match g {
        GroupBy::PickupZone => "pickupZone",
        GroupBy::DropoffZone => "dropoffZone",
        GroupBy::Borough => "borough",
        GroupBy::PaymentType => "paymentType",
    }
}

/// Day number in CQL's `date` encoding (2^31 = 1970-01-01).
fn cql_date(t: Micros) -> CqlDate {
    let days = t.div_euclid(86_400 * MICROS_PER_SECOND);
    CqlDate((days + (1i64 << 31)).clamp(0, u32::MAX as i64) as u32)
}

fn cql_ts(t: Micros) -> CqlTimestamp {
    CqlTimestamp(t.div_euclid(1000))
}

fn consistency(c: Consistency) -> CqlConsistency {
    match c {
        Consistency::Any => CqlConsistency::Any,
        Consistency::One => CqlConsistency::One,
        Consistency::Two => CqlConsistency::Two,
        Consistency::Three => CqlConsistency::Three,
        Consistency::Quorum => CqlConsistency::Quorum,
        Consistency::All => CqlConsistency::All,
        Consistency::LocalQuorum => CqlConsistency::LocalQuorum,
        Consistency::EachQuorum => CqlConsistency::EachQuorum,
        Consistency::LocalOne => CqlConsistency::LocalOne,
    }
}

fn valid_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && s.len() <= 48
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether a failed write is worth retrying: timeouts, overload and lost
/// connections are; invalid statements and authorisation errors are not.
fn retryable(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::RequestTimeout(_)
        | ExecutionError::ConnectionPoolError(_)
        | ExecutionError::EmptyPlan => true,
        ExecutionError::LastAttemptError(a) => match a {
            RequestAttemptError::BrokenConnectionError(_)
            | RequestAttemptError::UnableToAllocStreamId => true,
            RequestAttemptError::DbError(db, _) => matches!(
                db,
                DbError::WriteTimeout { .. }
                    | DbError::ReadTimeout { .. }
                    | DbError::Overloaded
                    | DbError::Unavailable { .. }
                    | DbError::IsBootstrapping
                    | DbError::ServerError
                    | DbError::RateLimitReached { .. }
            ),
            _ => false,
        },
        _ => false,
    }
}

fn tls_context(tls: &TlsFiles) -> Result<TlsContext, CassandraError> {
    use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
    let err = |file: &Option<String>, e: openssl::error::ErrorStack| CassandraError::Tls {
        file: file.clone().unwrap_or_default(),
        detail: e.to_string(),
    };
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(|e| err(&None, e))?;
    if let Some(ca) = &tls.ca_file {
        builder
            .set_ca_file(Path::new(ca))
            .map_err(|e| err(&tls.ca_file, e))?;
    }
    if let Some(cert) = &tls.cert_file {
        builder
            .set_certificate_chain_file(Path::new(cert))
            .map_err(|e| err(&tls.cert_file, e))?;
    }
    if let Some(key) = &tls.key_file {
        builder
            .set_private_key_file(Path::new(key), SslFiletype::PEM)
            .map_err(|e| err(&tls.key_file, e))?;
    }
    builder.set_verify(SslVerifyMode::PEER);
    Ok(TlsContext::from(
        scylla::client::session::OpenSsl010Config::new(builder),
    ))
}

/// One row of the results table; bound to the prepared upsert by column name.
#[derive(scylla::SerializeRow)]
struct ResultRow<'a> {
    group_key: &'a str,
    day: CqlDate,
    window_start: CqlTimestamp,
    window_end: CqlTimestamp,
    group_by: &'a str,
    key_name: &'a str,
    zone: Option<&'a str>,
    borough: Option<&'a str>,
    trips: i64,
    passengers: i64,
    max_passengers: Option<i32>,
    sum_fare: f64,
    sum_tip: f64,
    sum_tolls: f64,
    sum_total: f64,
    avg_distance: f64,
    avg_duration_s: f64,
    avg_speed_mph: Option<f64>,
    avg_tip_ratio: Option<f64>,
}

/// Connection to the results table.
pub struct ResultStore {
    session: Arc<Session>,
    upsert: PreparedStatement,
    table: String,
    max_in_flight: usize,
    max_attempts: usize,
}

impl ResultStore {
    /// Connects, and prepares the upsert with the configured consistency.
    pub async fn connect(
        cfg: &CassandraConfig,
        max_in_flight: usize,
    ) -> Result<Self, CassandraError> {
        for ident in [&cfg.keyspace, &cfg.table] {
            if !valid_identifier(ident) {
                return Err(CassandraError::Identifier(ident.clone()));
            }
        }
        // Requests go to the local datacenter's nodes only: LOCAL_* consistency
        // levels mean that datacenter, and a remote one is never used silently.
        let policy = DefaultPolicy::builder()
            .prefer_datacenter(cfg.local_datacenter.clone())
            .permit_dc_failover(false)
            .build();
        let profile = ExecutionProfile::builder()
            .consistency(consistency(cfg.consistency))
            .request_timeout(Some(Duration::from_secs(10)))
            .load_balancing_policy(policy)
            .build();
        let mut builder = SessionBuilder::new()
            .known_nodes(&cfg.contact_points)
            .default_execution_profile_handle(profile.into_handle());
        if let (Some(user), Some(password)) = (&cfg.username_file, &cfg.password_file) {
            let user = Secret::from_file(Path::new(user))?;
            let password = Secret::from_file(Path::new(password))?;
            builder = builder.user(user.expose(), password.expose());
        }
        if let Some(tls) = &cfg.tls {
            builder = builder.tls_context(Some(tls_context(tls)?));
        }
        let session = builder.build().await.map_err(|e| CassandraError::Connect {
            contact_points: cfg.contact_points.join(","),
            detail: e.to_string(),
        })?;
        check_datacenter(&session, cfg)?;
        let table = format!("{}.{}", cfg.keyspace, cfg.table);
        let mut upsert = session
            .prepare(results_table::upsert(&cfg.keyspace, &cfg.table))
            .await
            .map_err(|e| CassandraError::Prepare {
                table: table.clone(),
                detail: e.to_string(),
            })?;
        // Same values for the same primary key: safe for the driver to retry
        // and speculate.
        upsert.set_is_idempotent(true);
        Ok(Self {
            session: Arc::new(session),
            upsert,
            table,
            max_in_flight: max_in_flight.max(1),
            max_attempts: 6,
        })
    }

    /// The session, for DDL in tests.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// A readiness check: the cluster answers a query on the local node.
    pub fn check(&self) -> impl Fn() -> crate::health::CheckFuture + Send + Sync + 'static {
        let session = self.session.clone();
        move || {
            let session = session.clone();
            Box::pin(async move {
                session
                    .query_unpaged("SELECT release_version FROM system.local", ())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }) as crate::health::CheckFuture
        }
    }

    async fn write_one(&self, r: &WindowResult) -> Result<(), CassandraError> {
        let key = group_key(r);
        let values = ResultRow {
            group_key: &key,
            day: cql_date(r.window_start),
            window_start: cql_ts(r.window_start),
            window_end: cql_ts(r.window_end),
            group_by: group_by_name(r.group_by),
            key_name: &r.key_name,
            zone: r.zone.as_deref(),
            borough: r.borough.as_deref(),
            trips: i64::try_from(r.count).unwrap_or(i64::MAX),
            passengers: r.passengers,
            max_passengers: r.max_passengers,
            sum_fare: r.sum_fare,
            sum_tip: r.sum_tip,
            sum_tolls: r.sum_tolls,
            sum_total: r.sum_total,
            avg_distance: r.avg_distance,
            avg_duration_s: r.avg_duration_s,
            avg_speed_mph: r.avg_speed_mph,
            avg_tip_ratio: r.avg_tip_ratio,
        };
        let mut attempts = 0usize;
        let result = (|| {
            attempts += 1;
            async { self.session.execute_unpaged(&self.upsert, &values).await }
        })
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(5))
                .with_max_times(self.max_attempts - 1)
                .with_jitter(),
        )
        .when(retryable)
        .notify(|e, wait| {
            tracing::warn!(error = %e, ?wait, table = %self.table, "Cassandra write failed; retrying");
        })
        .await;
        result.map(|_| ()).map_err(|e| CassandraError::Write {
            table: self.table.clone(),
            key,
            window_start: crate::trip::format_micros(r.window_start),
            attempts,
            detail: e.to_string(),
        })
    }

    /// Upserts every result, at most `max_in_flight` at a time; returns once
    /// all are acknowledged (or the first failure after retries).
    pub async fn upsert_all(&self, results: &[WindowResult]) -> Result<Duration, CassandraError> {
        let started = Instant::now();
        futures::stream::iter(results.iter().map(|r| self.write_one(r)))
            .buffer_unordered(self.max_in_flight)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(started.elapsed())
    }
}

/// Fails unless `localDatacenter` is one of the cluster's datacenters: with
/// failover off, a wrong name would leave no node to send requests to, and
/// the error would not say why.
fn check_datacenter(session: &Session, cfg: &CassandraConfig) -> Result<(), CassandraError> {
    let state = session.get_cluster_state();
    let mut found: Vec<String> = state
        .get_nodes_info()
        .iter()
        .filter_map(|n| n.datacenter.clone())
        .collect();
    found.sort();
    found.dedup();
    if found.is_empty() || found.contains(&cfg.local_datacenter) {
        return Ok(());
    }
    Err(CassandraError::Datacenter {
        wanted: cfg.local_datacenter.clone(),
        contact_points: cfg.contact_points.join(","),
        found: found.join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_timestamps_use_the_cql_encodings() {
        // 2025-02-01 00:05:00 on the naive clock.
        let t = 1_738_368_300 * MICROS_PER_SECOND;
        assert_eq!(cql_ts(t), CqlTimestamp(1_738_368_300_000));
        assert_eq!(cql_date(t), CqlDate((1u32 << 31) + 20_120));
        assert_eq!(cql_date(-1), CqlDate((1u32 << 31) - 1));
    }

    #[test]
    fn only_plain_identifiers_are_valid() {
        assert!(valid_identifier("zone_stats") && !valid_identifier("x;drop"));
    }
}
