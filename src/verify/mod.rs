//! Offline verification of a data directory (server stopped): replays the
//! journal from the first entry, checks every record's checksum, every
//! entry's hash chain, canonical encoding, balance and sequence, re-decides
//! every command under the rules version its entry names and compares the
//! result with the stored entry, then compares the rebuilt derived state with
//! the stored cache.
//!
//! An entry decided under rules this build does not have (a newer release's)
//! cannot be re-decided: its recorded outcome is checked by its invariants
//! instead (encoding, sequence, chain, balance, request id and hash, and that
//! it applies to the state before it), and the report says how many entries
//! were checked that way and why.
//!
//! The Merkle tree is recomputed along the replay and compared with the
//! server's tree file and every checkpoint it signed (`tree`).
//!
//! Architecture invariant: verify only reads; it never repairs or writes the
//! journal.

mod tree;

pub use tree::TreeReport;

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::DateTime;

use crate::domain::command::Command;
use crate::domain::entry::{
    Entry, EntryBody, GENESIS_HASH, Hash, RULES_VERSION_CURRENT, RulesVersion, chain_hash,
};
use crate::domain::state::{
    ExecContext, ExecuteError, LedgerState, STATE_FORMAT, StateKey, records_format,
};
use crate::store::{
    Covered, IndexCheck, IndexFile, JOURNAL_FILE_NAME, JOURNAL_INDEX_FILE_NAME, STATE_DIR_NAME,
    StoreError, load_state_records, read_entry_at_offset, scan_journal, split_payload,
};

/// What a successful verification saw.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// Entries checked.
    pub entries: u64,
    /// Hash of the last entry.
    pub last_hash: Hash,
    /// How far the verification went.
    pub depth: Depth,
    /// Sequence number the stored state cache was at when compared (with
    /// [`Depth::Full`]).
    pub state_compared_at: u64,
    /// Why the stored state cache was not compared although every command
    /// was re-decided: there is none, or another release wrote it in a
    /// layout this build does not read (a cache, which the server rebuilds
    /// from the journal at its next start, not the books).
    pub state_not_compared: Option<String>,
    /// Bytes of a torn, never-acknowledged record at the journal's tail
    /// (the server cuts it off at its next start).
    pub torn_tail_bytes: u64,
    /// Records of the access log checked (numbering and hash chain).
    pub access_records: u64,
    /// Entries checked by their invariants only, by the rules version they
    /// name: rules newer than this build's, which it cannot re-decide.
    pub invariants_only: BTreeMap<RulesVersion, u64>,
    /// The Merkle tree and checkpoints checked.
    pub tree: TreeReport,
    /// The journal's index (`journal.idx`) compared with the journal.
    pub journal_index: IndexCheck,
    /// Time taken.
    pub elapsed: Duration,
}

impl fmt::Display for VerifyReport {
    /// What `mfi-ledger verify` prints: one line, then a note for each
    /// thing an auditor should know.
    /// Counts have grouped digits, as the CLI shows them; entry sequence
    /// numbers and tree sizes, which name an entry or a checkpoint, do not.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |n: u64| crate::domain::money::grouped(&n.to_string());
        let seconds = self.elapsed.as_secs_f64().max(1e-9);
        write!(
            f,
            "ok: {} entries verified in {:.3} s ({} entries/s); last hash {}",
            count(self.entries),
            seconds,
            count((self.entries as f64 / seconds).round() as u64),
            hex::encode(self.last_hash),
        )?;
        match (self.depth, &self.state_not_compared) {
            (Depth::Full, None) => write!(
                f,
                "; every command re-decided; stored state matches the replay at entry {}",
                self.state_compared_at
            )?,
            (Depth::Full, Some(why)) => write!(
                f,
                "; every command re-decided; the stored state not compared: {why}"
            )?,
            (Depth::Chain, _) => write!(
                f,
                "; chain only: checksums, encoding, sequence, hash chain and balance checked, \
                 commands not re-decided and the stored state not compared"
            )?,
        }
        write!(
            f,
            "; {} access log records chain",
            count(self.access_records)
        )?;
        write!(
            f,
            "; Merkle tree recomputed: {} leaves of {} match, {} signed checkpoints verify",
            count(self.tree.file_leaves),
            crate::store::tree_file::TREE_FILE_NAME,
            count(self.tree.checkpoints)
        )?;
        if self.tree.checkpoints > 0 {
            write!(f, " (latest of size {})", self.tree.latest_checkpoint)?;
        }
        match &self.journal_index {
            IndexCheck::Matches(entries) => write!(
                f,
                "; {JOURNAL_INDEX_FILE_NAME}: the offsets and request ids of its {} entries match",
                count(*entries)
            )?,
            IndexCheck::NotUsed(why) => write!(
                f,
                "\nnote: {JOURNAL_INDEX_FILE_NAME} is not the journal's ({why}); the server does not \
                 use it: it reads the journal whole at its next start and writes it again"
            )?,
            IndexCheck::Absent => {}
        }
        for (version, entries) in &self.invariants_only {
            write!(
                f,
                "\nnote: {} entries verified by their invariants only (encoding, sequence, hash chain, \
                 balance, request id and hash, and that each applies to the state before it), not re-decided: \
                 they name rules version {version}, newer than this build's rules ({RULES_VERSION_CURRENT}); \
                 verify with a release that has rules version {version} to re-decide them",
                count(*entries)
            )?;
        }
        if self.torn_tail_bytes > 0 {
            write!(
                f,
                "\nnote: {} bytes of a torn, never-acknowledged record at the journal's tail; the server cuts them off at its next start",
                count(self.torn_tail_bytes)
            )?;
        }
        Ok(())
    }
}

