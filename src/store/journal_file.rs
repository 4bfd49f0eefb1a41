//! The journal as one append-only file the service owns.
//!
//! Layout: an 8-byte magic `MFIJRNL2`, then frames, one per durable barrier:
//! `[FRAME_MAGIC u32][body length u32][CRC-32 of body u32][entry count u32][body]`
//! where the body is records `[payload length u32][CRC-32 of payload u32][payload]`
//! and a payload is an entry's canonical bytes followed by its 32-byte hash,
//! or, for a long entry, the same bytes zstd-compressed behind a marker byte
//! and their length ([`payload`]: the hash is always of the canonical
//! bytes). All integers are little-endian.
//!
//! A frame is written with one `write` and made durable with one
//! `fdatasync` before the next frame is written, so a crash can only damage
//! the last frame. At open, a bad frame is cut off as a torn, never
//! acknowledged write only if no valid frame follows it; otherwise the
//! journal is corrupt and refuses to open (acknowledged entries would be
//! lost by cutting).
//!
//! Every write and barrier goes through [`JournalMedium`], whose real
//! implementation is `std::fs::File`; a test implementation records them to
//! build the disk states a power cut could leave (`crash_states`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::domain::entry::{Entry, EntryBody, Hash};
use crate::domain::request_index::{HashKey, RequestIndex};

use super::StoreError;
use super::journal_index::{JournalIndex, Last};
use super::offsets::{EntryOffsets, Offsets};

pub mod payload;

/// Name of the journal file in the data directory.
pub const JOURNAL_FILE_NAME: &str = "journal.log";
/// Largest payload of one record; an entry is a few hundred bytes.
pub const RECORD_LEN_MAX: usize = 1 << 20;
/// The most entries past the journal's index that open keeps in memory
/// without writing the index again (about 12 MiB of them).
pub const TAIL_KEPT_MAX: usize = 1 << 20;
/// Largest frame body: bigger batches are written as several frames.
pub const FRAME_BYTES_MAX: usize = 16 << 20;

const FILE_MAGIC: &[u8; 8] = b"MFIJRNL2";
const FRAME_MAGIC: u32 = 0x4D46_4946; // "FIFM" little-endian: a frame starts here
pub(super) const FRAME_HEADER_LEN: usize = 16;
const RECORD_HEADER_LEN: usize = 8;
const PAYLOAD_LEN_MIN: usize = 33;

/// The calls the journal makes on its file to write it: appends and
/// barriers, plus the reads and cuts that creating it needs.
///
/// `std::fs::File` is the real implementation; [`JournalFile`] is generic
/// over it and compiled for `File` in the server, so the real write path is
/// the same code with no indirection. A test records every call instead, to
/// build the disk states a power cut could leave between barriers.
pub trait JournalMedium {
    /// Writes all of `bytes` at the end of the file.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// `fdatasync`: the bytes written so far (and the size needed to read
    /// them) survive a power cut once this returns.
    fn sync_data(&mut self) -> io::Result<()>;
    /// `fsync`: data and metadata survive a power cut once this returns.
    fn sync_all(&mut self) -> io::Result<()>;
    /// Cuts (or extends with zeros) the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Fills `buf` with the bytes at `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// The file's length in bytes.
    fn len(&self) -> io::Result<u64>;
}

impl JournalMedium for File {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        // The journal is opened with O_APPEND: every write lands at the end.
        self.write_all(bytes)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn sync_all(&mut self) -> io::Result<()> {
        File::sync_all(self)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_exact_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        self.metadata().map(|meta| meta.len())
    }
}

/// The open journal file: the append handle and each entry's offset.
pub struct JournalFile<M: JournalMedium = File> {
    file: M,
    /// Where each entry's record starts (those the index covers, in its
    /// file), until [`JournalFile::take_offsets`] hands them to the store,
    /// which keeps them for its readers (once, not twice).
    offsets: EntryOffsets,
    /// True once the offsets were taken: appends return theirs and keep none.
    offsets_taken: bool,
    /// Number of entries.
    len: u64,
    end: u64,
    /// The request id of every entry found at open, until taken.
    request_index: RequestIndex,
    /// The data directory (`None` for a test's medium): where the index is
    /// written.
    dir: Option<PathBuf>,
    /// The journal's index on disk, covering its first entries.
    index: Option<Arc<JournalIndex>>,
    /// The key request ids are hashed under: the index's, or one drawn when
    /// the journal opened without one (the request index handed out is
    /// under it, so that an index written later can take its entries).
    key: HashKey,
    /// Where the last entry sits (`None` while there is none).
    last: Option<Last>,
    /// The check of the frames the index spared reading at open, running.
    frame_check: Option<std::thread::JoinHandle<Result<(), StoreError>>>,
}

/// What a scan of the journal found.
#[derive(Debug, Clone)]
pub struct Scan {
    /// Offset of every valid record, in order.
    pub offsets: Offsets,
    /// Where the last valid frame starts (0 when there is none).
    pub last_frame: u64,
    /// Where the valid frames end.
    pub valid_end: u64,
    /// Bytes after `valid_end`: a torn last frame (0 when none).
    pub torn_bytes: u64,
}

