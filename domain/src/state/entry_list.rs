//! A loan's list of entries (`Loan::events`, `Loan::history`): full chunks
//! that copies of the loan share, and the entries after them, each copy's
//! own, packed as a chunk is.
//!
//! The lists only grow at the end (and `events` shrinks at the end when
//! an entry is reversed), and each entry on a loan copies the loan: held
//! in one `Vec`, a list was copied whole at every entry, growing with the
//! loan's life. Here a copy shares the full chunks of [`CHUNK`] entries and
//! copies only the tail after them (fewer than [`CHUNK`]), which is also
//! all a list of a young loan is: for it a copy costs what a `Vec` did.
//! A full chunk is packed (its entries as varint distances, about two
//! bytes an entry), since it no longer changes; so is the tail, which grows
//! by a varint at the end and shrinks by walking one back: most loans never
//! fill a chunk (a loan repaid weekly over a year has about 50 entries on
//! it), and held as `u64`s their tails were 13 of 176 MB of a ten-year
//! branch's heap after a restart.

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Entries per shared chunk: the most a copy of the loan copies of each
/// list.
const CHUNK: usize = 128;

/// A full chunk, packed: its first and last entries, and each entry after
/// the first as its distance from the one before, a LEB128 varint (a
/// loan's entries lie a few thousand apart: two bytes each, not eight).
/// At 10^7 entries of the load generator's repayments and deposits on
/// 1,000 loans, the lists held about 11 bytes an entry as `u64`s.
#[derive(Debug)]
struct Packed {
    first: u64,
    last: u64,
    gaps: Box<[u8]>,
}

impl Packed {
    fn pack(entries: &[u64]) -> Packed {
        let mut tail = Tail::default();
        tail.gaps.reserve_exact(2 * entries.len());
        for &entry in entries {
            tail.push(entry);
        }
        tail.into_chunk()
    }

    fn iter(&self) -> Unpack<'_> {
        Unpack {
            next: Some(self.first),
            gaps: &self.gaps,
        }
    }
}

/// Bytes a copied tail has room for beyond its own: a loan is copied to
/// take an entry, which then goes at the end of both its lists, a distance
/// of two or three bytes each. Copied to the byte, each list was moved
/// again by that push.
const COPY_ROOM: usize = 4;

/// The entries after the full chunks (fewer than [`CHUNK`]), packed as a
/// chunk is, growing at the end.
#[derive(Default)]
struct Tail {
    len: u32,
    /// The first and last entries (meaningless when empty).
    first: u64,
    last: u64,
    /// Each entry after the first as its distance from the one before.
    gaps: Vec<u8>,
}

impl Clone for Tail {
    fn clone(&self) -> Tail {
        // An empty tail's next entry adds no distance: no room for one.
        let room = if self.len == 0 { 0 } else { COPY_ROOM };
        let mut gaps = Vec::with_capacity(self.gaps.len() + room);
        gaps.extend_from_slice(&self.gaps);
        Tail {
            len: self.len,
            first: self.first,
            last: self.last,
            gaps,
        }
    }
}

impl Tail {
    fn len(&self) -> usize {
        self.len as usize
    }

    fn first(&self) -> Option<u64> {
        (self.len > 0).then_some(self.first)
    }

    fn last(&self) -> Option<u64> {
        (self.len > 0).then_some(self.last)
    }

    /// Adds `entry` at the end, the bytes grown by its varint only.
    fn push(&mut self, entry: u64) {
        if self.len == 0 {
            self.first = entry;
        } else {
            // Entries rise; any other order still reads back (wrapping).
            let mut rest = entry.wrapping_sub(self.last);
            // Its bytes pushed one by one: copied from a buffer, each push
            // called `memcpy` for a byte or two (4 % of the samples of a
            // restart at 10^7 entries).
            let bits = (u64::BITS - rest.leading_zeros()).max(1);
            self.gaps.reserve_exact(bits.div_ceil(7) as usize);
            while rest >= 0x80 {
                self.gaps.push((rest as u8) | 0x80);
                rest >>= 7;
            }
            self.gaps.push(rest as u8);
        }
        self.last = entry;
        self.len += 1;
    }

