//! Amounts by date packed into bytes: a savings account's balance changes,
//! and what a loan's [`DatedAmounts`](super::DatedAmounts) keep.
//!
//! An account moves on every meeting day it is paid into, for as long as
//! its member saves, so these lists were most of what a branch's history
//! kept in memory (32 of 176 MB of a ten-year branch's heap after a
//! restart, at 20 bytes a change as a list of dates and decimals).
//! Packed, a change is the days since the one before and its amount's
//! mantissa and scale, each a LEB128 varint: about 5 bytes for a weekly
//! deposit of tens of thousands of đồng.
//!
//! What the write path asks (the amount on the last date, a change on the
//! last date or after it) reads the last change, kept unpacked, and
//! rewrites only its bytes. A range from a date (a period's interest) is
//! found walking back from the end, so it costs the changes since that
//! date; the rest walks the list from its start, as those readers did
//! already (the lowest balance from a date, a member's borrower steps). A
//! reversal that empties the last day walks back one change; a change
//! before the last date (a back-dated entry, or a reversal that empties
//! an earlier day) packs the list again.

use std::ops::{Bound, RangeBounds};

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::totals::{Overflow, plus};
use crate::varint;

/// Amounts by date, one per date, in date order, packed, pairs read by
/// value ([`DatedAmounts`](super::DatedAmounts) keeps its changes in one,
/// with sums beside it).
#[derive(Clone)]
pub struct PackedAmounts {
    /// Each change: zigzag(days since the previous change's date, the
    /// first's since 1 January of year 1), then zigzag(mantissa) << 5 |
    /// scale, both LEB128.
    bytes: Vec<u8>,
    /// Where the last change's bytes start.
    last_at: u32,
    /// How many changes.
    len: u32,
    /// The last change, unpacked: what the write path reads (meaningless
    /// when empty).
    last_date: NaiveDate,
    last_amount: Decimal,
}

/// The date the first change's days count from.
fn base() -> NaiveDate {
    NaiveDate::from_ymd_opt(1, 1, 1).unwrap_or(NaiveDate::MIN)
}

fn zigzag(value: i128) -> u128 {
    ((value << 1) ^ (value >> 127)) as u128
}

fn unzigzag(value: u128) -> i128 {
    ((value >> 1) as i128) ^ -((value & 1) as i128)
}

fn put_change(bytes: &mut Vec<u8>, previous: NaiveDate, date: NaiveDate, amount: Decimal) {
    varint::put(bytes, zigzag(i128::from((date - previous).num_days())));
    varint::put(
        bytes,
        (zigzag(amount.mantissa()) << 5) | u128::from(amount.scale()),
    );
}

/// The change at `*at`, after the one dated `previous`.
fn take_change(bytes: &[u8], at: &mut usize, previous: NaiveDate) -> (NaiveDate, Decimal) {
    let days = unzigzag(varint::take(bytes, at)) as i64;
    let date = previous + chrono::Duration::days(days);
    (date, take_amount(bytes, at))
}

fn take_amount(bytes: &[u8], at: &mut usize) -> Decimal {
    let packed = varint::take(bytes, at);
    // Written from a decimal's own mantissa and scale: always one again.
    Decimal::from_i128_with_scale(unzigzag(packed >> 5), (packed & 0x1f) as u32)
}

impl PartialEq for PackedAmounts {
    fn eq(&self, other: &PackedAmounts) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for PackedAmounts {}

impl std::hash::Hash for PackedAmounts {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.len.hash(state);
        for pair in self.iter() {
            pair.hash(state);
        }
    }
}