impl JournalFile {
    /// Opens (or creates) the journal in `dir`, cutting off a torn tail.
    pub fn open(dir: &Path) -> Result<JournalFile, StoreError> {
        let path = dir.join(JOURNAL_FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(StoreError::io(format!("opening {}", path.display())))?;
        // One process at a time: a second server on the same directory
        // could otherwise cut a frame the first is still writing.
        super::lock_for_this_process(&file, &path)?;
        if !has_header(&file)? {
            // New, or a creation cut short before its header was durable.
            write_header(&mut file)?;
            // An index left from another journal is not this one's.
            match std::fs::remove_file(dir.join(super::journal_index::JOURNAL_INDEX_FILE_NAME)) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    return Err(StoreError::io("removing an old journal index")(error));
                }
            }
            sync_dir(dir)?;
        }
        let len = file
            .metadata()
            .map_err(StoreError::io("reading journal size"))?
            .len();
        // The index covers the journal's first entries: only the frames
        // past it are read.
        let index = JournalIndex::load(dir, &file, len).map(Arc::new);
        let key = index
            .as_ref()
            .map_or_else(HashKey::random, |index| index.key());
        let (from, mut last) = match &index {
            Some(index) => (index.last().frame_end, Some(index.last())),
            None => (FILE_MAGIC.len() as u64, None),
        };
        let first = index.as_ref().map_or(0, |index| index.count()) + 1;
        let mut hashes = Vec::new();
        let mut in_sequence = true;
        let mut last_record = None;
        let scan = scan_from(&file, from, |offset, payload| {
            let (canonical, hash) = split_payload(offset, payload)?;
            let (sequence, request_id) = crate::domain::entry::peek_request_id(&canonical)
                .map_err(|source| StoreError::undecodable(offset, source))?;
            // Out of sequence (a gap or a duplicate, which recovery
            // refuses): noted as it is, and not indexed.
            in_sequence &= sequence == first + hashes.len() as u64;
            hashes.push((key.hash(request_id), sequence));
            last_record = Some((offset, hash));
            Ok(())
        })?;
        if let Some((offset, hash)) = last_record {
            last = Some(Last {
                frame_start: scan.last_frame,
                frame_end: scan.valid_end,
                offset,
                hash,
            });
        }
        if scan.torn_bytes > 0 {
            let kept = keep_torn_tail(dir, &file, scan.valid_end)?;
            tracing::warn!(
                cut_at = scan.valid_end,
                torn_bytes = scan.torn_bytes,
                kept_in = %kept.display(),
                "cutting a torn, never-acknowledged last frame off the journal (its bytes are kept aside)"
            );
            file.set_len(scan.valid_end)
                .map_err(StoreError::io("truncating torn journal tail"))?;
            file.sync_all()
                .map_err(StoreError::io("syncing truncated journal"))?;
        }
        // The frames the index spared reading are checked beside the rest
        // of startup ([`JournalFile::take_frame_check`]).
        let frame_check = match &index {
            Some(index) => {
                // Its own handle, not a clone: a clone would hold the
                // directory's lock for as long as the check runs.
                let file = File::open(&path)
                    .map_err(StoreError::io(format!("opening {}", path.display())))?;
                let index = index.clone();
                Some(
                    std::thread::Builder::new()
                        .name("journal-check".into())
                        .spawn(move || check_frames(&file, &index))
                        .map_err(StoreError::io("starting the journal's check"))?,
                )
            }
            None => None,
        };
        let mut tail = scan.offsets;
        let last = last.filter(|_| in_sequence);
        if !tail.is_empty() {
            // An index covers durable frames only.
            file.sync_data()
                .map_err(StoreError::io("fdatasync of the journal"))?;
        }
        let (index, request_index) =
            match Self::index_tail(dir, key, index, &mut tail, &mut hashes, last) {
                Some(index) => (Some(index.clone()), RequestIndex::on_disk(index)),
                None => (None, RequestIndex::keyed(key)),
            };
        let mut request_index = request_index;
        // The entries the index does not cover (it could not be written).
        for (hash, sequence) in hashes {
            request_index.note_found_hash(hash, sequence);
        }
        request_index.seal();
        // Kept for as long as the journal: without the room they grew by.
        tail.shrink_to_fit();
        let offsets = EntryOffsets::new(index.clone(), tail);
        Ok(JournalFile {
            file,
            len: offsets.len(),
            offsets,
            offsets_taken: false,
            end: scan.valid_end,
            request_index,
            dir: Some(dir.to_owned()),
            index,
            key,
            last,
            frame_check,
        })
    }

    /// Writes the index of the entries found at open when they were past
    /// no index (a first start on a journal) or many past the old one
    /// ([`TAIL_KEPT_MAX`] or more, after crashes), so that the next start
    /// reads none of them again: the new index, with `tail` and
    /// `hashes` emptied; or, when it cannot be written, the old one (`None`
    /// if none) and them as they are (the server keeps in memory what the
    /// index does not cover).
    fn index_tail(
        dir: &Path,
        key: HashKey,
        old: Option<Arc<JournalIndex>>,
        tail: &mut Offsets,
        hashes: &mut Vec<(u64, u64)>,
        last: Option<Last>,
    ) -> Option<Arc<JournalIndex>> {
        // A short tail past an index (after a crash) is kept in memory and
        // indexed at the next clean stop, or once the running server has
        // the index written again (`DiskStore::index_journal`): writing the whole index again
        // now (reading, writing and syncing 24 bytes an entry of it) would
        // cost a restart after a crash more than reading the tail saves.
        let worth_writing = old.is_none() || tail.len() >= TAIL_KEPT_MAX;
        let Some(last) = last.filter(|_| !tail.is_empty() && worth_writing) else {
            return old;
        };
        match JournalIndex::write(dir, key, old.as_deref(), tail, hashes, last) {
            Ok(index) => {
                *tail = Offsets::new();
                hashes.clear();
                hashes.shrink_to_fit();
                Some(Arc::new(index))
            }
            Err(error) => {
                tracing::warn!(%error, "the journal's index cannot be written; the entries past it are kept in memory");
                old
            }
        }
    }

    /// A handle for reading entries, independent of the append handle.
    pub fn try_clone_file(&self) -> Result<File, StoreError> {
        self.file
            .try_clone()
            .map_err(StoreError::io("cloning journal handle"))
    }

    /// Writes the journal's index up to the last entry, when entries were
    /// appended past it (at a clean stop: the next start then reads none of
    /// the journal). Reads those entries back to hash their request ids.
    pub fn write_index(&mut self) -> Result<(), StoreError> {
        let Some(job) = self.index_job(1)? else {
            return Ok(());
        };
        let index = Arc::new(job.write()?);
        self.install_index(&job, index);
        Ok(())
    }

    /// What writing the index again over the entries past it needs, when at
    /// least `min_entries` are (and there is a directory to write it in):
    /// taken under the journal's lock, run ([`IndexJob::write`]) without it
    /// while appends go on, its result installed under it again
    /// ([`JournalFile::install_index`]).
    pub fn index_job(&self, min_entries: u64) -> Result<Option<IndexJob>, StoreError> {
        let (Some(dir), Some(last)) = (self.dir.clone(), self.last) else {
            return Ok(None);
        };
        let past = self.len - self.indexed();
        if past == 0 || past < min_entries {
            return Ok(None);
        }
        // Its own handle, not a clone: a clone would hold the directory's
        // lock for as long as the job does.
        let path = dir.join(JOURNAL_FILE_NAME);
        let file =
            File::open(&path).map_err(StoreError::io(format!("opening {}", path.display())))?;
        Ok(Some(IndexJob {
            dir,
            key: self.key,
            old: self.index.clone(),
            file,
            first: self.indexed() + 1,
            len: self.len,
            last,
        }))
    }

    /// Takes the index `job` wrote as the journal's, unless another was
    /// installed since the job was taken (then false, and `index` is not
    /// used). The file on disk is then whichever was renamed last: both
    /// cover a prefix of the journal, so either is valid; the store runs
    /// one job at a time, so it is the newer one's.
    pub fn install_index(&mut self, job: &IndexJob, index: Arc<JournalIndex>) -> bool {
        let unchanged = match (&self.index, &job.old) {
            (None, None) => true,
            (Some(now), Some(then)) => Arc::ptr_eq(now, then),
            _ => false,
        };
        if unchanged {
            self.index = Some(index);
        }
        unchanged
    }
}