/// The first thing found wrong.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The data directory cannot be read.
    #[error("cannot read {path}: {message}")]
    Unreadable { path: String, message: String },
    /// An entry does not check out.
    #[error("entry {sequence}: {message}")]
    Entry { sequence: u64, message: String },
    /// The entries since the previous signed checkpoint do not give the one
    /// of `size` (the first of them changed lies in `from..=size`).
    #[error("entries {from}..={size}: {message}")]
    Checkpoint {
        from: u64,
        size: u64,
        message: String,
    },
    /// Two checkpoints signed by the log's key disagree about one size.
    #[error("split view: {0}")]
    SplitView(String),
    /// The stored derived state differs from the replay.
    #[error("derived state differs from the journal's replay at entry {sequence}: {message}")]
    State { sequence: u64, message: String },
    /// The access log's records do not number or chain.
    #[error("{0}")]
    AccessLog(#[from] crate::store::access_log::AccessLogError),
    /// The access log does not hold a head a signed checkpoint anchors.
    #[error("access log: {0}")]
    AccessLogAnchor(String),
    /// The journal's index, which the server would use, is not the
    /// journal's: a retried request could be written twice.
    #[error("{JOURNAL_INDEX_FILE_NAME}: {0}")]
    JournalIndex(String),
}

/// Verifies the data directory `dir`, its checkpoints with the verifier
/// key the server published there (`log.pub`).
pub fn verify(dir: &Path) -> Result<VerifyReport, VerifyError> {
    verify_with(dir, &Evidence::default())
}

/// What `verify` checks the checkpoints with, besides the data directory's.
#[derive(Debug, Default)]
pub struct Evidence<'a> {
    /// The log's verifier key the institution published (else the auditor
    /// folder's `log.pub`, else the data directory's).
    pub log_key: Option<&'a crate::checkpoint::Verifier>,
    /// An auditor's folder (`audit fetch --dir`): every checkpoint kept there
    /// must hold for the journal too, so a copy whose server's own
    /// checkpoints were replaced is still held to what the auditor saw.
    pub auditor_folder: Option<&'a Path>,
}

/// Verifies the data directory `dir`, its checkpoints with `evidence`.
pub fn verify_with(dir: &Path, evidence: &Evidence) -> Result<VerifyReport, VerifyError> {
    verify_to(dir, evidence, Depth::Full)
}

/// How far `verify` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Depth {
    /// The chain and entry passes and the re-execution pass: every command
    /// re-decided and the stored state compared with the replay.
    #[default]
    Full,
    /// The chain and entry passes only: checksums, encoding, sequence, hash chain,
    /// balance, the Merkle tree and its signed checkpoints, the access
    /// log. Commands are not re-decided and the stored state is not
    /// compared.
    Chain,
}

/// Records or entries one pass hands to the next at a time.
const HANDOFF: usize = 256;
/// Handoffs in flight between two passes (bounds the memory held: up to
/// this many between each pair, from the chain pass to re-execution).
const HANDOFFS_IN_FLIGHT: usize = 64;
/// Most threads the entry pass checks batches on (one per core up to it).
const ENTRY_PASS_WORKERS: usize = 4;

