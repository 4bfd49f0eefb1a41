//! A loan's installments, kept in chunks that copies of the loan share.
//!
//! Applying an entry stages a copy of each loan it changes, and the state
//! and its read side each hold the loan. A repayment changes what was paid
//! on one or two installments, but a long loan has hundreds (a ten-year
//! weekly loan, 520): with the schedule in one list, every repayment copied
//! all of it (about 60 KB). Here a copy of the loan shares the chunks, and
//! changing an installment copies only its chunk ([`Arc::make_mut`]).

use std::ops::Index;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::InstallmentState;

/// Installments per chunk: a repayment's copy is one chunk (about 3.5 KB),
/// and a loan of the usual 50 installments is two.
const CHUNK: usize = 32;

/// The installments of a loan, in order (see the module's documentation).
#[derive(Clone, Default)]
pub struct Installments {
    /// Full chunks of [`CHUNK`] installments, the last one possibly shorter.
    chunks: Vec<Arc<Vec<InstallmentState>>>,
    len: usize,
}

impl Installments {
    /// How many installments.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Installment `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<&InstallmentState> {
        self.chunks.get(index / CHUNK)?.get(index % CHUNK)
    }

    /// The last installment, if any.
    pub fn last(&self) -> Option<&InstallmentState> {
        self.chunks.last()?.last()
    }

    /// Installment `index` to change: its chunk is copied first if another
    /// copy of the loan shares it.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut InstallmentState> {
        let chunk = self.chunks.get_mut(index / CHUNK)?;
        Arc::make_mut(chunk).get_mut(index % CHUNK)
    }

    /// Every installment, in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &InstallmentState> + Clone + '_ {
        self.chunks.iter().flat_map(|chunk| chunk.iter())
    }

    /// The installments from `start` on (none when `start` is past the end).
    pub fn iter_from(&self, start: usize) -> impl Iterator<Item = &InstallmentState> + Clone + '_ {
        let first = self
            .chunks
            .get(start / CHUNK)
            .map_or(&[][..], |chunk| chunk.get(start % CHUNK..).unwrap_or(&[]));
        let rest = self.chunks.get(start / CHUNK + 1..).unwrap_or(&[]);
        first
            .iter()
            .chain(rest.iter().flat_map(|chunk| chunk.iter()))
    }

    /// The installments `start..end` (those of it that exist).
    pub fn range(
        &self,
        start: usize,
        end: usize,
    ) -> impl Iterator<Item = &InstallmentState> + Clone + '_ {
        self.iter_from(start).take(end.saturating_sub(start))
    }

    /// The installments before `end`, changed in place (chunks shared
    /// with another copy of the loan are copied first).
    pub fn for_each_before_mut(&mut self, end: usize, mut f: impl FnMut(&mut InstallmentState)) {
        for (number, chunk) in self.chunks.iter_mut().enumerate() {
            let start = number * CHUNK;
            if start >= end {
                break;
            }
            for installment in Arc::make_mut(chunk).iter_mut().take(end - start) {
                f(installment);
            }
        }
    }

    /// The number of installments at the start for which `pred` holds,
    /// when it holds for a prefix (as [`slice::partition_point`]).
    pub fn partition_point(&self, mut pred: impl FnMut(&InstallmentState) -> bool) -> usize {
        // Chunks whose last installment satisfies it are wholly in the prefix.
        let whole = self
            .chunks
            .partition_point(|chunk| chunk.last().is_some_and(&mut pred));
        match self.chunks.get(whole) {
            Some(chunk) => whole * CHUNK + chunk.partition_point(pred),
            None => self.len,
        }
    }
}

impl Index<usize> for Installments {
    type Output = InstallmentState;

    fn index(&self, index: usize) -> &InstallmentState {
        match self.get(index) {
            Some(installment) => installment,
            None => panic!(
                "installment index {index} out of range for {} installments",
                self.len
            ),
        }
    }
}

