//! A loan's installments, packed in chunks that copies of the loan share:
//! a repayment changes what was paid on one or two installments, and
//! writes only their chunk again, not the whole schedule. The chunks are
//! held in groups that copies share too ([`GROUP`]), so that a copy of a
//! loan, which applying every entry on it makes, counts references to a
//! few groups, not to every chunk of a long schedule. Each chunk holds
//! its installments as columns of the fewest bytes that hold them
//! ([`packed`]): a running loan's schedule was the largest part of the
//! memory that grows with a branch's members, at 104 bytes an installment.
//!
//! Beside them, while the loan is active, what is due up to and including
//! each installment ([`Installments::cumulative_dues`]): the loan's
//! portfolio figures, worked out before and after every entry on it, ask
//! which installments a payment covers, and adding the schedule up from
//! its first installment each time cost as much as the rest of them.
//!
//! Installments are read as values ([`InstallmentState`]), unpacked, and
//! changed through [`Installments::get_mut`] and
//! [`Installments::for_each_before_mut`], which pack their chunk again
//! (its group's list of chunks copied first where another copy of the
//! loan shares it).

mod packed;

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::InstallmentState;
use super::search::partition_point_near_by;
use packed::Packed;

/// Installments per chunk: a repayment packs one chunk again, and a loan
/// of the usual 50 installments is seven.
const CHUNK: usize = packed::MAX;

/// Chunks per group: a loan of the usual 50 installments is one group. A
/// change to a copy of a loan copies the group it is in (its list of
/// references) besides packing its chunk again, where another copy shares
/// the group. Copying a loan and dropping the copy it replaced count one
/// reference a group, where each counted one a chunk: with 65 chunks
/// (520 weekly installments) those counts, each an atomic operation on a
/// memory line of its own, took a repayment's CPU to 1.16x to 1.25x what
/// it is now (BENCHMARKS.md, the table of changes). A group costs a loan
/// about 32 bytes: its reference in the list, and its own count.
const GROUP: usize = 8;

/// Installments per group.
const PER_GROUP: usize = CHUNK * GROUP;

/// Up to [`GROUP`] chunks, shared by copies of the loan until one changes.
type Group = Arc<[Arc<Packed>]>;

/// The installments of a loan, in order (see the module's documentation).
#[derive(Clone, Default)]
pub struct Installments {
    /// Every chunk holds [`CHUNK`] installments but the last, and none is
    /// empty; every group holds [`GROUP`] chunks but the last, and none is
    /// empty.
    groups: Vec<Group>,
    len: usize,
    /// What is due (principal, interest and fees) up to and including each
    /// installment, from the first, when kept; it stops before the first
    /// sum that would overflow. Shared by copies of the loan; dropped when
    /// an installment's amounts due change, until kept again.
    cumulative_dues: Option<Arc<CumulativeDues>>,
}

/// What is due up to and including each installment of a schedule, from
/// the first ([`Installments::cumulative_dues`]): 4 bytes a sum when every
/// sum has one scale and a mantissa under 2^32 (a schedule in dong whose
/// sums stay under 4.29 billion, or in cents under 42.9 million), else the
/// decimals themselves, 16 bytes each. Either way each sum reads back the
/// same number, scale included.
#[derive(Debug, PartialEq, Eq)]
pub enum CumulativeDues {
    Narrow { scale: u32, mantissas: Box<[u32]> },
    Wide(Box<[Decimal]>),
}

impl CumulativeDues {
    /// The sums, held as narrow as they allow.
    fn of(sums: Vec<Decimal>) -> CumulativeDues {
        let scale = sums.first().map_or(0, Decimal::scale);
        let narrow: Option<Box<[u32]>> = sums
            .iter()
            .map(|sum| {
                (sum.scale() == scale && !sum.is_sign_negative())
                    .then(|| u32::try_from(sum.mantissa()).ok())
                    .flatten()
            })
            .collect();
        match narrow {
            Some(mantissas) => CumulativeDues::Narrow { scale, mantissas },
            None => CumulativeDues::Wide(sums.into_boxed_slice()),
        }
    }

