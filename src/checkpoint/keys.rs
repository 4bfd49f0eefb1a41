//! Key files: a private key text in a file only its owner can read
//! (0600), and the verifier key text beside it in `<file>.pub` for anyone.
//!
//! The log's key is `DATA/log.key` (and `DATA/log.pub`); a witness keeps
//! its key wherever it is told. A key is created once, when its file is
//! absent, and never replaced: changing it would orphan every checkpoint
//! it signed.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};

use super::note::{KeyKind, Signer, Verifier};

/// The log's private key file, in the data directory.
pub const LOG_KEY_FILE: &str = "log.key";

/// The log's verifier key file, in the data directory.
pub const LOG_VERIFIER_FILE: &str = "log.pub";

/// The origin of a log created without one: this prefix, then 16 random
/// hex digits.
pub const DEFAULT_ORIGIN_PREFIX: &str = "mfi-ledger/";

/// The log's signing key in `DATA/log.key` (0600, private key text),
/// created with name `origin` when absent (or, when `origin` is `None`,
/// `mfi-ledger/` and 16 random hex digits); also writes or refreshes
/// `DATA/log.pub` (verifier key text and a newline). An existing key whose
/// name differs from a given `origin` is an error naming both.
pub fn log_signer(data_dir: &Path, origin: Option<&str>) -> anyhow::Result<Signer> {
    let key_path = data_dir.join(LOG_KEY_FILE);
    let name = match origin {
        Some(origin) => origin.to_owned(),
        None => default_origin()?,
    };
    let signer = load_or_create_key(&key_path, &name, KeyKind::Ed25519)?;
    if let Some(origin) = origin
        && signer.name() != origin
    {
        bail!(
            "the log key {} is named {:?}, not the origin {origin:?} asked for: \
             a log keeps its origin for life",
            key_path.display(),
            signer.name()
        );
    }
    write_verifier(&data_dir.join(LOG_VERIFIER_FILE), &signer)?;
    Ok(signer)
}

/// The log's verifier key in `DATA/log.pub`, for a server that signs
/// nothing: a read-only copy of the data directory, which an auditor is
/// handed with the verifier key and never the private key. `None` when the
/// copy has none.
pub fn log_verifier(data_dir: &Path) -> anyhow::Result<Option<Verifier>> {
    let path = data_dir.join(LOG_VERIFIER_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("reading the log's verifier key {}", path.display()));
        }
    };
    Verifier::parse(text.trim())
        .map(Some)
        .map_err(|e| anyhow!("{} is not a verifier key: {e}", path.display()))
}

/// A key file anywhere (a witness's): loads it, or creates it with `name`
/// and `kind` when absent (0600), and writes `<path>.pub` beside it. An
/// existing key of another name or kind is an error.
pub fn load_or_create(path: &Path, name: &str, kind: KeyKind) -> anyhow::Result<Signer> {
    let signer = load_or_create_key(path, name, kind)?;
    if signer.name() != name {
        bail!(
            "the key {} is named {:?}, not {name:?}",
            path.display(),
            signer.name()
        );
    }
    write_verifier(&verifier_path(path), &signer)?;
    Ok(signer)
}

/// Reads a private key file.
pub fn load(path: &Path) -> anyhow::Result<Signer> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the key file {}", path.display()))?;
    Signer::from_text(text.trim())
        .with_context(|| format!("reading the key file {}", path.display()))
}

/// `<path>.pub`: where the verifier key of the key file `path` goes.
pub fn verifier_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Loads the key at `path`, or creates it with `name` and `kind`; checks
/// the kind either way.
fn load_or_create_key(path: &Path, name: &str, kind: KeyKind) -> anyhow::Result<Signer> {
    let signer = if path.exists() {
        load(path)?
    } else {
        create(path, name, kind)?
    };
    if signer.kind() != kind {
        bail!(
            "the key {} is a {:?} key, not the {kind:?} key wanted here",
            path.display(),
            signer.kind()
        );
    }
    Ok(signer)
}

/// Creates a key file; when another process created it first, loads that.
fn create(path: &Path, name: &str, kind: KeyKind) -> anyhow::Result<Signer> {
    let signer = Signer::generate(name, kind)
        .with_context(|| format!("making the key {}", path.display()))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    match crate::auth::write_secret(path, &signer.to_text()) {
        Ok(()) => Ok(signer),
        Err(_) if path.exists() => load(path),
        Err(e) => Err(e),
    }
}

