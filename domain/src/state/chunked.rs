//! A list kept in chunks that copies of it share: a loan's installments.
//!
//! Applying an entry stages a copy of each loan it changes, and the state
//! and its read side each hold the loan, so a loan's schedule is copied at
//! every entry on it. Held in one `Vec`, it was copied whole each time: a
//! ten-year weekly loan's 520 installments (about 60 KB) at every
//! repayment. Here a copy shares the chunks, and a change copies only the
//! chunk it touches ([`Arc::make_mut`]). (A loan's lists of entries share
//! their full chunks the same way, packed: `EntryList`.)

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A list in chunks of `N` items (see the module's documentation). Every
/// chunk is full but the last, and none is empty.
#[derive(Clone)]
pub struct Chunked<T, const N: usize> {
    chunks: Vec<Arc<Vec<T>>>,
    len: usize,
}

/// The number of items at the start of a list of `len` for which
/// `holds(index)` is true, when it is true for a prefix (as
/// [`slice::partition_point`]), searched outwards from `near` (1, 2, 4,
/// ... items either way, then halving): the items read are those around
/// `near`, where the prefix is expected to end, not the middles of the
/// whole list.
pub(crate) fn partition_point_near_by(
    len: usize,
    near: usize,
    mut holds: impl FnMut(usize) -> bool,
) -> usize {
    let near = near.min(len);
    // The prefix ends in lo..=hi: `holds` is true before lo and false at hi
    // (or hi is the length).
    let (mut lo, mut hi);
    if near < len && holds(near) {
        (lo, hi) = (near + 1, len);
        let mut step = 1;
        while near + step < len {
            if holds(near + step) {
                lo = near + step + 1;
                step *= 2;
            } else {
                hi = near + step;
                break;
            }
        }
    } else {
        (lo, hi) = (0, near);
        let mut step = 1;
        while step <= near {
            if holds(near - step) {
                lo = near - step + 1;
                break;
            }
            hi = near - step;
            step *= 2;
        }
    }
    while lo < hi {
        let middle = lo + (hi - lo) / 2;
        if holds(middle) {
            lo = middle + 1;
        } else {
            hi = middle;
        }
    }
    lo
}

impl<T, const N: usize> Default for Chunked<T, N> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T: Clone, const N: usize> Chunked<T, N> {
    /// How many items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Item `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<&T> {
        self.chunks.get(index / N)?.get(index % N)
    }

    /// The last item, if any.
    pub fn last(&self) -> Option<&T> {
        self.chunks.last()?.last()
    }

    /// Item `index` to change: its chunk is copied first if another copy of
    /// the list shares it.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        Arc::make_mut(self.chunks.get_mut(index / N)?).get_mut(index % N)
    }

    /// Every item, in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + Clone + '_ {
        self.chunks.iter().flat_map(|chunk| chunk.iter())
    }

    /// The items from `start` on (none when `start` is past the end).
    pub fn iter_from(&self, start: usize) -> impl Iterator<Item = &T> + Clone + '_ {
        let first = self
            .chunks
            .get(start / N)
            .map_or(&[][..], |chunk| chunk.get(start % N..).unwrap_or(&[]));
        let rest = self.chunks.get(start / N + 1..).unwrap_or(&[]);
        first
            .iter()
            .chain(rest.iter().flat_map(|chunk| chunk.iter()))
    }

    /// The items `start..end` (those of it that exist).
    pub fn range(&self, start: usize, end: usize) -> impl Iterator<Item = &T> + Clone + '_ {
        self.iter_from(start).take(end.saturating_sub(start))
    }

    /// The items before `end`, changed in place (chunks shared with another
    /// copy are copied first).
    pub fn for_each_before_mut(&mut self, end: usize, mut f: impl FnMut(&mut T)) {
        for (number, chunk) in self.chunks.iter_mut().enumerate() {
            let start = number * N;
            if start >= end {
                break;
            }
            for item in Arc::make_mut(chunk).iter_mut().take(end - start) {
                f(item);
            }
        }
    }

    /// The number of items at the start for which `pred` holds, when it
    /// holds for a prefix (as [`slice::partition_point`]).
    pub fn partition_point(&self, mut pred: impl FnMut(&T) -> bool) -> usize {
        // Chunks whose last item satisfies it are wholly in the prefix.
        let whole = self
            .chunks
            .partition_point(|chunk| chunk.last().is_some_and(&mut pred));
        match self.chunks.get(whole) {
            Some(chunk) => whole * N + chunk.partition_point(pred),
            None => self.len,
        }
    }

    /// [`partition_point`](Self::partition_point), searched outwards from
    /// `near` ([`partition_point_near_by`]): a binary search reads the
    /// middles of the whole list, each in its own chunk (a long loan's
    /// schedule searched for a repayment's date read a chunk it had no
    /// other use for at each step, most of them out of the processor's
    /// cache).
    pub fn partition_point_near(&self, near: usize, mut pred: impl FnMut(&T) -> bool) -> usize {
        partition_point_near_by(self.len, near, |index| {
            self.get(index).is_some_and(&mut pred)
        })
    }

    /// Each chunk's length and capacity.
    #[cfg(test)]
    pub(crate) fn chunk_sizes(&self) -> Vec<(usize, usize)> {
        let sizes = self.chunks.iter();
        sizes.map(|chunk| (chunk.len(), chunk.capacity())).collect()
    }

    /// How many chunks this list and `other` share, and how many it has.
    #[cfg(test)]
    pub(crate) fn shared_with(&self, other: &Self) -> (usize, usize) {
        let pairs = self.chunks.iter().zip(&other.chunks);
        let shared = pairs.filter(|(a, b)| Arc::ptr_eq(a, b)).count();
        (shared, self.chunks.len())
    }
}

