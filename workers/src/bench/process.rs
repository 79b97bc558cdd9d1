//! The processes the benchmark drives: `taxistream-worker` subcommands and
//! the DuckDB peer, each a separate process as a user or the operator would
//! start it, with its output kept in a log file of the scratch directory.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::BenchError;

/// GNU time, which reports a finished child's peak RSS (`%M`, KiB).
const GNU_TIME: &str = "/usr/bin/time";

/// How one process to completion went.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub wall: Duration,
    /// `None` when GNU time is not installed.
    pub peak_rss: Option<u64>,
}

/// Starts processes and keeps their logs in `logs`.
pub struct Launcher {
    logs: PathBuf,
    measure_rss: bool,
}

impl Launcher {
    pub fn new(logs: &Path) -> Self {
        Self {
            logs: logs.to_owned(),
            measure_rss: Path::new(GNU_TIME).is_file(),
        }
    }

    fn log_file(&self, label: &str) -> Result<(PathBuf, Stdio, Stdio), BenchError> {
        let path = self.logs.join(format!("{label}.log"));
        let file = std::fs::File::create(&path).map_err(|source| BenchError::Io {
            what: "creating a log file",
            path: path.clone(),
            source,
        })?;
        let err = file.try_clone().map_err(|source| BenchError::Io {
            what: "creating a log file",
            path: path.clone(),
            source,
        })?;
        Ok((path, Stdio::from(file), Stdio::from(err)))
    }

    /// Runs `program args` to completion; its wall time, and its peak RSS
    /// through GNU time where installed. Fails, with the end of its log, if
    /// it does not exit successfully.
    pub async fn measure(
        &self,
        label: &str,
        program: &Path,
        args: &[OsString],
    ) -> Result<Measured, BenchError> {
        let (log, stdout, stderr) = self.log_file(label)?;
        let rss_file = self.logs.join(format!("{label}.rss"));
        let mut cmd = if self.measure_rss {
            let mut c = Command::new(GNU_TIME);
            c.arg("-f").arg("%M").arg("-o").arg(&rss_file).arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true);
        let started = Instant::now();
        let status = cmd.status().await.map_err(|source| BenchError::Spawn {
            label: label.to_owned(),
            source,
        })?;
        let wall = started.elapsed();
        check_exit(label, status, &log)?;
        let peak_rss = if self.measure_rss {
            std::fs::read_to_string(&rss_file)
                .ok()
                .and_then(|s| s.lines().last()?.trim().parse::<u64>().ok())
                .map(|kib| kib * 1024)
        } else {
            None
        };
        Ok(Measured { wall, peak_rss })
    }

    /// Starts a long-running process; [`Running::stop`] ends it.
    pub fn spawn(
        &self,
        label: &str,
        program: &Path,
        args: &[OsString],
    ) -> Result<Running, BenchError> {
        let (log, stdout, stderr) = self.log_file(label)?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            // An interrupted benchmark leaves no stage running.
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| BenchError::Spawn {
                label: label.to_owned(),
                source,
            })?;
        Ok(Running {
            label: label.to_owned(),
            child,
            log,
        })
    }
}

fn check_exit(label: &str, status: ExitStatus, log: &Path) -> Result<(), BenchError> {
    if status.success() {
        return Ok(());
    }
    Err(BenchError::Failed {
        label: label.to_owned(),
        status: status.to_string(),
        log_tail: log_tail(log),
    })
}

/// The last lines of a log, for an error message.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// A stage process started by [`Launcher::spawn`].
pub struct Running {
    label: String,
    child: Child,
    log: PathBuf,
}

impl Running {
    /// Fails if the process has already exited: a long-running stage that
    /// stops on its own has failed.
    pub fn check_alive(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(BenchError::Failed {
                label: self.label.clone(),
                status: format!("exited early ({status})"),
                log_tail: log_tail(&self.log),
            }),
            Err(source) => Err(BenchError::Spawn {
                label: self.label.clone(),
                source,
            }),
        }
    }

    /// For a process that ends by itself: whether it has, failing if it
    /// did not succeed.
    pub fn exited(&mut self) -> Result<bool, BenchError> {
        match self.child.try_wait() {
            Ok(None) => Ok(false),
            Ok(Some(status)) => check_exit(&self.label, status, &self.log).map(|()| true),
            Err(source) => Err(BenchError::Spawn {
                label: self.label.clone(),
                source,
            }),
        }
    }

    /// Asks the process to stop as Kubernetes would (SIGTERM), and kills it
    /// if it has not exited within `grace`.
    pub async fn stop(mut self, grace: Duration) -> Result<(), BenchError> {
        if let Some(pid) = self.child.id() {
            // `kill(1)` rather than a libc binding: the workspace forbids unsafe code.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(BenchError::Failed {
                label: self.label.clone(),
                status: status.to_string(),
                log_tail: log_tail(&self.log),
            }),
            Ok(Err(source)) => Err(BenchError::Spawn {
                label: self.label.clone(),
                source,
            }),
            Err(_) => {
                let _ = self.child.kill().await;
                Err(BenchError::Failed {
                    label: self.label.clone(),
                    status: format!("did not stop within {} s of SIGTERM", grace.as_secs()),
                    log_tail: log_tail(&self.log),
                })
            }
        }
    }
}
