//! The embedded store: the journal file (the truth, fsynced per batch) and a
//! sled database holding the derived-state cache.
//!
//! sled 0.34.7's `flush()` is not a durable barrier on Linux (it uses
//! `sync_file_range`), which is one reason the journal lives in a file this
//! store owns and fsyncs itself; sled only ever holds what can be rebuilt.
//!
//! The cache is checked before it is trusted: beside the records, sled holds
//! a digest of them ([`CacheDigest`], an additive multiset hash) updated in
//! the same atomic batch as every checkpoint, from the changed records alone.
//! `load_state` refuses records that do not add up to it (edited or damaged on
//! disk), and startup then rebuilds the cache from the journal. The records
//! read when asked count in it by the hashes kept beside them, which startup
//! takes by their sum and checks against it afterwards, on a thread of its
//! own ([`TERMS_SUM_KEY`]).
//!
//! The data directory holds personal data: it is created 0700 and its files
//! 0600, and a looser mode found at open is logged as a warning.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use sha2::{Digest, Sha256};

use crate::domain::entry::Entry;
use crate::domain::request_index::RequestIndex;
use crate::domain::state::{STATE_FORMAT, StateKey, StateRecord, records_format};
use crate::domain::stored::{
    LISTED_AT_STARTUP, ReadError, STORED_PREFIX, StoredRecords, is_stored_key,
};

use super::cache_value;
use super::journal_file::{JournalFile, read_entry_at};
use super::offsets::EntryOffsets;
use super::{KeyValue, Store, StoreError};

/// Name of the sled directory in the data directory.
pub const STATE_DIR_NAME: &str = "state";

/// Key of the cache digest in sled, beside the state records. Not UTF-8,
/// so that no state record's key (always text) can be it.
const DIGEST_KEY: &[u8] = b"\xffcache-digest";

/// Prefix of the keys under which each record read when asked
/// ([`STORED_PREFIX`]) has its term in the digest kept: this prefix, then
/// the record's key. Not UTF-8 either, and sorted after every record and
/// before the digest.
const TERM_PREFIX: &[u8] = b"\xfe";

/// Key of the sum of the terms kept (under `TERM_PREFIX`), kept beside the
/// digest and updated in the same batches: startup adds it to the records
/// it reads instead of listing every term (on the simulated branch over ten
/// years 66,251 of them, 3.9 MB, most of the keys in the cache, and one
/// more for about every entry), then checks it against the terms on a
/// thread of its own ([`StateCache::check_terms`]). Sorted after the
/// digest, and not a record of the cache: it counts in the digest through
/// the terms it sums.
const TERMS_SUM_KEY: &[u8] = b"\xffterms-sum";

/// The key of the term kept for the record `key`.
fn term_key(key: &[u8]) -> Vec<u8> {
    [TERM_PREFIX, key].concat()
}

/// The term kept for the record `key`, from the bytes kept under
/// [`term_key`].
fn kept_term(key: &[u8], bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| {
        StoreError::Untrusted(format!(
            "the hash kept for record {:?} is {} bytes, not 32",
            String::from_utf8_lossy(key),
            bytes.len()
        ))
    })
}

/// The first key past every key that starts with `prefix` (which does not
/// end in 0xff).
fn past_prefix(prefix: &[u8]) -> Vec<u8> {
    let mut past = prefix.to_vec();
    if let Some(last) = past.last_mut() {
        *last += 1;
    }
    past
}

/// Mode of the data directory and of every directory in it: its owner only.
pub const DATA_DIR_MODE: u32 = 0o700;
/// Mode of the files in the data directory: its owner only.
pub const DATA_FILE_MODE: u32 = 0o600;

/// Additive multiset hash of the cache's records: the sum, modulo 2^256, of
/// `SHA-256(key length ‖ key ‖ value)` over every record. A record's change
/// updates it by subtracting the old record's hash and adding the new one's,
/// so a checkpoint costs O(records changed). The head record (sequence and
/// hash of the last entry applied) is one of the records, so the digest
/// binds the records to the journal entry that startup checks the head
/// against. It detects damage and edits that do not also recompute the
/// digest; it is not a signature.
///
/// A record read when asked ([`STORED_PREFIX`]) has its term kept beside it
/// (under `TERM_PREFIX`), written in the same batch, and the terms' sum
/// beside the digest ([`TERMS_SUM_KEY`]): startup adds that sum instead of
/// reading those records or listing their terms, and checks the terms
/// against it afterwards; a read of one checks it against its term
/// (`LocalFiles::stored_records`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheDigest([u8; 32]);

impl CacheDigest {
    /// A record's term in the sum.
    fn record_hash(key: &[u8], value: &[u8]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update((key.len() as u64).to_le_bytes());
        hasher.update(key);
        hasher.update(value);
        hasher.finalize().into()
    }

    /// Adds a record.
    pub fn add(&mut self, key: &[u8], value: &[u8]) {
        self.add_term(CacheDigest::record_hash(key, value));
    }

    /// Removes a record that was added.
    pub fn remove(&mut self, key: &[u8], value: &[u8]) {
        self.remove_term(CacheDigest::record_hash(key, value));
    }

    /// Adds a record by its term ([`CacheDigest::record_hash`]).
    fn add_term(&mut self, term: [u8; 32]) {
        let mut carry = 0u16;
        for (sum, byte) in self.0.iter_mut().zip(term) {
            let total = u16::from(*sum) + u16::from(byte) + carry;
            *sum = total as u8;
            carry = total >> 8;
        }
    }

    /// Removes a record that was added by its term.
    fn remove_term(&mut self, term: [u8; 32]) {
        let mut borrow = 0i16;
        for (sum, byte) in self.0.iter_mut().zip(term) {
            let total = i16::from(*sum) - i16::from(byte) - borrow;
            *sum = total.rem_euclid(256) as u8;
            borrow = i16::from(total < 0);
        }
    }

    /// The digest of `records`.
    pub fn of<'a>(records: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> CacheDigest {
        let mut digest = CacheDigest::default();
        for (key, value) in records {
            digest.add(key, value);
        }
        digest
    }
}

/// The [`Store`] methods a store answers from the [`LocalFiles`] it keeps
/// in its field `local`: the state cache, the access log, the tree and the
/// checkpoints (the embedded store and the PostgreSQL store).
macro_rules! local_files_methods {
    () => {
        fn save_state(
            &self,
            records: &[crate::domain::state::StateRecord],
        ) -> Result<(), crate::store::StoreError> {
            self.local.save_state(records)
        }

        fn load_state(
            &self,
            visit: &mut crate::store::StateVisitor<'_>,
        ) -> Result<(), crate::store::StoreError> {
            self.local.load_state(visit)
        }

        fn stored_records(
            &self,
        ) -> Option<std::sync::Arc<dyn crate::domain::stored::StoredRecords>> {
            Some(self.local.stored_records())
        }

        fn clear_state(&self) -> Result<(), crate::store::StoreError> {
            self.local.clear_state()
        }

        fn flush_state(&self) -> Result<(), crate::store::StoreError> {
            self.local.flush_state()
        }

        fn check_state(&self) -> Result<(), crate::store::StoreError> {
            self.local.check_state()
        }

        fn access_log(&self) -> Option<&crate::store::access_log::AccessLog> {
            Some(&self.local.access_log)
        }

        fn tree(&self) -> Option<&crate::store::tree_file::TreeFile> {
            self.local.tree.as_ref()
        }

        fn checkpoints(&self) -> Option<&crate::store::checkpoint_log::CheckpointLog> {
            Some(&self.local.checkpoints)
        }
    };
}
pub(super) use local_files_methods;

/// The check of the frames the journal's index spared reading at open.
enum FrameCheck {
    /// Running (`None` when there was nothing to check).
    Running(Option<std::thread::JoinHandle<Result<(), StoreError>>>),
    /// Done: what it found wrong, if anything (every later call says it
    /// again).
    Done(Option<String>),
}

/// Journal file plus sled state cache in one data directory.
pub struct DiskStore {
    journal: Mutex<Result<JournalFile, String>>,
    /// A read handle and the entries' offsets, published after each barrier.
    reader: RwLock<(Arc<File>, EntryOffsets)>,
    last_sequence: AtomicU64,
    barriers: AtomicU64,
    /// The check of the journal's frames its index spared reading at open,
    /// then what it found wrong, if anything.
    frame_check: Mutex<FrameCheck>,
    /// Held while the journal's index is written (while running, or at
    /// the stop), so that two writes of it never overlap.
    indexing: Mutex<()>,
    /// The state cache, the tree, the checkpoints and the access log.
    local: LocalFiles,
}

/// What a store keeps in its data directory on local disk, whatever holds
/// its journal: the derived-state cache (sled), the Merkle tree's hashes,
/// the checkpoints issued and the access log.
pub(super) struct LocalFiles {
    dir: PathBuf,
    /// The state cache.
    state: Arc<StateCache>,
    /// Serialises checkpoints: each reads the old values it replaces to
    /// update the digest, so two must not interleave.
    saving: Mutex<()>,
    /// Every read of the books (`access.log`).
    pub(super) access_log: super::access_log::AccessLog,
    /// The Merkle tree's hashes (`merkle.tree`), derived from the journal;
    /// `None` only when opened by [`DiskStore::open_without_tree`].
    pub(super) tree: Option<super::tree_file::TreeFile>,
    /// Every checkpoint issued (`checkpoints.log`).
    pub(super) checkpoints: super::checkpoint_log::CheckpointLog,
}