/// Writing the journal's index again over the entries past it, apart from
/// the journal's lock ([`JournalFile::index_job`]): it reads only frames
/// that were durable when it was taken, which never change.
pub struct IndexJob {
    dir: PathBuf,
    key: HashKey,
    old: Option<Arc<JournalIndex>>,
    /// A read handle on the journal.
    file: File,
    /// The first entry past the old index.
    first: u64,
    /// The last entry to index.
    len: u64,
    /// Where it sits.
    last: Last,
}

impl IndexJob {
    /// Reads the entries past the old index up to the job's last one,
    /// hashing their request ids, and writes the new index (to a new file,
    /// made durable and renamed over the old one).
    pub fn write(&self) -> Result<JournalIndex, StoreError> {
        let key = self.key;
        let from = self
            .old
            .as_ref()
            .map_or(FILE_MAGIC.len() as u64, |index| index.last().frame_end);
        // Sized once for the entries the job covers (it knows how many):
        // grown by doubling, at 10^7 entries a rewrite held up to twice the
        // 20 MB it needs, and a copy of it while growing.
        let mut hashes =
            Vec::with_capacity(usize::try_from(self.len + 1 - self.first).unwrap_or(0));
        let scan = scan_range(&self.file, from, self.last.frame_end, |offset, payload| {
            let (canonical, _) = split_payload(offset, payload)?;
            let (sequence, request_id) = crate::domain::entry::peek_request_id(&canonical)
                .map_err(|source| StoreError::undecodable(offset, source))?;
            hashes.push((key.hash(request_id), sequence));
            Ok(())
        })?;
        if scan.valid_end != self.last.frame_end || scan.torn_bytes > 0 {
            return Err(StoreError::Inconsistent(format!(
                "the journal reads to byte {} of {} while indexing it",
                scan.valid_end, self.last.frame_end
            )));
        }
        // Only the entries that follow the index, in sequence, are indexed.
        if let Some((expected, (_, sequence))) = (self.first..)
            .zip(&hashes)
            .find(|(expected, (_, sequence))| sequence != expected)
        {
            return Err(StoreError::Inconsistent(format!(
                "entry {sequence} where entry {expected} was expected while indexing the journal"
            )));
        }
        if self.first + hashes.len() as u64 != self.len + 1 {
            return Err(StoreError::Inconsistent(format!(
                "{} entries past the index where {} were expected while indexing the journal",
                hashes.len(),
                self.len + 1 - self.first
            )));
        }
        JournalIndex::write(
            &self.dir,
            key,
            self.old.as_deref(),
            &scan.offsets,
            &mut hashes,
            self.last,
        )
    }
}

