//! `journal.idx`: the journal's index beside it, so that startup neither
//! reads the whole journal nor holds every entry's offset and request-id
//! hash in memory.
//!
//! Derived from the journal, as `merkle.tree` is, it covers entries 1 to S:
//!
//! ```text
//! header   "MFIJIDX1" | SipHash key (16) | S (u64)
//! offsets  S x u64: where each entry's record starts in journal.log
//! hashes   S x (u64 hash, u64 sequence), sorted: each request id's hash
//! trailer  last frame's start (u64) | its end (u64) | entry S's offset (u64)
//!          | entry S's hash (32) | CRC-32 of all before (u32) | "IDX."
//! ```
//!
//! All integers little-endian. It is written whole to a new file, made
//! durable and renamed over the old one: when the store is released at a
//! clean stop, when the journal is opened with no index or with many
//! entries past it (see `JournalFile::open`), and while the server runs,
//! once many entries are past it (`DiskStore::index_journal`). Startup uses it only if its CRC holds
//! and it is tied to the journal: the frame it names as the last is a whole
//! frame of the journal ending where it says, holding entry S with that
//! hash. The journal only grows at its end (a torn frame cut off at startup
//! was never in an index: an index covers durable frames only), so an
//! index that holds there covers the journal's first S entries. Anything
//! else (no file, a torn or edited one, a journal replaced or cut shorter)
//! and the journal is read whole, as without an index, and a new index is
//! written.
//!
//! In memory it keeps a Bloom filter of the hashes (1 byte an entry, its
//! probes in one cache line: about 3 lookups in 100 of a new id read the
//! file) and the first hash of each
//! block of [`BLOCK`] hashes, so that a lookup reads one block (4 KiB);
//! an entry's offset is read from the file when the entry is.

use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, RandomState};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::domain::entry::Hash;
use crate::domain::request_index::{FoundRequests, HashKey};

use super::StoreError;
use super::offsets::Offsets;

/// Name of the index file in the data directory.
pub const JOURNAL_INDEX_FILE_NAME: &str = "journal.idx";

const MAGIC: &[u8; 8] = b"MFIJIDX1";
const END_MAGIC: &[u8; 4] = b"IDX.";
const HEADER_LEN: u64 = 8 + 16 + 8;
const TRAILER_LEN: u64 = 8 + 8 + 8 + 32 + 4 + 4;
/// Hashes per block a lookup reads (16 bytes each: 4 KiB).
const BLOCK: u64 = 256;
/// Bloom filter bits per entry and probes per lookup.
const BLOOM_BITS_PER_ENTRY: u64 = 8;
const BLOOM_PROBES: u32 = 3;

/// Where the last entry an index covers sits in the journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Last {
    /// Where the frame holding it starts.
    pub frame_start: u64,
    /// Where that frame ends: the journal past the index starts here.
    pub frame_end: u64,
    /// Where its record starts.
    pub offset: u64,
    /// Its hash.
    pub hash: Hash,
}

/// An index file as read or written: what lookups need of it.
pub struct JournalIndex {
    file: File,
    path: PathBuf,
    key: HashKey,
    count: u64,
    last: Last,
    /// Bit `i` set when some hash probes it.
    bloom: Vec<u64>,
    bloom_bits: u64,
    /// The first hash of each block of [`BLOCK`] hashes.
    fences: Vec<u64>,
}

impl std::fmt::Debug for JournalIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalIndex")
            .field("path", &self.path)
            .field("count", &self.count)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

/// Bits of a Bloom filter's block: one 64-byte cache line.
const BLOOM_BLOCK_BITS: u64 = 512;

/// The Bloom filter's probe positions for `hash` among `bits` bits (a
/// multiple of [`BLOOM_BLOCK_BITS`]): all in one block, so that a lookup
/// or an insert touches one cache line, not [`BLOOM_PROBES`] of them. The
/// hash's high half picks the block (by a multiply and shift), three 9-bit
/// fields of its low half the bits in it: the block grows with the hash,
/// so the filter built at open from the hashes in sorted order is written
/// front to back (at 10^7 entries, each insert a cache miss took 0.74 s
/// of a restart's 10; BENCHMARKS.md).
fn probes(hash: u64, bits: u64) -> impl Iterator<Item = u64> {
    let block = ((hash >> 32) * (bits / BLOOM_BLOCK_BITS)) >> 32;
    let low = hash & u64::from(u32::MAX);
    (0..u64::from(BLOOM_PROBES))
        .map(move |i| block * BLOOM_BLOCK_BITS + ((low >> (9 * i)) & (BLOOM_BLOCK_BITS - 1)))
}

/// Builds the in-memory parts as the sorted hashes go by.
struct Summary {
    bloom: Vec<u64>,
    bloom_bits: u64,
    fences: Vec<u64>,
    seen: u64,
    previous: Option<(u64, u64)>,
}

impl Summary {
    fn new(count: u64) -> Summary {
        let bloom_bits = (count * BLOOM_BITS_PER_ENTRY)
            .div_ceil(BLOOM_BLOCK_BITS)
            .max(1)
            * BLOOM_BLOCK_BITS;
        Summary {
            bloom: vec![0; (bloom_bits / 64) as usize],
            bloom_bits,
            fences: Vec::with_capacity(count.div_ceil(BLOCK) as usize),
            seen: 0,
            previous: None,
        }
    }

    /// Notes the next `(hash, sequence)`; false when out of order.
    fn note(&mut self, hash: u64, sequence: u64) -> bool {
        if !follows(&mut self.previous, (hash, sequence)) {
            return false;
        }
        if self.seen.is_multiple_of(BLOCK) {
            self.fences.push(hash);
        }
        self.seen += 1;
        for bit in probes(hash, self.bloom_bits) {
            self.bloom[(bit / 64) as usize] |= 1 << (bit % 64);
        }
        true
    }
}

