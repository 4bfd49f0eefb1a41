//! The read path: reads of the durable state that cannot hold up the
//! publisher (and so the acknowledgements) for long.
//!
//! The read side is a `std::sync::RwLock` that the publisher takes for
//! writing to apply each durable batch before it answers the batch's
//! clients. A read holds the lock's read side while it runs, and a writer
//! waiting for the lock also holds back new readers. So:
//! - a read that may take long runs on a blocking thread
//!   ([`Ledger::read_off_runtime`]), never on the async runtime's worker
//!   threads, so no worker (and no write handler queued behind it) waits on
//!   the lock; at most [`READS_OFF_RUNTIME_MAX`] such reads run at once, the
//!   others wait for a turn without holding a thread;
//! - a read over a collection does bounded work per hold of the lock
//!   ([`Ledger::read_in_steps`]): it releases the lock between steps, so the
//!   publisher waits at most one step, not the whole scan.
//!
//! Each hold sees the state after some whole durable batch; consecutive
//! steps of one read may see consecutive batches.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::Ledger;
use crate::domain::state::LedgerState;

/// Most reads running on blocking threads at once, in this process.
pub const READS_OFF_RUNTIME_MAX: usize = 8;

/// Turns for reads on blocking threads.
static READS_OFF_RUNTIME: Semaphore = Semaphore::const_new(READS_OFF_RUNTIME_MAX);

/// What one step of a read in steps decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step<K> {
    /// Take the lock again and go on from this cursor.
    Continue(K),
    /// The read is complete.
    Done,
}

/// A read that could not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The read panicked (a bug) or its thread was cancelled.
    #[error("the read did not complete: {0}")]
    Failed(String),
}

impl Ledger {
    /// Runs `read` on a blocking thread and resolves with its result. The
    /// async runtime's workers never wait on the read lock for it; `read`
    /// gets the ledger, so it can take the lock once ([`Ledger::read`]) or in
    /// steps ([`Ledger::read_in_steps`]).
    pub async fn read_off_runtime<R: Send + 'static>(
        self: &Arc<Ledger>,
        read: impl FnOnce(&Ledger) -> R + Send + 'static,
    ) -> Result<R, ReadError> {
        let turn = READS_OFF_RUNTIME
            .acquire()
            .await
            .map_err(|error| ReadError::Failed(error.to_string()))?;
        let ledger = self.clone();
        // The turn goes with the read, not with this future: a caller that
        // gives up (a deadline, a client gone) leaves the read running on its
        // thread, and it keeps its turn until it ends, so cancelled reads
        // cannot pile up past the bound.
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            read(&ledger)
        })
        .await
        .map_err(|error| ReadError::Failed(error.to_string()))
    }

    /// Runs `step` under the read lock again and again, from `start`, each
    /// call in its own hold of the lock, until it returns [`Step::Done`].
    /// `step` must do bounded work; between calls the publisher can apply
    /// durable batches.
    pub fn read_in_steps<K>(&self, start: K, mut step: impl FnMut(&LedgerState, K) -> Step<K>) {
        let mut cursor = start;
        loop {
            // The lock is released at the end of each `read`.
            match self.read(|state| step(state, cursor)) {
                Step::Continue(next) => cursor = next,
                Step::Done => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{LedgerConfig, SystemClock};
    use crate::store::DiskStore;

    fn ledger(dir: &std::path::Path) -> Arc<Ledger> {
        let store = DiskStore::open(dir).expect("a store");
        Arc::new(
            Ledger::start(
                Arc::new(store),
                Arc::new(SystemClock),
                LedgerConfig::default(),
            )
            .expect("a ledger"),
        )
    }

    #[tokio::test]
    async fn a_read_in_steps_takes_the_lock_once_per_step_and_stops_when_done() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(dir.path());
        let steps = ledger
            .read_off_runtime(|ledger| {
                let mut steps = Vec::new();
                ledger.read_in_steps(0u32, |state, cursor| {
                    assert_eq!(state.last_sequence(), 0);
                    steps.push(cursor);
                    if cursor < 3 {
                        Step::Continue(cursor + 1)
                    } else {
                        Step::Done
                    }
                });
                steps
            })
            .await
            .unwrap();
        assert_eq!(steps, vec![0, 1, 2, 3]);
    }

    /// Reads whose callers gave up still hold their turns until they end:
    /// reproduces a bound that callers with short deadlines could get
    /// around (each cancelled call gave its turn back at once while its read
    /// went on, so reads piled up on blocking threads without limit).
    #[tokio::test]
    async fn cancelled_reads_keep_their_turns_until_they_end() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(dir.path());
        let running = Arc::new(AtomicUsize::new(0));
        let running_max = Arc::new(AtomicUsize::new(0));
        let (release, released) = std::sync::mpsc::channel::<()>();
        let released = Arc::new(std::sync::Mutex::new(released));
        for _ in 0..3 * READS_OFF_RUNTIME_MAX {
            let (running, running_max, released) =
                (running.clone(), running_max.clone(), released.clone());
            let read = ledger.read_off_runtime(move |_| {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                running_max.fetch_max(now, Ordering::SeqCst);
                // Held until the test lets one read end.
                let _ = released.lock().unwrap().recv();
                running.fetch_sub(1, Ordering::SeqCst);
            });
            // The caller gives up almost at once.
            let _ = tokio::time::timeout(std::time::Duration::from_millis(5), read).await;
        }
        assert!(
            running.load(Ordering::SeqCst) <= READS_OFF_RUNTIME_MAX,
            "{} reads running at once",
            running.load(Ordering::SeqCst)
        );
        for _ in 0..3 * READS_OFF_RUNTIME_MAX {
            let _ = release.send(());
        }
        drop(release);
        assert!(running_max.load(Ordering::SeqCst) <= READS_OFF_RUNTIME_MAX);
    }

    /// A read that panics is one failed read, not a panic in its caller.
    #[tokio::test]
    async fn a_panicking_read_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(dir.path());
        let result = ledger
            .read_off_runtime(|_| -> u32 { panic!("a bug in a read") })
            .await;
        assert!(matches!(result, Err(ReadError::Failed(_))), "{result:?}");
        assert_eq!(
            ledger
                .read_off_runtime(|l| l.read(|s| s.last_sequence()))
                .await
                .unwrap(),
            0
        );
    }
}
