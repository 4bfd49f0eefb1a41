//! The read path: reads of the durable state that cannot hold up the
//! publisher (and so the reads waiting for it) for long.
//!
//! The read side is a `std::sync::RwLock` that the publisher takes for
//! writing to apply each durable chunk, after its clients were answered; a
//! read first waits until it holds every entry acknowledged when the read
//! began. A read holds the lock's read side while it runs, and a writer
//! waiting for the lock also holds back new readers. So:
//! - a read that may take long runs on one of the read threads
//!   ([`Ledger::read_off_runtime`]), never on the async runtime's worker
//!   threads, so no worker (and no write handler queued behind it) waits on
//!   the lock; at most [`READS_OFF_RUNTIME_MAX`] such reads run at once, the
//!   others wait for a turn without holding a thread;
//! - the read threads run below the write path's priority, so a long read
//!   takes the CPU the write path leaves and gets the whole machine when
//!   nothing is written. But a read thread that the scheduler keeps off the
//!   CPU while it holds the lock keeps the publisher waiting for it, so how
//!   low depends on how the read holds the lock ([`Holds`]):
//!   - a read over many loans takes shared handles to a bounded number of
//!     them in one short hold and looks at them after releasing it (the
//!     state replaces a loan it changes, never edits one a reader may
//!     hold); such reads run at Linux `SCHED_IDLE`;
//!   - portfolio quality and branch totals hold the lock while they sum the
//!     per-day totals, a hold that grows with the days of history (under a
//!     millisecond at p50 in the benchmark), not with loans or entries;
//!     they run at nice +[`READ_THREAD_NICE`], which a busy machine still
//!     gives a share of the CPU, so the hold ends soon even then.
//!
//! Each hold sees the state after some whole durable batch; consecutive
//! holds of one read may see consecutive batches.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::Ledger;

/// Most reads running on blocking threads at once, in this process.
pub const READS_OFF_RUNTIME_MAX: usize = 8;

/// Turns for reads on the read threads.
static READS_OFF_RUNTIME: Semaphore = Semaphore::const_new(READS_OFF_RUNTIME_MAX);

/// How much lower the read threads' scheduling priority is (Linux nice
/// value, added to the process's), where `SCHED_IDLE` is refused.
pub const READ_THREAD_NICE: i32 = 10;

/// How a read holds the read lock, which decides the priority it runs at.
/// A read thread that the scheduler keeps off the CPU while it holds the
/// lock keeps the publisher (and the reads behind it, and once the chunks
/// waiting for it fill their queues, the writes) waiting, so only
/// reads that hold the lock briefly run at the very lowest priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holds {
    /// For its whole work, as the sums over per-day totals do (bounded by
    /// the days of history, not by loans or entries): at nice
    /// +`READ_THREAD_NICE`, a share of the CPU that a busy machine still
    /// gives it, so it releases the lock soon even then.
    Throughout,
    /// Only in short holds that take shared handles, doing its work after
    /// releasing the lock (the arrears listing): at Linux
    /// `SCHED_IDLE` (nice +`READ_THREAD_NICE` where that is refused).
    Briefly,
}

/// A read handed to a read thread.
type ReadJob = Box<dyn FnOnce() + Send>;

type ReadThreads = std::sync::Mutex<std::sync::mpsc::Sender<ReadJob>>;