/// Verifies the data directory `dir` to `depth`, its checkpoints with
/// `evidence`.
///
/// Four passes run side by side on their own threads, each handing what
/// it passed to the next in order: the chain pass reads the journal and
/// checks each record's checksum and hash chain; the tree pass
/// recomputes the Merkle tree and checks it; the entry pass decodes each
/// record and checks its encoding, sequence number and balance; the
/// re-execution pass (at [`Depth::Full`]) re-decides each command against
/// the state before it and applies it. The first thing found wrong, by
/// entry, is reported, as a single pass would.
pub fn verify_to(
    dir: &Path,
    evidence: &Evidence,
    depth: Depth,
) -> Result<VerifyReport, VerifyError> {
    let started = Instant::now();
    let tree = tree::TreeCheck::open(dir, evidence.log_key, evidence.auditor_folder)?;
    let journal_path = dir.join(JOURNAL_FILE_NAME);
    let file = File::open(&journal_path).map_err(|e| VerifyError::Unreadable {
        path: journal_path.display().to_string(),
        message: e.to_string(),
    })?;
    let (stored, state_not_compared) = match depth {
        Depth::Full => match load_stored_state(dir)? {
            StoredCache::Records(stored) => (Some(stored), None),
            StoredCache::Absent => (None, Some("the data directory keeps no state cache".into())),
            StoredCache::OtherFormat(why) => (None, Some(why)),
        },
        Depth::Chain => (None, None),
    };
    let stored_at = stored.as_ref().map_or(0, |(sequence, _)| *sequence);
    let (index_file, mut journal_index) = match IndexFile::open(dir) {
        Ok(Some(index)) => (Some(index), IndexCheck::Absent),
        Ok(None) => (None, IndexCheck::Absent),
        Err(why) => (None, IndexCheck::NotUsed(why)),
    };
    let indexed = index_file.as_ref();
    let (chain, tree, (checked, covered), replay) = std::thread::scope(|scope| {
        let (hashed, receive_hashed) = std::sync::mpsc::sync_channel(HANDOFFS_IN_FLIGHT);
        let (records, receive_records) = std::sync::mpsc::sync_channel(HANDOFFS_IN_FLIGHT);
        let (handoff, receive) = std::sync::mpsc::sync_channel(HANDOFFS_IN_FLIGHT);
        let replay = (depth == Depth::Full).then(|| {
            let (file, stored) = (&file, stored.as_ref());
            scope.spawn(move || replay_pass(file, stored, stored_at, receive))
        });
        let handoff = replay.is_some().then_some(handoff);
        let workers = std::thread::available_parallelism()
            .map_or(1, |cores| cores.get())
            .min(ENTRY_PASS_WORKERS);
        let checked = scope.spawn(move || entry_pass(receive_records, handoff, indexed, workers));
        let tree = scope.spawn(move || tree_pass(tree, receive_hashed, records));
        let chain = chain_pass(&file, hashed);
        let tree = tree
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let checked = checked
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        let replay = replay.map(|pass| {
            pass.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
        (chain, tree, checked, replay)
    });
    // The re-execution pass only saw entries the other passes passed, so
    // its failure comes first; then the earlier entry's, and at one entry
    // the check a single pass would have made first.
    let replay = replay.transpose()?;
    let (chain, mut tree) = (chain, tree);
    let first = [chain.failure, tree.failure.take(), checked]
        .into_iter()
        .flatten()
        .min_by_key(|failure| (failure.sequence, failure.rank));
    if let Some(failure) = first {
        return Err(failure.error);
    }
    if let Some(replay) = &replay
        && !replay.compared
    {
        return Err(VerifyError::State {
            sequence: stored_at,
            message: format!(
                "the state cache is at entry {stored_at} but the journal ends at entry {}: acknowledged entries are missing",
                chain.entries
            ),
        });
    }
    if let Some(index) = &index_file {
        let journal_len = file
            .metadata()
            .map_err(|e| VerifyError::Unreadable {
                path: journal_path.display().to_string(),
                message: e.to_string(),
            })?
            .len();
        journal_index = index
            .compare(&file, journal_len, covered)
            .map_err(VerifyError::JournalIndex)?;
    }
    let tree = tree.tree.finish()?;
    let access_log =
        crate::store::access_log::read_all(&dir.join(crate::store::access_log::ACCESS_LOG_FILE))?;
    check_access_log_anchors(&access_log, &tree)?;
    let access_records = access_log.len() as u64;
    Ok(VerifyReport {
        access_records,
        entries: chain.entries,
        last_hash: chain.last_hash,
        depth,
        state_compared_at: stored_at,
        state_not_compared,
        torn_tail_bytes: chain.torn_tail_bytes,
        invariants_only: replay.map(|r| r.invariants_only).unwrap_or_default(),
        tree,
        journal_index,
        elapsed: started.elapsed(),
    })
}

/// What the chain pass saw.
struct ChainPass {
    entries: u64,
    last_hash: Hash,
    torn_tail_bytes: u64,
    /// The first record it found wrong.
    failure: Option<Failure>,
}

/// What the tree pass saw.
struct TreePass {
    tree: tree::TreeCheck,
    /// The first record it found wrong.
    failure: Option<Failure>,
}

/// A pass's first fault, with where it stands among the other passes'.
struct Failure {
    sequence: u64,
    /// At one entry, the order a single pass checks in: the encoding and
    /// the sequence number, then the hash chain, the balance, the Merkle
    /// tree.
    rank: u8,
    error: VerifyError,
}

/// A record the chain pass hands on, through the tree pass, to the entry
/// pass: its offset, sequence number, where its canonical bytes are in its
/// batch's, its hash, and whether its hash chain and tree checked (the
/// chain pass and the tree pass each clear it at the fault they report).
struct Record {
    offset: u64,
    sequence: u64,
    canonical: std::ops::Range<usize>,
    hash: Hash,
    chained: bool,
}

/// Records the chain pass hands over together: their canonical bytes one
/// after another in one buffer, not each in its own (an allocation a
/// record on the chain pass's thread, freed on another's).
#[derive(Default)]
struct Records {
    bytes: Vec<u8>,
    records: Vec<Record>,
}

impl Records {
    /// Room for [`HANDOFF`] records of `bytes` bytes together.
    fn with_capacity(bytes: usize) -> Records {
        Records {
            bytes: Vec::with_capacity(bytes),
            records: Vec::with_capacity(HANDOFF),
        }
    }

    /// Adds a record and its canonical bytes.
    fn push(&mut self, offset: u64, sequence: u64, canonical: &[u8], hash: Hash, chained: bool) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(canonical);
        self.records.push(Record {
            offset,
            sequence,
            canonical: start..self.bytes.len(),
            hash,
            chained,
        });
    }
}

/// Entries (with their records' offsets) handed to the re-execution pass.
type Handoff = Vec<(u64, Entry)>;

/// Reads the journal and checks each record's hash chain, and hands the
/// records to the tree pass (`records`) in order, the first one found
/// wrong included (the entry pass may find an earlier fault in it). The
/// Merkle tree is the tree pass's, decoding the entry pass's, each on
/// threads of their own. Stops early, without an error of its own, when
/// the tree pass has stopped.
fn chain_pass(file: &File, records: std::sync::mpsc::SyncSender<Records>) -> ChainPass {
    let mut entries = 0u64;
    let mut previous_hash = GENESIS_HASH;
    let mut failure = None;
    let mut pending = Records::with_capacity(0);
    let mut next_pass_stopped = false;
    let send = |pending: &mut Records| {
        // The next batch with room for a quarter more bytes than this one
        // took, so that it seldom grows.
        let room = pending.bytes.len() + pending.bytes.len() / 4;
        pending.records.is_empty()
            || records
                .send(std::mem::replace(pending, Records::with_capacity(room)))
                .is_ok()
    };
    let scan = scan_journal(file, |offset, payload| {
        let sequence = entries + 1;
        let fail = |rank, error: VerifyError| {
            let message = error.to_string();
            (
                Failure {
                    sequence,
                    rank,
                    error,
                },
                StoreError::State(message),
            )
        };
        let (bytes, stored) = match split_payload(offset, payload) {
            Ok(split) => split,
            Err(error) => {
                let (f, stop) = fail(
                    0,
                    VerifyError::Entry {
                        sequence,
                        message: format!("record does not hold an entry: {error}"),
                    },
                );
                failure = Some(f);
                return Err(stop);
            }
        };
        let hash = chain_hash(&previous_hash, &bytes);
        let checked = if hash == stored {
            Ok(())
        } else {
            Err(fail(
                1,
                VerifyError::Entry {
                    sequence,
                    message: format!(
                        "hash mismatch: stored {}, expected {} from the previous hash and the entry's bytes",
                        hex::encode(stored),
                        hex::encode(hash)
                    ),
                },
            ))
        };
        pending.push(offset, sequence, &bytes, hash, checked.is_ok());
        if let Err((f, stop)) = checked {
            failure = Some(f);
            return Err(stop);
        }
        previous_hash = hash;
        entries = sequence;
        if pending.records.len() == HANDOFF && !send(&mut pending) {
            next_pass_stopped = true;
            return Err(StoreError::State("the tree pass stopped".into()));
        }
        Ok(())
    });
    // Records up to a failure go on too: a fault the entry pass finds in
    // them comes before this one. (A tree pass that stopped takes none.)
    if !next_pass_stopped && !pending.records.is_empty() {
        let _ = records.send(std::mem::take(&mut pending));
    }
    drop(records);
    let torn_tail_bytes = match scan {
        Ok(scan) => scan.torn_bytes,
        // The failure, or the pass that stopped, reports what it found.
        Err(_) if failure.is_some() || next_pass_stopped => 0,
        Err(error) => {
            failure = Some(Failure {
                sequence: entries + 1,
                rank: 0,
                error: VerifyError::Entry {
                    sequence: entries + 1,
                    message: format!("journal unreadable: {error}"),
                },
            });
            0
        }
    };
    ChainPass {
        entries,
        last_hash: previous_hash,
        torn_tail_bytes,
        failure,
    }
}

/// Pushes each record the chain pass passed into the recomputed Merkle
/// tree, checked against the server's tree file and the signed
/// checkpoints as it grows, and hands the records on to the entry pass
/// (`records`) in order, the first one found wrong included and marked so.
/// On a thread of its own: reading the journal and the hash chain held a
/// core, and hashing every entry again for its leaf was most of the tree's
/// work. Stops early, without an error of its own, when the entry pass has
/// stopped.
fn tree_pass(
    mut tree: tree::TreeCheck,
    hashed: std::sync::mpsc::Receiver<Records>,
    records: std::sync::mpsc::SyncSender<Records>,
) -> TreePass {
    let mut failure = None;
    for mut batch in hashed {
        let Records {
            bytes,
            records: batch_records,
        } = &mut batch;
        // A record whose hash chain failed is the chain pass's last, and
        // not in the tree (as a single pass would have stopped before it).
        if let Some(wrong) = batch_records
            .iter_mut()
            .filter(|record| record.chained)
            .find_map(|record| {
                let pushed = tree.push(
                    record.sequence,
                    &bytes[record.canonical.clone()],
                    &record.hash,
                );
                pushed.err().map(|error| {
                    record.chained = false;
                    (record.sequence, error)
                })
            })
        {
            let (sequence, error) = wrong;
            batch_records.retain(|record| record.sequence <= sequence);
            failure = Some(Failure {
                sequence,
                rank: 3,
                error,
            });
        }
        if records.send(batch).is_err() || failure.is_some() {
            break;
        }
    }
    TreePass { tree, failure }
}

/// Decodes each record the tree pass handed over and checks its
/// encoding, sequence number and balance, and hands the entries that
/// passed every check to the re-execution pass (`handoff`) in order.
/// Returns its first fault; stops early, without one, when the
/// re-execution pass has stopped on its own.
/// With `indexed`, the journal's index: it also returns what its entries
/// gave to compare with it ([`IndexFile::cover`]).
///
/// Decoding and checking are the longest part of `verify --chain-only`
/// (about twice the chain pass's work), so the batches are checked on
/// `workers` threads, each taking the next batch as it is free, and put
/// back in order here: what is reported and handed on is what one thread
/// checking the records in order would give.
fn entry_pass(
    records: std::sync::mpsc::Receiver<Records>,
    handoff: Option<std::sync::mpsc::SyncSender<Handoff>>,
    indexed: Option<&IndexFile>,
    workers: usize,
) -> (Option<Failure>, Covered) {
    // The next batch and its place: taken under the lock, so that the
    // places follow the journal.
    let next = std::sync::Mutex::new((records, 0u64));
    let window = Window::default();
    let (checked, receive) = std::sync::mpsc::sync_channel::<CheckedBatch>(HANDOFFS_IN_FLIGHT);
    // Without a re-execution pass the entries are let go where they were
    // decoded (freeing them on another thread cost more than checking).
    let keep = handoff.is_some();
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            let (next, window, checked) = (&next, &window, checked.clone());
            // As the other passes' threads: one that cannot be started panics.
            scope.spawn(move || {
                // A worker that panics stops the others rather than leave
                // them waiting for the batch it held (the panic goes on when
                // the scope ends).
                let _stop_on_panic = StopOnPanic(window);
                loop {
                    let (place, batch) = {
                        let mut next = next
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        let Ok(batch) = next.0.recv() else {
                            return;
                        };
                        next.1 += 1;
                        (next.1 - 1, batch)
                    };
                    if !window.wait_for_turn(place)
                        || checked
                            .send(check_batch(place, batch, indexed, keep))
                            .is_err()
                    {
                        return;
                    }
                }
            });
        }
        drop(checked);
        let found = in_order(receive, handoff, |released| window.release(released));
        // The workers stop at their next batch; the tree pass, once they
        // have and the records' receiver is gone, at its next handover, and
        // the chain pass at its own after that.
        window.stop();
        found
    })
}

