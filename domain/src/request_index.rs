//! The request index: which entry each request id produced, so that a
//! client's retry gets the entry its first attempt wrote and never a second
//! one. It holds an entry for every entry of the journal, so it is kept
//! small: not the id's text (a few dozen bytes and an allocation each) but
//! a 64-bit keyed hash of it and the sequence.
//!
//! Three parts hold them:
//! - the entries a store indexed on disk ([`FoundRequests`]: the journal's
//!   index file beside the journal, which a lookup asks by hash; it keeps
//!   little in memory);
//! - the entries found at startup otherwise, in one array sorted by hash
//!   of 8 bytes an entry: the hash's high 32 bits and the sequence as 32
//!   bits (entries past 2^32, if a journal ever holds them, in an array of
//!   full hashes and sequences beside it);
//! - the entries written since, in a hash map.
//!
//! A hash names the entries that may have the id (two ids can hash alike:
//! with 32 bits, a lookup among 10^7 entries found at startup names one
//! other entry about once in 430 lookups); the caller reads those entries
//! from the journal, which holds each entry's request id, and keeps the one
//! whose id is the same. The hash is SipHash-1-3 under a 128-bit key: drawn
//! once per process, or the key of the index on disk, so that the hashes it
//! holds and the ones worked out now agree.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::{Arc, OnceLock};

/// The entries whose request ids a store indexed on disk.
pub trait FoundRequests: Send + Sync + std::fmt::Debug {
    /// The sequences of the entries whose request id hashes to `key` under
    /// [`FoundRequests::hash_key`], oldest first. An error (the index could
    /// not be read) must not be taken for "none": the caller refuses the
    /// request rather than risk writing a retry twice.
    fn candidates(&self, key: u64) -> Result<Vec<u64>, String>;
    /// The SipHash key the index's hashes were made under.
    fn hash_key(&self) -> HashKey;
    /// How many entries it indexes.
    fn len(&self) -> u64;
    /// True when it indexes none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A 128-bit SipHash key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashKey(pub [u8; 16]);

impl HashKey {
    /// A key drawn from the process's random source (the one `std` seeds
    /// its hash maps from).
    pub fn random() -> HashKey {
        let state = RandomState::new();
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&state.hash_one(0x6d66_692d_6c65_6467_u64).to_le_bytes());
        key[8..].copy_from_slice(&state.hash_one(0x7265_7175_6573_7473_u64).to_le_bytes());
        HashKey(key)
    }

    /// The hash of `request_id` under this key.
    pub fn hash(&self, request_id: &str) -> u64 {
        let (k0, k1) = self.0.split_at(8);
        let mut hasher = siphasher::sip::SipHasher13::new_with_keys(
            u64::from_le_bytes(k0.try_into().expect("8 bytes")),
            u64::from_le_bytes(k1.try_into().expect("8 bytes")),
        );
        hasher.write(request_id.as_bytes());
        hasher.finish()
    }
}

/// Request-id hash -> sequence; for the rare later entry whose id hashes
/// like an earlier one's, the later sequences apart.
#[derive(Clone, Debug, Default)]
pub struct RequestIndex {
    /// The key ids hash under, when not the process's.
    hash_key: Option<HashKey>,
    /// The entries a store indexed on disk (under `hash_key`).
    on_disk: Option<Arc<dyn FoundRequests>>,
    /// `(high 32 bits of the hash, sequence)` of the entries found at
    /// startup whose sequence fits in 32 bits, in order once
    /// [`RequestIndex::seal`]ed.
    found: Vec<(u32, u32)>,
    /// `(hash, sequence)` of the entries found at startup past sequence
    /// 2^32 - 1, in order once sealed.
    found_wide: Vec<(u64, u64)>,
    first: HashMap<u64, u64, Prehashed>,
    more: HashMap<u64, Vec<u64>, Prehashed>,
    /// Every id hashes alike (tests of the callers' check of the id).
    all_alike: bool,
}

