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
//! bytes, not the few hundred of a decoded [`DayTotals`]). A full chunk
//! never changes again: once the next one opens it is closed, its record
//! written once under a key read when asked ([`crate::stored`]), and once
//! the store holds it ([`DayLog::keep_in`], [`DayLog::let_go`]) it leaves
//! memory and is read back for a figure as of one of its entries (the last
//! few read kept). Each branch's open chunk stays in memory; its record is
//! the one a checkpoint rewrites.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::day_changes::DayChanges;
use super::ids::{BranchId, ProductId};
use super::stored::{ReadError, StoredRecords};
use super::totals::{DayTotals, Overflow, ProductDay, figure};
use super::varint;

/// Bytes of changes a chunk of a branch's day log holds at least before the
/// next one starts (more when the branch's days take more).
pub const DAY_CHUNK_BYTES_MIN: usize = if cfg!(test) { 48 } else { 16 << 10 };

/// One chunk of a branch's day log, as the state cache keeps it
/// ([`open_chunk_key`], [`closed_chunk_key`]).
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

/// Appends what entry `sequence` changed of a branch's days (`changes`) as
/// postcard encodes an [`EntryChanges`] of them, byte for byte: written
/// out by hand, because a new loan changes a day per installment, and
/// serde's calls for each of their figures cost more than the few bytes
/// they write.
fn put_entry_changes(bytes: &mut Vec<u8>, sequence: u64, changes: &DayChanges) {
    /// A signed integer as postcard writes it: zigzag, then a varint.
    fn put_signed(bytes: &mut Vec<u8>, value: i128) {
        varint::put(bytes, (value.wrapping_shl(1) ^ (value >> 127)) as u128);
    }
    /// A `CompactDecimal`: its mantissa, then its scale.
    fn put_decimal(bytes: &mut Vec<u8>, value: Decimal) {
        put_signed(bytes, value.mantissa());
        varint::put(bytes, u128::from(value.scale()));
    }
    fn put_len(bytes: &mut Vec<u8>, len: usize) {
        varint::put(bytes, len as u128);
    }
    bytes.reserve(8 + changes.len() * 16);
    varint::put(bytes, u128::from(sequence));
    put_len(bytes, changes.len());
    for day in changes.days() {
        put_signed(bytes, i128::from(day.date.num_days_from_ce()));
        put_len(bytes, day.figures.len());
        for change in day.figures {
            bytes.push(change.figure);
            put_decimal(bytes, change.by);
        }
        put_len(bytes, day.products.len());
        for change in day.products {
            match &change.product {
                None => bytes.push(0),
                Some(product) => {
                    bytes.push(1);
                    put_len(bytes, product.as_str().len());
                    bytes.extend_from_slice(product.as_str().as_bytes());
                }
            }
            put_signed(bytes, i128::from(change.by.loans));
            put_decimal(bytes, change.by.amount);
        }
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
        struct Fields([Decimal; figure::COUNT]);
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
        day.serialize_field("fields", &Fields(self.day.figures()))?;
        day.serialize_field("products", &Products(&self.day.disbursed_by_product))?;
        day.end()
    }
}

