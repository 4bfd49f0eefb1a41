//! A loan's installments, kept in chunks that copies of the loan share.
//!
//! Applying an entry stages a copy of each loan it changes, and the state
//! and its read side each hold the loan. A repayment changes what was paid
//! on one or two installments, but a long loan has hundreds (a ten-year
//! weekly loan, 520): with the schedule in one list, every repayment copied
//! all of it (about 60 KB). Here a copy of the loan shares the chunks, and
//! changing an installment copies only its chunk ([`Arc::make_mut`]).
//!
//! Beside them, while the loan is active, what is due up to and including
//! each installment ([`Installments::cumulative_dues`]): the loan's
//! portfolio figures, worked out before and after every entry on it, ask
//! which installments a payment covers, and adding the schedule up from
//! its first installment each time cost as much as the rest of them.

use std::ops::{Deref, DerefMut, Index};
use std::sync::Arc;

use rust_decimal::Decimal;
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
    /// What is due (principal, interest and fees) up to and including each
    /// installment, from the first, when kept; it stops before the first
    /// sum that would overflow. Shared by copies of the loan; dropped when
    /// an installment's amounts due change, until kept again.
    cumulative_dues: Option<Arc<Vec<Decimal>>>,
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
    /// copy of the loan shares it. Changing its amounts due drops the
    /// cumulative dues (see [`InstallmentMut`]).
    pub fn get_mut(&mut self, index: usize) -> Option<InstallmentMut<'_>> {
        let chunk = self.chunks.get_mut(index / CHUNK)?;
        let installment = Arc::make_mut(chunk).get_mut(index % CHUNK)?;
        Some(InstallmentMut {
            due: due_amounts(installment),
            installment,
            cumulative_dues: &mut self.cumulative_dues,
        })
    }

    /// Keeps [`Installments::cumulative_dues`] (worked out now if they are
    /// not kept yet), or drops them.
    pub fn keep_cumulative_dues(&mut self, keep: bool) {
        if !keep {
            self.cumulative_dues = None;
        } else if self.cumulative_dues.is_none() {
            let mut sums = Vec::with_capacity(self.len);
            let mut total = Decimal::ZERO;
            for installment in self.iter() {
                let Some(next) = due_amounts(installment)
                    .into_iter()
                    .try_fold(total, Decimal::checked_add)
                else {
                    break;
                };
                sums.push(next);
                total = next;
            }
            self.cumulative_dues = Some(Arc::new(sums));
        }
    }

    /// What is due up to and including each installment, from the first,
    /// when kept ([`Installments::keep_cumulative_dues`]): as many sums as
    /// installments, or fewer when the next sum would overflow. Each sum is
    /// added principal, interest, then fees, onto the one before, so it is
    /// the same number, scale included, as the same addition made anew.
    pub fn cumulative_dues(&self) -> Option<&[Decimal]> {
        self.cumulative_dues.as_deref().map(Vec::as_slice)
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
        let mut due_changed = false;
        let mut f = |installment: &mut InstallmentState| {
            let due = due_amounts(installment);
            f(installment);
            due_changed |= !same_amounts(due, due_amounts(installment));
        };
        for (number, chunk) in self.chunks.iter_mut().enumerate() {
            let start = number * CHUNK;
            if start >= end {
                break;
            }
            for installment in Arc::make_mut(chunk).iter_mut().take(end - start) {
                f(installment);
            }
        }
        if due_changed {
            self.cumulative_dues = None;
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

/// An installment's amounts due, in the order the cumulative dues add them.
pub(super) fn due_amounts(installment: &InstallmentState) -> [Decimal; 3] {
    let due = &installment.due;
    [due.principal, due.interest, due.fee]
}

/// Whether two lists of amounts are the same numbers with the same scales
/// (`==` on decimals ignores the scale: 1.0 equals 1.00).
fn same_amounts(a: [Decimal; 3], b: [Decimal; 3]) -> bool {
    a.iter()
        .zip(&b)
        .all(|(a, b)| a.serialize() == b.serialize())
}

/// An installment being changed ([`Installments::get_mut`]): read and
/// written as the installment itself. When it is done with, a change to
/// its amounts due (a recast) drops the loan's cumulative dues, which no
/// longer add up to the schedule; they are worked out again when next kept.
pub struct InstallmentMut<'a> {
    installment: &'a mut InstallmentState,
    due: [Decimal; 3],
    cumulative_dues: &'a mut Option<Arc<Vec<Decimal>>>,
}

impl Deref for InstallmentMut<'_> {
    type Target = InstallmentState;

    fn deref(&self) -> &InstallmentState {
        self.installment
    }
}

impl DerefMut for InstallmentMut<'_> {
    fn deref_mut(&mut self) -> &mut InstallmentState {
        self.installment
    }
}

impl Drop for InstallmentMut<'_> {
    fn drop(&mut self) {
        if !same_amounts(self.due, due_amounts(self.installment)) {
            *self.cumulative_dues = None;
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
            cumulative_dues: None,
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
