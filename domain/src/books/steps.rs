//! A history's running totals by entry, kept compact: a step per entry that
//! posted to the account is the bulk of a long-running ledger's memory (a
//! repayment adds one to three accounts and three lines), so steps are not
//! kept as `(sequence, date, totals)` structs of 48 bytes each but encoded:
//! what each entry posted, as the distance from the step before (sequence
//! and days, as variable-length integers) and the amounts' digits and
//! scale, about 7 bytes for a repayment's posting. Every [`BLOCK`] steps
//! start a block that keeps its first sequence, date and the totals before
//! it, so a figure as of an entry decodes at most one block.

use std::borrow::Cow;
use std::ops::Range;

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use super::Balance;
use crate::stored::ReadError;

/// Steps per block: a lookup decodes at most this many.
pub const BLOCK: usize = 32;

/// Blocks per record of the state cache: a history is kept there as
/// records of [`RECORD_STEPS`] steps, encoded as memory keeps them, so a
/// checkpoint rewrites only the last record of each history it changed,
/// and startup appends the records' bytes without booking each step again.
const RECORD_BLOCKS: usize = 4;

/// Steps per record of the state cache.
pub const RECORD_STEPS: usize = RECORD_BLOCKS * BLOCK;

/// Where a block of a record starts: its first step's sequence and date
/// (the block's totals before it are the record's to work out, from the
/// records before it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStart {
    pub sequence: u64,
    #[serde(with = "crate::codec::date")]
    pub date: NaiveDate,
}

/// An account's running totals after one entry that posted to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub sequence: u64,
    pub date: NaiveDate,
    pub total: Balance,
}

/// Where a block starts: its first step's sequence and date (the first
/// record's distances are from these) and the totals before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Block {
    sequence: u64,
    date: NaiveDate,
    before: Balance,
    /// Offset of its first step in its record's bytes.
    at: u32,
}

/// The last step, decoded, and where it starts in the last record's bytes
/// (an entry's later posting to the same account is added to it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tail {
    step: Step,
    at: u32,
}

/// One record's steps' bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Bytes {
    /// In memory.
    Held(Vec<u8>),
    /// In the store only, let go of once saved: read back when asked, and
    /// checked against this hash of them (`len` bytes); with the first and
    /// last date its steps are dated on, so that a walk for other dates
    /// passes it by. A closed record (a later one follows, so it never
    /// changes again), or the last one of a history posted to seldom
    /// ([`Steps::let_go_last`]: a member's account's).
    Stored(Check, Dates, u32),
    /// The last record let go of, and steps booked to it since (a
    /// member's next deposit or repayment).
    Grown(Box<Grown>),
}

/// A last record let go of, then booked to (and closed since, if it
/// filled): the store holds its first `len` bytes as they were let go of
/// (and, once a checkpoint saved it, the steps after them), memory those
/// steps' bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Grown {
    check: Check,
    len: u32,
    added: Vec<u8>,
    /// The record whole as the last checkpoint took it to write
    /// ([`Steps::grown_record`], [`Steps::note_written`]), until a step
    /// is booked to it again. Once that checkpoint is saved, the record is
    /// let go of as [`Bytes::Stored`] with it.
    written: Option<StoredAs>,
}

/// What a record let go of is checked and found by: the hash of its
/// bytes, the first and last date its steps are dated on, and its length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredAs(Check, Dates, u32);

impl StoredAs {
    /// A stand-in, until the record is read back ([`MovedRecord::with_steps`]).
    pub const UNKNOWN: StoredAs = StoredAs([0; 16], (NaiveDate::MIN, NaiveDate::MIN), 0);
}

/// A record grown since it was let go of, as a checkpoint takes it to
/// write it whole: what memory holds of it, completed by reading the
/// bytes let go of back ([`GrownRecord::complete`]), which the server
/// does outside the state's lock.
#[derive(Debug)]
pub struct GrownRecord {
    index: usize,
    check: Check,
    len: u32,
    added: Vec<u8>,
    /// Each of its blocks' first date and where its steps start in the
    /// record's bytes.
    blocks: Vec<(NaiveDate, u32)>,
}

impl GrownRecord {
    /// The record's bytes whole: those let go of, read back from `from`
    /// and checked, then those booked since; and what lets it be let go
    /// of again once they are saved ([`Steps::note_written`]).
    pub fn complete(
        self,
        from: Option<&dyn StoredSteps>,
    ) -> Result<(Vec<u8>, StoredAs), ReadError> {
        let mut bytes = stored_bytes(self.index, from, &self.check, self.len, true)?;
        bytes.extend_from_slice(&self.added);
        let blocks = &self.blocks;
        let written = stored_as_of(&bytes, |len| {
            blocks.iter().enumerate().map(move |(i, (date, at))| {
                let end = blocks.get(i + 1).map_or(len, |(_, next)| *next as usize);
                (*date, *at as usize..end)
            })
        });
        Ok((bytes, written))
    }
}

/// A record's [`StoredAs`]: `blocks` gives, for its bytes' length, each of
/// its blocks' first date and where the block's steps lie in them.
fn stored_as_of<I>(bytes: &[u8], blocks: impl FnOnce(usize) -> I) -> StoredAs
where
    I: Iterator<Item = (NaiveDate, Range<usize>)>,
{
    let len = u32::try_from(bytes.len()).expect("a record's steps fit in 4 GiB");
    let (mut first, mut last) = (NaiveDate::MAX, NaiveDate::MIN);
    for (start, range) in blocks(bytes.len()) {
        let steps = &bytes[range];
        let (mut at, mut days) = (0, 0i64);
        while at < steps.len() {
            let (record, next) = decode_raw(steps, at);
            days += record.day_gap;
            let date = start + chrono::Duration::days(days);
            (first, last) = (first.min(date), last.max(date));
            at = next;
        }
    }
    StoredAs(check_of(bytes), (first, last), len)
}

/// [`Tail::at`] after a record appended moved out ([`Steps::ends_moved`]).
const MOVED_TAIL: u32 = u32::MAX;

/// What startup takes in of a closed record moved out of the records it
/// reads ([`Steps::moved_read`]): its blocks' totals before them and where
/// they start in its bytes, its last step's entry, the totals after it,
/// and the hash, dates and
/// length its bytes are checked and found by when read back. Its steps
/// are in date order, as every step before them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedRecord {
    blocks: Vec<(Balance, u32)>,
    /// Its last step's entry.
    last_sequence: u64,
    total: Balance,
    check: Check,
    #[serde(with = "crate::codec::date")]
    first: NaiveDate,
    #[serde(with = "crate::codec::date")]
    last: NaiveDate,
    len: u32,
}

impl MovedRecord {
    /// The same record, its steps' bytes being `bytes` (stored as
    /// `stored`): what a checkpoint that read it back whole found
    /// ([`GrownRecord::complete`]). Made by [`Steps::moved_parts`], its
    /// last step's entry was its last block's first. An error when its last
    /// block's steps do not decode.
    pub fn with_steps(self, bytes: &[u8], stored: StoredAs) -> Result<MovedRecord, ReadError> {
        let StoredAs(check, (first, last), len) = stored;
        let mut last_sequence = self.last_sequence;
        if let Some((_, at)) = self.blocks.last() {
            let mut at = *at as usize;
            while at < bytes.len() {
                last_sequence = decode_checked(bytes, at)
                    .and_then(|(raw, next)| {
                        at = next;
                        last_sequence.checked_add(raw.sequence_gap)
                    })
                    .ok_or_else(|| {
                        ReadError::Damaged(format!(
                            "a closed record's step at byte {at} does not decode"
                        ))
                    })?;
            }
        }
        Ok(MovedRecord {
            last_sequence,
            check,
            first,
            last,
            len,
            ..self
        })
    }
}

/// A record's blocks' starts and its steps' bytes, held or read back.
pub type RecordRead<'a> = (Vec<BlockStart>, Cow<'a, [u8]>);

/// The first and last date a record's steps are dated on.
type Dates = (NaiveDate, NaiveDate);

/// The first 16 bytes of the SHA-256 of a record's steps' bytes.
type Check = [u8; 16];

fn check_of(bytes: &[u8]) -> Check {
    let digest = sha2::Sha256::digest(bytes);
    let mut check = [0; 16];
    check.copy_from_slice(&digest[..16]);
    check
}

/// Record `index`'s first `len` bytes as the store holds them, checked
/// against the hash of those let go of: all it holds (`grown` false), or
/// those followed by the steps booked to it since it was let go of, which
/// a checkpoint may have saved after them (`grown`).
fn stored_bytes(
    index: usize,
    from: Option<&dyn StoredSteps>,
    check: &Check,
    len: u32,
    grown: bool,
) -> Result<Vec<u8>, ReadError> {
    let Some(from) = from else {
        return Err(ReadError::Damaged(format!(
            "record {index} of a history was let go of, and no store was given to read it from"
        )));
    };
    let mut bytes = from.steps_bytes(index)?;
    // A record let go of as the last holds, once saved again, the steps
    // booked to it since after those.
    let len = len as usize;
    let fits = if grown {
        bytes.len() >= len
    } else {
        bytes.len() == len
    };
    if !fits || check_of(&bytes[..len]) != *check {
        return Err(ReadError::Damaged(format!(
            "record {:?} does not hold the steps written: edited or damaged on disk",
            from.name(index)
        )));
    }
    bytes.truncate(len);
    Ok(bytes)
}

/// What a read of records that are all held gives: a line's, whose
/// records are never let go of (nor an account's read through the
/// infallible reads, which only tests make); never an error there.
pub(super) fn held<T>(read: Result<T, ReadError>) -> T {
    // Lines never let a record go, nor does a history being read back
    // before it is settled: a figure made up here would be worse than a
    // read refused (read handlers turn a panic into an internal error).
    read.unwrap_or_else(|error| panic!("a read of records held in memory failed: {error}"))
}