    /// Takes the last entry off: its distance is the varint that ends the
    /// bytes (LEB128 ends each varint with its one byte below 0x80).
    fn pop(&mut self) -> Option<u64> {
        let last = self.last()?;
        if self.len == 1 {
            *self = Tail::default();
        } else {
            let mut at = crate::varint::start_before(&self.gaps, self.gaps.len());
            let start = at;
            let gap = crate::varint::take(&self.gaps, &mut at) as u64;
            self.gaps.truncate(start);
            self.last = last.wrapping_sub(gap);
            self.len -= 1;
        }
        Some(last)
    }

    fn iter(&self) -> Unpack<'_> {
        Unpack {
            next: self.first(),
            gaps: &self.gaps,
        }
    }

    /// A full tail as a chunk.
    fn into_chunk(self) -> Packed {
        Packed {
            first: self.first,
            last: self.last,
            gaps: self.gaps.into_boxed_slice(),
        }
    }

    /// A chunk taken back as the tail.
    fn of_chunk(chunk: &Packed) -> Tail {
        Tail {
            len: CHUNK as u32,
            first: chunk.first,
            last: chunk.last,
            gaps: chunk.gaps.to_vec(),
        }
    }
}

/// A packed chunk's entries, in order.
#[derive(Clone, Debug)]
struct Unpack<'a> {
    next: Option<u64>,
    gaps: &'a [u8],
}

impl Iterator for Unpack<'_> {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        let entry = self.next?;
        self.next = if self.gaps.is_empty() {
            None
        } else {
            let (mut gap, mut shift) = (0u64, 0u32);
            let mut used = 0;
            for &byte in self.gaps {
                used += 1;
                gap |= u64::from(byte & 0x7f).wrapping_shl(shift);
                shift += 7;
                if byte & 0x80 == 0 {
                    break;
                }
            }
            self.gaps = &self.gaps[used..];
            Some(entry.wrapping_add(gap))
        };
        Some(entry)
    }
}

/// A loan's list of entries, by sequence, in order (see the module's
/// documentation).
#[derive(Clone, Default)]
pub struct EntryList {
    /// Full chunks of [`CHUNK`] entries, packed.
    full: Vec<Arc<Packed>>,
    /// The entries after them: fewer than [`CHUNK`].
    tail: Tail,
}

impl EntryList {
    /// An empty list.
    pub fn new() -> EntryList {
        EntryList::default()
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.full.len() * CHUNK + self.tail.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first entry, if any.
    pub fn first(&self) -> Option<u64> {
        self.full
            .first()
            .map(|chunk| chunk.first)
            .or(self.tail.first())
    }

    /// The last entry, if any.
    pub fn last(&self) -> Option<u64> {
        self.tail
            .last()
            .or(self.full.last().map(|chunk| chunk.last))
    }

    /// Adds `sequence` at the end. The tail grows by its varint only,
    /// into the few bytes of room a copy of the loan took ([`COPY_ROOM`])
    /// or else exactly (a push that doubled it cost, after a crash at 10^7
    /// entries, 132 MB for each list at the restart's peak); a full tail
    /// becomes a shared chunk.
    pub fn push(&mut self, sequence: u64) {
        self.tail.push(sequence);
        if self.tail.len() == CHUNK {
            let full = std::mem::take(&mut self.tail);
            self.full.push(Arc::new(full.into_chunk()));
        }
    }

    /// Adds `sequences` at the end, each copied once into its chunk; the
    /// tail holds exactly its entries.
    pub fn extend_from_slice(&mut self, mut sequences: &[u64]) {
        while !sequences.is_empty() {
            let take = sequences.len().min(CHUNK - self.tail.len());
            let (now, rest) = sequences.split_at(take);
            if take == CHUNK {
                self.full.push(Arc::new(Packed::pack(now)));
            } else {
                self.tail.gaps.reserve_exact(2 * take);
                for &sequence in now {
                    self.push(sequence);
                }
                self.tail.gaps.shrink_to_fit();
            }
            sequences = rest;
        }
    }

    /// Takes the last entry off, if any.
    pub fn pop(&mut self) -> Option<u64> {
        if self.tail.len() == 0 {
            let chunk = self.full.pop()?;
            self.tail = Tail::of_chunk(&chunk);
        }
        self.tail.pop()
    }

    /// Every entry, in order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + Clone + '_ {
        self.range(0, usize::MAX)
    }

