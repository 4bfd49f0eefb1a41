//! Every branch's day totals as they stood right after any entry: what
//! branch totals and portfolio quality as of a sequence number are read
//! from.
//!
//! The live [`DayTotals`] (by branch and effective date) answer "as of a
//! date" and "now". A back-dated entry changes days in the past, so "the
//! days as they stood after entry s" is a second dimension, by sequence.
//! Each branch keeps the changes its entries made to its days in chunks,
//! each starting with the branch's days as they stood before its first
//! entry. A chunk ends once its entries' changes take as many bytes as its
//! starting days (and at least [`DAY_CHUNK_BYTES_MIN`]). The days after
//! entry s are then one chunk's starting days plus at most as many bytes of
//! changes: O(days), as a read as of a date is, whatever the journal's
//! length; and the starting days kept take no more than the changes do.
//!
//! Chunks are kept as postcard bytes (an entry's changes take tens of
//! bytes, not the few hundred of a decoded [`DayTotals`]); a full chunk
//! never changes again, so a state cache rewrites only each branch's last.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::ids::{BranchId, ProductId};
use super::totals::{DayTotals, Overflow, ProductDay};

/// Bytes of changes a chunk of a branch's day log holds at least before the
/// next one starts (more when the branch's days take more).
pub const DAY_CHUNK_BYTES_MIN: usize = if cfg!(test) { 48 } else { 16 << 10 };

/// One chunk of a branch's day log, as the state cache keeps it
/// (`daylog/BRANCH/CHUNK`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayChunk {
    /// Sequence number of the chunk's first entry.
    pub first_sequence: u64,
    /// Entries in the chunk.
    pub entries: u32,
    /// The branch's days as they stood before the first entry: postcard
    /// `CompactDay`s in date order.
    pub before: Vec<u8>,
    /// Each entry's changes, in sequence order: postcard `EntryChanges`,
    /// one after another.
    pub changes: Vec<u8>,
}

/// What one entry changed of one branch's days.
#[derive(Serialize, Deserialize)]
struct EntryChanges {
    sequence: u64,
    days: Vec<CompactDay>,
}

/// A day's totals with only the fields that are not zero: `(field, value)`
/// pairs, the field numbered as in [`DayTotals`]'s declaration.
#[derive(Serialize, Deserialize)]
struct CompactDay {
    #[serde(with = "super::codec::date")]
    date: NaiveDate,
    #[serde(with = "compact_fields")]
    fields: Vec<(u8, Decimal)>,
    products: Vec<(Option<ProductId>, i64, CompactDecimal)>,
}

/// A decimal as its mantissa and scale (postcard varints: small amounts
/// take a few bytes).
#[derive(Clone, Copy, Serialize, Deserialize)]
struct CompactDecimal(#[serde(with = "super::codec::decimal")] Decimal);

mod compact_fields {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::CompactDecimal;

    pub fn serialize<S: Serializer>(
        fields: &[(u8, Decimal)],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(u8, CompactDecimal)> = fields
            .iter()
            .map(|(field, value)| (*field, CompactDecimal(*value)))
            .collect();
        pairs.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<(u8, Decimal)>, D::Error> {
        let pairs = Vec::<(u8, CompactDecimal)>::deserialize(deserializer)?;
        Ok(pairs.into_iter().map(|(f, v)| (f, v.0)).collect())
    }
}

/// [`EntryChanges`] encoded straight from the entry's changes, without
/// building a `CompactDay` (and its lists) for each of its days: the same
/// bytes.
struct EntryChangesOf<'a> {
    sequence: u64,
    days: &'a [(NaiveDate, DayTotals)],
}

impl Serialize for EntryChangesOf<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut entry = serializer.serialize_struct("EntryChanges", 2)?;
        entry.serialize_field("sequence", &self.sequence)?;
        entry.serialize_field(
            "days",
            &DaysOf(self.days.iter().map(|(date, day)| (date, day))),
        )?;
        entry.end()
    }
}

/// Days encoded as a list of `CompactDay`s, straight from their totals.
struct DaysOf<I>(I);

