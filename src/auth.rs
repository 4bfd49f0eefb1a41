//! Credentials: bearer tokens (made, parsed, hashed), the token file, and
//! the first administrator a new ledger gets.
//!
//! A token is `mfi_` and 64 hex digits: 256 bits from the operating
//! system's random source. It is shown once, to whoever asked for it; the
//! ledger keeps only its SHA-256 (in the journal entry that issued it), and
//! finds the principal by that digest. The prefix lets a secret scanner
//! recognise a leaked token.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::domain::access::{AccessCommand, CredentialKind, NewCredential, RoleGrant};
use crate::domain::command::{Command, CommandBody};
use crate::domain::entry::Hash;
use crate::domain::ids::{Actor, Name, PrincipalId, RequestId};
use crate::ledger::{CommandResult, Ledger};

/// What every token starts with.
pub const TOKEN_PREFIX: &str = "mfi_";

/// Random bytes in a token.
const TOKEN_BYTES: usize = 32;

/// The principal `serve` creates on a ledger that has none.
pub const FIRST_ADMINISTRATOR: &str = "admin";

/// Where `serve` writes the first administrator's token, in the data directory.
pub const FIRST_ADMINISTRATOR_TOKEN_FILE: &str = "admin.token";

/// How long the first administrator's token lasts.
pub const FIRST_ADMINISTRATOR_TOKEN_DAYS: i64 = 90;

/// A new token and its digest.
pub struct NewToken {
    /// The secret: shown once, never stored by the ledger.
    pub secret: String,
    /// Its SHA-256: what the ledger keeps.
    pub digest: Hash,
}

/// Makes a token from the operating system's random source.
pub fn new_token() -> anyhow::Result<NewToken> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| anyhow!("no random bytes for a token: {e}"))?;
    let secret = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    let digest = token_digest(&secret).expect("a token just made is well formed");
    Ok(NewToken { secret, digest })
}

/// The digest of a well-formed token; `None` for anything else (so that a
/// malformed token is refused without a lookup).
pub fn token_digest(token: &str) -> Option<Hash> {
    let hex_part = token.strip_prefix(TOKEN_PREFIX)?;
    if hex_part.len() != TOKEN_BYTES * 2 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(Sha256::digest(token.as_bytes()).into())
}

/// The digest a certificate is known by: SHA-256 of its DER bytes.
pub fn certificate_digest(der: &[u8]) -> Hash {
    Sha256::digest(der).into()
}

/// Writes `secret` to `path`, readable and writable by the owner only,
/// replacing nothing: an existing file is an error.
pub fn write_secret(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(format!("{secret}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Reads a token from a file (surrounding whitespace ignored).
pub fn read_secret(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the token file {}", path.display()))?;
    Ok(text.trim().to_owned())
}

/// On a ledger with no principal yet, creates the first administrator
/// (principal [`FIRST_ADMINISTRATOR`], institution-wide) with a token
/// valid for [`FIRST_ADMINISTRATOR_TOKEN_DAYS`] days, written to
/// `data_dir/admin.token` (mode 0600). Returns the file's path, or `None`
/// when the ledger already has principals.
///
/// The token file is written before the entry is submitted, so a crash in
/// between leaves a file for a token that was never issued (harmless, and
/// replaced on the next start), never an issued token nobody can read.
pub async fn bootstrap(ledger: &Ledger, data_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    if !ledger.access().is_empty() {
        return Ok(None);
    }
    let path = data_dir.join(FIRST_ADMINISTRATOR_TOKEN_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => tracing::warn!(
            path = %path.display(),
            "replacing a token file whose token was never issued"
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
    }
    let token = new_token()?;
    write_secret(&path, &token.secret)?;
    let expires = ledger.now() + chrono::Duration::days(FIRST_ADMINISTRATOR_TOKEN_DAYS);
    let principal = PrincipalId::parse("principal_id", FIRST_ADMINISTRATOR)?;
    let command = Command {
        request_id: RequestId::parse("request_id", "bootstrap-access")?,
        actor: Actor::parse("actor", "mfi-ledger")?,
        principal: Some(principal.clone()),
        approval: None,
        body: CommandBody::Access(AccessCommand::Bootstrap {
            principal_id: principal,
            name: Name::parse("name", "First administrator")?,
            token: token_credential(token.digest, expires),
        }),
    };
    ledger
        .submit(command)
        .await
        .map_err(|e| anyhow!("creating the first administrator: {e}"))?;
    Ok(Some(path))
}

/// A token credential that expires at `expires`.
pub fn token_credential(digest: Hash, expires: DateTime<Utc>) -> NewCredential {
    NewCredential {
        kind: CredentialKind::Token,
        digest,
        expires_at_micros: Some(expires.timestamp_micros()),
    }
}

/// Creates principal `id` with `grants` and a token valid for `valid_days`,
/// as administrator `by`, in process (tests, benchmarks, in-process tools).
/// Returns the token.
pub async fn create_principal_in_process(
    ledger: &Ledger,
    by: &PrincipalId,
    id: &str,
    grants: Vec<RoleGrant>,
    valid_days: i64,
) -> anyhow::Result<String> {
    let token = new_token()?;
    let expires = ledger.now() + chrono::Duration::days(valid_days);
    let command = Command {
        request_id: RequestId::parse("request_id", &format!("create-principal-{id}"))?,
        actor: Actor::parse("actor", "mfi-ledger")?,
        principal: Some(by.clone()),
        approval: None,
        body: CommandBody::Access(AccessCommand::CreatePrincipal {
            principal_id: PrincipalId::parse("principal_id", id)?,
            name: Name::parse("name", id)?,
            grants,
            credential: Some(token_credential(token.digest, expires)),
        }),
    };
    let result: CommandResult = ledger.submit(command).await;
    result.map_err(|e| anyhow!("creating principal {id}: {e}"))?;
    Ok(token.secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_256_bit_hex_and_differ() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(TOKEN_PREFIX));
        assert_eq!(a.secret.len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(token_digest(&a.secret), Some(a.digest));
        assert_ne!(a.digest, b.digest);
    }

    #[test]
    fn malformed_tokens_have_no_digest() {
        let good = new_token().unwrap().secret;
        for bad in [
            "",
            "mfi_",
            &good[..good.len() - 1],
            &format!("{good}0"),
            &good.replace("mfi_", "gho_"),
            &format!("mfi_{}", "g".repeat(64)),
        ] {
            assert_eq!(token_digest(bad), None, "{bad:?}");
        }
    }
}
