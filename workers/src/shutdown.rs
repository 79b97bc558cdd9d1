//! Graceful shutdown: SIGTERM (what Kubernetes sends) or Ctrl-C asks every
//! stage loop to finish its current batch, commit and return.

use tokio::sync::watch;

/// A cloneable shutdown signal.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// Triggers a [`Shutdown`] by hand (tests, fatal errors).
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

impl Trigger {
    pub fn fire(&self) {
        self.0.send_replace(true);
    }
}

impl Shutdown {
    /// A signal that only fires through its [`Trigger`].
    pub fn manual() -> (Trigger, Self) {
        let (tx, rx) = watch::channel(false);
        (Trigger(tx), Self { rx })
    }

    /// A signal that fires on SIGTERM or SIGINT.
    pub fn on_signals() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let (trigger, shutdown) = Self::manual();
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: finishing the current batch"),
                _ = int.recv() => tracing::info!("SIGINT: finishing the current batch"),
            }
            trigger.fire();
        });
        Ok(shutdown)
    }

    /// True once shutdown was requested.
    pub fn requested(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves when shutdown is requested.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // An error means every trigger is gone, which only happens at exit.
        let _ = rx.wait_for(|fired| *fired).await;
    }
}