/// Where the last record's next steps are written: its bytes when held,
/// else the bytes of the steps booked to it since it was let go of
/// (a record let go of grows there from now on); with the offset in the
/// record of the first of those bytes.
fn last_open(records: &mut [Bytes]) -> (&mut Vec<u8>, usize) {
    let last = records
        .last_mut()
        .expect("a history with a step has a record");
    if let Bytes::Stored(check, _, len) = *last {
        *last = Bytes::Grown(Box::new(Grown {
            check,
            len,
            added: Vec::new(),
            written: None,
        }));
    }
    match last {
        Bytes::Held(bytes) => (bytes, 0),
        Bytes::Grown(grown) => {
            // No longer the record the last checkpoint took.
            grown.written = None;
            (&mut grown.added, grown.len as usize)
        }
        Bytes::Stored(..) => panic!("a record let go of is grown before it is written to"),
    }
}

/// Where the records a history let go of are read back from.
pub trait StoredSteps {
    /// The steps' bytes of record `index` as the store holds them.
    fn steps_bytes(&self, index: usize) -> Result<Vec<u8>, ReadError>;

    /// The record's name in messages (its key).
    fn name(&self, index: usize) -> String;
}

/// Steps in sequence order, encoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Steps {
    blocks: Vec<Block>,
    /// The steps' bytes by record of [`RECORD_STEPS`] steps (the last
    /// possibly fewer), each record its own allocation: a step appended
    /// copies at most its record's bytes as they grow, never the whole
    /// history's. In one list, a history read back at startup held exactly
    /// its bytes, and the first step booked after it doubled them: the
    /// largest histories (a branch's cash, every entry's) by tens of
    /// megabytes each at 10^7 entries.
    records: Vec<Bytes>,
    tail: Option<Tail>,
    len: usize,
}

impl Steps {
    /// Gives back unused room.
    pub fn shrink_to_fit(&mut self) {
        match self.records.last_mut() {
            Some(Bytes::Held(last)) => last.shrink_to_fit(),
            Some(Bytes::Grown(grown)) => grown.added.shrink_to_fit(),
            _ => {}
        }
        self.records.shrink_to_fit();
        self.blocks.shrink_to_fit();
    }

    /// Bytes the encoded steps held in memory take.
    pub fn held_bytes(&self) -> usize {
        self.records
            .iter()
            .map(|bytes| match bytes {
                Bytes::Held(bytes) => bytes.len(),
                Bytes::Stored(..) => 0,
                Bytes::Grown(grown) => grown.added.len(),
            })
            .sum()
    }

    /// Bytes the encoded steps take.
    #[cfg(test)]
    fn encoded_len(&self) -> usize {
        self.held_bytes()
    }

    /// Where block `index`'s steps lie in its record's bytes (`len` of
    /// them).
    fn block_range(&self, index: usize, len: usize) -> Range<usize> {
        let start = self.blocks[index].at as usize;
        let end = match index + 1 {
            next if next.is_multiple_of(RECORD_BLOCKS) => len,
            next => self.blocks.get(next).map_or(len, |b| b.at as usize),
        };
        start..end
    }