impl std::fmt::Debug for PackedAmounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PackedAmounts")
            .field(&self.iter().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for PackedAmounts {
    fn default() -> PackedAmounts {
        PackedAmounts::new()
    }
}

impl PackedAmounts {
    /// No amounts.
    pub fn new() -> PackedAmounts {
        PackedAmounts {
            bytes: Vec::new(),
            last_at: 0,
            len: 0,
            last_date: base(),
            last_amount: Decimal::ZERO,
        }
    }

    /// How many dates have an amount.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when no date has an amount.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held, used or not.
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity()
    }

    /// Every date with its amount, in date order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            bytes: &self.bytes,
            at: 0,
            previous: base(),
        }
    }

    /// The changes from the one whose bytes start at `at` (a change's
    /// start, as [`Iter::place`] gives it), after the one dated `previous`.
    pub(super) fn iter_at(&self, at: usize, previous: NaiveDate) -> Iter<'_> {
        Iter {
            bytes: &self.bytes,
            at,
            previous,
        }
    }

    /// The amounts, in date order.
    pub fn values(&self) -> impl Iterator<Item = Decimal> + Clone + '_ {
        self.iter().map(|(_, amount)| amount)
    }

    /// The dates in `range`, with their amounts, in date order. A range
    /// with a start is found from the end, back: what a period's interest
    /// reads costs the changes since its start, not the account's history.
    pub fn range<R: RangeBounds<NaiveDate>>(
        &self,
        range: R,
    ) -> impl Iterator<Item = (NaiveDate, Decimal)> + Clone + '_ {
        let end = range.end_bound().cloned();
        self.starting(range.start_bound().cloned())
            .take_while(move |(date, _)| match end {
                Bound::Unbounded => true,
                Bound::Included(to) => *date <= to,
                Bound::Excluded(to) => *date < to,
            })
    }

    /// The changes dated within `start` on, found by walking back from
    /// the last ([`varint::start_before`]).
    fn starting(&self, start: Bound<NaiveDate>) -> Iter<'_> {
        let within = |date: NaiveDate| match start {
            Bound::Unbounded => true,
            Bound::Included(from) => date >= from,
            Bound::Excluded(from) => date > from,
        };
        if start == Bound::Unbounded {
            return self.iter();
        }
        // An iterator past the last change: none within.
        let mut found = Iter {
            bytes: &self.bytes,
            at: self.bytes.len(),
            previous: self.last_date,
        };
        let (mut end, mut date) = (self.bytes.len(), self.last_date);
        while end > 0 && within(date) {
            let amount_at = varint::start_before(&self.bytes, end);
            let change_at = varint::start_before(&self.bytes, amount_at);
            let mut at = change_at;
            let days = unzigzag(varint::take(&self.bytes, &mut at)) as i64;
            let previous = date - chrono::Duration::days(days);
            found = Iter {
                bytes: &self.bytes,
                at: change_at,
                previous,
            };
            (end, date) = (change_at, previous);
        }
        found
    }

    /// The last date and its amount.
    pub fn last_key_value(&self) -> Option<(NaiveDate, Decimal)> {
        (!self.is_empty()).then_some((self.last_date, self.last_amount))
    }

    /// The amount on `date`.
    pub fn get(&self, date: &NaiveDate) -> Option<Decimal> {
        match self.last_key_value() {
            None => None,
            Some((last, amount)) if last == *date => Some(amount),
            Some((last, _)) if last < *date => None,
            Some(_) => self
                .starting(Bound::Included(*date))
                .next()
                .filter(|(on, _)| on == date)
                .map(|(_, amount)| amount),
        }
    }

    /// The date before the last change's (the base when it is the first).
    fn date_before_last(&self) -> NaiveDate {
        let mut at = self.last_at as usize;
        let days = unzigzag(varint::take(&self.bytes, &mut at)) as i64;
        self.last_date - chrono::Duration::days(days)
    }

    fn push(&mut self, date: NaiveDate, amount: Decimal) {
        let previous = if self.is_empty() {
            base()
        } else {
            self.last_date
        };
        self.last_at = self.bytes.len() as u32;
        put_change(&mut self.bytes, previous, date, amount);
        self.len += 1;
        self.last_date = date;
        self.last_amount = amount;
    }

    /// Packs `pairs` (in date order, one per date) in place of the list.
    fn repack(&mut self, pairs: Vec<(NaiveDate, Decimal)>) {
        let mut packed = PackedAmounts::new();
        packed.bytes.reserve(self.bytes.len() + 8);
        for (date, amount) in pairs {
            packed.push(date, amount);
        }
        *self = packed;
    }

    /// Sets the amount on `date`; returns the one it replaced.
    pub fn insert(&mut self, date: NaiveDate, amount: Decimal) -> Option<Decimal> {
        match self.last_key_value() {
            None => {
                self.push(date, amount);
                None
            }
            Some((last, _)) if last < date => {
                self.push(date, amount);
                None
            }
            Some((last, replaced)) if last == date => {
                let previous = self.date_before_last();
                self.bytes.truncate(self.last_at as usize);
                put_change(&mut self.bytes, previous, date, amount);
                self.last_amount = amount;
                Some(replaced)
            }
            Some(_) => {
                let mut pairs: Vec<_> = self.iter().collect();
                let replaced = match pairs.binary_search_by(|(on, _)| on.cmp(&date)) {
                    Ok(at) => Some(std::mem::replace(&mut pairs[at].1, amount)),
                    Err(at) => {
                        pairs.insert(at, (date, amount));
                        None
                    }
                };
                self.repack(pairs);
                replaced
            }
        }
    }

    /// Removes the amount on `date`; returns it.
    pub fn remove(&mut self, date: &NaiveDate) -> Option<Decimal> {
        let removed = self.get(date)?;
        if *date == self.last_date {
            self.pop();
        } else {
            let pairs = self.iter().filter(|(on, _)| on != date).collect();
            self.repack(pairs);
        }
        Some(removed)
    }

    /// Removes the last change (a reversal that empties the last day):
    /// the one before it becomes the last, found by walking back one, so
    /// the list is not packed again.
    fn pop(&mut self) {
        if self.len <= 1 {
            *self = PackedAmounts::new();
            return;
        }
        let previous = self.date_before_last();
        let end = self.last_at as usize;
        let mut amount_at = varint::start_before(&self.bytes, end);
        let change_at = varint::start_before(&self.bytes, amount_at);
        self.last_amount = take_amount(&self.bytes, &mut amount_at);
        self.last_date = previous;
        self.last_at = change_at as u32;
        self.bytes.truncate(end);
        self.len -= 1;
    }

    /// Every amount, summed as [`plus`] sums them one after the other from
    /// zero.
    pub fn sum(&self) -> Result<Decimal, Overflow> {
        self.values().try_fold(Decimal::ZERO, plus)
    }

    /// Gives back room the list does not use.
    pub fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
    }

    /// The packed bytes, what [`PackedAmounts::from_packed`] reads back.
    pub fn packed(&self) -> &[u8] {
        &self.bytes
    }

    /// The amounts `bytes` packs (as [`PackedAmounts::packed`] gives them),
    /// taken as they are after one walk that checks them as bytes read from
    /// outside: every varint whole, every date in the calendar and later
    /// than the one before, every amount a decimal. Reading a list back
    /// costs that walk, not a change packed again for each date.
    pub fn from_packed(mut bytes: Vec<u8>) -> Result<PackedAmounts, String> {
        let mut amounts = PackedAmounts::new();
        let mut at = 0;
        while at < bytes.len() {
            let change_at = at;
            let days = varint::take_checked(&bytes, &mut at)
                .and_then(|days| i64::try_from(unzigzag(days)).ok())
                .ok_or_else(|| format!("change {}: its date is cut short", amounts.len))?;
            if amounts.len > 0 && days <= 0 {
                return Err(format!(
                    "change {}: dated on or before the change before it",
                    amounts.len
                ));
            }
            let previous = if amounts.len == 0 {
                base()
            } else {
                amounts.last_date
            };
            let date = chrono::TimeDelta::try_days(days)
                .and_then(|days| previous.checked_add_signed(days))
                .ok_or_else(|| format!("change {}: its date is out of range", amounts.len))?;
            let packed = varint::take_checked(&bytes, &mut at)
                .ok_or_else(|| format!("change {}: its amount is cut short", amounts.len))?;
            let amount =
                Decimal::try_from_i128_with_scale(unzigzag(packed >> 5), (packed & 0x1f) as u32)
                    .map_err(|error| format!("change {}: {error}", amounts.len))?;
            amounts.len = amounts.len.checked_add(1).ok_or("too many changes")?;
            amounts.last_at = u32::try_from(change_at).map_err(|_| "too many changes")?;
            amounts.last_date = date;
            amounts.last_amount = amount;
        }
        bytes.shrink_to_fit();
        amounts.bytes = bytes;
        Ok(amounts)
    }
}