impl<T: Clone, const N: usize> From<&[T]> for Chunked<T, N> {
    /// Each chunk holds exactly its items: no room left over in the last.
    fn from(list: &[T]) -> Self {
        Chunked {
            chunks: list
                .chunks(N)
                .map(|chunk| Arc::new(chunk.to_vec()))
                .collect(),
            len: list.len(),
        }
    }
}

impl<T: Clone, const N: usize> From<Vec<T>> for Chunked<T, N> {
    /// The items moved into their chunks, not copied.
    fn from(list: Vec<T>) -> Self {
        let len = list.len();
        let mut chunks = Vec::with_capacity(len.div_ceil(N));
        let mut items = list.into_iter();
        while items.len() > 0 {
            chunks.push(Arc::new(items.by_ref().take(N).collect::<Vec<T>>()));
        }
        Chunked { chunks, len }
    }
}

impl<T: Clone + PartialEq, const N: usize> PartialEq for Chunked<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl<T: Clone + Eq, const N: usize> Eq for Chunked<T, N> {}

impl<T: Clone + std::fmt::Debug, const N: usize> std::fmt::Debug for Chunked<T, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Written as the list it was before it was kept in chunks: the same bytes.
impl<T: Clone + Serialize, const N: usize> Serialize for Chunked<T, N> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        // The length first, as a list gives it (`collect_seq` would leave it
        // unknown: a flattened iterator does not know it).
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        for item in self.iter() {
            seq.serialize_element(item)?;
        }
        seq.end()
    }
}

impl<'de, T: Clone + Deserialize<'de>, const N: usize> Deserialize<'de> for Chunked<T, N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<T>::deserialize(deserializer).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type List = Chunked<u64, 4>;

    #[test]
    fn reads_as_the_list_it_was_made_from() {
        for count in [0, 1, 3, 4, 5, 8, 9, 30] {
            let plain: Vec<u64> = (1..=count).collect();
            let chunked = List::from(plain.clone());
            assert_eq!(chunked.len(), plain.len());
            assert_eq!(chunked.last(), plain.last());
            assert!(chunked.iter().eq(plain.iter()));
            assert!(chunked.iter().rev().eq(plain.iter().rev()));
            for start in 0..=plain.len() + 2 {
                let expected = plain.get(start..).unwrap_or(&[]);
                assert!(chunked.iter_from(start).eq(expected.iter()), "from {start}");
                for end in [start, start + 1, start + 5, plain.len()] {
                    let expected = plain.get(start..end.min(plain.len())).unwrap_or(&[]);
                    assert!(chunked.range(start, end).eq(expected.iter()));
                }
            }
            for index in 0..plain.len() + 2 {
                assert_eq!(chunked.get(index), plain.get(index));
            }
            for bound in 0..=count + 1 {
                let pred = |i: &u64| *i <= bound;
                let expected = plain.partition_point(pred);
                assert_eq!(chunked.partition_point(pred), expected);
                for near in 0..=count + 2 {
                    assert_eq!(
                        chunked.partition_point_near(near as usize, pred),
                        expected,
                        "bound {bound} near {near}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_change_to_a_copy_leaves_the_original() {
        let original = List::from((0..10).collect::<Vec<_>>());
        let mut copy = original.clone();
        *copy.get_mut(5).unwrap() = 50;
        assert_eq!(original.get(5), Some(&5));
        assert_eq!(copy.get(5), Some(&50));
        assert_ne!(original, copy);
        copy.for_each_before_mut(2, |item| *item += 100);
        assert!(copy.iter().take(3).eq([100, 101, 2].iter()));
        assert!(original.iter().take(3).eq([0, 1, 2].iter()));
    }

    #[test]
    fn encodes_to_the_same_bytes_as_the_list() {
        let plain: Vec<u64> = (0..70).map(|i| i * 1_000).collect();
        let chunked = List::from(plain.clone());
        let bytes = postcard::to_stdvec(&chunked).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&plain).unwrap());
        let back: List = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, chunked);
    }
}