    /// The entries `start..end` (those of it that exist).
    pub fn range(&self, start: usize, end: usize) -> impl Iterator<Item = u64> + Clone + '_ {
        let in_full = self.full.len() * CHUNK;
        let end = end.min(self.len());
        let start = start.min(end);
        let full_end = end.min(in_full);
        let full_start = start.min(full_end);
        let chunks = self
            .full
            .get(full_start / CHUNK..full_end.div_ceil(CHUNK))
            .unwrap_or(&[]);
        let from_full = chunks
            .iter()
            .flat_map(|chunk| chunk.iter())
            .skip(full_start % CHUNK)
            .take(full_end - full_start);
        let from = start.saturating_sub(in_full);
        let to = end.saturating_sub(in_full).max(from);
        from_full.chain(self.tail.iter().skip(from).take(to - from))
    }

    /// The number of entries at the start for which `pred` holds, when it
    /// holds for a prefix (as [`slice::partition_point`]).
    pub fn partition_point(&self, mut pred: impl FnMut(u64) -> bool) -> usize {
        // The chunks whose last entry holds hold whole.
        let whole = self.full.partition_point(|chunk| pred(chunk.last));
        match self.full.get(whole) {
            Some(chunk) => whole * CHUNK + chunk.iter().take_while(|&at| pred(at)).count(),
            None => whole * CHUNK + self.tail.iter().take_while(|&at| pred(at)).count(),
        }
    }

    /// Entries in the tail, its bytes, and its room for more bytes: what
    /// a copy of the list takes of its own.
    #[cfg(test)]
    pub(crate) fn tail_room(&self) -> (usize, usize, usize) {
        (
            self.tail.len(),
            self.tail.gaps.len(),
            self.tail.gaps.capacity(),
        )
    }

    /// How many full chunks this list and `other` share, counted from the
    /// first until one differs, and how many full chunks it has.
    #[cfg(test)]
    pub(crate) fn shared_with(&self, other: &EntryList) -> (usize, usize) {
        let shared = self
            .full
            .iter()
            .zip(&other.full)
            .take_while(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        (shared, self.full.len())
    }

    /// Bytes the full chunks take, packed (not counting what is shared).
    #[cfg(test)]
    pub(crate) fn packed_bytes(&self) -> usize {
        self.full
            .iter()
            .map(|chunk| std::mem::size_of::<Packed>() + chunk.gaps.len())
            .sum()
    }
}

impl From<Vec<u64>> for EntryList {
    /// Full chunks and a tail, each holding exactly its entries.
    fn from(list: Vec<u64>) -> EntryList {
        let mut entries = EntryList::new();
        entries.extend_from_slice(&list);
        entries
    }
}