impl CompactDay {
    /// The day's compact form (what [`CompactDayOf`] encodes without
    /// building it).
    #[cfg(test)]
    fn of(date: NaiveDate, day: &DayTotals) -> CompactDay {
        CompactDay {
            date,
            fields: (0u8..)
                .zip(day.figures())
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
            day.set_figure(field, value)
                .map_err(|problem| format!("day log: {problem}"))?;
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

/// Prefix of [`open_chunk_key`]'s keys.
pub const OPEN_CHUNK_PREFIX: &str = "daylog/";
/// Prefix of [`closed_chunk_key`]'s keys: records read when asked
/// ([`crate::stored`]).
pub const CLOSED_CHUNK_PREFIX: &str = "cold/daylog/";

/// Key of the record of `branch`'s open chunk (its last, which its next
/// entries go into): rewritten as it grows, and read at startup.
pub fn open_chunk_key(branch: &BranchId) -> String {
    format!("{OPEN_CHUNK_PREFIX}{branch}")
}

/// Key of the record of `branch`'s closed chunk whose first entry is
/// `first_sequence`: written once, when the chunk after it opens, and read
/// back only when a figure as of one of its entries is asked for.
pub fn closed_chunk_key(branch: &BranchId, first_sequence: u64) -> String {
    format!("{CLOSED_CHUNK_PREFIX}{branch}/{first_sequence:020}")
}

/// Closed chunks read back from the store that stay in memory, the most
/// recently read (a report asks for the same few dates again and again).
const RECENT_CHUNKS: usize = 8;

/// One chunk of a branch's log.
#[derive(Clone, Debug)]
enum Slot {
    /// In memory.
    Held(Arc<DayChunk>),
    /// Closed and in the store only ([`DayLog::keep_in`]): its first entry.
    Stored(u64),
}

impl Slot {
    fn first_sequence(&self) -> u64 {
        match self {
            Slot::Held(chunk) => chunk.first_sequence,
            Slot::Stored(first) => *first,
        }
    }
}

impl PartialEq for Slot {
    fn eq(&self, other: &Slot) -> bool {
        match (self, other) {
            (Slot::Held(a), Slot::Held(b)) => a == b,
            (Slot::Stored(a), Slot::Stored(b)) => a == b,
            _ => false,
        }
    }
}

/// What [`DayLog::note`] changed: the branch's open chunk, and the chunk
/// before it when this entry's changes opened a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Noted {
    /// The first entry of the chunk this entry closed (its changes went
    /// into a new chunk after it): that chunk's record is written once.
    pub closed: Option<u64>,
}

/// Every branch's day log.
#[derive(Clone, Debug, Default)]
pub struct DayLog {
    /// Each branch's chunks, oldest first, the last one open. Shared: a
    /// copy of the state shares the full chunks, and copies only the last
    /// one it changes.
    branches: BTreeMap<BranchId, Vec<Slot>>,
    /// True on a copy that keeps no log (the writer's, which answers no
    /// reads).
    off: bool,
    /// Where the closed chunks it let go of are read back from.
    store: Option<Arc<dyn StoredRecords>>,
    /// The closed chunks last read back from it.
    recent: Recent,
}

impl PartialEq for DayLog {
    fn eq(&self, other: &DayLog) -> bool {
        self.branches == other.branches && self.off == other.off
    }
}

impl Eq for DayLog {}

/// Closed chunks read back from the store, the most recently used last.
#[derive(Default)]
struct Recent(Mutex<VecDeque<(BranchId, u64, Arc<DayChunk>)>>);

impl Recent {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(BranchId, u64, Arc<DayChunk>)>> {
        // Nothing is left half done under the lock: a poisoned one is sound.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Clone for Recent {
    fn clone(&self) -> Recent {
        Recent::default()
    }
}

impl std::fmt::Debug for Recent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recent({} chunks)", self.lock().len())
    }
}

use crate::codec::encode_into;

impl DayLog {
    /// Keeps no log from now on.
    pub fn stop(&mut self) {
        self.off = true;
        self.branches = BTreeMap::new();
        self.store = None;
    }

    /// True once [`DayLog::stop`] was called: it notes nothing.
    pub fn is_off(&self) -> bool {
        self.off
    }