/// How far ahead of the batch awaited in order the entry pass's workers
/// may check: a batch more than [`HANDOFFS_IN_FLIGHT`] places ahead waits
/// (the batch awaited itself never does), so the batches held, checked or
/// waiting to be taken in order stay bounded whatever a worker's pace.
#[derive(Default)]
struct Window {
    /// Batches taken in order so far, and whether the pass stopped.
    state: std::sync::Mutex<(u64, bool)>,
    turn: std::sync::Condvar,
}

impl Window {
    /// Waits until batch `place` may be checked; false when the pass
    /// stopped.
    fn wait_for_turn(&self, place: u64) -> bool {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while !state.1 && place >= state.0 + HANDOFFS_IN_FLIGHT as u64 {
            state = self
                .turn
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        !state.1
    }

    /// Notes that the batches before `released` were taken in order.
    fn release(&self, released: u64) {
        self.update(|state| state.0 = released);
    }

    /// Stops the pass: waiting workers return.
    fn stop(&self) {
        self.update(|state| state.1 = true);
    }

    fn update(&self, change: impl FnOnce(&mut (u64, bool))) {
        change(
            &mut self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        self.turn.notify_all();
    }
}

/// Stops the entry pass's window when its worker's thread panics.
struct StopOnPanic<'a>(&'a Window);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.stop();
        }
    }
}

