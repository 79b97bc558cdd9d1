//! `taxistream-operator`: the process around the three controllers —
//! leader election, `/metrics` `/healthz` `/readyz`, logging and SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use futures::FutureExt;
use kube::Client;
use prometheus_client::registry::Registry;
use taxistream_operator::context::{Context, Settings};
use taxistream_operator::leader::{self, LeaseSettings};
use taxistream_operator::metrics::Metrics;
use taxistream_operator::server::{self, Health};
use taxistream_operator::telemetry::{self, LogFormat};
use taxistream_operator::{pipeline, sink, topic};
use tokio::sync::watch;

/// How long running reconciles may take to finish after SIGTERM.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

#[derive(Debug, Parser)]
#[command(
    name = "taxistream-operator",
    version,
    about = "Reconciles TaxiPipeline, KafkaTopic and CassandraSink objects"
)]
struct Args {
    /// Watch only this namespace; repeat it (or give a comma-separated list)
    /// for several. Absent means all namespaces.
    #[arg(
        long = "namespace",
        env = "TAXISTREAM_NAMESPACE",
        value_delimiter = ','
    )]
    namespaces: Vec<String>,
    /// Worker image for pipelines that set no `spec.image`.
    #[arg(
        long,
        env = "TAXISTREAM_WORKER_IMAGE",
        default_value = "ghcr.io/taxistream/taxistream-worker:0.1.0"
    )]
    worker_image: String,
    /// Address of `/metrics`, `/healthz` and `/readyz`.
    #[arg(long, env = "TAXISTREAM_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Log line format.
    #[arg(
        long,
        env = "TAXISTREAM_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    /// Run without leader election (a single replica only).
    #[arg(long, env = "TAXISTREAM_NO_LEADER_ELECTION")]
    no_leader_election: bool,
    /// Namespace of the leader-election Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "taxistream-operator")]
    lease_name: String,
    /// This replica's identity in the Lease. Defaults to the pod name.
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a leader holds the Lease without renewing it.
    #[arg(long, default_value_t = 15)]
    lease_duration: u64,
}

async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the operator");
                tokio::signal::ctrl_c().await.ok();
            }
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c().await.ok();
}

#[tokio::main]
async fn main() -> ExitCode {
    // ring and aws-lc-rs may both be in the tree; rustls must be told which.
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
    let args = Args::parse();
    telemetry::init(args.log_format);
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let client = Client::try_default()
        .await
        .map_err(|e| format!("cannot reach the Kubernetes API: {e}"))?;
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::new(&mut registry));
    let health = Arc::new(Health::new(registry));

    // `stop` turns true on SIGTERM or when leadership is lost.
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(server::serve(args.listen, health.clone(), stop_rx.clone()));
    let signal_tx = stop_tx.clone();
    tokio::spawn(async move {
        terminated().await;
        tracing::info!("termination requested; finishing running reconciles");
        signal_tx.send(true).ok();
    });

    let identity = args
        .identity
        .clone()
        .unwrap_or_else(|| format!("taxistream-operator-{}", std::process::id()));
    let mut leadership = None;
    if !args.no_leader_election {
        let settings = LeaseSettings {
            namespace: args.lease_namespace.clone(),
            name: args.lease_name.clone(),
            identity: identity.clone(),
            duration_seconds: args.lease_duration,
        };
        // A standby is healthy and ready: it takes over when the leader goes.
        health.set_ready(true);
        tracing::info!(%identity, lease = %settings.name, "waiting for leadership");
        let elected = leader::lead(client.clone(), &settings, stop_rx.clone(), stop_tx.clone())
            .await
            .map_err(|e| format!("leader election: {e}"))?;
        let Some(elected) = elected else {
            server.await.ok();
            return Ok(());
        };
        tracing::info!(%identity, "leading; starting controllers");
        leadership = Some(elected);
    }
    health.set_ready(true);

    let settings = Settings {
        worker_image: args.worker_image.clone(),
        identity,
    };
    let ctx = Arc::new(Context::new(client, metrics, settings));
    let shutdown = || {
        let mut rx = stop_rx.clone();
        async move {
            rx.wait_for(|s| *s).await.ok();
        }
        .shared()
    };
    // One set of controllers per watched namespace (a watch covers one
    // namespace or all of them), or one set for the whole cluster.
    let scopes: Vec<Option<String>> = if args.namespaces.is_empty() {
        vec![None]
    } else {
        args.namespaces.iter().cloned().map(Some).collect()
    };
    let mut controllers = Vec::new();
    for scope in scopes {
        tracing::info!(
            namespace = scope.as_deref().unwrap_or("<all>"),
            "starting controllers"
        );
        controllers.push(pipeline::run(ctx.clone(), scope.clone(), shutdown()).boxed());
        controllers.push(topic::run(ctx.clone(), scope.clone(), shutdown()).boxed());
        controllers.push(sink::run(ctx.clone(), scope, shutdown()).boxed());
    }
    // Running reconciles get a bounded time to finish, inside the pod's
    // termination grace period; then the process stops regardless.
    let mut stopping = stop_rx.clone();
    tokio::select! {
        _ = futures::future::join_all(controllers) => {}
        _ = async move {
            stopping.wait_for(|s| *s).await.ok();
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => tracing::warn!(grace = ?SHUTDOWN_GRACE, "controllers did not stop in time; exiting"),
    }
    tracing::info!("controllers stopped");
    stop_tx.send(true).ok();
    if let Some(leadership) = leadership {
        // Only now, with no reconcile running, may a standby take over.
        leadership.release().await;
    }
    server.await.ok();
    Ok(())
}
