//! The read path: reads of the durable state that cannot hold up the
//! publisher (and so the acknowledgements) for long.
//!
//! The read side is a `std::sync::RwLock` that the publisher takes for
//! writing to apply each durable batch before it answers the batch's
//! clients. A read holds the lock's read side while it runs, and a writer
//! waiting for the lock also holds back new readers. So:
//! - a read that may take long runs on one of the read threads
//!   ([`Ledger::read_off_runtime`]), never on the async runtime's worker
//!   threads, so no worker (and no write handler queued behind it) waits on
//!   the lock; at most [`READS_OFF_RUNTIME_MAX`] such reads run at once, the
//!   others wait for a turn without holding a thread;
//! - the read threads run at a lower scheduling priority than the rest of
//!   the process (Linux `nice` +[`READ_THREAD_NICE`]): on a busy machine a
//!   long read takes the CPU the write path leaves, instead of half of it,
//!   and reads still get the whole machine when nothing is written;
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

/// Turns for reads on the read threads.
static READS_OFF_RUNTIME: Semaphore = Semaphore::const_new(READS_OFF_RUNTIME_MAX);

/// How much lower the read threads' scheduling priority is (Linux nice
/// value, added to the process's).
pub const READ_THREAD_NICE: i32 = 10;

/// A read handed to a read thread.
type ReadJob = Box<dyn FnOnce() + Send>;

/// The read threads: [`READS_OFF_RUNTIME_MAX`] of them, started with the
/// first read, each at [`READ_THREAD_NICE`]. A read's turn admits it, so no
/// more than that many jobs are ever queued or running.
fn read_threads() -> &'static std::sync::Mutex<std::sync::mpsc::Sender<ReadJob>> {
    static THREADS: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<ReadJob>>> =
        std::sync::OnceLock::new();
    THREADS.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel::<ReadJob>();
        let receiver = Arc::new(std::sync::Mutex::new(receiver));
        for index in 0..READS_OFF_RUNTIME_MAX {
            let receiver = receiver.clone();
            let started = std::thread::Builder::new()
                .name(format!("ledger-read-{index}"))
                .spawn(move || {
                    lower_this_threads_priority();
                    loop {
                        let job = receiver
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner())
                            .recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
            if let Err(error) = started {
                tracing::error!(%error, "starting a read thread failed");
            }
        }
        std::sync::Mutex::new(sender)
    })
}

/// Lowers the calling thread's scheduling priority by [`READ_THREAD_NICE`].
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on the calling thread's own id; no
        // memory is shared with the kernel.
        let result = unsafe {
            let thread = libc::gettid();
            let current = libc::getpriority(libc::PRIO_PROCESS, thread as libc::id_t);
            libc::setpriority(
                libc::PRIO_PROCESS,
                thread as libc::id_t,
                current.saturating_add(READ_THREAD_NICE),
            )
        };
        if result != 0 {
            tracing::warn!(
                error = %std::io::Error::last_os_error(),
                "could not lower a read thread's priority; reads compete with writes for the CPU"
            );
        }
    }
}

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
        let (reply, answer) = tokio::sync::oneshot::channel();
        // The turn goes with the read, not with this future: a caller that
        // gives up (a deadline, a client gone) leaves the read running on its
        // thread, and it keeps its turn until it ends, so cancelled reads
        // cannot pile up past the bound.
        let job: ReadJob = Box::new(move || {
            let _turn = turn;
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(&ledger)))
                .map_err(|panic| {
                    let cause = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".to_owned());
                    tracing::error!(%cause, "a read panicked");
                    ReadError::Failed("the read failed on an internal error (logged)".into())
                });
            let _ = reply.send(result);
        });
        read_threads()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .send(job)
            .map_err(|_| ReadError::Failed("the read threads have stopped".into()))?;
        answer
            .await
            .map_err(|_| ReadError::Failed("the read thread stopped before answering".into()))?
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

    /// Reads run below the write path's priority, so that on a busy
    /// machine a long read takes the CPU the writes leave.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn reads_run_at_a_lower_priority_than_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(dir.path());
        // SAFETY: reads the calling process's and thread's nice values.
        let process = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let reader = ledger
            .read_off_runtime(|_| unsafe {
                libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t)
            })
            .await
            .unwrap();
        assert_eq!(reader, (process + READ_THREAD_NICE).min(19));
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
