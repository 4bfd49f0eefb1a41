//! Amounts by date: a loan's principal and paid changes, and the spans an
//! ended loan's summary keeps ([`DatedAmounts`]); a savings account's
//! balance changes ([`PackedAmounts`]). One amount per date, in date order.
//!
//! Both are packed into bytes (`dated/packed.rs`): a change is the days since the
//! one before and its amount's mantissa and scale, each a varint, about 5
//! bytes where a date and a decimal took 20. Nearly every change is dated
//! on or after the last one (a collection sheet's are the day's), so a
//! change is a push, or a rewrite of the last change's bytes, and the last
//! date is kept unpacked; a back-dated change packs the list again, as
//! rare as back-dated entries are.
//!
//! A loan's changes also keep sums while it is active
//! ([`DatedAmounts::with_sums`]): what they sum to before a date is asked
//! twice for every entry on the loan. A sum is kept at the start of every
//! block of 8 changes (`SUMMED_BLOCK`), with where the block's bytes start,
//! the date before its first change and that change's date, so that a sum
//! before a date is a binary search among the blocks and a walk of at most
//! a block's changes (from the last block kept, once a sum overflowed):
//! 28 bytes a block, about 3.5 bytes a change, where a sum kept for every
//! change took 16 (and the change itself 20, a date and a decimal).

use std::ops::RangeBounds;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::totals::{Overflow, plus};

mod packed;

pub use packed::PackedAmounts;

/// Changes in a block that starts with a kept sum.
const SUMMED_BLOCK: usize = 8;

/// Amounts by date, one per date, in date order, packed; with sums kept
/// every 8 changes (`SUMMED_BLOCK`) when asked. Equal lists are equal
/// whether or not either keeps its sums.
#[derive(Clone, Default)]
pub struct DatedAmounts {
    amounts: PackedAmounts,
    /// Block `k`'s start (change `k * SUMMED_BLOCK`), when kept. Fewer
    /// than the blocks when a sum overflowed: from there on, a sum is
    /// worked out by walking from the last block kept, and fails where
    /// the walk from the first change always did.
    sums: Option<Vec<BlockStart>>,
}

/// Where a block of changes starts, and what the changes before it sum to.
#[derive(Clone, Copy, Debug, PartialEq)]
struct BlockStart {
    /// Where its first change's bytes start.
    at: u32,
    /// The date of the change before it (what its first change's days
    /// count from).
    previous: NaiveDate,
    /// Its first change's date.
    first: NaiveDate,
    /// The changes before it, summed as [`plus`] sums them one after the
    /// other from zero.
    sum_before: Decimal,
}

impl PartialEq for DatedAmounts {
    fn eq(&self, other: &DatedAmounts) -> bool {
        self.amounts == other.amounts
    }
}

impl Eq for DatedAmounts {}

impl std::hash::Hash for DatedAmounts {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.amounts.hash(state);
    }
}

impl std::fmt::Debug for DatedAmounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DatedAmounts")
            .field(&self.iter().collect::<Vec<_>>())
            .finish()
    }
}

impl DatedAmounts {
    /// No amounts.
    pub fn new() -> DatedAmounts {
        DatedAmounts::default()
    }

