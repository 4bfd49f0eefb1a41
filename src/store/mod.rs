//! Storage: the durable journal and the derived-state cache, behind the
//! [`Store`] trait so that another backend (a distributed database, say) can
//! be added without touching the ledger's rules.
//!
//! Architecture invariant: the store knows entries only as `domain::entry`
//! types and state only as opaque key/value records. It never decides
//! anything about money and never knows protobuf or gRPC.

use std::sync::Arc;

use crate::domain::entry::{DecodeError, Entry};
use crate::domain::request_index::RequestIndex;
use crate::domain::state::StateRecord;

pub mod access_log;
mod cache_value;
pub mod checkpoint_log;
mod disk;
mod journal_file;
mod journal_index;
mod offsets;
pub use offsets::Offsets;
mod postgres;
mod read_only;
pub mod tree_file;
mod zstd_block;

pub use disk::{
    CACHE_SEGMENT_BYTES, CacheDigest, DATA_DIR_MODE, DATA_FILE_MODE, DiskStore, STATE_DIR_NAME,
    load_state_records, warn_if_readable_by_others,
};
pub use journal_file::{
    FRAME_BYTES_MAX, JOURNAL_FILE_NAME, RECORD_LEN_MAX, Scan, TAIL_KEPT_MAX, decode_payload,
    read_entry_at as read_entry_at_offset, scan as scan_journal, split_payload,
};
pub use journal_index::{Covered, IndexCheck, IndexFile, JOURNAL_INDEX_FILE_NAME};
pub use postgres::{Copied, PostgresOptions, PostgresStore, export_journal, import_journal};
pub use read_only::ReadOnlyStore;

/// What storage can fail with. Always a fault of the machine or the files,
/// never of a client's request.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O call failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The journal file holds something that is not a valid record.
    #[error("journal is corrupt at byte {offset}: {message}")]
    Corrupt { offset: u64, message: String },
    /// The journal holds an entry of a version this build does not read or
    /// serve (a newer release's, or a development build's before journals
    /// were stable): not damage, and nothing is cut.
    #[error("journal entry at byte {offset}: {source}")]
    Version {
        offset: u64,
        #[source]
        source: DecodeError,
    },
    /// The journal, the cache, the tree or the checkpoints do not agree
    /// (no one byte offset is at fault).
    #[error("{0}")]
    Inconsistent(String),
    /// A stored entry does not decode.
    #[error("entry {sequence} does not decode: {source}")]
    Decode {
        sequence: u64,
        #[source]
        source: DecodeError,
    },
    /// The derived-state cache failed.
    #[error("state store: {0}")]
    State(String),
    /// The derived-state cache does not match the digest recorded with it,
    /// so it is not used (startup rebuilds it from the journal).
    #[error("state cache is not trusted: {0}")]
    Untrusted(String),
    /// The database holding the journal failed or refused (the PostgreSQL
    /// store).
    #[error("{0}")]
    Database(String),
    /// Another writer holds the journal now: this one did not write the
    /// batch (unless an earlier attempt whose answer was lost did: the
    /// request ids tell) and writes no more (the PostgreSQL store).
    #[error("this server no longer writes the journal: {0}")]
    Fenced(String),
    /// The store was already found broken; nothing more is written.
    #[error("store is stopped after an earlier failure: {0}")]
    Stopped(String),
    /// The access log's records do not number or chain (changed or removed
    /// on disk): the server does not append to it.
    #[error(
        "{0}; the access log is evidence of who read what: move it aside (keep it) and start \
         the server again to begin a new log"
    )]
    AccessLog(String),
}

impl StoreError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
        let context = context.into();
        move |source| StoreError::Io { context, source }
    }

    /// An entry at `offset` that does not decode: of another version, or
    /// damaged.
    pub fn undecodable(offset: u64, source: DecodeError) -> StoreError {
        if source.is_version() {
            StoreError::Version { offset, source }
        } else {
            StoreError::Corrupt {
                offset,
                message: format!("entry does not decode: {source}"),
            }
        }
    }
}

/// Locks `file` (at `path`, in a data directory) for this process until it
/// is closed: a second server on the same data directory is refused before
/// it reads or writes anything there.
pub(crate) fn lock_for_this_process(
    file: &std::fs::File,
    path: &std::path::Path,
) -> Result<(), StoreError> {
    file.try_lock().map_err(|error| StoreError::Io {
        context: format!(
            "locking {}: is another mfi-ledger using this data directory?",
            path.display()
        ),
        source: std::io::Error::from(error),
    })
}

/// What a consistent online backup copies: a prefix of each file of the
/// data directory, taken so that the copy is a data directory as it stood
/// at one durable head ([`Store::backup_plan`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupPlan {
    /// The last entry the copy holds.
    pub head: u64,
    /// Each file: its name in the data directory, its path, and how many of
    /// its bytes (from the start) the copy holds.
    pub files: Vec<(String, std::path::PathBuf, u64)>,
}

/// A stored derived-state record: key bytes and value bytes.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// What takes in the state cache's records as [`Store::load_state`] reads
/// them, each key with its value, or `None` for a record left in the store
/// unread whose key startup lists ([`crate::domain::stored::LISTED_AT_STARTUP`]):
/// `Err` with why a record cannot be used.
pub type StateVisitor<'a> = dyn FnMut(&[u8], Option<&[u8]>) -> Result<(), String> + 'a;