/// What the entry pass found in one batch of records.
struct CheckedBatch {
    /// The batch's place among the chain pass's (0 for the first).
    place: u64,
    /// The entries that passed every check, in order, up to where the
    /// checks stopped (none when there is no re-execution pass to take
    /// them).
    entries: Handoff,
    /// What they gave to compare with the journal's index.
    covered: Covered,
    /// Where the checks stopped, if they did before the batch's end: at a
    /// fault, or (`Some(None)`) at a record whose hash or tree did not
    /// check, which the chain pass or the tree pass reports.
    stop: Option<Option<Failure>>,
}

/// Checks one batch of records (see [`entry_pass`]); keeps the entries
/// that passed when `keep`.
fn check_batch(
    place: u64,
    batch: Records,
    indexed: Option<&IndexFile>,
    keep: bool,
) -> CheckedBatch {
    let mut checked = CheckedBatch {
        place,
        entries: Vec::with_capacity(if keep { batch.records.len() } else { 0 }),
        covered: Covered::default(),
        stop: None,
    };
    let first = batch.records.first().map_or(1, |record| record.sequence);
    // The offset and request-id hash of each entry that passed, for the
    // index (those it does not cover are left out by `cover`).
    let mut requests = Vec::with_capacity(if indexed.is_some() {
        batch.records.len()
    } else {
        0
    });
    for record in batch.records {
        let (offset, sequence) = (record.offset, record.sequence);
        let canonical = &batch.bytes[record.canonical.clone()];
        let body = match check_entry(&record, canonical) {
            Ok(Some(body)) => body,
            Ok(None) => {
                checked.stop = Some(None);
                break;
            }
            Err((rank, error)) => {
                checked.stop = Some(Some(Failure {
                    sequence,
                    rank,
                    error,
                }));
                break;
            }
        };
        if let Some(index) = indexed
            && sequence <= index.count()
        {
            requests.push((offset, index.key().hash(body.request_id.as_str())));
        }
        if keep {
            let entry = Entry {
                body,
                hash: record.hash,
                canonical: canonical.to_vec(),
            };
            checked.entries.push((offset, entry));
        }
    }
    if let Some(index) = indexed {
        checked.covered = index.cover(first, &requests);
    }
    checked
}

/// Takes the checked batches in the chain pass's order, whatever order the
/// workers finish them in: adds up what they gave for the index, hands the entries
/// to the re-execution pass and stops at the first batch whose checks
/// stopped (or when the re-execution pass stopped on its own). Batches
/// finished early wait here, never on the channel, so a worker still
/// checking an earlier one is never blocked; `release` is told how many
/// were taken in order (the workers' [`Window`]).
fn in_order(
    checked: std::sync::mpsc::Receiver<CheckedBatch>,
    handoff: Option<std::sync::mpsc::SyncSender<Handoff>>,
    mut release: impl FnMut(u64),
) -> (Option<Failure>, Covered) {
    let mut covered = Covered::default();
    let mut waiting: BTreeMap<u64, CheckedBatch> = BTreeMap::new();
    let mut next = 0u64;
    for batch in checked {
        waiting.insert(batch.place, batch);
        while let Some(batch) = waiting.remove(&next) {
            next += 1;
            release(next);
            covered.add(batch.covered);
            if let Some(handoff) = &handoff
                && !batch.entries.is_empty()
                && handoff.send(batch.entries).is_err()
            {
                return (None, covered);
            }
            if let Some(stop) = batch.stop {
                return (stop, covered);
            }
        }
    }
    (None, covered)
}

/// What the re-execution pass saw.
struct ReplayPass {
    compared: bool,
    invariants_only: BTreeMap<RulesVersion, u64>,
}