impl<M: JournalMedium> JournalFile<M> {
    /// Number of entries.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Appends entries: each frame is one write and one `fdatasync`.
    /// Returns the number of durable barriers made and where each entry's
    /// record starts.
    pub fn append(&mut self, entries: &[Arc<Entry>]) -> Result<(u64, Vec<u64>), StoreError> {
        let mut barriers = 0;
        let mut appended = Vec::with_capacity(entries.len());
        let mut rest = entries;
        while !rest.is_empty() {
            let (frame, offsets, taken) = self.encode_frame(rest)?;
            self.file
                .append(&frame)
                .map_err(StoreError::io("appending to the journal"))?;
            self.file
                .sync_data()
                .map_err(StoreError::io("fdatasync of the journal"))?;
            if let Some((&offset, entry)) = offsets.last().zip(rest[..taken].last()) {
                self.last = Some(Last {
                    frame_start: self.end,
                    frame_end: self.end + frame.len() as u64,
                    offset,
                    hash: entry.hash,
                });
            }
            self.end += frame.len() as u64;
            self.len += offsets.len() as u64;
            if !self.offsets_taken {
                self.offsets.extend(offsets.iter().copied());
            }
            appended.extend(offsets);
            barriers += 1;
            rest = &rest[taken..];
        }
        Ok((barriers, appended))
    }

    /// Encodes as many entries as fit in one frame.
    fn encode_frame(
        &self,
        entries: &[Arc<Entry>],
    ) -> Result<(Vec<u8>, Vec<u64>, usize), StoreError> {
        let mut body = Vec::with_capacity(entries.len().min(4096) * 400);
        let mut offsets = Vec::new();
        let body_start = self.end + FRAME_HEADER_LEN as u64;
        for entry in entries {
            // The limit is of the entry as it reads back (its canonical
            // bytes and hash), however small it is stored: a reader refuses
            // a compressed record that names more.
            let plain_len = entry.canonical.len() + entry.hash.len();
            if plain_len > RECORD_LEN_MAX {
                return Err(StoreError::Corrupt {
                    offset: self.end,
                    message: format!(
                        "entry {} is {plain_len} bytes, over the record limit",
                        entry.body.sequence,
                    ),
                });
            }
            // The record is written in place: its header, filled in once
            // the payload's length and checksum are known.
            let record = body.len();
            body.extend_from_slice(&[0; RECORD_HEADER_LEN]);
            payload::encode(&entry.canonical, &entry.hash, &mut body);
            let len = body.len() - record - RECORD_HEADER_LEN;
            if !offsets.is_empty() && body.len() > FRAME_BYTES_MAX {
                body.truncate(record);
                break;
            }
            let crc = crc32fast::hash(&body[record + RECORD_HEADER_LEN..]);
            body[record..record + 4].copy_from_slice(&(len as u32).to_le_bytes());
            body[record + 4..record + RECORD_HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
            offsets.push(body_start + record as u64);
        }
        let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + body.len());
        frame.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        frame.extend_from_slice(&(offsets.len() as u32).to_le_bytes());
        frame.extend_from_slice(&body);
        let taken = offsets.len();
        Ok((frame, offsets, taken))
    }

    /// The request index of the entries found at open.
    pub fn take_request_index(&mut self) -> RequestIndex {
        std::mem::take(&mut self.request_index)
    }

    /// Where the last durable frame ends: the journal's length in bytes.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Offsets of the entries (until taken).
    #[cfg(test)]
    pub fn offsets(&self) -> Vec<u64> {
        self.offsets
            .slice(1, self.offsets.len() + 1)
            .read()
            .expect("the index reads")
    }

    /// The entries' offsets, for a caller that keeps them from now on
    /// ([`JournalFile::append`] returns each new entry's).
    pub fn take_offsets(&mut self) -> EntryOffsets {
        self.offsets_taken = true;
        std::mem::take(&mut self.offsets)
    }

    /// The check of the frames the journal's index spared reading at open,
    /// running beside the rest of startup (`None` when open read them all).
    pub fn take_frame_check(&mut self) -> Option<std::thread::JoinHandle<Result<(), StoreError>>> {
        self.frame_check.take()
    }

    /// How many entries the journal's index on disk covers.
    pub fn indexed(&self) -> u64 {
        self.index.as_ref().map_or(0, |index| index.count())
    }
}

/// `fsync` of the directory `dir`: the names created or renamed in it
/// survive a power cut once this returns.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::io(format!(
            "syncing directory {}",
            dir.display()
        )))
}

/// Writes a new journal's header (over whatever a creation cut short left)
/// and makes it durable.
fn write_header<M: JournalMedium>(file: &mut M) -> Result<(), StoreError> {
    file.set_len(0)
        .map_err(StoreError::io("resetting journal"))?;
    file.append(FILE_MAGIC)
        .map_err(StoreError::io("writing journal header"))?;
    file.sync_all()
        .map_err(StoreError::io("syncing new journal"))
}

/// True when the file starts with the journal's magic; false when it is
/// empty, shorter than the magic, or a creation cut short: exactly the
/// magic's length of zeros, or of a torn magic (a prefix of it, then zeros).
fn has_header<M: JournalMedium>(file: &M) -> Result<bool, StoreError> {
    let len = file.len().map_err(StoreError::io("reading journal size"))?;
    if len < FILE_MAGIC.len() as u64 {
        return Ok(false);
    }
    let mut magic = [0u8; 8];
    file.read_at(&mut magic, 0)
        .map_err(StoreError::io("reading journal header"))?;
    let torn = (0..FILE_MAGIC.len())
        .any(|kept| magic[..kept] == FILE_MAGIC[..kept] && magic[kept..].iter().all(|&b| b == 0));
    Ok(!(torn && len == FILE_MAGIC.len() as u64))
}

