//! The Merkle tree and the checkpoints, as `verify` checks them: the tree is
//! recomputed from the journal's entries as they are replayed (only its
//! right edge is kept, O(log n) memory), compared hash by hash with the tree
//! file the server keeps (`merkle.tree`, written in the same post order), and
//! every checkpoint the server issued (`checkpoints.log`) must be signed by
//! the log's key and give the recomputed root at its size.
//!
//! A journal rewritten consistently (checksums and hash chain recomputed)
//! passes the chain check; it is caught here: its leaves differ from the tree
//! file's (which names the first entry that differs) and its roots from the
//! signed checkpoints'.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::checkpoint::{Checkpoint, Verifier};
use crate::domain::entry::Hash;
use crate::domain::merkle::{self, node_hash};
use crate::store::checkpoint_log::{CHECKPOINT_LOG_FILE, CheckpointLog};
use crate::store::tree_file::{TREE_FILE_NAME, leaves_within};

use super::VerifyError;

/// A checkpoint to check, once the replay reaches its size.
struct Expected {
    size: u64,
    root: Hash,
    /// The access log's head it anchors: (records, last record's hash).
    access_log: Option<(u64, Hash)>,
    /// The chain hash it names for its last entry.
    journal: Option<Hash>,
}

/// The tree being recomputed and what it is checked against.
pub(super) struct TreeCheck {
    peaks: Vec<Hash>,
    completed: Vec<Hash>,
    leaves: u64,
    /// The server's tree file, read along, and how many leaves it holds.
    file: Option<(BufReader<File>, u64)>,
    /// The checkpoints, by size, and the next to reach.
    checkpoints: Vec<Expected>,
    next: usize,
}

/// What the tree check saw.
#[derive(Debug, Clone, Default)]
pub struct TreeReport {
    /// Leaves of the tree file compared with the recomputed tree.
    pub file_leaves: u64,
    /// Checkpoints whose signature and root were checked.
    pub checkpoints: u64,
    /// Tree size of the latest of them.
    pub latest_checkpoint: u64,
    /// The access log's heads the checkpoints anchor: (tree size, records,
    /// last record's hash).
    pub access_log_anchors: Vec<(u64, u64, Hash)>,
}