/// Whether `record` comes after `previous` in the index's strict order
/// (by hash, then sequence); if so it becomes `previous`.
fn follows(previous: &mut Option<(u64, u64)>, record: (u64, u64)) -> bool {
    if previous.is_some_and(|previous| previous >= record) {
        return false;
    }
    *previous = Some(record);
    true
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

impl JournalIndex {
    /// How many entries it covers (1 to this).
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Where its last entry sits in the journal.
    pub fn last(&self) -> Last {
        self.last
    }

    /// The SipHash key its hashes are made under.
    pub fn key(&self) -> HashKey {
        self.key
    }

    /// The record offsets of entries `first..first + count` (from 1), all
    /// within the index.
    pub fn offsets(&self, first: u64, count: u64) -> Result<Vec<u64>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        if first == 0 || first.saturating_add(count) > self.count + 1 {
            return Err(StoreError::Inconsistent(format!(
                "entries {first} to {} are not all in the journal's index of {} entries",
                first.saturating_add(count - 1),
                self.count
            )));
        }
        let mut bytes = vec![0u8; (count * 8) as usize];
        self.file
            .read_exact_at(&mut bytes, HEADER_LEN + (first - 1) * 8)
            .map_err(StoreError::io(format!("reading {}", self.path.display())))?;
        Ok(bytes.chunks_exact(8).map(|b| le_u64(b, 0)).collect())
    }

    /// The sequences of the entries whose request-id hash is `hash`.
    fn lookup(&self, hash: u64) -> Result<Vec<u64>, StoreError> {
        if !probes(hash, self.bloom_bits)
            .all(|bit| self.bloom[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
        {
            return Ok(Vec::new());
        }
        // The first block that may hold `hash`: the one before the first
        // whose first hash is not below it.
        let mut block =
            (self.fences.partition_point(|fence| *fence < hash) as u64).saturating_sub(1);
        let hashes_at = HEADER_LEN + self.count * 8;
        let mut found = Vec::new();
        let mut bytes = Vec::new();
        while block * BLOCK < self.count {
            let records = BLOCK.min(self.count - block * BLOCK);
            bytes.resize((records * 16) as usize, 0);
            self.file
                .read_exact_at(&mut bytes, hashes_at + block * BLOCK * 16)
                .map_err(StoreError::io(format!("reading {}", self.path.display())))?;
            let mut past = false;
            for record in bytes.chunks_exact(16) {
                let (h, sequence) = (le_u64(record, 0), le_u64(record, 8));
                if h == hash {
                    found.push(sequence);
                } else if h > hash {
                    past = true;
                    break;
                }
            }
            if past {
                break;
            }
            block += 1;
        }
        found.sort_unstable();
        Ok(found)
    }

    /// Reads `dir`'s index, if there is one that holds and is tied to the
    /// journal `journal` of `journal_len` bytes. `None`, with a warning
    /// saying why, for one that is not (the caller reads the journal
    /// whole); `None` quietly when there is none.
    pub fn load(dir: &Path, journal: &File, journal_len: u64) -> Option<JournalIndex> {
        let path = dir.join(JOURNAL_INDEX_FILE_NAME);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "the journal's index cannot be opened; reading the journal whole");
                return None;
            }
        };
        match JournalIndex::read(file, path.clone(), journal, journal_len) {
            Ok(index) => Some(index),
            Err(why) => {
                tracing::warn!(%why, path = %path.display(), "the journal's index is not used; reading the journal whole");
                None
            }
        }
    }

    fn read(
        file: File,
        path: PathBuf,
        journal: &File,
        journal_len: u64,
    ) -> Result<JournalIndex, String> {
        let (key, count, last, summary) = parse(&file, Summary::new)?;
        tied_to_journal(journal, journal_len, count, &last)?;
        Ok(JournalIndex::of(file, path, key, count, last, summary))
    }

    /// Writes the index of entries 1 to `old`'s count and then `tail`'s,
    /// in `dir`, replacing the old one: `tail_offsets` are the offsets of
    /// the entries after `old`'s, `tail_hashes` their `(hash, sequence)`
    /// under `key` (`old`'s key when there is an old one), in any order
    /// (sorted here), and `last` where the last of them sits.
    pub fn write(
        dir: &Path,
        key: HashKey,
        old: Option<&JournalIndex>,
        tail_offsets: &Offsets,
        tail_hashes: &mut [(u64, u64)],
        last: Last,
    ) -> Result<JournalIndex, StoreError> {
        if old.is_some_and(|old| old.key != key) {
            return Err(StoreError::Inconsistent(
                "the journal's index is extended under another key".into(),
            ));
        }
        let old_count = old.map_or(0, |old| old.count);
        let count = old_count + tail_offsets.len() as u64;
        if tail_hashes.len() != tail_offsets.len() {
            return Err(StoreError::Inconsistent(
                "the journal's index is given offsets and hashes of different entries".into(),
            ));
        }
        tail_hashes.sort_unstable();
        let path = dir.join(JOURNAL_INDEX_FILE_NAME);
        let temporary = dir.join(format!("{JOURNAL_INDEX_FILE_NAME}.new"));
        // Written whole to a new file: one that could not be (a full disk)
        // is removed, not left beside the index.
        let written = (|| -> Result<Summary, StoreError> {
            let writing = |error| StoreError::io(format!("writing {}", temporary.display()))(error);
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(super::DATA_FILE_MODE)
                .open(&temporary)
                .map_err(writing)?;
            let mut out = Crc32Writer {
                inner: BufWriter::with_capacity(1 << 20, file),
                crc: crc32fast::Hasher::new(),
            };
            out.write_all(MAGIC).map_err(writing)?;
            out.write_all(&key.0).map_err(writing)?;
            out.write_all(&count.to_le_bytes()).map_err(writing)?;
            let mut chunk = vec![0u8; 1 << 16];
            if let Some(old) = old {
                let mut at = HEADER_LEN;
                let mut left = old_count * 8;
                while left > 0 {
                    let take = left.min(chunk.len() as u64) as usize;
                    old.file
                        .read_exact_at(&mut chunk[..take], at)
                        .map_err(StoreError::io(format!("reading {}", old.path.display())))?;
                    out.write_all(&chunk[..take]).map_err(writing)?;
                    at += take as u64;
                    left -= take as u64;
                }
            }
            for offset in tail_offsets.iter() {
                out.write_all(&offset.to_le_bytes()).map_err(writing)?;
            }
            // The old hashes and the new, merged in order.
            let mut summary = Summary::new(count);
            let mut new = tail_hashes.iter().copied().peekable();
            let mut put = |out: &mut Crc32Writer, hash: u64, sequence: u64| {
                if !summary.note(hash, sequence) {
                    return Err(StoreError::Inconsistent(format!(
                        "entry {sequence} is indexed twice in the journal's index"
                    )));
                }
                out.write_all(&hash.to_le_bytes())
                    .and_then(|()| out.write_all(&sequence.to_le_bytes()))
                    .map_err(writing)
            };
            if let Some(old) = old {
                let mut at = HEADER_LEN + old_count * 8;
                let mut left = old_count * 16;
                while left > 0 {
                    let take = left.min(chunk.len() as u64) as usize;
                    old.file
                        .read_exact_at(&mut chunk[..take], at)
                        .map_err(StoreError::io(format!("reading {}", old.path.display())))?;
                    for record in chunk[..take].chunks_exact(16) {
                        let (hash, sequence) = (le_u64(record, 0), le_u64(record, 8));
                        while let Some(&(h, s)) =
                            new.peek().filter(|next| **next < (hash, sequence))
                        {
                            put(&mut out, h, s)?;
                            new.next();
                        }
                        put(&mut out, hash, sequence)?;
                    }
                    at += take as u64;
                    left -= take as u64;
                }
            }
            for (hash, sequence) in new {
                put(&mut out, hash, sequence)?;
            }
            let mut trailer = Vec::with_capacity(TRAILER_LEN as usize);
            trailer.extend_from_slice(&last.frame_start.to_le_bytes());
            trailer.extend_from_slice(&last.frame_end.to_le_bytes());
            trailer.extend_from_slice(&last.offset.to_le_bytes());
            trailer.extend_from_slice(&last.hash);
            out.write_all(&trailer).map_err(writing)?;
            let crc = out.crc.clone().finalize();
            let mut file = out
                .inner
                .into_inner()
                .map_err(|error| writing(error.into_error()))?;
            file.write_all(&crc.to_le_bytes())
                .and_then(|()| file.write_all(END_MAGIC))
                .and_then(|()| file.sync_data())
                .map_err(writing)?;
            drop(file);
            Ok(summary)
        })();
        let summary = match written {
            Ok(summary) => summary,
            Err(error) => {
                let _ = std::fs::remove_file(&temporary);
                return Err(error);
            }
        };
        std::fs::rename(&temporary, &path)
            .map_err(StoreError::io(format!("renaming {}", temporary.display())))?;
        super::journal_file::sync_dir(dir)?;
        let file =
            File::open(&path).map_err(StoreError::io(format!("opening {}", path.display())))?;
        Ok(JournalIndex::of(file, path, key, count, last, summary))
    }

    fn of(
        file: File,
        path: PathBuf,
        key: HashKey,
        count: u64,
        last: Last,
        summary: Summary,
    ) -> JournalIndex {
        JournalIndex {
            file,
            path,
            key,
            count,
            last,
            bloom: summary.bloom,
            bloom_bits: summary.bloom_bits,
            fences: summary.fences,
        }
    }
}