    /// Record `index`'s bytes: held, or read back from `from` and checked
    /// against the hash kept for them.
    fn record_bytes<'a>(
        &'a self,
        index: usize,
        from: Option<&dyn StoredSteps>,
    ) -> Result<Cow<'a, [u8]>, ReadError> {
        match &self.records[index] {
            Bytes::Held(bytes) => Ok(Cow::Borrowed(bytes)),
            Bytes::Stored(check, _, len) => {
                let bytes = stored_bytes(index, from, check, *len, false)?;
                Ok(Cow::Owned(bytes))
            }
            Bytes::Grown(grown) => {
                let mut bytes = stored_bytes(index, from, &grown.check, grown.len, true)?;
                bytes.extend_from_slice(&grown.added);
                Ok(Cow::Owned(bytes))
            }
        }
    }

    /// Lets go of record `index` if it is closed (a later one follows) and
    /// held: memory keeps the hash of its bytes, and reads it back from
    /// the store (which must hold it) when asked. True if it let go.
    pub fn let_go(&mut self, index: usize) -> bool {
        if index + 1 >= self.records.len() {
            return false;
        }
        self.let_go_held(index)
    }

    /// Lets go of the last record too, if held: for a history posted to
    /// seldom, whose records the store holds as they are. A later step is
    /// booked all the same, its bytes held after those let go of
    /// ([`Bytes::Grown`]), which a checkpoint reads back to write the
    /// record whole ([`Steps::grown_record`]), and which is let go of
    /// again once that checkpoint is saved. True if it let go.
    pub fn let_go_last(&mut self) -> bool {
        match self.records.len().checked_sub(1) {
            Some(last) => self.let_go_held(last),
            None => false,
        }
    }

    /// Lets go of record `index` if held, or grown and then taken whole by
    /// a checkpoint with nothing booked to it since (the caller knows that
    /// checkpoint saved it).
    fn let_go_held(&mut self, index: usize) -> bool {
        match &self.records[index] {
            Bytes::Held(bytes) => {
                let StoredAs(check, dates, len) = self.stored_as(index, bytes);
                self.records[index] = Bytes::Stored(check, dates, len);
                true
            }
            Bytes::Grown(grown) => match grown.written {
                Some(StoredAs(check, dates, len)) => {
                    self.records[index] = Bytes::Stored(check, dates, len);
                    true
                }
                None => false,
            },
            Bytes::Stored(..) => false,
        }
    }

    /// Record `index`'s [`StoredAs`], its bytes being `bytes`.
    fn stored_as(&self, index: usize, bytes: &[u8]) -> StoredAs {
        stored_as_of(bytes, |len| {
            self.record_blocks(index)
                .map(move |block| (self.blocks[block].date, self.block_range(block, len)))
        })
    }

    /// The indexes of record `index`'s blocks.
    fn record_blocks(&self, index: usize) -> Range<usize> {
        index * RECORD_BLOCKS..((index + 1) * RECORD_BLOCKS).min(self.blocks.len())
    }

    /// True when record `index` was let go of ([`Steps::let_go`]) and
    /// the store holds it as it is, where [`StoredSteps`] reads it (not
    /// when steps were booked to it since, [`Bytes::Grown`]).
    pub fn is_let_go(&self, index: usize) -> bool {
        matches!(self.records.get(index), Some(Bytes::Stored(..)))
    }

    /// How many steps.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The last step.
    pub fn last(&self) -> Option<Step> {
        self.tail.map(|tail| tail.step)
    }

    /// What the last step's entry posted, read from where it was
    /// written: the last record's bytes, or those booked to it since it
    /// was let go of. An entry's steps are never let go of before its
    /// last posting (records are let go of between entries), so this
    /// answers for the entry being booked.
    pub fn last_posted(&self) -> Option<Balance> {
        let tail = self.tail?;
        let (bytes, at) = match self.records.last()? {
            Bytes::Held(bytes) => (bytes.as_slice(), tail.at as usize),
            Bytes::Grown(grown) => (
                grown.added.as_slice(),
                (tail.at as usize).checked_sub(grown.len as usize)?,
            ),
            Bytes::Stored(..) => return None,
        };
        Some(decode(bytes, at).0.posted)
    }

    /// The first step's date.
    pub fn first_date(&self) -> Option<NaiveDate> {
        self.blocks.first().map(|b| b.date)
    }

    /// Books what entry `sequence` (not before the last step's) posted on
    /// `date`; a later posting of the last step's entry adds to that step,
    /// which keeps its date.
    pub fn push(&mut self, sequence: u64, date: NaiveDate, posted: Balance) {
        if let Some(tail) = self.tail.as_mut().filter(|t| t.step.sequence == sequence) {
            let (bytes, from) = last_open(&mut self.records);
            // Its step was booked after any let go of (between entries).
            let at = (tail.at as usize)
                .checked_sub(from)
                .expect("an entry's step is let go of only after the entry");
            let record = decode(bytes, at).0;
            bytes.truncate(at);
            encode(
                bytes,
                record.sequence_gap,
                record.day_gap,
                record.posted.plus(posted),
            );
            tail.step.total = tail.step.total.plus(posted);
            return;
        }
        if self.len.is_multiple_of(RECORD_STEPS) {
            // A record full: its room given back, and the next one given
            // about as much at once as it took.
            let room = match self.records.last_mut() {
                Some(Bytes::Held(full)) => {
                    full.shrink_to_fit();
                    full.len()
                }
                _ => 0,
            };
            self.records.push(Bytes::Held(Vec::with_capacity(room)));
        }
        let (bytes, from) = last_open(&mut self.records);
        let at = u32::try_from(from + bytes.len()).expect("a record's steps fit in 4 GiB");
        let before = self.tail.map_or(Balance::default(), |t| t.step.total);
        let (from_sequence, from_date) = if self.len.is_multiple_of(BLOCK) {
            self.blocks.push(Block {
                sequence,
                date,
                before,
                at,
            });
            (sequence, date)
        } else {
            let last = self.tail.expect("a block's later steps follow a step").step;
            (last.sequence, last.date)
        };
        encode(
            bytes,
            sequence - from_sequence,
            (date - from_date).num_days(),
            posted,
        );
        self.tail = Some(Tail {
            step: Step {
                sequence,
                date,
                total: before.plus(posted),
            },
            at,
        });
        self.len += 1;
    }

    /// How many records of [`RECORD_STEPS`] steps hold these steps.
    pub fn record_count(&self) -> usize {
        self.blocks.len().div_ceil(RECORD_BLOCKS)
    }

    /// The record holding the last step (0 while there is none).
    pub fn last_record(&self) -> usize {
        self.len.saturating_sub(1) / RECORD_STEPS
    }

    /// Record `index`, if held: its blocks' starts and its steps' bytes.
    pub fn record(&self, index: usize) -> Option<(Vec<BlockStart>, &[u8])> {
        let Bytes::Held(bytes) = self.records.get(index)? else {
            return None;
        };
        Some((self.starts(index)?, bytes))
    }

    /// Record `index` held or not: its blocks' starts and its steps'
    /// bytes, read back from `from` if let go of.
    pub fn record_read<'a>(
        &'a self,
        index: usize,
        from: Option<&dyn StoredSteps>,
    ) -> Result<Option<RecordRead<'a>>, ReadError> {
        let Some(starts) = self.starts(index) else {
            return Ok(None);
        };
        Ok(Some((starts, self.record_bytes(index, from)?)))
    }

    /// Record `index` if it grew since it was let go of: what memory
    /// holds of it, for a checkpoint to complete ([`GrownRecord::complete`])
    /// and note ([`Steps::note_written`]).
    pub fn grown_record(&self, index: usize) -> Option<GrownRecord> {
        let Some(Bytes::Grown(grown)) = self.records.get(index) else {
            return None;
        };
        let blocks = self
            .record_blocks(index)
            .map(|block| (self.blocks[block].date, self.blocks[block].at))
            .collect();
        Some(GrownRecord {
            index,
            check: grown.check,
            len: grown.len,
            added: grown.added.clone(),
            blocks,
        })
    }

    /// Notes what a checkpoint took of record `index`, grown since it was
    /// let go of ([`Steps::grown_record`]), for it to be let go of once
    /// the checkpoint is saved: the caller knows nothing was booked to it
    /// since the checkpoint took it (a step booked clears the note, and a
    /// note of another length than the record's is not taken).
    pub fn note_written(&mut self, index: usize, written: StoredAs) {
        if let Some(Bytes::Grown(grown)) = self.records.get_mut(index)
            && written.2 as usize == grown.len as usize + grown.added.len()
        {
            grown.written = Some(written);
        }
    }

    /// Where record `index`'s blocks start.
    pub(super) fn starts(&self, index: usize) -> Option<Vec<BlockStart>> {
        if index >= self.records.len() {
            return None;
        }
        let first = index.checked_mul(RECORD_BLOCKS)?;
        let blocks = self.blocks.get(first..)?;
        let blocks = &blocks[..blocks.len().min(RECORD_BLOCKS)];
        Some(
            blocks
                .iter()
                .map(|b| BlockStart {
                    sequence: b.sequence,
                    date: b.date,
                })
                .collect(),
        )
    }

    /// Room for `records` more records of `blocks` blocks in all (the
    /// records about to be appended): exactly that many for the first
    /// records read back (all of most histories'), and as a `Vec` grows,
    /// at least doubling, for a long history's later ones.
    pub fn reserve_records(&mut self, records: usize, blocks: usize) {
        if self.records.is_empty() {
            self.records.reserve_exact(records);
            self.blocks.reserve_exact(blocks);
        } else {
            self.records.reserve(records);
            self.blocks.reserve(blocks);
        }
    }

    /// [`Steps::append_record_with`], keeping the record, noting no
    /// disorder.
    #[cfg(test)]
    pub fn append_record(
        &mut self,
        starts: &[BlockStart],
        bytes: &[u8],
        dates: Option<&mut Vec<(NaiveDate, Balance)>>,
    ) -> Result<bool, String> {
        self.append_record_with(starts, bytes, dates, None, true)
    }

    /// Appends the next record ([`Steps::record`]) as read back from the
    /// state cache: its bytes are taken as they are, after a walk that
    /// checks every step (whatever the bytes, this refuses them rather
    /// than panic, now or at a later lookup: sequences rise, dates and
    /// totals stay in range, amounts are positive) and works out each
    /// block's totals before it. True when every step is dated on or after
    /// the one before it.
    ///
    /// With `dates` (the totals by date of the steps before this record,
    /// as [`Steps::totals_by_date_before`] gives them, for steps in date
    /// order), the same walk extends them to this record's steps, so that
    /// a history kept with its totals by date (a line) is not walked a
    /// second time for them. Once a step is dated before the one before
    /// it they are no longer extended, and false is returned. After false
    /// or an error they are left part-way (what this record's steps had
    /// pushed, the last perhaps without its total): the caller works them
    /// out from the steps instead, or refuses the whole reading.
    ///
    /// With `disorder` (an account's, whose totals by date are kept apart
    /// from the first step dated before the one before it), the same walk
    /// notes that step and what it and every later one posted. Without
    /// `keep`, the record is let go of as it is appended ([`Steps::let_go`]:
    /// the store holds it, and a later record will follow it).
    pub fn append_record_with(
        &mut self,
        starts: &[BlockStart],
        bytes: &[u8],
        mut dates: Option<&mut Vec<(NaiveDate, Balance)>>,
        mut disorder: Option<&mut Disorder>,
        keep: bool,
    ) -> Result<bool, String> {
        if !self.len.is_multiple_of(RECORD_STEPS) {
            return Err(format!(
                "a record follows one of {} steps, not {RECORD_STEPS}",
                self.len % RECORD_STEPS
            ));
        }
        if starts.is_empty() || starts.len() > RECORD_BLOCKS {
            return Err(format!("a record of {} blocks", starts.len()));
        }
        if bytes.len() > u32::MAX as usize {
            return Err("a record's steps above 4 GiB".into());
        }
        // Dates as days of the common era while walking, checked against
        // the range a date can hold (chrono's date arithmetic on every step
        // was about 5 % of a restart's samples at 10^7 entries).
        let days_of = |date: NaiveDate| i64::from(date.num_days_from_ce());
        let days = days_of(NaiveDate::MIN)..=days_of(NaiveDate::MAX);
        let mut previous = self.tail.map(|t| (t.step.sequence, days_of(t.step.date)));
        // The day of the last date in `dates`: its total is set when a
        // step of a later date comes, or at the record's end.
        let mut open_day = dates
            .as_deref()
            .and_then(|dates| dates.last())
            .map(|(date, _)| days_of(*date));
        let mut total = self.tail.map_or(Balance::default(), |t| t.step.total);
        let mut in_date_order = true;
        // The least and greatest day of this record's steps.
        let mut days_seen = (i64::MAX, i64::MIN);
        let mut blocks = Vec::with_capacity(starts.len());
        let mut tail = None;
        let mut at = 0;
        let mut added = 0;
        for (index, start) in starts.iter().enumerate() {
            if previous.is_some_and(|(sequence, _)| start.sequence <= sequence) {
                return Err(format!(
                    "a block starts at entry {}, not after the step before it",
                    start.sequence
                ));
            }
            let block_at = at;
            let start_day = days_of(start.date);
            let mut sums = BlockSums::new(total);
            let (mut sequence_gap, mut day_gap) = (0u64, 0i64);
            let mut steps = 0;
            while steps < BLOCK && at < bytes.len() {
                let step_at = at;
                let (raw, next) = decode_checked(bytes, at)
                    .ok_or_else(|| format!("a step at byte {step_at} does not decode"))?;
                if steps == 0 && (raw.sequence_gap, raw.day_gap) != (0, 0) {
                    return Err("a block's first step is not at its start".into());
                }
                if steps > 0 && raw.sequence_gap == 0 {
                    return Err("two steps of one entry".into());
                }
                sequence_gap = sequence_gap
                    .checked_add(raw.sequence_gap)
                    .ok_or("a step's entry out of range")?;
                day_gap = day_gap
                    .checked_add(raw.day_gap)
                    .ok_or("a step's date out of range")?;
                let sequence = start
                    .sequence
                    .checked_add(sequence_gap)
                    .ok_or("a step's entry out of range")?;
                let day = start_day
                    .checked_add(day_gap)
                    .filter(|day| days.contains(day))
                    .ok_or("a step's date out of range")?;
                days_seen = (days_seen.0.min(day), days_seen.1.max(day));
                let back = previous.is_some_and(|(_, previous_day)| day < previous_day);
                if back {
                    in_date_order = false;
                    dates = None;
                }
                if let Some(disorder) = disorder.as_deref_mut()
                    && (back || disorder.from.is_some())
                {
                    disorder.from.get_or_insert(sequence);
                    let date = i32::try_from(day)
                        .ok()
                        .and_then(NaiveDate::from_num_days_from_ce_opt)
                        .ok_or("a step's date out of range")?;
                    // Decoded again as a `Decimal` only from the first step
                    // back on (the walk checked it).
                    disorder.add(date, decode(bytes, step_at).0.posted);
                }
                if let Some(dates) = dates.as_deref_mut()
                    && open_day != Some(day)
                {
                    if let Some((_, ended)) = dates.last_mut() {
                        *ended = sums.total_checked().ok_or("a step's totals out of range")?;
                    }
                    let date = i32::try_from(day)
                        .ok()
                        .and_then(NaiveDate::from_num_days_from_ce_opt)
                        .ok_or("a step's date out of range")?;
                    dates.push((date, Balance::default()));
                    open_day = Some(day);
                }
                sums.add_checked(&raw)
                    .ok_or("a step's totals out of range")?;
                previous = Some((sequence, day));
                tail = Some(step_at);
                steps += 1;
                at = next;
            }
            if steps == 0 || (steps < BLOCK && index + 1 < starts.len()) {
                return Err(format!("a block of {steps} steps before the record's last"));
            }
            blocks.push(Block {
                sequence: start.sequence,
                date: start.date,
                before: total,
                at: block_at as u32,
            });
            total = sums
                .total_checked()
                .ok_or("a block's totals out of range")?;
            added += steps;
        }
        if at != bytes.len() {
            return Err("bytes after a record's last step".into());
        }
        let (Some((sequence, day)), Some(tail_at)) = (previous, tail) else {
            return Err("a record without steps".into());
        };
        let date = i32::try_from(day)
            .ok()
            .and_then(NaiveDate::from_num_days_from_ce_opt)
            .ok_or("a step's date out of range")?;
        if let Some((_, last)) = dates.and_then(|dates| dates.last_mut()) {
            *last = total;
        }
        self.blocks.extend(blocks);
        let kept = match keep {
            true => Bytes::Held(bytes.to_vec()),
            false => {
                let day = |day: i64| {
                    i32::try_from(day)
                        .ok()
                        .and_then(NaiveDate::from_num_days_from_ce_opt)
                };
                let dates = day(days_seen.0).zip(day(days_seen.1));
                Bytes::Stored(
                    check_of(bytes),
                    dates.ok_or("a step's date out of range")?,
                    bytes.len() as u32,
                )
            }
        };
        self.records.push(kept);
        self.tail = Some(Tail {
            step: Step {
                sequence,
                date,
                total,
            },
            at: tail_at as u32,
        });
        self.len += added;
        Ok(in_date_order)
    }

    /// Appends the next record, moved out of the records startup reads
    /// ([`MovedRecord`]): its steps are not walked (the store holds them,
    /// read back and checked when asked), so it is checked against what
    /// is known of the steps before it instead. Its blocks' starts must
    /// follow the step before it in sequence and in date, and its totals
    /// before it must be that step's. The caller knows no step before it
    /// went back in date.
    pub fn append_moved(
        &mut self,
        starts: &[BlockStart],
        moved: &MovedRecord,
    ) -> Result<(), String> {
        if !self.len.is_multiple_of(RECORD_STEPS) {
            return Err(format!(
                "a record follows one of {} steps, not {RECORD_STEPS}",
                self.len % RECORD_STEPS
            ));
        }
        if starts.len() != RECORD_BLOCKS || moved.blocks.len() != RECORD_BLOCKS {
            return Err(format!(
                "a record moved out with {} blocks and {} totals, not {RECORD_BLOCKS}",
                starts.len(),
                moved.blocks.len()
            ));
        }
        let mut previous = self.tail.map(|t| (t.step.sequence, t.step.date));
        let mut total = self.tail.map_or(Balance::default(), |t| t.step.total);
        let mut at = None;
        for (start, (before, block_at)) in starts.iter().zip(&moved.blocks) {
            if previous
                .is_some_and(|(sequence, date)| start.sequence <= sequence || start.date < date)
            {
                return Err(format!(
                    "a block starts at entry {} on {}, not after the step before it",
                    start.sequence, start.date
                ));
            }
            if at.is_none() && *before != total {
                return Err("a record's totals before it are not those of the step before".into());
            }
            if at.is_some_and(|at| *block_at <= at)
                || (at.is_none() && *block_at != 0)
                || *block_at >= moved.len
            {
                return Err(format!("a block starts at byte {block_at} of the record"));
            }
            previous = Some((start.sequence, start.date));
            total = *before;
            at = Some(*block_at);
        }
        let (first, last) = (starts[0].date, starts[RECORD_BLOCKS - 1].date);
        if moved.last_sequence < starts[RECORD_BLOCKS - 1].sequence {
            return Err(format!(
                "a record moved out ends at entry {}, before its last block starts",
                moved.last_sequence
            ));
        }
        if moved.first != first || moved.last < last {
            return Err(format!(
                "a record moved out dated {} to {}, its blocks from {first} to {last}",
                moved.first, moved.last
            ));
        }
        self.blocks.extend(
            starts
                .iter()
                .zip(&moved.blocks)
                .map(|(start, (before, at))| Block {
                    sequence: start.sequence,
                    date: start.date,
                    before: *before,
                    at: *at,
                }),
        );
        self.records.push(Bytes::Stored(
            moved.check,
            (moved.first, moved.last),
            moved.len,
        ));
        // Its last step, whose offset in its bytes is not known here: a
        // later record follows (the caller refuses a history ending with
        // one, [`Steps::ends_moved`]), checked against it.
        self.tail = Some(Tail {
            step: Step {
                sequence: moved.last_sequence,
                date: moved.last,
                total: moved.total,
            },
            at: MOVED_TAIL,
        });
        self.len += RECORD_STEPS;
        Ok(())
    }

    /// Record `index` let go of (grown since or not), as a checkpoint takes
    /// it to read it back whole outside the state's lock
    /// ([`GrownRecord::complete`]); `None` while held.
    pub fn let_go_record(&self, index: usize) -> Option<GrownRecord> {
        match self.records.get(index)? {
            Bytes::Stored(check, _, len) => Some(GrownRecord {
                index,
                check: *check,
                len: *len,
                added: Vec::new(),
                blocks: self
                    .record_blocks(index)
                    .map(|block| (self.blocks[block].date, self.blocks[block].at))
                    .collect(),
            }),
            Bytes::Grown(_) => self.grown_record(index),
            Bytes::Held(_) => None,
        }
    }

    /// What closed record `index` moving out keeps of it but for its steps
    /// ([`MovedRecord::with_steps`] completes it); `None` unless a later
    /// record follows it.
    pub fn moved_parts(&self, index: usize) -> Option<MovedRecord> {
        if index + 1 >= self.records.len() {
            return None;
        }
        let blocks = self.record_blocks(index);
        let last_sequence = self.blocks.get(blocks.end.checked_sub(1)?)?.sequence;
        let total = self.blocks.get((index + 1) * RECORD_BLOCKS)?.before;
        let StoredAs(check, (first, last), len) = StoredAs::UNKNOWN;
        Some(MovedRecord {
            blocks: blocks
                .map(|block| (self.blocks[block].before, self.blocks[block].at))
                .collect(),
            last_sequence,
            total,
            check,
            first,
            last,
            len,
        })
    }

    /// Closed record `index` as it moves out of the records startup reads
    /// ([`MovedRecord`]), its steps read back from `from` if let go of;
    /// `None` unless a later record follows it.
    pub fn moved_read(
        &self,
        index: usize,
        from: Option<&dyn StoredSteps>,
    ) -> Result<Option<MovedRecord>, ReadError> {
        let Some(parts) = self.moved_parts(index) else {
            return Ok(None);
        };
        let bytes = self.record_bytes(index, from)?;
        let stored = self.stored_as(index, &bytes);
        parts.with_steps(&bytes, stored).map(Some)
    }

    /// Holds again record `index`, appended moved out as `moved` says,
    /// given its blocks' starts and steps' bytes (whole, [`Steps::record`]):
    /// true if they are those it moved out with. They are walked and checked
    /// as startup checks a record it reads, from the totals before it:
    /// every block's totals before it and start in the bytes, its last
    /// step, the totals after it, its dates (in date order), its bytes' hash
    /// and length must be what `moved` kept.
    pub fn hold_moved(
        &mut self,
        index: usize,
        starts: &[BlockStart],
        bytes: &[u8],
        moved: &MovedRecord,
    ) -> bool {
        let blocks = self.record_blocks(index);
        let Some(first) = self.blocks.get(blocks.start) else {
            return false;
        };
        if !matches!(self.records.get(index), Some(Bytes::Stored(..)))
            || self.starts(index).as_deref() != Some(starts)
            || bytes.len() != moved.len as usize
            || check_of(bytes) != moved.check
        {
            return false;
        }
        // From a step just before its first, on its date, of the totals
        // before it.
        let mut walked = Steps {
            tail: first.sequence.checked_sub(1).map(|sequence| Tail {
                step: Step {
                    sequence,
                    date: first.date,
                    total: first.before,
                },
                at: 0,
            }),
            ..Steps::default()
        };
        if walked.append_record_with(starts, bytes, None, None, false) != Ok(true) {
            return false;
        }
        let Some(Bytes::Stored(_, dates, _)) = walked.records.first() else {
            return false;
        };
        let walked_blocks: Vec<(Balance, u32)> =
            walked.blocks.iter().map(|b| (b.before, b.at)).collect();
        let same = walked.len == RECORD_STEPS
            && walked_blocks == moved.blocks
            && walked
                .tail
                .map(|t| (t.step.sequence, t.step.date, t.step.total))
                == Some((moved.last_sequence, moved.last, moved.total))
            && *dates == (moved.first, moved.last);
        if same {
            self.records[index] = Bytes::Held(bytes.to_vec());
        }
        same
    }

    /// True when the last record was appended moved out
    /// ([`Steps::append_moved`]): its last step's offset in its bytes not
    /// known, as no history may end.
    pub fn ends_moved(&self) -> bool {
        self.tail.is_some_and(|tail| tail.at == MOVED_TAIL)
    }

    /// True when record `index`'s steps are held (not let go of).
    pub fn is_held(&self, index: usize) -> bool {
        matches!(self.records.get(index), Some(Bytes::Held(_)))
    }

    /// The first entry of record `index`, if there is one.
    pub fn record_first_sequence(&self, index: usize) -> Option<u64> {
        self.blocks
            .get(index.checked_mul(RECORD_BLOCKS)?)
            .map(|b| b.sequence)
    }

    /// The totals at the end of each date a step is dated on, in date
    /// order, whatever the steps' order.
    pub fn totals_by_date(&self, in_date_order: bool) -> Vec<(NaiveDate, Balance)> {
        if in_date_order {
            return held(self.totals_by_date_before(u64::MAX, None));
        }
        let mut walk = self.iter();
        let posted = walk
            .by_ref()
            .map(|(step, posted)| (step.date, posted))
            .collect();
        held(walk.finish());
        running_by_date(posted)
    }

    /// Every step in sequence order, with what its entry posted, of steps
    /// whose records are all held (it stops at one that is not, which
    /// [`Walk::finish`] says).
    pub fn iter(&self) -> Walk<'_> {
        self.walk(0, None)
    }

    /// The steps from block `block`'s first on, records let go of read
    /// back from `from`: [`Walk::finish`] says whether one could not be.
    pub fn walk<'a>(&'a self, block: usize, from: Option<&'a dyn StoredSteps>) -> Walk<'a> {
        Walk {
            steps: self,
            from,
            block,
            record: None,
            at: 0,
            previous: None,
            failed: None,
            span: None,
        }
    }

    /// [`Steps::walk`] of the steps that may be dated in `span`: a record
    /// let go of whose steps are all dated outside it is passed by, not
    /// read back (the walk gives none of its steps).
    pub fn walk_dated<'a>(
        &'a self,
        block: usize,
        from: Option<&'a dyn StoredSteps>,
        span: (NaiveDate, NaiveDate),
    ) -> Walk<'a> {
        Walk {
            span: Some(span),
            ..self.walk(block, from)
        }
    }

    /// The block a walk of the steps dated `date` or later, of those
    /// before entry `before` (in date order), starts from: every earlier
    /// one's steps are dated before `date`.
    pub fn block_for_date(&self, date: NaiveDate, before: u64) -> usize {
        self.blocks
            .partition_point(|b| b.sequence < before && b.date < date)
            .saturating_sub(1)
    }

    /// The block holding entry `sequence`'s step, or the first after it.
    pub fn block_for_sequence(&self, sequence: u64) -> usize {
        self.blocks
            .partition_point(|b| b.sequence <= sequence)
            .saturating_sub(1)
    }

    /// The totals after entries up to `sequence`.
    pub fn total_at(
        &self,
        sequence: u64,
        from: Option<&dyn StoredSteps>,
    ) -> Result<Balance, ReadError> {
        match self.tail {
            Some(tail) if tail.step.sequence <= sequence => return Ok(tail.step.total),
            None => return Ok(Balance::default()),
            _ => {}
        }
        let found = self.blocks.partition_point(|b| b.sequence <= sequence);
        match found.checked_sub(1) {
            Some(block) => {
                let gap = sequence - self.blocks[block].sequence;
                self.sum_in_block(block, from, |gaps| gaps.sequence <= gap)
            }
            None => Ok(Balance::default()),
        }
    }

    /// The totals at the end of each date a step before entry `before` is
    /// dated on, in date order, for steps whose dates do not decrease
    /// before it: what walking those steps and keeping each date's last
    /// total gives, worked out as [`Steps::sum_in_block`] works a total out
    /// (whole amounts added as integers, a `Decimal` total made only where
    /// the date changes).
    pub fn totals_by_date_before(
        &self,
        before: u64,
        from: Option<&dyn StoredSteps>,
    ) -> Result<Vec<(NaiveDate, Balance)>, ReadError> {
        let mut dates: Vec<(NaiveDate, Balance)> = Vec::new();
        let mut current: Option<NaiveDate> = None;
        // The totals so far: the block's totals before it, plus its
        // amounts since.
        let mut sums = BlockSums::new(Balance::default());
        let mut record: Option<(usize, Cow<'_, [u8]>)> = None;
        'blocks: for (index, block) in self.blocks.iter().enumerate() {
            if block.sequence >= before {
                break;
            }
            let in_record = index / RECORD_BLOCKS;
            if record.as_ref().is_none_or(|(held, _)| *held != in_record) {
                record = Some((in_record, self.record_bytes(in_record, from)?));
            }
            let Some((_, bytes)) = &record else {
                break;
            };
            let bytes = &bytes[self.block_range(index, bytes.len())];
            sums = BlockSums::new(block.before);
            let (mut days, mut gap) = (0i64, 0u64);
            let mut at = 0;
            while at < bytes.len() {
                let (record, next) = decode_raw(bytes, at);
                gap += record.sequence_gap;
                if gap >= before - block.sequence {
                    break 'blocks;
                }
                days += record.day_gap;
                let date = block.date + chrono::Duration::days(days);
                if let Some(last) = current.filter(|last| *last != date) {
                    dates.push((last, sums.total()));
                }
                current = Some(date);
                sums.add(&record);
                at = next;
            }
        }
        if let Some(last) = current {
            dates.push((last, sums.total()));
        }
        Ok(dates)
    }

    /// The totals after every step before entry `before` dated on or
    /// before `date`, for steps whose dates do not decrease before it.
    pub fn total_on_date_before(
        &self,
        date: NaiveDate,
        before: u64,
        from: Option<&dyn StoredSteps>,
    ) -> Result<Balance, ReadError> {
        let found = self
            .blocks
            .partition_point(|b| b.sequence < before && b.date <= date);
        let Some(block) = found.checked_sub(1) else {
            return Ok(Balance::default());
        };
        let start = &self.blocks[block];
        let days = (date - start.date).num_days();
        let gap = before - start.sequence;
        self.sum_in_block(block, from, |gaps| gaps.sequence < gap && gaps.days <= days)
    }

    /// The totals after the steps of `block` that `keep` keeps, up to the
    /// first it does not (every later one is after it too). Lookups by
    /// entry or date come here: it adds whole amounts (every VND amount)
    /// as integers and keeps sequences and dates as distances from the
    /// block's start, so no `Decimal` addition or date is computed per
    /// step, only once at the end.
    fn sum_in_block(
        &self,
        block: usize,
        from: Option<&dyn StoredSteps>,
        keep: impl Fn(&Gaps) -> bool,
    ) -> Result<Balance, ReadError> {
        let start = &self.blocks[block];
        let record = self.record_bytes(block / RECORD_BLOCKS, from)?;
        let bytes = &record[self.block_range(block, record.len())];
        let mut at = 0;
        let mut gaps = Gaps {
            sequence: 0,
            days: 0,
        };
        let mut sums = BlockSums::new(start.before);
        while at < bytes.len() {
            let (record, next) = decode_raw(bytes, at);
            let step = Gaps {
                sequence: gaps.sequence + record.sequence_gap,
                days: gaps.days + record.day_gap,
            };
            if !keep(&step) {
                break;
            }
            gaps = step;
            sums.add(&record);
            at = next;
        }
        Ok(sums.total())
    }
}