impl PartialEq for RequestIndex {
    fn eq(&self, other: &RequestIndex) -> bool {
        let same_disk = match (&self.on_disk, &other.on_disk) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same_disk
            && self.hash_key == other.hash_key
            && self.found == other.found
            && self.found_wide == other.found_wide
            && self.first == other.first
            && self.more == other.more
            && self.all_alike == other.all_alike
    }
}

impl Eq for RequestIndex {}

impl RequestIndex {
    /// An index under which every request id hashes alike, so that every
    /// lookup names every entry: for tests that the caller keeps only the
    /// entry recording the very id.
    pub fn all_alike() -> RequestIndex {
        RequestIndex {
            all_alike: true,
            ..RequestIndex::default()
        }
    }

    /// An index of the entries `on_disk` holds; later ones are added with
    /// [`RequestIndex::insert`], hashed under its key.
    pub fn on_disk(on_disk: Arc<dyn FoundRequests>) -> RequestIndex {
        RequestIndex {
            hash_key: Some(on_disk.hash_key()),
            on_disk: Some(on_disk),
            ..RequestIndex::default()
        }
    }

    /// An empty index whose ids hash under `key` (so that a caller who
    /// hashed them under it can note them by hash).
    pub fn keyed(key: HashKey) -> RequestIndex {
        RequestIndex {
            hash_key: Some(key),
            ..RequestIndex::default()
        }
    }

    /// The hash a request id is indexed by: SipHash under the index on
    /// disk's key, or a key drawn once per process, so that ids cannot be
    /// chosen to hash alike.
    fn key(&self, request_id: &str) -> u64 {
        static KEY: OnceLock<HashKey> = OnceLock::new();
        if self.all_alike {
            return 0;
        }
        match &self.hash_key {
            Some(key) => key.hash(request_id),
            None => KEY.get_or_init(HashKey::random).hash(request_id),
        }
    }

    /// Notes that the request whose id has hash `key` produced `sequence`.
    fn insert_key(&mut self, key: u64, sequence: u64) {
        use std::collections::hash_map::Entry;
        match self.first.entry(key) {
            Entry::Vacant(slot) => {
                slot.insert(sequence);
            }
            Entry::Occupied(_) => self.more.entry(key).or_default().push(sequence),
        }
    }

    /// Notes an entry found in the journal at startup, before any other:
    /// [`RequestIndex::seal`] must follow the last one, before a lookup.
    pub fn note_found(&mut self, request_id: &str, sequence: u64) {
        let key = self.key(request_id);
        match u32::try_from(sequence) {
            Ok(narrow) => self.found.push((high(key), narrow)),
            Err(_) => self.found_wide.push((key, sequence)),
        }
    }

    /// [`RequestIndex::note_found`] for an id whose hash under this index's
    /// key (it must have one: [`RequestIndex::keyed`]) is `hash`.
    pub fn note_found_hash(&mut self, hash: u64, sequence: u64) {
        debug_assert!(self.hash_key.is_some(), "noted by hash without a key");
        match u32::try_from(sequence) {
            Ok(narrow) => self.found.push((high(hash), narrow)),
            Err(_) => self.found_wide.push((hash, sequence)),
        }
    }

    /// Orders the entries found at startup for lookups, and lets go of the
    /// room the arrays grew by.
    pub fn seal(&mut self) {
        self.found.sort_unstable();
        self.found.shrink_to_fit();
        self.found_wide.sort_unstable();
        self.found_wide.shrink_to_fit();
    }