/// Reads an index file whole: its key, count, last entry and what
/// `records(count)` builds of its sorted `(hash, sequence)` records (the
/// server's in-memory summary, or `verify`'s sum of their digests), if
/// its size, order and CRC hold (not yet whether it is the journal's).
fn parse<R: HashRecords>(
    file: &File,
    records: impl FnOnce(u64) -> R,
) -> Result<(HashKey, u64, Last, R), String> {
    let io = |error: std::io::Error| format!("reading it: {error}");
    let len = file.metadata().map_err(io)?.len();
    if len < HEADER_LEN + TRAILER_LEN {
        return Err(format!("{len} bytes, shorter than its header and trailer"));
    }
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut crc = crc32fast::Hasher::new();
    let mut header = [0u8; HEADER_LEN as usize];
    reader.read_exact(&mut header).map_err(io)?;
    crc.update(&header);
    if &header[..8] != MAGIC {
        return Err("not a journal index (bad magic)".into());
    }
    let key = HashKey(header[8..24].try_into().expect("16 bytes"));
    let count = le_u64(&header, 24);
    if count == 0
        || count
            .checked_mul(24)
            .and_then(|b| b.checked_add(HEADER_LEN + TRAILER_LEN))
            != Some(len)
    {
        return Err(format!(
            "{len} bytes, not the size of an index of {count} entries"
        ));
    }
    let mut chunk = vec![0u8; 1 << 16];
    let mut last_offset = 0;
    let mut left = count * 8;
    while left > 0 {
        let take = left.min(chunk.len() as u64) as usize;
        reader.read_exact(&mut chunk[..take]).map_err(io)?;
        crc.update(&chunk[..take]);
        last_offset = le_u64(&chunk, take - 8);
        left -= take as u64;
    }
    let mut records = records(count);
    let mut left = count * 16;
    while left > 0 {
        let take = left.min(chunk.len() as u64) as usize;
        reader.read_exact(&mut chunk[..take]).map_err(io)?;
        crc.update(&chunk[..take]);
        for record in chunk[..take].chunks_exact(16) {
            if !records.note(le_u64(record, 0), le_u64(record, 8)) {
                return Err("its hashes are out of order".into());
            }
        }
        left -= take as u64;
    }
    let mut trailer = [0u8; TRAILER_LEN as usize];
    reader.read_exact(&mut trailer).map_err(io)?;
    crc.update(&trailer[..TRAILER_LEN as usize - 8]);
    let stored = u32::from_le_bytes(trailer[56..60].try_into().expect("4 bytes"));
    if &trailer[60..] != END_MAGIC || crc.finalize() != stored {
        return Err("its checksum does not hold (a torn or edited file)".into());
    }
    let last = Last {
        frame_start: le_u64(&trailer, 0),
        frame_end: le_u64(&trailer, 8),
        offset: le_u64(&trailer, 16),
        hash: trailer[24..56].try_into().expect("32 bytes"),
    };
    if last.offset != last_offset {
        return Err("its last offset is not its trailer's".into());
    }
    Ok((key, count, last, records))
}

