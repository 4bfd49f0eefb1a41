//! Every checkpoint the server issued, and the witnesses' cosignatures of
//! them: `checkpoints.log` in the data directory, append-only text. A
//! record is a header line and its bytes:
//!
//! ```text
//! checkpoint <tree size> <length>\n<the signed note>
//! cosignature <tree size> <length> <witness>\n<a cosignature line>
//! ```
//!
//! A witness (named by its key's name and key hash) has one line per
//! checkpoint: a later line of the same witness replaces the earlier one.
//!
//! Each record is made durable (`fdatasync`) before it is served: a
//! checkpoint an auditor has seen is never lost by a crash. A torn last
//! record (a crash during its write) is cut at open. The store keeps the
//! notes as text and never checks a signature: `ledger::checkpoints` signs
//! and the API checks cosignatures before they get here.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use super::StoreError;

/// Name of the checkpoint log in the data directory.
pub const CHECKPOINT_LOG_FILE: &str = "checkpoints.log";

/// Most cosignature lines kept for one checkpoint.
pub const COSIGNATURES_MAX: usize = 32;

/// Longest record (a note or a line) the log takes.
pub const RECORD_BYTES_MAX: usize = 64 * 1024;

/// A checkpoint as kept: its tree size, its signed note, and the
/// cosignature lines received for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub note: String,
    pub cosignatures: Vec<String>,
}

#[derive(Default)]
struct Index {
    /// (tree size, offset of the note, its length), by size.
    checkpoints: Vec<(u64, u64, usize)>,
    /// By tree size: (witness, line), one line per witness.
    cosignatures: BTreeMap<u64, Vec<(String, String)>>,
}

/// The checkpoint log, opened.
pub struct CheckpointLog {
    path: PathBuf,
    /// The file, for appends (reads use positioned reads beside them).
    file: Mutex<File>,
    reader: File,
    index: RwLock<Index>,
}

impl std::fmt::Debug for CheckpointLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointLog")
            .field("path", &self.path)
            .finish()
    }
}

/// One parsed record header: kind, tree size, length of its bytes, and the
/// witness of a cosignature.
struct Header<'a> {
    kind: &'a str,
    size: u64,
    length: usize,
    witness: Option<&'a str>,
}

fn parse_header(line: &str) -> Option<Header<'_>> {
    let mut fields = line.split(' ');
    let kind = fields.next()?;
    let size = fields.next()?.parse().ok()?;
    let length: usize = fields.next()?.parse().ok()?;
    let witness = fields.next();
    if fields.next().is_some() || length > RECORD_BYTES_MAX {
        return None;
    }
    Some(Header {
        kind,
        size,
        length,
        witness,
    })
}

/// Keeps `line` as `witness`'s cosignature, replacing its earlier one.
/// False when the checkpoint already has [`COSIGNATURES_MAX`] witnesses.
fn keep_line(lines: &mut Vec<(String, String)>, witness: &str, line: &str) -> bool {
    if let Some(kept) = lines.iter_mut().find(|(w, _)| w == witness) {
        kept.1 = line.to_owned();
        return true;
    }
    if lines.len() >= COSIGNATURES_MAX {
        return false;
    }
    lines.push((witness.to_owned(), line.to_owned()));
    true
}

impl CheckpointLog {
    /// Opens (or creates) `dir/checkpoints.log`, cutting a torn last record.
    pub fn open(dir: &Path) -> Result<CheckpointLog, StoreError> {
        let path = dir.join(CHECKPOINT_LOG_FILE);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(super::DATA_FILE_MODE)
            .open(&path)
            .map_err(StoreError::io(format!("opening {}", path.display())))?;
        Self::from_file(path, file, true)
    }

    /// Opens `dir/checkpoints.log` to read only (what `verify` does): a torn
    /// last record is left as it is and not read, and nothing can be kept.
    pub fn open_read_only(dir: &Path) -> Result<CheckpointLog, StoreError> {
        let path = dir.join(CHECKPOINT_LOG_FILE);
        let file =
            File::open(&path).map_err(StoreError::io(format!("opening {}", path.display())))?;
        Self::from_file(path, file, false)
    }

