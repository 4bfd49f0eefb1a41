//! The auditor's folder: what an auditor keeps between visits so that the
//! next visit can hold the server to what it showed before.
//!
//! ```text
//! DIR/                       0700, created on first use
//!   log.pub                  the log's verifier key (from the first --log-key)
//!   checkpoints/<size>.note  every checkpoint kept, the signed note as
//!                            first fetched, with the signature lines
//!                            (cosignatures) later fetches of the same
//!                            text brought; a line is never dropped
//!   leaves                   the leaf hashes of entries 1..=verified size,
//!                            32 bytes each, as `audit replay` verified them
//!                            (read streaming; bytes past the verified size
//!                            count for nothing and are cut)
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

/// What keeping a checkpoint did.
#[derive(Clone, Debug)]
pub struct Kept {
    /// The note's file.
    pub path: PathBuf,
    /// Signature lines of the note kept before, when there was one.
    pub before: Option<usize>,
    /// Signature lines added to it.
    pub added: usize,
    /// New signature lines left out: the note had the most a note may have.
    pub not_kept: usize,
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

    /// Keeps a checkpoint's note. When a note of that size is kept already,
    /// it stays: its text must be the new one's (two texts of one size
    /// signed by the log key are a split view, an error that keeps the old
    /// note), and only the signature lines it does not have (witnesses'
    /// cosignatures) are added to it; none of its lines is ever dropped.
    pub fn keep_checkpoint(&self, log: &Verifier, signed: &Signed) -> anyhow::Result<Kept> {
        let path = self
            .dir
            .join(CHECKPOINTS_DIR)
            .join(format!("{}.note", signed.checkpoint.size));
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                replace(&path, signed.note.to_text().as_bytes())?;
                return Ok(Kept {
                    path,
                    before: None,
                    added: 0,
                    not_kept: 0,
                });
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let whose = format!("the kept checkpoint {}", path.display());
        let mut kept = log::open(&text, log, &whose)?;
        log::same_text(&kept.checkpoint, &whose, &signed.checkpoint)?;
        let before = kept.note.signatures.len();
        let mut not_kept = 0;
        for line in &signed.note.signatures {
            if kept.note.signatures.contains(line) {
                continue;
            }
            // Only when the note holds the most lines a note may have.
            if kept.note.add_signature_line(&line.to_line()).is_err() {
                not_kept += 1;
            }
        }
        let added = kept.note.signatures.len() - before;
        if added > 0 {
            replace(&path, kept.note.to_text().as_bytes())?;
        }
        Ok(Kept {
            path,
            before: Some(before),
            added,
            not_kept,
        })
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

    /// A reader of the verified leaves (entries 1..=`count`), one at a
    /// time: the file is streamed, never held whole.
    pub fn leaf_reader(&self, count: u64) -> anyhow::Result<LeafReader> {
        let path = self.dir.join(LEAVES_FILE);
        let wanted = count
            .checked_mul(LEAF_BYTES as u64)
            .ok_or_else(|| anyhow!("{count} leaves do not fit in a file"))?;
        let file = match std::fs::File::open(&path) {
            Ok(file) => Some(file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let length = match &file {
            Some(file) => file
                .metadata()
                .with_context(|| format!("reading {}", path.display()))?
                .len(),
            None => 0,
        };
        if length < wanted {
            bail!(
                "{} holds {length} bytes, fewer than the {wanted} of the {count} verified leaves",
                path.display()
            );
        }
        Ok(LeafReader {
            file: file.map(std::io::BufReader::new),
            path,
            left: count,
        })
    }

    /// A writer of the leaves verified after the first `verified_before`:
    /// the file is cut to those and the new ones go after them. They count
    /// only once `record_replay` says so; a replay that fails cuts them
    /// (`LeafWriter::abandon`), and bytes a crash left past the verified
    /// size count for nothing and are cut by the next replay.
    pub fn leaf_writer(&self, verified_before: u64) -> anyhow::Result<LeafWriter> {
        use std::io::{Seek as _, SeekFrom};
        let path = self.dir.join(LEAVES_FILE);
        let kept_bytes = verified_before * LEAF_BYTES as u64;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .and_then(|mut file| {
                file.set_len(kept_bytes)?;
                file.seek(SeekFrom::Start(kept_bytes))?;
                Ok(file)
            })
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(LeafWriter {
            file: std::io::BufWriter::new(file),
            path,
            kept_bytes,
        })
    }

    /// Records a replay: the new leaves (written and synced by `leaves`)
    /// first, then the state that says how many of them count.
    pub fn record_replay(&self, leaves: LeafWriter, state: &ReplayState) -> anyhow::Result<()> {
        leaves.finish()?;
        let json = serde_json::to_vec_pretty(state).context("encoding the replay state")?;
        replace(&self.dir.join(REPLAY_FILE), &json)
    }
}

/// The verified leaves, read in order.
pub struct LeafReader {
    file: Option<std::io::BufReader<std::fs::File>>,
    path: PathBuf,
    /// Leaves not read yet.
    left: u64,
}

impl LeafReader {
    /// The next verified leaf; `None` past the verified ones.
    pub fn next_leaf(&mut self) -> anyhow::Result<Option<Hash>> {
        use std::io::Read as _;
        if self.left == 0 {
            return Ok(None);
        }
        let file = self
            .file
            .as_mut()
            .expect("a file holds every verified leaf");
        let mut leaf = [0u8; LEAF_BYTES];
        file.read_exact(&mut leaf)
            .with_context(|| format!("reading {}", self.path.display()))?;
        self.left -= 1;
        Ok(Some(leaf))
    }
}

/// The leaves a replay verifies, appended after the verified ones.
pub struct LeafWriter {
    file: std::io::BufWriter<std::fs::File>,
    path: PathBuf,
    /// Bytes of the leaves verified before.
    kept_bytes: u64,
}

impl LeafWriter {
    /// Appends a leaf.
    pub fn push(&mut self, leaf: &Hash) -> anyhow::Result<()> {
        self.file
            .write_all(leaf)
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// Cuts what this replay wrote (it failed): the file is the verified
    /// leaves again. Best effort: bytes left past the verified size count
    /// for nothing.
    pub fn abandon(self) {
        if let Ok(file) = self.file.into_inner() {
            let _ = file.set_len(self.kept_bytes);
        }
    }

    /// Writes what is buffered and syncs the file.
    fn finish(self) -> anyhow::Result<()> {
        let path = self.path;
        self.file
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|file| file.sync_all())
            .with_context(|| format!("writing {}", path.display()))
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