/// What reading an index's sorted `(hash, sequence)` records builds.
trait HashRecords {
    /// Notes the next record; false when it is not after the one before.
    fn note(&mut self, hash: u64, sequence: u64) -> bool;
}

impl HashRecords for Summary {
    fn note(&mut self, hash: u64, sequence: u64) -> bool {
        Summary::note(self, hash, sequence)
    }
}

/// `verify`'s reading of the records: their order and the sum of their
/// [`entry_digest`]s (the server's summary, a Bloom filter of a byte an
/// entry written at random places, would be built only to be dropped).
struct DigestSum<'a> {
    key: &'a RandomState,
    previous: Option<(u64, u64)>,
    sum: u64,
}

impl HashRecords for DigestSum<'_> {
    fn note(&mut self, hash: u64, sequence: u64) -> bool {
        if !follows(&mut self.previous, (hash, sequence)) {
            return false;
        }
        self.sum = self
            .sum
            .wrapping_add(entry_digest(self.key, hash, sequence));
        true
    }
}

/// An entry's request-id hash with its sequence number, under `key`, std's
/// `RandomState` (SipHash with keys drawn at random when `verify` starts,
/// and kept to itself): summed over every entry, what `verify` compares
/// the index's records with the journal's by, in any order. Two different
/// sets of records (of one size, each without repeats: the index's are in
/// strict order) give the same sum with a chance of about one in 2^64,
/// whatever they are: the keys are drawn after the file was written and
/// never leave the process, so no file can be made to match a journal it
/// is not.
pub fn entry_digest(key: &RandomState, hash: u64, sequence: u64) -> u64 {
    key.hash_one((hash, sequence))
}

/// What `verify` found of the journal's index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum IndexCheck {
    /// There is none (a directory a server never stopped or started in
    /// since it had entries, or one copied without it).
    #[default]
    Absent,
    /// The server would not use it (it reads the journal whole, and writes
    /// it again): why.
    NotUsed(String),
    /// It is the journal's: every offset and request-id hash of its
    /// entries, this many, is the journal's.
    Matches(u64),
}

/// An index file as `verify` reads it: whole and sound, to be compared
/// with the journal.
pub struct IndexFile {
    file: File,
    key: HashKey,
    count: u64,
    last: Last,
    /// The key of this verification's [`entry_digest`]s.
    digests: RandomState,
    /// The sum of the digests of its `(hash, sequence)` records.
    digest_sum: u64,
}

/// What `verify` gathered of the journal's entries the index covers, as
/// its passes read them, to compare with the index ([`IndexFile::compare`]).
#[derive(Debug, Default)]
pub struct Covered {
    /// How many of the entries the index covers the journal holds.
    pub entries: u64,
    /// The first of them whose record the index puts elsewhere (or whose
    /// offset in the index could not be read): why.
    pub misplaced: Option<String>,
    /// The sum of their digests (`entry_digest`).
    pub digest_sum: u64,
}

impl Covered {
    /// Adds the next entries' (`later`, from the journal's entries after
    /// these), keeping the first misplaced one.
    pub fn add(&mut self, later: Covered) {
        self.entries += later.entries;
        self.digest_sum = self.digest_sum.wrapping_add(later.digest_sum);
        if self.misplaced.is_none() {
            self.misplaced = later.misplaced;
        }
    }
}

impl IndexFile {
    /// `dir`'s index file: `Ok(None)` when there is none, `Err(why)` when
    /// it is not sound (the server would not use it).
    pub fn open(dir: &Path) -> Result<Option<IndexFile>, String> {
        let file = match File::open(dir.join(JOURNAL_INDEX_FILE_NAME)) {
            Ok(file) => file,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(format!("opening it: {error}")),
        };
        let digests = RandomState::new();
        let (
            key,
            count,
            last,
            DigestSum {
                sum: digest_sum, ..
            },
        ) = parse(&file, |_| DigestSum {
            key: &digests,
            previous: None,
            sum: 0,
        })?;
        Ok(Some(IndexFile {
            file,
            key,
            count,
            last,
            digests,
            digest_sum,
        }))
    }

    /// The key its request-id hashes are made under.
    pub fn key(&self) -> HashKey {
        self.key
    }

    /// How many entries it covers.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Compares `entries`, the journal's entries from sequence `first` on
    /// (their offsets, and request-id hashes under [`IndexFile::key`]), one
    /// after the other with no gap, with what the index holds of those it
    /// covers; the others are left out. `first` is 1 or more. Each batch
    /// of the journal is compared on its own, on whichever thread checks
    /// it, and the results added in the journal's order
    /// ([`Covered::add`]).
    pub fn cover(&self, first: u64, entries: &[(u64, u64)]) -> Covered {
        debug_assert!(first >= 1, "entries are numbered from 1");
        let covered = entries
            .len()
            .min(self.count.saturating_sub(first - 1) as usize);
        let mut found = Covered {
            entries: covered as u64,
            ..Covered::default()
        };
        if covered == 0 {
            return found;
        }
        let mut bytes = vec![0u8; covered * 8];
        if let Err(error) = self
            .file
            .read_exact_at(&mut bytes, HEADER_LEN + (first - 1) * 8)
        {
            found.misplaced = Some(format!("reading it: {error}"));
            return found;
        }
        for ((sequence, indexed), &(offset, hash)) in (first..)
            .zip(bytes.chunks_exact(8))
            .zip(&entries[..covered])
        {
            let indexed = le_u64(indexed, 0);
            if indexed != offset && found.misplaced.is_none() {
                found.misplaced = Some(format!(
                    "entry {sequence}: the index puts its record at byte {indexed}, the journal at {offset}"
                ));
            }
            found.digest_sum =
                found
                    .digest_sum
                    .wrapping_add(entry_digest(&self.digests, hash, sequence));
        }
        found
    }

