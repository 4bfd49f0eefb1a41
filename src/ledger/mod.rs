//! The ledger: one writer thread that decides commands in order, taking
//! every submission waiting into one batch, whose commands share the
//! journal's durable barriers (group commit). A batch goes on in chunks of
//! [`LedgerConfig::chunk_entries`] new entries: the syncer thread appends
//! each (with any others waiting, behind one barrier) while the writer
//! decides the next (`syncer`); the batch's last chunk, when the syncer
//! holds nothing before it, is appended on the writer's thread. Whichever
//! thread appended a chunk answers the submissions it finished, then a
//! publisher thread writes it into the read side (what the writer's apply
//! of each entry wrote, [`Written`], and what it changes of the branches'
//! days, which the writer keeps none of and the publisher works out) and
//! the Merkle tree; reads wait until the read side holds every entry
//! acknowledged when they began (`progress`), so publishing is off the
//! path of a reply. A persister thread checkpoints the read side into the
//! store's cache.
//!
//! Architecture invariants:
//! - Only the writer thread executes commands, so sequence numbers are
//!   gap-free and the hash chain is continuous without locks.
//! - Chunks reach the journal, the read side and their waiters in the order
//!   they were decided; after a barrier fails, no later chunk is appended.
//! - No reply (success or refusal) is sent before the durable barrier of the
//!   chunk that holds the submission's last command (and so of every
//!   chunk before it).
//! - The read side only ever holds durable entries; a read (a query, a
//!   proof, a checkpoint asked for) waits until it holds every entry
//!   acknowledged when the read began, so a client that got a reply reads
//!   its own write. Calls authenticate against the access rules of the
//!   last acknowledged entry.
//! - Derived state in the store is a cache; startup replays the journal past
//!   it, and rebuilds it from the journal when it does not fit.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::domain::DomainError;
use crate::domain::access::Access;
use crate::domain::command::Command;
use crate::domain::entry::{Entry, EntryBody};
use crate::domain::request_index::FoundRequests;
use crate::domain::state::{ExecContext, ExecuteError, LedgerState, SealError};
use crate::store::{Store, StoreError};

mod checkpoints;
mod progress;
mod proofs;
mod reads;
pub mod recovery;
pub mod standby;
mod syncer;

pub use checkpoints::{
    ACCESS_LOG_ANCHOR, CheckpointPolicy, JOURNAL_ANCHOR, ProofError, ServedCheckpoint,
    access_log_anchor, journal_anchor, parse_access_log_anchor, parse_journal_anchor,
};
use progress::{Progress, StopOnDrop};
pub use reads::{Holds, READS_OFF_RUNTIME_MAX, ReadError};
use syncer::{Chunk, Failure, Syncer, append, barrier_failed};

/// Reads an earlier entry's body while deciding (for reversals).
pub type Lookup<'a> = dyn Fn(u64) -> Result<Option<EntryBody>, String> + 'a;

/// The decision step of the writer: the entry body a command produces
/// against the working state, or why it is refused. It never changes the
/// state, so a panic inside it is one bad command, not a broken ledger: the
/// writer refuses that command as internal and goes on.
pub trait Decide: Send + Sync + 'static {
    /// Decides `command` against `state`.
    fn decide(
        &self,
        state: &LedgerState,
        command: &Command,
        context: ExecContext,
        lookup: &Lookup<'_>,
    ) -> Result<EntryBody, ExecuteError>;
}

/// The ledger's rules: [`LedgerState::execute`]. Every server uses them;
/// tests supply another [`Decide`] to reproduce a fault from outside.
pub struct LedgerRules;

impl Decide for LedgerRules {
    fn decide(
        &self,
        state: &LedgerState,
        command: &Command,
        context: ExecContext,
        lookup: &Lookup<'_>,
    ) -> Result<EntryBody, ExecuteError> {
        state.execute(command, context, lookup)
    }
}

/// Tells the time of recording. Tests and simulations supply their own.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The machine's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that always tells the same instant: every entry is recorded at
/// it. With it, the same commands in the same order give the same journal,
/// hash for hash (reproducible simulations); a real branch never uses it.
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// Limits of the write path.
#[derive(Clone, Debug)]
pub struct LedgerConfig {
    /// Most commands decided and made durable together.
    pub batch_size_max: usize,
    /// New entries of a batch after which the part decided goes on to the
    /// journal's barrier and the read side while the rest is decided: a
    /// large submission is answered sooner, for a barrier more. 256:
    /// repayments at batch 1,000 ran fastest with it (chunks of 64 and 128
    /// cost a barrier each in the kernel's CPU, chunks of 512 overlap
    /// less: BENCHMARKS.md, the table of changes).
    pub chunk_entries: usize,
    /// Most commands submitted and not yet answered; past it, submissions
    /// are refused as overloaded rather than queued without bound.
    pub queue_depth_max: usize,
    /// Most bytes of commands submitted and not yet answered (each command
    /// counted at its encoded size, [`command_bytes`]); past it, submissions
    /// are refused as overloaded. Bounds the memory commands in flight hold
    /// when they are large (collection sheets, product rules).
    pub queue_bytes_max: usize,
    /// Entries after which the derived-state cache is checkpointed; at most
    /// this many entries are replayed from the journal at startup after a crash.
    pub checkpoint_entries: u64,
    /// Longest time between checkpoints while entries arrive.
    pub checkpoint_interval: std::time::Duration,
    /// Entries past the journal's index after which the store writes the
    /// index again while the server runs ([`Store::index_journal`], looked
    /// at after each checkpoint), so that the request ids and offsets the
    /// server holds in memory are those of at most about this many
    /// entries, however long it runs.
    pub journal_index_entries: u64,
    /// When the journal's signed checkpoints are made, and the log's key.
    pub log_checkpoints: CheckpointPolicy,
    /// The general-ledger codes and names the books are shown with.
    pub chart: Arc<crate::domain::books::Chart>,
    /// Serves a copy of the books: refuses every write, signs no
    /// checkpoint and keeps no cosignature (`serve --read-only`).
    pub read_only: bool,
    /// Starts as a standby (`serve --standby`): another server writes the
    /// journal, this one applies what it wrote ([`Ledger::apply_followed`])
    /// and serves reads, refusing writes (UNAVAILABLE) until it takes over
    /// ([`Ledger::promote`]).
    pub standby: bool,
}

