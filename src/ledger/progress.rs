//! How far the write path has gone: the entries acknowledged to clients
//! (durable), and the entries the read side and the Merkle tree hold
//! (published). A submission is answered once durable, before the
//! publisher writes it into the read side; a read waits until the read
//! side holds every entry acknowledged when it began, so a client still
//! reads its own write (and every write acknowledged to anyone before).
//!
//! The access rules that authenticate calls are kept here as of the last
//! acknowledged entry, so that checking a call's credential takes neither
//! the read side's lock nor a wait for the publisher.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use crate::domain::access::Access;

pub(super) struct Progress {
    /// The last sequence number acknowledged to a client (every entry up to
    /// it is durable).
    acknowledged: AtomicU64,
    /// The last sequence number the read side and the Merkle tree hold.
    published: AtomicU64,
    /// Set when the publisher stops (a fault, a panic, shutdown): nothing
    /// more will be published, and no read waits for it.
    stopped: AtomicBool,
    lock: Mutex<()>,
    advanced: Condvar,
    /// Who may do what, as of the last acknowledged entry.
    access: RwLock<Arc<Access>>,
}

impl Progress {
    /// Progress of a ledger whose read side holds entries up to `head`,
    /// all of them durable, with `access` their access rules.
    pub(super) fn new(head: u64, access: Arc<Access>) -> Progress {
        Progress {
            acknowledged: AtomicU64::new(head),
            published: AtomicU64::new(head),
            stopped: AtomicBool::new(false),
            lock: Mutex::new(()),
            advanced: Condvar::new(),
            access: RwLock::new(access),
        }
    }

    /// Records that every entry up to `through` is durable and about to be
    /// acknowledged, with `access` the access rules after it when its
    /// entries changed them. Call before sending the replies.
    pub(super) fn acknowledge(&self, through: u64, access: Option<Arc<Access>>) {
        if let Some(access) = access {
            *self
                .access
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = access;
        }
        self.acknowledged.fetch_max(through, Ordering::SeqCst);
    }

    /// Records that the read side and the tree hold every entry up to
    /// `through`, and wakes the reads waiting for them.
    pub(super) fn publish(&self, through: u64) {
        self.published.fetch_max(through, Ordering::SeqCst);
        self.wake();
    }

    /// Records that nothing more will be published: no read waits.
    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.wake();
    }

    fn wake(&self) {
        // Taken so that a read between its check and its wait cannot miss
        // the wake-up.
        drop(self.lock.lock().unwrap_or_else(|p| p.into_inner()));
        self.advanced.notify_all();
    }

    /// Waits until the read side holds every entry acknowledged so far (or
    /// the publisher has stopped).
    pub(super) fn wait_published(&self) {
        let wanted = self.acknowledged.load(Ordering::SeqCst);
        let reached = || {
            self.published.load(Ordering::SeqCst) >= wanted || self.stopped.load(Ordering::SeqCst)
        };
        if reached() {
            return;
        }
        let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        while !reached() {
            guard = self
                .advanced
                .wait(guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Who may do what, as of the last acknowledged entry.
    pub(super) fn access(&self) -> Arc<Access> {
        self.access
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// Stops `progress` when dropped: the publisher holds one, so that a
/// publisher that ends in any way (a panic too) leaves no read waiting.
pub(super) struct StopOnDrop(pub(super) Arc<Progress>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn waits(progress: &Arc<Progress>) -> std::thread::JoinHandle<()> {
        let progress = progress.clone();
        std::thread::spawn(move || progress.wait_published())
    }

    /// Gives a waiting thread time to return, if it would.
    fn settle() {
        std::thread::sleep(Duration::from_millis(50));
    }

    #[test]
    fn a_read_waits_for_every_acknowledged_entry_then_goes_on() {
        let progress = Arc::new(Progress::new(5, Arc::default()));
        progress.wait_published();
        progress.acknowledge(9, None);
        let reader = waits(&progress);
        settle();
        assert!(
            !reader.is_finished(),
            "read went on before entry 9 was published"
        );
        progress.publish(8);
        settle();
        assert!(
            !reader.is_finished(),
            "read went on with entry 9 unpublished"
        );
        progress.publish(9);
        reader.join().unwrap();
        progress.wait_published();
    }

    #[test]
    fn a_read_waits_only_for_what_was_acknowledged_when_it_began() {
        let progress = Arc::new(Progress::new(0, Arc::default()));
        progress.acknowledge(3, None);
        let reader = waits(&progress);
        settle();
        progress.acknowledge(7, None);
        progress.publish(3);
        reader.join().unwrap();
    }

    #[test]
    fn a_stopped_publisher_leaves_no_read_waiting() {
        let progress = Arc::new(Progress::new(0, Arc::default()));
        progress.acknowledge(4, None);
        let reader = waits(&progress);
        settle();
        assert!(!reader.is_finished());
        drop(StopOnDrop(progress.clone()));
        reader.join().unwrap();
        progress.acknowledge(6, None);
        progress.wait_published();
    }

    #[test]
    fn access_is_replaced_only_by_an_acknowledgement_that_changed_it() {
        let before = Arc::new(Access::default());
        let progress = Progress::new(0, before.clone());
        progress.acknowledge(1, None);
        assert!(Arc::ptr_eq(&progress.access(), &before));
        let after = Arc::new(Access::default());
        progress.acknowledge(2, Some(after.clone()));
        assert!(Arc::ptr_eq(&progress.access(), &after));
    }
}