/// Re-decides and applies every entry handed over, in order, and compares
/// the state with the stored cache at the entry it was stored at.
fn replay_pass(
    file: &File,
    stored: Option<&StoredState>,
    stored_at: u64,
    handoffs: std::sync::mpsc::Receiver<Handoff>,
) -> Result<ReplayPass, VerifyError> {
    let mut state = LedgerState::new();
    // Which records each entry changed is the server's, for its checkpoints;
    // the replay compares the whole state with the stored cache instead.
    state.stop_tracking_changes();
    let mut offsets: Vec<u64> = Vec::new();
    let mut pass = ReplayPass {
        compared: false,
        invariants_only: BTreeMap::new(),
    };
    if stored_at == 0 {
        compare_state(&state, stored, 0)?;
        pass.compared = true;
    }
    for handoff in handoffs {
        for (offset, entry) in handoff {
            let sequence = entry.body.sequence;
            let lookup = |wanted: u64| -> Result<Option<EntryBody>, String> {
                let Some(&at) = offsets.get((wanted.max(1) - 1) as usize) else {
                    return Ok(None);
                };
                read_entry_at_offset(file, at, wanted)
                    .map(|e| Some(e.body))
                    .map_err(|e| e.to_string())
            };
            if let Checked::ByInvariants = reexecute(&state, &entry, &lookup)? {
                *pass
                    .invariants_only
                    .entry(entry.body.rules_version)
                    .or_default() += 1;
            }
            state.apply(&entry).map_err(|e| VerifyError::Entry {
                sequence,
                message: e.message,
            })?;
            offsets.push(offset);
            if sequence == stored_at {
                compare_state(&state, stored, sequence)?;
                pass.compared = true;
            }
        }
    }
    Ok(pass)
}

/// Every access log head a signed checkpoint anchors is in the log: the
/// record of that number has that hash (records cut from the log's end, or
/// the log replaced, leave a chain that holds but not the anchors).
fn check_access_log_anchors(
    records: &[crate::store::access_log::Record],
    tree: &TreeReport,
) -> Result<(), VerifyError> {
    for &(size, count, hash) in &tree.access_log_anchors {
        if count == 0 {
            continue;
        }
        let kept = records.get(count as usize - 1);
        if kept.is_none_or(|record| record.hash != hash) {
            return Err(VerifyError::AccessLogAnchor(format!(
                "the checkpoint of size {size} signed by the log's key anchors access log record {count}                  with hash {}, but the access log {}: records were cut from it or it was replaced",
                hex::encode(hash),
                match kept {
                    None => format!("holds only {} records", records.len()),
                    Some(record) => format!("has hash {} there", hex::encode(record.hash)),
                }
            )));
        }
    }
    Ok(())
}

/// Decodes a record's canonical bytes and checks its encoding, sequence
/// number and balance: `None` when they hold but the chain pass found its
/// hash or the tree pass its tree wrong (which they report); a fault with
/// its rank (see
/// [`Failure`]).
fn check_entry(record: &Record, bytes: &[u8]) -> Result<Option<EntryBody>, (u8, VerifyError)> {
    let sequence = record.sequence;
    let fail = |rank, message: String| (rank, VerifyError::Entry { sequence, message });
    let body = EntryBody::from_canonical_bytes(bytes).map_err(|e| fail(0, e.to_string()))?;
    if body.sequence != sequence {
        return Err(fail(
            0,
            format!(
                "holds sequence number {} (a gap or a duplicate)",
                body.sequence
            ),
        ));
    }
    if !body.has_canonical_bytes(bytes) {
        return Err(fail(
            0,
            "stored bytes are not the canonical encoding of the entry".into(),
        ));
    }
    if !body.is_balanced() {
        let (debits, credits) = body.totals();
        return Err(fail(
            2,
            format!("postings do not balance: debits {debits}, credits {credits}"),
        ));
    }
    if !record.chained {
        return Ok(None);
    }
    Ok(Some(body))
}

/// Reads an earlier entry's body (for reversals).
type Lookup<'a> = dyn Fn(u64) -> Result<Option<EntryBody>, String> + 'a;

/// How an entry's decision was checked.
enum Checked {
    /// Re-decided under its rules version: the same entry, byte for byte.
    Redecided,
    /// Its rules are newer than this build's: checked by its invariants.
    ByInvariants,
}

/// Decides `command` under rules `version`, or `None` when this build does
/// not have that version's decision code. Every released rules version
/// keeps an arm here: a rules fix adds a version (and `execute` branches on
/// `ExecContext::rules_version` where the rules differ), never changes one.
fn decide_under(
    version: RulesVersion,
    state: &LedgerState,
    command: &Command,
    recorded_at: chrono::DateTime<chrono::Utc>,
    lookup: &Lookup<'_>,
) -> Option<Result<EntryBody, ExecuteError>> {
    let context = ExecContext {
        recorded_at,
        rules_version: version,
    };
    match version {
        // The rules of the first release with a journal compatibility promise.
        1 => Some(state.execute(command, context, lookup)),
        // Access control: every command names its principal, whose roles
        // (as of the entry) must allow it.
        2 => Some(state.execute(command, context, lookup)),
        // Branch funding; every other command as under version 2.
        3 => Some(state.execute(command, context, lookup)),
        _ => None,
    }
}

