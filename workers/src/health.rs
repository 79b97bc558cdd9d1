//! The stage's HTTP endpoints: `/metrics` (Prometheus text), `/healthz`
//! (the process is alive and its loop is turning) and `/readyz` (the stage
//! is doing work and every backend it needs answers right now; Kubernetes
//! sends traffic and counts the pod available only then).
//!
//! A stage registers one check per backend ([`Ready::require`]): a
//! PostgreSQL round trip, a Kafka metadata request (which fails when the
//! broker is down or refuses the credentials), a Cassandra query. `/readyz`
//! runs them on each probe, each within [`CHECK_TIMEOUT`], and names the
//! first that fails.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// How long one backend check may take; under the probe's own timeout
/// (2 s, set by the operator).
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(1500);

/// One backend check's outcome: `Err` says what failed.
pub type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

type Check = Arc<dyn Fn() -> CheckFuture + Send + Sync>;

/// Readiness shared between a stage and its probe endpoint: the stage's
/// own flag plus its backend checks.
#[derive(Clone, Default)]
pub struct Ready {
    flag: Arc<AtomicBool>,
    checks: Arc<Mutex<Vec<(&'static str, Check)>>>,
}

impl std::fmt::Debug for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ready").field("flag", &self.get()).finish()
    }
}

impl Ready {
    pub fn set(&self, ready: bool) {
        self.flag.store(ready, Ordering::Relaxed);
    }

    pub fn get(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Makes readiness depend on `backend` answering `check`.
    pub fn require(
        &self,
        backend: &'static str,
        check: impl Fn() -> CheckFuture + Send + Sync + 'static,
    ) {
        if let Ok(mut checks) = self.checks.lock() {
            checks.push((backend, Arc::new(check)));
        }
    }

    /// Whether the stage is ready: its flag, then every backend check.
    pub async fn probe(&self) -> Result<(), String> {
        if !self.get() {
            return Err("not ready: starting or stopping".into());
        }
        let checks: Vec<_> = self
            .checks
            .lock()
            .map(|c| c.clone())
            .map_err(|_| "not ready: check list poisoned".to_string())?;
        for (backend, check) in checks {
            match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("not ready: {backend}: {e}")),
                Err(_) => {
                    return Err(format!(
                        "not ready: {backend}: no answer within {} ms",
                        CHECK_TIMEOUT.as_millis()
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A PostgreSQL check: one `SELECT 1` through the stage's pool.
pub fn postgres_check(pool: sqlx::PgPool) -> impl Fn() -> CheckFuture + Send + Sync + 'static {
    move || {
        let pool = pool.clone();
        Box::pin(async move {
            sqlx::query("SELECT 1")
                .execute(&pool)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }) as CheckFuture
    }
}

/// A Kafka check: a metadata request with the stage's own client settings
/// (so a broker that refuses its credentials fails it).
pub fn kafka_check(
    settings: &crate::io::kafka::KafkaSettings,
) -> Result<impl Fn() -> CheckFuture + Send + Sync + 'static, String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let client: Arc<BaseConsumer> = Arc::new(
        settings
            .client_config()
            .create()
            .map_err(|e| format!("Kafka client: {e}"))?,
    );
    Ok(move || {
        let client = client.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                client
                    .fetch_metadata(None, CHECK_TIMEOUT)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())?
        }) as CheckFuture
    })
}

/// Waits until `ready`'s backend checks pass, up to `patience`; the error
/// names the backend that never answered. Stages that exit when idle use it
/// at start, so an unusable backend is an exit with an error rather than an
/// endless wait.
pub async fn backends_answer(ready: &Ready, patience: Duration) -> Result<(), String> {
    let was = ready.get();
    ready.set(true);
    let deadline = tokio::time::Instant::now() + patience;
    let outcome = loop {
        match ready.probe().await {
            Ok(()) => break Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => break Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    ready.set(was);
    outcome
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

async fn route(req: &Request<Incoming>, metrics: &Metrics, ready: &Ready) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/metrics" => match metrics.encode() {
            Ok(text) => respond(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            ),
            Err(_) => respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                "encoding failed\n".into(),
            ),
        },
        "/healthz" => respond(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => match ready.probe().await {
            Ok(()) => respond(StatusCode::OK, "text/plain", "ready\n".into()),
            Err(e) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{e}\n"),
            ),
        },
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Binds `addr` and serves the endpoints until `shutdown` fires. Returns the
/// bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    ready: Ready,
    shutdown: Shutdown,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = shutdown.wait() => break,
            };
            let Ok((stream, _)) = accepted else { continue };
            let (metrics, ready) = (metrics.clone(), ready.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let (metrics, ready) = (metrics.clone(), ready.clone());
                    async move { Ok::<_, Infallible>(route(&req, &metrics, &ready).await) }
                });
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await
                {
                    tracing::debug!(error = %e, "probe connection ended");
                }
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_means_every_backend_answers() {
        let ready = Ready::default();
        assert!(
            ready.probe().await.is_err(),
            "not ready before the stage says so"
        );
        ready.set(true);
        assert_eq!(ready.probe().await, Ok(()));
        ready.require("postgres", || Box::pin(async { Ok(()) }));
        ready.require("kafka", || {
            Box::pin(async { Err("SASL authentication failed".to_string()) })
        });
        let e = ready.probe().await.unwrap_err();
        assert!(e.contains("kafka: SASL authentication failed"), "{e}");
        let hanging = Ready::default();
        hanging.set(true);
        hanging.require("cassandra", || Box::pin(std::future::pending()));
        let e = hanging.probe().await.unwrap_err();
        assert!(e.contains("cassandra: no answer"), "{e}");
        assert!(
            backends_answer(&hanging, Duration::from_millis(10))
                .await
                .is_err()
        );
        assert!(hanging.get(), "the flag is left as it was");
    }

    #[tokio::test]
    async fn kafka_check_fails_without_a_broker() {
        let settings = crate::io::kafka::KafkaSettings::plain("127.0.0.1:1");
        let check = kafka_check(&settings).unwrap();
        assert!(check().await.is_err());
    }
}
