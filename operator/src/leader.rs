//! Lease-based leader election, so two operator replicas can run: one
//! reconciles, the other waits to take over.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;

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

/// Starts competing for the lease. The receiver turns `true` while we lead;
/// dropping it releases the lease.
pub async fn elect(
    client: Client,
    settings: &LeaseSettings,
) -> Result<
    (
        watch::Receiver<bool>,
        tokio::task::JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
    ),
    LeaseManagerError,
> {
    let manager = LeaseManagerBuilder::new(client, &settings.name)
        .with_namespace(&settings.namespace)
        .with_identity(&settings.identity)
        .with_duration(settings.duration_seconds)
        .with_grace(settings.duration_seconds / 3)
        .with_field_manager(format!("{FIELD_MANAGER}-lease"))
        .build()
        .await?;
    Ok(manager.watch().await)
}