/// Copies the bytes from `from` to the end into `journal.log.torn-<from>`
/// (fsynced) before they are cut, so that nothing is destroyed.
fn keep_torn_tail(dir: &Path, file: &File, from: u64) -> Result<std::path::PathBuf, StoreError> {
    let len = file
        .metadata()
        .map_err(StoreError::io("reading journal size"))?
        .len();
    let mut tail = vec![0u8; (len - from) as usize];
    file.read_exact_at(&mut tail, from)
        .map_err(StoreError::io("reading the torn tail"))?;
    let path = dir.join(format!("{JOURNAL_FILE_NAME}.torn-{from}"));
    let mut kept =
        File::create(&path).map_err(StoreError::io(format!("creating {}", path.display())))?;
    kept.write_all(&tail)
        .and_then(|_| kept.sync_all())
        .map_err(StoreError::io(format!("writing {}", path.display())))?;
    Ok(path)
}

/// Reads the entry whose record starts at `offset`.
pub fn read_entry_at(file: &File, offset: u64, sequence: u64) -> Result<Entry, StoreError> {
    let mut header = [0u8; RECORD_HEADER_LEN];
    file.read_exact_at(&mut header, offset)
        .map_err(StoreError::io(format!("reading entry {sequence}")))?;
    let (len, crc) = (le_u32(&header, 0) as usize, le_u32(&header, 4));
    if !(PAYLOAD_LEN_MIN..=RECORD_LEN_MAX).contains(&len) {
        return Err(StoreError::Corrupt {
            offset,
            message: format!("record length {len}"),
        });
    }
    let mut payload = vec![0u8; len];
    file.read_exact_at(&mut payload, offset + RECORD_HEADER_LEN as u64)
        .map_err(StoreError::io(format!("reading entry {sequence}")))?;
    if crc32fast::hash(&payload) != crc {
        return Err(StoreError::Corrupt {
            offset,
            message: format!("checksum of entry {sequence}"),
        });
    }
    decode_payload(&payload, sequence).map_err(|error| match error {
        StoreError::Corrupt { offset: 0, message } => StoreError::Corrupt { offset, message },
        other => other,
    })
}

/// Splits a record payload into the entry it holds.
pub fn decode_payload(payload: &[u8], sequence: u64) -> Result<Entry, StoreError> {
    if payload.len() < PAYLOAD_LEN_MIN {
        return Err(StoreError::Corrupt {
            offset: 0,
            message: format!("entry {sequence} is too short"),
        });
    }
    let (canonical, hash) = payload::decode(payload).map_err(|error| StoreError::Corrupt {
        offset: 0,
        message: format!("entry {sequence}: {error}"),
    })?;
    let body = EntryBody::from_canonical_bytes(&canonical)
        .map_err(|source| StoreError::Decode { sequence, source })?;
    Ok(Entry {
        body,
        hash,
        canonical: canonical.into_owned(),
    })
}