    /// Bytes held, used or not.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.amounts.heap_bytes()
            + self.sums.as_ref().map_or(0, |sums| {
                sums.capacity() * std::mem::size_of::<BlockStart>()
            })
    }

    /// The bytes the amounts are packed in.
    #[cfg(test)]
    pub(crate) fn packed_len(&self) -> usize {
        self.amounts.packed().len()
    }

    /// The same amounts, keeping their sums from now on.
    pub fn with_sums(mut self) -> DatedAmounts {
        if self.sums.is_none() {
            self.sums = Some(Vec::with_capacity(self.len().div_ceil(SUMMED_BLOCK)));
            self.resum_from(0);
        }
        self
    }

    /// Keeps the sums from now on, or drops them.
    pub fn keep_sums(&mut self, keep: bool) {
        match (keep, self.sums.is_some()) {
            (true, false) => *self = std::mem::take(self).with_sums(),
            (false, true) => self.sums = None,
            _ => {}
        }
    }

    /// Gives back room the list does not use.
    pub fn shrink_to_fit(&mut self) {
        self.amounts.shrink_to_fit();
        if let Some(sums) = &mut self.sums {
            sums.shrink_to_fit();
        }
    }

    /// After a change to change `index` (set, added or removed there):
    /// the blocks that start after it are worked out again (a block that
    /// starts at it, too: its first change is another), from the last
    /// block before it, as far as their sums do not overflow.
    fn resum_from(&mut self, index: usize) {
        let len = self.amounts.len();
        let Some(sums) = &mut self.sums else { return };
        sums.truncate(index.div_ceil(SUMMED_BLOCK));
        let blocks = len.div_ceil(SUMMED_BLOCK);
        // A change within the last block, and every block kept: nothing
        // to work out (what the write path does, change after change).
        if sums.len() == blocks {
            return;
        }
        let (mut next, mut sum, mut changes) = match sums.last() {
            Some(block) => (
                (sums.len() - 1) * SUMMED_BLOCK,
                block.sum_before,
                self.amounts.iter_at(block.at as usize, block.previous),
            ),
            None => (0, Decimal::ZERO, self.amounts.iter()),
        };
        loop {
            let (at, previous) = changes.place();
            let Some((date, amount)) = changes.next() else {
                return;
            };
            if next % SUMMED_BLOCK == 0 && next / SUMMED_BLOCK == sums.len() {
                sums.push(BlockStart {
                    at: at as u32,
                    previous,
                    first: date,
                    sum_before: sum,
                });
                if sums.len() == blocks {
                    return;
                }
            }
            sum = match plus(sum, amount) {
                Ok(sum) => sum,
                Err(Overflow) => return,
            };
            next += 1;
        }
    }

    /// The changes from the start of the last kept block whose first
    /// change is dated where `before` holds (the first change when there
    /// is none), with what the changes before them sum to.
    fn block_before(&self, before: impl Fn(NaiveDate) -> bool) -> (packed::Iter<'_>, Decimal) {
        let block = self.sums.as_ref().and_then(|sums| {
            let after = sums.partition_point(|block| before(block.first));
            after.checked_sub(1).map(|k| sums[k])
        });
        match block {
            Some(block) => (
                self.amounts.iter_at(block.at as usize, block.previous),
                block.sum_before,
            ),
            None => (self.amounts.iter(), Decimal::ZERO),
        }
    }

    /// The amounts dated where `before` holds (a start of the list),
    /// summed as [`plus`] sums them one after the other from zero.
    fn sum_while(&self, before: impl Fn(NaiveDate) -> bool + Copy) -> Result<Decimal, Overflow> {
        let (changes, sum) = self.block_before(before);
        changes
            .take_while(|(date, _)| before(*date))
            .try_fold(sum, |sum, (_, amount)| plus(sum, amount))
    }

    /// The amounts dated before `date`, summed as [`plus`] sums them one
    /// after the other from zero.
    #[cfg(test)]
    pub fn sum_before(&self, date: NaiveDate) -> Result<Decimal, Overflow> {
        self.sum_while(|on| on < date)
    }

    /// The amounts dated on or before `date`, summed as [`sum_before`] does.
    ///
    /// [`sum_before`]: DatedAmounts::sum_before
    #[cfg(test)]
    pub fn sum_through(&self, date: NaiveDate) -> Result<Decimal, Overflow> {
        self.sum_while(|on| on <= date)
    }

    /// Every amount, summed as [`plus`] sums them one after the other from
    /// zero.
    pub fn sum(&self) -> Result<Decimal, Overflow> {
        self.sum_while(|_| true)
    }

    /// The changes from the first one dated where `before` does not hold
    /// (dates where it holds come first), found from the last kept block
    /// before it.
    #[cfg(test)]
    fn starting(&self, before: impl Fn(NaiveDate) -> bool) -> packed::Iter<'_> {
        let mut changes = self.block_before(&before).0;
        loop {
            let mut ahead = changes.clone();
            match ahead.next() {
                Some((on, _)) if before(on) => changes = ahead,
                _ => return changes,
            }
        }
    }

    /// The changes dated where `before` holds (a start of the list) summed
    /// as [`plus`] sums them one after the other from zero, and the changes
    /// after them: one walk for both.
    fn split(
        &self,
        before: impl Fn(NaiveDate) -> bool,
    ) -> Result<(Decimal, packed::Iter<'_>), Overflow> {
        let (mut changes, mut sum) = self.block_before(&before);
        loop {
            let mut ahead = changes.clone();
            match ahead.next() {
                Some((on, amount)) if before(on) => {
                    sum = plus(sum, amount)?;
                    changes = ahead;
                }
                _ => return Ok((sum, changes)),
            }
        }
    }

    /// The amounts dated before `date`, summed as [`plus`] sums them one
    /// after the other from zero, and the changes from `date` on, in date
    /// order: one walk for both.
    pub fn split_before(&self, date: NaiveDate) -> Result<(Decimal, packed::Iter<'_>), Overflow> {
        self.split(|on| on < date)
    }

    /// The amounts dated on or before `date`, summed as [`plus`] sums them
    /// one after the other from zero, and the changes after `date`, in date
    /// order: one walk for both.
    pub fn split_after(&self, date: NaiveDate) -> Result<(Decimal, packed::Iter<'_>), Overflow> {
        self.split(|on| on <= date)
    }

    /// The dates from `from` on, with their amounts, in date order.
    #[cfg(test)]
    pub fn iter_from(&self, from: NaiveDate) -> packed::Iter<'_> {
        self.starting(|on| on < from)
    }

    /// The dates after `date`, with their amounts, in date order.
    #[cfg(test)]
    pub fn iter_after(&self, date: NaiveDate) -> packed::Iter<'_> {
        self.starting(|on| on <= date)
    }

    /// The last date on or before `date` that has an amount.
    pub fn last_date_through(&self, date: NaiveDate) -> Option<NaiveDate> {
        match self.last_key_value() {
            Some((last, _)) if last <= date => Some(last),
            _ => self
                .block_before(|on| on <= date)
                .0
                .take_while(|(on, _)| *on <= date)
                .last()
                .map(|(on, _)| on),
        }
    }

    /// Where a change dated `date` is, or would go: how many are dated
    /// before it.
    fn index_of(&self, date: NaiveDate) -> usize {
        match self.last_key_value() {
            None => 0,
            Some((last, _)) if last < date => self.len(),
            Some((last, _)) if last == date => self.len() - 1,
            Some(_) => {
                let first = self.sums.as_ref().map_or(0, |sums| {
                    sums.partition_point(|block| block.first < date)
                        .saturating_sub(1)
                        * SUMMED_BLOCK
                });
                first
                    + self
                        .block_before(|on| on < date)
                        .0
                        .take_while(|(on, _)| *on < date)
                        .count()
            }
        }
    }

    /// The amount on `date`.
    pub fn get(&self, date: &NaiveDate) -> Option<Decimal> {
        self.amounts.get(date)
    }

    /// Sets the amount on `date`; returns the one it replaced.
    pub fn insert(&mut self, date: NaiveDate, amount: Decimal) -> Option<Decimal> {
        let index = self.index_of(date);
        let replaced = self.amounts.insert(date, amount);
        self.resum_from(index);
        replaced
    }

    /// Removes the amount on `date`; returns it.
    pub fn remove(&mut self, date: &NaiveDate) -> Option<Decimal> {
        let index = self.index_of(*date);
        let removed = self.amounts.remove(date)?;
        self.resum_from(index);
        Some(removed)
    }

    /// The last date and its amount.
    pub fn last_key_value(&self) -> Option<(NaiveDate, Decimal)> {
        self.amounts.last_key_value()
    }

    /// The dates in `range`, with their amounts, in date order.
    pub fn range<R: RangeBounds<NaiveDate>>(
        &self,
        range: R,
    ) -> impl Iterator<Item = (NaiveDate, Decimal)> + Clone + '_ {
        self.amounts.range(range)
    }

    /// Every date with its amount, in date order.
    pub fn iter(&self) -> packed::Iter<'_> {
        self.amounts.iter()
    }

    /// The amounts, in date order.
    pub fn values(&self) -> impl Iterator<Item = Decimal> + Clone + '_ {
        self.amounts.values()
    }

    /// How many dates have an amount.
    pub fn len(&self) -> usize {
        self.amounts.len()
    }

    /// True when no date has an amount.
    pub fn is_empty(&self) -> bool {
        self.amounts.is_empty()
    }
}

