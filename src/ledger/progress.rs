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
use std::sync::{Arc, Condvar, Mutex};

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
    /// Wakes the reads waiting on a thread.
    advanced: Condvar,
    /// Wakes the reads waiting in a task.
    advanced_async: tokio::sync::Notify,
    /// Who may do what, as of the last acknowledged entry, with the
    /// sequence number it is as of.
    access: Mutex<(u64, Arc<Access>)>,
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
            advanced_async: tokio::sync::Notify::new(),
            access: Mutex::new((head, access)),
        }
    }

    /// Records that every entry up to `through` is durable and about to be
    /// acknowledged, with `access` the access rules after it when its
    /// entries changed them. Call before sending the replies.
    pub(super) fn acknowledge(&self, through: u64, access: Option<Arc<Access>>) {
        if let Some(access) = access {
            let mut kept = self.access.lock().unwrap_or_else(|p| p.into_inner());
            // Never back to older rules, whatever order chunks come in.
            if through >= kept.0 {
                *kept = (through, access);
            }
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
        self.advanced_async.notify_waiters();
    }

    /// The last sequence number the read side holds (it may be behind what
    /// was acknowledged).
    pub(super) fn published(&self) -> u64 {
        self.published.load(Ordering::SeqCst)
    }

    /// Whether waiting for `wanted` is over: true once the read side holds
    /// it, false once the publisher stopped short of it; `None` meanwhile.
    fn reached(&self, wanted: u64) -> Option<bool> {
        if self.published.load(Ordering::SeqCst) >= wanted {
            return Some(true);
        }
        self.stopped.load(Ordering::SeqCst).then_some(false)
    }

    /// Waits until the read side holds every entry acknowledged so far:
    /// true, or false when the publisher stopped short of them (after an
    /// internal fault the read side lacks entries a restart replays).
    pub(super) fn wait_published(&self) -> bool {
        self.wait_for(self.acknowledged.load(Ordering::SeqCst))
    }

    fn wait_for(&self, wanted: u64) -> bool {
        if let Some(reached) = self.reached(wanted) {
            return reached;
        }
        let mut guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(reached) = self.reached(wanted) {
                return reached;
            }
            guard = self
                .advanced
                .wait(guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// [`Progress::wait_published`] for a task: waits without holding a
    /// runtime's worker.
    pub(super) async fn published_async(&self) -> bool {
        let wanted = self.acknowledged.load(Ordering::SeqCst);
        loop {
            let advanced = self.advanced_async.notified();
            tokio::pin!(advanced);
            // Registered before the check, so a wake-up after it counts.
            advanced.as_mut().enable();
            if let Some(reached) = self.reached(wanted) {
                return reached;
            }
            advanced.await;
        }
    }

    /// Who may do what, as of the last acknowledged entry.
    pub(super) fn access(&self) -> Arc<Access> {
        self.access
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .1
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
    use std::time::{Duration, Instant};

    fn waits_for(progress: &Arc<Progress>, wanted: u64) -> std::thread::JoinHandle<bool> {
        let progress = progress.clone();
        std::thread::spawn(move || progress.wait_for(wanted))
    }

    /// Gives a waiting thread time to return, if it would.
    fn settle() {
        std::thread::sleep(Duration::from_millis(50));
    }

    /// The thread's result, failing rather than hanging after 10 s.
    fn joined(thread: std::thread::JoinHandle<bool>) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !thread.is_finished() {
            assert!(Instant::now() < deadline, "a read is still waiting");
            std::thread::sleep(Duration::from_millis(5));
        }
        thread.join().unwrap()
    }

    #[test]
    fn a_read_waits_for_every_acknowledged_entry_then_goes_on() {
        let progress = Arc::new(Progress::new(5, Arc::default()));
        assert!(progress.wait_published());
        progress.acknowledge(9, None);
        let reader = {
            let progress = progress.clone();
            std::thread::spawn(move || progress.wait_published())
        };
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
        assert!(joined(reader));
        assert_eq!(progress.published(), 9);
    }

    #[test]
    fn a_read_waits_only_for_what_it_wanted() {
        let progress = Arc::new(Progress::new(0, Arc::default()));
        progress.acknowledge(3, None);
        let reader = waits_for(&progress, 3);
        progress.acknowledge(7, None);
        progress.publish(3);
        assert!(joined(reader));
    }

    #[test]
    fn a_stopped_publisher_leaves_no_read_waiting_and_says_it_stopped_short() {
        let progress = Arc::new(Progress::new(0, Arc::default()));
        progress.acknowledge(4, None);
        progress.publish(2);
        let reader = waits_for(&progress, 4);
        settle();
        assert!(!reader.is_finished());
        drop(StopOnDrop(progress.clone()));
        assert!(!joined(reader), "the read side never held entry 4");
        assert!(progress.wait_for(2), "entry 2 was published");
        assert!(!progress.wait_published());
    }

    #[tokio::test]
    async fn a_task_waits_without_a_thread_and_is_woken_by_publishing() {
        let progress = Arc::new(Progress::new(0, Arc::default()));
        progress.acknowledge(2, None);
        let waiting = tokio::spawn({
            let progress = progress.clone();
            async move { progress.published_async().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "the task went on with entry 2 unpublished"
        );
        progress.publish(2);
        let reached = tokio::time::timeout(Duration::from_secs(10), waiting).await;
        assert!(reached.expect("the task is still waiting").unwrap());
    }

    #[test]
    fn access_is_replaced_only_by_a_later_acknowledgement_that_changed_it() {
        let before = Arc::new(Access::default());
        let progress = Progress::new(0, before.clone());
        progress.acknowledge(1, None);
        assert!(Arc::ptr_eq(&progress.access(), &before));
        let after = Arc::new(Access::default());
        progress.acknowledge(3, Some(after.clone()));
        assert!(Arc::ptr_eq(&progress.access(), &after));
        progress.acknowledge(2, Some(before));
        assert!(Arc::ptr_eq(&progress.access(), &after), "rules went back");
    }
}
