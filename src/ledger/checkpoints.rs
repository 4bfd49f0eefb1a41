//! The Merkle tree over the journal and the checkpoints signed of it.
//!
//! The publisher appends each durable chunk's leaves to the store's tree
//! file before the reads waiting for the chunk go on (a proof or a
//! checkpoint asked for after a reply covers it); the checkpointer thread signs a
//! checkpoint (a C2SP `tlog-checkpoint` note, `crate::checkpoint`) of the
//! tree every [`CheckpointPolicy::every_entries`] entries or
//! [`CheckpointPolicy::every`] while entries arrive, on request, and at
//! shutdown, and keeps each in the store's checkpoint log (durably) before
//! anyone sees it. Proofs are read from the tree file in O(log n).
//!
//! The tree file is synced before each checkpoint of it is signed. At
//! startup the hashes past the latest checkpoint are worked out again from
//! the journal (at most one checkpoint interval of entries), and the latest
//! checkpoint is checked against the journal and the tree: a journal whose
//! entry at its size no longer has the chain hash it signed, or that no
//! longer gives its root, was changed after it was checkpointed, and the
//! server refuses to start on it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::checkpoint::{Checkpoint, Note, Signer, Verifier};
use crate::domain::entry::Entry;
use crate::domain::merkle::{self, TreeError};
use crate::store::checkpoint_log::StoredCheckpoint;
use crate::store::{Store, StoreError};

/// Entries hashed at a time while the tree catches up with the journal.
const CATCH_UP_CHUNK: usize = 4096;

/// When checkpoints are signed, and with which key.
#[derive(Clone, Debug)]
pub struct CheckpointPolicy {
    /// The log's key; without one no checkpoint is issued (the tree is
    /// still kept).
    pub signer: Option<Arc<Signer>>,
    /// The log's verifier key for a ledger that signs nothing (a read-only
    /// copy): the latest checkpoint is checked with it at startup, and it
    /// is served. A signer's own verifier key comes before it.
    pub verifier: Option<Verifier>,
    /// Entries after which a checkpoint is signed.
    pub every_entries: u64,
    /// Longest time between checkpoints while entries arrive.
    pub every: Duration,
}

impl Default for CheckpointPolicy {
    fn default() -> CheckpointPolicy {
        CheckpointPolicy {
            signer: None,
            verifier: None,
            every_entries: 100_000,
            every: Duration::from_secs(60),
        }
    }
}

impl CheckpointPolicy {
    /// The log's verifier key: the signer's, else the one given.
    pub fn verifier(&self) -> Option<Verifier> {
        match &self.signer {
            Some(signer) => Some(signer.verifier()),
            None => self.verifier.clone(),
        }
    }
}

/// Why a checkpoint or a proof could not be given.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// The sizes or the entry asked for are out of range.
    #[error("{0}")]
    OutOfRange(String),
    /// No such checkpoint, or none yet.
    #[error("{0}")]
    NotFound(String),
    /// This ledger keeps no tree or signs no checkpoints.
    #[error("{0}")]
    Unavailable(String),
    /// A cosignature that does not verify or does not fit.
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing the tree or the checkpoints failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<TreeError<StoreError>> for ProofError {
    fn from(error: TreeError<StoreError>) -> ProofError {
        match error {
            TreeError::Proof(error) => ProofError::OutOfRange(error.to_string()),
            TreeError::Read(error) => ProofError::Store(error),
        }
    }
}

/// Brings the store's tree level with its journal: cuts leaves the journal
/// no longer has, throws the tree away when its last leaf is not the
/// journal's entry, and hashes the entries past it.
pub(super) fn recover_tree(store: &dyn Store) -> Result<(), StoreError> {
    let Some(tree) = store.tree() else {
        return Ok(());
    };
    let journal = store.last_sequence();
    if tree.leaves() > journal {
        tracing::warn!(
            tree = tree.leaves(),
            journal,
            "the Merkle tree has more leaves than the journal has entries; cutting it"
        );
        tree.truncate(journal)?;
    }
    // The hashes up to the latest checkpoint were made durable before it was
    // signed, and `check_latest` binds them to the journal (its chain hash
    // and root). The ones after it were never synced (a crash may have left
    // any of them half written) nor signed: they are worked out again from
    // the journal's entries past the checkpoint (at most one checkpoint
    // interval of them).
    let signed = store
        .checkpoints()
        .and_then(|checkpoints| checkpoints.sizes().last().copied())
        .unwrap_or(0);
    if tree.leaves() > signed {
        tree.truncate(signed)?;
    }
    let behind = journal - tree.leaves();
    while tree.leaves() < journal {
        let entries = store.read_entries(tree.leaves() + 1, CATCH_UP_CHUNK)?;
        if entries.is_empty() {
            return Err(StoreError::Inconsistent(format!(
                "entry {} is missing from the journal",
                tree.leaves() + 1
            )));
        }
        tree.append(&leaves(&entries))?;
    }
    if behind > 0 {
        tracing::info!(
            hashed = behind,
            leaves = journal,
            "Merkle tree caught up with the journal"
        );
    }
    Ok(())
}

