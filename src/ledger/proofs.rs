//! What the ledger answers about its Merkle tree: checkpoints, inclusion and
//! consistency proofs, the log's verifier key, and witnesses' cosignatures.
//! Each proof reads O(log n) hashes from the store's tree file.

use crate::checkpoint::{KeyKind, Note, Verifier};
use crate::domain::entry::Hash;
use crate::domain::merkle;

use super::Ledger;
use super::checkpoints::{self, ProofError, Request, ServedCheckpoint};

/// An inclusion proof, with the tree size it is against.
#[derive(Clone, Debug)]
pub struct InclusionProof {
    pub sequence: u64,
    pub tree_size: u64,
    pub leaf: Hash,
    pub hashes: Vec<Hash>,
}

impl Ledger {
    fn tree(&self) -> Result<&crate::store::tree_file::TreeFile, ProofError> {
        self.store
            .tree()
            .ok_or_else(|| ProofError::Unavailable("this store keeps no Merkle tree".into()))
    }

    fn checkpoint_log(&self) -> Result<&crate::store::checkpoint_log::CheckpointLog, ProofError> {
        self.store
            .checkpoints()
            .ok_or_else(|| ProofError::Unavailable("this store keeps no checkpoints".into()))
    }

    /// The log's verifier key, when the ledger signs checkpoints or serves
    /// a copy that holds the key.
    pub fn log_verifier(&self) -> Option<Verifier> {
        self.config.log_checkpoints.verifier()
    }

    /// The checkpoint of tree size `size` (0: the latest), with the
    /// cosignatures received for it.
    pub fn checkpoint(&self, size: u64) -> Result<ServedCheckpoint, ProofError> {
        let log = self.checkpoint_log()?;
        let stored = if size == 0 {
            log.latest()?.ok_or_else(|| {
                ProofError::NotFound(
                    "no checkpoint has been issued yet (CreateCheckpoint issues one)".into(),
                )
            })?
        } else {
            log.at(size)?.ok_or_else(|| {
                ProofError::NotFound(format!(
                    "tree_size: no checkpoint of tree size {size} was issued (the latest is of size {})",
                    log.sizes().last().copied().unwrap_or(0)
                ))
            })?
        };
        checkpoints::served(&stored)
    }

    /// Signs a checkpoint of every entry in the tree now (or returns the
    /// latest, when the tree has not grown since).
    pub async fn create_checkpoint(&self) -> Result<ServedCheckpoint, ProofError> {
        if self.config.read_only {
            return Err(ProofError::Unavailable(
                "this server serves a read-only copy of the books (serve --read-only): it signs \
                 no checkpoints; ask for an existing one"
                    .into(),
            ));
        }
        let sender = self
            .checkpointer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
            .ok_or_else(|| {
                ProofError::Unavailable(
                    "this ledger signs no checkpoints (it has no log key, or is stopping)".into(),
                )
            })?;
        // The tree holds every entry acknowledged before this call.
        self.tree_caught_up().await?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        sender
            .send(Request::Now(reply))
            .map_err(|_| ProofError::Unavailable("the checkpointer has stopped".into()))?;
        let stored = answer
            .await
            .map_err(|_| ProofError::Unavailable("the checkpointer has stopped".into()))??;
        checkpoints::served(&stored)
    }

    /// Waits until the tree holds every entry acknowledged so far.
    async fn tree_caught_up(&self) -> Result<(), ProofError> {
        match self.published().await {
            true => Ok(()),
            false => Err(ProofError::Unavailable(
                "the server stopped after an internal fault before its Merkle tree held every \
                 acknowledged entry; retry after a restart"
                    .into(),
            )),
        }
    }