impl<'a, I> Serialize for DaysOf<I>
where
    I: Iterator<Item = (&'a NaiveDate, &'a DayTotals)> + ExactSizeIterator + Clone,
{
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut days = serializer.serialize_seq(Some(self.0.len()))?;
        for (date, day) in self.0.clone() {
            days.serialize_element(&CompactDayOf { date: *date, day })?;
        }
        days.end()
    }
}

/// A `CompactDay` encoded straight from a day's totals.
struct CompactDayOf<'a> {
    date: NaiveDate,
    day: &'a DayTotals,
}

impl Serialize for CompactDayOf<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeSeq, SerializeStruct};
        struct Date(NaiveDate);
        impl Serialize for Date {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                super::codec::date::serialize(&self.0, serializer)
            }
        }
        struct Fields([Decimal; FIELDS]);
        impl Serialize for Fields {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let present = self.0.iter().filter(|value| !value.is_zero()).count();
                let mut fields = serializer.serialize_seq(Some(present))?;
                for (field, value) in (0u8..).zip(self.0) {
                    if !value.is_zero() {
                        fields.serialize_element(&(field, CompactDecimal(value)))?;
                    }
                }
                fields.end()
            }
        }
        struct Products<'a>(&'a BTreeMap<Option<ProductId>, ProductDay>);
        impl Serialize for Products<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut products = serializer.serialize_seq(Some(self.0.len()))?;
                for (product, day) in self.0 {
                    products.serialize_element(&(
                        product,
                        day.loans,
                        CompactDecimal(day.amount),
                    ))?;
                }
                products.end()
            }
        }
        let mut day = serializer.serialize_struct("CompactDay", 3)?;
        day.serialize_field("date", &Date(self.date))?;
        day.serialize_field("fields", &Fields(field_values(self.day)))?;
        day.serialize_field("products", &Products(&self.day.disbursed_by_product))?;
        day.end()
    }
}

/// Fields of a [`DayTotals`] a `CompactDay` numbers.
const FIELDS: usize = 19;

/// A day's figures, numbered as `CompactDay` numbers them (in
/// [`DayTotals`]'s declaration order).
fn field_values(day: &DayTotals) -> [Decimal; FIELDS] {
    [
        Decimal::from(day.loans_disbursed),
        day.amount_disbursed,
        day.principal_collected,
        day.interest_collected,
        day.fees_collected,
        day.fees_withheld,
        day.written_off,
        day.recovered,
        day.savings_change,
        day.portfolio_change,
        Decimal::from(day.borrowers_change),
        Decimal::from(day.borrowers_with_savings_change),
        Decimal::from(day.loans_active_change),
        day.par1_change,
        day.par30_change,
        day.par90_change,
        Decimal::from(day.loans_in_arrears_change),
        day.due,
        day.paid_on_time,
    ]
}

impl CompactDay {
    /// The day's compact form (what [`CompactDayOf`] encodes without
    /// building it).
    #[cfg(test)]
    fn of(date: NaiveDate, day: &DayTotals) -> CompactDay {
        CompactDay {
            date,
            fields: (0u8..)
                .zip(field_values(day))
                .filter(|(_, value)| !value.is_zero())
                .collect(),
            products: day
                .disbursed_by_product
                .iter()
                .map(|(product, p)| (product.clone(), p.loans, CompactDecimal(p.amount)))
                .collect(),
        }
    }

    fn totals(self) -> Result<(NaiveDate, DayTotals), String> {
        let mut day = DayTotals::default();
        for (field, value) in self.fields {
            let count = || {
                i64::try_from(value)
                    .map_err(|_| format!("day log: field {field} holds {value}, not a count"))
            };
            match field {
                0 => day.loans_disbursed = count()?,
                1 => day.amount_disbursed = value,
                2 => day.principal_collected = value,
                3 => day.interest_collected = value,
                4 => day.fees_collected = value,
                5 => day.fees_withheld = value,
                6 => day.written_off = value,
                7 => day.recovered = value,
                8 => day.savings_change = value,
                9 => day.portfolio_change = value,
                10 => day.borrowers_change = count()?,
                11 => day.borrowers_with_savings_change = count()?,
                12 => day.loans_active_change = count()?,
                13 => day.par1_change = value,
                14 => day.par30_change = value,
                15 => day.par90_change = value,
                16 => day.loans_in_arrears_change = count()?,
                17 => day.due = value,
                18 => day.paid_on_time = value,
                other => return Err(format!("day log: unknown field {other}")),
            }
        }
        day.disbursed_by_product = self
            .products
            .into_iter()
            .map(|(product, loans, amount)| {
                (
                    product,
                    ProductDay {
                        loans,
                        amount: amount.0,
                    },
                )
            })
            .collect();
        Ok((self.date, day))
    }
}