fn unreadable(path: &Path, message: impl std::fmt::Display) -> VerifyError {
    VerifyError::Unreadable {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

impl TreeCheck {
    /// Opens the tree file and the checkpoints of `dir`, and those an
    /// auditor kept in `folder` (`audit fetch --dir`); the checkpoints'
    /// signatures are checked with `log_key` (default: the folder's
    /// `log.pub`, else `dir/log.pub`).
    pub(super) fn open(
        dir: &Path,
        log_key: Option<&Verifier>,
        folder: Option<&Path>,
    ) -> Result<TreeCheck, VerifyError> {
        let tree_path = dir.join(TREE_FILE_NAME);
        let file = match File::open(&tree_path) {
            Ok(file) => {
                let bytes = file
                    .metadata()
                    .map_err(|e| unreadable(&tree_path, e))?
                    .len();
                let leaves = leaves_within(bytes / 32);
                Some((BufReader::with_capacity(1 << 16, file), leaves))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => return Err(unreadable(&tree_path, error)),
        };
        let published = match (log_key, folder) {
            (Some(_), _) => None,
            (None, Some(folder)) => match read_key(folder)? {
                Some(key) => Some(key),
                None => read_key(dir)?,
            },
            (None, None) => read_key(dir)?,
        };
        let key = log_key.or(published.as_ref());
        let mut notes = Vec::new();
        if dir.join(CHECKPOINT_LOG_FILE).exists() {
            notes.extend(server_notes(dir)?);
        }
        if let Some(folder) = folder {
            notes.extend(folder_notes(folder)?);
        }
        let checkpoints = expected(notes, key)?;
        Ok(TreeCheck {
            peaks: Vec::new(),
            completed: Vec::new(),
            leaves: 0,
            file,
            checkpoints,
            next: 0,
        })
    }

    /// Adds the leaf of entry `sequence` (`leaves` + 1), whose canonical bytes
    /// are `canonical` and chain hash `hash`.
    pub(super) fn push(
        &mut self,
        sequence: u64,
        canonical: &[u8],
        hash: &Hash,
    ) -> Result<(), VerifyError> {
        self.completed.clear();
        merkle::push_leaf(
            &mut self.peaks,
            self.leaves,
            merkle::leaf_hash(canonical),
            &mut self.completed,
        );
        self.leaves += 1;
        if let Some((file, leaves)) = &mut self.file
            && self.leaves <= *leaves
        {
            for expected in &self.completed {
                let mut kept = [0u8; 32];
                file.read_exact(&mut kept)
                    .map_err(|e| unreadable(Path::new(TREE_FILE_NAME), e))?;
                if kept != *expected {
                    return Err(VerifyError::Entry {
                        sequence,
                        message: format!(
                            "the Merkle tree the server keeps ({TREE_FILE_NAME}) holds another hash for this entry \
                             or a subtree it closes: the entry was changed after the tree was written (or \
                             {TREE_FILE_NAME} was damaged: moved aside, the server rebuilds it from the journal)"
                        ),
                    });
                }
            }
        }
        while let Some(expected) = self.checkpoints.get(self.next)
            && expected.size == self.leaves
        {
            let from = self
                .next
                .checked_sub(1)
                .map_or(0, |i| self.checkpoints[i].size)
                + 1;
            let fail = |message: String| VerifyError::Checkpoint {
                from,
                size: expected.size,
                message,
            };
            if expected.journal.is_some_and(|signed| signed != *hash) {
                return Err(fail(format!(
                    "the chain hash of entry {} is not the one the log's key signed in the checkpoint \
                     of that size: one of these entries was changed after it was signed",
                    expected.size
                )));
            }
            if self.root() != expected.root {
                return Err(fail(format!(
                    "they do not give the root of the checkpoint of size {} signed by the log's key: \
                     one of them was changed after it was signed",
                    expected.size
                )));
            }
            self.next += 1;
        }
        Ok(())
    }

    fn root(&self) -> Hash {
        let mut peaks = self.peaks.iter().rev();
        let Some(last) = peaks.next() else {
            return merkle::empty_root();
        };
        peaks.fold(*last, |right, left| node_hash(left, &right))
    }

    /// Ends the check once every entry is pushed.
    pub(super) fn finish(self) -> Result<TreeReport, VerifyError> {
        if let Some(missing) = self.checkpoints.get(self.next) {
            return Err(VerifyError::Entry {
                sequence: self.leaves + 1,
                message: format!(
                    "missing: the log's key signed a checkpoint of {} entries, but the journal ends at entry {}",
                    missing.size, self.leaves
                ),
            });
        }
        Ok(TreeReport {
            file_leaves: self
                .file
                .as_ref()
                .map_or(0, |(_, leaves)| (*leaves).min(self.leaves)),
            checkpoints: self.checkpoints.len() as u64,
            latest_checkpoint: self.checkpoints.last().map_or(0, |c| c.size),
            access_log_anchors: self
                .checkpoints
                .iter()
                .filter_map(|c| c.access_log.map(|(records, hash)| (c.size, records, hash)))
                .collect(),
        })
    }
}

/// The log's verifier key in `dir/log.pub`, read when a checkpoint needs it.
fn read_key(dir: &Path) -> Result<Option<Verifier>, VerifyError> {
    let path = dir.join(crate::checkpoint::keys::LOG_VERIFIER_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Verifier::parse(text.trim())
            .map(Some)
            .map_err(|e| unreadable(&path, e)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(unreadable(&path, error)),
    }
}

/// A signed note and where it was read.
struct Found {
    note: String,
    from: String,
}

/// The checkpoints the server kept in `dir/checkpoints.log`.
fn server_notes(dir: &Path) -> Result<Vec<Found>, VerifyError> {
    let log_path = dir.join(CHECKPOINT_LOG_FILE);
    let log = CheckpointLog::open_read_only(dir).map_err(|e| unreadable(&log_path, e))?;
    let mut found = Vec::new();
    for size in log.sizes() {
        let stored = log
            .at(size)
            .map_err(|e| unreadable(&log_path, e))?
            .ok_or_else(|| unreadable(&log_path, format!("checkpoint {size} vanished")))?;
        found.push(Found {
            note: stored.note,
            from: format!("{} (size {size})", log_path.display()),
        });
    }
    Ok(found)
}

/// The checkpoints an auditor kept: `folder/checkpoints/*.note`.
fn folder_notes(folder: &Path) -> Result<Vec<Found>, VerifyError> {
    let dir = folder.join("checkpoints");
    let entries = std::fs::read_dir(&dir).map_err(|e| unreadable(&dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| unreadable(&dir, e))?.path();
        if path.extension().is_some_and(|e| e == "note") {
            let note = std::fs::read_to_string(&path).map_err(|e| unreadable(&path, e))?;
            found.push(Found {
                note,
                from: path.display().to_string(),
            });
        }
    }
    Ok(found)
}

/// The checkpoints to check, by size, each signature checked with `key`;
/// two that disagree about one size are a split view.
fn expected(notes: Vec<Found>, key: Option<&Verifier>) -> Result<Vec<Expected>, VerifyError> {
    if notes.is_empty() {
        return Ok(Vec::new());
    }
    let Some(key) = key else {
        return Err(VerifyError::Unreadable {
            path: notes[0].from.clone(),
            message:
                "no verifier key to check the checkpoints with (log.pub is missing; give --log-key)"
                    .into(),
        });
    };
    let mut by_size: std::collections::BTreeMap<u64, (Expected, String, String)> =
        Default::default();
    for found in notes {
        let (checkpoint, _) = Checkpoint::open(&found.note, key).map_err(|e| {
            unreadable(
                Path::new(&found.from),
                format!("does not verify with the log key {}: {e}", key.name()),
            )
        })?;
        let expected = Expected {
            size: checkpoint.size,
            root: checkpoint.root,
            access_log: crate::ledger::parse_access_log_anchor(&checkpoint.extensions),
            journal: crate::ledger::parse_journal_anchor(&checkpoint.extensions),
        };
        let body = checkpoint.body();
        if let Some((kept, kept_body, from)) = by_size.get(&checkpoint.size) {
            if kept.root != expected.root {
                return Err(VerifyError::SplitView(format!(
                    "the log's key signed two checkpoints of size {} with different roots: {from} \
                     and {}",
                    checkpoint.size, found.from
                )));
            }
            // Same root, other anchors (the access log's head, say): the key
            // signed two statements about one size, and one hides something.
            if *kept_body != body {
                return Err(VerifyError::SplitView(format!(
                    "the log's key signed two checkpoints of size {} with different texts: {from} \
                     and {}",
                    checkpoint.size, found.from
                )));
            }
            continue;
        }
        by_size.insert(checkpoint.size, (expected, body, found.from));
    }
    Ok(by_size
        .into_values()
        .map(|(expected, _, _)| expected)
        .collect())
}