/// The state cache's sled database; closed after startup reads it
/// ([`Store::load_state`]) and opened again at once on a thread of its own,
/// beside the rest of startup, its next use (a checkpoint, or a record
/// read when asked) waiting for that, so that the pages sled kept of that
/// read are let go (its page cache keeps them otherwise: 67 MiB at 10^6
/// entries, growing with the cache).
struct StateCache {
    path: PathBuf,
    db: Mutex<Option<sled::Db>>,
    /// The check of the terms, close and open again that startup's
    /// reading leaves running on a thread of its own
    /// ([`StateCache::reopen_beside`]): waited for before the database is
    /// used again.
    reopening: Mutex<Option<std::thread::JoinHandle<TermsFound>>>,
    /// What the last check of the terms kept against the sum startup took
    /// them by found wrong, if anything: every record read when asked then
    /// answers it, until the cache is cleared.
    terms: Mutex<Result<(), ReadError>>,
    /// Set as the store closes: a check of the terms still running stops.
    closing: AtomicBool,
}

/// What a check of the terms found ([`StateCache::check_terms`]), if it
/// finished.
type TermsFound = Option<Result<(), ReadError>>;

impl StateCache {
    fn new(path: PathBuf, db: sled::Db) -> StateCache {
        StateCache {
            path,
            db: Mutex::new(Some(db)),
            reopening: Mutex::new(None),
            terms: Mutex::new(Ok(())),
            closing: AtomicBool::new(false),
        }
    }

    /// Checks the terms kept in `db` against `kept`, the sum startup
    /// added in their place (done on the thread that then closes `db` and
    /// opens the cache again, [`StateCache::reopen_beside`], so that the
    /// pages sled keeps of it go with the rest of startup's reading).
    /// Terms that do not add up to their sum (a record read when asked
    /// and its term edited, removed or added together) are logged, the
    /// digest is removed so that the next start rebuilds the cache from
    /// the journal, and every record read when asked is refused until then.
    /// `None` when it did not finish: the store is closing, or sled could
    /// not be read (logged: each record read when asked is still checked
    /// against its own term, and nothing is held against the cache).
    fn check_terms(&self, db: &sled::Db, kept: CacheDigest) -> TermsFound {
        let started = std::time::Instant::now();
        let found = match sum_of_terms(db, Some(&self.closing)) {
            Ok(Some(found)) => found,
            Ok(None) => return None,
            Err(StoreError::Untrusted(why)) => return Some(Err(refuse_terms(db, why))),
            Err(error) => {
                tracing::warn!(
                    %error,
                    "the hashes kept for the state cache's records read when asked could not be \
                     checked against their sum; each such record is still checked against its own"
                );
                return None;
            }
        };
        if found == kept {
            tracing::debug!(
                took = ?started.elapsed(),
                "the hashes kept for the state cache's records read when asked add up to their sum"
            );
            return Some(Ok(()));
        }
        Some(Err(refuse_terms(
            db,
            "they do not add up to the sum kept of them".into(),
        )))
    }

    /// Waits for the check of the terms (and the close and open again)
    /// startup left running, if any: what the last check found (until the
    /// cache is cleared).
    fn terms_checked(&self) -> Result<(), ReadError> {
        self.wait_reopened();
        self.terms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Waits for the check of the terms, if one runs, and forgets what it
    /// found: the cache is cleared.
    fn forget_terms_check(&self) {
        self.wait_reopened();
        *self
            .terms
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Ok(());
    }

    /// The database, opened again if it was closed.
    fn get(&self) -> Result<sled::Db, StoreError> {
        // An open that failed there (or a thread that panicked) is tried
        // again here, its error then the caller's.
        self.wait_reopened();
        self.get_or_open()
    }

    /// Waits for a check of the terms, close and open again left running
    /// by [`StateCache::reopen_beside`], if any, and keeps what the check
    /// found, if it finished. Joined under the lock, so that a second
    /// caller waits for it too (the thread never takes this lock, nor
    /// calls `get`).
    fn wait_reopened(&self) {
        let mut reopening = self
            .reopening
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(running) = reopening.take() {
            // Checking and reopening have nothing to panic on; if they did,
            // the check did not finish (and the next `get` opens the cache
            // if the reopening did not).
            let found = running.join().unwrap_or_else(|_| {
                tracing::error!("the state cache's check and open again stopped");
                None
            });
            self.keep_terms_check(found);
        }
    }

    /// Keeps what a check of the terms found, if it finished.
    fn keep_terms_check(&self, found: TermsFound) {
        if let Some(found) = found {
            *self
                .terms
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = found;
        }
    }

    /// Closes the database (`db` is its last handle but this one's) and
    /// opens it again on a thread of its own, so that what the caller does
    /// next runs beside sled's close and open (its open writes every free
    /// segment of the file over: about a sixth of a restart of the
    /// simulated branch over ten years, closed and opened at startup).
    /// Before it closes `db`, the thread checks the terms kept there
    /// against `check`, the sum startup took them by, if any
    /// ([`StateCache::check_terms`]): the rest of a clean restart, and
    /// what the server then does but use the cache, run beside that too (a
    /// replay past the cache saves, and so waits for it).
    fn reopen_beside(self: &Arc<Self>, db: sled::Db, check: Option<CacheDigest>) {
        // Held from before the thread starts: a `get` meanwhile waits.
        let mut reopening = self
            .reopening
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let cache = Arc::clone(self);
        let started = std::thread::Builder::new()
            .name("cache-reopen".into())
            .spawn(move || {
                let found = check.and_then(|kept| cache.check_terms(&db, kept));
                cache.close(db);
                // Its error, if any, is met again by the next `get`.
                let _ = cache.get_or_open();
                // What the closed instance held, freed and given back to
                // the system now: a clean restart does not wait for this
                // thread, so the allocator's release after startup
                // (`allocator::release_freed`) comes before it.
                release_sled_garbage();
                crate::allocator::release_freed();
                found
            });
        match started {
            Ok(running) => *reopening = Some(running),
            // Without a thread (its closure, and the handle moved into it,
            // dropped): closed here, and opened again and the terms checked
            // here too, under the lock a reader waits on.
            Err(_) => {
                let kept = self
                    .db
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .take();
                drop(kept);
                let found = match (check, self.get_or_open()) {
                    (Some(kept), Ok(db)) => self.check_terms(&db, kept),
                    _ => None,
                };
                self.keep_terms_check(found);
                drop(reopening);
            }
        }
    }

    /// The database, opened if it is closed.
    fn get_or_open(&self) -> Result<sled::Db, StoreError> {
        let mut state = self
            .db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(db) = state.as_ref() {
            return Ok(db.clone());
        }
        // The closed instance's lock is released by one of its background
        // threads as it stops, shortly after the close: wait for it (up to
        // five seconds) rather than fail the checkpoint.
        let mut waited = 0;
        let db = loop {
            match cache_config(&self.path).open() {
                Ok(db) => break db,
                // sled gives no kind for it: its message names it.
                Err(sled::Error::Io(error))
                    if error.to_string().contains("could not acquire lock") && waited < 250 =>
                {
                    waited += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(_) => break open_cache(&self.path)?,
            }
        };
        *state = Some(db.clone());
        Ok(db)
    }

    /// Closes the database (`db` is its last handle but this one's).
    fn close(&self, db: sled::Db) {
        let mut state = self
            .db
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let kept = state.take();
        drop((kept, db));
    }
}

impl Drop for LocalFiles {
    fn drop(&mut self) {
        // A close and open again that startup's reading left running, and
        // a check of the terms (told to stop), end before the store does:
        // their threads do not hold the cache open past it.
        self.state.closing.store(true, Ordering::Relaxed);
        self.state.wait_reopened();
    }
}

/// What a check of the terms found wrong (`why`): logged, and the digest
/// removed so that the next start rebuilds the cache from the journal
/// (every checkpoint until then writes none).
fn refuse_terms(db: &sled::Db, why: String) -> ReadError {
    tracing::error!(
        %why,
        "the hashes kept for the state cache's records read when asked are not those the cache \
         was written with: edited or damaged on disk; every such record is refused, and the \
         next start rebuilds the cache from the journal"
    );
    if let Err(error) = db.remove(DIGEST_KEY).and_then(|_| db.flush()) {
        tracing::error!(%error, "could not remove the state cache's digest");
    }
    ReadError::Damaged(format!(
        "the hashes kept for the state cache's records read when asked are not those it was \
         written with ({why}): edited or damaged on disk; the next start rebuilds the cache \
         from the journal"
    ))
}

/// The sum of the terms kept, or `None` once `closing` is set.
fn sum_of_terms(
    db: &sled::Db,
    closing: Option<&AtomicBool>,
) -> Result<Option<CacheDigest>, StoreError> {
    let mut sum = CacheDigest::default();
    for (n, item) in db.range(TERM_PREFIX..DIGEST_KEY).enumerate() {
        if n % 4096 == 0 && closing.is_some_and(|closing| closing.load(Ordering::Relaxed)) {
            return Ok(None);
        }
        let (key, term) = item.map_err(|e| StoreError::State(e.to_string()))?;
        sum.add_term(kept_term(&key[TERM_PREFIX.len()..], &term)?);
    }
    Ok(Some(sum))
}

/// The records of the state cache read when asked, each checked against
/// the term kept for it.
struct CacheReader(Arc<StateCache>);

impl std::fmt::Debug for CacheReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CacheReader({})", self.0.path.display())
    }
}

