//! Where each entry's record starts in the journal file, kept for as long
//! as the journal (to read an entry by its sequence): about 4 bytes an
//! entry instead of a `u64`'s 8.
//!
//! Offsets grow with the journal and each block of [`BLOCK`] entries spans
//! at most [`BLOCK`] records of at most 1 MiB (the journal's record limit):
//! far less than 4 GiB. So each block keeps its first offset in full and
//! each entry its distance from it in 32 bits. A list whose distances do
//! not fit (offsets out of order, or records beyond the journal's limits)
//! is kept whole instead, so any list is kept exactly.

use std::sync::Arc;

use super::StoreError;
use super::journal_index::JournalIndex;

/// Entries a block's first offset serves.
const BLOCK: usize = 1024;

/// A list of offsets, each read back exactly as pushed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Offsets {
    /// The first offset of each block of [`BLOCK`] entries.
    bases: Vec<u64>,
    /// Each entry's distance from its block's first offset.
    distances: Vec<u32>,
    /// Every offset in full, once one did not fit the compact form.
    whole: Option<Vec<u64>>,
}

impl Offsets {
    /// No offsets.
    pub fn new() -> Offsets {
        Offsets::default()
    }

    /// How many offsets are kept.
    pub fn len(&self) -> usize {
        match &self.whole {
            Some(whole) => whole.len(),
            None => self.distances.len(),
        }
    }

    /// True when none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `index`th offset (from 0).
    pub fn get(&self, index: usize) -> Option<u64> {
        match &self.whole {
            Some(whole) => whole.get(index).copied(),
            None => {
                let distance = *self.distances.get(index)?;
                Some(self.bases[index / BLOCK] + u64::from(distance))
            }
        }
    }

    /// Adds `offset` at the end.
    pub fn push(&mut self, offset: u64) {
        if let Some(whole) = &mut self.whole {
            whole.push(offset);
            return;
        }
        let index = self.distances.len();
        if index.is_multiple_of(BLOCK) {
            self.bases.push(offset);
            self.distances.push(0);
            return;
        }
        let base = self.bases[index / BLOCK];
        match offset
            .checked_sub(base)
            .and_then(|distance| u32::try_from(distance).ok())
        {
            Some(distance) => self.distances.push(distance),
            None => {
                let mut whole: Vec<u64> = self.iter().collect();
                whole.push(offset);
                *self = Offsets {
                    bases: Vec::new(),
                    distances: Vec::new(),
                    whole: Some(whole),
                };
            }
        }
    }

    /// The offsets from `start` up to (not including) `end`, each within
    /// the list.
    pub fn range(&self, start: usize, end: usize) -> Vec<u64> {
        (start..end).filter_map(|index| self.get(index)).collect()
    }

    /// Every offset, in order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.len()).filter_map(|index| self.get(index))
    }

    /// Lets go of the room the list grew by.
    pub fn shrink_to_fit(&mut self) {
        self.bases.shrink_to_fit();
        self.distances.shrink_to_fit();
        if let Some(whole) = &mut self.whole {
            whole.shrink_to_fit();
        }
    }
}

impl Extend<u64> for Offsets {
    fn extend<I: IntoIterator<Item = u64>>(&mut self, offsets: I) {
        for offset in offsets {
            self.push(offset);
        }
    }
}

impl FromIterator<u64> for Offsets {
    fn from_iter<I: IntoIterator<Item = u64>>(offsets: I) -> Offsets {
        let mut list = Offsets::new();
        list.extend(offsets);
        list
    }
}

/// Every entry's offset: those of the entries the journal's index on disk
/// covers read from it when asked, the later ones kept here.
#[derive(Clone, Debug, Default)]
pub struct EntryOffsets {
    indexed: Option<Arc<JournalIndex>>,
    tail: Offsets,
}

impl EntryOffsets {
    /// The offsets of the entries `indexed` covers, then `tail`'s.
    pub fn new(indexed: Option<Arc<JournalIndex>>, tail: Offsets) -> EntryOffsets {
        EntryOffsets { indexed, tail }
    }

    fn indexed_count(&self) -> u64 {
        self.indexed.as_ref().map_or(0, |index| index.count())
    }

