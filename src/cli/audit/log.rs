//! What the auditor and the witness both do with the log: read a verifier
//! key given as text or as a file, fetch a checkpoint and open it with the
//! log's key, and check that a new checkpoint extends one kept earlier
//! (the same tree, or a consistency proof between the two).
//!
//! Nothing the server says is trusted here until it is checked: a
//! checkpoint counts only once its note verifies with the key the caller
//! holds, and a proof only once it leads to both signed roots.

use std::path::Path;

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::checkpoint::{Checkpoint, Hash, Note, Verifier};
use crate::cli::connect::{self, Conn, read_error};
use crate::domain::merkle;
use crate::pb;
use crate::pb::proof_service_client::ProofServiceClient;

/// What the server showed contradicts the log's key or what was kept: a
/// checkpoint whose signature fails, a split view, a smaller tree. (Other
/// failures, such as a server out of reach, are plain errors.)
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Contradiction(pub String);

fn contradiction(message: String) -> anyhow::Error {
    anyhow::Error::new(Contradiction(message))
}

/// A client of the proof service.
pub async fn proofs(server: &str) -> anyhow::Result<ProofServiceClient<Conn>> {
    Ok(ProofServiceClient::new(connect::channel(server).await?))
}

/// A verifier key given on the command line: the path of a file holding it
/// (e.g. `DATA/log.pub`), else the key text itself. `what` names the option.
pub fn read_verifier(given: &str, what: &str) -> anyhow::Result<Verifier> {
    let path = Path::new(given);
    let (text, source) = if path.is_file() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{what}: reading {}", path.display()))?;
        (text, format!("the file {}", path.display()))
    } else {
        (given.to_owned(), "the text given".to_owned())
    };
    Verifier::parse(text.trim()).map_err(|error| {
        anyhow!("{what}: {source} is not a verifier key (name+hash+base64 key): {error}")
    })
}

/// A root hash as the notes write it (base64).
pub fn root_text(root: &Hash) -> String {
    BASE64.encode(root)
}

/// A checkpoint in a line: "size N (root R)".
pub fn describe(checkpoint: &Checkpoint) -> String {
    format!(
        "size {} (root {})",
        checkpoint.size,
        root_text(&checkpoint.root)
    )
}

/// A signed checkpoint, opened with the log's key.
#[derive(Clone, Debug)]
pub struct Signed {
    /// What the note says.
    pub checkpoint: Checkpoint,
    /// The note, with every signature line it came with.
    pub note: Note,
}

/// Opens `note` with the log's key `log`: its signature must verify and its
/// origin be the key's name. `whose` says where the note came from, for
/// the error.
pub fn open(note: &str, log: &Verifier, whose: &str) -> anyhow::Result<Signed> {
    let (checkpoint, note) = Checkpoint::open(note, log).map_err(|error| {
        contradiction(format!(
            "signature: {whose} does not verify with the log key {} ({}): {error}",
            log.name(),
            hex::encode(log.key_hash())
        ))
    })?;
    Ok(Signed { checkpoint, note })
}

/// The server's latest checkpoint (or, with `create`, one it issues now),
/// opened with `log`. The reply's plain fields must say what the signed note
/// says.
pub async fn fetch_latest(
    client: &mut ProofServiceClient<Conn>,
    log: &Verifier,
    create: bool,
) -> anyhow::Result<Signed> {
    let reply = if create {
        client
            .create_checkpoint(pb::CreateCheckpointRequest {})
            .await
            .map(|reply| reply.into_inner().checkpoint)
    } else {
        client
            .get_checkpoint(pb::GetCheckpointRequest { tree_size: 0 })
            .await
            .map(|reply| reply.into_inner().checkpoint)
    };
    let checkpoint = match reply {
        Ok(Some(checkpoint)) => checkpoint,
        Ok(None) => bail!("the server answered without a checkpoint"),
        Err(status) if status.code() == tonic::Code::NotFound && !create => {
            bail!(
                "the server has issued no checkpoint yet ({}); `audit fetch --create` asks it for one",
                status.message()
            )
        }
        Err(status) => return Err(read_error(status).context("getting the latest checkpoint")),
    };
    let signed = open(&checkpoint.note, log, "the server's latest checkpoint")?;
    let said = &signed.checkpoint;
    if checkpoint.tree_size != said.size || checkpoint.root_hash.as_slice() != said.root {
        bail!(
            "the server's reply says tree size {} and root {} but its signed note says {}",
            checkpoint.tree_size,
            BASE64.encode(&checkpoint.root_hash),
            describe(said)
        );
    }
    Ok(signed)
}