    /// Notes what entry `sequence` changed of `branch`'s days, which stood
    /// as `before` just before it (`None` when nothing changed or the log
    /// is off).
    pub fn note(
        &mut self,
        sequence: u64,
        branch: &BranchId,
        before: Option<&Days>,
        changes: &DayChanges,
    ) -> Option<Noted> {
        if self.off || changes.is_empty() {
            return None;
        }
        let chunks = match self.branches.get_mut(branch) {
            Some(chunks) => chunks,
            None => self.branches.entry(branch.clone()).or_default(),
        };
        let (full, closed) = match chunks.last() {
            None => (true, None),
            Some(Slot::Held(last)) => (
                last.changes.len() >= last.before.len().max(DAY_CHUNK_BYTES_MIN),
                Some(last.first_sequence),
            ),
            // Never the last one (`let_go` keeps it): a new one follows.
            Some(Slot::Stored(_)) => (true, None),
        };
        let closed = if full {
            let mut starting = Vec::new();
            let empty = Days::new();
            encode_into(&DaysOf(before.unwrap_or(&empty).iter()), &mut starting);
            chunks.push(Slot::Held(Arc::new(DayChunk {
                first_sequence: sequence,
                entries: 0,
                before: starting,
                changes: Vec::new(),
            })));
            closed
        } else {
            None
        };
        if let Some(Slot::Held(open)) = chunks.last_mut() {
            let chunk = Arc::make_mut(open);
            chunk.entries += 1;
            put_entry_changes(&mut chunk.changes, sequence, changes);
        }
        Some(Noted { closed })
    }

    /// `branch`'s days as they stood right after entry `sequence`: an
    /// error when its chunk could not be read back, or does not decode.
    pub fn days_at(&self, branch: &BranchId, sequence: u64) -> Result<Days, ReadError> {
        let Some(chunks) = self.branches.get(branch) else {
            return Ok(Days::new());
        };
        let at = chunks.partition_point(|c| c.first_sequence() <= sequence);
        let Some(slot) = at.checked_sub(1).map(|i| &chunks[i]) else {
            return Ok(Days::new());
        };
        let days = match slot {
            Slot::Held(chunk) => days_in(chunk, sequence),
            Slot::Stored(first) => days_in(&*self.read_stored(branch, *first)?, sequence),
        };
        days.map_err(ReadError::Damaged)
    }

    /// `branch`'s closed chunk from entry `first`, read back from the store
    /// (or kept from a recent read).
    fn read_stored(&self, branch: &BranchId, first: u64) -> Result<Arc<DayChunk>, ReadError> {
        {
            let mut recent = self.recent.lock();
            if let Some(at) = recent
                .iter()
                .position(|(b, f, _)| *f == first && b == branch)
                && let Some(found) = recent.remove(at)
            {
                let chunk = found.2.clone();
                recent.push_back(found);
                return Ok(chunk);
            }
        }
        let key = closed_chunk_key(branch, first);
        let Some(store) = &self.store else {
            return Err(ReadError::Damaged(format!("record {key:?} is in no store")));
        };
        let bytes = store
            .read(key.as_bytes())?
            .ok_or_else(|| ReadError::Damaged(format!("record {key:?} is missing")))?;
        let chunk: DayChunk = postcard::from_bytes(&bytes)
            .map_err(|e| ReadError::Damaged(format!("record {key:?}: {e}")))?;
        if chunk.first_sequence != first {
            return Err(ReadError::Damaged(format!(
                "record {key:?} holds the chunk from entry {}",
                chunk.first_sequence
            )));
        }
        let chunk = Arc::new(chunk);
        let mut recent = self.recent.lock();
        if recent.len() >= RECENT_CHUNKS {
            recent.pop_front();
        }
        recent.push_back((branch.clone(), first, chunk.clone()));
        Ok(chunk)
    }

    /// Bytes of the chunks held in memory: their starting days and changes.
    pub fn bytes(&self) -> usize {
        self.branches
            .values()
            .flatten()
            .map(|slot| match slot {
                Slot::Held(chunk) => chunk.before.len() + chunk.changes.len(),
                Slot::Stored(_) => 0,
            })
            .sum()
    }