impl Default for LedgerConfig {
    fn default() -> LedgerConfig {
        LedgerConfig {
            batch_size_max: 1024,
            chunk_entries: 256,
            queue_depth_max: 16_384,
            queue_bytes_max: 64 << 20,
            checkpoint_entries: 100_000,
            // What a crash replays is bounded by `checkpoint_entries`; the
            // interval only saves entries that trickle in. Each checkpoint
            // encodes every record changed since the last one whole, so a
            // longer interval writes a record changed many times once: at
            // 10 s instead of 1 s the simulated branch's server spent about
            // a sixth less CPU (release build), its persister a quarter as
            // much (debug build).
            checkpoint_interval: std::time::Duration::from_secs(10),
            // What startup keeps in memory past the index before writing
            // it again (about 12 MiB of ids and offsets).
            journal_index_entries: crate::store::TAIL_KEPT_MAX as u64,
            log_checkpoints: CheckpointPolicy::default(),
            standby: false,
            chart: Arc::default(),
            read_only: false,
        }
    }
}

/// Why a submitted command got no entry.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    /// The ledger refused it; nothing was written.
    #[error(transparent)]
    Refused(#[from] DomainError),
    /// Too many commands are waiting; retry later.
    #[error("too many commands in flight (at most {0}); retry later")]
    Overloaded(usize),
    /// The commands waiting hold too many bytes; retry later.
    #[error(
        "too many bytes of commands in flight (at most {0} bytes); retry later, or send smaller submissions"
    )]
    OverloadedBytes(usize),
    /// The ledger is shutting down or stopped after a storage fault.
    #[error("the ledger is not accepting writes: {0}")]
    Unavailable(String),
    /// The ledger serves a read-only copy of the books.
    #[error(
        "this server serves a read-only copy of the books (serve --read-only): it refuses every \
         write; nothing was written"
    )]
    ReadOnly,
    /// A storage fault or a bug; logged with its cause.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The result of one command: its durable entry, or why it got none.
pub type CommandResult = Result<Arc<Entry>, SubmitError>;

type Reply = oneshot::Sender<Vec<CommandResult>>;

/// Commands sent together, answered together, in order.
struct Submission {
    commands: Vec<Command>,
    /// Entries another server wrote, for a standby to apply
    /// ([`Ledger::apply_followed`]); empty for commands.
    followed: Vec<Entry>,
    reply: Reply,
    /// One permit per command, released when the submission is answered
    /// and dropped (not when a client gives up waiting).
    _permits: tokio::sync::OwnedSemaphorePermit,
    /// One permit per byte of the commands, released with `_permits`.
    _bytes: tokio::sync::OwnedSemaphorePermit,
    /// The span of the call that submitted them: the writer's and the
    /// publisher's span of the batch follows from it.
    span: tracing::Span,
}

/// The size a command is counted at against `queue_bytes_max`: its encoded
/// size (request id, actor and body, as postcard writes them), which grows
/// with every list and string in it as the request message's size does.
pub fn command_bytes(command: &Command) -> usize {
    let encoded = (&command.request_id, &command.actor, &command.body);
    postcard::serialize_with_flavor(&encoded, postcard::ser_flavors::Size::default())
        .unwrap_or(usize::MAX)
}

/// A handle to the running ledger, shared by the API's handlers.
pub struct Ledger {
    sender: RwLock<Option<mpsc::Sender<Submission>>>,
    /// One permit per command in flight (`queue_depth_max` in all).
    in_flight: Arc<Semaphore>,
    /// One permit per byte of the commands in flight (`queue_bytes_max`).
    in_flight_bytes: Arc<Semaphore>,
    /// `queue_bytes_max`, as the semaphore can hold it.
    queue_bytes_max: usize,
    /// Set by the writer when it stops deciding after a fault.
    failed: Arc<AtomicBool>,
    /// Set while a standby: writes are refused, followed entries applied.
    standby: Arc<AtomicBool>,
    read_side: Arc<RwLock<LedgerState>>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    config: LedgerConfig,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Asks the checkpointer for a checkpoint now (none without a log key).
    checkpointer: Mutex<Option<std::sync::mpsc::Sender<checkpoints::Request>>>,
    /// How many request ids the writer holds in memory, as of its last batch.
    request_ids_in_memory: Arc<AtomicU64>,
    /// What was acknowledged and what the read side holds; reads wait for
    /// the one to reach the other.
    progress: Arc<Progress>,
}

