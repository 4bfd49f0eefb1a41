//! `backup --to DIR`: a consistent copy of a running server's data
//! directory, taken while it serves, written to a new directory and
//! verified there as `mfi-ledger verify` would.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::json;

use super::connect::{channel, read_error};
use super::output::Report;
use crate::pb;
use crate::pb::operations_service_client::OperationsServiceClient;
use crate::store::{DATA_DIR_MODE, DATA_FILE_MODE};

/// Arguments of `backup`.
#[derive(Args, Clone, Debug)]
pub struct BackupArgs {
    /// Directory to write the copy to: new, or empty. It holds the
    /// institution's books and the log's signing key: it is made readable by
    /// its owner only.
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
}

/// The file being written.
struct Writing {
    name: String,
    file: std::fs::File,
    expected: u64,
    written: u64,
}

/// Takes the backup and verifies the copy: written into a directory beside
/// `--to` and renamed to it only once it verifies, so that a backup that
/// fails half way leaves nothing a server could be started on.
pub async fn backup(server: &str, args: BackupArgs) -> anyhow::Result<Report> {
    let dir = args.to;
    refuse_non_empty(&dir)?;
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow::anyhow!("{} names no directory", dir.display()))?;
    let partial = dir.with_file_name(format!(".{name}.partial"));
    let mut client =
        OperationsServiceClient::new(channel(server).await?).max_decoding_message_size(4 << 20);
    let mut stream = client
        .backup(pb::BackupRequest {})
        .await
        .map_err(read_error)?
        .into_inner();
    let manifest = match stream.message().await.map_err(read_error)? {
        Some(pb::BackupResponse {
            part: Some(pb::backup_response::Part::Manifest(manifest)),
        }) => manifest,
        _ => bail!("the server's backup did not begin with its manifest"),
    };
    for file in &manifest.files {
        if !plain_name(&file.name) {
            bail!(
                "the server's backup names a file {:?}, not a plain file name",
                file.name
            );
        }
    }
    if !manifest
        .files
        .iter()
        .any(|f| f.name == crate::store::JOURNAL_FILE_NAME)
    {
        bail!("the server's backup holds no journal");
    }
    // Only now, so that a refused backup leaves nothing behind.
    if partial.exists() {
        // Left by a backup that failed; nothing else is named so.
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("removing {}", partial.display()))?;
    }
    prepare(&partial)?;
    let taken = match receive(&mut stream, &manifest, &partial).await {
        Ok(bytes) => check(partial.clone(), &manifest)
            .await
            .map(|report| (bytes, report)),
        Err(error) => Err(error),
    };
    let (bytes, report) = match taken {
        Ok(taken) => taken,
        Err(error) => {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(error.context(format!(
                "the backup into {} failed; nothing was kept",
                dir.display()
            )));
        }
    };
    if dir.exists() {
        // Empty (checked above): the rename takes its place.
        std::fs::remove_dir(&dir).with_context(|| format!("replacing {}", dir.display()))?;
    }
    std::fs::rename(&partial, &dir)
        .with_context(|| format!("renaming {} to {}", partial.display(), dir.display()))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", parent.display()))?;
    }
    let text = format!(
        "backup of {} entries in {} ({} bytes), head {}\nverified: {report}\nstart a server on it (`serve --data {}`) to serve or restore it\n",
        crate::load::group_thousands(manifest.head_sequence),
        dir.display(),
        crate::load::group_thousands(bytes),
        manifest.head_hash,
        dir.display()
    );
    let json = json!({
        "dir": dir.display().to_string(),
        "head_sequence": manifest.head_sequence,
        "head_hash": manifest.head_hash,
        "bytes": bytes,
        "files": manifest.files.iter().map(|f| json!({"name": f.name, "bytes": f.bytes})).collect::<Vec<_>>(),
        "verified": true,
    });
    Ok(Report { text, json })
}