    /// Hands the entries `on_disk` now covers (a store wrote its index
    /// again while the server ran: every entry up to its last, under this
    /// index's key) to it, and lets go of what memory held of them, so
    /// that what the index keeps in memory is the entries past the one on
    /// disk, not every entry written since startup. False, and nothing
    /// changed, when `on_disk` is under another key or covers fewer entries
    /// than the index on disk already did.
    pub fn covered_by(&mut self, on_disk: Arc<dyn FoundRequests>) -> bool {
        let covered = on_disk.len();
        let before = self.on_disk.as_ref().map_or(0, |old| old.len());
        if self.all_alike || self.hash_key != Some(on_disk.hash_key()) || covered < before {
            return false;
        }
        self.on_disk = Some(on_disk);
        self.found
            .retain(|(_, sequence)| u64::from(*sequence) > covered);
        self.found.shrink_to_fit();
        self.found_wide.retain(|(_, sequence)| *sequence > covered);
        self.found_wide.shrink_to_fit();
        self.first.retain(|_, sequence| *sequence > covered);
        // Later entries whose id hashes like a covered one: the oldest left
        // becomes the first under that hash.
        let mut promoted = Vec::new();
        self.more.retain(|hash, sequences| {
            sequences.retain(|sequence| *sequence > covered);
            match self.first.contains_key(hash) {
                true => !sequences.is_empty(),
                false => {
                    if !sequences.is_empty() {
                        promoted.push((*hash, sequences.remove(0)));
                    }
                    !sequences.is_empty()
                }
            }
        });
        for (hash, sequence) in promoted {
            self.first.insert(hash, sequence);
        }
        self.first.shrink_to_fit();
        self.more.shrink_to_fit();
        true
    }

    /// How many entries it holds in memory (not those the index on disk
    /// covers).
    pub fn in_memory(&self) -> usize {
        self.found.len()
            + self.found_wide.len()
            + self.first.len()
            + self.more.values().map(Vec::len).sum::<usize>()
    }

    /// Notes that the request `request_id` produced `sequence`.
    pub fn insert(&mut self, request_id: &str, sequence: u64) {
        self.insert_key(self.key(request_id), sequence);
    }