    /// `branch`'s open chunk (its last), if it has any.
    pub fn open_chunk(&self, branch: &BranchId) -> Option<&DayChunk> {
        match self.branches.get(branch)?.last()? {
            Slot::Held(chunk) => Some(chunk),
            Slot::Stored(_) => None,
        }
    }

    /// `branch`'s closed chunks, but the last.
    fn closed(&self, branch: &BranchId) -> &[Slot] {
        self.branches
            .get(branch)
            .map_or(&[], |slots| &slots[..slots.len().saturating_sub(1)])
    }

    /// `branch`'s closed chunk from entry `first`: held in memory, or read
    /// back from the store (`Ok(None)`: it has none from that entry).
    pub fn closed_chunk(
        &self,
        branch: &BranchId,
        first: u64,
    ) -> Result<Option<Arc<DayChunk>>, ReadError> {
        let closed = self.closed(branch);
        match closed.binary_search_by_key(&first, Slot::first_sequence) {
            Ok(at) => match &closed[at] {
                Slot::Held(chunk) => Ok(Some(chunk.clone())),
                Slot::Stored(first) => self.read_stored(branch, *first).map(Some),
            },
            Err(_) => Ok(None),
        }
    }

    /// True when `branch`'s closed chunk from entry `first` was let go of:
    /// its record is in the store, as it will stay.
    pub fn is_let_go(&self, branch: &BranchId, first: u64) -> bool {
        let closed = self.closed(branch);
        closed
            .binary_search_by_key(&first, Slot::first_sequence)
            .is_ok_and(|at| matches!(closed[at], Slot::Stored(_)))
    }

    /// Every branch with a log (each has an open chunk).
    pub fn branches(&self) -> impl Iterator<Item = &BranchId> {
        self.branches
            .iter()
            .filter(|(_, slots)| !slots.is_empty())
            .map(|(branch, _)| branch)
    }

    /// Every closed chunk, as `(branch, first entry)`.
    pub fn closed_keys(&self) -> impl Iterator<Item = (&BranchId, u64)> {
        self.branches.keys().flat_map(move |branch| {
            self.closed(branch)
                .iter()
                .map(move |slot| (branch, slot.first_sequence()))
        })
    }

    /// Puts back `branch`'s log, read from a state cache: its closed chunks
    /// by first entry (each read, or `None`: left in the store, read when
    /// asked), then its open one.
    pub fn restore(
        &mut self,
        branch: BranchId,
        closed: Vec<(u64, Option<DayChunk>)>,
        open: DayChunk,
    ) -> Result<(), String> {
        if self.branches.contains_key(&branch) {
            return Err(format!("day log of {branch}: read twice"));
        }
        let mut slots = Vec::with_capacity(closed.len() + 1);
        for (first, chunk) in closed {
            let slot = match chunk {
                Some(chunk) if chunk.first_sequence != first => {
                    return Err(format!(
                        "day log of {branch}: the record of the chunk from entry {first} holds the \
                         chunk from entry {}",
                        chunk.first_sequence
                    ));
                }
                Some(chunk) => Slot::Held(Arc::new(chunk)),
                None => Slot::Stored(first),
            };
            slots.push(slot);
        }
        slots.push(Slot::Held(Arc::new(open)));
        if let Some(pair) = slots
            .windows(2)
            .find(|pair| pair[0].first_sequence() >= pair[1].first_sequence())
        {
            return Err(format!(
                "day log of {branch}: the chunk from entry {} comes after the one from entry {}",
                pair[1].first_sequence(),
                pair[0].first_sequence()
            ));
        }
        if slots.iter().any(|slot| slot.first_sequence() == 0) {
            return Err(format!("day log of {branch}: a chunk from entry 0"));
        }
        self.branches.insert(branch, slots);
        Ok(())
    }