/// Where an account's steps first go back in date, noted as its records
/// are read back: the first step dated before the one before it, and what
/// it and every later step posted, by date (a run of steps of one date
/// noted once: a branch's cash has every entry's).
#[derive(Debug, Default)]
pub struct Disorder {
    pub from: Option<u64>,
    posted: Vec<(NaiveDate, Balance)>,
}

impl Disorder {
    fn add(&mut self, date: NaiveDate, posted: Balance) {
        match self.posted.last_mut() {
            Some((last, total)) if *last == date => *total = total.plus(posted),
            _ => self.posted.push((date, posted)),
        }
    }

    /// The first step back's entry, and the running totals by date of
    /// what it and every later step posted (`None` while the steps are in
    /// date order). What was noted is kept as one posting a date, for
    /// records read after.
    pub fn since(&mut self) -> Option<(u64, Vec<(NaiveDate, Balance)>)> {
        let from = self.from?;
        let mut by_date = running_by_date(std::mem::take(&mut self.posted));
        // Back to what each date posted, one a date.
        let mut before = Balance::default();
        self.posted = by_date
            .iter()
            .map(|(date, total)| {
                let posted = total.since(before);
                before = *total;
                (*date, posted)
            })
            .collect();
        by_date.shrink_to_fit();
        Some((from, by_date))
    }
}