/// Re-decides the entry's command against the state before it under the
/// rules version it names and checks that they give exactly the stored
/// entry; an entry under rules newer than this build's is checked by its
/// invariants instead (the caller applies it to the state, which checks
/// that it fits).
fn reexecute(
    state: &LedgerState,
    entry: &Entry,
    lookup: &Lookup<'_>,
) -> Result<Checked, VerifyError> {
    let body = &entry.body;
    let fail = |message: String| VerifyError::Entry {
        sequence: body.sequence,
        message,
    };
    let candidates = state
        .request_candidates(&body.request_id)
        .map_err(|e| fail(format!("looking up request id {}: {e}", body.request_id)))?;
    for earlier in candidates {
        let recorded = lookup(earlier)
            .map_err(|e| fail(format!("reading entry {earlier}: {e}")))?
            .map(|earlier| earlier.request_id);
        if recorded.as_ref() == Some(&body.request_id) {
            return Err(fail(format!(
                "reuses request id {} of entry {}",
                body.request_id, earlier
            )));
        }
    }
    let command = body.client_command();
    if command.request_hash() != body.request_hash {
        return Err(fail("request hash does not match the command".into()));
    }
    let recorded_at = DateTime::from_timestamp_micros(body.recorded_at_micros)
        .ok_or_else(|| fail("time of recording out of range".into()))?;
    let version = body.rules_version;
    let Some(decided) = decide_under(version, state, &command, recorded_at, lookup) else {
        if version > RULES_VERSION_CURRENT {
            return Ok(Checked::ByInvariants);
        }
        return Err(fail(format!(
            "names rules version {version}, which no release decided under"
        )));
    };
    let decided = decided.map_err(|e| {
        fail(format!(
            "rules version {version} refuse its command now: {e}"
        ))
    })?;
    if decided != *body {
        return Err(fail(format!(
            "re-deciding its command under rules version {version} gives a different entry (outcome or postings)"
        )));
    }
    Ok(Checked::Redecided)
}

type StoredState = (u64, BTreeMap<Vec<u8>, Vec<u8>>);

/// The stored state cache, as verification finds it.
enum StoredCache {
    /// Records in this build's layout, and the entry they stand at.
    Records(StoredState),
    /// No state directory, or no records in it.
    Absent,
    /// Records in a layout another release wrote ([`STATE_FORMAT`] moves
    /// when the cache's records change): not this build's to compare, and
    /// not a fault of the journal, which every later build verifies. Why,
    /// as the report says it.
    OtherFormat(String),
}