    /// From now on reads the closed chunks it lets go of from `store`, and
    /// lets go of every closed chunk it holds: for a log whose closed
    /// chunks `store` holds, all of them (startup read or saved them).
    pub fn keep_in(&mut self, store: Arc<dyn StoredRecords>) {
        if self.off {
            return;
        }
        self.store = Some(store);
        for slots in self.branches.values_mut() {
            let closed = slots.len().saturating_sub(1);
            for slot in &mut slots[..closed] {
                *slot = Slot::Stored(slot.first_sequence());
            }
        }
    }

    /// Lets go of `branch`'s closed chunk from entry `first` once the store
    /// holds its record (a checkpoint saved it); kept while the log has no
    /// store to read it back from ([`DayLog::keep_in`]).
    pub fn let_go(&mut self, branch: &BranchId, first: u64) {
        if self.store.is_none() {
            return;
        }
        let Some(slots) = self.branches.get_mut(branch) else {
            return;
        };
        let closed = slots.len().saturating_sub(1);
        if let Ok(at) = slots[..closed].binary_search_by_key(&first, Slot::first_sequence) {
            slots[at] = Slot::Stored(first);
        }
    }
}

/// The days a chunk's starting days and changes give right after entry
/// `sequence`.
fn days_in(chunk: &DayChunk, sequence: u64) -> Result<Days, String> {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    fn date(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 1, day).expect("a January date")
    }

    /// A change of one day of `live`.
    fn of(live: &Days, date: NaiveDate, change: DayTotals) -> DayChanges {
        DayChanges::of_days(live, &[(date, change)]).expect("small amounts")
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
            let changes =
                DayChanges::of_days(&live, &[(date(day), changed.clone())]).expect("small amounts");
            log.note(sequence, &branch, Some(&live), &changes);
            let total = live.entry(date(day)).or_default();
            total.add(&changed).expect("small amounts");
            if total.is_empty() {
                live.remove(&date(day));
            }
            seen.push((sequence, live.clone()));
        }
        assert!(log.closed_keys().count() >= 2, "several chunks");
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

    /// A log of seven entries over several chunks.
    fn seven_entries(branch: &BranchId) -> (DayLog, Days) {
        let mut log = DayLog::default();
        let mut live = Days::new();
        for sequence in 1..=7 {
            let changed = change(i64::try_from(sequence).expect("small"));
            let changes = DayChanges::of_days(&live, &[(date(1), changed.clone())]).expect("small");
            log.note(sequence, branch, Some(&live), &changes);
            live.entry(date(1))
                .or_default()
                .add(&changed)
                .expect("small");
        }
        (log, live)
    }

    /// The closed chunks' records as a store keeps them.
    fn closed_records(log: &DayLog) -> HashMap<Vec<u8>, Vec<u8>> {
        log.closed_keys()
            .map(|(branch, first)| {
                let chunk = log
                    .closed_chunk(branch, first)
                    .expect("held")
                    .expect("listed");
                (
                    closed_chunk_key(branch, first).into_bytes(),
                    postcard::to_stdvec(&*chunk).expect("encodes"),
                )
            })
            .collect()
    }

    #[test]
    fn chunks_restored_in_order_answer_as_the_originals() {
        let branch = BranchId::parse("branch", "TB").expect("an id");
        let (log, live) = seven_entries(&branch);
        let closed: Vec<(u64, Option<DayChunk>)> = log
            .closed_keys()
            .map(|(b, first)| {
                let chunk = log.closed_chunk(b, first).expect("held").expect("listed");
                (first, Some((*chunk).clone()))
            })
            .collect();
        assert!(closed.len() >= 2, "several closed chunks");
        let open = log.open_chunk(&branch).expect("an open chunk").clone();
        let mut restored = DayLog::default();
        restored
            .restore(branch.clone(), closed.clone(), open.clone())
            .expect("in order");
        assert_eq!(restored, log);
        assert!(
            restored
                .restore(branch.clone(), closed.clone(), open.clone())
                .is_err(),
            "read twice"
        );
        let mut swapped = closed.clone();
        swapped.swap(0, 1);
        assert!(
            DayLog::default()
                .restore(branch.clone(), swapped, open.clone())
                .is_err(),
            "out of order"
        );
        let mut misnamed = closed.clone();
        misnamed[0].0 += 1;
        assert!(
            DayLog::default()
                .restore(branch.clone(), misnamed, open.clone())
                .is_err(),
            "a record holding another chunk than its key names"
        );
        let mut stopped = log.clone();
        stopped.stop();
        assert_eq!(
            stopped.note(8, &branch, Some(&live), &of(&live, date(1), change(1))),
            None
        );
    }