/// The running totals at the end of each date of `posted` (what was
/// posted on each date, in any order), in date order.
fn running_by_date(mut posted: Vec<(NaiveDate, Balance)>) -> Vec<(NaiveDate, Balance)> {
    posted.sort_by_key(|(date, _)| *date);
    let mut dates: Vec<(NaiveDate, Balance)> = Vec::new();
    let mut total = Balance::default();
    for (date, posted) in posted {
        total = total.plus(posted);
        match dates.last_mut() {
            Some((last, at)) if *last == date => *at = total,
            _ => dates.push((date, total)),
        }
    }
    dates
}

/// Steps decoded in order, from a block's start.
pub struct Walk<'a> {
    steps: &'a Steps,
    /// Where records let go of are read back from.
    from: Option<&'a dyn StoredSteps>,
    block: usize,
    /// The record holding `block`, once read.
    record: Option<(usize, Cow<'a, [u8]>)>,
    /// Offset of the next step in its block's bytes.
    at: usize,
    previous: Option<Step>,
    /// Why it stopped before the last step: a record that could not be
    /// read back.
    failed: Option<ReadError>,
    /// The dates asked for: records let go of dated outside them are
    /// passed by.
    span: Option<Dates>,
}

impl Walk<'_> {
    /// Ends the walk: an error if it stopped at a record it could not
    /// read back, not at the last step.
    pub fn finish(self) -> Result<(), ReadError> {
        self.failed.map_or(Ok(()), Err)
    }
}

