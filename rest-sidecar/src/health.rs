//! The sidecar's health: the store, Redis in a cluster, and the files dir.

use std::path::Path;
use std::time::Instant;

use crate::SidecarState;

/// [`ops::HealthProbe`] over the sidecar's dependencies.
pub(crate) struct SidecarHealth(pub(crate) SidecarState);

async fn files_dir_usable(dir: &Path) -> bool {
    tokio::fs::metadata(dir).await.is_ok_and(|meta| meta.is_dir() && !meta.permissions().readonly())
}

#[async_trait::async_trait]
impl ops::HealthProbe for SidecarHealth {
    fn version(&self) -> &'static str {
        self.0.config.version
    }

    fn started(&self) -> Instant {
        self.0.started
    }

    async fn database(&self) -> bool {
        match self.0.store.health().await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "health: database check failed");
                false
            }
        }
    }

    async fn redis(&self) -> Option<bool> {
        match &self.0.redis {
            Some(redis) => Some(redis.ping().await),
            None => None,
        }
    }

    async fn storage(&self) -> Option<bool> {
        Some(files_dir_usable(&self.0.config.files_dir).await)
    }
}