impl Ledger {
    /// Recovers the state from `store` and starts the writer.
    pub fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: LedgerConfig,
    ) -> Result<Ledger, StoreError> {
        Ledger::start_with(store, clock, config, Arc::new(LedgerRules))
    }

    /// [`Ledger::start`] with the writer deciding commands by `rules`.
    pub fn start_with(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: LedgerConfig,
        rules: Arc<dyn Decide>,
    ) -> Result<Ledger, StoreError> {
        let state = recovery::recover(store.as_ref())?;
        let failed = Arc::new(AtomicBool::new(false));
        store.watch_ledger(failed.clone());
        checkpoints::recover_tree(store.as_ref())?;
        if let Some(verifier) = config.log_checkpoints.verifier() {
            checkpoints::check_latest(store.as_ref(), &verifier)?;
        }
        let (reader_copy, working) = state.split_for_writer();
        let progress = Arc::new(Progress::new(
            reader_copy.last_sequence(),
            reader_copy.access().clone(),
        ));
        let read_side = Arc::new(RwLock::new(reader_copy));
        let queue_depth_max = config.queue_depth_max.max(1);
        // Permits are taken in u32 counts: a bound above 4 GiB is 4 GiB.
        let queue_bytes_max = config
            .queue_bytes_max
            .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        let (sender, receiver) = mpsc::channel(queue_depth_max);
        let standby = Arc::new(AtomicBool::new(config.standby));
        let indexed = Arc::new(Mutex::new(None));
        let request_ids_in_memory = Arc::new(AtomicU64::new(working.requests_in_memory() as u64));
        let (persist_sender, persist_receiver) = std::sync::mpsc::channel::<u64>();
        // Few durable batches wait for the publisher: it bounds memory and
        // lets deciding the next batch overlap publishing this one.
        let (publish_sender, publish_receiver) = std::sync::mpsc::sync_channel::<Chunk>(2);
        // Chunks waiting for the journal's barrier: a bound on what the
        // writer decides ahead of it.
        let (sync_sender, sync_receiver) = std::sync::mpsc::sync_channel::<Chunk>(8);
        let failure = Arc::new(Failure::new(failed.clone()));
        let syncing = Arc::new(AtomicUsize::new(0));
        let writer = Writer {
            state: working,
            rules,
            store: store.clone(),
            clock: clock.clone(),
            publish: publish_sender.clone(),
            sync: sync_sender,
            syncing: syncing.clone(),
            pending: VecDeque::new(),
            batch_size_max: config.batch_size_max.max(1),
            chunk_entries: config.chunk_entries.max(1),
            failed: None,
            failure: failure.clone(),
            standby: standby.clone(),
            indexed: indexed.clone(),
            request_ids_in_memory: request_ids_in_memory.clone(),
            handed_access: progress.access(),
            progress: progress.clone(),
        };
        let syncer = Syncer {
            store: store.clone(),
            publish: publish_sender,
            syncing,
            failure,
            progress: progress.clone(),
        };
        let (checkpoint_sender, checkpoint_receiver) = std::sync::mpsc::channel();
        let publisher = Publisher {
            read_side: read_side.clone(),
            persist: persist_sender,
            failed: failed.clone(),
            store: store.clone(),
            tree_failed: AtomicBool::new(false),
            progress: progress.clone(),
            checkpointer: (config.log_checkpoints.signer.is_some() && !config.read_only)
                .then(|| checkpoint_sender.clone()),
        };
        let persister = Persister {
            store: store.clone(),
            read_side: read_side.clone(),
            failed: failed.clone(),
            checkpoint_entries: config.checkpoint_entries.max(1),
            checkpoint_interval: config.checkpoint_interval,
            index_entries: config.journal_index_entries.max(1),
            indexed,
        };
        let mut threads = vec![
            std::thread::Builder::new()
                .name("ledger-writer".into())
                .spawn(guarded(failed.clone(), move || writer.run(receiver)))
                .map_err(StoreError::io("starting the writer thread"))?,
            std::thread::Builder::new()
                .name("ledger-syncer".into())
                .spawn(guarded(failed.clone(), move || syncer.run(sync_receiver)))
                .map_err(StoreError::io("starting the syncer thread"))?,
            std::thread::Builder::new()
                .name("ledger-publisher".into())
                .spawn(guarded(failed.clone(), move || {
                    publisher.run(publish_receiver)
                }))
                .map_err(StoreError::io("starting the publisher thread"))?,
            std::thread::Builder::new()
                .name("ledger-persister".into())
                .spawn(move || persister.run(persist_receiver))
                .map_err(StoreError::io("starting the persister thread"))?,
        ];
        let signer = config
            .log_checkpoints
            .signer
            .as_ref()
            .filter(|_| !config.read_only);
        let checkpointer = match signer {
            Some(signer) => {
                let checkpointer = checkpoints::Checkpointer {
                    store: store.clone(),
                    signer: signer.clone(),
                    every_entries: config.log_checkpoints.every_entries.max(1),
                    every: config.log_checkpoints.every,
                };
                threads.push(
                    std::thread::Builder::new()
                        .name("ledger-checkpointer".into())
                        .spawn(move || checkpointer.run(checkpoint_receiver))
                        .map_err(StoreError::io("starting the checkpointer thread"))?,
                );
                Some(checkpoint_sender)
            }
            None => None,
        };
        Ok(Ledger {
            sender: RwLock::new(Some(sender)),
            in_flight: Arc::new(Semaphore::new(queue_depth_max)),
            in_flight_bytes: Arc::new(Semaphore::new(queue_bytes_max)),
            queue_bytes_max,
            failed,
            standby,
            read_side,
            store,
            clock,
            config,
            threads: Mutex::new(threads),
            checkpointer: Mutex::new(checkpointer),
            request_ids_in_memory,
            progress,
        })
    }

    /// How many request ids the writer holds in memory (those of the
    /// entries past the journal's index on disk, which it looks the others
    /// up in), as of its last batch.
    pub fn request_ids_in_memory(&self) -> u64 {
        self.request_ids_in_memory.load(Ordering::Relaxed)
    }

    /// Submits a command; resolves once its entry is durable (or it is refused).
    pub async fn submit(&self, command: Command) -> CommandResult {
        let mut results = self.submit_many(vec![command]).await;
        results
            .pop()
            .unwrap_or_else(|| Err(SubmitError::Internal("no result for the command".into())))
    }

    /// Submits commands to be decided in order, each on its own, sharing
    /// durable barriers; resolves with one result per command, in order.
    pub async fn submit_many(&self, commands: Vec<Command>) -> Vec<CommandResult> {
        // A single command's request id, for the call's log line (a batch's
        // line gives counts: no copy of its ids).
        let first = match commands.as_slice() {
            [command] => Some(command.request_id.to_string()),
            _ => None,
        };
        let results = self.submit_many_uncounted(commands).await;
        crate::metrics::note_call(|note| {
            note.commands += results.len() as u64;
            note.acknowledged += results.iter().filter(|r| r.is_ok()).count() as u64;
            if results.len() == 1 {
                note.request_id = first;
                note.sequence = results[0].as_ref().ok().map(|entry| entry.body.sequence);
            }
        });
        // Counted once per outcome and submission, not per command: a
        // labelled counter is a hash lookup, and a batch holds up to 1,000.
        let metrics = crate::metrics::metrics();
        let mut outcomes: [(&str, u64); 5] = [
            ("acknowledged", 0),
            ("refused", 0),
            ("overloaded", 0),
            ("unavailable", 0),
            ("internal", 0),
        ];
        for result in &results {
            let outcome = match result {
                Ok(_) => 0,
                Err(SubmitError::Refused(error)) => {
                    metrics
                        .refused
                        .with_label_values(&[refusal_reason(error)])
                        .inc();
                    1
                }
                Err(SubmitError::Overloaded(_) | SubmitError::OverloadedBytes(_)) => 2,
                Err(SubmitError::ReadOnly) => {
                    metrics.refused.with_label_values(&["read_only"]).inc();
                    1
                }
                Err(SubmitError::Unavailable(_)) => 3,
                Err(SubmitError::Internal(_)) => 4,
            };
            outcomes[outcome].1 += 1;
        }
        for (outcome, count) in outcomes {
            if count > 0 {
                metrics.commands.with_label_values(&[outcome]).inc_by(count);
            }
        }
        results
    }

    /// Sets the gauges read off the ledger (queue, commands in flight, the
    /// journal's length, the read side's lag, serving), for a scrape.
    pub fn refresh_gauges(&self) {
        let metrics = crate::metrics::metrics();
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let in_flight = self
            .config
            .queue_depth_max
            .saturating_sub(self.in_flight.available_permits());
        metrics.in_flight.set(count(in_flight as u64));
        let queued = self
            .sender
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .map_or(0, |sender| sender.max_capacity() - sender.capacity());
        metrics.queue_submissions.set(count(queued as u64));
        // What the read side holds now, without waiting for it.
        let readable = self.progress.published();
        let durable = self.store.last_sequence();
        metrics.journal_entries.set(count(durable));
        metrics
            .read_side_lag
            .set(count(durable.saturating_sub(readable)));
        metrics
            .request_ids_in_memory
            .set(count(self.request_ids_in_memory()));
        metrics.serving.set(i64::from(!self.has_failed()));
    }

    async fn submit_many_uncounted(&self, commands: Vec<Command>) -> Vec<CommandResult> {
        let count = commands.len();
        let refuse_all = |error: SubmitError| vec![Err(error); count];
        if count == 0 {
            return Vec::new();
        }
        if self.config.read_only {
            return refuse_all(SubmitError::ReadOnly);
        }
        if self.standby.load(Ordering::SeqCst) {
            return refuse_all(SubmitError::Unavailable(STANDBY.into()));
        }
        if count > self.config.queue_depth_max {
            return refuse_all(SubmitError::Refused(DomainError::invalid(
                "commands",
                format!(
                    "{count} commands in one submission; at most {} are in flight at once",
                    self.config.queue_depth_max
                ),
            )));
        }
        let bytes = commands
            .iter()
            .map(command_bytes)
            .fold(0usize, usize::saturating_add);
        if bytes > self.queue_bytes_max {
            return refuse_all(SubmitError::Refused(DomainError::invalid(
                "commands",
                format!(
                    "{bytes} bytes of commands in one submission; at most {} bytes are in flight at once",
                    self.queue_bytes_max
                ),
            )));
        }
        let Some(permits) = u32::try_from(count)
            .ok()
            .and_then(|n| self.in_flight.clone().try_acquire_many_owned(n).ok())
        else {
            return refuse_all(SubmitError::Overloaded(self.config.queue_depth_max));
        };
        let Some(byte_permits) = u32::try_from(bytes)
            .ok()
            .and_then(|n| self.in_flight_bytes.clone().try_acquire_many_owned(n).ok())
        else {
            return refuse_all(SubmitError::OverloadedBytes(self.queue_bytes_max));
        };
        let sender = self
            .sender
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let Some(sender) = sender else {
            return refuse_all(SubmitError::Unavailable("shutting down".into()));
        };
        let (reply, receiver) = oneshot::channel();
        if let Err(error) = sender.try_send(Submission {
            commands,
            followed: Vec::new(),
            reply,
            _permits: permits,
            _bytes: byte_permits,
            span: tracing::Span::current(),
        }) {
            return refuse_all(match error {
                mpsc::error::TrySendError::Full(_) => {
                    SubmitError::Overloaded(self.config.queue_depth_max)
                }
                mpsc::error::TrySendError::Closed(_) => {
                    SubmitError::Unavailable("the writer has stopped".into())
                }
            });
        }
        match receiver.await {
            Ok(results) if results.len() == count => results,
            Ok(_) => refuse_all(SubmitError::Internal("wrong number of results".into())),
            Err(_) => refuse_all(SubmitError::Unavailable(
                "the writer stopped before answering".into(),
            )),
        }
    }

    /// True once the writer has stopped deciding after a storage fault or an
    /// internal error; reads still work, writes are refused until a restart.
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Whether writes are taken: not failed, not a standby, not read-only.
    pub fn can_write(&self) -> bool {
        !self.has_failed() && !self.is_standby() && !self.config.read_only && self.store.writable()
    }

    /// True while a standby: another server writes the journal.
    pub fn is_standby(&self) -> bool {
        self.standby.load(Ordering::SeqCst)
    }

    /// On a standby: applies `entries`, which another server wrote to the
    /// journal this one follows and which follow the last applied, to the
    /// state (the writer's and the read side's, as if written here), and
    /// returns once reads see them. Call from a plain thread, not an async
    /// context.
    pub fn apply_followed(&self, entries: Vec<Entry>) -> Result<(), SubmitError> {
        let sender = self
            .sender
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .ok_or_else(|| SubmitError::Unavailable("shutting down".into()))?;
        let no_permits = || {
            Arc::new(Semaphore::new(0))
                .try_acquire_many_owned(0)
                .map_err(|_| SubmitError::Internal("no permit".into()))
        };
        let (reply, receiver) = oneshot::channel();
        sender
            .blocking_send(Submission {
                commands: Vec::new(),
                followed: entries,
                reply,
                _permits: no_permits()?,
                _bytes: no_permits()?,
                span: tracing::Span::current(),
            })
            .map_err(|_| SubmitError::Unavailable("the writer has stopped".into()))?;
        match receiver.blocking_recv() {
            Ok(results) => results.into_iter().next().map_or(Ok(()), |r| r.map(|_| ())),
            Err(_) => Err(SubmitError::Unavailable(
                "the writer stopped before applying the entries".into(),
            )),
        }
    }

    /// Makes a standby the writer: from now on it decides commands. The
    /// store must hold the journal's lease and every entry in it must have
    /// been applied ([`Ledger::apply_followed`]).
    pub fn promote(&self) {
        self.standby.store(false, Ordering::SeqCst);
    }

    /// Bytes of commands submitted and not yet answered (see `queue_bytes_max`).
    pub fn bytes_in_flight(&self) -> usize {
        self.queue_bytes_max - self.in_flight_bytes.available_permits()
    }

    /// Runs `read` on the durable state, once it holds every entry
    /// acknowledged so far (a client reads its own write). After an
    /// internal fault stopped the publisher, it runs on the read side as
    /// the fault left it ([`Ledger::wait_published`] says whether that
    /// lacks acknowledged entries; the reads off the runtime refuse then).
    pub fn read<R>(&self, read: impl FnOnce(&LedgerState) -> R) -> R {
        self.wait_published();
        read(
            &self
                .read_side
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// Who may do what, as of the last acknowledged entry: what
    /// authenticates and authorizes calls (a revocation is in it before it
    /// is answered). Takes neither the read side's lock nor a wait for it.
    pub fn access(&self) -> Arc<Access> {
        self.progress.access()
    }

    /// Waits until the read side and the Merkle tree hold every entry
    /// acknowledged so far: what a read, a proof or a checkpoint asked for
    /// after a write was answered must cover. Brief: at most the
    /// publisher's work on the chunks ahead of it, unless a read holding
    /// the read lock holds the publisher up. False when the publisher
    /// stopped short of them after an internal fault (the ledger has
    /// failed; a restart replays them).
    pub fn wait_published(&self) -> bool {
        self.progress.wait_published()
    }

    /// [`Ledger::wait_published`] for a task, holding no runtime worker.
    pub async fn published(&self) -> bool {
        self.progress.published_async().await
    }

    /// The log of reads, if the store keeps one.
    pub fn access_log(&self) -> Option<&crate::store::access_log::AccessLog> {
        self.store.access_log()
    }

    /// Durable entries from `from` on, at most `limit`.
    pub fn entries(&self, from: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        // Only entries the read side holds: the journal may already have
        // durable entries the publisher has not applied yet.
        let last = self.read(LedgerState::last_sequence);
        let from = from.max(1);
        if from > last {
            return Ok(Vec::new());
        }
        let limit = limit.min((last - from + 1) as usize);
        self.store.read_entries(from, limit)
    }

    /// The body of durable entry `sequence`: what working out a figure as
    /// it stood after an earlier entry ([`LedgerState::loan_at`]) reads the
    /// journal with.
    pub fn entry_body(&self, sequence: u64) -> Result<EntryBody, String> {
        self.store
            .read_entries(sequence, 1)
            .map_err(|error| error.to_string())?
            .pop()
            .map(|entry| entry.body)
            .ok_or_else(|| format!("entry {sequence} is not in the journal"))
    }

    /// The general-ledger codes and names of the institution's chart.
    pub fn chart(&self) -> &Arc<crate::domain::books::Chart> {
        &self.config.chart
    }

    /// The clock the ledger records with.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Stops accepting commands, lets the writer finish what it queued,
    /// writes the state cache through, and waits for both threads.
    pub fn shutdown(&self) {
        self.sender
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        // The checkpointer signs its last checkpoint once the publisher,
        // which holds the other sender, has published everything.
        self.checkpointer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let threads = std::mem::take(
            &mut *self
                .threads
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        // The writer finishes the batches it took and the syncer their
        // barriers; one waiting for a database that cannot be reached is
        // given up after 10 s (its commands unanswered, as if the server
        // had crashed).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while threads.iter().take(2).any(|thread| !thread.is_finished())
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.store.release();
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("a ledger thread panicked");
            }
        }
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The single writer: owns the working state (which runs ahead of the read
/// side by the chunks on their way to the journal and the read side).
struct Writer {
    state: LedgerState,
    /// Decides each command against `state`.
    rules: Arc<dyn Decide>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Hands a chunk made durable here to the publisher.
    publish: std::sync::mpsc::SyncSender<Chunk>,
    /// Hands a chunk to the syncer, which makes it durable.
    sync: std::sync::mpsc::SyncSender<Chunk>,
    /// Chunks handed to the syncer and not yet handed on by it.
    syncing: Arc<AtomicUsize>,
    /// The entries this writer decided that may not be in the journal yet,
    /// in sequence order, from the first not known durable.
    pending: VecDeque<Arc<Entry>>,
    batch_size_max: usize,
    /// New entries after which a batch's decided part goes on to the journal
    /// while the rest is decided ([`LedgerConfig::chunk_entries`]).
    chunk_entries: usize,
    /// Set after a storage fault: the working state may hold entries that
    /// never became durable, so nothing more is decided.
    failed: Option<String>,
    /// Set by the syncer (or this thread) with the reason, when the ledger
    /// stops deciding after a fault.
    failure: Arc<Failure>,
    /// Set while a standby ([`LedgerConfig::standby`]).
    standby: Arc<AtomicBool>,
    /// The journal's index the persister had the store write again, for the
    /// request index to take over before the next batch is decided.
    indexed: Arc<Mutex<Option<Arc<dyn FoundRequests>>>>,
    /// [`Ledger::request_ids_in_memory`], kept after each batch.
    request_ids_in_memory: Arc<AtomicU64>,
    /// The access rules of the last chunk handed on: a chunk after which
    /// they differ carries its own.
    handed_access: Arc<Access>,
    /// Told what is acknowledged as each chunk is answered.
    progress: Arc<Progress>,
}

/// How one command of a submission will be answered after the barrier.
enum Answer {
    /// Its entry: new, or the one its request id produced already.
    Entry(Arc<Entry>),
    /// A refusal.
    Error(SubmitError),
}

impl Writer {
    fn run(mut self, mut receiver: mpsc::Receiver<Submission>) {
        let mut batch: Vec<Submission> = Vec::new();
        while let Some(first) = receiver.blocking_recv() {
            let mut commands = first.commands.len();
            batch.push(first);
            while commands < self.batch_size_max {
                match receiver.try_recv() {
                    Ok(submission) => {
                        commands += submission.commands.len();
                        batch.push(submission);
                    }
                    Err(_) => break,
                }
            }
            self.process(&mut batch);
            self.request_ids_in_memory
                .store(self.state.requests_in_memory() as u64, Ordering::Relaxed);
        }
        tracing::info!(last_sequence = self.state.last_sequence(), "writer stopped");
    }

    /// Decides a batch in order. Every `chunk_entries` new entries, the part
    /// decided goes on to the syncer (the journal's barrier) and then the
    /// publisher while the rest is decided; a submission is answered with
    /// the chunk that holds its last command.
    fn process(&mut self, batch: &mut Vec<Submission>) {
        self.notice_failure();
        if let Some(why) = &self.failed {
            for submission in batch.drain(..) {
                // One refusal for followed entries, one per command else.
                let count = match submission.followed.is_empty() {
                    true => submission.commands.len(),
                    false => 1,
                };
                let results = vec![Err(SubmitError::Unavailable(why.clone())); count];
                let _ = submission.reply.send(results);
            }
            return;
        }
        if self.standby.load(Ordering::SeqCst) || batch.iter().any(|s| !s.followed.is_empty()) {
            self.follow(batch);
            return;
        }
        self.take_indexed();
        let durable = self.store.last_sequence();
        while self
            .pending
            .front()
            .is_some_and(|entry| entry.body.sequence <= durable)
        {
            self.pending.pop_front();
        }
        // One span per batch, across deciding, the journal's barriers and
        // publishing, following from each call whose commands it holds.
        let span = tracing::info_span!(
            "batch",
            submissions = batch.len(),
            last_sequence = tracing::field::Empty
        );
        for submission in batch.iter() {
            span.follows_from(&submission.span);
        }
        let _entered = span.enter();
        let head = self.state.last_sequence();
        // Commands not yet decided: each chunk has room for as many of them
        // as it can take.
        let mut undecided: usize = batch.iter().map(|s| s.commands.len()).sum();
        let mut chunk = Chunk::with_room(&span, true, undecided.min(self.chunk_entries));
        for submission in batch.drain(..) {
            let mut answers = Vec::with_capacity(submission.commands.len());
            let (last, before_last) = match submission.commands.split_last() {
                Some((last, before_last)) => (Some(last), before_last),
                None => (None, &[][..]),
            };
            for command in before_last {
                answers.push(self.decide(command, &mut chunk));
                undecided -= 1;
                self.hand_on_if_full(&mut chunk, &span, undecided);
            }
            // The submission goes with the chunk that holds its last command.
            if let Some(command) = last {
                answers.push(self.decide(command, &mut chunk));
                undecided -= 1;
            }
            chunk.answered.push((submission, answers));
            self.hand_on_if_full(&mut chunk, &span, undecided);
        }
        if self.state.last_sequence() > head {
            span.record("last_sequence", self.state.last_sequence());
        }
        if !chunk.entries.is_empty() || !chunk.answered.is_empty() {
            self.hand_on(chunk, true);
        }
    }

    /// Hands `chunk` on once it holds `chunk_entries` new entries, and goes
    /// on with an empty one, with room for the `undecided` commands left.
    fn hand_on_if_full(&mut self, chunk: &mut Chunk, span: &tracing::Span, undecided: usize) {
        if chunk.entries.len() >= self.chunk_entries {
            let room = undecided.min(self.chunk_entries);
            let decided = std::mem::replace(chunk, Chunk::with_room(span, true, room));
            self.hand_on(decided, false);
        }
    }

    /// On a standby: applies the entries another server wrote, and refuses
    /// commands; then hands them on as a chunk already durable (they are in
    /// the journal already).
    fn follow(&mut self, batch: &mut Vec<Submission>) {
        let standby = self.standby.load(Ordering::SeqCst);
        let mut chunk = Chunk::new(&tracing::info_span!("followed"), false);
        for mut submission in batch.drain(..) {
            let mut refusals: Vec<Answer> = (0..submission.commands.len())
                .map(|_| Answer::Error(SubmitError::Unavailable(STANDBY.into())))
                .collect();
            for entry in std::mem::take(&mut submission.followed) {
                let applied = match standby {
                    true => self.state.apply_and_keep(&entry).map_err(|e| e.to_string()),
                    false => Err("this server writes the journal: it follows no other".into()),
                };
                match applied {
                    Ok(change) => {
                        chunk.written.push(change);
                        chunk.entries.push(Arc::new(entry));
                    }
                    Err(why) => {
                        // The state may not hold what the journal holds:
                        // decide nothing, and say so to the follower.
                        let why = format!("a followed entry did not apply: {why}");
                        tracing::error!(%why, "the standby stops");
                        if standby {
                            self.fail(why.clone());
                        }
                        refusals = vec![Answer::Error(SubmitError::Internal(why))];
                        break;
                    }
                }
            }
            chunk.answered.push((submission, refusals));
        }
        self.hand_on(chunk, true);
    }

    /// Hands a chunk on towards its barrier and its waiters. A batch's last
    /// chunk, when the syncer holds nothing before it, is made durable on
    /// this thread (no hand-off to wait for: the batch is decided); any
    /// other goes to the syncer, so that deciding goes on meanwhile.
    fn hand_on(&mut self, mut chunk: Chunk, last: bool) {
        chunk.through = self.state.last_sequence();
        if !Arc::ptr_eq(self.state.access(), &self.handed_access) {
            self.handed_access = self.state.access().clone();
            chunk.access = Some(self.handed_access.clone());
        }
        if !last || self.syncing.load(Ordering::SeqCst) > 0 {
            self.syncing.fetch_add(1, Ordering::SeqCst);
            if let Err(unsent) = self.sync.send(chunk) {
                self.syncing.fetch_sub(1, Ordering::SeqCst);
                self.fail("the syncer thread has stopped".into());
                unsent
                    .0
                    .refuse(SubmitError::Unavailable("the ledger is stopping".into()));
            }
            // A fault met meanwhile (a barrier the syncer saw fail): the
            // rest of the batch is refused, not decided for nothing.
            self.notice_failure();
            return;
        }
        // The syncer has handed on every chunk before this one, or refused
        // it: a barrier it saw fail stops this one too.
        if self.failure.barrier_failed() {
            self.notice_failure();
            chunk.refuse(SubmitError::Unavailable(self.failure.reason()));
            return;
        }
        if chunk.append
            && !chunk.entries.is_empty()
            && let Err(error) = append(self.store.as_ref(), &chunk.entries)
        {
            let (why, refusal) = barrier_failed(&error);
            self.failure.set_barrier(&why);
            self.failed = Some(why);
            chunk.refuse(refusal);
            return;
        }
        if chunk.append {
            chunk.answer(&self.progress);
        }
        if let Err(unsent) = self.publish.send(chunk) {
            self.fail("the publisher thread has stopped".into());
            unsent
                .0
                .refuse(SubmitError::Unavailable("the ledger is stopping".into()));
        }
    }

    /// Takes up a fault the syncer or another thread met, if any.
    fn notice_failure(&mut self) {
        if self.failed.is_none() && self.failure.flag.load(Ordering::SeqCst) {
            self.failed = Some(self.failure.reason());
        }
    }

    /// Stops deciding commands from now on.
    fn fail(&mut self, why: String) {
        self.failure.set(&why);
        self.failed = Some(why);
    }

    /// Decides one command against the working state; a new entry goes to
    /// `chunk` (with what applying it wrote) and to `pending`.
    fn decide(&mut self, command: &Command, chunk: &mut Chunk) -> Answer {
        if let Some(why) = &self.failed {
            return Answer::Error(SubmitError::Unavailable(why.clone()));
        }
        // The index names the entries whose request ids hash like this
        // one's; the one recording this very id, if any, is the retry's.
        let candidates = match self.state.request_candidates(&command.request_id) {
            Ok(candidates) => candidates,
            // Not knowing whether the request was written, writing it could
            // write a retry twice: refuse it (the client retries later).
            Err(why) => {
                return Answer::Error(SubmitError::Unavailable(format!(
                    "looking up the request id: {why}"
                )));
            }
        };
        for sequence in candidates {
            let entry = match self.entry_at(sequence) {
                Ok(entry) => entry,
                Err(error) => return Answer::Error(error),
            };
            if entry.body.request_id == command.request_id {
                return answer_retry(command, sequence, entry);
            }
        }
        let context = ExecContext {
            recorded_at: self.clock.now(),
            rules_version: crate::domain::entry::RULES_VERSION_CURRENT,
        };
        let lookup = |sequence: u64| -> Result<Option<EntryBody>, String> {
            if let Some(entry) = self.pending_entry(sequence) {
                return Ok(Some(entry.body.clone()));
            }
            self.store
                .read_entries(sequence, 1)
                .map(|mut v| v.pop().map(|e| e.body))
                .map_err(|e| e.to_string())
        };
        // Deciding never changes the state (only `apply` does), so a panic
        // here leaves it whole: refuse this command and keep deciding.
        let decided = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.rules.decide(&self.state, command, context, &lookup)
        }));
        let body = match decided {
            Ok(Ok(body)) => body,
            Ok(Err(ExecuteError::Refused(error))) => {
                return Answer::Error(SubmitError::Refused(error));
            }
            Ok(Err(error)) => return Answer::Error(SubmitError::Internal(error.to_string())),
            Err(panic) => {
                let cause = panic_message(panic.as_ref());
                tracing::error!(
                    request_id = %command.request_id,
                    %cause,
                    "deciding a command panicked; it is refused, nothing is written, and the writer goes on"
                );
                // The cause stays in the log: it may quote the request's data.
                return Answer::Error(SubmitError::Internal(format!(
                    "deciding request {} failed on an internal error (logged); nothing was written",
                    crate::domain::error::echo(command.request_id.as_str())
                )));
            }
        };
        let entry = match self.state.seal_and_keep(body) {
            Ok((entry, change)) => {
                chunk.written.push(change);
                Arc::new(entry)
            }
            Err(SealError::Refused(error)) => {
                return Answer::Error(SubmitError::Refused(error));
            }
            Err(SealError::Apply(error)) => {
                // execute built this entry for this state: failing to apply it is a bug.
                tracing::error!(%error, "a freshly decided entry did not apply");
                self.fail(error.to_string());
                return Answer::Error(SubmitError::Internal(error.to_string()));
            }
        };
        self.state.clear_changes();
        chunk.entries.push(entry.clone());
        self.pending.push_back(entry.clone());
        Answer::Entry(entry)
    }

    /// Hands the request ids the journal's index written again covers to it
    /// (the persister had the store write it while this thread decided).
    fn take_indexed(&mut self) {
        let indexed = self
            .indexed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(on_disk) = indexed {
            let covered = on_disk.len();
            if self.state.requests_covered_by(on_disk) {
                tracing::info!(
                    covered,
                    in_memory = self.state.requests_in_memory(),
                    "the request index takes the journal's index written again"
                );
            }
        }
    }

    /// Entry `sequence`, when this writer decided it and it may not be in
    /// the journal yet.
    fn pending_entry(&self, sequence: u64) -> Option<&Arc<Entry>> {
        let first = self.pending.front()?.body.sequence;
        let at = usize::try_from(sequence.checked_sub(first)?).ok()?;
        self.pending
            .get(at)
            .filter(|entry| entry.body.sequence == sequence)
    }

    /// Entry `sequence`: one this writer decided, or one in the journal.
    fn entry_at(&self, sequence: u64) -> Result<Arc<Entry>, SubmitError> {
        if let Some(entry) = self.pending_entry(sequence) {
            return Ok(entry.clone());
        }
        let missing = || SubmitError::Internal(format!("entry {sequence} is missing"));
        match self.store.read_entries(sequence, 1) {
            Ok(mut found) if found.len() == 1 => Ok(Arc::new(found.remove(0))),
            Ok(_) => Err(missing()),
            Err(error) => Err(SubmitError::Internal(error.to_string())),
        }
    }
}

