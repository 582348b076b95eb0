//! Cross-instance cache invalidation. When several instances share one PostgreSQL database, an
//! instance that changes an endpoint, a source or a certificate announces it
//! ([`hookwarden_store::Store::announce_change`], `NOTIFY`), and every instance (itself
//! included) drops the cached object as the announcement arrives (`LISTEN`). Caches also expire
//! on their own after a short TTL, the fallback when an announcement is lost; a lost connection
//! is reported as [`Change::All`] and drops everything.

use hookwarden_store::{Change, Store};
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tracing::{debug, warn};

/// Something that caches objects and forgets them on a change.
pub type Invalidator = Arc<dyn Fn(&Change) + Send + Sync>;

/// Applies every announced change to `invalidators` until the store closes. Nothing is started
/// for a single-instance store.
pub fn spawn_watcher(
    store: &Arc<dyn Store>,
    invalidators: Vec<Invalidator>,
) -> Option<tokio::task::JoinHandle<()>> {
    let mut rx = store.watch_changes()?;
    Some(tokio::spawn(async move {
        loop {
            let change = match rx.recv().await {
                Ok(c) => c,
                Err(RecvError::Lagged(n)) => {
                    warn!(
                        missed = n,
                        "cache invalidations fell behind; dropping all caches"
                    );
                    Change::All
                }
                Err(RecvError::Closed) => return,
            };
            debug!(?change, "cache invalidation");
            for f in &invalidators {
                f(&change);
            }
        }
    }))
}

/// Tells the other instances sharing the database about a committed change (awaited, so the
/// API answers only once every listening instance has been told). A failure is logged: the
/// other instances' caches still expire within their TTL.
pub async fn announce(store: &dyn Store, change: Change) {
    if store.is_shared()
        && let Err(e) = store.announce_change(&change).await
    {
        warn!(?change, error = %e, "could not announce a change to other instances");
    }
}