/// The canonical bytes and hash of the record at `offset` whose payload is
/// `payload` (decompressed when it is stored compressed).
pub fn split_payload(
    offset: u64,
    payload: &[u8],
) -> Result<(std::borrow::Cow<'_, [u8]>, Hash), StoreError> {
    payload::decode(payload).map_err(|error| StoreError::Corrupt {
        offset,
        message: error.to_string(),
    })
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// The records of one frame body: (offset within the body, payload range).
/// `None` if the body is not exactly `count` well-formed records.
pub(super) fn records_of(body: &[u8], count: u32) -> Option<Vec<(usize, std::ops::Range<usize>)>> {
    records_in(body, count, true)
}

/// [`records_of`], each record's CRC checked or not (a body whose frame's
/// CRC held: its records' CRCs are of bytes that CRC covered).
fn records_in(
    body: &[u8],
    count: u32,
    record_crcs: bool,
) -> Option<Vec<(usize, std::ops::Range<usize>)>> {
    let mut records = Vec::with_capacity(
        (count as usize).min(body.len() / (RECORD_HEADER_LEN + PAYLOAD_LEN_MIN)),
    );
    let mut at = 0;
    while at < body.len() {
        let header = body.get(at..at + RECORD_HEADER_LEN)?;
        let (len, crc) = (le_u32(header, 0) as usize, le_u32(header, 4));
        if !(PAYLOAD_LEN_MIN..=RECORD_LEN_MAX).contains(&len) {
            return None;
        }
        let range = at + RECORD_HEADER_LEN..at + RECORD_HEADER_LEN + len;
        let payload = body.get(range.clone())?;
        if record_crcs && crc32fast::hash(payload) != crc {
            return None;
        }
        records.push((at, range.clone()));
        at = range.end;
    }
    (records.len() == count as usize && count > 0).then_some(records)
}

/// A frame header: (body length, body CRC, entry count), if plausible.
pub(super) fn frame_header(header: &[u8]) -> Option<(usize, u32, u32)> {
    if header.len() < FRAME_HEADER_LEN || le_u32(header, 0) != FRAME_MAGIC {
        return None;
    }
    let len = le_u32(header, 4) as usize;
    (len > 0 && len <= FRAME_BYTES_MAX).then_some((len, le_u32(header, 8), le_u32(header, 12)))
}

/// Reads every frame from the start, calling `visit(offset, payload)` for
/// each record in order. Stops at the first bad frame: if a valid frame
/// follows it the journal is corrupt (error); otherwise it is a torn tail.
/// Never writes.
pub fn scan(
    file: &File,
    visit: impl FnMut(u64, &[u8]) -> Result<(), StoreError>,
) -> Result<Scan, StoreError> {
    scan_from(file, FILE_MAGIC.len() as u64, visit)
}

/// [`scan`] from the frame that starts at `from` (the journal's magic is
/// still checked): the offsets it returns are of the records from there.
pub fn scan_from(
    file: &File,
    from: u64,
    visit: impl FnMut(u64, &[u8]) -> Result<(), StoreError>,
) -> Result<Scan, StoreError> {
    scan_range(file, from, u64::MAX, visit)
}

/// Checks every frame from the journal's start to `end` (where the index's
/// last frame ends) as a scan would, but for its records' own CRCs (the
/// frame's covers them: checking both was a third of this check at 10^7
/// entries) and their offsets kept (each is compared with the index's
/// instead): run beside startup when the index spared it reading them, so
/// that a server still refuses to start on a journal damaged before its
/// end.
pub fn check_frames(file: &File, index: &JournalIndex) -> Result<(), StoreError> {
    let end = index.last().frame_end;
    // Every record where the index puts it, read from the index a chunk
    // at a time.
    const CHUNK: u64 = 8192;
    let mut expected: Vec<u64> = Vec::new();
    let mut seen = 0u64;
    let scanned = scan_pass(
        file,
        FILE_MAGIC.len() as u64,
        end,
        Pass::Frames,
        |offset, _| {
            if seen.is_multiple_of(CHUNK) {
                let count = CHUNK.min(index.count().saturating_sub(seen));
                expected = index.offsets(seen + 1, count)?;
            }
            let indexed = expected.get((seen % CHUNK) as usize).copied();
            seen += 1;
            match indexed {
                Some(indexed) if indexed == offset => Ok(()),
                _ => Err(StoreError::Corrupt {
                    offset,
                    message: format!(
                        "entry {seen}'s record is not where the journal's index puts it: the index \
                     is not this journal's (move journal.idx aside: the next start reads the \
                     journal whole and writes it again)"
                    ),
                }),
            }
        },
    )?;
    if seen != index.count() && scanned.valid_end == end {
        return Err(StoreError::Corrupt {
            offset: end,
            message: format!(
                "the journal holds {seen} entries where its index covers {}: the index is not \
                 this journal's (move journal.idx aside)",
                index.count()
            ),
        });
    }
    if scanned.valid_end != end {
        return Err(StoreError::Corrupt {
            offset: scanned.valid_end,
            message: format!(
                "bad frame in the journal's first {end} bytes, which its index covers: not a torn \
                 write; refusing to cut acknowledged entries"
            ),
        });
    }
    Ok(())
}

/// What a scan checks of each frame beside its CRC, and what it keeps.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Each record's CRC too, and every record's offset kept.
    Full,
    /// The frame's CRC (which covers its records and theirs) and its
    /// records' lengths and count, not each record's CRC again, and no
    /// offsets kept: the check of frames an index already placed.
    Frames,
}

/// [`scan_from`] that reads no further than `until`.
fn scan_range(
    file: &File,
    from: u64,
    until: u64,
    visit: impl FnMut(u64, &[u8]) -> Result<(), StoreError>,
) -> Result<Scan, StoreError> {
    scan_pass(file, from, until, Pass::Full, visit)
}

/// [`scan_range`] making `pass`.
fn scan_pass(
    file: &File,
    from: u64,
    until: u64,
    pass: Pass,
    mut visit: impl FnMut(u64, &[u8]) -> Result<(), StoreError>,
) -> Result<Scan, StoreError> {
    let len = file
        .metadata()
        .map_err(StoreError::io("reading journal size"))?
        .len()
        .min(until);
    let mut magic = [0u8; 8];
    file.read_exact_at(&mut magic, 0)
        .map_err(StoreError::io("reading journal header"))?;
    if &magic != FILE_MAGIC {
        return Err(StoreError::Corrupt {
            offset: 0,
            message: "not an mfi-ledger journal (bad magic)".into(),
        });
    }
    let mut offsets = Offsets::new();
    let mut offset = from.max(FILE_MAGIC.len() as u64);
    let mut window = ScanWindow::new(file, offset, len);
    let mut last_frame = 0;
    while offset < len {
        let remaining = len - offset;
        let frame = if remaining >= FRAME_HEADER_LEN as u64 {
            window
                .fill(FRAME_HEADER_LEN)
                .map_err(StoreError::io("reading journal"))?;
            frame_header(window.ahead())
                .filter(|(body_len, _, _)| (FRAME_HEADER_LEN + body_len) as u64 <= remaining)
        } else {
            None
        };
        let records = frame.and_then(|(body_len, crc, count)| {
            // A body the file ends before (it shrank while read) is a bad
            // frame, as a torn one.
            window.fill(FRAME_HEADER_LEN + body_len).ok()?;
            let body = &window.ahead()[FRAME_HEADER_LEN..FRAME_HEADER_LEN + body_len];
            (crc32fast::hash(body) == crc)
                .then(|| records_in(body, count, pass == Pass::Full))
                .flatten()
                .map(|records| (body_len, records))
        });
        let Some((body_len, records)) = records else {
            check_nothing_valid_after(file, offset, len)?;
            return Ok(Scan {
                offsets,
                last_frame,
                valid_end: offset,
                torn_bytes: remaining,
            });
        };
        let body_start = offset + FRAME_HEADER_LEN as u64;
        let body = &window.ahead()[FRAME_HEADER_LEN..FRAME_HEADER_LEN + body_len];
        for (at, range) in records {
            let record_offset = body_start + at as u64;
            visit(record_offset, &body[range])?;
            if pass == Pass::Full {
                offsets.push(record_offset);
            }
        }
        window.consume(FRAME_HEADER_LEN + body_len);
        last_frame = offset;
        offset = body_start + body_len as u64;
    }
    Ok(Scan {
        offsets,
        last_frame,
        valid_end: offset,
        torn_bytes: 0,
    })
}