/// The answer to a command whose request id produced `entry` (`sequence`)
/// already: that entry again, if the command is the same. It is sent after
/// the barrier of the command's own chunk, so after the entry's.
fn answer_retry(command: &Command, sequence: u64, entry: Arc<Entry>) -> Answer {
    if entry.body.request_hash != command.request_hash() {
        return Answer::Error(SubmitError::Refused(DomainError::RequestIdReused {
            request_id: command.request_id.to_string(),
            sequence,
        }));
    }
    Answer::Entry(entry)
}

/// Applies durable chunks to the read side in order (writing what the
/// writer's apply worked out, [`Written`], rather than working it out
/// again) and to the Merkle tree, then lets the reads waiting for them go
/// on (their waiters were answered once the chunk was durable; a standby's
/// followed chunks are answered here), then tells the persister.
struct Publisher {
    read_side: Arc<RwLock<LedgerState>>,
    persist: std::sync::mpsc::Sender<u64>,
    failed: Arc<AtomicBool>,
    /// Where the Merkle tree's hashes are kept.
    store: Arc<dyn Store>,
    /// Set when writing the tree failed: it is left behind the journal (and
    /// no checkpoint is signed) until a restart brings it level.
    tree_failed: AtomicBool,
    /// Told the tree's size after each batch, when checkpoints are signed.
    checkpointer: Option<std::sync::mpsc::Sender<checkpoints::Request>>,
    /// Told what the read side holds after each chunk.
    progress: Arc<Progress>,
}