/// The read threads for reads that hold the lock as `holds` says:
/// [`READS_OFF_RUNTIME_MAX`] of them, started with the first such read. A
/// read's turn admits it, so no more than that many jobs are ever queued or
/// running in both pools together.
fn read_threads(holds: Holds) -> &'static ReadThreads {
    static THROUGHOUT: std::sync::OnceLock<ReadThreads> = std::sync::OnceLock::new();
    static BRIEFLY: std::sync::OnceLock<ReadThreads> = std::sync::OnceLock::new();
    let (pool, name) = match holds {
        Holds::Throughout => (&THROUGHOUT, "ledger-read"),
        Holds::Briefly => (&BRIEFLY, "ledger-scan"),
    };
    pool.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel::<ReadJob>();
        let receiver = Arc::new(std::sync::Mutex::new(receiver));
        for index in 0..READS_OFF_RUNTIME_MAX {
            let receiver = receiver.clone();
            let started = std::thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || {
                    lower_this_threads_priority(holds);
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

/// Lowers the calling thread's scheduling priority for reads that hold the
/// lock as `holds` says: [`READ_THREAD_NICE`] below the process, or for
/// brief holds Linux `SCHED_IDLE` (it runs when no thread of normal priority
/// wants the CPU, and one that wakes takes the CPU from it at once), falling
/// back to the nice value where that is refused.
///
/// Measured with one client looping every page of the loans in arrears
/// beside 64 writers, before the listing was paced (BENCHMARKS.md), the
/// writers' p99 latency over the run without the reader: 1.14x to 1.77x in
/// fifteen runs with the listing at
/// `SCHED_IDLE` (median 1.52x); 1.46x to 1.62x in four runs at nice +10 or
/// +19. A CPU-bound process beside the server cost the writers 1.23x at
/// `SCHED_IDLE` and 1.55x at nice +10.
fn lower_this_threads_priority(holds: Holds) {
    #[cfg(target_os = "linux")]
    {
        if holds == Holds::Briefly {
            let param = libc::sched_param { sched_priority: 0 };
            // SAFETY: plain system calls on the calling thread (0 is the
            // caller); `param` outlives the call.
            let idle = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
            if idle == 0 {
                return;
            }
            tracing::info!(
                error = %std::io::Error::last_os_error(),
                "SCHED_IDLE was refused; brief reads run at nice +{READ_THREAD_NICE}"
            );
        }
        // SAFETY: as above, on the calling thread's own id.
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

/// A read that could not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The read panicked (a bug) or its thread was cancelled.
    #[error("the read did not complete: {0}")]
    Failed(String),
    /// The read side lacks entries already acknowledged: the publisher
    /// stopped after an internal fault, and a restart replays them.
    #[error(
        "the server stopped after an internal fault before its read side held every acknowledged entry; retry after a restart"
    )]
    Behind,
}

impl Ledger {
    /// Runs `read` on a read thread and resolves with its result. The async
    /// runtime's workers never wait on the read lock for it; `read` gets the
    /// ledger, so it can take the lock ([`Ledger::read`]) once or several
    /// times. For a read that holds the lock throughout its work.
    pub async fn read_off_runtime<R: Send + 'static>(
        self: &Arc<Ledger>,
        read: impl FnOnce(&Ledger) -> R + Send + 'static,
    ) -> Result<R, ReadError> {
        self.read_off_runtime_holding(Holds::Throughout, read).await
    }

    /// [`Ledger::read_off_runtime`] for a read that holds the lock as
    /// `holds` says (see [`Holds`]).
    pub async fn read_off_runtime_holding<R: Send + 'static>(
        self: &Arc<Ledger>,
        holds: Holds,
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
            // A read never answers from a read side that lacks an entry a
            // client was told is written.
            if !ledger.wait_published() {
                let _ = reply.send(Err(ReadError::Behind));
                return;
            }
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
        read_threads(holds)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .send(job)
            .map_err(|_| ReadError::Failed("the read threads have stopped".into()))?;
        answer
            .await
            .map_err(|_| ReadError::Failed("the read thread stopped before answering".into()))?
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
    /// machine a long read takes the CPU the writes leave: nice +10 for
    /// reads that hold the lock throughout (so a holder still gets a share
    /// of a busy CPU), `SCHED_IDLE` (or nice +10 where refused) for reads
    /// that hold it briefly.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn reads_run_below_the_write_path() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(dir.path());
        // SAFETY: reads the calling process's and thread's scheduling.
        let process = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let lowered = (process + READ_THREAD_NICE).min(19);
        let scheduling = || unsafe {
            (
                libc::sched_getscheduler(0),
                libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t),
            )
        };
        let (policy, nice) = ledger
            .read_off_runtime_holding(Holds::Throughout, move |_| scheduling())
            .await
            .unwrap();
        assert_eq!((policy, nice), (libc::SCHED_OTHER, lowered));
        let (policy, nice) = ledger
            .read_off_runtime_holding(Holds::Briefly, move |_| scheduling())
            .await
            .unwrap();
        assert!(
            policy == libc::SCHED_IDLE || nice == lowered,
            "a brief read runs at policy {policy}, nice {nice} (the process at {process})"
        );
    }

    /// After an internal fault stopped the publisher short of an entry a
    /// client was told is written, reads and proofs are refused rather
    /// than answered from a read side and a tree without it.
    #[tokio::test]
    async fn reads_are_refused_when_the_publisher_stopped_short_of_an_acknowledged_entry() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(dir.path());
        assert_eq!(
            ledger
                .read_off_runtime(|l| l.read(|s| s.last_sequence()))
                .await
                .unwrap(),
            0
        );
        // As after a fault: entry 1 acknowledged, never published.
        ledger.progress.acknowledge(1, None);
        ledger.progress.stop();
        let read = ledger
            .read_off_runtime(|l| l.read(|s| s.last_sequence()))
            .await;
        assert!(matches!(read, Err(ReadError::Behind)), "{read:?}");
        let proof = ledger.inclusion_proof(1, 1).await;
        assert!(
            matches!(proof, Err(crate::ledger::ProofError::Unavailable(_))),
            "{proof:?}"
        );
        assert!(!ledger.wait_published());
        // What the read side holds is still there for `Ledger::read`.
        assert_eq!(ledger.read(|s| s.last_sequence()), 0);
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