    /// How many entries' offsets it gives.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        self.indexed_count() + self.tail.len() as u64
    }

    /// The offsets of entries `first` up to (not including) `end`, counted
    /// from 1 and each within the list, to read without holding this list
    /// ([`OffsetsSlice::read`]).
    pub fn slice(&self, first: u64, end: u64) -> OffsetsSlice {
        let first = first.max(1);
        let end = end.min(self.len() + 1).max(first);
        let indexed_count = self.indexed_count();
        let indexed = self
            .indexed
            .as_ref()
            .filter(|_| first <= indexed_count)
            .map(|index| (index.clone(), first, end.min(indexed_count + 1) - first));
        let tail_start = first.max(indexed_count + 1) - indexed_count - 1;
        let tail_end = end.max(indexed_count + 1) - indexed_count - 1;
        OffsetsSlice {
            indexed,
            tail: self.tail.range(tail_start as usize, tail_end as usize),
        }
    }
}

impl EntryOffsets {
    /// Takes `index`, written again over the entries this list's index and
    /// the first of its tail cover, and lets go of those offsets: what
    /// stays in memory is the entries past it. False, and nothing changed,
    /// when `index` covers fewer entries than the old one or more than the
    /// list holds.
    pub fn advance(&mut self, index: Arc<JournalIndex>) -> bool {
        let Some(covered) = index.count().checked_sub(self.indexed_count()) else {
            return false;
        };
        let covered = covered as usize;
        if covered > self.tail.len() {
            return false;
        }
        let mut tail: Offsets = self
            .tail
            .range(covered, self.tail.len())
            .into_iter()
            .collect();
        tail.shrink_to_fit();
        self.tail = tail;
        self.indexed = Some(index);
        true
    }

    /// How many offsets it keeps in memory (past the index).
    #[cfg(test)]
    pub fn in_memory(&self) -> usize {
        self.tail.len()
    }
}

impl Extend<u64> for EntryOffsets {
    fn extend<I: IntoIterator<Item = u64>>(&mut self, offsets: I) {
        self.tail.extend(offsets);
    }
}

/// Some entries' offsets, as [`EntryOffsets::slice`] took them.
#[derive(Debug)]
pub struct OffsetsSlice {
    /// The index, the first entry and how many to read from it.
    indexed: Option<(Arc<JournalIndex>, u64, u64)>,
    tail: Vec<u64>,
}

impl OffsetsSlice {
    /// The offsets, in order (those in the index read from its file).
    pub fn read(self) -> Result<Vec<u64>, StoreError> {
        let mut offsets = match &self.indexed {
            Some((index, first, count)) => index.offsets(*first, *count)?,
            None => Vec::new(),
        };
        offsets.extend(self.tail);
        Ok(offsets)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever the offsets (growing by a record's size, jumping by
        /// more than 4 GiB, or out of order), each is read back as pushed.
        #[test]
        fn reads_back_every_offset_as_pushed(
            steps in proptest::collection::vec(
                prop_oneof![
                    8 => 0u64..2_000_000,
                    1 => (1u64 << 32)..(1u64 << 40),
                ],
                0..3000,
            ),
            backwards in proptest::option::of(0usize..3000),
        ) {
            let mut expected = Vec::new();
            let mut at = 8u64;
            for (i, step) in steps.into_iter().enumerate() {
                at = if backwards == Some(i) { at / 2 } else { at + step };
                expected.push(at);
            }
            let list: Offsets = expected.iter().copied().collect();
            prop_assert_eq!(list.len(), expected.len());
            prop_assert_eq!(list.iter().collect::<Vec<_>>(), expected.clone());
            for (i, offset) in expected.iter().enumerate() {
                prop_assert_eq!(list.get(i), Some(*offset));
            }
            prop_assert_eq!(list.get(expected.len()), None);
            let (start, end) = (expected.len() / 3, expected.len() / 2);
            prop_assert_eq!(list.range(start, end), expected[start..end].to_vec());
        }
    }

    #[test]
    fn a_journals_offsets_take_about_four_bytes_each() {
        // Records of 190 bytes, as the recovery benchmark's.
        let list: Offsets = (0..100_000u64).map(|i| 8 + i * 198).collect();
        assert!(list.whole.is_none());
        let bytes = list.bases.len() * 8 + list.distances.len() * 4;
        assert!(bytes < 100_000 * 41 / 10, "{bytes} bytes");
        assert_eq!(list.get(99_999), Some(8 + 99_999 * 198));
    }
}
