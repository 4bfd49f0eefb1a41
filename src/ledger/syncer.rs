//! The journal's barrier off the writer's thread. The writer hands each
//! chunk of a batch it decided (its entries, what applying them wrote, and
//! the submissions it finished) to the syncer, which appends it to the
//! journal behind one durable barrier (with every chunk waiting behind it:
//! group commit) and hands it on to the publisher, in order; the writer
//! decides the next chunk meanwhile. A chunk's submissions are answered
//! once it is durable, before the publisher writes it into the read side
//! (reads wait for that, `progress`). A large submission is answered
//! sooner, its first chunks made durable while its last are decided.
//!
//! After a barrier fails, no later chunk is appended (each may build on an
//! entry that never became durable): every one is refused, and the writer
//! decides nothing more. After another fault (an entry that did not apply,
//! a panic), the chunks decided before it are still appended.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::domain::access::Access;
use crate::domain::entry::Entry;
use crate::domain::state::Written;
use crate::store::{Store, StoreError};

use super::progress::Progress;
use super::{Answer, CommandResult, Submission, SubmitError};

/// Part of a batch, decided: on its way to the journal and its waiters,
/// then the read side.
pub(super) struct Chunk {
    pub(super) entries: Vec<Arc<Entry>>,
    /// What applying each entry to the writer's state wrote: the read side,
    /// behind it at the same head, takes it instead of applying the entries
    /// again.
    pub(super) written: Vec<Written>,
    /// The submissions whose last command is in this chunk (or an earlier
    /// one), with an answer for each of their commands.
    pub(super) answered: Vec<(Submission, Vec<Answer>)>,
    /// False for entries already in the journal (a standby's, which another
    /// server wrote).
    pub(super) append: bool,
    /// The writer's last sequence number when it handed the chunk on: once
    /// the chunk is durable, so is every entry up to it (an answer may name
    /// an earlier entry, a retry's).
    pub(super) through: u64,
    /// The access rules after the chunk's entries, when they changed them.
    pub(super) access: Option<Arc<Access>>,
    /// The writer's span of the batch.
    pub(super) span: tracing::Span,
}

impl Chunk {
    pub(super) fn new(span: &tracing::Span, append: bool) -> Chunk {
        Chunk::with_room(span, append, 0)
    }

    /// A chunk with room for `entries` entries and what each wrote, so
    /// that its lists do not move as it fills: what an entry wrote is a
    /// large record (the objects an entry may create are held in it, not
    /// behind pointers), and a chunk grown from nothing to 256 entries
    /// moved each record about once, allocating again at every doubling.
    pub(super) fn with_room(span: &tracing::Span, append: bool, entries: usize) -> Chunk {
        Chunk {
            entries: Vec::with_capacity(entries),
            written: Vec::with_capacity(entries),
            answered: Vec::new(),
            append,
            through: 0,
            access: None,
            span: span.clone(),
        }
    }

    /// Answers every submission it finished with `error` (what it decided
    /// is not durable; a followed chunk's, not published).
    pub(super) fn refuse(self, error: SubmitError) {
        for (submission, _) in self.answered {
            // A submission of followed entries (no commands) gets one.
            let count = submission.commands.len().max(1);
            let _ = submission.reply.send(vec![Err(error.clone()); count]);
        }
    }

    /// Answers every submission it finished, once it is durable (a
    /// followed chunk's, once published), having recorded in `progress`
    /// that it is acknowledged: a read begun after an answer waits until
    /// the read side holds the chunk. The chunk goes on to the publisher
    /// with no one left to answer.
    pub(super) fn answer(&mut self, progress: &Progress) {
        progress.acknowledge(self.through, self.access.take());
        for (submission, answers) in std::mem::take(&mut self.answered) {
            let results: Vec<CommandResult> = answers
                .into_iter()
                .map(|answer| match answer {
                    Answer::Entry(entry) => Ok(entry),
                    Answer::Error(error) => Err(error),
                })
                .collect();
            // A client that went away does not stop the others.
            let _ = submission.reply.send(results);
        }
    }
}