/// Writes the verifier key text, unless the file already says it.
fn write_verifier(path: &Path, signer: &Signer) -> anyhow::Result<()> {
    let text = format!("{}\n", signer.verifier().to_text());
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, &text)
        .and_then(|()| std::fs::rename(&temporary, path))
        .with_context(|| format!("writing the verifier key {}", path.display()))
}

fn default_origin() -> anyhow::Result<String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| anyhow!("no random bytes for an origin: {e}"))?;
    Ok(format!("{DEFAULT_ORIGIN_PREFIX}{}", hex::encode(bytes)))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::checkpoint::Verifier;

    /// A read-only copy's verifier key: none without `log.pub`, the
    /// signer's from it, and a file that is not a verifier key refused
    /// naming it.
    #[test]
    fn the_verifier_key_of_a_copy_comes_from_log_pub_alone() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(log_verifier(dir.path()).unwrap(), None);
        let signer = log_signer(dir.path(), None).unwrap();
        std::fs::remove_file(dir.path().join(LOG_KEY_FILE)).unwrap();
        assert_eq!(log_verifier(dir.path()).unwrap(), Some(signer.verifier()));
        std::fs::write(dir.path().join(LOG_VERIFIER_FILE), "not a key\n").unwrap();
        let refused = log_verifier(dir.path()).unwrap_err().to_string();
        assert!(
            refused.contains("log.pub") && refused.contains("not a verifier key"),
            "{refused}"
        );
    }

    #[test]
    fn a_new_data_directory_gets_a_private_key_and_its_verifier() {
        let dir = tempfile::tempdir().unwrap();
        let signer = log_signer(dir.path(), None).unwrap();
        let origin = signer.name().strip_prefix(DEFAULT_ORIGIN_PREFIX).unwrap();
        assert!(origin.len() == 16 && origin.bytes().all(|b| b.is_ascii_hexdigit()));
        let mode = std::fs::metadata(dir.path().join(LOG_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let published = std::fs::read_to_string(dir.path().join(LOG_VERIFIER_FILE)).unwrap();
        assert_eq!(published, format!("{}\n", signer.verifier().to_text()));
        assert_eq!(
            Verifier::parse(published.trim()).unwrap(),
            signer.verifier()
        );
    }

    #[test]
    fn the_same_key_comes_back_and_a_lost_verifier_file_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let first = log_signer(dir.path(), Some("example.org/books")).unwrap();
        std::fs::remove_file(dir.path().join(LOG_VERIFIER_FILE)).unwrap();
        let again = log_signer(dir.path(), Some("example.org/books")).unwrap();
        assert_eq!(again.verifier(), first.verifier());
        let unnamed = log_signer(dir.path(), None).unwrap();
        assert_eq!(unnamed.verifier(), first.verifier());
        assert!(dir.path().join(LOG_VERIFIER_FILE).exists());
    }

    #[test]
    fn another_origin_for_an_existing_key_is_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        log_signer(dir.path(), Some("example.org/books")).unwrap();
        let error = log_signer(dir.path(), Some("example.org/other"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("example.org/books"), "{error}");
        assert!(error.contains("example.org/other"), "{error}");
    }

    #[test]
    fn a_witness_key_is_a_cosignature_key_with_its_verifier_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("witness").join("witness.key");
        let signer = load_or_create(&path, "witness.example/w1", KeyKind::Cosignature).unwrap();
        assert_eq!(signer.kind(), KeyKind::Cosignature);
        let published =
            std::fs::read_to_string(dir.path().join("witness/witness.key.pub")).unwrap();
        assert_eq!(
            Verifier::parse(published.trim()).unwrap(),
            signer.verifier()
        );
        let again = load_or_create(&path, "witness.example/w1", KeyKind::Cosignature).unwrap();
        assert_eq!(again.verifier(), signer.verifier());
        let error = load_or_create(&path, "witness.example/w1", KeyKind::Ed25519).unwrap_err();
        assert!(error.to_string().contains("Cosignature"), "{error}");
    }

    #[test]
    fn a_damaged_key_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(LOG_KEY_FILE),
            "PRIVATE+KEY+x+00000000+AAAA\n",
        )
        .unwrap();
        let error = format!("{:#}", log_signer(dir.path(), None).unwrap_err());
        assert!(error.contains("log.key"), "{error}");
        assert!(error.contains("malformed key"), "{error}");
    }
}
