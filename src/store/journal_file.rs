//! The journal as one append-only file the service owns.
//!
//! Layout: an 8-byte magic `MFIJRNL1`, then records
//! `[payload length: u32 LE][CRC-32 of payload: u32 LE][payload]` where the
//! payload is an entry's canonical bytes followed by its 32-byte hash.
//! A batch is one `write` followed by one `fdatasync`: the durable barrier.
//! At open, a torn record at the tail (a write cut short by a crash, never
//! acknowledged) is cut off; a bad record anywhere else is corruption and
//! the journal refuses to open.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use crate::domain::entry::{Entry, EntryBody, Hash};

use super::StoreError;

/// Name of the journal file in the data directory.
pub const JOURNAL_FILE_NAME: &str = "journal.log";
/// Largest payload of one record; an entry is a few hundred bytes.
pub const RECORD_LEN_MAX: usize = 1 << 20;

const MAGIC: &[u8; 8] = b"MFIJRNL1";
const HEADER_LEN: usize = 8;

/// The open journal file: the append handle and each entry's offset.
pub struct JournalFile {
    file: File,
    /// `offsets[i]` is where entry `i + 1`'s record starts.
    offsets: Vec<u64>,
    end: u64,
}

impl JournalFile {
    /// Opens (or creates) the journal in `dir`, cutting off a torn tail.
    pub fn open(dir: &Path) -> Result<JournalFile, StoreError> {
        let path = dir.join(JOURNAL_FILE_NAME);
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(StoreError::io(format!("opening {}", path.display())))?;
        if created
            || file
                .metadata()
                .map_err(StoreError::io("reading journal size"))?
                .len()
                == 0
        {
            file.write_all(MAGIC)
                .map_err(StoreError::io("writing journal header"))?;
            file.sync_all()
                .map_err(StoreError::io("syncing new journal"))?;
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(StoreError::io(format!(
                    "syncing directory {}",
                    dir.display()
                )))?;
        }
        let (offsets, end) = scan(&file)?;
        let len = file
            .metadata()
            .map_err(StoreError::io("reading journal size"))?
            .len();
        if end < len {
            tracing::warn!(
                cut_at = end,
                file_len = len,
                "cutting a torn, never-acknowledged record off the journal's tail"
            );
            file.set_len(end)
                .map_err(StoreError::io("truncating torn journal tail"))?;
            file.sync_all()
                .map_err(StoreError::io("syncing truncated journal"))?;
        }
        Ok(JournalFile { file, offsets, end })
    }

    /// Number of entries.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        self.offsets.len() as u64
    }

    /// Appends a batch with one write and one `fdatasync`.
    pub fn append(&mut self, entries: &[Arc<Entry>]) -> Result<(), StoreError> {
        let mut buffer = Vec::with_capacity(entries.len() * 512);
        let mut new_offsets = Vec::with_capacity(entries.len());
        for entry in entries {
            new_offsets.push(self.end + buffer.len() as u64);
            let mut payload = entry.body.canonical_bytes();
            payload.extend_from_slice(&entry.hash);
            if payload.len() > RECORD_LEN_MAX {
                return Err(StoreError::Corrupt {
                    offset: self.end,
                    message: format!(
                        "entry {} is {} bytes, over the record limit",
                        entry.body.sequence,
                        payload.len()
                    ),
                });
            }
            buffer.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            buffer.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            buffer.extend_from_slice(&payload);
        }
        self.file
            .write_all(&buffer)
            .map_err(StoreError::io("appending to the journal"))?;
        self.file
            .sync_data()
            .map_err(StoreError::io("fdatasync of the journal"))?;
        self.end += buffer.len() as u64;
        self.offsets.extend(new_offsets);
        Ok(())
    }

    /// A handle for reading entries, independent of the append handle.
    pub fn try_clone_file(&self) -> Result<File, StoreError> {
        self.file
            .try_clone()
            .map_err(StoreError::io("cloning journal handle"))
    }

    /// Offsets of the entries, for readers.
    pub fn offsets(&self) -> &[u64] {
        &self.offsets
    }
}

