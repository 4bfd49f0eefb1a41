//! A hot standby (`serve --standby`): the ledger follows the PostgreSQL
//! journal another server writes, and takes over writing when that
//! server's lease lapses.

use std::sync::Arc;

use crate::store::PostgresStore;

use super::Ledger;

/// Starts the standby's follower: a thread that applies what the writer
/// writes to `ledger` (a standby, [`super::LedgerConfig::standby`]) until
/// the writer's lease lapses, then takes the lease and makes the ledger the
/// writer. It stops when the ledger fails or shuts down.
pub fn spawn_follower(
    store: Arc<PostgresStore>,
    ledger: Arc<Ledger>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    // The ledger is held weakly: a follower must not keep a stopped ledger
    // (and its store) alive.
    let weak = Arc::downgrade(&ledger);
    drop(ledger);
    std::thread::Builder::new()
        .name("standby-follower".into())
        .spawn(move || {
            let mut apply = |entries| match weak.upgrade() {
                Some(ledger) => ledger.apply_followed(entries).map_err(|e| e.to_string()),
                None => Err("the ledger has stopped".to_owned()),
            };
            let stopping = || weak.upgrade().is_none_or(|ledger| ledger.has_failed());
            match store.follow(&mut apply, &stopping) {
                Ok(true) => {
                    if let Some(ledger) = weak.upgrade() {
                        ledger.promote();
                    }
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::error!(%error, "the standby stopped following the journal")
                }
            }
        })
}