    /// Compares it with the journal `journal` of `journal_len` bytes, of
    /// whose entries `covered` is what [`IndexFile::cover`] found: `Ok`
    /// with whether the server would use it, `Err` naming what differs
    /// when it would use one that is not the journal's.
    ///
    /// Its request-id hashes, kept sorted, are compared with the journal's
    /// as two sums of keyed digests (`entry_digest`), the index's worked
    /// out as it was read: sorting the journal's hashes to compare them one
    /// by one held a list as long as the journal and took a pass of its own
    /// after the others.
    pub fn compare(
        &self,
        journal: &File,
        journal_len: u64,
        covered: Covered,
    ) -> Result<IndexCheck, String> {
        if covered.entries < self.count {
            return Ok(IndexCheck::NotUsed(format!(
                "it covers {} entries and the journal holds {}",
                self.count, covered.entries
            )));
        }
        if let Err(why) = tied_to_journal(journal, journal_len, self.count, &self.last) {
            return Ok(IndexCheck::NotUsed(why));
        }
        if let Some(why) = covered.misplaced {
            return Err(why);
        }
        if covered.digest_sum != self.digest_sum {
            return Err(format!(
                "its request-id hashes are not the journal's: {}",
                self.first_wrong_hash(journal)
            ));
        }
        Ok(IndexCheck::Matches(self.count))
    }

    /// Which of its `(hash, sequence)` records the journal does not give,
    /// once the sums said one does not: each record's entry read from the
    /// journal at the offset the index gives it (checked already to be the
    /// journal's) and its request id hashed. Only on that failure, so its
    /// cost (an entry read and decoded a record) is never a run's that
    /// passes.
    fn first_wrong_hash(&self, journal: &File) -> String {
        let hashes_at = HEADER_LEN + self.count * 8;
        let mut chunk = vec![0u8; 1 << 16];
        let mut offset = [0u8; 8];
        let mut at = 0u64;
        while at < self.count {
            let records = (self.count - at).min(chunk.len() as u64 / 16);
            let bytes = &mut chunk[..(records * 16) as usize];
            if let Err(error) = self.file.read_exact_at(bytes, hashes_at + at * 16) {
                return format!("reading it: {error}");
            }
            for record in bytes.chunks_exact(16) {
                let (hash, sequence) = (le_u64(record, 0), le_u64(record, 8));
                if sequence == 0 || sequence > self.count {
                    return format!(
                        "a record names entry {sequence}, which it does not cover (1 to {})",
                        self.count
                    );
                }
                let read = self
                    .file
                    .read_exact_at(&mut offset, HEADER_LEN + (sequence - 1) * 8)
                    .map_err(|error| format!("reading it: {error}"))
                    .and_then(|()| {
                        super::journal_file::read_entry_at(
                            journal,
                            u64::from_le_bytes(offset),
                            sequence,
                        )
                        .map_err(|error| format!("entry {sequence}: {error}"))
                    });
                let entry = match read {
                    Ok(entry) => entry,
                    Err(why) => return why,
                };
                let given = self.key.hash(entry.body.request_id.as_str());
                if given != hash {
                    return format!(
                        "entry {sequence}: it holds request-id hash {hash:016x} for it, the \
                         journal's entry gives {given:016x}"
                    );
                }
            }
            at += records;
        }
        // Every record names a different covered entry and gives its hash:
        // the records are the journal's, so the sums could only differ if a
        // file changed while verify read it.
        "every record matches its entry when read again (did the journal or the index change \
         while verify read them?)"
            .into()
    }
}

/// A writer that keeps the CRC of what went through it.
struct Crc32Writer {
    inner: BufWriter<File>,
    crc: crc32fast::Hasher,
}