/// The changes of a [`PackedAmounts`], unpacked one by one.
#[derive(Clone)]
pub struct Iter<'a> {
    bytes: &'a [u8],
    at: usize,
    previous: NaiveDate,
}

impl Iter<'_> {
    /// Where the next change's bytes start, and the date of the change
    /// before it: what [`PackedAmounts::iter_at`] starts from.
    pub(super) fn place(&self) -> (usize, NaiveDate) {
        (self.at, self.previous)
    }
}

impl Iterator for Iter<'_> {
    type Item = (NaiveDate, Decimal);

    fn next(&mut self) -> Option<(NaiveDate, Decimal)> {
        if self.at >= self.bytes.len() {
            return None;
        }
        let (date, amount) = take_change(self.bytes, &mut self.at, self.previous);
        self.previous = date;
        Some((date, amount))
    }
}

impl<'a> IntoIterator for &'a PackedAmounts {
    type Item = (NaiveDate, Decimal);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Later pairs replace earlier ones of the same date, as a map's do.
impl FromIterator<(NaiveDate, Decimal)> for PackedAmounts {
    fn from_iter<I: IntoIterator<Item = (NaiveDate, Decimal)>>(pairs: I) -> PackedAmounts {
        let mut amounts = PackedAmounts::new();
        for (date, amount) in pairs {
            amounts.insert(date, amount);
        }
        amounts.shrink_to_fit();
        amounts
    }
}

impl<const N: usize> From<[(NaiveDate, Decimal); N]> for PackedAmounts {
    fn from(pairs: [(NaiveDate, Decimal); N]) -> PackedAmounts {
        pairs.into_iter().collect()
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
        Insert(i64, Decimal),
        Remove(i64),
    }