impl StoredRecords for CacheReader {
    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        self.0.terms_checked()?;
        let db = self
            .0
            .get()
            .map_err(|e| ReadError::Unreadable(e.to_string()))?;
        read_stored(&db, key).map_err(|e| match e {
            StoreError::Untrusted(_) => ReadError::Damaged(e.to_string()),
            _ => ReadError::Unreadable(e.to_string()),
        })
    }

    /// A record kept bare and read at startup (no term is kept for it: its
    /// reader checks it against what it kept).
    fn read_again(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
        let db = self
            .0
            .get()
            .map_err(|e| ReadError::Unreadable(e.to_string()))?;
        db.get(key)
            .map(|value| value.map(|value| value.to_vec()))
            .map_err(|e| ReadError::Unreadable(e.to_string()))
    }

    fn records_after(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        skip: &dyn Fn(&[u8]) -> bool,
    ) -> Result<crate::domain::stored::Records, ReadError> {
        self.0.terms_checked()?;
        let db = self
            .0
            .get()
            .map_err(|e| ReadError::Unreadable(e.to_string()))?;
        // The least key after `prefix` + `after` is it followed by a zero.
        let start = match after {
            Some(after) => [prefix, after, &[0]].concat(),
            None => prefix.to_vec(),
        };
        let mut records = Vec::new();
        for read in db.range(start..past_prefix(prefix)) {
            if records.len() == limit {
                break;
            }
            let (key, value) = read.map_err(|e| ReadError::Unreadable(e.to_string()))?;
            if skip(&key) {
                continue;
            }
            let value = checked_stored(&db, &key, value)
                .and_then(|value| {
                    cache_value::open(&key, &value)
                        .map(|value| value.into_owned())
                        .map_err(StoreError::Untrusted)
                })
                .map_err(|e| match e {
                    StoreError::Untrusted(_) => ReadError::Damaged(e.to_string()),
                    _ => ReadError::Unreadable(e.to_string()),
                })?;
            records.push((key.to_vec(), value));
        }
        Ok(records)
    }
}

/// The record `key` (one read when asked), checked against its term.
fn read_stored(db: &sled::Db, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(stored) = read_stored_bytes(db, key)? else {
        return Ok(None);
    };
    cache_value::open(key, &stored)
        .map(|value| Some(value.into_owned()))
        .map_err(StoreError::Untrusted)
}

/// The bytes kept for the record `key` (one read when asked), checked
/// against its term.
fn read_stored_bytes(db: &sled::Db, key: &[u8]) -> Result<Option<sled::IVec>, StoreError> {
    let value = db.get(key).map_err(|e| StoreError::State(e.to_string()))?;
    match value {
        Some(value) => checked_stored(db, key, value).map(Some),
        None => match db.get(term_key(key)) {
            Ok(None) => Ok(None),
            Ok(Some(_)) => Err(unlike_its_term(key)),
            Err(e) => Err(StoreError::State(e.to_string())),
        },
    }
}

/// `value`, the bytes kept for the record `key` (one read when asked), if
/// they are those the term kept for it counts.
fn checked_stored(db: &sled::Db, key: &[u8], value: sled::IVec) -> Result<sled::IVec, StoreError> {
    let term = db
        .get(term_key(key))
        .map_err(|e| StoreError::State(e.to_string()))?;
    match term {
        Some(term) if term.as_ref() == CacheDigest::record_hash(key, &value) => Ok(value),
        _ => Err(unlike_its_term(key)),
    }
}

fn unlike_its_term(key: &[u8]) -> StoreError {
    StoreError::Untrusted(format!(
        "record {:?} does not match the hash kept for it: edited or damaged on disk",
        String::from_utf8_lossy(key)
    ))
}

