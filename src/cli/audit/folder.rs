//! The auditor's folder: what an auditor keeps between visits so that the
//! next visit can hold the server to what it showed before.
//!
//! ```text
//! DIR/                       0700, created on first use
//!   log.pub                  the log's verifier key (from the first --log-key)
//!   checkpoints/<size>.note  every checkpoint kept, the signed note as
//!                            fetched (cosignatures included)
//!   leaves                   the leaf hashes of entries 1..=verified size,
//!                            32 bytes each, as `audit replay` verified them
//!   replay.json              the verified size, the hash of its last entry
//!                            (the chain head) and when each replay ended
//! ```
//!
//! Every kept note is opened again with the kept key when the folder is
//! read, so an edited file is refused rather than believed. Files are
//! replaced by writing a temporary file and renaming it.

use std::io::Write as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};

use super::log::{self, Signed};
use crate::checkpoint::{Hash, Verifier};

/// The kept verifier key.
const KEY_FILE: &str = "log.pub";
/// The kept checkpoints.
const CHECKPOINTS_DIR: &str = "checkpoints";
/// The verified leaf hashes.
const LEAVES_FILE: &str = "leaves";
/// What replay verified.
const REPLAY_FILE: &str = "replay.json";
/// Mode of the folder: its owner only (it says what the auditor saw).
const FOLDER_MODE: u32 = 0o700;
/// Bytes of one kept leaf hash.
pub const LEAF_BYTES: usize = 32;

/// An auditor's folder.
pub struct AuditFolder {
    dir: PathBuf,
}

/// What `audit replay` verified so far.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReplayState {
    /// Entries 1..=verified_size are verified (their leaves are kept).
    pub verified_size: u64,
    /// Hash of entry `verified_size` (hex; 64 zeros when none).
    pub head_hash: String,
    /// Each replay that verified more: the size it reached and when.
    pub runs: Vec<ReplayRun>,
}

/// One replay that ended verified.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplayRun {
    /// The verified size it reached.
    pub size: u64,
    /// When it ended (RFC 3339, UTC).
    pub at: String,
}

impl ReplayState {
    /// When the entry `sequence` was first verified (the first run that
    /// reached it), or "an earlier replay".
    pub fn verified_on(&self, sequence: u64) -> String {
        self.runs
            .iter()
            .find(|run| run.size >= sequence)
            .map_or_else(|| "an earlier replay".to_owned(), |run| run.at.clone())
    }
}