impl FromIterator<InstallmentState> for Installments {
    fn from_iter<I: IntoIterator<Item = InstallmentState>>(iter: I) -> Installments {
        Installments::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl From<Vec<InstallmentState>> for Installments {
    /// Each chunk holds exactly its installments: no room left over in the
    /// last one, kept for as long as the loan.
    fn from(list: Vec<InstallmentState>) -> Installments {
        Installments {
            chunks: list
                .chunks(CHUNK)
                .map(|chunk| Arc::new(chunk.to_vec()))
                .collect(),
            len: list.len(),
        }
    }
}

impl PartialEq for Installments {
    fn eq(&self, other: &Installments) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for Installments {}

impl std::fmt::Debug for Installments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Written as the list it was before it was kept in chunks: the same bytes.
impl Serialize for Installments {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        // The length first, as a list gives it (`collect_seq` would leave it
        // unknown: a flattened iterator does not know it).
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        for installment in self.iter() {
            seq.serialize_element(installment)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Installments {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Installments, D::Error> {
        Vec::<InstallmentState>::deserialize(deserializer).map(Installments::from)
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use rust_decimal::Decimal;

    use super::*;
    use crate::schedule::Installment;

    fn installment(number: u32) -> InstallmentState {
        InstallmentState::unpaid(Installment {
            number,
            due_date: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap()
                + chrono::Days::new(u64::from(number) * 7),
            principal: Decimal::from(number),
            interest: Decimal::ONE,
            fee: Decimal::ZERO,
        })
    }

    fn list(count: u32) -> Vec<InstallmentState> {
        (1..=count).map(installment).collect()
    }

    #[test]
    fn reads_as_the_list_it_was_made_from() {
        for count in [0, 1, 31, 32, 33, 64, 65, 520] {
            let plain = list(count);
            let chunked = Installments::from(plain.clone());
            assert_eq!(chunked.len(), plain.len());
            assert_eq!(chunked.iter().cloned().collect::<Vec<_>>(), plain);
            assert!(chunked.iter().eq(plain.iter()));
            assert!(chunked.iter().rev().eq(plain.iter().rev()));
            for start in 0..=plain.len() + 2 {
                let expected = plain.get(start..).unwrap_or(&[]);
                assert!(chunked.iter_from(start).eq(expected.iter()), "from {start}");
                for end in [start, start + 1, start + 40, plain.len()] {
                    let expected = plain.get(start..end.min(plain.len())).unwrap_or(&[]);
                    assert!(chunked.range(start, end).eq(expected.iter()));
                }
            }
            for index in 0..plain.len() + 2 {
                assert_eq!(chunked.get(index), plain.get(index));
            }
            for bound in 0..=count + 1 {
                let pred = |i: &InstallmentState| i.due.number <= bound;
                assert_eq!(chunked.partition_point(pred), plain.partition_point(pred));
            }
        }
    }

    #[test]
    fn a_change_to_a_copy_leaves_the_original_and_copies_one_chunk() {
        let original = Installments::from(list(520));
        let mut copy = original.clone();
        copy.get_mut(100).unwrap().principal_paid = Decimal::ONE;
        assert_eq!(original[100].principal_paid, Decimal::ZERO);
        assert_eq!(copy[100].principal_paid, Decimal::ONE);
        let shared = original
            .chunks
            .iter()
            .zip(&copy.chunks)
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(shared, original.chunks.len() - 1);
        assert_ne!(original, copy);
    }

    #[test]
    fn no_chunk_keeps_room_it_does_not_use() {
        let installments = Installments::from(list(50));
        let sizes: Vec<_> = installments
            .chunks
            .iter()
            .map(|chunk| (chunk.len(), chunk.capacity()))
            .collect();
        assert_eq!(sizes, [(32, 32), (18, 18)]);
    }

    #[test]
    fn a_change_in_place_reaches_exactly_the_installments_before_the_end() {
        for start in [0, 5, 31, 32, 33, 100, 520, 600] {
            let mut chunked = Installments::from(list(100));
            chunked.for_each_before_mut(start, |i| i.interest_paid = Decimal::ONE);
            for (index, installment) in chunked.iter().enumerate() {
                assert_eq!(installment.interest_paid.is_zero(), index >= start);
            }
        }
    }

    #[test]
    fn encodes_to_the_same_bytes_as_the_list() {
        let plain = list(70);
        let chunked = Installments::from(plain.clone());
        let bytes = postcard::to_stdvec(&chunked).unwrap();
        assert_eq!(bytes, postcard::to_stdvec(&plain).unwrap());
        let back: Installments = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back, chunked);
    }
}