    /// How many sums.
    pub fn len(&self) -> usize {
        match self {
            CumulativeDues::Narrow { mantissas, .. } => mantissas.len(),
            CumulativeDues::Wide(sums) => sums.len(),
        }
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The sum through installment `index`, if kept.
    pub fn get(&self, index: usize) -> Option<Decimal> {
        match self {
            CumulativeDues::Narrow { scale, mantissas } => mantissas
                .get(index)
                .map(|&mantissa| Decimal::from_parts(mantissa, 0, 0, false, *scale)),
            CumulativeDues::Wide(sums) => sums.get(index).copied(),
        }
    }

    /// How many sums are at most `amount`: the installments paying it
    /// covers. The sums only grow; searched from the start outwards (1,
    /// 2, 4, ... sums, then halving). The portfolio figures search from
    /// where they expect the answer ([`CumulativeDues::covered_by_near`]).
    #[cfg(test)]
    pub fn covered_by(&self, amount: Decimal) -> usize {
        self.covered_by_near(amount, 0)
    }

    /// How many sums are at most `amount`, searched outwards from sum
    /// `near`: the same answer from anywhere, found reading the sums
    /// around `near` when the answer is near it, where a search from the
    /// start reads across a long loan's sums (a few kilobytes: a memory
    /// line after another) to an answer far from it.
    pub fn covered_by_near(&self, amount: Decimal, near: usize) -> usize {
        partition_point_near_by(self.len(), near, |index| {
            self.get(index).is_some_and(|sum| sum <= amount)
        })
    }

    /// Every sum.
    #[cfg(test)]
    pub fn to_vec(&self) -> Vec<Decimal> {
        (0..self.len())
            .filter_map(|index| self.get(index))
            .collect()
    }
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

    /// Chunk `number`, if there is one.
    fn chunk(&self, number: usize) -> Option<&Arc<Packed>> {
        self.groups.get(number / GROUP)?.get(number % GROUP)
    }

    /// The chunks from chunk `first` on, each with its number.
    fn chunks_from(&self, first: usize) -> impl Iterator<Item = (usize, &Arc<Packed>)> + '_ {
        let skipped = first / GROUP * GROUP;
        let groups = self.groups.iter().skip(first / GROUP);
        let chunks = groups.flat_map(|group| group.iter());
        chunks
            .enumerate()
            .map(move |(number, chunk)| (skipped + number, chunk))
            .skip(first % GROUP)
    }