/// The leaf hashes of `entries`.
pub(super) fn leaves<E: std::borrow::Borrow<Entry>>(
    entries: &[E],
) -> Vec<crate::domain::entry::Hash> {
    entries
        .iter()
        .map(|entry| merkle::leaf_hash(&entry.borrow().canonical))
        .collect()
}

/// Checks the latest checkpoint this server issued against its tree: signed
/// by its key, no larger than the tree, and with the tree's root at its size.
pub(super) fn check_latest(store: &dyn Store, log: &Verifier) -> Result<(), StoreError> {
    let (Some(tree), Some(checkpoints)) = (store.tree(), store.checkpoints()) else {
        return Ok(());
    };
    let Some(latest) = checkpoints.latest()? else {
        return Ok(());
    };
    let refuse = |why: String| StoreError::Inconsistent(format!("{why}; refusing to start"));
    let (checkpoint, _) = Checkpoint::open(&latest.note, log).map_err(|e| {
        refuse(format!(
            "the latest checkpoint (tree size {}) does not verify with the log's key: {e} \
             (was the key in log.key replaced?)",
            latest.size
        ))
    })?;
    if checkpoint.size > tree.leaves() {
        return Err(refuse(format!(
            "this server signed a checkpoint of {} entries but the journal holds {}: \
             signed entries are missing from the journal",
            checkpoint.size,
            tree.leaves()
        )));
    }
    let root = tree.root_at(checkpoint.size).map_err(|e| match e {
        TreeError::Read(e) => e,
        TreeError::Proof(e) => refuse(e.to_string()),
    })?;
    if let Some(signed) = parse_journal_anchor(&checkpoint.extensions) {
        let entry = store.read_entries(checkpoint.size, 1)?;
        if entry.first().map(|e| e.hash) != Some(signed) {
            return Err(refuse(format!(
                "entry {} of the journal does not have the chain hash this server signed in its \
                 checkpoint of that size: the journal up to it was rewritten after it was signed \
                 (`mfi-ledger verify` names the first entry that differs)",
                checkpoint.size
            )));
        }
    }
    if root != checkpoint.root {
        return Err(refuse(format!(
            "the journal's first {} entries do not give the root this server signed in its \
             checkpoint of that size: the journal was changed after it was checkpointed \
             (`mfi-ledger verify` names the first entry that differs)",
            checkpoint.size
        )));
    }
    Ok(())
}

/// What the checkpointer is asked.
pub(super) enum Request {
    /// The tree has grown to this many leaves.
    Grew(u64),
    /// Sign a checkpoint of the tree as it is now.
    Now(oneshot::Sender<Result<StoredCheckpoint, ProofError>>),
}

/// Signs checkpoints, one thread.
pub(super) struct Checkpointer {
    pub(super) store: Arc<dyn Store>,
    pub(super) signer: Arc<Signer>,
    pub(super) every_entries: u64,
    pub(super) every: Duration,
}

