//! `mfi-ledger witness`: a witness cosigns the log's checkpoints, and only
//! those that extend the last one it cosigned, so that a log showing two
//! histories cannot get both cosigned by the same witness. Each round: get
//! the latest checkpoint, open it with the log's key, check it extends the
//! checkpoint kept in the state folder (the same tree, or a verified
//! consistency proof), cosign it (C2SP `cosignature/v1`, timestamped now),
//! keep it, and send the cosignature to the server (AddCosignature). When
//! the latest checkpoint is the one cosigned last (the same text) and the
//! server's note carries a valid line by the witness's key, the round does
//! nothing ("checkpoint N already cosigned"): a fresh line per round would
//! fill the server's bounded list of lines on an idle log. When the
//! server's note lacks it, the line kept is sent again.
//!
//! The state folder holds `checkpoint.note`, the last checkpoint cosigned
//! (with the witness's line). The witness's key is created on first use
//! (`keys::load_or_create`: 0600, its verifier key in `<file>.pub`). A
//! checkpoint that does not extend the kept one is refused, is not
//! cosigned, and ends the witness with a non-zero exit.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use serde_json::json;

use super::audit::folder::replace;
use super::audit::log::{self, Contradiction, Extension, Signed};
use super::connect::{Conn, read_error};
use super::output::{Report, fields};
use crate::checkpoint::{KeyKind, Signer, Verifier, keys};
use crate::pb;
use crate::pb::proof_service_client::ProofServiceClient;

/// The last cosigned checkpoint, in the state folder.
const STATE_FILE: &str = "checkpoint.note";
/// Prefix of the default witness name (then the host name).
const DEFAULT_NAME_PREFIX: &str = "witness/";

/// Arguments of `witness`.
#[derive(Args, Clone, Debug)]
pub struct WitnessArgs {
    /// The witness's private key file (created when missing, 0600, with
    /// its verifier key in FILE.pub).
    #[arg(long, value_name = "FILE")]
    pub witness_key: PathBuf,
    /// The folder where the witness keeps the last checkpoint it cosigned.
    #[arg(long, value_name = "DIR")]
    pub state: PathBuf,
    /// The log's verifier key, or a file holding it (e.g. DATA/log.pub).
    #[arg(long, value_name = "VKEY")]
    pub log_key: String,
    /// The witness's name, for a new key [default: witness/<host name>].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Do one round and exit.
    #[arg(long, conflicts_with = "interval")]
    pub once: bool,
    /// Seconds between rounds.
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub interval: u64,
}

/// Runs the witness: one round with `--once`, else a round every
/// `--interval` seconds, printing each, until a refusal (an error) or a
/// signal. A failure to reach the server is printed and retried.
pub async fn run(server: &str, json: bool, args: WitnessArgs) -> anyhow::Result<Report> {
    let log_key = log::read_verifier(&args.log_key, "--log-key")?;
    let signer = witness_key(&args.witness_key, args.name.as_deref())?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.state)
        .with_context(|| format!("creating the witness state {}", args.state.display()))?;
    let witness = Witness {
        server,
        log_key,
        signer,
        state: args.state.join(STATE_FILE),
    };
    if args.once {
        return witness.round().await;
    }
    loop {
        match witness.round().await {
            Ok(report) => report.print(json)?,
            Err(error) if is_refusal(&error) => return Err(error),
            Err(error) => eprintln!(
                "witness round failed (retrying): {}",
                crate::cli::describe(&error)
            ),
        }
        tokio::time::sleep(Duration::from_secs(args.interval)).await;
    }
}

/// A refusal to cosign ends the witness; anything else is retried.
fn is_refusal(error: &anyhow::Error) -> bool {
    error.downcast_ref::<Contradiction>().is_some()
}

/// A contradiction becomes a refusal to cosign, saying so.
fn refusal(error: anyhow::Error) -> anyhow::Error {
    if is_refusal(&error) {
        error.context("refusing to cosign")
    } else {
        error
    }
}

/// The witness's key: loaded, or created with `name` (or the default name).
fn witness_key(path: &Path, name: Option<&str>) -> anyhow::Result<Signer> {
    let signer = match name {
        Some(name) => keys::load_or_create(path, name, KeyKind::Cosignature)?,
        None if path.exists() => keys::load(path)?,
        None => keys::load_or_create(path, &default_name(), KeyKind::Cosignature)?,
    };
    if signer.kind() != KeyKind::Cosignature {
        bail!(
            "the key {} is a {:?} key, not a witness's cosignature key",
            path.display(),
            signer.kind()
        );
    }
    Ok(signer)
}

/// `witness/<host name>`, or `witness/local` when the host has no usable name.
fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host = host.trim();
    let name = format!("{DEFAULT_NAME_PREFIX}{host}");
    if host.is_empty() || !crate::checkpoint::note::is_valid_name(&name) {
        format!("{DEFAULT_NAME_PREFIX}local")
    } else {
        name
    }
}

struct Witness<'a> {
    server: &'a str,
    log_key: Verifier,
    signer: Signer,
    /// The file of the last cosigned checkpoint.
    state: PathBuf,
}

