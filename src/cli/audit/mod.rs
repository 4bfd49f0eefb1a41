//! The auditor's side of issue 11: checking the books without trusting the
//! server. An auditor keeps, in a folder of their own, the log's verifier
//! key (as the institution published it) and every checkpoint they saw;
//! `audit fetch` keeps a new checkpoint only when it is signed by that key
//! and extends the last one kept (one of the same size must be the same
//! text; it only adds signature lines to the note kept), `audit inclusion` proves one entry is in
//! the latest kept checkpoint, and `audit replay` downloads the journal and
//! recomputes the tree and the hash chain against every kept checkpoint.
//!
//! Modules: `log` (keys, checkpoints and consistency, shared with the
//! witness), `folder` (what the auditor keeps), `inclusion`, `replay`.
//!
//! Nothing here changes the books; a failure keeps nothing new and names
//! what failed.

pub(crate) mod folder;
mod inclusion;
pub(crate) mod log;
mod replay;

use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use self::folder::{AuditFolder, Kept};
use self::log::{Extension, Signed};
use super::output::{Report, fields};
use crate::checkpoint::Verifier;

/// The auditor's commands.
#[derive(Subcommand, Clone, Debug)]
pub enum AuditCommand {
    /// Get the latest checkpoint, verify its signature with the kept log
    /// key and its consistency with the last checkpoint kept, and keep it.
    ///
    /// The first time, give the log's verifier key as the institution
    /// published it (`--log-key DATA/log.pub`); it is kept in DIR.
    Fetch(FetchArgs),
    /// Prove that entry SEQ is in the latest kept checkpoint.
    Inclusion(InclusionArgs),
    /// Download the journal past what was verified, check sequence, hash
    /// chain and hashes, recompute the tree and check its root at every
    /// kept checkpoint, up to the latest.
    Replay(ReplayArgs),
}

/// Arguments of `audit fetch`.
#[derive(Args, Clone, Debug)]
pub struct FetchArgs {
    /// The auditor's folder (created 0700 when missing).
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The log's verifier key, or a file holding it (e.g. DATA/log.pub):
    /// needed the first time, refused later when it differs from the kept one.
    #[arg(long, value_name = "VKEY")]
    pub log_key: Option<String>,
    /// A witness's verifier key, or a file holding it: the checkpoint must
    /// carry a valid cosignature by it (repeat for several witnesses).
    #[arg(long, value_name = "VKEY")]
    pub witness: Vec<String>,
    /// Ask the server to issue a checkpoint of the journal as it is now
    /// (CreateCheckpoint) instead of taking its latest.
    #[arg(long)]
    pub create: bool,
}

