//! Amounts by date: a savings account's balance changes, a loan's
//! principal and paid changes. One amount per date, in date order, in one
//! contiguous list.
//!
//! A list, not a `BTreeMap`: nearly every change is dated on or after the
//! last one (a collection sheet's deposits are the day's), so a change is
//! a push or an update of the last element, and the last date (which the
//! write path reads for every savings change, to see whether a member's
//! borrower steps move) is one read instead of a walk down a tree of
//! scattered nodes. A back-dated change inserts into the list, as rare as
//! back-dated entries are. The same API as the map where both have it.
//!
//! A list may also keep its running sums ([`DatedAmounts::with_sums`]): a
//! loan's principal and paid changes do, so that what they sum to before a
//! date is a binary search instead of a walk through the loan's history
//! (twice for every entry on the loan). Savings changes do not: the sums
//! would cost 16 bytes for every deposit.

use std::ops::{Bound, RangeBounds};

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::totals::{Overflow, plus};

mod packed;

pub use packed::PackedAmounts;

/// Amounts by date, one per date, in date order. Equal lists are equal
/// whether or not either keeps its sums.
#[derive(Clone, Default)]
pub struct DatedAmounts(Vec<(NaiveDate, Decimal)>, Option<RunningSums>);

/// `sums[i]` is the first `i + 1` amounts summed as [`plus`] sums them, one
/// after the other from zero. Shorter than the list when a sum overflowed:
/// from there on, a sum is worked out by walking the amounts, and fails
/// where the walk always did.
type RunningSums = Vec<Decimal>;

impl PartialEq for DatedAmounts {
    fn eq(&self, other: &DatedAmounts) -> bool {
        self.0 == other.0
    }
}

impl Eq for DatedAmounts {}

impl std::hash::Hash for DatedAmounts {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl std::fmt::Debug for DatedAmounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DatedAmounts").field(&self.0).finish()
    }
}

impl DatedAmounts {
    /// No amounts.
    pub const fn new() -> DatedAmounts {
        DatedAmounts(Vec::new(), None)
    }

    /// No amounts, with room for `capacity` of them (a list read back
    /// whole: grown one by one it kept up to twice the room it needs).
    pub fn with_capacity(capacity: usize) -> DatedAmounts {
        DatedAmounts(Vec::with_capacity(capacity), None)
    }