/// Durable journal plus derived-state cache.
///
/// The journal is the truth: `append` returns only once the entries would
/// survive a power cut. The state records are a cache of the journal: they
/// may lag behind it (after a crash) and are rebuilt from it at startup.
pub trait Store: Send + Sync + 'static {
    /// Appends entries (which follow the last appended one) and returns only
    /// after one durable barrier covering all of them.
    fn append(&self, entries: &[Arc<Entry>]) -> Result<(), StoreError>;

    /// Entries from `from` (1-based) on, at most `limit` of them.
    fn read_entries(&self, from: u64, limit: usize) -> Result<Vec<Entry>, StoreError>;

    /// The request index of every entry that was in the journal when the
    /// store opened (given once; later calls give an empty one).
    fn take_request_index(&self) -> RequestIndex;

    /// Sequence number of the last durable entry (0 when empty).
    fn last_sequence(&self) -> u64;

    /// Number of durable barriers made so far (for tests and metrics).
    fn barrier_count(&self) -> u64;

    /// Writes derived-state records atomically (all or none survive a crash).
    /// Not a durable barrier: the journal is the truth.
    fn save_state(&self, records: &[StateRecord]) -> Result<(), StoreError>;

    /// Hands every derived-state record to `visit`, in key order, one at a
    /// time (they need not all be in memory at once), but those read when
    /// asked ([`crate::domain::stored`]: of those, only the keys startup
    /// lists, without their values), and checks them against the digest
    /// recorded with them once all are read (the records read when asked
    /// by what the store keeps of them, checked further afterwards:
    /// [`Store::check_state`]). On any error, what `visit` made of them
    /// must not be used: `Untrusted` when they do not add up to their
    /// digest, `State` when `visit` refused one (its message) or they could
    /// not be read.
    fn load_state(&self, visit: &mut StateVisitor<'_>) -> Result<(), StoreError>;

    /// Where the records `load_state` left unread (or a state rebuilt from
    /// the journal saved) are read back from when asked; `None` from a
    /// store that keeps no state cache (its `load_state` hands over none).
    fn stored_records(&self) -> Option<Arc<dyn crate::domain::stored::StoredRecords>>;

    /// Removes every derived-state record (before a rebuild from the journal).
    fn clear_state(&self) -> Result<(), StoreError>;

    /// Writes the derived-state cache through to its files.
    fn flush_state(&self) -> Result<(), StoreError>;

    /// Waits for what the store checks of the state cache after
    /// `load_state` returned, if anything (the embedded store: the hashes
    /// kept for the records read when asked, against their sum, which a
    /// read of one of those and a checkpoint wait for too): `Untrusted`
    /// when it found them edited or damaged on disk.
    fn check_state(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Hands the store the flag the ledger sets when it stops deciding (a
    /// fault): a store that holds a lease on its journal gives it back then,
    /// so that another server can take over.
    fn watch_ledger(&self, failed: Arc<std::sync::atomic::AtomicBool>) {
        let _ = failed;
    }

    /// Startup's last step: whatever the store checks of its journal beside
    /// the rest of startup (the frames the embedded store's index spared
    /// reading) has found it sound. An error: the ledger must not start.
    fn check_journal(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Writes the journal's index again over the entries appended since it
    /// was last written, when at least `min_entries` are (and at least an
    /// eighth of those it covers: it is copied whole each time), so that a
    /// server that runs long keeps in memory only the request ids and
    /// offsets of the entries past it (a restart reads the same index).
    /// Returns what the new index covers, for the writer's request index to
    /// take over ([`crate::domain::request_index::RequestIndex::covered_by`]);
    /// `None` when there is nothing for it to take (too few entries, a store
    /// that keeps no such index, or another index installed meanwhile).
    /// Runs beside appends, which it holds up only to take the journal's
    /// position and to install the index.
    fn index_journal(
        &self,
        min_entries: u64,
    ) -> Result<Option<Arc<dyn crate::domain::request_index::FoundRequests>>, StoreError> {
        let _ = min_entries;
        Ok(None)
    }

    /// The ledger stops: a store that holds a lease gives it back, and an
    /// append waiting for a database that cannot be reached gives up (its
    /// outcome unknown, nothing acknowledged).
    fn release(&self) {}

    /// Whether this store may append now: false for a store that lost, gave
    /// up or does not hold its journal's lease (health checks say so).
    fn writable(&self) -> bool {
        true
    }

    /// The log of reads kept beside the journal, if the store keeps one.
    fn access_log(&self) -> Option<&access_log::AccessLog> {
        None
    }

    /// Every record of the access log, if there is one (kept by this store,
    /// or only read, on a copy served read-only).
    fn access_records(
        &self,
    ) -> Option<Result<Vec<access_log::Record>, access_log::AccessLogError>> {
        self.access_log().map(access_log::AccessLog::records)
    }

    /// The Merkle tree's hashes kept beside the journal, if the store keeps
    /// them (the ledger then maintains the tree and issues checkpoints).
    fn tree(&self) -> Option<&tree_file::TreeFile> {
        None
    }

    /// Every checkpoint issued and its cosignatures, if the store keeps them.
    fn checkpoints(&self) -> Option<&checkpoint_log::CheckpointLog> {
        None
    }

    /// The files a consistent online backup copies, and how much of each,
    /// while writes go on, with the files named in `whole` (small ones that
    /// never change, such as keys) copied whole when they exist; `None` when
    /// the store keeps no files of its own.
    fn backup_plan(&self, whole: &[&str]) -> Option<Result<BackupPlan, StoreError>> {
        let _ = whole;
        None
    }
}
