//! Shared helpers of the backend integration tests: where the real services
//! are (started by `scripts/services.sh`), unique names per test, and the
//! rule for missing services: fail in CI, skip with a clear line locally.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

fn service(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!(
                "{var} is not set: CI must run the tests through scripts/test.sh, which starts {what}"
            )
        }
        _ => {
            eprintln!(
                "skipped: no {what} ({var} unset; run scripts/test.sh or `eval \"$(scripts/services.sh up)\"`)"
            );
            None
        }
    }
}

/// `DATABASE_URL` of the test PostgreSQL.
pub fn postgres_url() -> Option<String> {
    service("DATABASE_URL", "PostgreSQL")
}

/// `KAFKA_BOOTSTRAP` of the test broker.
pub fn kafka_bootstrap() -> Option<String> {
    service("KAFKA_BOOTSTRAP", "Kafka broker")
}

/// Both services, or `None` (after printing the skip line).
pub fn services() -> Option<(String, String)> {
    Some((postgres_url()?, kafka_bootstrap()?))
}

/// A name no other test (or earlier run against the same services) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos % 100_000
    )
}

/// The repository root (tests run in `workers/`).
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_owned)
        .unwrap_or_default()
}