impl Publisher {
    fn run(self, chunks: std::sync::mpsc::Receiver<Chunk>) {
        // However this thread ends, no read is left waiting for it.
        let _stop = StopOnDrop(self.progress.clone());
        while let Ok(chunk) = chunks.recv() {
            self.publish(chunk);
        }
    }

    fn publish(&self, mut chunk: Chunk) {
        let _entered = chunk.span.clone().entered();
        let mut written = std::mem::take(&mut chunk.written);
        // What the entries' loans change of the portfolio figures needs
        // the loans alone: worked out before readers are made to wait.
        for written in &mut written {
            written.work_out_loans();
        }
        let applied = {
            let mut read_side = self
                .read_side
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            chunk
                .entries
                .iter()
                .zip(written)
                .try_for_each(|(entry, written)| read_side.apply_written(entry, written))
        };
        if let Err(error) = applied {
            // Durable but not published: a restart replays the entries, and
            // retries then get their results. Decide nothing more until then.
            tracing::error!(%error, "a durable entry did not apply to the read side; the ledger stops deciding commands");
            self.failed.store(true, Ordering::SeqCst);
            self.tree_failed.store(true, Ordering::Relaxed);
            // Reads see the read side as it is, and wait for nothing more.
            self.progress.stop();
            chunk.refuse(SubmitError::Unavailable(
                "the ledger stopped after an internal fault; retry after a restart".into(),
            ));
            return;
        }
        // Before the reads waiting for the chunk go on: a proof or a
        // checkpoint asked for after a write was acknowledged covers it.
        self.grow_tree(&chunk.entries);
        self.progress.publish(chunk.through);
        let published = chunk.entries.len() as u64;
        // Only a followed chunk's submission is still to answer.
        chunk.answer(&self.progress);
        if published > 0 && self.persist.send(published).is_err() {
            tracing::warn!(
                "state persister has stopped; the cache will be rebuilt from the journal at startup"
            );
        }
    }
}