    /// Installment `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<InstallmentState> {
        self.chunk(index / CHUNK)?.get(index % CHUNK)
    }

    /// Installment `index`.
    ///
    /// # Panics
    /// When there is none (as indexing a list does).
    pub fn at(&self, index: usize) -> InstallmentState {
        match self.get(index) {
            Some(installment) => installment,
            None => panic!(
                "installment index {index} out of range for {} installments",
                self.len()
            ),
        }
    }

    /// Installment `index`'s due date.
    ///
    /// # Panics
    /// When there is none, as [`Installments::at`].
    pub fn due_date_at(&self, index: usize) -> chrono::NaiveDate {
        match self.due_date(index) {
            Some(date) => date,
            None => panic!(
                "installment index {index} out of range for {} installments",
                self.len()
            ),
        }
    }

    /// Every installment as scheduled (what is due, not what was paid).
    pub fn dues(&self) -> impl Iterator<Item = crate::schedule::Installment> + '_ {
        let chunks = self.chunks_from(0);
        chunks.flat_map(|(_, chunk)| (0..chunk.len()).filter_map(|index| chunk.due(index)))
    }

    /// The installments from `start` on, less those of chunks on which
    /// nothing was paid (read without unpacking them): a loan's
    /// installments with something paid are among these.
    pub fn paid_from(&self, start: usize) -> impl Iterator<Item = InstallmentState> + '_ {
        let chunks = self.chunks_from(start / CHUNK);
        chunks
            .filter(|(_, chunk)| !chunk.nothing_paid())
            .flat_map(move |(number, chunk)| {
                let first = if number == start / CHUNK {
                    start % CHUNK
                } else {
                    0
                };
                (first..chunk.len()).filter_map(|index| chunk.get(index))
            })
    }

    /// The due dates from installment `start` on.
    pub fn due_dates_from(&self, start: usize) -> impl Iterator<Item = chrono::NaiveDate> + '_ {
        (start..self.len).filter_map(|index| self.due_date(index))
    }

    /// Installment `index`'s amounts due (principal, interest, fees)
    /// alone, if there is one.
    pub fn due_amounts_at(&self, index: usize) -> Option<[Decimal; 3]> {
        self.chunk(index / CHUNK)?.due_amounts(index % CHUNK)
    }

    /// Installment `index`'s due date alone, if there is one.
    pub fn due_date(&self, index: usize) -> Option<chrono::NaiveDate> {
        self.chunk(index / CHUNK)?.due_date(index % CHUNK)
    }

    /// The last installment, if any.
    pub fn last(&self) -> Option<InstallmentState> {
        self.get(self.len.checked_sub(1)?)
    }

    /// Installment `index` to change: its chunk is packed again when the
    /// change is done with, and its group copied first if another copy of
    /// the loan shares it (the other copies keep theirs); read and left
    /// as it was, nothing is copied.
    /// Changing its amounts due drops the cumulative dues (see
    /// [`InstallmentMut`]).
    pub fn get_mut(&mut self, index: usize) -> Option<InstallmentMut<'_>> {
        let installment = self.get(index)?;
        Some(InstallmentMut {
            due_before: due_amounts(&installment),
            installment,
            changed: false,
            group: &mut self.groups[index / PER_GROUP],
            chunk: index % PER_GROUP / CHUNK,
            place: index % CHUNK,
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
            let dues = (0..self.len).filter_map(|index| self.due_amounts_at(index));
            for due in dues {
                let Some(next) = due.into_iter().try_fold(total, Decimal::checked_add) else {
                    break;
                };
                sums.push(next);
                total = next;
            }
            self.cumulative_dues = Some(Arc::new(CumulativeDues::of(sums)));
        }
    }

    /// What is due up to and including each installment, from the first,
    /// when kept ([`Installments::keep_cumulative_dues`]): as many sums as
    /// installments, or fewer when the next sum would overflow. Each sum is
    /// added principal, interest, then fees, onto the one before, so it is
    /// the same number, scale included, as the same addition made anew.
    pub fn cumulative_dues(&self) -> Option<&CumulativeDues> {
        self.cumulative_dues.as_deref()
    }

    /// Every installment, in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = InstallmentState> + Clone + '_ {
        self.range(0, self.len)
    }

    /// The installments from `start` on (none when `start` is past the end).
    pub fn iter_from(
        &self,
        start: usize,
    ) -> impl DoubleEndedIterator<Item = InstallmentState> + Clone + '_ {
        self.range(start, self.len)
    }

    /// The installments `start..end` (those of it that exist).
    pub fn range(
        &self,
        start: usize,
        end: usize,
    ) -> impl DoubleEndedIterator<Item = InstallmentState> + Clone + '_ {
        let end = end.min(self.len);
        (start.min(end)..end).map(|index| self.at(index))
    }

    /// The installments before `end`, changed in place: the chunks they
    /// are in are packed again, and their groups copied first where
    /// another copy of the loan shares them (the other copies keep theirs).
    pub fn for_each_before_mut(&mut self, end: usize, mut f: impl FnMut(&mut InstallmentState)) {
        let mut due_changed = false;
        for (group_number, group) in self.groups.iter_mut().enumerate() {
            let group_start = group_number * PER_GROUP;
            if group_start >= end {
                break;
            }
            for (number, chunk) in Arc::make_mut(group).iter_mut().enumerate() {
                let start = group_start + number * CHUNK;
                if start >= end {
                    break;
                }
                let mut items = chunk.unpack();
                for installment in items.iter_mut().take(end - start) {
                    let due = due_amounts(installment);
                    f(installment);
                    due_changed |= !same_amounts(due, due_amounts(installment));
                }
                *chunk = Arc::new(Packed::pack(&items));
            }
        }
        if due_changed {
            self.cumulative_dues = None;
        }
    }

    /// The number of installments at the start for which `pred` holds,
    /// when it holds for a prefix (as [`slice::partition_point`]).
    #[cfg(test)]
    pub fn partition_point(&self, mut pred: impl FnMut(&InstallmentState) -> bool) -> usize {
        let (mut low, mut high) = (0, self.len);
        while low < high {
            let middle = low + (high - low) / 2;
            if pred(&self.at(middle)) {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        low
    }

    /// The number of installments at the start whose due date `pred`
    /// holds for, when it holds for a prefix (due dates rise), searched
    /// outwards from installment `near` ([`partition_point_near_by`]): the
    /// installments read are those around where the search is expected to
    /// end, and only their dates.
    pub fn partition_by_due_date(
        &self,
        near: usize,
        mut pred: impl FnMut(chrono::NaiveDate) -> bool,
    ) -> usize {
        partition_point_near_by(self.len, near, |index| {
            self.due_date(index).is_some_and(&mut pred)
        })
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
    a.into_iter().zip(b).all(|(a, b)| packed::same(a, b))
}

/// An installment being changed ([`Installments::get_mut`]): read and
/// written as the installment itself. When it is done with, a change packs
/// its chunk again, and a change to its amounts due (a recast) drops the
/// loan's cumulative dues, which no longer add up to the schedule; they are
/// worked out again when next kept.
pub struct InstallmentMut<'a> {
    installment: InstallmentState,
    /// Its amounts due as it was read (not `due`: the guard's own fields
    /// come before the installment's in a field access through it).
    due_before: [Decimal; 3],
    /// Whether it was borrowed to change.
    changed: bool,
    /// Its group, its chunk's place in the group and its place in the
    /// chunk: the group is copied only if the installment changes.
    group: &'a mut Group,
    chunk: usize,
    place: usize,
    cumulative_dues: &'a mut Option<Arc<CumulativeDues>>,
}

impl Deref for InstallmentMut<'_> {
    type Target = InstallmentState;

    fn deref(&self) -> &InstallmentState {
        &self.installment
    }
}