    /// Records kept in a map, as a store keeps the closed chunks.
    #[derive(Debug, Default)]
    struct Kept {
        records: Mutex<HashMap<Vec<u8>, Vec<u8>>>,
        reads: Mutex<usize>,
    }

    impl StoredRecords for Kept {
        fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
            *self.reads.lock().expect("not poisoned") += 1;
            Ok(self.records.lock().expect("not poisoned").get(key).cloned())
        }

        /// A day log lists nothing.
        fn records_after(
            &self,
            _: &[u8],
            _: Option<&[u8]>,
            _: usize,
            _: &dyn Fn(&[u8]) -> bool,
        ) -> Result<crate::stored::Records, ReadError> {
            Err(ReadError::Damaged("a day log lists no records".into()))
        }
    }

    #[test]
    fn closed_chunks_let_go_of_are_read_back_from_the_store_when_asked() {
        let branch = BranchId::parse("branch", "TB").expect("an id");
        let (log, live) = seven_entries(&branch);
        let kept = Arc::new(Kept {
            records: Mutex::new(closed_records(&log)),
            ..Kept::default()
        });
        let answers: Vec<Days> = (0..=8)
            .map(|s| log.days_at(&branch, s).expect("held"))
            .collect();
        let mut cold = log.clone();
        cold.keep_in(kept.clone());
        assert!(cold.bytes() < log.bytes(), "only the open chunk held");
        for (first, _) in log.closed_keys().map(|(b, f)| (f, b)) {
            assert!(cold.is_let_go(&branch, first));
        }
        assert!(
            log.closed_keys()
                .all(|(_, first)| !log.is_let_go(&branch, first))
        );
        for (sequence, expected) in (0..=8).zip(&answers) {
            assert_eq!(
                &cold.days_at(&branch, sequence).expect("read back"),
                expected
            );
        }
        // Asked again, the recent chunks come from memory.
        let reads = *kept.reads.lock().expect("not poisoned");
        for sequence in 0..=8 {
            cold.days_at(&branch, sequence).expect("read back");
        }
        assert_eq!(*kept.reads.lock().expect("not poisoned"), reads);
        // The open chunk goes on taking entries.
        let mut going_on = cold.clone();
        let mut more = log.clone();
        for sequence in 8..=12 {
            let noted = going_on.note(
                sequence,
                &branch,
                Some(&live),
                &of(&live, date(2), change(1)),
            );
            let expected = more.note(
                sequence,
                &branch,
                Some(&live),
                &of(&live, date(2), change(1)),
            );
            assert_eq!(noted, expected);
            if let Some(Noted {
                closed: Some(first),
            }) = noted
            {
                assert!(!going_on.is_let_go(&branch, first), "held until saved");
                going_on.let_go(&branch, first);
                assert!(going_on.is_let_go(&branch, first));
                let chunk = more
                    .closed_chunk(&branch, first)
                    .expect("held")
                    .expect("closed");
                kept.records.lock().expect("not poisoned").insert(
                    closed_chunk_key(&branch, first).into_bytes(),
                    postcard::to_stdvec(&*chunk).expect("encodes"),
                );
            }
        }
        for sequence in 0..=13 {
            assert_eq!(
                going_on.days_at(&branch, sequence),
                more.days_at(&branch, sequence),
                "after {sequence}"
            );
        }
        // Without a store, nothing is let go of.
        let mut without = log.clone();
        let first = log.closed_keys().next().expect("a closed chunk").1;
        without.let_go(&branch, first);
        assert!(!without.is_let_go(&branch, first));
    }

    #[test]
    fn a_closed_chunk_missing_or_damaged_in_the_store_is_an_error_not_an_answer() {
        let branch = BranchId::parse("branch", "TB").expect("an id");
        let (log, _) = seven_entries(&branch);
        let records = closed_records(&log);
        let first = log.closed_keys().next().expect("a closed chunk").1;
        let key = closed_chunk_key(&branch, first).into_bytes();
        let other = log.closed_keys().nth(1).expect("two closed chunks").1;
        let other_key = closed_chunk_key(&branch, other).into_bytes();
        let mut damaged = records.clone();
        damaged.insert(key.clone(), vec![0xff; 3]);
        let mut moved = records.clone();
        moved.insert(key.clone(), records[&other_key].clone());
        let mut missing = records.clone();
        missing.remove(&key);
        for (why, records) in [("damaged", damaged), ("moved", moved), ("missing", missing)] {
            let mut cold = log.clone();
            cold.keep_in(Arc::new(Kept {
                records: Mutex::new(records),
                ..Kept::default()
            }));
            let answer = cold.days_at(&branch, first);
            assert!(
                matches!(answer, Err(ReadError::Damaged(_))),
                "{why}: {answer:?}"
            );
            assert!(cold.closed_chunk(&branch, first).is_err(), "{why}");
        }
        // A store that cannot read now: not damage, and not an answer.
        let mut cold = log.clone();
        cold.keep_in(Arc::new(Unreadable));
        assert_eq!(
            cold.days_at(&branch, first),
            Err(ReadError::Unreadable("disk on fire".into()))
        );
    }

    /// A store whose reads fail.
    #[derive(Debug)]
    pub(crate) struct Unreadable;

    impl StoredRecords for Unreadable {
        fn read(&self, _key: &[u8]) -> Result<Option<Vec<u8>>, ReadError> {
            Err(ReadError::Unreadable("disk on fire".into()))
        }

        fn records_after(
            &self,
            _: &[u8],
            _: Option<&[u8]>,
            _: usize,
            _: &dyn Fn(&[u8]) -> bool,
        ) -> Result<crate::stored::Records, ReadError> {
            Err(ReadError::Unreadable("disk on fire".into()))
        }
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
        // A day that changes nothing is not among an entry's changes.
        let owned = EntryChanges {
            sequence: 300,
            days: days[1..]
                .iter()
                .map(|(date, day)| CompactDay::of(*date, day))
                .collect(),
        };
        // Changes of days that held something, and of days that held nothing.
        for held in [
            Days::new(),
            [(date(2), change(7)), (date(30), change(3))].into(),
        ] {
            let mut borrowed = vec![7];
            let changes = DayChanges::of_days(&held, &days).expect("fits");
            put_entry_changes(&mut borrowed, 300, &changes);
            let mut expected = vec![7];
            expected.extend(postcard::to_stdvec(&owned).expect("encodes"));
            assert_eq!(borrowed, expected);
        }
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
        let changes = DayChanges::of_days(&Days::new(), &days).expect("fits");
        put_entry_changes(&mut bytes, 300, &changes);
        let expected: [u8; 47] = [
            0xac, 0x02, 0x02, 0x8e, 0x99, 0x5a, 0x04, 0x00, 0x02, 0x00, 0x01, 0xc8, 0x01, 0x00,
            0x0a, 0x01, 0x00, 0x0e, 0xf1, 0xc0, 0x01, 0x02, 0x00, 0xc6, 0x99, 0x5a, 0x02, 0x03,
            0x01, 0x00, 0x12, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02, 0x00,
            0x01, 0x00, 0x01, 0x1d, 0x01,
        ];
        assert_eq!(bytes, expected);
    }
}