impl Witness<'_> {
    /// One round: fetch, check, cosign, keep, send (or nothing, when the
    /// server already has this witness's line on the checkpoint).
    async fn round(&self) -> anyhow::Result<Report> {
        let last = self.last()?;
        let mut client = log::proofs(self.server).await?;
        let mut fetched = log::fetch_latest(&mut client, &self.log_key, false)
            .await
            .map_err(refusal)?;
        let extension = log::check_extends(
            &mut client,
            last.as_ref().map(|last| &last.checkpoint),
            "the checkpoint this witness cosigned last",
            &fetched.checkpoint,
        )
        .await
        .map_err(refusal)?;
        let verifier = self.signer.verifier();
        // The checkpoint cosigned last, again (check_extends refuses another
        // text of its size): the server keeps a bounded number of lines per
        // checkpoint, so a witness adds none while the log stands still.
        let again = last.filter(|last| last.note.text == fetched.note.text);
        if let Some(last) = &again {
            if matches!(fetched.note.verify(&verifier), Ok(Some(_))) {
                return Ok(self.already_cosigned(&fetched, &extension));
            }
            // The server's copy lacks this witness's line: the one kept.
            if let Ok(Some(kept)) = last.note.verify(&verifier) {
                let timestamp = kept.timestamp.unwrap_or(0);
                let signatures = send(&mut client, last, &verifier).await?;
                return Ok(self.report(&fetched, &extension, timestamp, signatures));
            }
        }
        let timestamp = chrono::Utc::now().timestamp().max(0) as u64;
        let line = self.signer.cosignature_line(&fetched.note.text, timestamp);
        fetched
            .note
            .signatures
            .retain(|line| line.name != verifier.name() || line.key_hash != verifier.key_hash());
        fetched
            .note
            .add_signature_line(&line)
            .map_err(|error| anyhow!("adding the cosignature line: {error}"))?;
        replace(&self.state, fetched.note.to_text().as_bytes())?;
        let signatures = send(&mut client, &fetched, &verifier).await?;
        Ok(self.report(&fetched, &extension, timestamp, signatures))
    }

    /// The last checkpoint cosigned, opened with the log key.
    fn last(&self) -> anyhow::Result<Option<Signed>> {
        match std::fs::read_to_string(&self.state) {
            Ok(text) => {
                let whose = format!("the witness's kept checkpoint {}", self.state.display());
                log::open(&text, &self.log_key, &whose).map(Some)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.state.display())),
        }
    }

    /// The round that found the checkpoint cosigned last, with this
    /// witness's line on the server: nothing to do.
    fn already_cosigned(&self, signed: &Signed, extension: &Extension) -> Report {
        let checkpoint = &signed.checkpoint;
        let text = fields(&[
            ("origin", checkpoint.origin.clone()),
            ("tree size", checkpoint.size.to_string()),
            ("root hash", log::root_text(&checkpoint.root)),
            ("consistency", extension.text()),
            ("witness", self.signer.name().to_owned()),
        ]) + &format!(
            "checkpoint {} already cosigned: the server's note carries this witness's line\n",
            checkpoint.size
        );
        let json = json!({
            "origin": checkpoint.origin,
            "tree_size": checkpoint.size,
            "root_hash": log::root_text(&checkpoint.root),
            "consistency": extension.text(),
            "witness": self.signer.name(),
            "witness_key": self.signer.verifier().to_text(),
            "already_cosigned": true,
        });
        Report { text, json }
    }

    fn report(
        &self,
        signed: &Signed,
        extension: &Extension,
        timestamp: u64,
        signatures: usize,
    ) -> Report {
        let checkpoint = &signed.checkpoint;
        let witness = format!(
            "{} ({})",
            self.signer.name(),
            hex::encode(self.signer.key_hash())
        );
        let text = fields(&[
            ("origin", checkpoint.origin.clone()),
            ("tree size", checkpoint.size.to_string()),
            ("root hash", log::root_text(&checkpoint.root)),
            ("consistency", extension.text()),
            ("witness", witness),
            ("cosigned at", super::audit::time_text(timestamp)),
            ("signatures on the server", signatures.to_string()),
        ]) + &format!("cosigned the checkpoint of size {}\n", checkpoint.size);
        let json = json!({
            "origin": checkpoint.origin,
            "tree_size": checkpoint.size,
            "root_hash": log::root_text(&checkpoint.root),
            "consistency": extension.text(),
            "witness": self.signer.name(),
            "witness_key": self.signer.verifier().to_text(),
            "timestamp": timestamp,
            "signatures": signatures,
            "already_cosigned": false,
        });
        Report { text, json }
    }
}

/// Sends the cosigned note; returns how many signature lines the server's
/// copy now has.
async fn send(
    client: &mut ProofServiceClient<Conn>,
    signed: &Signed,
    witness: &Verifier,
) -> anyhow::Result<usize> {
    let request = pb::AddCosignatureRequest {
        note: signed.note.to_text(),
        witness_key: witness.to_text(),
    };
    let reply = client
        .add_cosignature(request)
        .await
        .map_err(read_error)
        .context("sending the cosignature (AddCosignature)")?
        .into_inner();
    let note = reply
        .checkpoint
        .map(|checkpoint| checkpoint.note)
        .unwrap_or_default();
    let parsed = crate::checkpoint::Note::parse(&note)
        .map_err(|error| anyhow!("the server's reply to AddCosignature: {error}"))?;
    if parsed.verify(witness).ok().flatten().is_none() {
        bail!("the server's reply to AddCosignature does not carry this witness's cosignature");
    }
    Ok(parsed.signatures.len())
}