    /// The inclusion proof of entry `sequence` in the tree of `tree_size`
    /// entries (0: the latest checkpoint's size), once the tree holds every
    /// entry acknowledged before the call.
    pub async fn inclusion_proof(
        &self,
        sequence: u64,
        tree_size: u64,
    ) -> Result<InclusionProof, ProofError> {
        self.tree_caught_up().await?;
        let tree = self.tree()?;
        let tree_size = match tree_size {
            0 => self.checkpoint(0)?.checkpoint.size,
            size => size,
        };
        if sequence == 0 || sequence > tree_size {
            return Err(ProofError::OutOfRange(format!(
                "sequence: entry {sequence} is not in a tree of {tree_size} entries (1..={tree_size})"
            )));
        }
        if tree_size > tree.leaves() {
            return Err(ProofError::OutOfRange(format!(
                "tree_size: {tree_size} is past the tree's {} entries",
                tree.leaves()
            )));
        }
        let hashes = merkle::inclusion_proof(tree, sequence - 1, tree_size)?;
        let leaf = merkle::Subtrees::subtree(tree, 0, sequence - 1)?;
        Ok(InclusionProof {
            sequence,
            tree_size,
            leaf,
            hashes,
        })
    }

    /// The consistency proof between the trees of `first` and `second`
    /// entries, once the tree holds every entry acknowledged before the
    /// call.
    pub async fn consistency_proof(
        &self,
        first: u64,
        second: u64,
    ) -> Result<Vec<Hash>, ProofError> {
        self.tree_caught_up().await?;
        let tree = self.tree()?;
        if first == 0 || first > second {
            return Err(ProofError::OutOfRange(format!(
                "first_size: {first} must be at least 1 and at most second_size ({second})"
            )));
        }
        if second > tree.leaves() {
            return Err(ProofError::OutOfRange(format!(
                "second_size: {second} is past the tree's {} entries",
                tree.leaves()
            )));
        }
        Ok(merkle::consistency_proof(tree, first, second)?)
    }

    /// Keeps a witness's cosignature of a checkpoint this server issued:
    /// `note` is that checkpoint's note with the witness's line among its
    /// signatures, checked with `witness`. A witness has one line per
    /// checkpoint: a newer one replaces its older one.
    pub fn add_cosignature(
        &self,
        note: &str,
        witness: &Verifier,
    ) -> Result<ServedCheckpoint, ProofError> {
        if self.config.read_only {
            return Err(ProofError::Unavailable(
                "this server serves a read-only copy of the books (serve --read-only): it keeps \
                 no cosignature; send it to the server of record"
                    .into(),
            ));
        }
        if witness.kind() != KeyKind::Cosignature {
            return Err(ProofError::Invalid(
                "witness_key: not a cosignature/v1 key (its type byte must be 0x04)".into(),
            ));
        }
        // A line by a key named like the log (its key hash is only 32 bits)
        // would be taken for the log's own and fail every auditor's check.
        if let Some(log) = self.log_verifier()
            && witness.name() == log.name()
        {
            return Err(ProofError::Invalid(format!(
                "witness_key: a witness may not be named {:?}, the log's own name",
                log.name()
            )));
        }
        let parsed = Note::parse(note).map_err(|e| ProofError::Invalid(format!("note: {e}")))?;
        let body = crate::checkpoint::Checkpoint::parse_body(&parsed.text)
            .map_err(|e| ProofError::Invalid(format!("note: {e}")))?;
        let log = self.checkpoint_log()?;
        let issued = log.at(body.size)?.ok_or_else(|| {
            ProofError::Invalid(format!(
                "note: this server issued no checkpoint of tree size {}",
                body.size
            ))
        })?;
        let issued_text = Note::parse(&issued.note)
            .map_err(|e| ProofError::Invalid(format!("kept checkpoint: {e}")))?
            .text;
        if issued_text != parsed.text {
            return Err(ProofError::Invalid(format!(
                "note: not the checkpoint of tree size {} this server issued (its text differs)",
                body.size
            )));
        }
        match parsed.verify(witness) {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(ProofError::Invalid(format!(
                    "note: no cosignature by the witness key {}",
                    witness.name()
                )));
            }
            Err(e) => return Err(ProofError::Invalid(format!("note: {e}"))),
        }
        let identity = format!("{}+{}", witness.name(), hex::encode(witness.key_hash()));
        for line in parsed.signature_lines_by(witness).into_iter().take(1) {
            if !log.add_cosignature(body.size, &identity, &line)? {
                return Err(ProofError::Invalid(format!(
                    "note: the checkpoint of tree size {} has the most cosignatures kept",
                    body.size
                )));
            }
        }
        self.checkpoint(body.size)
    }
}
