//! `audit inclusion SEQ`: proves that entry SEQ is in the latest kept
//! checkpoint. The leaf hash is computed here from the entry's canonical
//! bytes, and what is printed about the entry is decoded from those same
//! bytes, so nothing shown rests on the server's word.

use anyhow::{Context, anyhow, bail};
use serde_json::json;

use super::folder::AuditFolder;
use super::log;
use super::{InclusionArgs, latest_kept};
use crate::cli::connect::{audit, read_error};
use crate::cli::output::{Report, fields};
use crate::domain::entry::EntryBody;
use crate::domain::merkle;
use crate::pb;

/// `audit inclusion`.
pub async fn run(server: &str, args: InclusionArgs) -> anyhow::Result<Report> {
    let sequence = args.sequence;
    let folder = AuditFolder::existing(&args.dir)?;
    let key = folder.required_key()?;
    let kept = latest_kept(&folder, &key)?.checkpoint;
    if sequence > kept.size {
        bail!(
            "entry {sequence} is after the latest kept checkpoint (size {}): \
             run `audit fetch` for a later one",
            kept.size
        );
    }
    let entry = read_entry(server, sequence).await?;
    let leaf = merkle::leaf_hash(&entry.canonical);
    let body = EntryBody::from_canonical_bytes(&entry.canonical).map_err(|error| {
        anyhow!("entry {sequence}: its canonical bytes do not decode as an entry: {error}")
    })?;
    check_fields(sequence, &entry, &body)?;
    let request = pb::GetInclusionProofRequest {
        sequence,
        tree_size: kept.size,
    };
    let proof = log::proofs(server)
        .await?
        .get_inclusion_proof(request)
        .await
        .map_err(read_error)
        .with_context(|| {
            format!(
                "getting the inclusion proof of entry {sequence} in size {}",
                kept.size
            )
        })?
        .into_inner();
    if proof.sequence != sequence || proof.tree_size != kept.size {
        bail!(
            "the server sent the inclusion proof of entry {} in size {}, not of entry {sequence} in size {}",
            proof.sequence,
            proof.tree_size,
            kept.size
        );
    }
    let hashes = log::hashes(&proof.hashes, "inclusion proof")?;
    if !merkle::verify_inclusion(sequence - 1, kept.size, &leaf, &hashes, &kept.root) {
        bail!(
            "entry {sequence} is not proven in the checkpoint of {}: the inclusion proof \
             ({} hashes) from the leaf of its canonical bytes ({}) does not lead to that root",
            log::describe(&kept),
            hashes.len(),
            hex::encode(leaf)
        );
    }
    let description = crate::api::convert::describe(&body, body.currency);
    let date = body.effective_date.to_string();
    let command = body.command.name().to_owned();
    let verdict = format!("entry {sequence} is in checkpoint of size {}", kept.size);
    let text = fields(&[
        ("sequence", sequence.to_string()),
        ("date", date.clone()),
        ("command", command.clone()),
        ("description", description.clone()),
        ("leaf hash", hex::encode(leaf)),
        ("root hash", log::root_text(&kept.root)),
        ("proof", format!("{} hashes, verified", hashes.len())),
    ]) + &verdict
        + "\n";
    let json = json!({
        "sequence": sequence,
        "effective_date": date,
        "command": command,
        "description": description,
        "leaf_hash": hex::encode(leaf),
        "tree_size": kept.size,
        "root_hash": log::root_text(&kept.root),
        "proof_hashes": hashes.len(),
        "included": true,
    });
    Ok(Report { text, json })
}

/// Entry `sequence`, read from the journal.
async fn read_entry(server: &str, sequence: u64) -> anyhow::Result<pb::JournalEntry> {
    let request = pb::ListJournalEntriesRequest {
        from_sequence: sequence,
        page_size: 1,
    };
    let page = audit(server)
        .await?
        .list_journal_entries(request)
        .await
        .map_err(read_error)
        .with_context(|| format!("reading entry {sequence}"))?
        .into_inner();
    match page.entries.into_iter().next() {
        Some(entry) if entry.sequence == sequence => Ok(entry),
        Some(entry) => bail!(
            "asked for entry {sequence}, the server sent entry {}",
            entry.sequence
        ),
        None => bail!("the server has no entry {sequence}"),
    }
}

/// The server's plain fields must say what the canonical bytes say.
fn check_fields(sequence: u64, entry: &pb::JournalEntry, body: &EntryBody) -> anyhow::Result<()> {
    let date = body.effective_date.to_string();
    let command = body.command.name();
    if body.sequence != sequence || entry.effective_date != date || entry.command != command {
        bail!(
            "entry {sequence}: the server's fields (sequence {}, date {}, command {}) differ \
             from its canonical bytes (sequence {}, date {date}, command {command})",
            entry.sequence,
            entry.effective_date,
            entry.command,
            body.sequence
        );
    }
    Ok(())
}