impl Write for Crc32Writer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.crc.update(&bytes[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Checks that the journal's frame at `last.frame_start` is whole, ends at
/// `last.frame_end`, and holds entry `count` at `last.offset` with hash
/// `last.hash`.
fn tied_to_journal(
    journal: &File,
    journal_len: u64,
    count: u64,
    last: &Last,
) -> Result<(), String> {
    use super::journal_file::{FRAME_HEADER_LEN, frame_header, records_of};
    let differs = |what: &str| format!("the journal differs from it ({what})");
    if last.frame_end > journal_len || last.frame_start >= last.frame_end {
        return Err(differs("shorter than the index"));
    }
    let mut header = [0u8; FRAME_HEADER_LEN];
    journal
        .read_exact_at(&mut header, last.frame_start)
        .map_err(|error| format!("reading the journal: {error}"))?;
    let Some((body_len, crc, records)) = frame_header(&header) else {
        return Err(differs("no frame where its last frame starts"));
    };
    let body_start = last.frame_start + FRAME_HEADER_LEN as u64;
    if body_start + body_len as u64 != last.frame_end {
        return Err(differs("its last frame ends elsewhere"));
    }
    let mut body = vec![0u8; body_len];
    journal
        .read_exact_at(&mut body, body_start)
        .map_err(|error| format!("reading the journal: {error}"))?;
    if crc32fast::hash(&body) != crc {
        return Err(differs("its last frame's checksum"));
    }
    let Some(records) = records_of(&body, records) else {
        return Err(differs("its last frame's records"));
    };
    // Its last entry is the frame's last record: the journal past the
    // index starts with the next frame.
    let Some((_, payload)) = records
        .into_iter()
        .last()
        .filter(|(at, _)| body_start + *at as u64 == last.offset)
    else {
        return Err(differs(
            "its last entry is not its last frame's last record",
        ));
    };
    let (canonical, hash) = super::journal_file::payload::decode(&body[payload])
        .map_err(|error| differs(&format!("its last entry: {error}")))?;
    let sequence = crate::domain::entry::peek_request_id(&canonical)
        .map(|(sequence, _)| sequence)
        .map_err(|error| differs(&format!("its last entry does not decode: {error}")))?;
    if sequence != count || hash != last.hash {
        return Err(differs(&format!(
            "entry {sequence} where its entry {count} was"
        )));
    }
    Ok(())
}

impl FoundRequests for JournalIndex {
    fn candidates(&self, key: u64) -> Result<Vec<u64>, String> {
        self.lookup(key).map_err(|error| error.to_string())
    }

    fn hash_key(&self) -> HashKey {
        self.key
    }

    fn len(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::domain::entry::Entry;
    use crate::store::journal_file::crash_states::entries;
    use crate::store::journal_file::{JOURNAL_FILE_NAME, JournalFile};

    fn append_in(journal: &mut JournalFile, entries: &[Arc<Entry>], batch: usize) {
        for chunk in entries.chunks(batch) {
            journal.append(chunk).unwrap();
        }
    }

    /// Every entry's offset is where it is, and its request id names it.
    fn finds_every_entry(journal: &mut JournalFile, entries: &[Arc<Entry>]) {
        assert_eq!(journal.len(), entries.len() as u64);
        let file = journal.try_clone_file().unwrap();
        for (entry, offset) in entries.iter().zip(journal.offsets()) {
            let read =
                crate::store::read_entry_at_offset(&file, offset, entry.body.sequence).unwrap();
            assert_eq!(read.hash, entry.hash, "entry {}", entry.body.sequence);
        }
        let index = journal.take_request_index();
        assert_eq!(index.len(), entries.len());
        for entry in entries {
            let found: Vec<u64> = index
                .candidates(entry.body.request_id.as_str())
                .unwrap()
                .collect();
            assert_eq!(found, vec![entry.body.sequence]);
        }
        assert_eq!(index.candidates("request-none").unwrap().count(), 0);
    }

    #[test]
    fn the_index_is_written_at_the_stop_and_after_a_crash_and_read_instead_of_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let all = entries(400);
        let mut journal = JournalFile::open(dir.path()).unwrap();
        append_in(&mut journal, &all[..300], 7);
        assert_eq!(journal.indexed(), 0);
        // A clean stop writes it.
        journal.write_index().unwrap();
        assert_eq!(journal.indexed(), 300);
        drop(journal);

        // The next start reads the index, and none of the journal's frames
        // before its end: a byte changed in the first frame goes unseen by
        // the open ...
        let path = dir.path().join(JOURNAL_FILE_NAME);
        let pristine = std::fs::read(&path).unwrap();
        let mut damaged = pristine.clone();
        damaged[40] ^= 0x55;
        std::fs::write(&path, &damaged).unwrap();
        let mut journal = JournalFile::open(dir.path()).unwrap();
        assert_eq!(journal.indexed(), 300);
        // ... but the check run beside the rest of startup (recovery waits
        // for it before the server serves) finds it.
        let check = journal.take_frame_check().expect("a check of the frames");
        let found = check.join().unwrap().expect_err("the damage is found");
        assert!(found.to_string().contains("refusing to cut"), "{found}");
        drop(journal);
        std::fs::write(&path, &pristine).unwrap();
        let mut journal = JournalFile::open(dir.path()).unwrap();
        let check = journal.take_frame_check().expect("a check of the frames");
        check.join().unwrap().expect("a sound journal checks");
        finds_every_entry(&mut journal, &all[..300]);

        // Entries past the index and a crash (no stop): the next start reads
        // them and keeps them in memory beside the index, which the next
        // clean stop extends.
        append_in(&mut journal, &all[300..], 30);
        drop(journal);
        let mut journal = JournalFile::open(dir.path()).unwrap();
        assert_eq!(journal.indexed(), 300);
        journal.write_index().unwrap();
        assert_eq!(journal.indexed(), 400);
        finds_every_entry(&mut journal, &all);
        drop(journal);
        let mut journal = JournalFile::open(dir.path()).unwrap();
        assert_eq!(journal.indexed(), 400);
        finds_every_entry(&mut journal, &all);
    }

    /// A server that runs long has its journal's index written again
    /// while it appends: the job reads only what was durable when it was
    /// taken, appends go on meanwhile, and the index installed covers the
    /// job's entries, the later ones past it.
    #[test]
    fn the_index_is_written_again_while_entries_are_appended() {
        let dir = tempfile::tempdir().unwrap();
        let all = entries(500);
        let mut journal = JournalFile::open(dir.path()).unwrap();
        // The writer's request index, under the key the journal opened with.
        let mut requests = journal.take_request_index();
        append_in(&mut journal, &all[..200], 9);
        assert!(journal.index_job(201).unwrap().is_none(), "under the bound");
        let job = journal
            .index_job(200)
            .unwrap()
            .expect("200 entries past no index");
        // Appends go on while the job runs (without the journal's lock).
        append_in(&mut journal, &all[200..260], 11);
        let index = Arc::new(job.write().unwrap());
        assert_eq!(index.count(), 200);
        assert!(journal.install_index(&job, index.clone()));
        assert_eq!(journal.indexed(), 200);
        // The writer noted each entry as it wrote it; the index takes over
        // the first 200, and every id still names its entry alone.
        for entry in &all[..260] {
            requests.insert(entry.body.request_id.as_str(), entry.body.sequence);
        }
        assert!(requests.covered_by(index.clone()));
        assert_eq!(requests.in_memory(), 60);
        for entry in &all[..260] {
            let found: Vec<u64> = requests
                .candidates(entry.body.request_id.as_str())
                .unwrap()
                .collect();
            assert_eq!(found, vec![entry.body.sequence]);
        }
        // A job taken before another index was installed does not replace it.
        let stale = job;
        append_in(&mut journal, &all[260..300], 7);
        let newer = journal.index_job(1).unwrap().unwrap();
        let newer_index = Arc::new(newer.write().unwrap());
        assert!(journal.install_index(&newer, newer_index));
        assert_eq!(journal.indexed(), 300);
        assert!(!journal.install_index(&stale, index));
        assert_eq!(journal.indexed(), 300);
        // At the stop, the rest; the next start reads the index alone and
        // finds every entry, under the key the journal opened with.
        append_in(&mut journal, &all[300..], 13);
        journal.write_index().unwrap();
        assert_eq!(journal.indexed(), 500);
        drop(journal);
        let mut journal = JournalFile::open(dir.path()).unwrap();
        assert_eq!(journal.indexed(), 500);
        finds_every_entry(&mut journal, &all);
    }

    /// The store writes its index again when enough entries are past it,
    /// lets go of their offsets, and reads every entry as before; the next
    /// start finds the index covering them.
    #[test]
    fn the_store_writes_its_index_again_and_keeps_only_the_offsets_past_it() {
        use crate::store::{DiskStore, Store};
        let dir = tempfile::tempdir().unwrap();
        let all = entries(300);
        let store = DiskStore::open(dir.path()).unwrap();
        for chunk in all[..250].chunks(10) {
            store.append(chunk).unwrap();
        }
        assert!(store.index_journal(251).unwrap().is_none());
        let covered = store.index_journal(250).unwrap().expect("written again");
        assert_eq!(covered.len(), 250);
        assert_eq!(store.offsets_in_memory(), 0);
        for chunk in all[250..].chunks(10) {
            store.append(chunk).unwrap();
        }
        assert_eq!(store.offsets_in_memory(), 50);
        let read = store.read_entries(1, 1000).unwrap();
        assert_eq!(read.len(), 300);
        for (read, entry) in read.iter().zip(&all) {
            assert_eq!(read.hash, entry.hash, "entry {}", entry.body.sequence);
        }
        assert_eq!(store.read_entries(240, 20).unwrap()[0].body.sequence, 240);
        drop(store);
        // A crash (no stop): the index written while running is used.
        let mut journal = JournalFile::open(dir.path()).unwrap();
        assert_eq!(journal.indexed(), 250);
        finds_every_entry(&mut journal, &all);
    }

    /// An index that cannot be written again (here the old one, which it
    /// copies, was cut short underneath it) is an error, leaves no
    /// half-written file beside the journal, and changes nothing: the
    /// entries past the old index stay in memory and are still read.
    #[test]
    fn an_index_that_cannot_be_written_again_leaves_nothing_behind() {
        use crate::store::{DiskStore, Store};
        let dir = tempfile::tempdir().unwrap();
        let all = entries(120);
        let store = DiskStore::open(dir.path()).unwrap();
        store.append(&all[..60]).unwrap();
        assert_eq!(store.index_journal(60).unwrap().unwrap().len(), 60);
        store.append(&all[60..]).unwrap();
        let index = dir.path().join(JOURNAL_INDEX_FILE_NAME);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&index)
            .unwrap()
            .set_len(HEADER_LEN + 8)
            .unwrap();
        let error = store.index_journal(60).unwrap_err();
        assert!(error.to_string().contains("reading"), "{error}");
        assert!(
            !dir.path()
                .join(format!("{JOURNAL_INDEX_FILE_NAME}.new"))
                .exists()
        );
        assert_eq!(store.offsets_in_memory(), 60);
        let read = store.read_entries(61, 100).unwrap();
        assert_eq!(read.len(), 60);
        assert_eq!(read[59].hash, all[119].hash);
    }

    #[test]
    fn an_index_that_does_not_hold_or_is_not_the_journals_is_not_used() {
        let all = entries(200);
        let index_path = |dir: &Path| dir.join(JOURNAL_INDEX_FILE_NAME);
        let journal_path = |dir: &Path| dir.join(JOURNAL_FILE_NAME);
        // A journal of `entries` in batches of `batch`, indexed.
        let indexed = |entries: &[Arc<Entry>], batch: usize| {
            let dir = tempfile::tempdir().unwrap();
            let mut journal = JournalFile::open(dir.path()).unwrap();
            append_in(&mut journal, entries, batch);
            journal.write_index().unwrap();
            dir
        };
        let reopened = |dir: &Path, entries: &[Arc<Entry>]| {
            let mut journal = JournalFile::open(dir).unwrap();
            // Read whole, and indexed again.
            assert_eq!(journal.indexed(), entries.len() as u64);
            finds_every_entry(&mut journal, entries);
        };

        // A byte changed, or the file cut short.
        let dir = indexed(&all, 9);
        let mut bytes = std::fs::read(index_path(dir.path())).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        std::fs::write(index_path(dir.path()), &bytes).unwrap();
        reopened(dir.path(), &all);
        let len = std::fs::metadata(index_path(dir.path())).unwrap().len();
        std::fs::File::options()
            .write(true)
            .open(index_path(dir.path()))
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        reopened(dir.path(), &all);

        // The journal put back to an earlier copy, shorter than the index.
        let shorter = indexed(&all[..120], 9);
        let dir = indexed(&all, 9);
        std::fs::copy(journal_path(shorter.path()), journal_path(dir.path())).unwrap();
        reopened(dir.path(), &all[..120]);

        // The same entries framed otherwise: the offsets differ.
        let other = indexed(&all, 13);
        let dir = indexed(&all, 9);
        std::fs::copy(journal_path(other.path()), journal_path(dir.path())).unwrap();
        reopened(dir.path(), &all);

        // Another journal's index beside this one, at the same length.
        let dir = indexed(&all, 9);
        let other = indexed(&entries(200)[..150], 1);
        std::fs::copy(index_path(other.path()), index_path(dir.path())).unwrap();
        reopened(dir.path(), &all);
    }

    /// An index of `count` of `entries` (appended in one frame each
    /// `batch`) with `offsets` as its offsets and `last` as its last entry,
    /// its CRC holding: as if edited, or another journal's.
    fn forged_index(dir: &Path, entries: &[Arc<Entry>], offsets: &[u64], last: Last) {
        let key = HashKey([9; 16]);
        let mut hashes: Vec<(u64, u64)> = entries
            .iter()
            .map(|e| (key.hash(e.body.request_id.as_str()), e.body.sequence))
            .collect();
        JournalIndex::write(
            dir,
            key,
            None,
            &offsets.iter().copied().collect(),
            &mut hashes,
            last,
        )
        .unwrap();
    }

    #[test]
    fn an_index_whose_body_is_not_the_journals_is_caught_before_the_server_serves() {
        let all = entries(30);
        let dir = tempfile::tempdir().unwrap();
        let mut journal = JournalFile::open(dir.path()).unwrap();
        // One frame of 10, then 20 in frames of 5.
        append_in(&mut journal, &all[..10], 10);
        append_in(&mut journal, &all[10..], 5);
        let offsets = journal.offsets();
        let end = journal.end();
        drop(journal);
        let frame_of_ten_end = offsets[10] - 16;

        // Covering 9 of the first frame's 10 entries: its last entry is not
        // the frame's last record, so the journal would be read on from the
        // next frame and entry 10 missed. Not used.
        forged_index(
            dir.path(),
            &all[..9],
            &offsets[..9],
            Last {
                frame_start: 8,
                frame_end: frame_of_ten_end,
                offset: offsets[8],
                hash: all[8].hash,
            },
        );
        let mut journal = JournalFile::open(dir.path()).unwrap();
        assert_eq!(journal.len(), 30);
        // Read whole, and indexed again.
        assert_eq!(journal.indexed(), 30);
        assert!(journal.take_frame_check().is_none());
        finds_every_entry(&mut journal, &all);
        drop(journal);

        // Tied to the journal by its last frame, but entry 2's record put
        // where entry 3's is: the open uses it, and the check beside the
        // rest of startup (which recovery waits for) finds it.
        let mut wrong = offsets.clone();
        wrong[1] = offsets[2];
        forged_index(
            dir.path(),
            &all,
            &wrong,
            Last {
                frame_start: offsets[29] - 16 - (offsets[29] - offsets[25]),
                frame_end: end,
                offset: offsets[29],
                hash: all[29].hash,
            },
        );
        let mut journal = JournalFile::open(dir.path()).unwrap();
        assert_eq!(journal.indexed(), 30);
        let found = journal
            .take_frame_check()
            .expect("a check")
            .join()
            .unwrap()
            .expect_err("the wrong offset is found");
        assert!(
            found
                .to_string()
                .contains("entry 2's record is not where the journal's index puts it"),
            "{found}"
        );
        drop(journal);

        // A new journal where an old index lies: the index goes.
        std::fs::remove_file(dir.path().join(JOURNAL_FILE_NAME)).unwrap();
        let mut journal = JournalFile::open(dir.path()).unwrap();
        assert_eq!((journal.len(), journal.indexed()), (0, 0));
        assert!(!dir.path().join(JOURNAL_INDEX_FILE_NAME).exists());
        append_in(&mut journal, &all[..3], 2);
        journal.write_index().unwrap();
        drop(journal);
        let mut journal = JournalFile::open(dir.path()).unwrap();
        assert_eq!(journal.indexed(), 3);
        finds_every_entry(&mut journal, &all[..3]);
    }

    /// The hashes of `count` entries, some shared by several (runs that
    /// cross blocks among them).
    fn hashes(seed: u64, count: u64) -> Vec<(u64, u64)> {
        let mut rng = oorandom::Rand64::new(seed.into());
        let mut hashes = Vec::new();
        let mut sequence = 0;
        while sequence < count {
            let hash = rng.rand_u64() >> (rng.rand_range(0..3) * 20);
            let run = if rng.rand_range(0..10) == 0 {
                rng.rand_range(1..600)
            } else {
                1
            };
            for _ in 0..run.min(count - sequence) {
                sequence += 1;
                hashes.push((hash, sequence));
            }
        }
        hashes
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Written in two steps (an index, then one extending it), every
        /// hash names exactly its entries, every offset reads back, and a
        /// hash of none names none.
        #[test]
        fn lookups_and_offsets_match_what_was_indexed(
            seed in any::<u64>(),
            first in 1u64..3000,
            more in 0u64..3000,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let all = hashes(seed, first + more);
            let offsets: Vec<u64> = (0..first + more).map(|i| 8 + i * 311 + (i % 7)).collect();
            let key = HashKey([7; 16]);
            let last = |count: u64| Last {
                frame_start: count,
                frame_end: count + 1,
                offset: offsets[count as usize - 1],
                hash: [count as u8; 32],
            };
            let mut head = all[..first as usize].to_vec();
            let old = JournalIndex::write(
                dir.path(),
                key,
                None,
                &offsets[..first as usize].iter().copied().collect(),
                &mut head,
                last(first),
            )
            .unwrap();
            let mut tail = all[first as usize..].to_vec();
            let index = JournalIndex::write(
                dir.path(),
                key,
                Some(&old),
                &offsets[first as usize..].iter().copied().collect(),
                &mut tail,
                last(first + more),
            )
            .unwrap();
            prop_assert_eq!(index.count(), first + more);
            prop_assert_eq!(index.offsets(1, first + more).unwrap(), offsets.clone());
            prop_assert_eq!(
                index.offsets(first, 1).unwrap(),
                vec![offsets[first as usize - 1]]
            );
            prop_assert!(index.offsets(first + more, 2).is_err());
            let mut by_hash = std::collections::BTreeMap::<u64, Vec<u64>>::new();
            for (hash, sequence) in &all {
                by_hash.entry(*hash).or_default().push(*sequence);
            }
            for (hash, sequences) in &by_hash {
                prop_assert_eq!(&index.lookup(*hash).unwrap(), sequences);
                for absent in [hash.wrapping_add(1), hash.wrapping_sub(1)] {
                    let expected = by_hash.get(&absent).cloned().unwrap_or_default();
                    prop_assert_eq!(index.lookup(absent).unwrap(), expected);
                }
            }
            prop_assert_eq!(index.lookup(0).unwrap(), by_hash.get(&0).cloned().unwrap_or_default());
            prop_assert_eq!(
                index.lookup(u64::MAX).unwrap(),
                by_hash.get(&u64::MAX).cloned().unwrap_or_default()
            );
        }
    }

    #[test]
    fn the_bloom_filter_spares_most_lookups_of_a_new_id_a_read() {
        let count = 100_000u64;
        let mut rng = oorandom::Rand64::new(11);
        let mut summary = Summary::new(count);
        let mut all: Vec<u64> = (0..count).map(|_| rng.rand_u64()).collect();
        all.sort_unstable();
        for (sequence, hash) in all.iter().enumerate() {
            assert!(summary.note(*hash, sequence as u64 + 1));
        }
        let maybe = (0..count)
            .filter(|_| {
                let hash = rng.rand_u64();
                probes(hash, summary.bloom_bits)
                    .all(|bit| summary.bloom[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
            })
            .count();
        // About 3 % at 8 bits an entry and 3 probes in one block.
        assert!(maybe < count as usize / 20, "{maybe} of {count}");
        // One byte an entry (to the next whole block).
        let bytes = summary.bloom.len() as u64 * 8;
        assert!((count..count + 64).contains(&bytes), "{bytes} bytes");
    }
}