impl DerefMut for InstallmentMut<'_> {
    fn deref_mut(&mut self) -> &mut InstallmentState {
        self.changed = true;
        &mut self.installment
    }
}

impl Drop for InstallmentMut<'_> {
    fn drop(&mut self) {
        if !self.changed {
            return;
        }
        // In place where each value fits the chunk's columns (the group
        // and the chunk copied first if another copy of the loan shares
        // them), else packed again.
        let chunk = &mut Arc::make_mut(self.group)[self.chunk];
        if chunk.fits(self.place, &self.installment) {
            Arc::make_mut(chunk).set(self.place, &self.installment);
        } else {
            let mut items = chunk.unpack();
            items[self.place] = self.installment.clone();
            *chunk = Arc::new(Packed::pack(&items));
        }
        if !same_amounts(self.due_before, due_amounts(&self.installment)) {
            *self.cumulative_dues = None;
        }
    }
}

impl FromIterator<InstallmentState> for Installments {
    fn from_iter<I: IntoIterator<Item = InstallmentState>>(iter: I) -> Installments {
        Installments::from(iter.into_iter().collect::<Vec<_>>())
    }
}

impl From<Vec<InstallmentState>> for Installments {
    fn from(list: Vec<InstallmentState>) -> Installments {
        Installments {
            groups: list
                .chunks(PER_GROUP)
                .map(|group| {
                    let chunks = group.chunks(CHUNK);
                    chunks.map(|chunk| Arc::new(Packed::pack(chunk))).collect()
                })
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

/// Written as the list it was before it was packed: the same bytes.
impl Serialize for Installments {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        // The length first, as a list gives it.
        let mut seq = serializer.serialize_seq(Some(self.len))?;
        for installment in self.iter() {
            seq.serialize_element(&installment)?;
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
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    use super::*;
    use crate::schedule::Installment;

    /// A sum as a schedule's can be, and the odd ones it can be too.
    fn sum() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            8 => (0u32..u32::MAX).prop_map(Decimal::from),
            2 => (0i64..i64::MAX, 0u32..4).prop_map(|(m, scale)| Decimal::new(m, scale)),
            1 => Just(Decimal::from(u64::from(u32::MAX) + 1)),
            1 => Just(-Decimal::ZERO),
            1 => Just(Decimal::MAX),
        ]
    }

    proptest! {
        /// Every sum reads back the same number, scale and sign included,
        /// in 4 bytes when every sum has one scale and fits them.
        #[test]
        fn cumulative_dues_read_back_exactly(sums in proptest::collection::vec(sum(), 0..40)) {
            let dues = CumulativeDues::of(sums.clone());
            prop_assert_eq!(dues.len(), sums.len());
            for (index, sum) in sums.iter().enumerate() {
                prop_assert_eq!(dues.get(index).map(|d| d.serialize()), Some(sum.serialize()));
            }
            prop_assert_eq!(dues.get(sums.len()), None);
            let narrow = sums.iter().all(|sum| {
                sum.scale() == sums[0].scale()
                    && sum.is_sign_positive()
                    && sum.mantissa() <= i128::from(u32::MAX)
            });
            prop_assert_eq!(matches!(dues, CumulativeDues::Narrow { .. }), narrow);
        }
    }

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

    /// How many chunks two copies share, and how many the first has.
    fn shared(a: &Installments, b: &Installments) -> (usize, usize) {
        let pairs = a.chunks_from(0).zip(b.chunks_from(0));
        let shared = pairs.filter(|((_, a), (_, b))| Arc::ptr_eq(a, b)).count();
        (shared, a.chunks_from(0).count())
    }

    /// How many groups two copies share, and how many the first has.
    fn shared_groups(a: &Installments, b: &Installments) -> (usize, usize) {
        let pairs = a.groups.iter().zip(&b.groups);
        let shared = pairs.filter(|(a, b)| Arc::ptr_eq(a, b)).count();
        (shared, a.groups.len())
    }

    #[test]
    fn a_change_to_a_copy_leaves_the_original_and_packs_one_chunk() {
        let original = Installments::from(list(520));
        let mut copy = original.clone();
        copy.get_mut(100).unwrap().principal_paid = Decimal::ONE;
        assert_eq!(original.at(100).principal_paid, Decimal::ZERO);
        assert_eq!(copy.at(100).principal_paid, Decimal::ONE);
        let (shared, chunks) = shared(&original, &copy);
        assert_eq!(chunks, 65);
        assert_eq!(shared, chunks - 1);
        // Its group is copied, the other eight shared.
        assert_eq!(shared_groups(&original, &copy), (8, 9));
        assert_ne!(original, copy);
        // Read through `get_mut` and left as it was: nothing packed again,
        // no group copied.
        let mut read = original.clone();
        assert_eq!(read.get_mut(7).unwrap().due.number, 8);
        assert_eq!(shared_with(&read, &original), chunks);
        assert_eq!(shared_groups(&read, &original), (9, 9));
        // A change at either side of a group's edge copies that group only.
        for (index, group) in [(63, 0), (64, 1), (127, 1), (128, 2)] {
            let mut copy = original.clone();
            copy.get_mut(index).unwrap().fee_paid = Decimal::ONE;
            assert_eq!(shared_groups(&copy, &original), (8, 9));
            assert!(!Arc::ptr_eq(&copy.groups[group], &original.groups[group]));
            assert_eq!(copy.at(index).fee_paid, Decimal::ONE);
            assert_eq!(original.at(index).fee_paid, Decimal::ZERO);
        }
        // Changed before an installment: the groups it reaches copied.
        let mut settled = original.clone();
        settled.for_each_before_mut(70, |i| i.interest_paid = Decimal::ONE);
        assert_eq!(shared_groups(&settled, &original), (7, 9));
        assert_eq!(settled.at(69).interest_paid, Decimal::ONE);
        assert_eq!(settled.at(70).interest_paid, Decimal::ZERO);
        assert_eq!(original.at(69).interest_paid, Decimal::ZERO);
    }

    fn shared_with(a: &Installments, b: &Installments) -> usize {
        shared(a, b).0
    }

    #[test]
    fn chunks_are_numbered_and_read_from_any_chunk_on() {
        for count in [0, 1, 8, 63, 64, 65, 130] {
            let mut installments = Installments::from(list(count));
            let chunks = (count as usize).div_ceil(CHUNK);
            for first in 0..=chunks + 1 {
                let numbers: Vec<usize> = installments
                    .chunks_from(first)
                    .map(|(number, _)| number)
                    .collect();
                assert_eq!(
                    numbers,
                    (first..chunks).collect::<Vec<_>>(),
                    "{count} from {first}"
                );
                for (number, chunk) in installments.chunks_from(first) {
                    assert!(Arc::ptr_eq(chunk, installments.chunk(number).unwrap()));
                }
            }
            // Nothing paid: `paid_from` passes every chunk by; everything
            // paid, it reads every installment from its start on.
            assert_eq!(installments.paid_from(0).count(), 0);
            installments.for_each_before_mut(count as usize, |i| i.fee_paid = Decimal::ONE);
            for start in 0..=count as usize + 1 {
                assert!(
                    installments
                        .paid_from(start)
                        .eq(installments.iter_from(start))
                );
            }
        }
    }

    #[test]
    fn reads_as_the_list_it_was_made_from() {
        for count in [0, 1, 3, 7, 8, 9, 16, 50, 63, 64, 65, 130] {
            let plain = list(count);
            let packed = Installments::from(plain.clone());
            assert_eq!(packed.len(), plain.len());
            assert_eq!(packed.last().as_ref(), plain.last());
            assert!(packed.iter().eq(plain.iter().cloned()));
            assert!(packed.iter().rev().eq(plain.iter().rev().cloned()));
            for start in 0..=plain.len() + 2 {
                let expected = plain.get(start..).unwrap_or(&[]);
                assert!(packed.iter_from(start).eq(expected.iter().cloned()));
                for end in [start, start + 1, start + 5, plain.len()] {
                    let expected = plain.get(start..end.min(plain.len())).unwrap_or(&[]);
                    assert!(packed.range(start, end).eq(expected.iter().cloned()));
                }
            }
            assert!(packed.dues().eq(plain.iter().map(|i| i.due.clone())));
            for start in 0..=plain.len() + 2 {
                let dates = plain.iter().skip(start).map(|i| i.due.due_date);
                assert!(packed.due_dates_from(start).eq(dates));
            }
            for index in 0..plain.len() + 2 {
                assert_eq!(packed.get(index).as_ref(), plain.get(index));
                let dues = plain.get(index).map(due_amounts);
                assert_eq!(packed.due_amounts_at(index), dues);
                let date = plain.get(index).map(|i| i.due.due_date);
                assert_eq!(packed.due_date(index), date);
            }
            for days in 0..=count * 7 + 8 {
                let date =
                    NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Days::new(days.into());
                let expected = plain.partition_point(|i| i.due.due_date <= date);
                let pred = |i: &InstallmentState| i.due.due_date <= date;
                assert_eq!(packed.partition_point(pred), expected);
                for near in 0..=plain.len() + 2 {
                    let found = packed.partition_by_due_date(near, |due| due <= date);
                    assert_eq!(found, expected);
                }
            }
        }
    }

    proptest::proptest! {
        /// Changes through `get_mut` and `for_each_before_mut` leave the
        /// installments as the same changes to a plain list, each amount to
        /// its scale (a change of scale alone included), and drop the
        /// cumulative dues exactly when an amount due changed.
        #[test]
        fn changes_read_back_as_those_to_a_plain_list(
            count in 1u32..140,
            changes in proptest::collection::vec(
                (0usize..145, 0usize..7, 0i64..5_000_000, 0u32..3, proptest::bool::ANY),
                0..30,
            ),
        ) {
            let mut plain = list(count);
            let mut packed = Installments::from(plain.clone());
            for (index, part, mantissa, scale, all_before) in changes {
                let amount = Decimal::new(mantissa, scale);
                let set = |i: &mut InstallmentState| match part {
                    0 => i.due.principal = amount,
                    1 => i.due.interest = amount,
                    2 => i.due.fee = amount,
                    3 => i.principal_paid = amount,
                    4 => i.interest_paid = amount,
                    5 => i.fee_paid = amount,
                    // Paid in full, as a repayment or a restart leaves it.
                    _ => {
                        i.principal_paid = i.due.principal;
                        i.interest_paid = i.due.interest;
                        i.fee_paid = i.due.fee;
                    }
                };
                packed.keep_cumulative_dues(true);
                let before = plain.clone();
                // A copy taken before the change, sharing every group.
                let copy = packed.clone();
                if all_before {
                    packed.for_each_before_mut(index, set);
                    plain.iter_mut().take(index).for_each(set);
                } else {
                    match (packed.get_mut(index), plain.get_mut(index)) {
                        (Some(mut installment), Some(expected)) => {
                            set(&mut installment);
                            set(expected);
                        }
                        (None, None) => {}
                        _ => proptest::prop_assert!(false, "installment {} found in one", index),
                    }
                }
                // Each amount's own bytes: its number, scale and sign.
                let exact = |list: &mut dyn Iterator<Item = InstallmentState>| {
                    list.map(|i| {
                        let paid = [i.principal_paid, i.interest_paid, i.fee_paid];
                        let amounts = due_amounts(&i).into_iter().chain(paid);
                        let bytes: Vec<[u8; 16]> = amounts.map(|a| a.serialize()).collect();
                        (i.due.number, i.due.due_date, bytes)
                    })
                    .collect::<Vec<_>>()
                };
                proptest::prop_assert_eq!(
                    exact(&mut packed.iter()),
                    exact(&mut plain.iter().cloned())
                );
                // Every installment with something paid is read by
                // `paid_from`, whichever chunks it passes by.
                let paid = |i: &InstallmentState| {
                    [i.principal_paid, i.interest_paid, i.fee_paid].iter().any(|a| !a.is_zero())
                };
                for start in [0, index / 2, index] {
                    let found: Vec<u32> = packed.paid_from(start).filter(paid).map(|i| i.due.number).collect();
                    let expected: Vec<u32> =
                        plain.iter().skip(start).filter(|i| paid(i)).map(|i| i.due.number).collect();
                    proptest::prop_assert_eq!(found, expected);
                }
                // Written as the plain list is, byte for byte.
                proptest::prop_assert_eq!(
                    postcard::to_stdvec(&packed).unwrap(),
                    postcard::to_stdvec(&plain).unwrap()
                );
                // The change reached no other copy.
                proptest::prop_assert_eq!(
                    exact(&mut copy.iter()),
                    exact(&mut before.iter().cloned())
                );
                let due_changed = before
                    .iter()
                    .zip(&plain)
                    .any(|(a, b)| !same_amounts(due_amounts(a), due_amounts(b)));
                proptest::prop_assert_eq!(packed.cumulative_dues().is_none(), due_changed);
            }
        }
    }

    #[test]
    fn a_change_in_place_reaches_exactly_the_installments_before_the_end() {
        for start in [0, 5, 7, 8, 9, 31, 32, 33, 63, 64, 65, 100, 520, 600] {
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