    /// Reads the records of `file`, cutting a torn last one when `cut`.
    fn from_file(path: PathBuf, file: File, cut: bool) -> Result<CheckpointLog, StoreError> {
        let bytes =
            std::fs::read(&path).map_err(StoreError::io(format!("reading {}", path.display())))?;
        let (index, valid) = Self::scan(&bytes, &path)?;
        if cut && valid < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                cut = bytes.len() - valid,
                "cutting a torn last record of the checkpoint log"
            );
            file.set_len(valid as u64)
                .map_err(StoreError::io(format!("cutting {}", path.display())))?;
        }
        let reader = file
            .try_clone()
            .map_err(StoreError::io(format!("opening {}", path.display())))?;
        Ok(CheckpointLog {
            path,
            file: Mutex::new(file),
            reader,
            index: RwLock::new(index),
        })
    }

    /// The records of `bytes`, and how many bytes of it are whole records.
    /// Only the last record may be incomplete; anything else is corrupt.
    fn scan(bytes: &[u8], path: &Path) -> Result<(Index, usize), StoreError> {
        let mut index = Index::default();
        let mut at = 0usize;
        while at < bytes.len() {
            let Some(end_of_line) = bytes[at..].iter().position(|b| *b == b'\n') else {
                break; // a torn header
            };
            let corrupt = |message: String| StoreError::Corrupt {
                offset: at as u64,
                message: format!("{}: {message}", path.display()),
            };
            let line = std::str::from_utf8(&bytes[at..at + end_of_line])
                .map_err(|_| corrupt("a record header is not text".into()))?;
            let header = parse_header(line)
                .ok_or_else(|| corrupt(format!("not a record header: {line:?}")))?;
            let start = at + end_of_line + 1;
            if start + header.length > bytes.len() {
                break; // a torn record
            }
            let record = std::str::from_utf8(&bytes[start..start + header.length])
                .map_err(|_| corrupt("a record is not text".into()))?;
            match header.kind {
                "checkpoint" => {
                    if index
                        .checkpoints
                        .last()
                        .is_some_and(|(size, _, _)| *size >= header.size)
                    {
                        return Err(corrupt(format!(
                            "checkpoint of size {} does not follow a larger one",
                            header.size
                        )));
                    }
                    index
                        .checkpoints
                        .push((header.size, start as u64, header.length));
                }
                "cosignature" => {
                    let witness = header
                        .witness
                        .ok_or_else(|| corrupt("a cosignature names no witness".into()))?;
                    let lines = index.cosignatures.entry(header.size).or_default();
                    if !keep_line(lines, witness, record) {
                        return Err(corrupt(format!(
                            "more than {COSIGNATURES_MAX} witnesses cosigned the checkpoint of size {}",
                            header.size
                        )));
                    }
                }
                other => return Err(corrupt(format!("unknown record kind {other:?}"))),
            }
            at = start + header.length;
        }
        Ok((index, at))
    }

    /// Appends the record `<header> <length><suffix>\n<text>`, durably;
    /// returns the offset of its text.
    fn append(&self, header: &str, suffix: &str, text: &str) -> Result<u64, StoreError> {
        if text.len() > RECORD_BYTES_MAX {
            return Err(StoreError::Stopped(format!(
                "a record of {} bytes is over the log's {RECORD_BYTES_MAX}",
                text.len()
            )));
        }
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let offset = file
            .metadata()
            .map_err(StoreError::io(format!("reading {}", self.path.display())))?
            .len();
        let mut record = format!("{header} {}{suffix}\n", text.len()).into_bytes();
        record.extend_from_slice(text.as_bytes());
        let written = file.write_all(&record).and_then(|()| file.sync_data());
        if let Err(error) = written {
            // Leave no half record behind a failed write.
            let _ = file.set_len(offset);
            return Err(StoreError::io(format!("writing {}", self.path.display()))(
                error,
            ));
        }
        Ok(offset + record.len() as u64 - text.len() as u64)
    }

    /// The log's length in bytes: whole, durable records only (an append
    /// holds the file while it writes and syncs).
    pub fn durable_len(&self) -> Result<u64, StoreError> {
        let file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        Ok(file
            .metadata()
            .map_err(StoreError::io(format!("reading {}", self.path.display())))?
            .len())
    }

    /// Keeps a checkpoint of `size` (larger than the last one's), durably.
    pub fn append_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError> {
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        if let Some((last, _, _)) = index.checkpoints.last()
            && *last >= size
        {
            return Err(StoreError::Stopped(format!(
                "checkpoint of size {size} after one of size {last}"
            )));
        }
        let offset = self.append(&format!("checkpoint {size}"), "", note)?;
        index.checkpoints.push((size, offset, note.len()));
        Ok(())
    }

    /// Keeps `witness`'s cosignature line of the checkpoint of `size`,
    /// durably, in place of its earlier one; the same line again is not
    /// written. `witness` is one word (the key's name and hash, say).
    /// Returns false when the checkpoint already has [`COSIGNATURES_MAX`]
    /// other witnesses.
    pub fn add_cosignature(
        &self,
        size: u64,
        witness: &str,
        line: &str,
    ) -> Result<bool, StoreError> {
        if witness.is_empty() || witness.contains([' ', '\n']) {
            return Err(StoreError::Stopped(format!(
                "a witness is named by one word, not {witness:?}"
            )));
        }
        let mut index = self.index.write().unwrap_or_else(|p| p.into_inner());
        let kept = index.cosignatures.get(&size).map_or(&[][..], Vec::as_slice);
        if kept.iter().any(|(w, l)| w == witness && l == line) {
            return Ok(true);
        }
        if !kept.iter().any(|(w, _)| w == witness) && kept.len() >= COSIGNATURES_MAX {
            return Ok(false);
        }
        self.append(&format!("cosignature {size}"), &format!(" {witness}"), line)?;
        Ok(keep_line(
            index.cosignatures.entry(size).or_default(),
            witness,
            line,
        ))
    }

    fn read(&self, index: &Index, at: usize) -> Result<StoredCheckpoint, StoreError> {
        let (size, offset, length) = index.checkpoints[at];
        let mut bytes = vec![0u8; length];
        self.reader
            .read_exact_at(&mut bytes, offset)
            .map_err(StoreError::io(format!("reading {}", self.path.display())))?;
        let note = String::from_utf8(bytes).map_err(|_| StoreError::Corrupt {
            offset,
            message: format!("{}: a checkpoint is not text", self.path.display()),
        })?;
        Ok(StoredCheckpoint {
            size,
            note,
            cosignatures: index
                .cosignatures
                .get(&size)
                .map(|lines| lines.iter().map(|(_, line)| line.clone()).collect())
                .unwrap_or_default(),
        })
    }

    /// The latest checkpoint, if any was issued.
    pub fn latest(&self) -> Result<Option<StoredCheckpoint>, StoreError> {
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        match index.checkpoints.len() {
            0 => Ok(None),
            n => self.read(&index, n - 1).map(Some),
        }
    }

    /// The checkpoint of tree size `size`, if one was issued.
    pub fn at(&self, size: u64) -> Result<Option<StoredCheckpoint>, StoreError> {
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        match index
            .checkpoints
            .binary_search_by_key(&size, |(s, _, _)| *s)
        {
            Ok(at) => self.read(&index, at).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// The tree sizes of every checkpoint kept, in order.
    pub fn sizes(&self) -> Vec<u64> {
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        index.checkpoints.iter().map(|(size, _, _)| *size).collect()
    }

    /// Number of checkpoints kept.
    pub fn len(&self) -> usize {
        self.index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .checkpoints
            .len()
    }

    /// True when no checkpoint was issued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_and_cosignatures_survive_reopening_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let log = CheckpointLog::open(dir.path()).unwrap();
        assert!(log.latest().unwrap().is_none());
        log.append_checkpoint(3, "o\n3\nAAA=\n\n— o sig\n").unwrap();
        log.append_checkpoint(9, "o\n9\nBBB=\n\n— o sig\n").unwrap();
        assert!(log.append_checkpoint(9, "again").is_err());
        assert!(log.add_cosignature(3, "w+1", "— w old\n").unwrap());
        assert!(log.add_cosignature(3, "w+1", "— w cosig\n").unwrap());
        assert!(log.add_cosignature(3, "w+1", "— w cosig\n").unwrap());
        drop(log);
        let path = dir.path().join(CHECKPOINT_LOG_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let whole = bytes.len();
        bytes.extend_from_slice(b"checkpoint 12 40\no\n12\n");
        std::fs::write(&path, &bytes).unwrap();
        let log = CheckpointLog::open(dir.path()).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, whole);
        assert_eq!(log.sizes(), vec![3, 9]);
        let three = log.at(3).unwrap().unwrap();
        assert_eq!(three.note, "o\n3\nAAA=\n\n— o sig\n");
        assert_eq!(three.cosignatures, vec!["— w cosig\n".to_owned()]);
        assert_eq!(log.latest().unwrap().unwrap().size, 9);
        assert!(log.at(4).unwrap().is_none());
    }

    #[test]
    fn a_damaged_record_in_the_middle_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = CheckpointLog::open(dir.path()).unwrap();
        log.append_checkpoint(1, "a").unwrap();
        log.append_checkpoint(2, "b").unwrap();
        drop(log);
        let path = dir.path().join(CHECKPOINT_LOG_FILE);
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("checkpoint 2", "checkpoimt 2");
        std::fs::write(&path, text).unwrap();
        let error = CheckpointLog::open(dir.path()).unwrap_err();
        assert!(error.to_string().contains("checkpoimt"), "{error}");
    }
}