impl Iterator for Walk<'_> {
    type Item = (Step, Balance);

    fn next(&mut self) -> Option<(Step, Balance)> {
        let mut start = *self.steps.blocks.get(self.block)?;
        if self.failed.is_some() {
            return None;
        }
        let mut index = self.block / RECORD_BLOCKS;
        while let (Some((low, high)), Some(Bytes::Stored(_, (first, last), _))) =
            (self.span, self.steps.records.get(index))
            && (*last < low || *first > high)
            && self.record.as_ref().is_none_or(|(held, _)| *held != index)
        {
            index += 1;
            self.block = index * RECORD_BLOCKS;
            self.at = 0;
            self.previous = None;
            start = *self.steps.blocks.get(self.block)?;
        }
        if self.record.as_ref().is_none_or(|(held, _)| *held != index) {
            match self.steps.record_bytes(index, self.from) {
                Ok(bytes) => self.record = Some((index, bytes)),
                Err(error) => {
                    self.failed = Some(error);
                    return None;
                }
            }
        }
        let (_, record) = self.record.as_ref()?;
        let bytes = &record[self.steps.block_range(self.block, record.len())];
        if self.at >= bytes.len() {
            return None;
        }
        let (decoded, next) = decode(bytes, self.at);
        let ended = next >= bytes.len();
        let from = match self.previous {
            Some(previous) => previous,
            None => Step {
                sequence: start.sequence,
                date: start.date,
                total: start.before,
            },
        };
        let step = Step {
            sequence: from.sequence + decoded.sequence_gap,
            date: from.date + chrono::Duration::days(decoded.day_gap),
            total: from.total.plus(decoded.posted),
        };
        if ended {
            self.block += 1;
            self.at = 0;
            self.previous = None;
        } else {
            self.at = next;
            self.previous = Some(step);
        }
        Some((step, decoded.posted))
    }
}

/// A block's totals before it plus amounts of its steps, the whole ones
/// (every VND amount) added as integers and only the others as `Decimal`s:
/// the total is made once, when asked.
struct BlockSums {
    before: Balance,
    whole: [i128; 2],
    scaled: [Decimal; 2],
}

impl BlockSums {
    fn new(before: Balance) -> BlockSums {
        BlockSums {
            before,
            whole: [0; 2],
            scaled: [Decimal::ZERO; 2],
        }
    }

    /// Adds what a step posted.
    fn add(&mut self, record: &RawRecord) {
        for (side, (mantissa, scale)) in record.amounts.into_iter().enumerate() {
            if scale == 0 {
                self.whole[side] += mantissa;
            } else {
                self.scaled[side] += Decimal::from_i128_with_scale(mantissa, scale);
            }
        }
    }

    /// Adds what a step read back posted: false when an amount is
    /// negative, out of `Decimal`'s range, or the sums overflow.
    fn add_checked(&mut self, record: &RawRecord) -> Option<()> {
        for (side, (mantissa, scale)) in record.amounts.into_iter().enumerate() {
            if mantissa < 0 || scale > 28 || mantissa >= 1 << 96 {
                return None;
            }
            if scale == 0 {
                self.whole[side] = self.whole[side].checked_add(mantissa)?;
            } else {
                let amount = Decimal::try_from_i128_with_scale(mantissa, scale).ok()?;
                self.scaled[side] = self.scaled[side].checked_add(amount)?;
            }
        }
        Some(())
    }

    /// [`BlockSums::total`], `None` out of `Decimal`'s range.
    fn total_checked(&self) -> Option<Balance> {
        let sum = |side: usize| {
            Decimal::try_from_i128_with_scale(self.whole[side], 0)
                .ok()?
                .checked_add(self.scaled[side])
        };
        Some(Balance {
            debits: self.before.debits.checked_add(sum(0)?)?,
            credits: self.before.credits.checked_add(sum(1)?)?,
        })
    }

    /// The totals after the steps added.
    fn total(&self) -> Balance {
        let sum =
            |side: usize| Decimal::from_i128_with_scale(self.whole[side], 0) + self.scaled[side];
        self.before.plus(Balance {
            debits: sum(0),
            credits: sum(1),
        })
    }
}

/// One step as encoded: its distance from the step before (from the
/// block's start, for a block's first) and what its entry posted.
struct Record {
    sequence_gap: u64,
    day_gap: i64,
    posted: Balance,
}

const DEBITS: u8 = 1;
const CREDITS: u8 = 2;
const DEBITS_SCALED: u8 = 4;
const CREDITS_SCALED: u8 = 8;

fn encode(bytes: &mut Vec<u8>, sequence_gap: u64, day_gap: i64, posted: Balance) {
    crate::varint::put(bytes, u128::from(sequence_gap));
    crate::varint::put(bytes, u128::from(zigzag(day_gap)));
    let mut flags = 0;
    for (amount, present, scaled) in [
        (posted.debits, DEBITS, DEBITS_SCALED),
        (posted.credits, CREDITS, CREDITS_SCALED),
    ] {
        if !amount.is_zero() {
            flags |= present;
            if amount.scale() != 0 {
                flags |= scaled;
            }
        }
    }
    bytes.push(flags);
    for (amount, present, scaled) in [
        (posted.debits, DEBITS, DEBITS_SCALED),
        (posted.credits, CREDITS, CREDITS_SCALED),
    ] {
        if flags & present != 0 {
            let mantissa = amount.mantissa();
            let sign = u128::from(mantissa < 0);
            crate::varint::put(bytes, (mantissa.unsigned_abs() << 1) | sign);
            if flags & scaled != 0 {
                bytes.push(amount.scale() as u8);
            }
        }
    }
}

fn decode(bytes: &[u8], at: usize) -> (Record, usize) {
    let (raw, at) = decode_raw(bytes, at);
    let [debits, credits] = raw
        .amounts
        .map(|(mantissa, scale)| Decimal::from_i128_with_scale(mantissa, scale));
    let record = Record {
        sequence_gap: raw.sequence_gap,
        day_gap: raw.day_gap,
        posted: Balance { debits, credits },
    };
    (record, at)
}

/// A step's sequence and date as distances from its block's start.
struct Gaps {
    sequence: u64,
    days: i64,
}

/// A record's fields as stored: the amounts as digits and scale.
struct RawRecord {
    sequence_gap: u64,
    day_gap: i64,
    /// Debits and credits: mantissa and scale (zero when absent).
    amounts: [(i128, u32); 2],
}

fn decode_raw(bytes: &[u8], mut at: usize) -> (RawRecord, usize) {
    let sequence_gap = crate::varint::take(bytes, &mut at) as u64;
    let day_gap = unzigzag(crate::varint::take(bytes, &mut at) as u64);
    let flags = bytes[at];
    at += 1;
    let mut amounts = [(0i128, 0u32); 2];
    for (amount, present, scaled) in [(0, DEBITS, DEBITS_SCALED), (1, CREDITS, CREDITS_SCALED)] {
        if flags & present != 0 {
            let digits = crate::varint::take(bytes, &mut at);
            let magnitude = (digits >> 1) as i128;
            let mantissa = if digits & 1 == 1 {
                -magnitude
            } else {
                magnitude
            };
            let scale = if flags & scaled != 0 {
                at += 1;
                u32::from(bytes[at - 1])
            } else {
                0
            };
            amounts[amount] = (mantissa, scale);
        }
    }
    let record = RawRecord {
        sequence_gap,
        day_gap,
        amounts,
    };
    (record, at)
}

