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

use std::ops::{Bound, RangeBounds};

use chrono::NaiveDate;
use rust_decimal::Decimal;

/// Amounts by date, one per date, in date order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DatedAmounts(Vec<(NaiveDate, Decimal)>);

impl DatedAmounts {
    /// No amounts.
    pub const fn new() -> DatedAmounts {
        DatedAmounts(Vec::new())
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
        match self.position(&date) {
            Ok(at) => Some(std::mem::replace(&mut self.0[at].1, amount)),
            Err(at) => {
                self.0.insert(at, (date, amount));
                None
            }
        }
    }

    /// Removes the amount on `date`; returns it.
    pub fn remove(&mut self, date: &NaiveDate) -> Option<Decimal> {
        self.position(date).ok().map(|at| self.0.remove(at).1)
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
        self.0.iter().map(|(date, amount)| (date, amount))
    }
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
            let mut map = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(d, a) => prop_assert_eq!(
                        list.insert(day(d), Decimal::from(a)),
                        map.insert(day(d), Decimal::from(a))
                    ),
                    Op::Remove(d) => prop_assert_eq!(list.remove(&day(d)), map.remove(&day(d))),
                }
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
}