    /// Room for amounts, used or not.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.0.capacity()
    }

    /// The same amounts, keeping their running sums from now on.
    pub fn with_sums(mut self) -> DatedAmounts {
        if self.1.is_none() {
            self.1 = Some(Vec::with_capacity(self.0.len()));
            self.resum_from(0);
        }
        self
    }

    /// Keeps the running sums from now on, or drops them.
    pub fn keep_sums(&mut self, keep: bool) {
        match (keep, self.1.is_some()) {
            (true, false) => *self = std::mem::take(self).with_sums(),
            (false, true) => self.1 = None,
            _ => {}
        }
    }

    /// Works the running sums out again from position `at` on.
    fn resum_from(&mut self, at: usize) {
        let Some(sums) = &mut self.1 else { return };
        sums.truncate(at);
        while sums.len() < self.0.len() {
            let before = sums.last().copied().unwrap_or(Decimal::ZERO);
            match plus(before, self.0[sums.len()].1) {
                Ok(sum) => sums.push(sum),
                Err(Overflow) => break,
            }
        }
    }

    /// The amounts dated before `date`, summed as [`plus`] sums them one
    /// after the other from zero.
    pub fn sum_before(&self, date: NaiveDate) -> Result<Decimal, Overflow> {
        let count = self.0.partition_point(|(d, _)| *d < date);
        self.sum_of_first(count)
    }

    /// The amounts dated on or before `date`, summed as [`sum_before`] does.
    ///
    /// [`sum_before`]: DatedAmounts::sum_before
    pub fn sum_through(&self, date: NaiveDate) -> Result<Decimal, Overflow> {
        let count = self.0.partition_point(|(d, _)| *d <= date);
        self.sum_of_first(count)
    }

    /// Every amount, summed as [`sum_before`] does.
    ///
    /// [`sum_before`]: DatedAmounts::sum_before
    pub fn sum(&self) -> Result<Decimal, Overflow> {
        self.sum_of_first(self.0.len())
    }

    fn sum_of_first(&self, count: usize) -> Result<Decimal, Overflow> {
        if count == 0 {
            return Ok(Decimal::ZERO);
        }
        if let Some(sum) = self.1.as_ref().and_then(|sums| sums.get(count - 1)) {
            return Ok(*sum);
        }
        self.0[..count]
            .iter()
            .try_fold(Decimal::ZERO, |sum, (_, amount)| plus(sum, *amount))
    }

    /// The dates from `from` on, with their amounts, in date order.
    pub fn iter_from(&self, from: NaiveDate) -> <&DatedAmounts as IntoIterator>::IntoIter {
        let start = self.0.partition_point(|(d, _)| *d < from);
        self.0[start..].iter().map(pair)
    }

    /// The dates after `date`, with their amounts, in date order.
    pub fn iter_after(&self, date: NaiveDate) -> <&DatedAmounts as IntoIterator>::IntoIter {
        let start = self.0.partition_point(|(d, _)| *d <= date);
        self.0[start..].iter().map(pair)
    }

    /// The last date on or before `date` that has an amount.
    pub fn last_date_through(&self, date: NaiveDate) -> Option<NaiveDate> {
        let count = self.0.partition_point(|(d, _)| *d <= date);
        count.checked_sub(1).map(|at| self.0[at].0)
    }

    /// Where `date` is, or would go.
    fn position(&self, date: &NaiveDate) -> Result<usize, usize> {
        // The last date first: where nearly every lookup lands.
        match self.0.last() {
            None => Err(0),
            Some((last, _)) if last < date => Err(self.0.len()),
            Some((last, _)) if last == date => Ok(self.0.len() - 1),
            Some(_) => self.0.binary_search_by(|(d, _)| d.cmp(date)),
        }
    }

    /// The amount on `date`.
    pub fn get(&self, date: &NaiveDate) -> Option<&Decimal> {
        self.position(date).ok().map(|at| &self.0[at].1)
    }

    /// Sets the amount on `date`; returns the one it replaced.
    pub fn insert(&mut self, date: NaiveDate, amount: Decimal) -> Option<Decimal> {
        let (at, replaced) = match self.position(&date) {
            Ok(at) => (at, Some(std::mem::replace(&mut self.0[at].1, amount))),
            Err(at) => {
                self.0.insert(at, (date, amount));
                (at, None)
            }
        };
        self.resum_from(at);
        replaced
    }

    /// Removes the amount on `date`; returns it.
    pub fn remove(&mut self, date: &NaiveDate) -> Option<Decimal> {
        let at = self.position(date).ok()?;
        let removed = self.0.remove(at).1;
        self.resum_from(at);
        Some(removed)
    }

    /// The last date and its amount.
    pub fn last_key_value(&self) -> Option<(&NaiveDate, &Decimal)> {
        self.0.last().map(|(date, amount)| (date, amount))
    }

    /// The dates in `range`, with their amounts, in date order.
    pub fn range<R: RangeBounds<NaiveDate>>(
        &self,
        range: R,
    ) -> impl DoubleEndedIterator<Item = (&NaiveDate, &Decimal)> + Clone {
        let start = match range.start_bound() {
            Bound::Unbounded => 0,
            Bound::Included(from) => self.0.partition_point(|(d, _)| d < from),
            Bound::Excluded(from) => self.0.partition_point(|(d, _)| d <= from),
        };
        let end = match range.end_bound() {
            Bound::Unbounded => self.0.len(),
            Bound::Included(to) => self.0.partition_point(|(d, _)| d <= to),
            Bound::Excluded(to) => self.0.partition_point(|(d, _)| d < to),
        };
        self.0[start..end.max(start)]
            .iter()
            .map(|(date, amount)| (date, amount))
    }

    /// Every date with its amount, in date order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&NaiveDate, &Decimal)> + Clone {
        self.0.iter().map(|(date, amount)| (date, amount))
    }

    /// The amounts, in date order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Decimal> + Clone {
        self.0.iter().map(|(_, amount)| amount)
    }

    /// How many dates have an amount.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no date has an amount.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Later pairs replace earlier ones of the same date, as a map's do.