impl PartialEq for EntryList {
    fn eq(&self, other: &EntryList) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for EntryList {}

impl std::fmt::Debug for EntryList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Written as the list it was before it was kept in chunks: the same bytes.
impl Serialize for EntryList {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for sequence in self.iter() {
            seq.serialize_element(&sequence)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for EntryList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<EntryList, D::Error> {
        Vec::<u64>::deserialize(deserializer).map(EntryList::from)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn reads_as_the_list_it_was_made_from() {
        for count in [0, 1, 127, 128, 129, 256, 300] {
            let plain: Vec<u64> = (1..=count).map(|i| i * 3).collect();
            let list = EntryList::from(plain.clone());
            assert_eq!(list.len(), plain.len());
            assert_eq!(list.first(), plain.first().copied());
            assert_eq!(list.last(), plain.last().copied());
            assert!(list.iter().eq(plain.iter().copied()));
            for start in [0, 1, 100, 127, 128, 129, 200, 299, 300, 301, 500] {
                for end in [0, start, start + 1, start + 130, 300, 1000] {
                    let expected = plain.get(start..end.min(plain.len())).unwrap_or(&[]);
                    assert!(
                        list.range(start, end).eq(expected.iter().copied()),
                        "{start}..{end}"
                    );
                }
            }
            for bound in [0, 1, 2, 3, 383, 384, 385, 500, 900, 901, 1000] {
                assert_eq!(
                    list.partition_point(|s| s <= bound),
                    plain.partition_point(|s| *s <= bound)
                );
            }
            let bytes = postcard::to_stdvec(&list).unwrap();
            assert_eq!(bytes, postcard::to_stdvec(&plain).unwrap());
            assert_eq!(postcard::from_bytes::<EntryList>(&bytes).unwrap(), list);
        }
    }

    #[test]
    fn pushes_and_pops_as_a_list_does_and_copies_keep_what_they_held() {
        let mut plain = Vec::new();
        let mut list = EntryList::new();
        let mut copies = Vec::new();
        // Up past three chunks, down to empty, up again, a copy taken
        // every seventh step.
        let steps = std::iter::repeat_n(true, 400)
            .chain(std::iter::repeat_n(false, 401))
            .chain(std::iter::repeat_n(true, 130));
        for (step, push) in steps.enumerate() {
            if push {
                plain.push(step as u64);
                list.push(step as u64);
            } else {
                assert_eq!(list.pop(), plain.pop());
            }
            assert_eq!(list.len(), plain.len());
            assert_eq!(list.last(), plain.last().copied());
            if step % 7 == 0 {
                copies.push((plain.clone(), list.clone()));
            }
        }
        assert!(list.iter().eq(plain.iter().copied()));
        for (plain, list) in copies {
            assert!(
                list.iter().eq(plain.iter().copied()),
                "a copy kept what it held"
            );
        }
    }

    /// A step on a list of entries, which rise as sequences do: a push or
    /// an append adds entries after the last by the gaps given.
    #[derive(Clone, Debug)]
    enum Step {
        Push(u64),
        Pop,
        Copy,
        ReadBack,
        Extend(Vec<u64>),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => prop_oneof![1..4u64, 100..100_000u64].prop_map(Step::Push),
            3 => Just(Step::Pop),
            1 => Just(Step::Copy),
            1 => Just(Step::ReadBack),
            1 => proptest::collection::vec(1..4u64, 0..300).prop_map(Step::Extend),
        ]
    }

    /// The list reads as `plain` does, through every reader, and encodes
    /// to its bytes.
    fn same(list: &EntryList, plain: &[u64]) -> Result<(), TestCaseError> {
        prop_assert_eq!(list.len(), plain.len());
        prop_assert_eq!(list.first(), plain.first().copied());
        prop_assert_eq!(list.last(), plain.last().copied());
        prop_assert!(list.iter().eq(plain.iter().copied()));
        let n = plain.len();
        for start in [0, 1, 127, 128, 129, 256, n.saturating_sub(1), n, n + 1] {
            for end in [0, start, start + 1, start + 128, n, usize::MAX] {
                let expected = plain.get(start..end.min(n)).unwrap_or(&[]);
                prop_assert!(
                    list.range(start, end).eq(expected.iter().copied()),
                    "{}..{}",
                    start,
                    end
                );
            }
        }
        for at in [0, 1, 127, 128, 129, n / 2, n.saturating_sub(1)] {
            // The entries rise: those up to a bound are a prefix.
            let bound = plain.get(at).copied().unwrap_or_default();
            for bound in [bound.saturating_sub(1), bound, bound + 1] {
                prop_assert_eq!(
                    list.partition_point(|sequence| sequence <= bound),
                    plain.partition_point(|sequence| *sequence <= bound)
                );
            }
        }
        let bytes = postcard::to_stdvec(list).unwrap();
        prop_assert_eq!(bytes, postcard::to_stdvec(plain).unwrap());
        Ok(())
    }