/// A branch's days by effective date.
pub type Days = BTreeMap<NaiveDate, DayTotals>;

/// Every branch's day log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DayLog {
    /// Each branch's chunks, oldest first. Shared: a copy of the state
    /// shares the full chunks, and copies only the last one it changes.
    branches: BTreeMap<BranchId, Vec<Arc<DayChunk>>>,
    /// True on a copy that keeps no log (the writer's, which answers no
    /// reads).
    off: bool,
}

fn encode_into<T: Serialize>(value: &T, bytes: &mut Vec<u8>) {
    *bytes = postcard::to_extend(value, std::mem::take(bytes))
        .expect("postcard encodes plain data into a Vec without failing");
}

impl DayLog {
    /// Keeps no log from now on.
    pub fn stop(&mut self) {
        self.off = true;
        self.branches = BTreeMap::new();
    }

    /// True once [`DayLog::stop`] was called: it notes nothing.
    pub fn is_off(&self) -> bool {
        self.off
    }

    /// Notes what entry `sequence` changed of `branch`'s days, which stood
    /// as `before` just before it. Returns the index of the chunk it went
    /// into (`None` when nothing changed or the log is off).
    pub fn note(
        &mut self,
        sequence: u64,
        branch: &BranchId,
        before: Option<&Days>,
        changes: &[(NaiveDate, DayTotals)],
    ) -> Option<u64> {
        if self.off || changes.is_empty() {
            return None;
        }
        let chunks = match self.branches.get_mut(branch) {
            Some(chunks) => chunks,
            None => self.branches.entry(branch.clone()).or_default(),
        };
        if chunks
            .last()
            .is_none_or(|last| last.changes.len() >= last.before.len().max(DAY_CHUNK_BYTES_MIN))
        {
            let mut starting = Vec::new();
            let empty = Days::new();
            encode_into(&DaysOf(before.unwrap_or(&empty).iter()), &mut starting);
            chunks.push(Arc::new(DayChunk {
                first_sequence: sequence,
                entries: 0,
                before: starting,
                changes: Vec::new(),
            }));
        }
        let index = chunks.len() - 1;
        let chunk = Arc::make_mut(&mut chunks[index]);
        chunk.entries += 1;
        encode_into(
            &EntryChangesOf {
                sequence,
                days: changes,
            },
            &mut chunk.changes,
        );
        u64::try_from(index).ok()
    }

    /// `branch`'s days as they stood right after entry `sequence`.
    pub fn days_at(&self, branch: &BranchId, sequence: u64) -> Result<Days, String> {
        let Some(chunks) = self.branches.get(branch) else {
            return Ok(Days::new());
        };
        let at = chunks.partition_point(|c| c.first_sequence <= sequence);
        let Some(chunk) = at.checked_sub(1).map(|i| &chunks[i]) else {
            return Ok(Days::new());
        };
        let starting: Vec<CompactDay> =
            postcard::from_bytes(&chunk.before).map_err(|e| format!("day log: {e}"))?;
        let mut days = Days::new();
        for day in starting {
            let (date, totals) = day.totals()?;
            days.insert(date, totals);
        }
        let mut rest = chunk.changes.as_slice();
        while !rest.is_empty() {
            let (changes, after): (EntryChanges, &[u8]) =
                postcard::take_from_bytes(rest).map_err(|e| format!("day log: {e}"))?;
            if changes.sequence > sequence {
                break;
            }
            for day in changes.days {
                let (date, change) = day.totals()?;
                let total = days.entry(date).or_default();
                total
                    .add(&change)
                    .map_err(|Overflow| "day log: arithmetic overflow".to_owned())?;
                if total.is_empty() {
                    days.remove(&date);
                }
            }
            rest = after;
        }
        Ok(days)
    }