impl DiskStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<DiskStore, StoreError> {
        DiskStore::open_with_tree(dir, true)
    }

    /// For benchmarks: the write path without the Merkle tree. Opens the
    /// store in `dir` keeping no `merkle.tree` ([`Store::tree`] is `None`),
    /// so a ledger on it maintains no tree, signs no checkpoint and gives
    /// no proof. Everything else is as [`DiskStore::open`]. Not for serving;
    /// entries written without the tree are hashed into it when the
    /// directory is next opened with [`DiskStore::open`] (startup brings the
    /// tree level with the journal).
    pub fn open_without_tree(dir: &Path) -> Result<DiskStore, StoreError> {
        DiskStore::open_with_tree(dir, false)
    }

    fn open_with_tree(dir: &Path, tree: bool) -> Result<DiskStore, StoreError> {
        LocalFiles::create_dir(dir)?;
        let mut journal = JournalFile::open(dir)?;
        let reader = (Arc::new(journal.try_clone_file()?), journal.take_offsets());
        Ok(DiskStore {
            frame_check: Mutex::new(FrameCheck::Running(journal.take_frame_check())),
            indexing: Mutex::new(()),
            last_sequence: AtomicU64::new(journal.len()),
            journal: Mutex::new(Ok(journal)),
            reader: RwLock::new(reader),
            barriers: AtomicU64::new(0),
            local: LocalFiles::open(dir, tree)?,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.local.dir
    }

    /// Bytes on disk: journal plus state cache.
    pub fn disk_bytes(&self) -> u64 {
        fn walk(path: &Path) -> u64 {
            let Ok(meta) = std::fs::metadata(path) else {
                return 0;
            };
            if meta.is_dir() {
                std::fs::read_dir(path)
                    .map(|entries| entries.flatten().map(|e| walk(&e.path())).sum())
                    .unwrap_or(0)
            } else {
                meta.len()
            }
        }
        walk(&self.local.dir)
    }
}

impl DiskStore {
    /// How many entries' offsets the store holds in memory (those past the
    /// journal's index).
    #[cfg(test)]
    pub(crate) fn offsets_in_memory(&self) -> usize {
        self.reader
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .1
            .in_memory()
    }
}

impl Store for DiskStore {
    fn append(&self, entries: &[Arc<Entry>]) -> Result<(), StoreError> {
        let mut guard = self
            .journal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let journal = guard
            .as_mut()
            .map_err(|why| StoreError::Stopped(why.clone()))?;
        let expected = journal.len() + 1;
        if entries.first().is_some_and(|e| e.body.sequence != expected) {
            return Err(StoreError::Stopped(format!(
                "append out of order: expected entry {expected}"
            )));
        }
        let (barriers, offsets) = match journal.append(entries) {
            Ok(appended) => appended,
            Err(error) => {
                // After a failed write or fsync the file's state is unknown:
                // stop writing rather than risk acknowledging a lost entry.
                tracing::error!(%error, "journal append failed; the store stops accepting writes");
                *guard = Err(error.to_string());
                return Err(error);
            }
        };
        self.barriers.fetch_add(barriers, Ordering::SeqCst);
        let mut reader = self
            .reader
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        reader.1.extend(offsets);
        self.last_sequence.store(journal.len(), Ordering::SeqCst);
        Ok(())
    }

    fn read_entries(&self, from: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let first = from.max(1);
        // Copy the page's offsets and let go of the lock before any disk
        // read, so that readers never hold up the writer's barrier.
        let (file, offsets) = {
            let reader = self
                .reader
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let end = first.saturating_add(limit as u64);
            (reader.0.clone(), reader.1.slice(first, end))
        };
        let offsets = offsets.read()?;
        let mut entries = Vec::with_capacity(offsets.len());
        for (sequence, offset) in (first..).zip(offsets) {
            entries.push(read_entry_at(&file, offset, sequence)?);
        }
        Ok(entries)
    }

    fn take_request_index(&self) -> RequestIndex {
        let mut guard = self
            .journal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        guard
            .as_mut()
            .map(JournalFile::take_request_index)
            .unwrap_or_default()
    }

    fn last_sequence(&self) -> u64 {
        self.last_sequence.load(Ordering::SeqCst)
    }

    /// Waits for the check of the frames the journal's index spared reading
    /// at open.
    fn check_journal(&self) -> Result<(), StoreError> {
        let mut check = self
            .frame_check
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let FrameCheck::Running(running) = &mut *check {
            let found = match running.take().map(std::thread::JoinHandle::join) {
                None | Some(Ok(Ok(()))) => None,
                Some(Ok(Err(error))) => Some(error.to_string()),
                Some(Err(_)) => Some("the check of the journal's frames panicked".into()),
            };
            *check = FrameCheck::Done(found);
        }
        match &*check {
            FrameCheck::Done(Some(why)) => Err(StoreError::Inconsistent(why.clone())),
            _ => Ok(()),
        }
    }

    fn index_journal(
        &self,
        min_entries: u64,
    ) -> Result<Option<Arc<dyn crate::domain::request_index::FoundRequests>>, StoreError> {
        let _indexing = self
            .indexing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let job = {
            let guard = self
                .journal
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // Writing the index again copies it whole: waiting for at least
            // an eighth of what it covers keeps the copies, summed over a
            // journal's life, within a few times its final size.
            match guard.as_ref() {
                Ok(journal) => journal.index_job(min_entries.max(journal.indexed() / 8))?,
                Err(_) => None,
            }
        };
        let Some(job) = job else {
            return Ok(None);
        };
        // Reading the entries past the old index and writing the new one,
        // without the journal's lock: appends go on meanwhile.
        let index = Arc::new(job.write()?);
        let mut guard = self
            .journal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Ok(journal) = guard.as_mut() else {
            return Ok(None);
        };
        if !journal.install_index(&job, index.clone()) {
            return Ok(None);
        }
        let mut reader = self
            .reader
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !reader.1.advance(index.clone()) {
            return Err(StoreError::Inconsistent(format!(
                "the journal's index written again covers {} entries, which the offsets in \
                 memory do not reach",
                index.count()
            )));
        }
        Ok(Some(index))
    }

    /// At a stop: writes the journal's index up to the last entry, so that
    /// the next start reads none of the journal.
    fn release(&self) {
        let _indexing = self
            .indexing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut guard = self
            .journal
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Ok(journal) = guard.as_mut()
            && let Err(error) = journal.write_index()
        {
            tracing::warn!(%error, "writing the journal's index at the stop failed; the next start reads the journal past the old one");
        }
    }

    fn barrier_count(&self) -> u64 {
        self.barriers.load(Ordering::SeqCst)
    }

    local_files_methods!();

    /// The journal up to its durable head, the checkpoints and the access
    /// log as they stood just before it, and the `whole` files. Each length
    /// is taken under the lock its file's appends hold, so each prefix ends
    /// on a whole record; the checkpoints first, then the access log, then
    /// the journal, so that every checkpoint copied is of a journal size the
    /// copy holds, and every access-log head one anchors is in the copy.
    /// The Merkle tree and the state cache are not copied: they are derived
    /// from the journal, and the copy's first start (or `verify`) rebuilds
    /// them.
    fn backup_plan(&self, whole: &[&str]) -> Option<Result<super::BackupPlan, StoreError>> {
        Some(self.plan_backup(whole))
    }
}

impl DiskStore {
    fn plan_backup(&self, whole: &[&str]) -> Result<super::BackupPlan, StoreError> {
        use super::checkpoint_log::CHECKPOINT_LOG_FILE;
        let mut files = Vec::new();
        for name in whole {
            let path = self.local.dir.join(name);
            match std::fs::metadata(&path) {
                Ok(meta) => files.push(((*name).to_owned(), path, meta.len())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(format!("reading {}", path.display()))(e)),
            }
        }
        let checkpoints = self.local.checkpoints.durable_len()?;
        files.push((
            CHECKPOINT_LOG_FILE.to_owned(),
            self.local.dir.join(CHECKPOINT_LOG_FILE),
            checkpoints,
        ));
        let access =
            self.local.access_log.durable_len().ok_or_else(|| {
                StoreError::Stopped("the access log's writer has stopped".to_owned())
            })?;
        let access_name = super::access_log::ACCESS_LOG_FILE;
        files.push((
            access_name.to_owned(),
            self.local.dir.join(access_name),
            access,
        ));
        let (head, end) = {
            let guard = self
                .journal
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let journal = guard
                .as_ref()
                .map_err(|why| StoreError::Stopped(why.clone()))?;
            (journal.len(), journal.end())
        };
        let journal_name = super::journal_file::JOURNAL_FILE_NAME;
        files.push((
            journal_name.to_owned(),
            self.local.dir.join(journal_name),
            end,
        ));
        Ok(super::BackupPlan { head, files })
    }
}

impl LocalFiles {
    /// Creates the data directory `dir` (its owner's only) if it is not
    /// there, and makes every file created from here on its owner's only.
    pub(super) fn create_dir(dir: &Path) -> Result<(), StoreError> {
        // Files created from here on are the owner's only (the journal, the
        // torn-tail copies, sled's files, which sled creates itself): the
        // umask is the one way to reach all of them. It is process-wide, and
        // nothing else this process writes needs to be open to others.
        restrict_umask();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DATA_DIR_MODE)
            .create(dir)
            .map_err(StoreError::io(format!("creating {}", dir.display())))?;
        warn_if_readable_by_others(dir);
        Ok(())
    }

    /// Opens the local files in `dir` (made by [`LocalFiles::create_dir`]),
    /// with the Merkle tree's when `tree`.
    pub(super) fn open(dir: &Path, tree: bool) -> Result<LocalFiles, StoreError> {
        let path = dir.join(STATE_DIR_NAME);
        let state = open_cache(&path)?;
        Ok(LocalFiles {
            dir: dir.to_owned(),
            state: Arc::new(StateCache::new(path, state)),
            saving: Mutex::new(()),
            access_log: super::access_log::AccessLog::open(dir)?,
            tree: if tree {
                Some(super::tree_file::TreeFile::open(dir)?)
            } else {
                None
            },
            checkpoints: super::checkpoint_log::CheckpointLog::open(dir)?,
        })
    }

    pub(super) fn save_state(&self, records: &[StateRecord]) -> Result<(), StoreError> {
        let _saving = self
            .saving
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let state_error = |e: sled::Error| StoreError::State(e.to_string());
        let db = self.cache()?;
        // Not while the terms are being checked; after terms that did not
        // add up, with no digest, so that the next start rebuilds the cache.
        let trusted = !matches!(self.state.terms_checked(), Err(ReadError::Damaged(_)));
        let mut digest = stored_sum(&db, DIGEST_KEY)?.unwrap_or_default();
        let mut terms = match stored_sum(&db, TERMS_SUM_KEY)? {
            Some(terms) => terms,
            // A cache an earlier build wrote without it (startup keeps it
            // as it reads one), or none yet.
            None => sum_of_terms(&db, None)?.unwrap_or_default(),
        };
        // The digest's terms of the values written earlier in this batch,
        // which sled does not hold yet.
        let mut written: HashMap<&[u8], Option<[u8; 32]>> = HashMap::with_capacity(records.len());
        let mut batch = sled::Batch::default();
        // Each value sealed (the records read when asked compressed when
        // long: `cache_value`) and handed to the batch, which keeps its own
        // copy, one at a time: not every record sealed at once beside the
        // batch (some 16 MB at a checkpoint's peak in a heap profile at 6
        // million entries).
        for (key, value) in records {
            let key = key.as_slice();
            let stored = is_stored_key(key);
            match written.get(key) {
                Some(Some(old)) => {
                    digest.remove_term(*old);
                    if stored {
                        terms.remove_term(*old);
                    }
                }
                Some(None) => {}
                // A record read when asked: its old term is kept apart.
                None if stored => {
                    if let Some(old) = db.get(term_key(key)).map_err(state_error)? {
                        let old = kept_term(key, &old)?;
                        digest.remove_term(old);
                        terms.remove_term(old);
                    }
                }
                None => {
                    if let Some(old) = db.get(key).map_err(state_error)? {
                        digest.remove(key, &old);
                    }
                }
            }
            let term = match value {
                Some(value) => {
                    let value = cache_value::seal(key, value);
                    let term = CacheDigest::record_hash(key, &value);
                    digest.add_term(term);
                    batch.insert(key, &*value);
                    if stored {
                        terms.add_term(term);
                        batch.insert(term_key(key), &term[..]);
                    }
                    Some(term)
                }
                None => {
                    batch.remove(key);
                    if stored {
                        batch.remove(term_key(key));
                    }
                    None
                }
            };
            written.insert(key, term);
        }
        match trusted {
            true => batch.insert(DIGEST_KEY, &digest.0[..]),
            false => batch.remove(DIGEST_KEY),
        }
        batch.insert(TERMS_SUM_KEY, &terms.0[..]);
        db.apply_batch(batch).map_err(state_error)
    }

    /// Where the records read when asked are read back from.
    pub(super) fn stored_records(&self) -> Arc<dyn StoredRecords> {
        Arc::new(CacheReader(self.state.clone()))
    }

    pub(super) fn load_state(&self, visit: &mut super::StateVisitor<'_>) -> Result<(), StoreError> {
        let db = self.cache()?;
        // A cache another release wrote in another layout is not read as
        // this one (its values would be taken for this layout's): startup
        // rebuilds it from the journal.
        let format = db
            .get(StateKey::Format.to_bytes())
            .map_err(|e| StoreError::State(e.to_string()))?;
        match records_format(format.as_deref()) {
            Ok(None | Some(STATE_FORMAT)) => {}
            Ok(Some(other)) => {
                self.close_cache(db);
                return Err(StoreError::State(format!(
                    "state records of format {other}; this release reads format {STATE_FORMAT}"
                )));
            }
            Err(why) => {
                self.close_cache(db);
                return Err(StoreError::State(why));
            }
        }
        let stored = stored_sum(&db, DIGEST_KEY)?;
        // sled's reading and the digest's hashing on a thread of their own,
        // the records handed over in batches and taken in on this one: at
        // 10^7 entries each side is about half of what startup spends on
        // the cache (BENCHMARKS.md). The batches in flight are bounded, so
        // the records need not all be in memory at once.
        let mut refused = None;
        // Read on after a refusal: records that do not add up to their
        // digest say more (edited or damaged) than the record refused.
        let mut take = |batch: Vec<(sled::IVec, Option<sled::IVec>)>| {
            for (key, value) in batch {
                if refused.is_none()
                    && let Err(why) = visit(&key, value.as_deref())
                {
                    refused = Some(why);
                }
            }
        };
        let (batches, received) = std::sync::mpsc::sync_channel::<
            Vec<(sled::IVec, Option<sled::IVec>)>,
        >(LOAD_BATCHES_IN_FLIGHT);
        let cache = &db;
        let read = std::thread::scope(|scope| {
            // The sender moves to the reader: the batches end when it does.
            let reader = std::thread::Builder::new()
                .name("cache-reader".into())
                .spawn_scoped(scope, move || {
                    read_records(cache, |batch| batches.send(batch).is_ok())
                });
            match reader {
                Ok(reader) => {
                    for batch in received {
                        take(batch);
                    }
                    // Reading has nothing to panic on: if it did, the
                    // panic goes on here, as it would on one thread.
                    reader
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                }
                Err(error) => {
                    tracing::warn!(%error, "could not start a thread to read the state cache; reading it on this one");
                    read_records(cache, |batch| {
                        take(batch);
                        true
                    })
                }
            }
        });
        let trusted = read.and_then(|(found, count, terms)| match stored {
            None if count == 0 && found == CacheDigest::default() => Ok(terms),
            Some(stored) if stored == found => Ok(terms),
            None => Err(StoreError::Untrusted(format!(
                "{count} records and no digest of them"
            ))),
            Some(_) => Err(StoreError::Untrusted(format!(
                "its {count} records do not add up to the digest recorded with them: edited or damaged on disk"
            ))),
        });
        // Closed to give back the pages sled kept of the reading, and
        // opened again beside the rest of startup, the terms taken by their
        // sum checked first.
        let check = match &trusted {
            Ok(TermsRead::Kept(sum)) => Some(*sum),
            _ => None,
        };
        self.state.reopen_beside(db, check);
        if let TermsRead::Listed(sum) = trusted?
            && stored.is_some()
        {
            // Checked with the rest just now, and kept from now on
            // (outside the digest, which counts the terms themselves).
            self.cache()?
                .insert(TERMS_SUM_KEY, &sum.0[..])
                .map_err(|e| StoreError::State(e.to_string()))?;
        }
        refused.map_or(Ok(()), |why| Err(StoreError::State(why)))
    }

    pub(super) fn clear_state(&self) -> Result<(), StoreError> {
        // Nothing is left to check (nor to refuse) once the cache is clear.
        self.state.forget_terms_check();
        self.cache()?
            .clear()
            .map_err(|e| StoreError::State(e.to_string()))?;
        self.flush_state()
    }

    pub(super) fn check_state(&self) -> Result<(), StoreError> {
        self.state.terms_checked().map_err(|error| match error {
            ReadError::Damaged(why) => StoreError::Untrusted(why),
            ReadError::Unreadable(why) => StoreError::State(why),
        })
    }

    pub(super) fn flush_state(&self) -> Result<(), StoreError> {
        let flushed = self
            .cache()?
            .flush()
            .map(|_| ())
            .map_err(|e| StoreError::State(e.to_string()));
        release_sled_garbage();
        flushed
    }

    /// The state cache, opened again if it was closed.
    fn cache(&self) -> Result<sled::Db, StoreError> {
        self.state.get()
    }

    /// Closes the state cache (`db` is its last handle but the store's).
    fn close_cache(&self, db: sled::Db) {
        self.state.close(db);
    }
}

