//! What every backend stage process sets up before its loop: logging, the
//! rustls provider, the configuration, metrics, the probe server and the
//! shutdown signal.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::config::StageConfig;
use crate::error::StageError;
use crate::health::{self, Ready};
use crate::io::kafka::KafkaSettings;
use crate::io::postgres::{PgSettings, PgStore};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// Arguments every backend stage accepts.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Worker configuration file (the operator mounts it here).
    #[arg(long, env = "TAXISTREAM_CONFIG", default_value = crate::config::CONFIG_PATH)]
    pub config: PathBuf,
    /// Exit once there is nothing left to do (input drained) instead of
    /// waiting for more; for batch jobs, the demo, tests and benchmarks.
    #[arg(long)]
    pub exit_when_idle: bool,
}

/// A running stage's shared services.
pub struct StageRuntime {
    pub config: StageConfig,
    pub metrics: Metrics,
    pub ready: Ready,
    pub shutdown: Shutdown,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    pub probe_addr: SocketAddr,
}

impl StageRuntime {
    /// Loads the configuration and starts the probe server for `stage`.
    pub async fn start(stage: &str, args: &CommonArgs) -> Result<Self, StageError> {
        // Both ring (sqlx, kube) and other providers may be linked; pick one
        // explicitly so the first TLS connection cannot panic.
        rustls::crypto::ring::default_provider()
            .install_default()
            .ok();
        let config = StageConfig::load(Some(&args.config))?;
        let metrics = Metrics::new(stage);
        let ready = Ready::default();
        let shutdown = Shutdown::on_signals().map_err(|e| StageError::Other {
            what: "installing signal handlers",
            detail: e.to_string(),
        })?;
        let port = config.worker.metrics_port;
        let probe_addr = health::serve(
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
            metrics.clone(),
            ready.clone(),
            shutdown.clone(),
        )
        .await
        .map_err(|source| StageError::Probe { port, source })?;
        tracing::info!(stage, pipeline = %config.worker.pipeline, %probe_addr, "stage starting");
        Ok(Self {
            config,
            metrics,
            ready,
            shutdown,
            probe_addr,
        })
    }

    /// Connects to the PostgreSQL landing store the configuration names;
    /// readiness then requires it to answer.
    pub async fn landing_store(&self, max_connections: u32) -> Result<PgStore, StageError> {
        let pg = &self.config.worker.postgres;
        let settings = PgSettings {
            url: self.config.postgres_url()?,
            ssl_mode: Some(pg.ssl_mode),
            ca_file: pg.ca_file.clone(),
            schema: pg.schema.clone(),
            table: pg.table.clone(),
        };
        let store = PgStore::connect(&settings, max_connections).await?;
        self.ready
            .require("postgres", health::postgres_check(store.pool().clone()));
        Ok(store)
    }

    /// The Kafka client settings the configuration names; readiness then
    /// requires the broker to answer a metadata request with them.
    pub fn kafka(&self) -> Result<KafkaSettings, StageError> {
        let settings = KafkaSettings::from_config(&self.config.worker.kafka)?;
        let check = health::kafka_check(&settings).map_err(|detail| StageError::Other {
            what: "kafka",
            detail,
        })?;
        self.ready.require("kafka", check);
        Ok(settings)
    }

    /// With `--exit-when-idle`: fails unless every backend answers within
    /// `patience`, so a batch run against an unusable backend (down, wrong
    /// credentials) ends with an error naming it instead of idling forever.
    pub async fn backends_answer(&self, exit_when_idle: bool) -> Result<(), StageError> {
        const PATIENCE: Duration = Duration::from_secs(20);
        if !exit_when_idle {
            return Ok(());
        }
        health::backends_answer(&self.ready, PATIENCE)
            .await
            .map_err(|detail| StageError::Other {
                what: "backends",
                detail,
            })
    }
}