/// Arguments of `audit inclusion`.
#[derive(Args, Clone, Debug)]
pub struct InclusionArgs {
    /// Sequence number of the entry.
    #[arg(value_name = "SEQ", value_parser = clap::value_parser!(u64).range(1..))]
    pub sequence: u64,
    /// The auditor's folder.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

/// Arguments of `audit replay`.
#[derive(Args, Clone, Debug)]
pub struct ReplayArgs {
    /// The auditor's folder.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Download again from this entry (1: the whole journal) and compare
    /// each entry already verified with the leaf kept for it
    /// [default: the first entry not yet verified].
    #[arg(long, value_name = "SEQ", value_parser = clap::value_parser!(u64).range(1..))]
    pub from: Option<u64>,
}

/// Runs an audit command.
pub async fn run(server: &str, command: AuditCommand) -> anyhow::Result<Report> {
    match command {
        AuditCommand::Fetch(args) => fetch(server, args).await,
        AuditCommand::Inclusion(args) => inclusion::run(server, args).await,
        AuditCommand::Replay(args) => replay::run(server, args).await,
    }
}

/// The log key to use: the kept one, checked against `--log-key` when both
/// are there; `--log-key` alone the first time. Also says whether it is new.
fn log_key(folder: &AuditFolder, given: Option<&str>) -> anyhow::Result<(Verifier, bool)> {
    let given = given
        .map(|given| log::read_verifier(given, "--log-key"))
        .transpose()?;
    match (folder.key()?, given) {
        (Some(kept), Some(given)) if kept != given => bail!(
            "--log-key {} ({}) is not the log key kept in {} ({} {}): refusing to change the key \
             an audit folder trusts (use another folder for another log)",
            given.name(),
            hex::encode(given.key_hash()),
            folder.path().display(),
            kept.name(),
            hex::encode(kept.key_hash())
        ),
        (Some(kept), _) => Ok((kept, false)),
        (None, Some(given)) => Ok((given, true)),
        (None, None) => bail!(
            "{} keeps no log key yet: the first fetch needs --log-key VKEY \
             (the verifier key the institution published, e.g. DATA/log.pub)",
            folder.path().display()
        ),
    }
}

/// `audit fetch`.
async fn fetch(server: &str, args: FetchArgs) -> anyhow::Result<Report> {
    let folder = AuditFolder::open(&args.dir)?;
    let (key, new_key) = log_key(&folder, args.log_key.as_deref())?;
    let witnesses = args
        .witness
        .iter()
        .map(|given| log::read_verifier(given, "--witness"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let kept = folder.latest(&key)?;
    let mut client = log::proofs(server).await?;
    let fetched = log::fetch_latest(&mut client, &key, args.create).await?;
    let extension = log::check_extends(
        &mut client,
        kept.as_ref().map(|kept| &kept.checkpoint),
        "the kept checkpoint",
        &fetched.checkpoint,
    )
    .await?;
    let cosigned = check_witnesses(&fetched, &witnesses)?;
    if new_key {
        folder.keep_key(&key)?;
    }
    let kept = folder.keep_checkpoint(&key, &fetched)?;
    Ok(fetch_report(&key, &fetched, &extension, &cosigned, &kept))
}

/// Each witness's cosignature time; an error naming the first witness
/// whose valid cosignature is missing.
fn check_witnesses(signed: &Signed, witnesses: &[Verifier]) -> anyhow::Result<Vec<(String, u64)>> {
    let size = signed.checkpoint.size;
    witnesses
        .iter()
        .map(|witness| {
            let name = witness.name().to_owned();
            let hash = hex::encode(witness.key_hash());
            match signed.note.verify(witness) {
                Ok(Some(verified)) => Ok((name, verified.timestamp.unwrap_or(0))),
                Ok(None) => Err(anyhow!(
                    "missing witness cosignature: the checkpoint of size {size} carries no \
                     cosignature by the witness {name} ({hash})"
                )),
                Err(error) => Err(anyhow!(
                    "witness cosignature: the cosignature by {name} ({hash}) on the checkpoint \
                     of size {size} does not verify: {error}"
                )),
            }
        })
        .collect()
}

fn fetch_report(
    key: &Verifier,
    fetched: &Signed,
    extension: &Extension,
    cosigned: &[(String, u64)],
    kept: &Kept,
) -> Report {
    let file = &kept.path;
    let checkpoint = &fetched.checkpoint;
    let signature = format!(
        "verified with the log key {} ({})",
        key.name(),
        hex::encode(key.key_hash())
    );
    let witnesses: Vec<String> = cosigned
        .iter()
        .map(|(name, at)| format!("{name} cosigned at {}", time_text(*at)))
        .collect();
    let mut rows = vec![
        ("origin", checkpoint.origin.clone()),
        ("tree size", checkpoint.size.to_string()),
        ("root hash", log::root_text(&checkpoint.root)),
        ("signature", signature),
        ("consistency", extension.text()),
    ];
    if !witnesses.is_empty() {
        rows.push(("witnesses", witnesses.join("; ")));
    }
    rows.push(("kept", file.display().to_string()));
    if let Some(before) = kept.before {
        let mut lines = format!(
            "the note kept before stays ({before} signature {}), {} new added",
            if before == 1 { "line" } else { "lines" },
            kept.added
        );
        if kept.not_kept > 0 {
            lines.push_str(&format!(
                ", {} left out (a note holds at most {})",
                kept.not_kept,
                crate::checkpoint::note::SIGNATURES_MAX
            ));
        }
        rows.push(("signature lines", lines));
    }
    let text = fields(&rows);
    let (from, proof_hashes) = match extension {
        Extension::Grows { from, proof_hashes } => (Some(*from), Some(*proof_hashes)),
        _ => (None, None),
    };
    let json = json!({
        "origin": checkpoint.origin,
        "tree_size": checkpoint.size,
        "root_hash": log::root_text(&checkpoint.root),
        "signature": { "verified": true, "key": key.to_text() },
        "consistency": {
            "kind": match extension {
                Extension::First => "first",
                Extension::Same => "same",
                Extension::Grows { .. } => "verified",
                Extension::FromEmpty => "from_empty",
            },
            "from_size": from,
            "proof_hashes": proof_hashes,
        },
        "witnesses": cosigned.iter().map(|(name, at)| json!({
            "name": name, "timestamp": at,
        })).collect::<Vec<Value>>(),
        "kept": file.display().to_string(),
        "kept_before": kept.before.is_some(),
        "signature_lines_added": kept.added,
        "signature_lines_left_out": kept.not_kept,
    });
    Report { text, json }
}

/// Seconds since the Unix epoch as RFC 3339, UTC.
pub(crate) fn time_text(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|seconds| chrono::DateTime::<chrono::Utc>::from_timestamp(seconds, 0))
        .map_or_else(
            || seconds.to_string(),
            |at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
}

/// The latest kept checkpoint of an existing folder, opened with its key.
fn latest_kept(folder: &AuditFolder, log: &Verifier) -> anyhow::Result<Signed> {
    folder.latest(log)?.with_context(|| {
        format!(
            "{} keeps no checkpoint: run `audit fetch --dir {}` first",
            folder.path().display(),
            folder.path().display()
        )
    })
}
