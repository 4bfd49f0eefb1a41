//! A data directory served read-only (`serve --read-only`): a backup, a
//! copy, or read-only media an auditor works on.
//!
//! Nothing in the directory is written, created or cut. The journal is read
//! as it is (a torn tail is left alone and not served); the state is
//! rebuilt in memory from the journal at startup (the sled cache cannot be
//! opened without writing); the Merkle tree is worked out again into a
//! temporary directory, so that proofs are served; the checkpoints are read
//! from `checkpoints.log` as they are; reads are not recorded, since the
//! access log cannot be appended to. Appends fail: the ledger refuses
//! writes before they reach the store.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use crate::domain::entry::Entry;
use crate::domain::request_index::RequestIndex;
use crate::domain::state::StateRecord;

use super::journal_file::{JOURNAL_FILE_NAME, read_entry_at, scan};
use super::{Store, StoreError};

/// A data directory's journal and checkpoints, read only.
pub struct ReadOnlyStore {
    dir: std::path::PathBuf,
    journal: File,
    offsets: super::offsets::Offsets,
    /// Where the last whole frame ends.
    journal_end: u64,
    tree: super::tree_file::TreeFile,
    checkpoints: super::checkpoint_log::CheckpointLog,
    /// Holds the tree's file; removed when the store is dropped.
    _scratch: tempfile::TempDir,
}

impl ReadOnlyStore {
    /// Opens `dir` to read: its journal must be there; a server holding the
    /// directory (its lock on the journal) is refused, as `verify` refuses
    /// it.
    pub fn open(dir: &Path) -> Result<ReadOnlyStore, StoreError> {
        let path = dir.join(JOURNAL_FILE_NAME);
        let journal =
            File::open(&path).map_err(StoreError::io(format!("opening {}", path.display())))?;
        journal.try_lock_shared().map_err(|error| StoreError::Io {
            context: format!(
                "locking {} to read it: a running server holds it; serve a copy or a backup \
                 read-only, or stop the server first",
                path.display()
            ),
            source: std::io::Error::from(error),
        })?;
        let scanned = scan(&journal, |_, _| Ok(()))?;
        if scanned.torn_bytes > 0 {
            tracing::warn!(
                torn_bytes = scanned.torn_bytes,
                "the journal ends in a torn, never-acknowledged record; it is left as it is and not served"
            );
        }
        let scratch = tempfile::Builder::new()
            .prefix("mfi-ledger-read-only-")
            .tempdir()
            .map_err(StoreError::io(
                "making a temporary directory for the Merkle tree",
            ))?;
        let tree = super::tree_file::TreeFile::open(scratch.path())?;
        let checkpoint_path = dir.join(super::checkpoint_log::CHECKPOINT_LOG_FILE);
        let checkpoints = if checkpoint_path.exists() {
            super::checkpoint_log::CheckpointLog::open_read_only(dir)?
        } else {
            // None kept: an empty log in the scratch directory.
            super::checkpoint_log::CheckpointLog::open(scratch.path())?
        };
        Ok(ReadOnlyStore {
            dir: dir.to_owned(),
            journal,
            journal_end: scanned.valid_end,
            offsets: scanned.offsets,
            tree,
            checkpoints,
            _scratch: scratch,
        })
    }
}

fn read_only(what: &str) -> StoreError {
    StoreError::Stopped(format!("{what}: the data directory is served read-only"))
}

impl Store for ReadOnlyStore {
    fn append(&self, _entries: &[Arc<Entry>]) -> Result<(), StoreError> {
        Err(read_only("appending to the journal"))
    }

    fn read_entries(&self, from: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let first = from.max(1);
        let start = ((first - 1) as usize).min(self.offsets.len());
        let end = start.saturating_add(limit).min(self.offsets.len());
        (first..)
            .zip(self.offsets.range(start, end))
            .map(|(sequence, offset)| read_entry_at(&self.journal, offset, sequence))
            .collect()
    }

    fn take_request_index(&self) -> RequestIndex {
        RequestIndex::default()
    }

    fn last_sequence(&self) -> u64 {
        self.offsets.len() as u64
    }

    fn barrier_count(&self) -> u64 {
        0
    }

    /// The state lives in memory only.
    fn save_state(&self, _records: &[StateRecord]) -> Result<(), StoreError> {
        Ok(())
    }

    /// No cache: startup rebuilds the state from the journal.
    fn load_state(&self, _visit: &mut super::StateVisitor<'_>) -> Result<(), StoreError> {
        Ok(())
    }

    fn stored_records(&self) -> Option<Arc<dyn crate::domain::stored::StoredRecords>> {
        None
    }

    fn clear_state(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn flush_state(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn tree(&self) -> Option<&super::tree_file::TreeFile> {
        Some(&self.tree)
    }

    /// The copy's access log as it is: what was read on the server of
    /// record (reads of the copy are not added).
    fn access_records(
        &self,
    ) -> Option<Result<Vec<super::access_log::Record>, super::access_log::AccessLogError>> {
        let path = self.dir.join(super::access_log::ACCESS_LOG_FILE);
        path.exists().then(|| super::access_log::read_all(&path))
    }

    fn checkpoints(&self) -> Option<&super::checkpoint_log::CheckpointLog> {
        Some(&self.checkpoints)
    }

    /// Nothing here changes: every file whole, the journal up to its last
    /// whole frame.
    fn backup_plan(&self, whole: &[&str]) -> Option<Result<super::BackupPlan, StoreError>> {
        use super::access_log::ACCESS_LOG_FILE;
        use super::checkpoint_log::CHECKPOINT_LOG_FILE;
        let mut files = Vec::new();
        for name in whole.iter().chain(&[CHECKPOINT_LOG_FILE, ACCESS_LOG_FILE]) {
            let path = self.dir.join(name);
            match std::fs::metadata(&path) {
                Ok(meta) => files.push(((*name).to_owned(), path, meta.len())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Some(Err(StoreError::io(format!("reading {}", path.display()))(
                        e,
                    )));
                }
            }
        }
        files.push((
            JOURNAL_FILE_NAME.to_owned(),
            self.dir.join(JOURNAL_FILE_NAME),
            self.journal_end,
        ));
        Some(Ok(super::BackupPlan {
            head: self.last_sequence(),
            files,
        }))
    }
}