impl Publisher {
    /// Appends a durable chunk's leaves to the Merkle tree (derived from the
    /// journal: never a barrier). A tree that would not follow the chunk (a
    /// chunk lost to a fault before it) is left as it is, a prefix of the
    /// journal, until a restart brings it level.
    fn grow_tree(&self, entries: &[Arc<Entry>]) {
        let Some(tree) = self.store.tree() else {
            return;
        };
        if entries.is_empty() || self.tree_failed.load(Ordering::Relaxed) {
            return;
        }
        if entries[0].body.sequence != tree.leaves() + 1 {
            tracing::error!(
                tree = tree.leaves(),
                batch = entries[0].body.sequence,
                "the Merkle tree does not end where the batch begins; it is left behind until a restart rebuilds it"
            );
            self.tree_failed.store(true, Ordering::Relaxed);
            return;
        }
        if let Err(error) = tree.append(&checkpoints::leaves(entries)) {
            tracing::error!(%error, "writing the Merkle tree failed; no checkpoint is signed until a restart rebuilds it");
            self.tree_failed.store(true, Ordering::Relaxed);
            return;
        }
        if let Some(checkpointer) = &self.checkpointer {
            let _ = checkpointer.send(checkpoints::Request::Grew(tree.leaves()));
        }
    }
}