    proptest! {
        /// Any run of pushes, pops, copies, read-backs and appends leaves
        /// the list, and every copy taken on the way, what a `Vec` holds.
        #[test]
        fn any_steps_read_as_a_plain_list(steps in proptest::collection::vec(step(), 0..600)) {
            let (mut list, mut plain) = (EntryList::new(), Vec::new());
            let mut copies = Vec::new();
            for step in steps {
                let last = plain.last().copied().unwrap_or(0);
                match step {
                    Step::Push(gap) => {
                        list.push(last + gap);
                        plain.push(last + gap);
                    }
                    Step::Pop => prop_assert_eq!(list.pop(), plain.pop()),
                    Step::Copy => copies.push((list.clone(), plain.clone())),
                    Step::ReadBack => {
                        let bytes = postcard::to_stdvec(&list).unwrap();
                        list = postcard::from_bytes(&bytes).unwrap();
                    }
                    Step::Extend(gaps) => {
                        let more: Vec<u64> = gaps
                            .iter()
                            .scan(last, |at, gap| {
                                *at += gap;
                                Some(*at)
                            })
                            .collect();
                        list.extend_from_slice(&more);
                        plain.extend(more);
                    }
                }
                prop_assert!(list.tail.len() < CHUNK);
                prop_assert_eq!(list.tail.iter().count(), list.tail.len());
            }
            same(&list, &plain)?;
            for (list, plain) in &copies {
                same(list, plain)?;
            }
        }
    }

    #[test]
    fn a_copy_shares_the_full_chunks_and_grows_its_tail_by_one() {
        let original = EntryList::from((0..300).collect::<Vec<_>>());
        let mut copy = original.clone();
        copy.push(300);
        assert_eq!(copy.shared_with(&original), (2, 2));
        // 45 entries, 44 distances of one byte, in the room the copy took
        // for the 43 it copied and a few more: the push moved nothing.
        assert_eq!(copy.tail_room(), (300 - 256 + 1, 44, 43 + COPY_ROOM));
        // The tail filling up becomes a chunk of its own: the copy then
        // has one more, and still shares the two.
        for sequence in 301..384 {
            copy.push(sequence);
        }
        assert_eq!(copy.shared_with(&original), (2, 3));
        assert_eq!(copy.tail_room(), (0, 0, 0));
        assert_eq!(original.len(), 300);
        assert!(copy.iter().eq(0..384));
    }

    /// A tail is packed as a chunk is: a loan closed after 50 entries a
    /// thousand apart holds about two bytes an entry, not eight, and grows
    /// and shrinks by exactly a varint.
    #[test]
    fn a_tail_takes_about_two_bytes_an_entry() {
        let entries: Vec<u64> = (0..50u64).map(|i| 7_000_000 + i * 1_000 + i % 3).collect();
        let list = EntryList::from(entries.clone());
        assert!(list.iter().eq(entries.iter().copied()));
        assert_eq!(list.tail_room(), (50, 49 * 2, 49 * 2));
        let mut popped = list.clone();
        assert_eq!(popped.pop(), entries.last().copied());
        assert_eq!(popped.tail_room().1, 48 * 2);
        popped.push(u64::MAX);
        assert_eq!(popped.last(), Some(u64::MAX));
        assert_eq!(popped.pop(), Some(u64::MAX));
        assert!(popped.iter().eq(entries[..49].iter().copied()));
    }

    /// Full chunks are packed: a loan's entries some thousands apart take
    /// about two bytes each, not eight; distances of any size, and entries
    /// out of order, read back as they were.
    #[test]
    fn full_chunks_take_about_two_bytes_an_entry_and_read_back_whatever_the_distances() {
        let spaced: Vec<u64> = (0..10_240u64)
            .map(|i| 5_000_000 + i * 1_000 + i % 7)
            .collect();
        let list = EntryList::from(spaced.clone());
        assert!(list.iter().eq(spaced.iter().copied()));
        let per_entry = list.packed_bytes() as f64 / spaced.len() as f64;
        assert!(per_entry < 2.5, "{per_entry} bytes an entry");
        let odd: Vec<u64> = (0..300u64)
            .map(|i| match i % 3 {
                0 => u64::MAX - i,
                1 => i,
                _ => 1 << (i % 64),
            })
            .collect();
        let list = EntryList::from(odd.clone());
        assert!(list.iter().eq(odd.iter().copied()));
        assert_eq!(list.last(), odd.last().copied());
        let mut popped = list.clone();
        for expected in odd.iter().rev() {
            assert_eq!(popped.pop(), Some(*expected));
        }
        assert_eq!(popped.pop(), None);
    }
}