    /// The entries that may have been produced by `request_id`, oldest
    /// first: at most one of them was (its id is in the journal). An error
    /// says the index on disk could not be read: the request must be
    /// refused, not taken as new.
    pub fn candidates(&self, request_id: &str) -> Result<impl Iterator<Item = u64> + '_, String> {
        let key = self.key(request_id);
        let on_disk = match &self.on_disk {
            Some(on_disk) => on_disk.candidates(key)?,
            None => Vec::new(),
        };
        let narrow_key = high(key);
        let at = self.found.partition_point(|(k, _)| *k < narrow_key);
        let found = self.found[at..]
            .iter()
            .take_while(move |(k, _)| *k == narrow_key)
            .map(|(_, sequence)| u64::from(*sequence));
        let at = self.found_wide.partition_point(|(k, _)| *k < key);
        let found_wide = self.found_wide[at..]
            .iter()
            .take_while(move |(k, _)| *k == key)
            .map(|(_, sequence)| *sequence);
        let first = self.first.get(&key).copied();
        let more = first
            .and_then(|_| self.more.get(&key))
            .into_iter()
            .flatten()
            .copied();
        Ok(on_disk
            .into_iter()
            .chain(found)
            .chain(found_wide)
            .chain(first)
            .chain(more))
    }

    /// How many entries are indexed.
    pub fn len(&self) -> usize {
        self.on_disk
            .as_ref()
            .map_or(0, |on_disk| on_disk.len() as usize)
            + self.found.len()
            + self.found_wide.len()
            + self.first.len()
            + self.more.values().map(Vec::len).sum::<usize>()
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The high 32 bits of a hash: what the array of entries found at startup
/// keeps of it.
fn high(key: u64) -> u32 {
    (key >> 32) as u32
}

/// The index's keys are hashes already: the map uses them as they are.
#[derive(Clone, Copy, Debug, Default)]
struct Prehashed;

impl BuildHasher for Prehashed {
    type Hasher = PassThrough;

    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed here; any other input is folded in.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_id_finds_its_entry_and_ids_that_hash_alike_find_all_theirs() {
        let mut index = RequestIndex::default();
        for sequence in 1..=1000u64 {
            index.insert(&format!("req-{sequence}"), sequence);
        }
        assert_eq!(index.len(), 1000);
        for sequence in 1..=1000u64 {
            let found: Vec<u64> = index
                .candidates(&format!("req-{sequence}"))
                .unwrap()
                .collect();
            assert_eq!(found, vec![sequence]);
        }
        assert_eq!(index.candidates("req-1001").unwrap().count(), 0);
        // Two ids that hash alike (forced here: a 64-bit keyed hash makes
        // it vanishingly rare) both stay findable; the caller tells them
        // apart by the id each entry records.
        let key = index.key("req-7");
        index.insert_key(key, 2000);
        index.insert_key(key, 2001);
        assert_eq!(
            index.candidates("req-7").unwrap().collect::<Vec<_>>(),
            vec![7, 2000, 2001]
        );
        assert_eq!(index.len(), 1002);
        let mut alike = RequestIndex::all_alike();
        alike.insert("a", 1);
        alike.insert("b", 2);
        assert_eq!(
            alike.candidates("c").unwrap().collect::<Vec<_>>(),
            vec![1, 2]
        );
    }

    /// An entry found at startup past sequence 2^32 - 1 keeps its whole
    /// sequence; ids whose hashes share their high 32 bits name each
    /// other's entries (the caller tells them apart), and never lose one.
    #[test]
    fn sequences_past_32_bits_and_hashes_alike_in_their_high_bits() {
        let mut index = RequestIndex::default();
        let past = u64::from(u32::MAX) + 5;
        index.note_found("req-wide", past);
        index.note_found("req-narrow", 7);
        index.note_found("req-top", u64::from(u32::MAX));
        index.seal();
        assert_eq!(
            index.candidates("req-wide").unwrap().collect::<Vec<_>>(),
            vec![past]
        );
        assert_eq!(
            index.candidates("req-narrow").unwrap().collect::<Vec<_>>(),
            vec![7]
        );
        assert_eq!(
            index.candidates("req-top").unwrap().collect::<Vec<_>>(),
            vec![u64::from(u32::MAX)]
        );
        assert_eq!(index.len(), 3);
        // Two keys alike in their high bits, different in their low ones.
        let mut alike = RequestIndex::default();
        let key = alike.key("req-a");
        alike.found.push((high(key), 1));
        alike.found.push((high(key), 2));
        alike.seal();
        assert_eq!(
            alike.candidates("req-a").unwrap().collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(
            std::mem::size_of::<(u32, u32)>(),
            8,
            "8 bytes an entry found"
        );
    }

    #[test]
    fn entries_found_at_startup_and_written_since_are_both_found() {
        let mut index = RequestIndex::default();
        for sequence in (1..=500u64).rev() {
            index.note_found(&format!("req-{sequence}"), sequence);
        }
        index.seal();
        for sequence in 501..=600u64 {
            index.insert(&format!("req-{sequence}"), sequence);
        }
        assert_eq!(index.len(), 600);
        for sequence in 1..=600u64 {
            let found: Vec<u64> = index
                .candidates(&format!("req-{sequence}"))
                .unwrap()
                .collect();
            assert_eq!(found, vec![sequence], "req-{sequence}");
        }
        assert_eq!(index.candidates("req-0").unwrap().count(), 0);
        let mut alike = RequestIndex::all_alike();
        alike.note_found("a", 2);
        alike.note_found("b", 1);
        alike.seal();
        alike.insert("c", 3);
        alike.insert("d", 4);
        assert_eq!(
            alike.candidates("e").unwrap().collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
    }

    /// What a store indexed on disk, for the tests: its hashes in memory,
    /// or a read that fails.
    #[derive(Debug)]
    struct OnDisk {
        key: HashKey,
        entries: Vec<(u64, u64)>,
        fails: bool,
    }

    impl FoundRequests for OnDisk {
        fn candidates(&self, key: u64) -> Result<Vec<u64>, String> {
            if self.fails {
                return Err("the index could not be read".into());
            }
            Ok(self
                .entries
                .iter()
                .filter(|(hash, _)| *hash == key)
                .map(|(_, sequence)| *sequence)
                .collect())
        }

        fn hash_key(&self) -> HashKey {
            self.key
        }

        fn len(&self) -> u64 {
            self.entries.len() as u64
        }
    }

    #[test]
    fn entries_on_disk_are_found_under_its_key_and_a_failed_read_is_an_error() {
        let key = HashKey([3; 16]);
        let on_disk = OnDisk {
            key,
            entries: (1..=100u64)
                .map(|sequence| (key.hash(&format!("req-{sequence}")), sequence))
                .collect(),
            fails: false,
        };
        let mut index = RequestIndex::on_disk(Arc::new(on_disk));
        // Found past the index at startup, by hash, and written since.
        index.note_found_hash(key.hash("req-101"), 101);
        index.seal();
        index.insert("req-102", 102);
        assert_eq!(index.len(), 102);
        for sequence in 1..=102u64 {
            let found: Vec<u64> = index
                .candidates(&format!("req-{sequence}"))
                .unwrap()
                .collect();
            assert_eq!(found, vec![sequence], "req-{sequence}");
        }
        assert_eq!(index.candidates("req-103").unwrap().count(), 0);
        // Another key hashes otherwise: the key is the index's.
        assert_ne!(HashKey([4; 16]).hash("req-1"), key.hash("req-1"));

        let failing = RequestIndex::on_disk(Arc::new(OnDisk {
            key,
            entries: Vec::new(),
            fails: true,
        }));
        assert!(failing.candidates("req-1").is_err());
    }

    /// The index a store writes again while the server runs takes over the
    /// entries it covers: every id is still found, once, and memory holds
    /// only the entries past it, ids that hash alike included.
    #[test]
    fn an_index_written_while_running_takes_over_the_entries_it_covers() {
        let key = HashKey([5; 16]);
        let hashed = |sequence: u64| (key.hash(&format!("req-{sequence}")), sequence);
        let mut index = RequestIndex::on_disk(Arc::new(OnDisk {
            key,
            entries: (1..=100).map(hashed).collect(),
            fails: false,
        }));
        // Found past the old index at startup, then written since.
        for sequence in 101..=150 {
            index.note_found_hash(hashed(sequence).0, sequence);
        }
        index.seal();
        for sequence in 151..=300 {
            index.insert(&format!("req-{sequence}"), sequence);
        }
        // Two later entries whose ids hash like covered ones (a retry's
        // check reads the journal to tell them apart).
        let alike_covered = hashed(200).0;
        index.insert_key(alike_covered, 260);
        index.insert_key(alike_covered, 290);
        let alike_kept = hashed(280).0;
        index.insert_key(alike_kept, 295);
        assert_eq!(index.in_memory(), 203);

        // Under another key, or covering less than the index on disk: refused.
        let other_key = Arc::new(OnDisk {
            key: HashKey([6; 16]),
            entries: Vec::new(),
            fails: false,
        });
        assert!(!index.covered_by(other_key));
        let shorter = Arc::new(OnDisk {
            key,
            entries: (1..=50).map(hashed).collect(),
            fails: false,
        });
        assert!(!index.covered_by(shorter));
        assert_eq!(index.in_memory(), 203);

        assert!(index.covered_by(Arc::new(OnDisk {
            key,
            entries: (1..=250).map(hashed).collect(),
            fails: false,
        })));
        // 251..=300, and the three later entries hashing alike.
        assert_eq!(index.in_memory(), 53);
        assert_eq!(index.len(), 250 + 53);
        for sequence in 1..=300u64 {
            let found: Vec<u64> = index
                .candidates(&format!("req-{sequence}"))
                .unwrap()
                .collect();
            let expected = match sequence {
                200 => vec![200, 260, 290],
                280 => vec![280, 295],
                _ => vec![sequence],
            };
            assert_eq!(found, expected, "req-{sequence}");
        }
        index.insert("req-301", 301);
        assert_eq!(
            index.candidates("req-301").unwrap().collect::<Vec<_>>(),
            vec![301]
        );
    }
}