/// Writes the files of `manifest` into `dir` as the stream brings them;
/// the bytes written.
async fn receive(
    stream: &mut tonic::Streaming<pb::BackupResponse>,
    manifest: &pb::BackupManifest,
    dir: &Path,
) -> anyhow::Result<u64> {
    let mut files = manifest.files.iter();
    let mut writing: Option<Writing> = None;
    let mut bytes = 0u64;
    loop {
        // Open each file of the manifest in turn, empty ones too.
        while writing.as_ref().is_none_or(|w| w.written == w.expected) {
            if let Some(done) = writing.take() {
                done.file
                    .sync_all()
                    .with_context(|| format!("syncing {}", dir.join(&done.name).display()))?;
            }
            let Some(next) = files.next() else { break };
            writing = Some(Writing {
                name: next.name.clone(),
                file: create(&dir.join(&next.name))?,
                expected: next.bytes,
                written: 0,
            });
        }
        let Some(message) = stream.message().await.map_err(read_error)? else {
            break;
        };
        let Some(pb::backup_response::Part::Chunk(chunk)) = message.part else {
            bail!("the server's backup sent a second manifest");
        };
        let Some(current) = writing.as_mut() else {
            bail!("the server's backup sent more than its manifest holds");
        };
        let fits = current.written.checked_add(chunk.data.len() as u64);
        if chunk.data.is_empty()
            || chunk.name != current.name
            || chunk.offset != current.written
            || fits.is_none_or(|end| end > current.expected)
        {
            bail!(
                "the server's backup sent {} bytes of {} at byte {} where {} at byte {} was due",
                chunk.data.len(),
                chunk.name,
                chunk.offset,
                current.name,
                current.written
            );
        }
        current
            .file
            .write_all(&chunk.data)
            .with_context(|| format!("writing {}", dir.join(&current.name).display()))?;
        current.written += chunk.data.len() as u64;
        bytes += chunk.data.len() as u64;
    }
    if let Some(short) = writing {
        bail!(
            "the backup stopped after {} of {}'s {} bytes",
            short.written,
            short.name,
            short.expected
        );
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(bytes)
}

/// Builds the copy's state cache, as a server's start would (so that a
/// server started on it starts at once), then runs `verify` on it, which
/// also holds the cache to its own replay, and checks that the copy ends at
/// the head the server named.
async fn check(
    copy: PathBuf,
    manifest: &pb::BackupManifest,
) -> anyhow::Result<crate::verify::VerifyReport> {
    let report = tokio::task::spawn_blocking(move || {
        {
            let store = crate::store::DiskStore::open(&copy)
                .with_context(|| format!("opening the copy in {}", copy.display()))?;
            crate::ledger::recovery::recover(&store).with_context(|| {
                format!("building the copy's state cache in {}", copy.display())
            })?;
        }
        crate::verify::verify(&copy)
            .with_context(|| format!("the copy in {} does not verify", copy.display()))
    })
    .await
    .context("verifying the copy")??;
    let hash = hex::encode(report.last_hash);
    if report.entries != manifest.head_sequence || hash != manifest.head_hash {
        bail!(
            "the copy verifies to entry {} ({hash}), not the server's head {} ({})",
            report.entries,
            manifest.head_sequence,
            manifest.head_hash
        );
    }
    Ok(report)
}

/// Refuses `dir` if it exists and holds anything.
fn refuse_non_empty(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            Some(_) => bail!(
                "{} is not empty: back up into a new or empty directory (nothing was written)",
                dir.display()
            ),
            None => Ok(()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

/// Makes `dir` (owner only), or takes it if it exists and is empty.
fn prepare(dir: &Path) -> anyhow::Result<()> {
    refuse_non_empty(dir)?;
    match std::fs::DirBuilder::new().mode(DATA_DIR_MODE).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating {}", dir.display())),
    }
}

fn create(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(DATA_FILE_MODE)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// A file name without a directory: letters, digits, `.`, `-`, `_`, not
/// starting with a dot.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

#[cfg(test)]
mod tests {
    use super::plain_name;

    #[test]
    fn only_plain_file_names_are_written() {
        assert!(plain_name("journal.log"));
        assert!(plain_name("log.key"));
        for bad in ["", "../x", "a/b", ".hidden", "/etc/passwd", "state\0"] {
            assert!(!plain_name(bad), "{bad:?}");
        }
    }
}