impl Checkpointer {
    pub(super) fn run(self, requests: std::sync::mpsc::Receiver<Request>) {
        let (Some(tree), Some(checkpoints)) = (self.store.tree(), self.store.checkpoints()) else {
            return;
        };
        let mut signed = checkpoints.sizes().last().copied().unwrap_or(0);
        let mut grown = tree.leaves();
        let mut last = Instant::now();
        loop {
            let wait = self.every.saturating_sub(last.elapsed());
            match requests.recv_timeout(wait) {
                Ok(Request::Grew(leaves)) => grown = grown.max(leaves),
                Ok(Request::Now(reply)) => {
                    let result = self.sign(tree.leaves());
                    if let Ok(checkpoint) = &result {
                        signed = checkpoint.size;
                        last = Instant::now();
                    }
                    let _ = reply.send(result);
                    continue;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            }
            let due =
                grown >= signed.saturating_add(self.every_entries) || last.elapsed() >= self.every;
            if grown > signed && due {
                match self.sign(grown) {
                    Ok(checkpoint) => signed = checkpoint.size,
                    Err(error) => tracing::error!(%error, "signing a checkpoint failed"),
                }
            }
            if due {
                last = Instant::now();
            }
        }
        // At shutdown, a checkpoint of everything the ledger wrote.
        if tree.leaves() > signed
            && let Err(error) = self.sign(tree.leaves())
        {
            tracing::error!(%error, "signing the checkpoint at shutdown failed");
        }
    }

    /// Signs and keeps the checkpoint of the first `size` leaves, or returns
    /// the latest when it is of that size already.
    fn sign(&self, size: u64) -> Result<StoredCheckpoint, ProofError> {
        let (Some(tree), Some(checkpoints)) = (self.store.tree(), self.store.checkpoints()) else {
            return Err(ProofError::Unavailable(
                "this store keeps no checkpoints".into(),
            ));
        };
        if let Some(latest) = checkpoints.latest()?
            && latest.size >= size
        {
            return Ok(latest);
        }
        if size == 0 {
            return Err(ProofError::NotFound(
                "the journal is empty: there is nothing to checkpoint yet".into(),
            ));
        }
        // The journal's chain hash at that size, which binds the tree to the
        // journal's bytes (a startup checks it in O(1)); and the access log's
        // durable head, so that records cut from its end are seen (its chain
        // alone would still hold).
        let head = self.store.read_entries(size, 1)?;
        let head = head.first().ok_or_else(|| {
            ProofError::Store(StoreError::Inconsistent(format!(
                "entry {size} is not in the journal"
            )))
        })?;
        let mut extensions = vec![journal_anchor(&head.hash)];
        extensions.extend(
            self.store
                .access_log()
                .and_then(|log| log.durable_head())
                .map(|(records, hash)| access_log_anchor(records, &hash)),
        );
        let checkpoint = Checkpoint {
            origin: self.signer.name().to_owned(),
            size,
            root: tree.root_at(size)?,
            extensions,
        };
        let note = checkpoint.sign(&self.signer);
        // The hashes it covers become durable before it is: a start trusts
        // the tree up to the latest checkpoint.
        tree.sync()?;
        checkpoints.append_checkpoint(size, &note)?;
        tracing::info!(tree_size = size, "checkpoint signed");
        let metrics = crate::metrics::metrics();
        metrics
            .checkpoint_size
            .set(i64::try_from(size).unwrap_or(i64::MAX));
        metrics
            .checkpoint_timestamp
            .set(chrono::Utc::now().timestamp());
        Ok(StoredCheckpoint {
            size,
            note,
            cosignatures: Vec::new(),
        })
    }
}

/// The extension line of a checkpoint that anchors the access log: its
/// number of records and the last one's hash.
pub fn access_log_anchor(records: u64, hash: &[u8; 32]) -> String {
    format!("{ACCESS_LOG_ANCHOR} {records} {}", hex::encode(hash))
}

/// The first word of the journal's anchor line.
pub const JOURNAL_ANCHOR: &str = "journal";

/// The extension line of a checkpoint that names the chain hash of the
/// journal's entry at the checkpoint's size.
pub fn journal_anchor(hash: &[u8; 32]) -> String {
    format!("{JOURNAL_ANCHOR} {}", hex::encode(hash))
}

/// The chain hash a checkpoint's extension lines name for its last entry.
pub fn parse_journal_anchor(extensions: &[String]) -> Option<[u8; 32]> {
    extensions.iter().find_map(|line| {
        let hash = line.strip_prefix(JOURNAL_ANCHOR)?.strip_prefix(' ')?;
        hex::decode(hash).ok()?.try_into().ok()
    })
}

/// The first word of the access log's anchor line.
pub const ACCESS_LOG_ANCHOR: &str = "access-log";

/// The access log's anchor in a checkpoint's extension lines, if any:
/// (records, hash of the last one).
pub fn parse_access_log_anchor(extensions: &[String]) -> Option<(u64, [u8; 32])> {
    extensions.iter().find_map(|line| {
        let mut words = line.split(' ');
        if words.next()? != ACCESS_LOG_ANCHOR {
            return None;
        }
        let records = words.next()?.parse().ok()?;
        let hash = hex::decode(words.next()?).ok()?.try_into().ok()?;
        words.next().is_none().then_some((records, hash))
    })
}

/// A kept checkpoint as served: its note with the cosignatures received for
/// it appended to its signature lines, and what it says.
#[derive(Clone, Debug)]
pub struct ServedCheckpoint {
    pub note: String,
    pub checkpoint: Checkpoint,
}

/// Serves a kept checkpoint: the cosignature lines join the note's own.
pub(super) fn served(stored: &StoredCheckpoint) -> Result<ServedCheckpoint, ProofError> {
    let corrupt = |why: String| {
        ProofError::Store(StoreError::Inconsistent(format!(
            "kept checkpoint of size {}: {why}",
            stored.size
        )))
    };
    let mut note = Note::parse(&stored.note).map_err(|e| corrupt(e.to_string()))?;
    for line in &stored.cosignatures {
        note.add_signature_line(line)
            .map_err(|e| corrupt(e.to_string()))?;
    }
    let checkpoint = Checkpoint::parse_body(&note.text).map_err(|e| corrupt(e.to_string()))?;
    Ok(ServedCheckpoint {
        note: note.to_text(),
        checkpoint,
    })
}