    /// Any decimal: đồng and cents, tiny and huge, negative, every scale.
    fn amount() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            (-1_000_000i64..1_000_000).prop_map(Decimal::from),
            (any::<i64>(), 0..=28u32).prop_map(|(m, s)| Decimal::new(m, s)),
            (any::<[u32; 3]>(), any::<bool>(), 0..=28u32).prop_map(
                |([lo, mid, hi], negative, scale)| Decimal::from_parts(
                    lo, mid, hi, negative, scale
                )
            ),
        ]
    }

    /// Days over eight years, or within a few weeks so that removals and
    /// the same date again find what they look for.
    fn date() -> impl Strategy<Value = i64> {
        prop_oneof![0..3000i64, 0..40i64]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (date(), amount()).prop_map(|(d, a)| Op::Insert(d, a)),
            2 => date().prop_map(Op::Remove),
        ]
    }

    fn bounds(day: NaiveDate) -> [Bound<NaiveDate>; 3] {
        [Bound::Unbounded, Bound::Included(day), Bound::Excluded(day)]
    }

    proptest! {
        /// Whatever the order of the changes (in date order, back-dated,
        /// the same date again, removals) and their amounts, the packed
        /// list answers as a map does, amounts exact to their scale.
        #[test]
        fn answers_as_a_map_does(
            ops in proptest::collection::vec(op(), 0..120),
            from in date(),
            to in date(),
        ) {
            let mut list = PackedAmounts::new();
            let mut map = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(d, a) => prop_assert_eq!(list.insert(day(d), a), map.insert(day(d), a)),
                    Op::Remove(d) => prop_assert_eq!(list.remove(&day(d)), map.remove(&day(d))),
                }
                prop_assert_eq!(list.last_key_value(), map.last_key_value().map(|(d, a)| (*d, *a)));
            }
            let unpacked: Vec<_> = list.iter().collect();
            prop_assert_eq!(&unpacked, &map.iter().map(|(d, a)| (*d, *a)).collect::<Vec<_>>());
            for ((_, packed), (_, kept)) in unpacked.iter().zip(&map) {
                prop_assert_eq!(packed.scale(), kept.scale());
                prop_assert_eq!(packed.mantissa(), kept.mantissa());
            }
            prop_assert_eq!(list.len(), map.len());
            prop_assert_eq!(list.is_empty(), map.is_empty());
            let walk = map.values().try_fold(Decimal::ZERO, |sum, a| plus(sum, *a));
            prop_assert_eq!(list.sum(), walk);
            for d in [from, to, from + 1, to.saturating_sub(1)] {
                prop_assert_eq!(list.get(&day(d)), map.get(&day(d)).copied());
            }
            for (d, _) in map.iter() {
                prop_assert_eq!(list.get(d), map.get(d).copied());
            }
            let (from, to) = (day(from), day(to));
            let pairs = |it: std::collections::btree_map::Range<'_, NaiveDate, Decimal>| {
                it.map(|(d, a)| (*d, *a)).collect::<Vec<_>>()
            };
            prop_assert_eq!(list.range(..from).collect::<Vec<_>>(), pairs(map.range(..from)));
            prop_assert_eq!(list.range(from..).collect::<Vec<_>>(), pairs(map.range(from..)));
            prop_assert_eq!(list.range(..=to).collect::<Vec<_>>(), pairs(map.range(..=to)));
            // Every pair of bounds; where a map refuses the range (its
            // start after its end, or both excluding one date), the list
            // has nothing in it.
            for start in bounds(from) {
                for end in bounds(to) {
                    let refused = match (start, end) {
                        (Bound::Included(s) | Bound::Excluded(s), Bound::Included(e) | Bound::Excluded(e)) => {
                            s > e || (s == e && start == Bound::Excluded(s) && end == Bound::Excluded(e))
                        }
                        _ => false,
                    };
                    let packed: Vec<_> = list.range((start, end)).collect();
                    if refused {
                        prop_assert!(packed.is_empty());
                    } else {
                        prop_assert_eq!(packed, pairs(map.range((start, end))));
                    }
                }
            }
            let collected: PackedAmounts = map.iter().map(|(d, a)| (*d, *a)).collect();
            prop_assert_eq!(&collected, &list);
            // Read back from its bytes, it is the same list, and its last
            // change is where the write path looks for it.
            let mut read = PackedAmounts::from_packed(list.packed().to_vec()).unwrap();
            prop_assert_eq!(&read, &list);
            prop_assert_eq!(read.last_key_value(), list.last_key_value());
            let mut kept = list.clone();
            if let Some((last, _)) = list.last_key_value() {
                prop_assert_eq!(read.insert(last, Decimal::TEN), kept.insert(last, Decimal::TEN));
                prop_assert_eq!(read.remove(&last), kept.remove(&last));
                prop_assert_eq!(&read, &kept);
                prop_assert_eq!(read.last_key_value(), kept.last_key_value());
            }
        }
    }

    /// Bytes read back that do not pack amounts are refused, naming the
    /// change and what is wrong with it: a date on or before the one
    /// before, a date past the calendar, an amount that is no decimal, a
    /// varint cut short.
    #[test]
    fn packed_bytes_read_back_are_checked() {
        let first = PackedAmounts::from([(day(0), Decimal::ONE)]);
        let one = first.packed();
        let refusal = |tail: &[u8]| {
            PackedAmounts::from_packed([one, tail].concat())
                .err()
                .unwrap_or_else(|| panic!("{tail:?} after a change read back"))
        };
        // Amount 1: zigzag(1) << 5, scale 0.
        let unit = 2 << 5;
        assert_eq!(
            refusal(&[0, unit]),
            "change 1: dated on or before the change before it"
        );
        assert_eq!(
            refusal(&[1, unit]),
            "change 1: dated on or before the change before it"
        );
        let mut far = Vec::new();
        varint::put(&mut far, zigzag(i128::from(i64::MAX)));
        far.push(unit);
        assert_eq!(refusal(&far), "change 1: its date is out of range");
        assert!(refusal(&[2, unit | 29]).starts_with("change 1: "));
        let mut wide = vec![2];
        varint::put(&mut wide, zigzag(1 << 100) << 5);
        assert!(refusal(&wide).starts_with("change 1: "));
        assert_eq!(refusal(&[2]), "change 1: its amount is cut short");
        assert_eq!(refusal(&[2, 0x80]), "change 1: its amount is cut short");
        assert_eq!(refusal(&[0x80]), "change 1: its date is cut short");
        // The first change alone, and nothing at all, read back.
        assert_eq!(PackedAmounts::from_packed(one.to_vec()), Ok(first));
        assert_eq!(
            PackedAmounts::from_packed(Vec::new()),
            Ok(PackedAmounts::new())
        );
    }

    /// The extreme dates and amounts pack and unpack: the first and last
    /// dates a date can have, one after the other, and the largest and
    /// smallest decimals at every end of their scales.
    #[test]
    fn the_extremes_pack_and_unpack() {
        let pairs = [
            (NaiveDate::MIN, Decimal::MIN),
            (NaiveDate::from_ymd_opt(1, 1, 1).unwrap(), Decimal::MAX),
            (day(0), Decimal::new(1, 28)),
            (day(1), Decimal::new(-1, 28)),
            (day(2), Decimal::ZERO),
            (
                NaiveDate::MAX,
                Decimal::from_parts(u32::MAX, u32::MAX, u32::MAX, true, 28),
            ),
        ];
        let list = PackedAmounts::from(pairs);
        let unpacked: Vec<_> = list.iter().collect();
        assert_eq!(unpacked, pairs);
        for ((_, packed), (_, kept)) in unpacked.iter().zip(&pairs) {
            assert_eq!(
                (packed.mantissa(), packed.scale()),
                (kept.mantissa(), kept.scale())
            );
        }
        assert_eq!(list.last_key_value(), Some(pairs[5]));
        assert_eq!(
            PackedAmounts::from_packed(list.packed().to_vec()),
            Ok(list.clone())
        );
        // Found from the end, back over the widest changes to the first.
        for (at, (date, amount)) in pairs.iter().enumerate() {
            assert_eq!(list.get(date), Some(*amount));
            assert_eq!(list.range(*date..).collect::<Vec<_>>(), &pairs[at..]);
            assert_eq!(list.range(..=*date).collect::<Vec<_>>(), &pairs[..=at]);
        }
        // Changed at either end, and emptied from the last back.
        let mut changed = list.clone();
        assert_eq!(
            changed.insert(NaiveDate::MIN, Decimal::ONE),
            Some(Decimal::MIN)
        );
        assert_eq!(
            changed.insert(NaiveDate::MAX, Decimal::ONE),
            Some(pairs[5].1)
        );
        assert_eq!(changed.iter().next(), Some((NaiveDate::MIN, Decimal::ONE)));
        for (date, _) in pairs.iter().rev() {
            assert!(changed.remove(date).is_some());
        }
        assert!(changed.is_empty());
        assert_eq!(changed, PackedAmounts::default());
    }

    /// A weekly deposit of a meeting day packs into five bytes (a week on,
    /// one; tens of thousands of đồng, four), against the twenty a change
    /// took unpacked; the first date takes two more (its days since year 1).
    #[test]
    fn a_weekly_deposit_packs_into_five_bytes() {
        let weeks = 520;
        let list: PackedAmounts = (0..weeks)
            .map(|week| (day(7 * week), Decimal::from(50_000 + 1_000 * (week % 7))))
            .collect();
        assert_eq!(list.len(), weeks as usize);
        assert_eq!(size_of::<(NaiveDate, Decimal)>(), 20);
        assert_eq!(list.heap_bytes(), 5 * weeks as usize + 2);
    }
}