impl FromIterator<(NaiveDate, Decimal)> for DatedAmounts {
    fn from_iter<I: IntoIterator<Item = (NaiveDate, Decimal)>>(pairs: I) -> DatedAmounts {
        let mut amounts = DatedAmounts::new();
        for (date, amount) in pairs {
            amounts.insert(date, amount);
        }
        amounts
    }
}

impl<const N: usize> From<[(NaiveDate, Decimal); N]> for DatedAmounts {
    fn from(pairs: [(NaiveDate, Decimal); N]) -> DatedAmounts {
        pairs.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a DatedAmounts {
    type Item = (&'a NaiveDate, &'a Decimal);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (NaiveDate, Decimal)>,
        fn(&'a (NaiveDate, Decimal)) -> (&'a NaiveDate, &'a Decimal),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(pair)
    }
}

fn pair((date, amount): &(NaiveDate, Decimal)) -> (&NaiveDate, &Decimal) {
    (date, amount)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn day(n: i64) -> NaiveDate {
        NaiveDate::from_ymd_opt(2023, 1, 1).unwrap() + chrono::Duration::days(n)
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(i64, i64),
        Remove(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..60i64, -1000..1000i64).prop_map(|(d, a)| Op::Insert(d, a)),
            (0..60i64).prop_map(Op::Remove),
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
                        prop_assert_eq!(summed.insert(day(d), Decimal::from(a)), map.get(&day(d)).copied());
                        prop_assert_eq!(
                            list.insert(day(d), Decimal::from(a)),
                            map.insert(day(d), Decimal::from(a))
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
                        map.range(date..).collect::<Vec<_>>()
                    );
                    prop_assert_eq!(
                        summed.iter_after(date).collect::<Vec<_>>(),
                        map.range((std::ops::Bound::Excluded(date), std::ops::Bound::Unbounded)).collect::<Vec<_>>()
                    );
                }
                prop_assert_eq!(summed.sum(), walk(&|_| true));
                prop_assert_eq!(&summed, &list);
                // Dropped and taken up again, the sums are the same.
                let mut again = summed.clone();
                again.keep_sums(false);
                prop_assert_eq!(again.sum(), walk(&|_| true));
                again.keep_sums(true);
                prop_assert_eq!(&again.1, &summed.1);
            }
            prop_assert_eq!(list.iter().collect::<Vec<_>>(), map.iter().collect::<Vec<_>>());
            prop_assert_eq!(list.last_key_value(), map.last_key_value());
            prop_assert_eq!(list.len(), map.len());
            for d in 0..60 {
                prop_assert_eq!(list.get(&day(d)), map.get(&day(d)));
            }
            let (from, to) = (day(from), day(to));
            prop_assert_eq!(list.range(..from).collect::<Vec<_>>(), map.range(..from).collect::<Vec<_>>());
            prop_assert_eq!(list.range(from..).collect::<Vec<_>>(), map.range(from..).collect::<Vec<_>>());
            prop_assert_eq!(list.range(..=to).collect::<Vec<_>>(), map.range(..=to).collect::<Vec<_>>());
            if from <= to {
                prop_assert_eq!(list.range(from..=to).collect::<Vec<_>>(), map.range(from..=to).collect::<Vec<_>>());
                prop_assert_eq!(list.range(from..to).collect::<Vec<_>>(), map.range(from..to).collect::<Vec<_>>());
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