/// Frees what sled replaced and deferred until no thread could still read
/// it (its nodes' old versions, by crossbeam's epochs): deferred frees are
/// run only as threads pin the epoch again, a few at a time, so after a
/// save of many records (a cache rebuilt from the journal) a server that
/// then waits held them. Pinning and flushing [`RELEASE_PINS`] times runs
/// them now, as many as the epoch lets go of (all, unless another thread
/// stays pinned throughout).
fn release_sled_garbage() {
    for _ in 0..RELEASE_PINS {
        crossbeam_epoch::pin().flush();
    }
}

/// Epoch pins [`release_sled_garbage`] makes: each frees up to 8 bags of
/// 64 deferred frees once the epoch has moved on, so about 33 million in
/// all (a rebuild of the simulated branch at 97,550 entries left about
/// 1 GB of them), at no cost a clean restart showed side by side.
const RELEASE_PINS: usize = 1 << 16;

/// Batches of records [`LocalFiles::load_state`]'s reader may have handed
/// over and not yet had taken in.
const LOAD_BATCHES_IN_FLIGHT: usize = 2;
/// A batch of records is handed over once it holds this many bytes...
const LOAD_BATCH_BYTES: usize = 1 << 20;
/// ... or this many records.
const LOAD_BATCH_RECORDS: usize = 1024;

/// How startup came by the sum of the terms kept ([`TERMS_SUM_KEY`]).
enum TermsRead {
    /// Read: to be checked against the terms ([`StateCache::check_terms`]).
    Kept(CacheDigest),
    /// Added up from the terms, in a cache an earlier build wrote without
    /// it: to be kept.
    Listed(CacheDigest),
}

/// Reads every state record of `db` in key order but those read when asked
/// ([`STORED_PREFIX`]), then the keys of those startup lists
/// ([`LISTED_AT_STARTUP`]) from their kept terms, and hands them over in
/// batches (until `hand_over` says no more are taken), the latter without
/// a value; the digest of what it read, the sum of the terms counted in
/// it, and how many records it handed over.
fn read_records(
    db: &sled::Db,
    mut hand_over: impl FnMut(Vec<(sled::IVec, Option<sled::IVec>)>) -> bool,
) -> Result<(CacheDigest, usize, TermsRead), StoreError> {
    let mut found = CacheDigest::default();
    let mut count = 0usize;
    let mut batch = Vec::with_capacity(LOAD_BATCH_RECORDS);
    let mut bytes = 0usize;
    let past_stored = past_prefix(STORED_PREFIX);
    let listed = term_key(LISTED_AT_STARTUP);
    let past_listed = past_prefix(&listed);
    let records = db
        .range(..STORED_PREFIX)
        .chain(db.range(past_stored.as_slice()..TERM_PREFIX))
        .chain(db.range(listed.as_slice()..past_listed.as_slice()));
    for item in records {
        let (key, value) = item.map_err(|e| StoreError::State(e.to_string()))?;
        let (key, value) = match key.strip_prefix(TERM_PREFIX) {
            // Its term counts in the sum of them, below.
            Some(stored) => (sled::IVec::from(stored), None),
            None => {
                found.add(&key, &value);
                (key, Some(value))
            }
        };
        count += 1;
        bytes += key.len() + value.as_ref().map_or(0, |value| value.len());
        batch.push((key, value));
        if batch.len() == LOAD_BATCH_RECORDS || bytes >= LOAD_BATCH_BYTES {
            // The receiver stops taking only when its thread is gone, and
            // then nobody reads what this returns.
            let full = std::mem::replace(&mut batch, Vec::with_capacity(LOAD_BATCH_RECORDS));
            if !hand_over(full) {
                break;
            }
            bytes = 0;
        }
    }
    if !batch.is_empty() {
        hand_over(batch);
    }
    let terms = match stored_sum(db, TERMS_SUM_KEY)? {
        Some(sum) => TermsRead::Kept(sum),
        None => TermsRead::Listed(sum_of_terms(db, None)?.unwrap_or_default()),
    };
    let (TermsRead::Kept(sum) | TermsRead::Listed(sum)) = &terms;
    found.add_term(sum.0);
    Ok((found, count, terms))
}

/// The digest recorded with the cache's records ([`DIGEST_KEY`]), or the
/// sum of the terms kept ([`TERMS_SUM_KEY`]), if any.
fn stored_sum(db: &sled::Db, key: &[u8]) -> Result<Option<CacheDigest>, StoreError> {
    let Some(bytes) = db.get(key).map_err(|e| StoreError::State(e.to_string()))? else {
        return Ok(None);
    };
    let bytes: [u8; 32] = bytes.as_ref().try_into().map_err(|_| {
        StoreError::Untrusted(format!(
            "its {} is {} bytes, not 32",
            match key {
                DIGEST_KEY => "digest",
                _ => "sum of the hashes kept for its records read when asked",
            },
            bytes.len()
        ))
    })?;
    Ok(Some(CacheDigest(bytes)))
}

/// Every state record in `db`, sorted by key, without the digest and the
/// kept terms; each record read when asked checked against its term, and
/// every term against its record.
fn records_of(db: &sled::Db) -> Result<Vec<KeyValue>, StoreError> {
    let state_error = |e: sled::Error| StoreError::State(e.to_string());
    // A cache of another format is handed out as it is stored: its format
    // record says so before any value of it is read in this layout.
    let format = db.get(StateKey::Format.to_bytes()).map_err(state_error)?;
    let this_layout = matches!(records_format(format.as_deref()), Ok(Some(STATE_FORMAT)));
    let mut records: Vec<KeyValue> = db
        .range(..TERM_PREFIX)
        .map(|item| {
            item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(state_error)
        })
        .collect::<Result<_, _>>()?;
    // Each record read when asked checked against its term before its
    // bytes are read as a layout.
    for (key, _) in records.iter().filter(|(key, _)| is_stored_key(key)) {
        read_stored_bytes(db, key)?;
    }
    if this_layout {
        for (key, value) in &mut records {
            let opened = cache_value::open(key, value)
                .map_err(StoreError::Untrusted)?
                .into_owned();
            *value = opened;
        }
    }
    let mut terms = CacheDigest::default();
    for item in db.range(TERM_PREFIX..DIGEST_KEY) {
        let (key, term) = item.map_err(state_error)?;
        let stored = &key[TERM_PREFIX.len()..];
        if read_stored_bytes(db, stored)?.is_none() || !is_stored_key(stored) {
            return Err(StoreError::Untrusted(format!(
                "a hash is kept for record {:?}, which is not there",
                String::from_utf8_lossy(stored)
            )));
        }
        terms.add_term(kept_term(stored, &term)?);
    }
    // What startup takes the terms by (none in a cache an earlier build
    // wrote).
    if stored_sum(db, TERMS_SUM_KEY)?.is_some_and(|kept| kept != terms) {
        return Err(StoreError::Untrusted(
            "the hashes kept for its records read when asked do not add up to the sum kept \
             of them: edited or damaged on disk"
                .into(),
        ));
    }
    Ok(records)
}