/// [`decode_raw`] of bytes read back from the state cache: `None` where
/// they run out or a field is out of range, never a panic.
fn decode_checked(bytes: &[u8], mut at: usize) -> Option<(RawRecord, usize)> {
    let sequence_gap = u64::try_from(crate::varint::take_checked(bytes, &mut at)?).ok()?;
    let day_gap = unzigzag(u64::try_from(crate::varint::take_checked(bytes, &mut at)?).ok()?);
    let flags = *bytes.get(at)?;
    at += 1;
    if flags & !(DEBITS | CREDITS | DEBITS_SCALED | CREDITS_SCALED) != 0
        || (flags & DEBITS_SCALED != 0 && flags & DEBITS == 0)
        || (flags & CREDITS_SCALED != 0 && flags & CREDITS == 0)
    {
        return None;
    }
    let mut amounts = [(0i128, 0u32); 2];
    for (amount, present, scaled) in [(0, DEBITS, DEBITS_SCALED), (1, CREDITS, CREDITS_SCALED)] {
        if flags & present != 0 {
            let digits = crate::varint::take_checked(bytes, &mut at)?;
            // The sign bit: booked amounts are positive.
            if digits & 1 == 1 || digits >> 1 >= 1 << 96 {
                return None;
            }
            let scale = if flags & scaled != 0 {
                at += 1;
                u32::from(*bytes.get(at - 1)?)
            } else {
                0
            };
            amounts[amount] = ((digits >> 1) as i128, scale);
        }
    }
    let record = RawRecord {
        sequence_gap,
        day_gap,
        amounts,
    };
    Some((record, at))
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Days::new(u64::from(d))
    }

    fn amount(mantissa: i128, scale: u32) -> Decimal {
        Decimal::from_i128_with_scale(mantissa, scale)
    }

    /// Steps as plain structs, the way a history kept them before: what
    /// the encoded steps must answer exactly as.
    fn plain(postings: &[(u64, NaiveDate, Balance)]) -> Vec<(Step, Balance)> {
        let mut steps: Vec<(Step, Balance)> = Vec::new();
        for &(sequence, date, posted) in postings {
            match steps.last_mut() {
                Some((last, sum)) if last.sequence == sequence => {
                    last.total = last.total.plus(posted);
                    *sum = sum.plus(posted);
                }
                last => {
                    let before = last.map_or(Balance::default(), |(s, _)| s.total);
                    let total = before.plus(posted);
                    steps.push((
                        Step {
                            sequence,
                            date,
                            total,
                        },
                        posted,
                    ));
                }
            }
        }
        steps
    }

    #[test]
    fn encoded_steps_answer_as_plain_ones_across_blocks() {
        // Amounts of every shape: large, scaled, negative, on both sides;
        // dates that go back; entries posting twice; gaps of every size.
        let mut postings = Vec::new();
        let mut sequence = 3u64;
        for n in 0..(BLOCK as u64 * 4 + 5) {
            sequence += 1 + (n * n) % 300;
            let date = day(((n * 13) % 40) as u32);
            let debits = match n % 4 {
                0 => amount(1_250_000, 0),
                1 => amount(i128::from(n) * 7_919, 2),
                2 => amount(100_000_000_000_000_000_000, 0),
                _ => Decimal::ZERO,
            };
            let credits = if n % 3 == 0 {
                amount(-5, 1)
            } else {
                Decimal::ZERO
            };
            postings.push((sequence, date, Balance { debits, credits }));
            if n % 7 == 0 {
                postings.push((
                    sequence,
                    date,
                    Balance {
                        debits: amount(3, 0),
                        credits: Decimal::ZERO,
                    },
                ));
            }
        }
        let mut steps = Steps::default();
        for &(sequence, date, posted) in &postings {
            steps.push(sequence, date, posted);
        }
        let expected = plain(&postings);
        assert_eq!(steps.len(), expected.len());
        assert_eq!(steps.iter().collect::<Vec<_>>(), expected);
        assert_eq!(steps.last(), expected.last().map(|(s, _)| *s));
        for probe in 0..=sequence + 1 {
            let at = expected.partition_point(|(s, _)| s.sequence <= probe);
            let total = at
                .checked_sub(1)
                .map_or(Balance::default(), |i| expected[i].0.total);
            assert_eq!(steps.total_at(probe, None).unwrap(), total, "as of {probe}");
        }
        // About a tenth of the structs' size for such postings.
        assert!(
            steps.encoded_len() < expected.len() * 16,
            "{} bytes",
            steps.encoded_len()
        );
    }

    /// Each date's last total, from the plain steps, as a history kept its
    /// totals by date before.
    fn plain_by_date(steps: &[(Step, Balance)]) -> Vec<(NaiveDate, Balance)> {
        let mut dates: Vec<(NaiveDate, Balance)> = Vec::new();
        for (step, _) in steps {
            match dates.last_mut() {
                Some((date, total)) if *date == step.date => *total = step.total,
                _ => dates.push((step.date, step.total)),
            }
        }
        dates
    }

    #[test]
    fn totals_by_date_are_the_walks_to_the_digit() {
        // Runs of one date across blocks' edges, a date changing at a
        // block's first step, scaled and negative amounts on both sides,
        // entries posting twice, one huge amount.
        let mut postings = Vec::new();
        for n in 0..(BLOCK as u64 * 5 + 3) {
            let date = day(match n {
                0..=40 => 0,
                41..=63 => (n / 4) as u32,
                _ => (n / 32) as u32 * 3,
            });
            let debits = match n % 6 {
                0 => amount(1_000, 0),
                1 => amount(i128::from(n) * 7_919, 2),
                2 => amount(100_000_000_000_000_000_000, 0),
                // Amounts as booked are positive: sums that cancel to a
                // zero of another scale never arise.
                3 => amount(25, 1),
                _ => Decimal::ZERO,
            };
            let credits = match n % 4 {
                0 => amount(5, 3),
                1 => amount(200_000, 0),
                _ => Decimal::ZERO,
            };
            postings.push((n + 1, date, Balance { debits, credits }));
            if n % 9 == 0 {
                postings.push((
                    n + 1,
                    date,
                    Balance::of(crate::entry::Side::Debit, amount(7, 0)),
                ));
            }
        }
        for length in [0, 1, BLOCK, BLOCK + 1, postings.len()] {
            let mut steps = Steps::default();
            for &(sequence, date, posted) in &postings[..length] {
                steps.push(sequence, date, posted);
            }
            let expected = plain_by_date(&steps.iter().collect::<Vec<_>>());
            let found = steps.totals_by_date_before(u64::MAX, None).unwrap();
            assert_eq!(found, expected, "{length} postings");
            // The same digits and scale, not only equal values: statements
            // print them.
            let text = |dates: &[(NaiveDate, Balance)]| format!("{dates:?}");
            assert_eq!(text(&found), text(&expected), "{length} postings");
        }
    }

    #[test]
    fn dates_in_order_answer_by_date() {
        let mut steps = Steps::default();
        let mut plain_postings = Vec::new();
        for n in 0..(BLOCK as u64 * 3) {
            let date = day((n / 3) as u32 * 2);
            // Whole amounts, and now and then one with cents.
            let amount = match n % 5 {
                4 => amount(i128::from(n) * 101, 2),
                _ => Decimal::from(n + 1),
            };
            let posted = Balance::of(crate::entry::Side::Credit, amount);
            steps.push(n + 1, date, posted);
            plain_postings.push((n + 1, date, posted));
        }
        for d in 0..70 {
            let date = day(d);
            let expected: Decimal = plain_postings
                .iter()
                .filter(|(_, on, _)| *on <= date)
                .map(|(_, _, p)| p.credits)
                .sum();
            assert_eq!(
                steps
                    .total_on_date_before(date, u64::MAX, None)
                    .unwrap()
                    .credits,
                expected,
                "on day {d}"
            );
        }
    }

    /// Steps of positive amounts (as booked), some with cents, some
    /// back-dated, some entries posting twice.
    fn booked(count: u64) -> Steps {
        let mut steps = Steps::default();
        for n in 0..count {
            let date = day(((n * 13) % 40) as u32);
            let debits = match n % 3 {
                0 => amount(1_250_000 + i128::from(n), 0),
                1 => amount(i128::from(n) * 7_919, 2),
                _ => Decimal::ZERO,
            };
            let credits = amount(i128::from(n % 4) * 1_000, 0);
            steps.push(n * 3 + 1, date, Balance { debits, credits });
            if n % 7 == 0 {
                steps.push(
                    n * 3 + 1,
                    date,
                    Balance::of(crate::entry::Side::Debit, amount(5, 1)),
                );
            }
        }
        steps
    }

    fn read_back(steps: &Steps) -> Result<(Steps, bool), String> {
        let mut read = Steps::default();
        let mut in_order = true;
        for k in 0..steps.record_count() {
            let (starts, bytes) = steps.record(k).unwrap();
            in_order &= read.append_record(&starts, bytes, None)?;
        }
        Ok((read, in_order))
    }

    #[test]
    fn steps_read_back_from_their_records_are_the_steps() {
        for count in [1, 31, 32, 33, 127, 128, 129, 300, 512] {
            let steps = booked(count);
            assert_eq!(
                steps.record_count(),
                (count as usize).div_ceil(RECORD_STEPS)
            );
            let (read, in_order) = read_back(&steps).unwrap();
            assert_eq!(read, steps, "{count} steps");
            assert_eq!(
                in_order,
                count <= 3,
                "{count} steps: dates go back after the fourth"
            );
            assert_eq!(read.last_record(), (count as usize - 1) / RECORD_STEPS);
            // The totals by date whatever the order, as a walk by date
            // gives them.
            let mut by_date: Vec<(NaiveDate, Balance)> = Vec::new();
            let mut walked: Vec<(Step, Balance)> = steps.iter().collect();
            walked.sort_by_key(|(step, _)| step.date);
            let mut total = Balance::default();
            for (step, posted) in walked {
                total = total.plus(posted);
                match by_date.last_mut() {
                    Some((date, at)) if *date == step.date => *at = total,
                    _ => by_date.push((step.date, total)),
                }
            }
            assert_eq!(read.totals_by_date(false), by_date, "{count} steps");
            // A record's steps go on being pushed to as they were.
            let mut more = read;
            let mut again = steps.clone();
            for steps in [&mut more, &mut again] {
                steps.push(
                    10_000,
                    day(50),
                    Balance::of(crate::entry::Side::Credit, amount(7, 0)),
                );
            }
            assert_eq!(more, again);
        }
        // In date order: the totals by date are read from the steps.
        let mut dated = Steps::default();
        for n in 0..200u64 {
            dated.push(
                n + 1,
                day((n / 3) as u32),
                Balance::of(crate::entry::Side::Debit, amount(3, 0)),
            );
        }
        let (read, in_order) = read_back(&dated).unwrap();
        assert!(in_order);
        assert_eq!(read.totals_by_date(true), dated.totals_by_date(false));
    }

    /// The totals by date worked out while reading records back are those
    /// of a walk of the steps, to the digit, whatever the records' edges;
    /// a step dated before the one before it stops them.
    #[test]
    fn totals_by_date_read_back_with_the_records_are_the_walks() {
        let mut steps = Steps::default();
        for n in 0..(RECORD_STEPS as u64 * 3 + 17) {
            // A date running across each record's edge, and dates that
            // change at a record's first step.
            let date = day(match n {
                120..=135 => 7,
                _ => (n / 16) as u32,
            });
            let debits = match n % 4 {
                0 => amount(i128::from(n) * 7_919, 2),
                1 => amount(100_000_000_000_000_000_000, 0),
                _ => amount(25, 1),
            };
            steps.push(n + 1, date, Balance::of(crate::entry::Side::Debit, debits));
        }
        let mut read = Steps::default();
        let mut dates = Vec::new();
        for k in 0..steps.record_count() {
            let (starts, bytes) = steps.record(k).unwrap();
            assert!(
                read.append_record(&starts, bytes, Some(&mut dates))
                    .unwrap()
            );
        }
        let walked = steps.totals_by_date_before(u64::MAX, None).unwrap();
        assert!(walked.len() > 20);
        assert_eq!(format!("{dates:?}"), format!("{walked:?}"));
        // Out of date order: false, for the caller to work them out from
        // the steps.
        let mut back = steps.clone();
        back.push(
            10_000,
            day(0),
            Balance::of(crate::entry::Side::Credit, amount(7, 0)),
        );
        let mut read = Steps::default();
        let mut dates = Vec::new();
        let in_order: Vec<bool> = (0..back.record_count())
            .map(|k| {
                let (starts, bytes) = back.record(k).unwrap();
                read.append_record(&starts, bytes, Some(&mut dates))
                    .unwrap()
            })
            .collect();
        assert_eq!(in_order, [true, true, true, false]);
        assert_eq!(read, back);
    }

    /// A history read back and then booked to holds about its bytes, not
    /// twice them: a step appended reaches only its record's room.
    #[test]
    fn booking_after_a_read_back_does_not_copy_the_history() {
        let steps = booked(20 * RECORD_STEPS as u64 + 5);
        let (mut read, _) = read_back(&steps).unwrap();
        let held = |steps: &Steps| -> usize {
            steps
                .records
                .iter()
                .map(|bytes| match bytes {
                    Bytes::Held(bytes) => bytes.capacity(),
                    Bytes::Stored(..) => 0,
                    Bytes::Grown(grown) => grown.added.capacity(),
                })
                .sum()
        };
        let first_held = |steps: &Steps| match &steps.records[0] {
            Bytes::Held(bytes) => bytes.as_ptr(),
            Bytes::Stored(..) | Bytes::Grown(_) => std::ptr::null(),
        };
        let before = held(&read);
        assert_eq!(before, read.encoded_len(), "read back exactly");
        let first = first_held(&read);
        let mut sequence = read.last().unwrap().sequence;
        for n in 0..(2 * RECORD_STEPS) {
            sequence += 1;
            read.push(
                sequence,
                day(400 + n as u32),
                Balance::of(crate::entry::Side::Debit, amount(5, 0)),
            );
        }
        // Two records' worth of steps added: room for about that much more,
        // and the first record where it was.
        let added = read.encoded_len() - before;
        assert!(
            held(&read) <= before + 2 * added,
            "{} bytes held for {} bytes of steps",
            held(&read),
            read.encoded_len()
        );
        assert_eq!(first_held(&read), first);
    }

    #[test]
    fn records_out_of_turn_are_refused() {
        let steps = booked(300);
        let (first, first_bytes) = steps.record(0).unwrap();
        let (second, second_bytes) = steps.record(1).unwrap();
        let (last, last_bytes) = steps.record(2).unwrap();
        // A record after a short one.
        let mut read = Steps::default();
        read.append_record(&last, last_bytes, None).unwrap();
        let refused = read.append_record(&first, first_bytes, None).unwrap_err();
        assert!(refused.contains("follows one of 44 steps"), "{refused}");
        // The same record twice: its entries do not follow.
        let mut read = Steps::default();
        read.append_record(&first, first_bytes, None).unwrap();
        let refused = read.append_record(&first, first_bytes, None).unwrap_err();
        assert!(
            refused.contains("not after the step before it"),
            "{refused}"
        );
        // Blocks without all their bytes: cut within a step, or where
        // one ends.
        let mut read = Steps::default();
        let refused = read
            .append_record(&second, &second_bytes[..second_bytes.len() / 2], None)
            .unwrap_err();
        assert!(refused.contains("does not decode"), "{refused}");
        let mut read = Steps::default();
        read.append_record(&first, first_bytes, None).unwrap();
        let kept = read.clone();
        let refused = read.append_record(&second, &[], None).unwrap_err();
        assert!(refused.contains("a block of 0 steps"), "{refused}");
        assert_eq!(read, kept, "nothing kept of a refused record");
    }

    proptest::proptest! {
        /// Whatever a record's bytes (the cache damaged on disk, its digest
        /// checked only once every record is read), reading it back
        /// refuses it or keeps steps every lookup can walk: never a panic.
        #[test]
        fn damaged_records_are_refused_or_walkable(
            count in 1u64..300,
            flips in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 0..6),
            cut in 0usize..4096,
            shift in 0u64..3,
        ) {
            let steps = booked(count);
            let mut read = Steps::default();
            for k in 0..steps.record_count() {
                let (mut starts, bytes) = steps.record(k).unwrap();
                let mut bytes = bytes.to_vec();
                if k + 1 == steps.record_count() {
                    for (at, byte) in &flips {
                        if !bytes.is_empty() {
                            let at = at % bytes.len();
                            bytes[at] ^= byte;
                        }
                    }
                    bytes.truncate(cut.max(1));
                    starts[0].sequence = starts[0].sequence.wrapping_add(shift.wrapping_mul(u64::MAX / 2));
                }
                if read.append_record(&starts, &bytes, None).is_err() {
                    break;
                }
            }
            let walked: Vec<(Step, Balance)> = read.iter().collect();
            proptest::prop_assert_eq!(walked.len(), read.len());
            let _ = read.total_at(u64::MAX, None);
            let _ = read.totals_by_date(false);
            if let Some((step, _)) = walked.last() {
                let _ = read.total_on_date_before(step.date, step.sequence, None);
                let _ = read.totals_by_date_before(step.sequence, None);
                let _ = read.total_at(step.sequence - 1, None);
                read.push(step.sequence, step.date, Balance::of(crate::entry::Side::Debit, amount(1, 0)));
            }
        }
    }
}

