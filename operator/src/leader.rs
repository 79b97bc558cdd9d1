//! Lease-based leader election, so two operator replicas can run: one
//! reconciles, the other waits to take over.
//!
//! kube-lease-manager renews the Lease for as long as any receiver of its
//! leadership channel is alive, and releases it when the last one is
//! dropped. So exactly one receiver exists while leading, owned by the task
//! that watches for a lost Lease; [`Leadership::release`] ends that task,
//! which lets the manager release the Lease at once.

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::context::FIELD_MANAGER;

/// Where the Lease lives and who we are.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// Seconds a leader holds the lease without renewing it.
    pub duration_seconds: u64,
}

type ManagerTask = JoinHandle<Result<LeaseManager, LeaseManagerError>>;

/// This replica leads until [`Leadership::release`] or until the Lease is lost.
pub struct Leadership {
    release: oneshot::Sender<()>,
    monitor: JoinHandle<()>,
    manager: ManagerTask,
}

impl Leadership {
    /// Gives the Lease up and returns once it is released, so a standby can
    /// take it at its next look instead of waiting for it to expire.
    pub async fn release(self) {
        self.release.send(()).ok();
        self.monitor.await.ok();
        match self.manager.await {
            Ok(Ok(_)) => tracing::info!("released the Lease"),
            Ok(Err(error)) => {
                tracing::warn!(%error, "could not release the Lease; it expires on its own")
            }
            Err(error) => tracing::warn!(%error, "the lease manager task failed"),
        }
    }
}

/// Competes for the Lease until this replica leads, or returns `None` when
/// `stop` turns true first. While leading, a lost Lease turns `lost` true.
pub async fn lead(
    client: Client,
    settings: &LeaseSettings,
    mut stop: watch::Receiver<bool>,
    lost: watch::Sender<bool>,
) -> Result<Option<Leadership>, LeaseManagerError> {
    let manager = LeaseManagerBuilder::new(client, &settings.name)
        .with_namespace(&settings.namespace)
        .with_identity(&settings.identity)
        .with_duration(settings.duration_seconds)
        .with_grace(settings.duration_seconds / 3)
        .with_field_manager(format!("{FIELD_MANAGER}-lease"))
        .build()
        .await?;
    let (mut leading, manager) = manager.watch().await;
    // `Some(false)`: the manager ended without ever leading.
    let won = tokio::select! {
        won = leading.wait_for(|l| *l) => Some(won.is_ok()),
        _ = stop.wait_for(|s| *s) => None,
    };
    match won {
        Some(true) => {}
        Some(false) => {
            return match manager.await {
                Ok(Err(error)) => Err(error),
                _ => Ok(None),
            };
        }
        None => {
            drop(leading);
            manager.await.ok();
            return Ok(None);
        }
    }
    let (release, mut released) = oneshot::channel();
    let monitor = tokio::spawn(async move {
        tokio::select! {
            _ = leading.wait_for(|l| !*l) => {
                tracing::error!("lost leadership; stopping so a fresh process can rejoin the election");
                lost.send(true).ok();
            }
            _ = &mut released => {}
        }
        // `leading` drops here: the manager sees no receiver left and releases.
    });
    Ok(Some(Leadership {
        release,
        monitor,
        manager,
    }))
}

#[cfg(test)]
mod handoff_tests;