/// That the ledger stopped deciding after a fault, and why: set by the
/// thread that met it, read by the writer and the API.
pub(super) struct Failure {
    /// Set once; what health checks and `Ledger::has_failed` read.
    pub(super) flag: Arc<AtomicBool>,
    /// Set when a barrier failed: the journal may lack entries that chunks
    /// decided since build on, so none of them is appended. (After another
    /// fault, the chunks decided before it are sound and still written.)
    barrier: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl Failure {
    pub(super) fn new(flag: Arc<AtomicBool>) -> Failure {
        Failure {
            flag,
            barrier: AtomicBool::new(false),
            reason: Mutex::new(None),
        }
    }

    /// Records that a barrier failed, and why (see [`Failure::set`]).
    pub(super) fn set_barrier(&self, why: &str) {
        self.barrier.store(true, Ordering::SeqCst);
        self.set(why);
    }

    /// Whether a barrier failed.
    pub(super) fn barrier_failed(&self) -> bool {
        self.barrier.load(Ordering::SeqCst)
    }

    /// Records the first fault's reason and raises the flag.
    pub(super) fn set(&self, why: &str) {
        let mut reason = self
            .reason
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        reason.get_or_insert_with(|| why.to_string());
        self.flag.store(true, Ordering::SeqCst);
    }

    /// Why the ledger stopped: the fault recorded, or, when another thread
    /// only raised the flag (a panic), a general reason.
    pub(super) fn reason(&self) -> String {
        self.reason
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .unwrap_or_else(|| {
                "the ledger stopped after an internal fault; retry after a restart".into()
            })
    }
}

/// Appends entries to the journal behind one durable barrier, and counts
/// the barrier's time and size.
pub(super) fn append(store: &dyn Store, entries: &[Arc<Entry>]) -> Result<(), StoreError> {
    let barrier = std::time::Instant::now();
    let appended = store.append(entries);
    let metrics = crate::metrics::metrics();
    metrics
        .barrier_seconds
        .observe(barrier.elapsed().as_secs_f64());
    metrics.batch_entries.observe(entries.len() as f64);
    appended
}

/// Why the ledger stops after a failed barrier, and what the commands that
/// waited on it are answered: fenced (another server writes the journal
/// now; the client sends them there, with their request ids) or a storage
/// fault.
pub(super) fn barrier_failed(error: &StoreError) -> (String, SubmitError) {
    let fenced = matches!(error, StoreError::Fenced(_));
    let why = match fenced {
        true => error.to_string(),
        false => format!("storage fault: {error}"),
    };
    tracing::error!(%why, "batch not durable; the writer stops deciding commands");
    let refusal = match fenced {
        true => SubmitError::Unavailable(why.clone()),
        false => SubmitError::Internal(why.clone()),
    };
    (why, refusal)
}

/// Makes the writer's chunks durable in order and hands them to the
/// publisher.
pub(super) struct Syncer {
    pub(super) store: Arc<dyn Store>,
    pub(super) publish: std::sync::mpsc::SyncSender<Chunk>,
    /// Chunks the writer handed over and this thread has not handed on.
    pub(super) syncing: Arc<AtomicUsize>,
    pub(super) failure: Arc<Failure>,
    pub(super) progress: Arc<Progress>,
}

impl Syncer {
    pub(super) fn run(self, chunks: std::sync::mpsc::Receiver<Chunk>) {
        while let Ok(first) = chunks.recv() {
            // Every chunk waiting shares the barrier.
            let mut group = vec![first];
            group.extend(chunks.try_iter());
            let count = group.len();
            self.sync(group);
            // After handing them on: the writer, seeing none left, may
            // hand the publisher the next itself.
            self.syncing.fetch_sub(count, Ordering::SeqCst);
        }
    }

    fn sync(&self, group: Vec<Chunk>) {
        if self.failure.barrier_failed() {
            let why = self.failure.reason();
            for chunk in group {
                chunk.refuse(SubmitError::Unavailable(why.clone()));
            }
            return;
        }
        // Chunks of entries already in the journal (a standby's) are not
        // appended, wherever they are in the group: they come before any
        // the writer decided after them.
        let entries: Vec<Arc<Entry>> = group
            .iter()
            .filter(|chunk| chunk.append)
            .flat_map(|chunk| chunk.entries.iter().cloned())
            .collect();
        if !entries.is_empty()
            && let Err(error) = append(self.store.as_ref(), &entries)
        {
            let (why, refusal) = barrier_failed(&error);
            self.failure.set_barrier(&why);
            for chunk in group {
                chunk.refuse(refusal.clone());
            }
            return;
        }
        for mut chunk in group {
            if chunk.append {
                chunk.answer(&self.progress);
            }
            if let Err(unsent) = self.publish.send(chunk) {
                self.failure.set("the publisher thread has stopped");
                unsent
                    .0
                    .refuse(SubmitError::Unavailable("the ledger is stopping".into()));
            }
        }
    }
}