/// The stored state, read from a copy of the state directory so that
/// verification never writes to the data directory (opening sled writes).
fn load_stored_state(dir: &Path) -> Result<StoredCache, VerifyError> {
    let unreadable = |message: String| VerifyError::Unreadable {
        path: dir.display().to_string(),
        message,
    };
    if !dir.join(STATE_DIR_NAME).exists() {
        return Ok(StoredCache::Absent);
    }
    let copy = tempfile::tempdir().map_err(|e| unreadable(e.to_string()))?;
    copy_dir(&dir.join(STATE_DIR_NAME), &copy.path().join(STATE_DIR_NAME))
        .map_err(|e| unreadable(e.to_string()))?;
    let dir = copy.path();
    let records = load_state_records(dir).map_err(|e| VerifyError::Unreadable {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    let Some(records) = records else {
        return Ok(StoredCache::Absent);
    };
    let records: BTreeMap<Vec<u8>, Vec<u8>> = records.into_iter().collect();
    if records.is_empty() {
        return Ok(StoredCache::Absent);
    }
    let rebuilt = "the server rebuilds it from the journal at its next start";
    let format = records.get(&StateKey::Format.to_bytes()).map(Vec::as_slice);
    match records_format(format).map_err(|message| VerifyError::State {
        sequence: 0,
        message,
    })? {
        Some(STATE_FORMAT) => {}
        Some(format) => {
            return Ok(StoredCache::OtherFormat(format!(
                "its records are in format {format}, written by another release, and this build reads \
                 format {STATE_FORMAT}; {rebuilt}"
            )));
        }
        None => {
            return Ok(StoredCache::OtherFormat(format!(
                "its records have no format record (written by a release before format records), and \
                 this build reads format {STATE_FORMAT}; {rebuilt}"
            )));
        }
    }
    let state = LedgerState::import(records.iter().map(|(k, v)| (k.as_slice(), v.as_slice())))
        .map_err(|message| VerifyError::State {
            sequence: 0,
            message,
        })?;
    Ok(StoredCache::Records((state.last_sequence(), records)))
}

fn compare_state(
    state: &LedgerState,
    stored: Option<&StoredState>,
    sequence: u64,
) -> Result<(), VerifyError> {
    let empty = BTreeMap::new();
    let stored = stored.map_or(&empty, |(_, records)| records);
    let rebuilt = state.export().map_err(|e| VerifyError::State {
        sequence,
        message: e.to_string(),
    })?;
    let rebuilt = if sequence == 0 && stored.is_empty() {
        BTreeMap::new()
    } else {
        rebuilt
    };
    for (key, value) in &rebuilt {
        match stored.get(key) {
            None => return Err(state_error(sequence, key, "missing from the stored state")),
            Some(stored_value) if stored_value != value => {
                return Err(state_error(
                    sequence,
                    key,
                    "stored value differs from the replay",
                ));
            }
            Some(_) => {}
        }
    }
    if let Some(key) = stored.keys().find(|key| !rebuilt.contains_key(*key)) {
        return Err(state_error(
            sequence,
            key,
            "stored but absent from the replay",
        ));
    }
    Ok(())
}

fn state_error(sequence: u64, key: &[u8], message: &str) -> VerifyError {
    VerifyError::State {
        sequence,
        message: format!("record {:?}: {message}", String::from_utf8_lossy(key)),
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod report_tests {
    use super::*;

    #[test]
    fn the_report_groups_counts_but_not_sequence_numbers() {
        let report = VerifyReport {
            entries: 1_482_230,
            last_hash: [0xab; 32],
            depth: Depth::Full,
            state_compared_at: 1_400_000,
            state_not_compared: None,
            torn_tail_bytes: 4_096,
            access_records: 12_345,
            invariants_only: BTreeMap::new(),
            tree: TreeReport {
                file_leaves: 1_482_230,
                checkpoints: 1_500,
                latest_checkpoint: 1_482_000,
                access_log_anchors: Vec::new(),
            },
            journal_index: IndexCheck::Matches(1_482_000),
            elapsed: Duration::from_secs(10),
        };
        let text = report.to_string();
        assert!(
            text.starts_with("ok: 1,482,230 entries verified in 10.000 s (148,223 entries/s)"),
            "{text}"
        );
        assert!(
            text.contains("matches the replay at entry 1400000;"),
            "{text}"
        );
        assert!(text.contains("; 12,345 access log records chain"), "{text}");
        assert!(
            text.contains("1,482,230 leaves of merkle.tree match, 1,500 signed checkpoints"),
            "{text}"
        );
        assert!(text.contains("(latest of size 1482000)"), "{text}");
        assert!(text.contains("note: 4,096 bytes of a torn"), "{text}");
        assert!(
            text.contains(
                "journal.idx: the offsets and request ids of its 1,482,000 entries match"
            ),
            "{text}"
        );
    }
}

#[cfg(test)]
mod entry_pass_tests {
    use super::*;

    /// A batch of `entries` that passed for the index, one of them placed
    /// elsewhere than it says when `misplaced`.
    fn batch(place: u64, entries: u64, misplaced: bool, fault_at: Option<u64>) -> CheckedBatch {
        CheckedBatch {
            place,
            entries: Vec::new(),
            covered: Covered {
                entries,
                misplaced: misplaced.then(|| format!("in batch {place}")),
                digest_sum: u64::MAX - place,
            },
            stop: fault_at.map(|sequence| {
                Some(Failure {
                    sequence,
                    rank: 2,
                    error: VerifyError::Entry {
                        sequence,
                        message: "postings do not balance".into(),
                    },
                })
            }),
        }
    }

    /// The batches as the workers finish them.
    fn finished(batches: Vec<CheckedBatch>) -> (Option<Failure>, Covered) {
        let (send, receive) = std::sync::mpsc::sync_channel(batches.len());
        for batch in batches {
            send.send(batch).unwrap();
        }
        drop(send);
        in_order(receive, None, |_| {})
    }

    #[test]
    fn batches_finished_out_of_order_are_taken_in_the_journals() {
        let (fault, covered) = finished(vec![
            batch(2, 2, true, None),
            batch(0, 2, false, None),
            batch(1, 2, true, None),
        ]);
        assert!(fault.is_none());
        assert_eq!(covered.entries, 6);
        assert_eq!(
            covered.misplaced.as_deref(),
            Some("in batch 1"),
            "the journal's first misplaced entry, not the first found"
        );
        let sum = (0..3).fold(0u64, |sum, place| sum.wrapping_add(u64::MAX - place));
        assert_eq!(covered.digest_sum, sum);
    }

    #[test]
    fn a_later_batchs_fault_found_first_gives_way_to_an_earlier_one() {
        let (fault, covered) = finished(vec![
            batch(2, 1, true, Some(600)),
            batch(1, 1, false, Some(300)),
            batch(0, 2, false, None),
        ]);
        assert_eq!(fault.map(|f| f.sequence), Some(300));
        assert_eq!(covered.entries, 3, "nothing gathered past the fault");
        assert_eq!(covered.misplaced, None);
    }

    /// What `wait_for_turn(place)` returns, waited for on another thread.
    fn turn_taken(window: &std::sync::Arc<Window>, place: u64) -> std::sync::mpsc::Receiver<bool> {
        let (sent, taken) = std::sync::mpsc::channel();
        let window = window.clone();
        std::thread::spawn(move || {
            let _ = sent.send(window.wait_for_turn(place));
        });
        taken
    }

    #[test]
    fn a_worker_waits_a_window_ahead_until_the_first_is_taken() {
        let window = std::sync::Arc::new(Window::default());
        let last_free = HANDOFFS_IN_FLIGHT as u64 - 1;
        assert!(window.wait_for_turn(0));
        assert!(window.wait_for_turn(last_free), "within the window");
        let waiting = turn_taken(&window, last_free + 1);
        let short = std::time::Duration::from_millis(200);
        assert!(
            waiting.recv_timeout(short).is_err(),
            "batch {} waits while batch 0 is not taken",
            last_free + 1
        );
        window.release(1);
        let long = std::time::Duration::from_secs(30);
        assert_eq!(waiting.recv_timeout(long), Ok(true));
    }

    #[test]
    fn a_stopped_window_lets_its_waiting_workers_go_and_stop() {
        let window = std::sync::Arc::new(Window::default());
        let waiting = turn_taken(&window, 100);
        window.stop();
        let long = std::time::Duration::from_secs(30);
        assert_eq!(waiting.recv_timeout(long), Ok(false));
        assert!(!window.wait_for_turn(0), "nothing is checked once stopped");
    }

    #[test]
    fn a_panicking_worker_stops_the_window() {
        let window = std::sync::Arc::new(Window::default());
        let held = window.clone();
        let worker = std::thread::spawn(move || {
            let _guard = StopOnPanic(&held);
            panic!("a worker's bug");
        });
        assert!(worker.join().is_err());
        assert!(!window.wait_for_turn(0));
        // A worker that ends without panicking leaves it running.
        let window = Window::default();
        drop(StopOnPanic(&window));
        assert!(window.wait_for_turn(0));
    }

    #[test]
    fn a_batch_never_finished_holds_back_the_ones_after_it() {
        // A worker stopped before finishing batch 0 (the pass stopped):
        // nothing after it is taken as checked.
        let (fault, covered) = finished(vec![batch(1, 1, true, Some(300))]);
        assert!(fault.is_none());
        assert_eq!((covered.entries, covered.misplaced), (0, None));
    }
}