/// Checkpoints the derived state into the store's cache: the records
/// changed since the last checkpoint, every `checkpoint_entries` entries or
/// `checkpoint_interval`, and at shutdown. Between checkpoints the journal
/// alone holds the newest entries; startup replays them.
struct Persister {
    store: Arc<dyn Store>,
    read_side: Arc<RwLock<LedgerState>>,
    /// After a fault the read side may hold half an entry: never checkpoint it.
    failed: Arc<AtomicBool>,
    checkpoint_entries: u64,
    checkpoint_interval: std::time::Duration,
    /// Entries past the journal's index after which it is written again.
    index_entries: u64,
    /// Where the index written again is handed to the writer.
    indexed: Arc<Mutex<Option<Arc<dyn FoundRequests>>>>,
}

impl Persister {
    fn run(self, published: std::sync::mpsc::Receiver<u64>) {
        let mut pending = 0u64;
        let mut last = std::time::Instant::now();
        loop {
            let wait = self.checkpoint_interval.saturating_sub(last.elapsed());
            match published.recv_timeout(wait) {
                Ok(count) => pending += count,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
            let due =
                pending >= self.checkpoint_entries || last.elapsed() >= self.checkpoint_interval;
            if pending > 0 && due {
                self.checkpoint();
                self.index_journal();
                pending = 0;
            }
            if due {
                last = std::time::Instant::now();
            }
        }
        self.checkpoint();
        if let Err(error) = self.store.flush_state() {
            tracing::error!(%error, "flushing derived state at shutdown failed");
        }
    }

    /// Has the store write the journal's index again once enough entries
    /// are past it, and hands what it covers to the writer.
    fn index_journal(&self) {
        if self.failed.load(Ordering::SeqCst) {
            return;
        }
        match self.store.index_journal(self.index_entries) {
            Ok(Some(on_disk)) => {
                tracing::info!(
                    covered = on_disk.len(),
                    "journal index written while running"
                );
                *self
                    .indexed
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(on_disk);
            }
            Ok(None) => {}
            Err(error) => {
                // The entries past the old index stay in memory, as before.
                tracing::warn!(%error, "writing the journal's index while running failed; retrying after the next checkpoint");
            }
        }
    }

    fn checkpoint(&self) {
        if self.failed.load(Ordering::SeqCst) {
            return;
        }
        let changes = self
            .read_side
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take_changes_to_save();
        // Members' accounts' records let go of and booked to since are
        // read back from the store outside the lock: the read side goes on
        // answering and applying entries meanwhile.
        let (records, saved) = match changes.complete() {
            Ok(completed) => completed,
            Err((error, keys)) => {
                // A record let go of in part could not be read back to be
                // written whole: nothing is written, every key stays
                // changed, and the next checkpoint tries again.
                tracing::error!(%error, "reading back a record to save failed; retrying at the next checkpoint");
                self.read_side
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .mark_changed(keys);
                return;
            }
        };
        if records.is_empty() {
            return;
        }
        let result = self.store.save_state(&records);
        let mut read_side = self
            .read_side
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match result {
            // What the read side held only for the store to save (closed
            // day-log chunks, members' accounts' records) is read back
            // from it from now on.
            Ok(()) => read_side.saved_whole(&saved),
            Err(error) => {
                // Keep the keys changed so that the next checkpoint writes
                // them: the cache must never skip a record and then claim a
                // later head.
                tracing::error!(%error, "saving derived state failed; retrying at the next checkpoint");
                read_side.mark_changed(saved.into_keys());
            }
        }
    }
}

/// Why a standby refuses a write.
const STANDBY: &str = "this server is a standby: it serves reads and takes over writing when the \
    writer's lease on the journal lapses; send writes to the writer";

/// Runs a ledger thread's body; if it panics, marks the ledger failed (so
/// that nothing more is decided and health checks say NOT_SERVING).
fn guarded(
    failed: Arc<AtomicBool>,
    body: impl FnOnce() + Send + 'static,
) -> impl FnOnce() + Send + 'static {
    move || {
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).is_err() {
            tracing::error!("a ledger thread panicked; the ledger stops deciding commands");
            failed.store(true, Ordering::SeqCst);
        }
    }
}

/// The label a refusal is counted under.
fn refusal_reason(error: &DomainError) -> &'static str {
    match error {
        DomainError::Invalid { .. } => "invalid",
        DomainError::NotFound { .. } => "not_found",
        DomainError::AlreadyExists { .. } => "already_exists",
        DomainError::Precondition { .. } => "failed_precondition",
        DomainError::RequestIdReused { .. } => "request_id_reused",
        DomainError::Overflow => "overflow",
        DomainError::PermissionDenied { .. } => "permission_denied",
        DomainError::Damaged { .. } => "damaged",
        DomainError::Unavailable { .. } => "unavailable",
    }
}

/// The message a panic was raised with, when it is text.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}
