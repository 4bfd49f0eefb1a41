//! The request index: which entry each request id produced, so that a
//! client's retry gets the entry its first attempt wrote and never a second
//! one. It holds an entry for every entry of the journal, so it is kept
//! small: not the id's text (a few dozen bytes and an allocation each) but
//! a 64-bit keyed hash of it and the sequence: the entries found in the
//! journal at startup in one array sorted by hash, the ones written since
//! in a hash map. The array, which grows with the journal, keeps 8 bytes
//! an entry: the hash's high 32 bits and the sequence as 32 bits (entries
//! past 2^32, if a journal ever holds them, in an array of full hashes and
//! sequences beside it). A hash names the entries that may have the id
//! (two ids can hash alike: with 32 bits, a lookup among 10^7 entries
//! found at startup names one other entry about once in 430 lookups); the
//! caller reads those entries from the journal, which holds each entry's
//! request id, and keeps the one whose id is the same. Nothing here is
//! stored: startup rebuilds the index from the journal.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::OnceLock;

/// Request-id hash -> sequence; for the rare later entry whose id hashes
/// like an earlier one's, the later sequences apart.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestIndex {
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

    /// The hash a request id is indexed by: SipHash under a key drawn once
    /// per process, so that ids cannot be chosen to hash alike.
    fn key(&self, request_id: &str) -> u64 {
        static KEY: OnceLock<RandomState> = OnceLock::new();
        if self.all_alike {
            return 0;
        }
        KEY.get_or_init(RandomState::new).hash_one(request_id)
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

    /// Orders the entries found at startup for lookups, and lets go of the
    /// room the arrays grew by.
    pub fn seal(&mut self) {
        self.found.sort_unstable();
        self.found.shrink_to_fit();
        self.found_wide.sort_unstable();
        self.found_wide.shrink_to_fit();
    }

    /// Notes that the request `request_id` produced `sequence`.
    pub fn insert(&mut self, request_id: &str, sequence: u64) {
        self.insert_key(self.key(request_id), sequence);
    }

    /// The entries that may have been produced by `request_id`, oldest
    /// first: at most one of them was (its id is in the journal).
    pub fn candidates(&self, request_id: &str) -> impl Iterator<Item = u64> + '_ {
        let key = self.key(request_id);
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
        found.chain(found_wide).chain(first).chain(more)
    }

    /// How many entries are indexed.
    pub fn len(&self) -> usize {
        self.found.len()
            + self.found_wide.len()
            + self.first.len()
            + self.more.values().map(Vec::len).sum::<usize>()
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty() && self.found_wide.is_empty() && self.first.is_empty()
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
            let found: Vec<u64> = index.candidates(&format!("req-{sequence}")).collect();
            assert_eq!(found, vec![sequence]);
        }
        assert_eq!(index.candidates("req-1001").count(), 0);
        // Two ids that hash alike (forced here: a 64-bit keyed hash makes
        // it vanishingly rare) both stay findable; the caller tells them
        // apart by the id each entry records.
        let key = index.key("req-7");
        index.insert_key(key, 2000);
        index.insert_key(key, 2001);
        assert_eq!(
            index.candidates("req-7").collect::<Vec<_>>(),
            vec![7, 2000, 2001]
        );
        assert_eq!(index.len(), 1002);
        let mut alike = RequestIndex::all_alike();
        alike.insert("a", 1);
        alike.insert("b", 2);
        assert_eq!(alike.candidates("c").collect::<Vec<_>>(), vec![1, 2]);
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
        assert_eq!(index.candidates("req-wide").collect::<Vec<_>>(), vec![past]);
        assert_eq!(index.candidates("req-narrow").collect::<Vec<_>>(), vec![7]);
        assert_eq!(
            index.candidates("req-top").collect::<Vec<_>>(),
            vec![u64::from(u32::MAX)]
        );
        assert_eq!(index.len(), 3);
        // Two keys alike in their high bits, different in their low ones.
        let mut alike = RequestIndex::default();
        let key = alike.key("req-a");
        alike.found.push((high(key), 1));
        alike.found.push((high(key), 2));
        alike.seal();
        assert_eq!(alike.candidates("req-a").collect::<Vec<_>>(), vec![1, 2]);
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
            let found: Vec<u64> = index.candidates(&format!("req-{sequence}")).collect();
            assert_eq!(found, vec![sequence], "req-{sequence}");
        }
        assert_eq!(index.candidates("req-0").count(), 0);
        let mut alike = RequestIndex::all_alike();
        alike.note_found("a", 2);
        alike.note_found("b", 1);
        alike.seal();
        alike.insert("c", 3);
        alike.insert("d", 4);
        assert_eq!(alike.candidates("e").collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    }
}