/// Sets the process's umask so that new files and directories are the
/// owner's only.
fn restrict_umask() {
    // SAFETY: umask only swaps the process's file-creation mask; it touches
    // no memory and cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

/// Logs a warning for `path` and everything under it whose mode lets anyone
/// but its owner in (the data directory holds personal data). Never an
/// error: an operator may have reasons, but should know.
pub fn warn_if_readable_by_others(path: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        let wanted = if meta.is_dir() {
            DATA_DIR_MODE
        } else {
            DATA_FILE_MODE
        };
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            wanted = format!("{wanted:o}"),
            "a data file or directory is open to other users; it holds personal data (chmod it to the wanted mode)"
        );
    }
    if meta.is_dir()
        && let Ok(entries) = std::fs::read_dir(path)
    {
        for entry in entries.flatten() {
            warn_if_readable_by_others(&entry.path());
        }
    }
}

/// The derived-state records stored in `dir`, without opening the journal
/// (for offline verification); `None` when there is no state cache.
pub fn load_state_records(dir: &Path) -> Result<Option<Vec<KeyValue>>, StoreError> {
    let path = dir.join(STATE_DIR_NAME);
    if !path.exists() {
        return Ok(None);
    }
    let db = cache_config(&path)
        .open()
        .map_err(|e| StoreError::State(format!("opening {}: {e}", path.display())))?;
    Ok(Some(records_of(&db)?))
}

/// sled's segments: 8 MiB. sled 0.34.7 writes a page of more than a
/// quarter of a segment as a separate blob, and a `flush` after such writes
/// could wait forever (a test that writes a few hundred kilobytes of
/// records hung at shutdown about one run in two with 512 KiB segments,
/// sled's default, and never in as many runs with 8 MiB). With 8 MiB, a page
/// goes to a blob only past 2 MiB, and no record of the cache comes near it.
pub const CACHE_SEGMENT_BYTES: usize = 8 << 20;

fn cache_config(path: &Path) -> sled::Config {
    sled::Config::new()
        .path(path)
        .segment_size(CACHE_SEGMENT_BYTES)
        .cache_capacity(CACHE_MEMORY_BYTES)
        .flush_every_ms(Some(1000))
}

/// The pages sled keeps in memory for the state cache: 64 MiB, not its
/// default of 1 GiB. Startup reads the cache whole, once, and sled keeps
/// what it read up to this bound until the cache is closed: with 1 GiB a
/// restart at 10^7 entries peaked at about 1,630 MiB for the 970 it kept,
/// with 64 MiB at about 1,180 (BENCHMARKS.md). A checkpoint reads and
/// writes the records that changed since the last, which fit in far less
/// (the realistic mix ran no slower).
pub const CACHE_MEMORY_BYTES: u64 = 64 << 20;

/// Opens the state cache at `path`. One written with another segment size
/// (by an earlier release) cannot be opened with this one: it is removed,
/// and startup rebuilds the cache from the journal, as after any cache it
/// cannot use.
fn open_cache(path: &Path) -> Result<sled::Db, StoreError> {
    let opening = |e: sled::Error| StoreError::State(format!("opening {}: {e}", path.display()));
    match cache_config(path).open() {
        Err(sled::Error::Unsupported(why)) if why.contains("io buffer size") => {
            tracing::warn!(
                cache = %path.display(),
                %why,
                "the state cache was written with another sled segment size; removing it, to \
                 rebuild it from the journal"
            );
            // Renamed aside first: a crash while removing it cannot leave a
            // half-removed cache where the new one goes.
            let aside = path.with_file_name(format!(
                "{}.old-segments",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("state")
            ));
            if aside.exists() {
                std::fs::remove_dir_all(&aside)
                    .map_err(StoreError::io(format!("removing {}", aside.display())))?;
            }
            std::fs::rename(path, &aside)
                .map_err(StoreError::io(format!("moving {} aside", path.display())))?;
            std::fs::remove_dir_all(&aside)
                .map_err(StoreError::io(format!("removing {}", aside.display())))?;
            cache_config(path).open().map_err(opening)
        }
        opened => opened.map_err(opening),
    }
}

#[cfg(test)]
mod tests {
    use super::CacheDigest;
    use crate::domain::stored::ReadError;
    use crate::store::{DiskStore, Store, StoreError};