/// Later pairs replace earlier ones of the same date, as a map's do.
impl FromIterator<(NaiveDate, Decimal)> for DatedAmounts {
    fn from_iter<I: IntoIterator<Item = (NaiveDate, Decimal)>>(pairs: I) -> DatedAmounts {
        DatedAmounts {
            amounts: pairs.into_iter().collect(),
            sums: None,
        }
    }
}

impl<const N: usize> From<[(NaiveDate, Decimal); N]> for DatedAmounts {
    fn from(pairs: [(NaiveDate, Decimal); N]) -> DatedAmounts {
        pairs.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a DatedAmounts {
    type Item = (NaiveDate, Decimal);
    type IntoIter = packed::Iter<'a>;

    fn into_iter(self) -> packed::Iter<'a> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn pairs<'a>(
        map: impl Iterator<Item = (&'a NaiveDate, &'a Decimal)>,
    ) -> Vec<(NaiveDate, Decimal)> {
        map.map(|(d, a)| (*d, *a)).collect()
    }

    fn day(n: i64) -> NaiveDate {
        NaiveDate::from_ymd_opt(2023, 1, 1).unwrap() + chrono::Duration::days(n)
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(i64, i64),
        Remove(i64),
    }

    /// An amount of the test's: `i64::MAX` and `i64::MIN` stand for the
    /// largest and smallest decimals, whose sums overflow.
    fn amount(a: i64) -> Decimal {
        match a {
            i64::MAX => Decimal::MAX,
            i64::MIN => Decimal::MIN,
            a => Decimal::from(a),
        }
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0..60i64, -1000..1000i64).prop_map(|(d, a)| Op::Insert(d, a)),
            1 => (0..60i64, prop::bool::ANY)
                .prop_map(|(d, up)| Op::Insert(d, if up { i64::MAX } else { i64::MIN })),
            3 => (0..60i64).prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// Whatever the order of the changes (in date order, back-dated,
        /// the same date again, removals), the list answers as a map does.
        #[test]
        fn answers_as_a_map_does(ops in proptest::collection::vec(op(), 0..80), from in 0..60i64, to in 0..60i64) {
            let mut list = DatedAmounts::new();
            let mut summed = DatedAmounts::new().with_sums();
            let mut map = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(d, a) => {
                        prop_assert_eq!(summed.insert(day(d), amount(a)), map.get(&day(d)).copied());
                        prop_assert_eq!(
                            list.insert(day(d), amount(a)),
                            map.insert(day(d), amount(a))
                        )
                    }
                    Op::Remove(d) => {
                        prop_assert_eq!(summed.remove(&day(d)), map.get(&day(d)).copied());
                        prop_assert_eq!(list.remove(&day(d)), map.remove(&day(d)))
                    }
                }
                // The running sums, kept through every change, are the walk's.
                let walk = |keep: &dyn Fn(&NaiveDate) -> bool| {
                    map.iter().filter(|(d, _)| keep(d)).try_fold(Decimal::ZERO, |sum, (_, a)| plus(sum, *a))
                };
                for d in -1..61 {
                    let date = day(d);
                    prop_assert_eq!(summed.sum_before(date), walk(&|on| *on < date));
                    prop_assert_eq!(summed.sum_through(date), walk(&|on| *on <= date));
                    prop_assert_eq!(list.sum_before(date), walk(&|on| *on < date));
                    prop_assert_eq!(
                        summed.last_date_through(date),
                        map.range(..=date).next_back().map(|(d, _)| *d)
                    );
                    prop_assert_eq!(
                        summed.iter_from(date).collect::<Vec<_>>(),
                        pairs(map.range(date..))
                    );
                    prop_assert_eq!(
                        summed.iter_after(date).collect::<Vec<_>>(),
                        pairs(map.range((std::ops::Bound::Excluded(date), std::ops::Bound::Unbounded)))
                    );
                    prop_assert_eq!(list.iter_from(date).collect::<Vec<_>>(), pairs(map.range(date..)));
                    for amounts in [&list, &summed] {
                        let before = amounts.split_before(date).map(|(sum, from)| (sum, from.collect::<Vec<_>>()));
                        let expected = walk(&|on| *on < date).map(|sum| (sum, pairs(map.range(date..))));
                        prop_assert_eq!(before, expected);
                        let after = amounts.split_after(date).map(|(sum, after)| (sum, after.collect::<Vec<_>>()));
                        let expected = walk(&|on| *on <= date).map(|sum| {
                            (sum, pairs(map.range((std::ops::Bound::Excluded(date), std::ops::Bound::Unbounded))))
                        });
                        prop_assert_eq!(after, expected);
                    }
                    prop_assert_eq!(list.sum_through(date), walk(&|on| *on <= date));
                    prop_assert_eq!(
                        list.last_date_through(date),
                        map.range(..=date).next_back().map(|(d, _)| *d)
                    );
                }
                prop_assert_eq!(summed.sum(), walk(&|_| true));
                prop_assert_eq!(&summed, &list);
                // Dropped and taken up again, the sums are the same.
                let mut again = summed.clone();
                again.keep_sums(false);
                prop_assert_eq!(again.sum(), walk(&|_| true));
                again.keep_sums(true);
                prop_assert_eq!(&again.sums, &summed.sums);
                // The sums kept through the changes are the sums worked out afresh.
                let fresh = DatedAmounts::from_iter(summed.iter()).with_sums();
                prop_assert_eq!(&fresh.sums, &summed.sums);
            }
            prop_assert_eq!(list.iter().collect::<Vec<_>>(), pairs(map.iter()));
            prop_assert_eq!(list.last_key_value(), map.last_key_value().map(|(d, a)| (*d, *a)));
            prop_assert_eq!(list.len(), map.len());
            for d in 0..60 {
                prop_assert_eq!(list.get(&day(d)), map.get(&day(d)).copied());
            }
            let (from, to) = (day(from), day(to));
            prop_assert_eq!(list.range(..from).collect::<Vec<_>>(), pairs(map.range(..from)));
            prop_assert_eq!(list.range(from..).collect::<Vec<_>>(), pairs(map.range(from..)));
            prop_assert_eq!(list.range(..=to).collect::<Vec<_>>(), pairs(map.range(..=to)));
            if from <= to {
                prop_assert_eq!(list.range(from..=to).collect::<Vec<_>>(), pairs(map.range(from..=to)));
                prop_assert_eq!(list.range(from..to).collect::<Vec<_>>(), pairs(map.range(from..to)));
            }
            let collected: DatedAmounts = map.iter().map(|(d, a)| (*d, *a)).collect();
            prop_assert_eq!(collected, list);
        }
    }

    /// A running sum that overflows is left to the walk, which fails where
    /// it always did; sums before it still answer, and removing the amount
    /// that overflowed brings the sums after it back.
    #[test]
    fn an_overflowing_sum_fails_as_the_walk_does() {
        let mut amounts = DatedAmounts::new().with_sums();
        amounts.insert(day(1), Decimal::ONE);
        amounts.insert(day(2), Decimal::MAX);
        amounts.insert(day(3), Decimal::ONE);
        assert_eq!(amounts.sum_before(day(2)), Ok(Decimal::ONE));
        assert_eq!(amounts.sum_through(day(2)), Err(Overflow));
        assert_eq!(amounts.sum(), Err(Overflow));
        amounts.remove(&day(1));
        assert_eq!(amounts.sum_through(day(2)), Ok(Decimal::MAX));
        assert_eq!(amounts.sum(), Err(Overflow));
        amounts.remove(&day(3));
        assert_eq!(amounts.sum(), Ok(Decimal::MAX));
        amounts.insert(day(4), -Decimal::ONE);
        assert_eq!(amounts.sum(), Ok(Decimal::MAX - Decimal::ONE));
    }
}