/// How a new checkpoint extends the one kept before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Extension {
    /// Nothing was kept before.
    First,
    /// The same checkpoint as the kept one (the same text, signature
    /// lines aside).
    Same,
    /// The kept checkpoint of size `from` is a prefix: a consistency proof
    /// of `proof_hashes` hashes verified.
    Grows { from: u64, proof_hashes: usize },
    /// The kept checkpoint is of the empty tree, which every tree extends.
    FromEmpty,
}

impl Extension {
    /// What was verified, in words.
    pub fn text(&self) -> String {
        match self {
            Extension::First => "none: nothing was kept before this one".to_owned(),
            Extension::Same => "the same tree as the kept checkpoint".to_owned(),
            Extension::Grows { from, proof_hashes } => format!(
                "verified: extends the kept checkpoint of size {from} \
                 (consistency proof of {proof_hashes} {})",
                if *proof_hashes == 1 { "hash" } else { "hashes" }
            ),
            Extension::FromEmpty => "the kept checkpoint is the empty tree".to_owned(),
        }
    }
}

/// Checks that `new` extends `kept` (when there is one): the same text at
/// the same size, a verified consistency proof to a larger size. A smaller
/// tree or a proof that fails is an error saying so (a split view).
/// `kept_label` names the kept checkpoint in messages ("the kept
/// checkpoint").
pub async fn check_extends(
    client: &mut ProofServiceClient<Conn>,
    kept: Option<&Checkpoint>,
    kept_label: &str,
    new: &Checkpoint,
) -> anyhow::Result<Extension> {
    let Some(kept) = kept else {
        return Ok(Extension::First);
    };
    let split = |why: &str| {
        contradiction(format!(
            "split view: the checkpoint of {} is not consistent with {kept_label} of {}: {why}",
            describe(new),
            describe(kept)
        ))
    };
    if new.size < kept.size {
        return Err(contradiction(format!(
            "the server shows a smaller tree than it showed before: the checkpoint of {} \
             is smaller than {kept_label} of {}, and a log never shrinks",
            describe(new),
            describe(kept)
        )));
    }
    if new.size == kept.size {
        if new.root != kept.root {
            return Err(split("same size, different root"));
        }
        return same_text(kept, kept_label, new).map(|()| Extension::Same);
    }
    if kept.size == 0 {
        return if kept.root == merkle::empty_root() {
            Ok(Extension::FromEmpty)
        } else {
            Err(split("the empty tree has another root"))
        };
    }
    let request = pb::GetConsistencyProofRequest {
        first_size: kept.size,
        second_size: new.size,
    };
    let reply = client
        .get_consistency_proof(request)
        .await
        .map_err(|status| {
            read_error(status).context(format!(
                "getting the consistency proof from size {} to {}",
                kept.size, new.size
            ))
        })?
        .into_inner();
    let proof = hashes(&reply.hashes, "consistency proof")?;
    if merkle::verify_consistency(kept.size, new.size, &kept.root, &new.root, &proof) {
        Ok(Extension::Grows {
            from: kept.size,
            proof_hashes: proof.len(),
        })
    } else {
        Err(split(&format!(
            "the server's consistency proof from size {} to {} does not verify",
            kept.size, new.size
        )))
    }
}

/// Two checkpoints of one size must be one text: the log's key signs a
/// size once, so a second text (the same root with another extension line,
/// such as an access-log anchor signed again after the access log was cut)
/// contradicts the first, just as a second root would.
pub fn same_text(kept: &Checkpoint, kept_label: &str, new: &Checkpoint) -> anyhow::Result<()> {
    if new.body() == kept.body() {
        return Ok(());
    }
    Err(contradiction(format!(
        "split view: two checkpoints of size {} signed by the log key with different texts: \
         {kept_label} says {} where the server's says {}",
        new.size,
        lines_text(&kept.body()),
        lines_text(&new.body())
    )))
}

/// A note text on one line: its lines quoted, separated by " / ".
fn lines_text(text: &str) -> String {
    text.lines()
        .map(|line| format!("{line:?}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

/// A proof's hashes, each 32 bytes.
pub fn hashes(hashes: &[Vec<u8>], what: &str) -> anyhow::Result<Vec<Hash>> {
    hashes
        .iter()
        .enumerate()
        .map(|(index, hash)| {
            Hash::try_from(hash.as_slice()).map_err(|_| {
                anyhow!(
                    "the server's {what} has a hash of {} bytes (number {}), not 32",
                    hash.len(),
                    index + 1
                )
            })
        })
        .collect()
}