    /// Bytes the log holds: every chunk's starting days and changes.
    pub fn bytes(&self) -> usize {
        self.branches
            .values()
            .flatten()
            .map(|chunk| chunk.before.len() + chunk.changes.len())
            .sum()
    }

    /// Chunk `index` of `branch`'s log.
    pub fn chunk(&self, branch: &BranchId, index: u64) -> Option<&DayChunk> {
        let index = usize::try_from(index).ok()?;
        self.branches.get(branch)?.get(index).map(Arc::as_ref)
    }

    /// Every chunk, as `(branch, index)` keys.
    pub fn keys(&self) -> impl Iterator<Item = (&BranchId, u64)> {
        self.branches
            .iter()
            .flat_map(|(branch, chunks)| (0..chunks.len() as u64).map(move |i| (branch, i)))
    }

    /// Puts back chunk `index` of `branch`'s log, read from a state cache;
    /// chunks come in key order (each branch's from 0 on).
    pub fn restore(&mut self, branch: BranchId, index: u64, chunk: DayChunk) -> Result<(), String> {
        let chunks = self.branches.entry(branch.clone()).or_default();
        if index != chunks.len() as u64 {
            return Err(format!(
                "day log of {branch}: chunk {index} follows chunk {}",
                chunks.len() as i128 - 1
            ));
        }
        chunks.push(Arc::new(chunk));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 1, day).expect("a January date")
    }

    fn change(amount: i64) -> DayTotals {
        DayTotals {
            amount_disbursed: Decimal::from(amount),
            loans_disbursed: 1,
            borrowers_change: -1,
            par30_change: Decimal::new(-12345, 2),
            ..DayTotals::default()
        }
    }

    #[test]
    fn days_after_any_entry_are_the_days_as_they_stood_then() {
        let branch = BranchId::parse("branch", "TB").expect("an id");
        let mut log = DayLog::default();
        let mut live = Days::new();
        let mut seen: Vec<(u64, Days)> = Vec::new();
        // Eight entries over three chunks, some back-dated, one undoing another.
        let entries = [
            (1, 5, 100),
            (2, 3, 50),
            (4, 5, -100),
            (5, 1, 7),
            (7, 9, 1),
            (8, 3, 2),
            (9, 2, 3),
            (10, 9, -1),
        ];
        for (sequence, day, amount) in entries {
            let mut changed = change(amount);
            if amount < 0 {
                changed = change(-amount).negated();
            }
            log.note(
                sequence,
                &branch,
                Some(&live),
                &[(date(day), changed.clone())],
            );
            let total = live.entry(date(day)).or_default();
            total.add(&changed).expect("small amounts");
            if total.is_empty() {
                live.remove(&date(day));
            }
            seen.push((sequence, live.clone()));
        }
        assert!(log.keys().count() >= 3, "several chunks");
        assert_eq!(log.days_at(&branch, 0).expect("decodes"), Days::new());
        let mut expected = Days::new();
        for sequence in 1..=11 {
            if let Some((_, days)) = seen.iter().find(|(s, _)| *s == sequence) {
                expected = days.clone();
            }
            assert_eq!(
                log.days_at(&branch, sequence).expect("decodes"),
                expected,
                "after {sequence}"
            );
        }
        // Entry 4 undid entry 1: the 5th has no totals after it.
        assert!(
            !log.days_at(&branch, 4)
                .expect("decodes")
                .contains_key(&date(5))
        );
    }

    #[test]
    fn chunks_restored_in_order_answer_as_the_originals() {
        let branch = BranchId::parse("branch", "TB").expect("an id");
        let mut log = DayLog::default();
        let mut live = Days::new();
        for sequence in 1..=7 {
            let changed = change(i64::try_from(sequence).expect("small"));
            log.note(
                sequence,
                &branch,
                Some(&live),
                &[(date(1), changed.clone())],
            );
            live.entry(date(1))
                .or_default()
                .add(&changed)
                .expect("small");
        }
        let mut restored = DayLog::default();
        for (b, index) in log.keys() {
            let chunk = log.chunk(b, index).expect("listed").clone();
            restored.restore(b.clone(), index, chunk).expect("in order");
        }
        assert_eq!(restored, log);
        let first = log.chunk(&branch, 0).expect("a chunk").clone();
        assert!(restored.restore(branch.clone(), 5, first).is_err());
        let mut stopped = log.clone();
        stopped.stop();
        assert_eq!(
            stopped.note(8, &branch, Some(&live), &[(date(1), change(1))]),
            None
        );
    }

    #[test]
    fn changes_are_encoded_as_their_compact_days_are() {
        // The chunks already in state caches hold `CompactDay`s: encoding
        // straight from the totals must give the very same bytes.
        let product = ProductId::parse("product", "P1").expect("an id");
        let mut full = change(-5_000_000);
        full.principal_collected = Decimal::new(12_345_678, 3);
        full.interest_collected = Decimal::new(-1, 0);
        full.loans_in_arrears_change = 3;
        full.paid_on_time = Decimal::MAX;
        full.disbursed_by_product = [
            (
                None,
                ProductDay {
                    loans: -1,
                    amount: Decimal::new(-15, 1),
                },
            ),
            (
                Some(product),
                ProductDay {
                    loans: 2,
                    amount: Decimal::from(9_000_000),
                },
            ),
        ]
        .into();
        let days = [
            (date(1), DayTotals::default()),
            (date(2), change(100)),
            (date(30), full),
        ];
        let owned = EntryChanges {
            sequence: 300,
            days: days
                .iter()
                .map(|(date, day)| CompactDay::of(*date, day))
                .collect(),
        };
        let mut borrowed = vec![7];
        encode_into(
            &EntryChangesOf {
                sequence: 300,
                days: &days,
            },
            &mut borrowed,
        );
        let mut expected = vec![7];
        expected.extend(postcard::to_stdvec(&owned).expect("encodes"));
        assert_eq!(borrowed, expected);
        let held: Days = days.iter().cloned().collect();
        let owned: Vec<CompactDay> = held
            .iter()
            .map(|(date, day)| CompactDay::of(*date, day))
            .collect();
        let mut borrowed = Vec::new();
        encode_into(&DaysOf(held.iter()), &mut borrowed);
        assert_eq!(borrowed, postcard::to_stdvec(&owned).expect("encodes"));
    }

    #[test]
    fn an_entrys_changes_keep_the_bytes_caches_hold() {
        // Worked out by hand from postcard's rules (varints, zigzag for
        // signed integers, a field's number as a byte): the encoding the
        // caches written so far hold, whatever code produces it now.
        let mut second = DayTotals {
            interest_collected: Decimal::NEGATIVE_ONE,
            paid_on_time: Decimal::from_i128_with_scale(1 << 63, 0),
            ..DayTotals::default()
        };
        second.disbursed_by_product.insert(
            None,
            ProductDay {
                loans: -1,
                amount: Decimal::new(-15, 1),
            },
        );
        let days = [(date(2), change(100)), (date(30), second)];
        let mut bytes = Vec::new();
        encode_into(
            &EntryChangesOf {
                sequence: 300,
                days: &days,
            },
            &mut bytes,
        );
        let expected: [u8; 47] = [
            0xac, 0x02, 0x02, 0x8e, 0x99, 0x5a, 0x04, 0x00, 0x02, 0x00, 0x01, 0xc8, 0x01, 0x00,
            0x0a, 0x01, 0x00, 0x0e, 0xf1, 0xc0, 0x01, 0x02, 0x00, 0xc6, 0x99, 0x5a, 0x02, 0x03,
            0x01, 0x00, 0x12, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02, 0x00,
            0x01, 0x00, 0x01, 0x1d, 0x01,
        ];
        assert_eq!(bytes, expected);
    }
}
