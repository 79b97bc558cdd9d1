//! `http(s)` downloads: streamed to disk chunk by chunk, retried with
//! exponential backoff, resumed with a `Range` request after a dropped
//! connection instead of starting over.
//!
//! Files are downloaded before they are read because Parquet needs random
//! access (its footer is at the end) and a local copy makes a retry cheap.

use std::path::{Path, PathBuf};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

use super::SourceError;

/// Retry policy of downloads and API calls.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_retries: usize,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    pub(crate) fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
            .with_jitter()
    }
}

/// One failed attempt; `transient` ones are retried.
#[derive(Debug)]
pub(crate) struct AttemptError {
    pub transient: bool,
    pub message: String,
}

impl AttemptError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            transient: true,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            transient: false,
            message: message.into(),
        }
    }

    /// Classifies an HTTP status: server errors and throttling are worth retrying.
    pub fn from_status(status: StatusCode, what: &str) -> Self {
        let message = format!("{what}: HTTP {status}");
        if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            Self::transient(message)
        } else {
            Self::permanent(message)
        }
    }

    pub fn from_reqwest(e: reqwest::Error) -> Self {
        // Connection, timeout and body errors are network trouble; a bad URL is not.
        if e.is_builder() {
            Self::permanent(e.to_string())
        } else {
            Self::transient(format!("{e}"))
        }
    }
}

/// How long a download or API call may wait for the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// To establish the connection (TCP and TLS).
    pub connect: Duration,
    /// Between two reads of the response: a server that stops sending fails
    /// the attempt after this long (and the retry resumes where it stopped).
    pub read: Duration,
}

/// Defaults of `--connect-timeout` and `--read-timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: DEFAULT_CONNECT_TIMEOUT,
            read: DEFAULT_READ_TIMEOUT,
        }
    }
}

/// Everything about fetching that a user can set: retries and timeouts.
#[derive(Debug, Clone, Copy, Default)]
pub struct FetchOptions {
    pub retry: RetryPolicy,
    pub timeouts: Timeouts,
}

/// Builds the HTTP client the sources share, with the default timeouts.
pub fn client() -> Result<reqwest::Client, SourceError> {
    client_with(Timeouts::default())
}

/// Builds the HTTP client the sources share.
pub fn client_with(timeouts: Timeouts) -> Result<reqwest::Client, SourceError> {
    // reqwest is built without a rustls provider of its own (ring only, see
    // dependencies); installing it here makes every caller safe, tests included.
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
    reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .read_timeout(timeouts.read)
        .user_agent(concat!("taxistream-worker/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| SourceError::Http {
            name: "http client".into(),
            message: e.to_string(),
        })
}

/// Downloads URLs into a directory.
#[derive(Debug, Clone)]
pub struct Downloader {
    client: reqwest::Client,
    dir: PathBuf,
    retry: RetryPolicy,
}

impl Downloader {
    pub fn new(client: reqwest::Client, dir: PathBuf, retry: RetryPolicy) -> Self {
        Self { client, dir, retry }
    }

    /// Local path a URL is downloaded to (its last path segment, so the
    /// month in a TLC file name stays visible).
    pub fn destination(&self, url: &str) -> PathBuf {
        let base = url.split(['?', '#']).next().unwrap_or(url);
        let name: String = base
            .rsplit('/')
            .find(|s| !s.is_empty())
            .unwrap_or("download")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(name)
    }

    /// Downloads `url` completely and returns the local file. A partial
    /// download left by a failed attempt (or an earlier run) is resumed.
    pub async fn fetch(&self, url: &str) -> Result<PathBuf, SourceError> {
        let err = |message: String| SourceError::Http {
            name: url.to_string(),
            message,
        };
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| err(format!("cannot create {}: {e}", self.dir.display())))?;
        let dest = self.destination(url);
        let mut part = dest.clone().into_os_string();
        part.push(".part");
        let part = PathBuf::from(part);
        let attempt = || self.attempt(url, &part);
        attempt
            .retry(self.retry.backoff())
            .when(|e: &AttemptError| e.transient)
            .notify(|e, delay| warn!(url, error = %e.message, ?delay, "download attempt failed; resuming"))
            .await
            .map_err(|e| err(e.message))?;
        tokio::fs::rename(&part, &dest)
            .await
            .map_err(|e| err(format!("cannot move download into place: {e}")))?;
        Ok(dest)
    }

    async fn attempt(&self, url: &str, part: &Path) -> Result<(), AttemptError> {
        let have = tokio::fs::metadata(part)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        let mut req = self.client.get(url);
        if have > 0 {
            req = req.header(RANGE, format!("bytes={have}-"));
        }
        let mut resp = req.send().await.map_err(AttemptError::from_reqwest)?;
        let status = resp.status();
        let header_u64 = |resp: &reqwest::Response, name| {
            resp.headers()
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let (mut file, offset) = match status {
            StatusCode::PARTIAL_CONTENT if have > 0 => {
                // `Content-Range: bytes <first>-<last>/<total>` must continue where we stopped.
                let first = header_u64(&resp, CONTENT_RANGE).and_then(|v| {
                    v.strip_prefix("bytes ")
                        .and_then(|r| r.split('-').next()?.parse::<u64>().ok())
                });
                if first != Some(have) {
                    tokio::fs::remove_file(part).await.ok();
                    return Err(AttemptError::transient(
                        "server resumed at the wrong offset; restarting",
                    ));
                }
                let f = tokio::fs::OpenOptions::new()
                    .append(true)
                    .open(part)
                    .await
                    .map_err(|e| {
                        AttemptError::permanent(format!("cannot open {}: {e}", part.display()))
                    })?;
                info!(url, offset = have, "resuming download");
                (f, have)
            }
            StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => {
                // The partial file already holds every byte.
                return Ok(());
            }
            s if s.is_success() => {
                let f = tokio::fs::File::create(part).await.map_err(|e| {
                    AttemptError::permanent(format!("cannot create {}: {e}", part.display()))
                })?;
                (f, 0)
            }
            s => return Err(AttemptError::from_status(s, url)),
        };
        let expected = header_u64(&resp, CONTENT_LENGTH)
            .and_then(|v| v.parse::<u64>().ok())
            .map(|len| offset + len);
        let mut written = offset;
        loop {
            match resp.chunk().await {
                Ok(Some(bytes)) => {
                    file.write_all(&bytes).await.map_err(|e| {
                        AttemptError::permanent(format!("cannot write {}: {e}", part.display()))
                    })?;
                    written += bytes.len() as u64;
                }
                Ok(None) => break,
                Err(e) => {
                    file.flush().await.ok();
                    return Err(AttemptError::transient(format!(
                        "connection lost after {written} bytes: {e}"
                    )));
                }
            }
        }
        file.flush().await.map_err(|e| {
            AttemptError::permanent(format!("cannot write {}: {e}", part.display()))
        })?;
        if let Some(expected) = expected
            && written < expected
        {
            return Err(AttemptError::transient(format!(
                "connection closed after {written} of {expected} bytes"
            )));
        }
        Ok(())
    }
}
