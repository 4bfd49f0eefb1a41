//! A loan's installments, kept in chunks that copies of the loan share
//! ([`Chunked`]): a repayment changes what was paid on one or two
//! installments, and copies only their chunk, not the whole schedule.
//!
//! Beside them, while the loan is active, what is due up to and including
//! each installment ([`Installments::cumulative_dues`]): the loan's
//! portfolio figures, worked out before and after every entry on it, ask
//! which installments a payment covers, and adding the schedule up from
//! its first installment each time cost as much as the rest of them.
//!

use std::ops::{Deref, DerefMut, Index};
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::InstallmentState;
use super::chunked::Chunked;

/// Installments per chunk: a repayment's copy is one chunk (about 880
/// bytes; 32 a chunk copied 3.5 KB, the larger part of the writer's
/// copying), and a loan of the usual 50 installments is seven.
const CHUNK: usize = 8;

/// The installments of a loan, in order (see the module's documentation).
#[derive(Clone, Default)]
pub struct Installments {
    list: Chunked<InstallmentState, CHUNK>,
    /// What is due (principal, interest and fees) up to and including each
    /// installment, from the first, when kept; it stops before the first
    /// sum that would overflow. Shared by copies of the loan; dropped when
    /// an installment's amounts due change, until kept again.
    cumulative_dues: Option<Arc<Vec<Decimal>>>,
}

impl Installments {
    /// How many installments.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Installment `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<&InstallmentState> {
        self.list.get(index)
    }

    /// The last installment, if any.
    pub fn last(&self) -> Option<&InstallmentState> {
        self.list.last()
    }

    /// Installment `index` to change: its chunk is copied first if another
    /// copy of the loan shares it. Changing its amounts due drops the
    /// cumulative dues (see [`InstallmentMut`]).
    pub fn get_mut(&mut self, index: usize) -> Option<InstallmentMut<'_>> {
        let installment = self.list.get_mut(index)?;
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
            let mut sums = Vec::with_capacity(self.len());
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
        self.list.iter()
    }

    /// The installments from `start` on (none when `start` is past the end).
    pub fn iter_from(&self, start: usize) -> impl Iterator<Item = &InstallmentState> + Clone + '_ {
        self.list.iter_from(start)
    }

    /// The installments `start..end` (those of it that exist).
    pub fn range(
        &self,
        start: usize,
        end: usize,
    ) -> impl Iterator<Item = &InstallmentState> + Clone + '_ {
        self.list.range(start, end)
    }

    /// The installments before `end`, changed in place (chunks shared
    /// with another copy of the loan are copied first).
    pub fn for_each_before_mut(&mut self, end: usize, mut f: impl FnMut(&mut InstallmentState)) {
        let mut due_changed = false;
        self.list.for_each_before_mut(end, |installment| {
            let due = due_amounts(installment);
            f(installment);
            due_changed |= !same_amounts(due, due_amounts(installment));
        });
        if due_changed {
            self.cumulative_dues = None;
        }
    }

    /// The number of installments at the start for which `pred` holds,
    /// when it holds for a prefix (as [`slice::partition_point`]).
    pub fn partition_point(&self, pred: impl FnMut(&InstallmentState) -> bool) -> usize {
        self.list.partition_point(pred)
    }

    /// [`partition_point`](Self::partition_point), searched outwards from
    /// installment `near` ([`Chunked::partition_point_near`]).
    pub fn partition_point_near(
        &self,
        near: usize,
        pred: impl FnMut(&InstallmentState) -> bool,
    ) -> usize {
        self.list.partition_point_near(near, pred)
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
                self.len()
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
            list: Chunked::from(list),
            cumulative_dues: None,
        }
    }
}

impl PartialEq for Installments {
    fn eq(&self, other: &Installments) -> bool {
        self.list == other.list
    }
}

impl Eq for Installments {}

impl std::fmt::Debug for Installments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.list.fmt(f)
    }
}

/// Written as the list it was before it was kept in chunks: the same bytes.
impl Serialize for Installments {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.list.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Installments {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Installments, D::Error> {
        Chunked::deserialize(deserializer).map(|list| Installments {
            list,
            cumulative_dues: None,
        })
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
    fn a_change_to_a_copy_leaves_the_original_and_copies_one_chunk() {
        let original = Installments::from(list(520));
        let mut copy = original.clone();
        copy.get_mut(100).unwrap().principal_paid = Decimal::ONE;
        assert_eq!(original[100].principal_paid, Decimal::ZERO);
        assert_eq!(copy[100].principal_paid, Decimal::ONE);
        let (shared, chunks) = original.list.shared_with(&copy.list);
        assert_eq!(shared, chunks - 1);
        assert_ne!(original, copy);
    }

    #[test]
    fn no_chunk_keeps_room_it_does_not_use() {
        let installments = Installments::from(list(50));
        let mut sizes = vec![(CHUNK, CHUNK); 50 / CHUNK];
        sizes.push((50 % CHUNK, 50 % CHUNK));
        assert_eq!(installments.list.chunk_sizes(), sizes);
    }

    #[test]
    fn a_change_in_place_reaches_exactly_the_installments_before_the_end() {
        for start in [0, 5, 7, 8, 9, 31, 32, 33, 100, 520, 600] {
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