impl AuditFolder {
    /// The folder `dir`, created (0700) when missing.
    pub fn open(dir: &Path) -> anyhow::Result<AuditFolder> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(FOLDER_MODE)
            .create(dir.join(CHECKPOINTS_DIR))
            .with_context(|| format!("creating the audit folder {}", dir.display()))?;
        Ok(AuditFolder {
            dir: dir.to_owned(),
        })
    }

    /// The folder `dir`, which must exist already with a kept key.
    pub fn existing(dir: &Path) -> anyhow::Result<AuditFolder> {
        if !dir.join(KEY_FILE).is_file() {
            bail!(
                "{} is not an audit folder (no {KEY_FILE}): run `audit fetch --dir {} --log-key KEY` first",
                dir.display(),
                dir.display()
            );
        }
        Ok(AuditFolder {
            dir: dir.to_owned(),
        })
    }

    /// The folder's path.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The kept log key, if any.
    pub fn key(&self) -> anyhow::Result<Option<Verifier>> {
        let path = self.dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Verifier::parse(text.trim())
                .map(Some)
                .map_err(|e| anyhow!("the kept key {} is damaged: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The kept log key; an error when there is none.
    pub fn required_key(&self) -> anyhow::Result<Verifier> {
        self.key()?.ok_or_else(|| {
            anyhow!(
                "{} keeps no log key: run `audit fetch --log-key KEY` first",
                self.dir.display()
            )
        })
    }

    /// Keeps the log key.
    pub fn keep_key(&self, key: &Verifier) -> anyhow::Result<()> {
        replace(
            &self.dir.join(KEY_FILE),
            format!("{}\n", key.to_text()).as_bytes(),
        )
    }

    /// Every kept checkpoint, smallest first, each opened with `log`.
    pub fn checkpoints(&self, log: &Verifier) -> anyhow::Result<Vec<Signed>> {
        let dir = self.dir.join(CHECKPOINTS_DIR);
        let mut kept = Vec::new();
        let listing = match std::fs::read_dir(&dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(kept),
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        for item in listing {
            let path = item
                .with_context(|| format!("reading {}", dir.display()))?
                .path();
            let Some(size) = note_size(&path) else {
                continue;
            };
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let whose = format!("the kept checkpoint {}", path.display());
            let signed = log::open(&text, log, &whose)?;
            if signed.checkpoint.size != size {
                bail!(
                    "{whose} is of size {}, not the {size} its name says",
                    signed.checkpoint.size
                );
            }
            kept.push(signed);
        }
        kept.sort_by_key(|signed| signed.checkpoint.size);
        Ok(kept)
    }

    /// The latest (largest) kept checkpoint.
    pub fn latest(&self, log: &Verifier) -> anyhow::Result<Option<Signed>> {
        Ok(self.checkpoints(log)?.pop())
    }

    /// Keeps a checkpoint's note (replacing a kept one of the same size,
    /// whose tree is the same: the new note may carry more cosignatures).
    /// Returns the file.
    pub fn keep_checkpoint(&self, signed: &Signed) -> anyhow::Result<PathBuf> {
        let path = self
            .dir
            .join(CHECKPOINTS_DIR)
            .join(format!("{}.note", signed.checkpoint.size));
        replace(&path, signed.note.to_text().as_bytes())?;
        Ok(path)
    }

    /// What replay verified so far.
    pub fn replay_state(&self) -> anyhow::Result<ReplayState> {
        let path = self.dir.join(REPLAY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is damaged", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ReplayState {
                head_hash: hex::encode([0u8; 32]),
                ..ReplayState::default()
            }),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The verified leaves (entries 1..=`count`).
    pub fn leaves(&self, count: u64) -> anyhow::Result<Vec<Hash>> {
        let path = self.dir.join(LEAVES_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let wanted = usize::try_from(count)
            .ok()
            .and_then(|count| count.checked_mul(LEAF_BYTES))
            .ok_or_else(|| anyhow!("{count} leaves do not fit in memory"))?;
        if bytes.len() < wanted {
            bail!(
                "{} holds {} bytes, fewer than the {wanted} of the {count} verified leaves",
                path.display(),
                bytes.len()
            );
        }
        Ok(bytes[..wanted]
            .chunks_exact(LEAF_BYTES)
            .map(|chunk| Hash::try_from(chunk).expect("chunks of 32 bytes"))
            .collect())
    }

    /// Records a replay that verified `new_leaves`, the entries after
    /// `verified_before`: the leaves first (appended after the kept ones),
    /// then the state that says how many of them count.
    pub fn record_replay(
        &self,
        verified_before: u64,
        new_leaves: &[Hash],
        state: &ReplayState,
    ) -> anyhow::Result<()> {
        use std::io::{Seek as _, SeekFrom};
        let path = self.dir.join(LEAVES_FILE);
        let kept_bytes = verified_before * LEAF_BYTES as u64;
        let bytes: Vec<u8> = new_leaves.iter().flatten().copied().collect();
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .and_then(|mut file| {
                file.set_len(kept_bytes)?;
                file.seek(SeekFrom::Start(kept_bytes))?;
                file.write_all(&bytes)?;
                file.sync_all()
            });
        written.with_context(|| format!("writing {}", path.display()))?;
        let json = serde_json::to_vec_pretty(state).context("encoding the replay state")?;
        replace(&self.dir.join(REPLAY_FILE), &json)
    }
}

/// The size a kept note's file name says (`<size>.note`).
fn note_size(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_suffix(".note")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Writes `path` whole: a temporary file, synced, renamed over it.
pub fn replace(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let written = std::fs::File::create(&temporary)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::rename(&temporary, path));
    written.with_context(|| format!("writing {}", path.display()))
}