    /// Startup reads the cache, closes it and opens it again on a thread
    /// of its own (which waits, as an open would, while the closed
    /// instance may still hold its lock); the checkpoint right after (at
    /// once, as a replay past the cache makes one) waits for that.
    #[test]
    fn a_checkpoint_right_after_startup_read_the_cache_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_two_records(dir.path());
        for round in 0..20u8 {
            let mut seen = 0;
            store
                .load_state(&mut |_, _| {
                    seen += 1;
                    Ok(())
                })
                .unwrap();
            assert_eq!(seen, 2 + usize::from(round.min(1)));
            store
                .save_state(&[(b"c".to_vec(), Some(vec![round]))])
                .unwrap();
        }
    }

    /// A store whose cache holds two records and their digest.
    fn store_with_two_records(dir: &std::path::Path) -> DiskStore {
        let store = DiskStore::open(dir).unwrap();
        let records = vec![
            (b"a".to_vec(), Some(b"1".to_vec())),
            (b"b".to_vec(), Some(b"2".to_vec())),
        ];
        store.save_state(&records).unwrap();
        store
    }

    /// A long record read when asked is stored compressed and read back as
    /// it was saved; a cache as format 9 and earlier wrote it (values bare,
    /// the digest of them) is not read as this layout: `load_state` refuses
    /// it (startup then rebuilds the cache from the journal), and the
    /// records `verify` reads are handed out as stored, with their format
    /// record, which tells it the cache is another release's.
    #[test]
    fn values_are_stored_compressed_and_a_cache_of_bare_values_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let long: Vec<u8> = (0..10_000u32).map(|i| (i % 97) as u8).collect();
        let format = postcard::to_stdvec(&super::STATE_FORMAT).unwrap();
        store
            .save_state(&[
                (b"format".to_vec(), Some(format.clone())),
                (b"cold/x/1".to_vec(), Some(long.clone())),
            ])
            .unwrap();
        let db = || store.local.cache().unwrap();
        let stored = db().get(b"cold/x/1").unwrap().unwrap();
        assert!(stored.len() * 5 < long.len(), "{} bytes", stored.len());
        assert_eq!(
            every_record(&store),
            [(b"format".to_vec(), Some(format.clone()))]
        );
        let read = store.stored_records().unwrap().read(b"cold/x/1").unwrap();
        assert!(
            read == Some(long.clone()),
            "read back as saved: {:?}",
            read.as_ref().map(Vec::len)
        );
        let records = super::records_of(&db()).unwrap();
        assert!(
            records
                == [
                    (b"cold/x/1".to_vec(), long.clone()),
                    (b"format".to_vec(), format)
                ],
            "read back as saved: {:?}",
            records
                .iter()
                .map(|(key, value)| (String::from_utf8_lossy(key), value.len()))
                .collect::<Vec<_>>()
        );

        // An earlier release's cache: bare values and their digest.
        db().clear().unwrap();
        let format_9 = postcard::to_stdvec(&9u32).unwrap();
        let bare: [(&[u8], &[u8]); 2] = [(b"format", &format_9), (b"cold/x/1", &long)];
        for (key, value) in bare {
            db().insert(key, value).unwrap();
        }
        db().insert(
            super::term_key(b"cold/x/1"),
            &CacheDigest::record_hash(b"cold/x/1", &long)[..],
        )
        .unwrap();
        db().insert(super::DIGEST_KEY, &CacheDigest::of(bare).0[..])
            .unwrap();
        let loaded = store.load_state(&mut |_, _| Ok(()));
        assert!(
            matches!(&loaded, Err(StoreError::State(why)) if why.contains("format 9")),
            "{loaded:?}"
        );
        assert!(
            super::records_of(&db()).unwrap()
                == [(b"cold/x/1".to_vec(), long), (b"format".to_vec(), format_9)],
            "handed out as stored"
        );
    }

    /// Every record `load_state` hands over, in the order it does.
    fn every_record(store: &DiskStore) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut seen = Vec::new();
        store
            .load_state(&mut |key, value| {
                seen.push((key.to_vec(), value.map(<[u8]>::to_vec)));
                Ok(())
            })
            .unwrap();
        seen
    }

    /// The records are handed over in key order, one at a time; a record
    /// the visitor refuses is the error when the records add up to their
    /// digest.
    #[test]
    fn load_state_hands_each_record_over_and_reports_a_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_two_records(dir.path());
        let seen = every_record(&store);
        assert_eq!(
            seen,
            vec![
                (b"a".to_vec(), Some(b"1".to_vec())),
                (b"b".to_vec(), Some(b"2".to_vec()))
            ]
        );
        let refused = store.load_state(&mut |key, _| match key {
            b"a" => Err("record a is not a record".to_owned()),
            _ => Ok(()),
        });
        assert!(
            matches!(&refused, Err(StoreError::State(why)) if why == "record a is not a record"),
            "{refused:?}"
        );
    }

    /// A cache larger than the reader's batches (by count and by bytes) is
    /// handed over whole and in key order; a record changed in one of the
    /// last batches still makes the whole load untrusted.
    #[test]
    fn load_state_hands_over_a_large_cache_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let count = 3 * super::LOAD_BATCH_RECORDS + 17;
        let record = |i: usize| {
            // Every hundredth value larger, so that some batches end by bytes.
            let len = if i.is_multiple_of(100) { 64 << 10 } else { 8 };
            (format!("k{i:06}").into_bytes(), vec![(i % 251) as u8; len])
        };
        let records: Vec<_> = (0..count)
            .map(|i| {
                let (key, value) = record(i);
                (key, Some(value))
            })
            .collect();
        store.save_state(&records).unwrap();
        let seen = every_record(&store);
        let expected: Vec<_> = (0..count)
            .map(record)
            .map(|(key, value)| (key, Some(value)))
            .collect();
        assert_eq!(seen, expected);

        let last = format!("k{:06}", count - 2);
        store
            .local
            .cache()
            .unwrap()
            .insert(last.as_bytes(), &b"edited"[..])
            .unwrap();
        let mut visited = 0;
        let loaded = store.load_state(&mut |_, _| {
            visited += 1;
            Ok(())
        });
        assert!(
            matches!(&loaded, Err(StoreError::Untrusted(_))),
            "{loaded:?}"
        );
        assert_eq!(visited, count);
    }

    /// A record changed behind the digest's back is reported as that (the
    /// cache is not to be trusted), even when the visitor refused it first.
    #[test]
    fn load_state_reports_records_that_do_not_add_up_even_after_a_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_two_records(dir.path());
        store
            .local
            .cache()
            .unwrap()
            .insert(b"a", &b"edited"[..])
            .unwrap();
        for refuse in [false, true] {
            let loaded =
                store.load_state(&mut |_, value| match refuse && value == Some(b"edited") {
                    true => Err("undecodable".to_owned()),
                    false => Ok(()),
                });
            assert!(
                matches!(&loaded, Err(StoreError::Untrusted(_))),
                "refusing: {refuse}: {loaded:?}"
            );
        }
    }

    /// A key written more than once in one checkpoint (changed, removed,
    /// written again), bare or read when asked and long enough to be
    /// compressed: the last value is the record, and the digest counts it
    /// alone (the cache loads, as it would not if an earlier value's term
    /// were left in the digest).
    #[test]
    fn a_key_written_twice_in_one_checkpoint_counts_once_in_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let long = |fill: u8| Some(vec![fill; 600]);
        let key = |key: &str| key.as_bytes().to_vec();
        store
            .save_state(&[
                (key("a"), Some(b"old".to_vec())),
                (key("cold/daylog/1"), long(1)),
            ])
            .unwrap();
        store
            .save_state(&[
                (key("a"), Some(b"1".to_vec())),
                (key("cold/daylog/1"), long(2)),
                (key("b"), Some(b"gone".to_vec())),
                (key("cold/x/2"), long(3)),
                (key("a"), Some(b"2".to_vec())),
                (key("cold/daylog/1"), long(4)),
                (key("b"), None),
                (key("cold/x/2"), None),
                (key("c"), None),
                (key("c"), Some(b"3".to_vec())),
                (key("cold/x/3"), None),
                (key("cold/x/3"), long(5)),
            ])
            .unwrap();
        // The day log's chunk listed by key; the terms add up to their sum
        // (the reads wait for that check).
        assert_eq!(
            every_record(&store),
            vec![
                (key("a"), Some(b"2".to_vec())),
                (key("c"), Some(b"3".to_vec())),
                (key("cold/daylog/1"), None),
            ]
        );
        let reader = store.stored_records().unwrap();
        assert_eq!(reader.read(b"cold/daylog/1").unwrap(), long(4));
        assert_eq!(reader.read(b"cold/x/2").unwrap(), None);
        assert_eq!(reader.read(b"cold/x/3").unwrap(), long(5));
    }

    /// The records under a prefix read when asked are listed in key order
    /// from the one after a given key, at most so many, each decompressed
    /// and checked against its term; those the caller names are passed
    /// over unread (not counted, not checked: they may be being written
    /// again), and one edited on disk is refused, not listed.
    #[test]
    fn records_under_a_prefix_are_listed_in_order_checked_and_skipped_as_asked() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let long = |fill: u8| vec![fill; 600];
        let record = |key: &str, value: Vec<u8>| (key.as_bytes().to_vec(), Some(value));
        store
            .save_state(&[
                record("cold/ended/A1", long(1)),
                record("cold/ended/A2", b"two".to_vec()),
                record("cold/ended/B", long(3)),
                record("cold/ended/B1", b"four".to_vec()),
                record("cold/loan/A1", b"other".to_vec()),
                record("ended/A0", b"bare".to_vec()),
            ])
            .unwrap();
        let reader = store.stored_records().unwrap();
        let none = |_: &[u8]| false;
        let keys = |records: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<String> {
            records
                .into_iter()
                .map(|(key, _)| String::from_utf8(key).unwrap())
                .collect()
        };
        let all = reader
            .records_after(b"cold/ended/", None, usize::MAX, &none)
            .unwrap();
        assert_eq!(
            all,
            vec![
                (b"cold/ended/A1".to_vec(), long(1)),
                (b"cold/ended/A2".to_vec(), b"two".to_vec()),
                (b"cold/ended/B".to_vec(), long(3)),
                (b"cold/ended/B1".to_vec(), b"four".to_vec()),
            ]
        );
        let after_a1 = reader.records_after(b"cold/ended/", Some(b"A1"), 2, &none);
        assert_eq!(keys(after_a1.unwrap()), ["cold/ended/A2", "cold/ended/B"]);
        // After "B", not after every key starting with it.
        let after_b = reader.records_after(b"cold/ended/", Some(b"B"), 5, &none);
        assert_eq!(keys(after_b.unwrap()), ["cold/ended/B1"]);
        let held = |key: &[u8]| key.ends_with(b"A2") || key.ends_with(b"B");
        let skipped = reader.records_after(b"cold/ended/", None, 2, &held);
        assert_eq!(keys(skipped.unwrap()), ["cold/ended/A1", "cold/ended/B1"]);
        // Edited behind the digest's back: refused when listed, unless
        // passed over.
        let db = || store.local.cache().unwrap();
        db().insert(b"cold/ended/A2", &b"edited"[..]).unwrap();
        let listed = reader.records_after(b"cold/ended/", None, usize::MAX, &none);
        assert!(
            matches!(&listed, Err(ReadError::Damaged(why)) if why.contains("cold/ended/A2")),
            "{listed:?}"
        );
        let passed_over = reader.records_after(b"cold/ended/", None, usize::MAX, &held);
        assert_eq!(
            keys(passed_over.unwrap()),
            ["cold/ended/A1", "cold/ended/B1"]
        );
    }

    /// The records read when asked are not handed over but the day logs'
    /// closed chunks, by key only, after the others; the records still
    /// add up to the digest (by the sum of the terms kept beside those);
    /// one read back is checked against its term, and so is every one
    /// `verify` reads.
    #[test]
    fn records_read_when_asked_stay_in_the_store_checked_against_their_terms() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_records_read_when_asked(dir.path());
        // Changed and removed in later checkpoints: the digest follows.
        store
            .save_state(&[cold_record("cold/daylog/1", "first again")])
            .unwrap();
        store.save_state(&[(b"cold/x/3".to_vec(), None)]).unwrap();
        assert_eq!(
            every_record(&store),
            vec![
                (b"a".to_vec(), Some(b"1".to_vec())),
                (b"z".to_vec(), Some(b"9".to_vec())),
                (b"cold/daylog/1".to_vec(), None),
            ]
        );
        let reader = store.stored_records().unwrap();
        assert_eq!(
            reader.read(b"cold/daylog/1").unwrap().as_deref(),
            Some(&b"first again"[..])
        );
        assert_eq!(
            reader.read(b"cold/x/2").unwrap().as_deref(),
            Some(&b"second"[..])
        );
        assert_eq!(reader.read(b"cold/x/3").unwrap(), None);
        // A handle held across a `load_state` (which closes the cache and
        // opens it again) would keep sled's lock: each use takes its own.
        let db = || store.local.cache().unwrap();
        assert_eq!(super::records_of(&db()).unwrap().len(), 4);

        // Edited behind the digest's back: startup does not read it, so
        // it is seen when read, by the server and by `verify`.
        db().insert(b"cold/x/2", &b"edited"[..]).unwrap();
        assert_eq!(every_record(&store).len(), 3);
        let read = reader.read(b"cold/x/2");
        assert!(
            matches!(&read, Err(ReadError::Damaged(why)) if why.contains("cold/x/2") && why.contains("does not match")),
            "{read:?}"
        );
        assert!(matches!(
            super::records_of(&db()),
            Err(StoreError::Untrusted(_))
        ));
        db().insert(
            b"cold/x/2",
            super::cache_value::seal(b"cold/x/2", b"second").into_owned(),
        )
        .unwrap();
        assert!(super::records_of(&db()).is_ok());
        // The sum of the terms edited: the records do not add up.
        let sum = db().get(super::TERMS_SUM_KEY).unwrap().unwrap();
        db().insert(super::TERMS_SUM_KEY, &[7u8; 32][..]).unwrap();
        assert!(matches!(
            store.load_state(&mut |_, _| Ok(())),
            Err(StoreError::Untrusted(_))
        ));
        db().insert(super::TERMS_SUM_KEY, sum).unwrap();
        assert_eq!(every_record(&store).len(), 3);
        // A term without its record: `verify` names it.
        db().insert(super::term_key(b"cold/x/9"), &[1u8; 32][..])
            .unwrap();
        let read = super::records_of(&db());
        assert!(
            matches!(&read, Err(StoreError::Untrusted(why)) if why.contains("cold/x/9") && why.contains("edited or damaged")),
            "{read:?}"
        );
    }

    /// A store whose cache holds records read when asked (a day log's
    /// chunk among them) and others.
    fn store_with_records_read_when_asked(dir: &std::path::Path) -> DiskStore {
        let store = DiskStore::open(dir).unwrap();
        store
            .save_state(&[
                cold_record("a", "1"),
                cold_record("cold/daylog/1", "first"),
                cold_record("cold/x/2", "second"),
                cold_record("cold/x/3", "third"),
                cold_record("z", "9"),
            ])
            .unwrap();
        store
    }

    fn cold_record(key: &str, value: &str) -> (Vec<u8>, Option<Vec<u8>>) {
        (key.as_bytes().to_vec(), Some(value.as_bytes().to_vec()))
    }

    /// Terms that do not add up to the sum startup took them by (a record
    /// read when asked removed, added or edited with its term; a term
    /// edited or cut short) are found by the check that follows startup:
    /// every record read when asked is refused, named as damaged, the
    /// next checkpoint writes no digest, and the next start finds the
    /// cache untrusted (and rebuilds it from the journal). `verify` finds
    /// them too.
    #[test]
    fn terms_that_do_not_add_up_to_their_sum_are_found_after_startup() {
        type Edit = fn(&sled::Db);
        let edits: [(&str, Edit); 5] = [
            ("a record and its term removed", |db| {
                db.remove(b"cold/x/2").unwrap();
                db.remove(super::term_key(b"cold/x/2")).unwrap();
            }),
            ("a record and its term added", |db| {
                let value = super::cache_value::seal(b"cold/x/4", b"fourth").into_owned();
                let term = CacheDigest::record_hash(b"cold/x/4", &value);
                db.insert(super::term_key(b"cold/x/4"), &term[..]).unwrap();
                db.insert(b"cold/x/4", value).unwrap();
            }),
            ("a record edited with its term", |db| {
                let value = super::cache_value::seal(b"cold/x/2", b"edited").into_owned();
                let term = CacheDigest::record_hash(b"cold/x/2", &value);
                db.insert(super::term_key(b"cold/x/2"), &term[..]).unwrap();
                db.insert(b"cold/x/2", value).unwrap();
            }),
            ("a term edited", |db| {
                db.insert(super::term_key(b"cold/x/3"), &[7u8; 32][..])
                    .unwrap();
            }),
            ("a term cut short", |db| {
                db.insert(super::term_key(b"cold/x/3"), &[7u8; 5][..])
                    .unwrap();
            }),
        ];
        for (what, edit) in edits {
            let dir = tempfile::tempdir().unwrap();
            let store = store_with_records_read_when_asked(dir.path());
            let db = || store.local.cache().unwrap();
            edit(&db());
            // Startup takes the terms by their sum, and reads on.
            assert_eq!(every_record(&store).len(), 3, "{what}");
            // Every record read when asked is refused, the untouched too.
            let reader = store.stored_records().unwrap();
            for key in [&b"cold/daylog/1"[..], b"cold/x/2", b"cold/x/3"] {
                let read = reader.read(key);
                assert!(
                    matches!(&read, Err(ReadError::Damaged(why)) if why.contains("not those it was written with")),
                    "{what}: {read:?}"
                );
            }
            let listed = reader.records_after(b"cold/x/", None, 10, &|_| false);
            assert!(
                matches!(&listed, Err(ReadError::Damaged(_))),
                "{what}: {listed:?}"
            );
            assert!(
                matches!(super::records_of(&db()), Err(StoreError::Untrusted(_))),
                "{what}"
            );
            // A checkpoint writes its records, and no digest.
            store.save_state(&[cold_record("b", "2")]).unwrap();
            assert_eq!(db().get(super::DIGEST_KEY).unwrap(), None, "{what}");
            let loaded = store.load_state(&mut |_, _| Ok(()));
            assert!(
                matches!(&loaded, Err(StoreError::Untrusted(why)) if why.contains("no digest")),
                "{what}: {loaded:?}"
            );
            // Cleared (as the rebuild clears it), nothing is refused.
            store.clear_state().unwrap();
            store
                .save_state(&[cold_record("cold/x/5", "fifth")])
                .unwrap();
            assert_eq!(every_record(&store), [], "{what}");
            assert_eq!(
                reader.read(b"cold/x/5").unwrap().as_deref(),
                Some(&b"fifth"[..]),
                "{what}"
            );
        }
    }

    /// A cache an earlier build wrote keeps no sum of the terms: startup
    /// adds up the terms themselves, checked with the rest against the
    /// digest, and keeps their sum from then on; a term edited there makes
    /// the records not add up, as it did.
    #[test]
    fn a_cache_without_the_sum_of_its_terms_is_read_and_given_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with_records_read_when_asked(dir.path());
        let db = || store.local.cache().unwrap();
        let sum = db().remove(super::TERMS_SUM_KEY).unwrap().unwrap();
        assert_eq!(every_record(&store).len(), 3);
        assert_eq!(db().get(super::TERMS_SUM_KEY).unwrap(), Some(sum.clone()));
        assert_eq!(every_record(&store).len(), 3);
        assert_eq!(
            store.stored_records().unwrap().read(b"cold/x/2").unwrap(),
            Some(b"second".to_vec())
        );
        // Without a sum, a checkpoint adds the terms up too.
        db().remove(super::TERMS_SUM_KEY).unwrap();
        store
            .save_state(&[cold_record("cold/x/4", "fourth")])
            .unwrap();
        assert!(super::records_of(&db()).is_ok());
        assert_eq!(every_record(&store).len(), 3);
        assert_eq!(
            store.stored_records().unwrap().read(b"cold/x/4").unwrap(),
            Some(b"fourth".to_vec())
        );
        // A term edited in a cache without the sum.
        db().remove(super::TERMS_SUM_KEY).unwrap();
        db().insert(super::term_key(b"cold/x/3"), &[7u8; 32][..])
            .unwrap();
        assert!(matches!(
            store.load_state(&mut |_, _| Ok(())),
            Err(StoreError::Untrusted(_))
        ));
        assert_eq!(db().get(super::TERMS_SUM_KEY).unwrap(), None);
    }

    /// A cache an earlier release wrote with sled's default segments opens
    /// empty (to be rebuilt from the journal), not as an error.
    #[test]
    fn a_cache_of_another_segment_size_is_removed_to_be_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(super::STATE_DIR_NAME);
        {
            let old = sled::Config::new().path(&path).open().unwrap();
            old.insert(b"head", b"old").unwrap();
            old.flush().unwrap();
        }
        let reopened = super::open_cache(&path).unwrap();
        assert!(reopened.get(b"head").unwrap().is_none());
        reopened.insert(b"head", b"new").unwrap();
        reopened.flush().unwrap();
        drop(reopened);
        // The new cache is kept from then on. sled's background flusher
        // holds the file lock a moment after the handle is dropped (longer
        // on a loaded machine): the reopen waits for it, a second at most.
        let mut tries = 0;
        let again = loop {
            match super::open_cache(&path) {
                Err(e) if e.to_string().contains("could not acquire lock") && tries < 40 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                opened => break opened.unwrap(),
            }
        };
        assert_eq!(again.get(b"head").unwrap().as_deref(), Some(&b"new"[..]));
    }

    /// What sled defers until no thread could still read it is run by the
    /// release at the end of startup's save, not left for later pins: a
    /// server that rebuilt its cache held it otherwise (1.7 GB at 97,550
    /// entries of the simulated branch, against 0.74 after the release).
    #[test]
    fn deferred_frees_are_run_by_the_release() {
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..10_000 {
            let ran = ran.clone();
            let guard = crossbeam_epoch::pin();
            guard.defer(move || ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        }
        // Another test's thread pinned for long (a large sled batch) holds
        // the epoch back: released again until they ran, or ten seconds.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            super::release_sled_garbage();
            let done = ran.load(std::sync::atomic::Ordering::SeqCst);
            if done == 10_000 || std::time::Instant::now() > deadline {
                assert_eq!(done, 10_000);
                break;
            }
        }
    }

    /// The digest depends on the set of records, not on the order they were
    /// written in, and a removal undoes an addition (what lets a checkpoint
    /// update it from the changed records alone).
    #[test]
    fn the_digest_is_a_multiset_hash() {
        let records: [(&[u8], &[u8]); 3] = [(b"a", b"1"), (b"b", b"2"), (b"head", b"x")];
        let forward = CacheDigest::of(records);
        let backward = CacheDigest::of(records.into_iter().rev());
        assert_eq!(forward, backward);
        let mut changed = forward;
        changed.remove(b"b", b"2");
        changed.add(b"b", b"3");
        assert_ne!(changed, forward);
        changed.remove(b"b", b"3");
        changed.add(b"b", b"2");
        assert_eq!(changed, forward);
        // A record moved from one key to another is seen.
        assert_ne!(
            CacheDigest::of([(&b"ab"[..], &b""[..])]),
            CacheDigest::of([(&b"a"[..], &b"b"[..])])
        );
        let mut empty = CacheDigest::default();
        empty.add(b"a", b"1");
        empty.remove(b"a", b"1");
        assert_eq!(empty, CacheDigest::default());
    }
}