/// Reads the entry whose record starts at `offset`.
pub fn read_entry_at(file: &File, offset: u64, sequence: u64) -> Result<Entry, StoreError> {
    let mut header = [0u8; HEADER_LEN];
    file.read_exact_at(&mut header, offset)
        .map_err(StoreError::io(format!("reading entry {sequence}")))?;
    let (len, crc) = parse_header(&header);
    if !(33..=RECORD_LEN_MAX).contains(&len) {
        return Err(StoreError::Corrupt {
            offset,
            message: format!("record length {len}"),
        });
    }
    let mut payload = vec![0u8; len];
    file.read_exact_at(&mut payload, offset + HEADER_LEN as u64)
        .map_err(StoreError::io(format!("reading entry {sequence}")))?;
    if crc32fast::hash(&payload) != crc {
        return Err(StoreError::Corrupt {
            offset,
            message: format!("checksum of entry {sequence}"),
        });
    }
    decode_payload(&payload, sequence)
}

fn decode_payload(payload: &[u8], sequence: u64) -> Result<Entry, StoreError> {
    let (bytes, hash) = payload.split_at(payload.len() - 32);
    let body = EntryBody::from_canonical_bytes(bytes)
        .map_err(|source| StoreError::Decode { sequence, source })?;
    let hash: Hash = hash.try_into().expect("split_at left exactly 32 bytes");
    Ok(Entry { body, hash })
}

fn parse_header(header: &[u8; HEADER_LEN]) -> (usize, u32) {
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    (len, crc)
}

/// Finds every complete record; returns their offsets and where the valid
/// part of the file ends. Fails if a bad record is followed by more than one
/// batch's worth of bytes (corruption, not a torn write).
fn scan(file: &File) -> Result<(Vec<u64>, u64), StoreError> {
    let len = file
        .metadata()
        .map_err(StoreError::io("reading journal size"))?
        .len();
    let mut reader = BufReader::with_capacity(
        1 << 20,
        file.try_clone().map_err(StoreError::io("cloning"))?,
    );
    reader
        .seek(SeekFrom::Start(0))
        .map_err(StoreError::io("seeking journal"))?;
    let mut magic = [0u8; 8];
    reader
        .read_exact(&mut magic)
        .map_err(StoreError::io("reading journal header"))?;
    if &magic != MAGIC {
        return Err(StoreError::Corrupt {
            offset: 0,
            message: "not an mfi-ledger journal (bad magic)".into(),
        });
    }
    let mut offsets = Vec::new();
    let mut offset = MAGIC.len() as u64;
    let mut payload = Vec::new();
    loop {
        let remaining = len - offset;
        if remaining == 0 {
            return Ok((offsets, offset));
        }
        let mut header = [0u8; HEADER_LEN];
        let bad = |message: &str| StoreError::Corrupt {
            offset,
            message: message.to_owned(),
        };
        let torn = if remaining < HEADER_LEN as u64 {
            true
        } else {
            reader
                .read_exact(&mut header)
                .map_err(StoreError::io("reading journal"))?;
            let (record_len, crc) = parse_header(&header);
            if !(33..=RECORD_LEN_MAX).contains(&record_len)
                || (HEADER_LEN + record_len) as u64 > remaining
            {
                true
            } else {
                payload.resize(record_len, 0);
                reader
                    .read_exact(&mut payload)
                    .map_err(StoreError::io("reading journal"))?;
                crc32fast::hash(&payload) != crc
            }
        };
        if torn {
            // A crash can only tear the last batch written, which is at most
            // one batch of records.
            if remaining > super::disk::BATCH_BYTES_MAX {
                return Err(bad(
                    "bad record followed by more data than one batch; refusing to cut it",
                ));
            }
            return Ok((offsets, offset));
        }
        offsets.push(offset);
        offset += (HEADER_LEN + payload.len()) as u64;
    }
}
