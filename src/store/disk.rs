//! The embedded store: the journal file (the truth, fsynced per batch) and a
//! sled database holding the derived-state cache.
//!
//! sled 0.34.7's `flush()` is not a durable barrier on Linux (it uses
//! `sync_file_range`), which is one reason the journal lives in a file this
//! store owns and fsyncs itself; sled only ever holds what can be rebuilt.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::domain::entry::Entry;
use crate::domain::state::StateRecord;

use super::journal_file::{JournalFile, read_entry_at};
use super::{KeyValue, Store, StoreError};

/// Name of the sled directory in the data directory.
pub const STATE_DIR_NAME: &str = "state";

/// Journal file plus sled state cache in one data directory.
pub struct DiskStore {
    dir: PathBuf,
    journal: Mutex<Result<JournalFile, String>>,
    /// A read handle and the entries' offsets, published after each barrier.
    reader: RwLock<(Arc<File>, Vec<u64>)>,
    last_sequence: AtomicU64,
    barriers: AtomicU64,
    state: sled::Db,
}

impl DiskStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<DiskStore, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(StoreError::io(format!("creating {}", dir.display())))?;
        let journal = JournalFile::open(dir)?;
        let reader = (
            Arc::new(journal.try_clone_file()?),
            journal.offsets().to_vec(),
        );
        let state = sled::Config::new()
            .path(dir.join(STATE_DIR_NAME))
            .flush_every_ms(Some(1000))
            .open()
            .map_err(|e| {
                StoreError::State(format!(
                    "opening {}: {e}",
                    dir.join(STATE_DIR_NAME).display()
                ))
            })?;
        Ok(DiskStore {
            dir: dir.to_owned(),
            last_sequence: AtomicU64::new(journal.len()),
            journal: Mutex::new(Ok(journal)),
            reader: RwLock::new(reader),
            barriers: AtomicU64::new(0),
            state,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
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
        walk(&self.dir)
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
        let barriers = match journal.append(entries) {
            Ok(barriers) => barriers,
            Err(error) => {
                // After a failed write or fsync the file's state is unknown:
                // stop writing rather than risk acknowledging a lost entry.
                tracing::error!(%error, "journal append failed; the store stops accepting writes");
                *guard = Err(error.to_string());
                return Err(error);
            }
        };
        self.barriers.fetch_add(barriers, Ordering::SeqCst);
        let offsets = journal.offsets()[(expected - 1) as usize..].to_vec();
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
            let start = ((first - 1) as usize).min(reader.1.len());
            let end = start.saturating_add(limit).min(reader.1.len());
            (reader.0.clone(), reader.1[start..end].to_vec())
        };
        let mut entries = Vec::with_capacity(offsets.len());
        for (sequence, offset) in (first..).zip(offsets) {
            entries.push(read_entry_at(&file, offset, sequence)?);
        }
        Ok(entries)
    }

    fn take_request_index(&self) -> Vec<(String, u64)> {
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

    fn barrier_count(&self) -> u64 {
        self.barriers.load(Ordering::SeqCst)
    }

    fn save_state(&self, records: &[StateRecord]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (key, value) in records {
            match value {
                Some(value) => batch.insert(key.as_slice(), value.as_slice()),
                None => batch.remove(key.as_slice()),
            }
        }
        self.state
            .apply_batch(batch)
            .map_err(|e| StoreError::State(e.to_string()))
    }

    fn load_state(&self) -> Result<Vec<KeyValue>, StoreError> {
        self.state
            .iter()
            .map(|item| {
                item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(|e| StoreError::State(e.to_string()))
            })
            .collect()
    }

    fn clear_state(&self) -> Result<(), StoreError> {
        self.state
            .clear()
            .map_err(|e| StoreError::State(e.to_string()))?;
        self.flush_state()
    }

    fn flush_state(&self) -> Result<(), StoreError> {
        self.state
            .flush()
            .map(|_| ())
            .map_err(|e| StoreError::State(e.to_string()))
    }
}

/// The derived-state records stored in `dir`, without opening the journal
/// (for offline verification); `None` when there is no state cache.
pub fn load_state_records(dir: &Path) -> Result<Option<Vec<KeyValue>>, StoreError> {
    let path = dir.join(STATE_DIR_NAME);
    if !path.exists() {
        return Ok(None);
    }
    let db = sled::Config::new()
        .path(&path)
        .open()
        .map_err(|e| StoreError::State(format!("opening {}: {e}", path.display())))?;
    let records = db
        .iter()
        .map(|item| {
            item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(|e| StoreError::State(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(records))
}