/// Bytes a scan reads from the journal at a time (more only for a frame
/// that needs more), small enough to stay in a core's cache from the
/// kernel's copy into the scan's buffer to the frame's CRC. Frames are
/// checked and handed on where they were read: a buffered reader of
/// 1 MiB, which copied every frame a second time into a buffer of its own,
/// took about a tenth more CPU to check the frames at startup
/// (BENCHMARKS.md, the table of changes).
const SCAN_READ_BYTES: usize = 256 << 10;

/// The scan's buffer: several reads, so that the part of a frame left at
/// its end is moved to its front about once a buffer, not once a read.
const SCAN_BUFFER_BYTES: usize = 4 * SCAN_READ_BYTES;

/// The journal's bytes from a scan's position, read ahead by positional
/// reads (`pread`), never past the scan's end.
struct ScanWindow<'f> {
    file: &'f File,
    buf: Vec<u8>,
    /// `buf[start..end]` are the file's bytes from the scan's position.
    start: usize,
    end: usize,
    /// The file offset of `buf[end]`: where the next read starts.
    next: u64,
    /// Where the scan stops reading.
    len: u64,
}

impl<'f> ScanWindow<'f> {
    fn new(file: &'f File, from: u64, len: u64) -> ScanWindow<'f> {
        ScanWindow {
            file,
            buf: Vec::new(),
            start: 0,
            end: 0,
            next: from,
            len,
        }
    }

    /// The bytes read ahead of the scan's position.
    fn ahead(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Passes over `n` bytes of [`ahead`](Self::ahead).
    fn consume(&mut self, n: usize) {
        self.start += n;
    }

    /// Reads until at least `n` bytes are ahead; an error when the file
    /// ends before them.
    fn fill(&mut self, n: usize) -> io::Result<()> {
        while self.end - self.start < n {
            // A read of the window's size, or of all a frame larger than
            // it still lacks.
            let want = (n - (self.end - self.start)).max(SCAN_READ_BYTES);
            if self.buf.len() - self.end < want {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                let size = (self.end + want).max(SCAN_BUFFER_BYTES);
                if self.buf.len() < size {
                    self.buf.resize(size, 0);
                }
            }
            let left = usize::try_from(self.len.saturating_sub(self.next)).unwrap_or(usize::MAX);
            let read = match want.min(left) {
                0 => 0,
                take => match FileExt::read_at(
                    self.file,
                    &mut self.buf[self.end..self.end + take],
                    self.next,
                ) {
                    Ok(read) => read,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Err(error) => return Err(error),
                },
            };
            if read == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.end += read;
            self.next += read as u64;
        }
        Ok(())
    }
}

/// After a bad frame at `bad`: corruption if any valid frame starts later.
fn check_nothing_valid_after(file: &File, bad: u64, len: u64) -> Result<(), StoreError> {
    let corrupt = |message: String| StoreError::Corrupt {
        offset: bad,
        message,
    };
    if len - bad > 2 * FRAME_BYTES_MAX as u64 + FRAME_HEADER_LEN as u64 {
        return Err(corrupt(format!(
            "bad frame followed by {} bytes, more than one frame: not a torn write; refusing to cut acknowledged entries",
            len - bad
        )));
    }
    let mut tail = vec![0u8; (len - bad) as usize];
    file.read_exact_at(&mut tail, bad)
        .map_err(StoreError::io("reading journal tail"))?;
    let magic = FRAME_MAGIC.to_le_bytes();
    for at in 1..tail.len().saturating_sub(FRAME_HEADER_LEN - 1) {
        if tail[at..at + 4] != magic {
            continue;
        }
        let Some((body_len, crc, count)) = frame_header(&tail[at..]) else {
            continue;
        };
        let Some(body) = tail.get(at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + body_len) else {
            continue;
        };
        if crc32fast::hash(body) == crc && records_of(body, count).is_some() {
            return Err(corrupt(format!(
                "bad frame followed by a valid frame at byte {}: acknowledged entries follow the damage; refusing to cut them",
                bad + at as u64
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod crash_states;

/// The scan's reading: frames of every size against its window.
#[cfg(test)]
mod scan_tests {
    use super::*;

    /// Records as read: each one's offset (of its header) and bytes.
    type Records = Vec<(u64, Vec<u8>)>;

    /// A frame of `records` as the journal writes one: each record its
    /// length and CRC, then its bytes; the frame's header before them.
    fn frame(records: &[Vec<u8>]) -> Vec<u8> {
        let mut body = Vec::new();
        for record in records {
            body.extend_from_slice(&(record.len() as u32).to_le_bytes());
            body.extend_from_slice(&crc32fast::hash(record).to_le_bytes());
            body.extend_from_slice(record);
        }
        let mut frame = Vec::new();
        frame.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
        frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
        frame.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        frame.extend_from_slice(&(records.len() as u32).to_le_bytes());
        frame.extend_from_slice(&body);
        frame
    }

    /// A journal of frames from a few bytes to several times the scan's
    /// window (records up to the limit), and each record's offset and
    /// bytes as written, with the frames' starts.
    fn journal() -> (Vec<u8>, Records, Vec<u64>) {
        let mut rng = oorandom::Rand64::new(14);
        let mut file = FILE_MAGIC.to_vec();
        let (mut records, mut starts) = (Vec::new(), Vec::new());
        for f in 0..400 {
            let (count, longest) = match f % 50 {
                // A few frames larger than the window, one of records of
                // the largest size.
                7 => (3, RECORD_LEN_MAX),
                21 => (40, 64 << 10),
                _ => (1 + rng.rand_range(0..30) as usize, 2_000),
            };
            let frame_records: Vec<Vec<u8>> = (0..count)
                .map(|_| {
                    let len = match longest {
                        RECORD_LEN_MAX => RECORD_LEN_MAX,
                        longest => rng.rand_range(PAYLOAD_LEN_MIN as u64..longest as u64) as usize,
                    };
                    (0..len.div_ceil(8))
                        .flat_map(|_| rng.rand_u64().to_le_bytes())
                        .take(len)
                        .collect()
                })
                .collect();
            starts.push(file.len() as u64);
            let mut at = file.len() + FRAME_HEADER_LEN;
            for record in &frame_records {
                records.push((at as u64, record.clone()));
                at += RECORD_HEADER_LEN + record.len();
            }
            file.extend(frame(&frame_records));
        }
        (file, records, starts)
    }

    fn file_of(bytes: &[u8]) -> (tempfile::TempDir, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE_NAME);
        std::fs::write(&path, bytes).unwrap();
        (dir, File::open(&path).unwrap())
    }

    /// Every record the scan visited, with its offset.
    fn scanned(file: &File, from: u64) -> Result<(Scan, Records), StoreError> {
        let mut seen = Vec::new();
        let scan = scan_from(file, from, |offset, payload| {
            seen.push((offset, payload.to_vec()));
            Ok(())
        })?;
        Ok((scan, seen))
    }

    #[test]
    fn a_scan_reads_every_record_of_frames_smaller_and_larger_than_its_window() {
        let (bytes, records, starts) = journal();
        assert!(bytes.len() > 20 * SCAN_READ_BYTES);
        let (_dir, file) = file_of(&bytes);
        let (scan, seen) = scanned(&file, FILE_MAGIC.len() as u64).unwrap();
        assert!(seen == records, "the records or their offsets differ");
        assert_eq!(
            scan.offsets.iter().collect::<Vec<_>>(),
            records.iter().map(|r| r.0).collect::<Vec<_>>()
        );
        assert_eq!((scan.valid_end, scan.torn_bytes), (bytes.len() as u64, 0));
        assert_eq!(scan.last_frame, *starts.last().unwrap());
        // Up to a frame's start, as startup's check of the frames an
        // index covers: the records before it, and no read past it.
        let until = starts[100];
        let scan = scan_pass(
            &file,
            FILE_MAGIC.len() as u64,
            until,
            Pass::Frames,
            |offset, _| {
                assert!(offset < until, "a record at {offset} read past {until}");
                Ok(())
            },
        )
        .unwrap();
        assert_eq!((scan.valid_end, scan.torn_bytes), (until, 0));
        let (scan, seen) = {
            let mut seen = Vec::new();
            let scan = scan_range(&file, FILE_MAGIC.len() as u64, until, |offset, payload| {
                seen.push((offset, payload.to_vec()));
                Ok(())
            })
            .unwrap();
            (scan, seen)
        };
        let before: Vec<_> = records.iter().filter(|r| r.0 < until).cloned().collect();
        assert!(seen == before, "a scan up to a frame read other records");
        assert_eq!(scan.last_frame, starts[99]);
        // From a frame past the first large one: the records from there.
        let from = starts[30];
        let (_, seen) = scanned(&file, from).unwrap();
        let after: Vec<_> = records.iter().filter(|r| r.0 > from).cloned().collect();
        assert!(seen == after, "a scan from a frame read other records");
    }

    #[test]
    fn a_scan_stops_at_a_torn_tail_and_refuses_damage_before_valid_frames() {
        let (bytes, records, starts) = journal();
        // The last frame torn anywhere in it: the frames before it read.
        let last = *starts.last().unwrap() as usize;
        for cut in [last + 3, last + FRAME_HEADER_LEN + 5, bytes.len() - 1] {
            let (_dir, file) = file_of(&bytes[..cut]);
            let (scan, seen) = scanned(&file, FILE_MAGIC.len() as u64).unwrap();
            let before: Vec<_> = records
                .iter()
                .filter(|r| (r.0 as usize) < last)
                .cloned()
                .collect();
            assert!(
                seen == before,
                "a torn tail at {cut} changed the records read"
            );
            assert_eq!(
                (scan.valid_end, scan.torn_bytes),
                (last as u64, (cut - last) as u64)
            );
        }
        // A byte changed in a frame that valid frames follow, in a small
        // frame and in the largest: refused, whatever window it fell in.
        for frame in [starts[5], starts[7], starts[200]] {
            let mut damaged = bytes.clone();
            damaged[frame as usize + FRAME_HEADER_LEN + 100] ^= 1;
            let (_dir, file) = file_of(&damaged);
            match scanned(&file, FILE_MAGIC.len() as u64) {
                Err(StoreError::Corrupt { offset, .. }) => assert_eq!(offset, frame),
                other => panic!(
                    "damage at frame {frame} not refused: {:?}",
                    other.map(|s| s.0.valid_end)
                ),
            }
        }
    }
}