#[cfg(test)]
mod stored_tests {
    use super::*;

    /// Records as a store holds them, by index.
    struct Records(Vec<Vec<u8>>);

    impl StoredSteps for Records {
        fn steps_bytes(&self, index: usize) -> Result<Vec<u8>, ReadError> {
            Ok(self.0[index].clone())
        }

        fn name(&self, index: usize) -> String {
            format!("record {index}")
        }
    }

    fn day(n: u64) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Days::new(n)
    }

    fn posted(amount: i64) -> Balance {
        Balance::of(crate::entry::Side::Debit, Decimal::from(amount))
    }

    /// A record let go of reads back only as it was: a byte more or less
    /// in the store is damage. The last record let go of and booked to
    /// since reads back as the bytes let go of followed by those booked,
    /// whether or not a checkpoint saved them after the others.
    #[test]
    fn records_let_go_of_read_back_only_as_they_were() {
        let mut steps = Steps::default();
        let count = RECORD_STEPS as u64 + 3;
        for n in 1..=count {
            steps.push(n, day(n), posted(n as i64));
        }
        let held: Vec<Vec<u8>> = (0..2)
            .map(|i| steps.record(i).unwrap().1.to_vec())
            .collect();
        assert!(steps.let_go(0) && steps.let_go_last());
        for index in 0..2 {
            let exact = Records(held.clone());
            assert_eq!(
                *steps.record_bytes(index, Some(&exact)).unwrap(),
                held[index][..]
            );
            let mut longer = held.clone();
            longer[index].push(0);
            assert!(matches!(
                steps.record_bytes(index, Some(&Records(longer))),
                Err(ReadError::Damaged(_))
            ));
        }
        // Booked to after it was let go of.
        steps.push(count + 1, day(count + 1), posted(7));
        let mut whole = held[1].clone();
        whole.extend_from_slice(
            &steps.record_bytes(1, Some(&Records(held.clone()))).unwrap()[held[1].len()..],
        );
        assert!(whole.len() > held[1].len());
        let saved = Records(vec![held[0].clone(), whole.clone()]);
        assert_eq!(*steps.record_bytes(1, Some(&saved)).unwrap(), whole[..]);
        assert_eq!(steps.last_posted(), Some(posted(7)));
        let mut damaged = held.clone();
        damaged[1][0] ^= 1;
        assert!(matches!(
            steps.record_bytes(1, Some(&Records(damaged))),
            Err(ReadError::Damaged(_))
        ));
    }

    /// A last record let go of and grown is let go of again once a
    /// checkpoint took it whole (`grown_record`, completed and noted), and
    /// then reads back only as written: not when a step was booked to it
    /// after the checkpoint took it, which the store then does not hold.
    #[test]
    fn a_grown_record_taken_whole_is_let_go_of_again() {
        let mut steps = Steps::default();
        for n in 1..=5 {
            steps.push(n, day(n), posted(n as i64));
        }
        let first = steps.record(0).unwrap().1.to_vec();
        assert!(steps.let_go_last());
        assert!(steps.grown_record(0).is_none(), "let go of, not grown");
        steps.push(6, day(6), posted(6));
        assert!(!steps.let_go_last(), "grown, and not taken whole");
        let stored = Records(vec![first.clone()]);
        let (taken, noted) = steps
            .grown_record(0)
            .unwrap()
            .complete(Some(&stored))
            .unwrap();
        assert!(taken.len() > first.len() && taken.starts_with(&first));
        // Booked to after the checkpoint took it: a note of it is cleared,
        // and not taken afterwards.
        steps.note_written(0, noted);
        steps.push(7, day(7), posted(7));
        assert!(!steps.let_go_last());
        steps.note_written(0, noted);
        assert!(!steps.let_go_last(), "a note of the record before step 7");
        let grown = steps.grown_record(0).unwrap();
        let (whole, noted) = grown.complete(Some(&stored)).unwrap();
        assert!(whole.len() > taken.len());
        assert!(!steps.let_go_last(), "taken, not noted");
        steps.note_written(0, noted);
        assert!(steps.let_go_last());
        assert_eq!(steps.held_bytes(), 0);
        let saved = Records(vec![whole.clone()]);
        assert_eq!(*steps.record_bytes(0, Some(&saved)).unwrap(), whole[..]);
        assert!(matches!(
            steps.record_bytes(0, Some(&Records(vec![taken]))),
            Err(ReadError::Damaged(_))
        ));
        let dates = match steps.records[0] {
            Bytes::Stored(_, dates, _) => dates,
            _ => panic!("let go of"),
        };
        assert_eq!(dates, (day(1), day(7)));
        // A store that does not hold the bytes let go of: refused.
        steps.push(8, day(8), posted(8));
        let mut damaged = whole.clone();
        damaged[0] ^= 1;
        assert!(matches!(
            steps
                .grown_record(0)
                .unwrap()
                .complete(Some(&Records(vec![damaged]))),
            Err(ReadError::Damaged(_))
        ));
        // And it grows again from there.
        assert_eq!(steps.last_posted(), Some(posted(8)));
        assert_eq!(steps.last().unwrap().total, posted(36));
    }
}
