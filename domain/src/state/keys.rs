//! The state as key/value records: what the store persists, what startup
//! loads, and what `verify` compares. Keys are text with a kind prefix so
//! that records sort by kind; values are postcard bytes.

use super::*;
use crate::books::{
    ACCOUNT_STEPS_PREFIX, Balance, CLOSED_STEPS_PREFIX, KEPT_STEPS_PREFIX, KeySum,
    LINE_STEPS_PREFIX, Line, StepsOf, closed_steps_key, closed_steps_of, kept_steps_key,
};
use crate::day_log::{CLOSED_CHUNK_PREFIX, DayChunk, OPEN_CHUNK_PREFIX};
use crate::stored::ReadError;

/// One piece of the state that can change.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StateKey {
    /// Last sequence number and hash.
    Head,
    /// The layout of the records ([`STATE_FORMAT`]): a cache of another
    /// layout is rebuilt from the journal, never read.
    Format,
    Branch(BranchId),
    Center(CenterId),
    Group(GroupId),
    Member(MemberId),
    Savings(SavingsAccountId),
    /// A loan's terms and schedule: written once, at disbursement.
    Loan(LoanId),
    /// What has been repaid on a loan, and its lists' entries after their
    /// last full chunks: rewritten as it changes.
    LoanProgress(LoanId),
    /// One full chunk of a loan's entries that still stand
    /// (`LOAN_LIST_CHUNK` a record; those after the last full chunk are in
    /// its progress record).
    LoanEvents(LoanId, u64),
    /// One full chunk of every entry that changed a loan, reversed or not
    /// (the same way).
    LoanHistory(LoanId, u64),
    /// A closed or cancelled loan whole: read when asked
    /// ([`crate::stored`]), its `Loan`, `LoanProgress` and lists' records
    /// then gone.
    LoanSchedule(LoanId),
    /// A closed or cancelled loan's summary ([`EndedLoan`]): what its
    /// commands and listings read of it, read when asked ([`crate::stored`])
    /// like its record whole.
    LoanEnded(LoanId),
    /// A product's versions.
    Product(ProductId),
    Reversed(u64),
    Day(BranchId, NaiveDate),
    /// Principals, roles and credentials, as one record (small, and
    /// rarely changed).
    Access,
    /// One record of an account's steps in the general ledger (what each
    /// entry that posted to it posted, and its totals after;
    /// [`crate::books::RECORD_STEPS`] steps a record).
    Steps(AccountId, u64),
    /// One record of the steps of a line of a branch's books.
    LineSteps(BranchId, Line, u64),
    /// What a branch's year-end close on a date carried into retained earnings.
    Carry(BranchId, NaiveDate),
    /// A savings product's versions.
    SavingsProduct(ProductId),
    /// A closed chunk of a branch's day log ([`crate::day_log`]), by its
    /// first entry: written once, read when asked ([`crate::stored`]).
    DayChunk(BranchId, u64),
    /// A branch's open day-log chunk, the one its entries go into.
    DayOpen(BranchId),
    /// The latest date a loan ended on ([`LedgerState::ended_latest`]).
    EndedLatest,
    /// A closed or cancelled loan's account's records of steps, whole, in
    /// one record read when asked ([`crate::stored`]), its
    /// [`StateKey::Steps`] records then gone.
    LoanSteps(LoanId),
    /// A savings account's closed record of steps whole, moved out of those
    /// read at startup once the record after it opened (and no step up to
    /// it went back in date): read when asked ([`crate::stored`]), its
    /// [`StateKey::Steps`] record then keeping only what startup takes of
    /// it ([`crate::books::moves_closed_records`]).
    ClosedSteps(AccountId, u64),
    /// One record of the changes a close folded out of a branch's savings
    /// accounts, by the date it folded them through and the record's index
    /// ([`super::folds`]): written once, read when asked
    /// ([`crate::stored`]), gone when a reopening takes them back.
    SavingsHistory(BranchId, NaiveDate, u32),
}

/// A record: key bytes and value bytes, or `None` when the key is gone.
pub type StateRecord = (Vec<u8>, Option<Vec<u8>>);

const HEAD_KEY: &str = "head";
const FORMAT_KEY: &str = "format";
const ACCESS_KEY: &str = "access";
const ENDED_LATEST_KEY: &str = "ended-latest";

/// Layout of the state records. 2: day totals carry the portfolio figures
/// (loans active, standard PAR, loans in arrears, installments due and paid
/// on time, disbursements by product) and borrowers who save are those
/// with a positive savings balance.
/// 3: the general ledger's history, one record per account and bucket of
/// entries, the year-end carries, savings products, closes and interest
/// postings.
/// 4: every entry that changed a loan (its history, replayed for a loan as
/// it stood after an entry), and the entry that registered each member and
/// opened each savings account.
/// 5: each branch's day log (its days as they stood after any entry), in
/// chunks of 4,096 entries.
/// 6: day-log chunks end by their bytes, not their entries.
/// 7: the general ledger's histories, the lines' as well as the accounts',
/// in records of their own steps, encoded as memory keeps them
/// ([`crate::books::RECORD_STEPS`] a record), not in buckets of postings.
/// 8: a loan's lists of entries in records of their own, by chunks
/// (`LOAN_LIST_CHUNK`), not in its progress record (whose layout a
/// cache of 7 would be misread by).
/// 9: a day log's closed chunks under keys read when asked
/// ([`crate::stored`], by their first entry), its open chunk apart.
/// 10: the same records; the store keeps those read when asked behind a
/// byte saying whether they are zstd-compressed (a cache of 9 would have
/// them misread).
/// 11: a closed or cancelled loan's installments and payments by date in
/// a record read when asked ([`LOAN_SCHEDULE_PREFIX`]), not in its loan
/// and progress records (a cache of 10 would have its closed loans read
/// without them).
/// 12: that record holds the loan's principal by date too, and its
/// progress record only the spans its borrower's figures read (a cache of
/// 11, written by no release, would be read with its closed loans' whole
/// principal where the spans belong).
/// 13: a closed or cancelled loan whole in that record, and its summary
/// ([`StateKey::LoanEnded`]) in place of its loan, progress and lists'
/// records (a cache of 12 would have its closed loans missing).
/// 14: fewer records for what changes with every entry: a running loan's
/// lists keep a record only for each full chunk, the entries after the
/// last full one in its progress record; and no account's balance has a
/// record of its own, each read back from its history's last step (a
/// cache of 13 would be refused record by record: its lists' last chunks
/// not full, its progress records short, its balance records unknown).
/// 15: a savings account's changes by date as the bytes memory packs them
/// (`codec::packed_amounts`), not a list of pairs (a cache of 14 would
/// have them misread).
/// 16: a closed or cancelled loan's summary read when asked
/// ([`LOAN_ENDED_PREFIX`]), not at startup, and the latest date a loan
/// ended on in a record of its own (a cache of 15 would have its summaries
/// taken for records this build does not read, and no such date).
/// 17: a closed or cancelled loan's account's records of steps in one
/// record read when asked ([`StateKey::LoanSteps`]), not under the keys
/// read at startup (a cache of 16 would have those accounts' books read
/// at startup beside loans that ended, which this build refuses).
/// 18: a savings account's closed records of steps moved out of those read
/// at startup, each to a record read when asked ([`StateKey::ClosedSteps`]),
/// its own key keeping what startup takes of it; every account's records
/// of steps say whether they moved (a cache of 17 would have them misread).
/// 19: a savings account's changes in a closed period folded at the close
/// into a record read when asked ([`StateKey::SavingsHistory`]), its own
/// record keeping their sum, and each branch the dates it folded through
/// (a cache of 18 would have its accounts and branches misread).
pub const STATE_FORMAT: u32 = 19;

/// Key prefix of a closed or cancelled loan's record, the loan whole
/// ([`StateKey::LoanSchedule`]).
pub const LOAN_SCHEDULE_PREFIX: &str = "cold/loan/";

/// Key prefix of a closed or cancelled loan's summary
/// ([`StateKey::LoanEnded`]), read when asked ([`crate::stored`]).
pub const LOAN_ENDED_PREFIX: &str = "cold/ended/";

/// Entries per record of a loan's lists of entries: a checkpoint writes a
/// chunk's record once, when it fills, not a loan's lists whole (at 10^7
/// entries of the recovery benchmark, about 10,000 entries a loan, 61 KB
/// a loan rewritten at each checkpoint that changed it). The entries after
/// the last full chunk, fewer than a chunk, are in the loan's progress
/// record, which every entry that changes the loan rewrites anyway: most
/// loans, with fewer entries than a chunk, have no record of their lists.
pub const LOAN_LIST_CHUNK: usize = 1024;

/// Chunk `index` of a loan's list of entries, if it is full.
fn list_chunk(list: &EntryList, index: u64) -> Option<Vec<u64>> {
    let start = usize::try_from(index).ok()?.checked_mul(LOAN_LIST_CHUNK)?;
    let chunk: Vec<u64> = list
        .range(start, start.saturating_add(LOAN_LIST_CHUNK))
        .collect();
    (chunk.len() == LOAN_LIST_CHUNK).then_some(chunk)
}

/// The entries of a loan's list after its last full chunk.
fn list_tail(list: &EntryList) -> Vec<u64> {
    let start = list.len() - list.len() % LOAN_LIST_CHUNK;
    list.range(start, list.len()).collect()
}

/// The chunk of a loan's list that a change to it by one entry may have
/// filled, or taken the last entry of (its record then goes), given the
/// list's length after it: the one holding its last entry, when the list
/// ends at the end of a chunk or one short of it. Any other change stays
/// in the list's tail, in the loan's progress record.
pub fn list_chunk_touched(len: usize) -> Option<u64> {
    let into_chunk = len % LOAN_LIST_CHUNK;
    (len > 0 && (into_chunk == 0 || into_chunk == LOAN_LIST_CHUNK - 1))
        .then(|| ((len - 1) / LOAN_LIST_CHUNK) as u64)
}

/// How many full chunks a loan's list has (each a record).
pub(super) fn list_chunks(len: usize) -> u64 {
    (len / LOAN_LIST_CHUNK) as u64
}

/// The layout a cache's records were written in, from its format record
/// (`format_record`, the value under [`StateKey::Format`]): `None` when it
/// has none (records written before format records were kept), `Err` when
/// the record does not decode.
pub fn records_format(format_record: Option<&[u8]>) -> Result<Option<u32>, String> {
    format_record
        .map(|value| decode(FORMAT_KEY, value))
        .transpose()
}

use crate::codec::encode;

fn decode<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("record {key:?}: {e}"))
}

impl StateKey {
    /// The key's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            StateKey::Head => HEAD_KEY.to_owned(),
            StateKey::Format => FORMAT_KEY.to_owned(),
            StateKey::Branch(id) => format!("branch/{id}"),
            StateKey::Center(id) => format!("center/{id}"),
            StateKey::Group(id) => format!("group/{id}"),
            StateKey::Member(id) => format!("member/{id}"),
            StateKey::Savings(id) => format!("savings/{id}"),
            StateKey::Loan(id) => format!("loan/{id}"),
            StateKey::LoanProgress(id) => format!("repaid/{id}"),
            StateKey::LoanEvents(id, chunk) => format!("loanevents/{id}/{chunk:010}"),
            StateKey::LoanHistory(id, chunk) => format!("loanhistory/{id}/{chunk:010}"),
            StateKey::LoanSchedule(id) => format!("{LOAN_SCHEDULE_PREFIX}{id}"),
            StateKey::LoanEnded(id) => format!("{LOAN_ENDED_PREFIX}{id}"),
            StateKey::Product(id) => format!("product/{id}"),
            StateKey::Reversed(sequence) => format!("reversed/{sequence:020}"),
            StateKey::Day(branch, date) => format!("day/{branch}/{date}"),
            StateKey::Access => ACCESS_KEY.to_owned(),
            StateKey::Steps(account, index) => StepsOf::Account(account.clone()).key(*index),
            StateKey::LineSteps(branch, line, index) => {
                StepsOf::Line(branch.clone(), line.clone()).key(*index)
            }
            StateKey::Carry(branch, date) => format!("carry/{branch}/{date}"),
            StateKey::SavingsProduct(id) => format!("savings-product/{id}"),
            StateKey::DayChunk(branch, first) => crate::day_log::closed_chunk_key(branch, *first),
            StateKey::DayOpen(branch) => crate::day_log::open_chunk_key(branch),
            StateKey::EndedLatest => ENDED_LATEST_KEY.to_owned(),
            StateKey::LoanSteps(id) => kept_steps_key(&AccountId::Loan(id.clone())),
            StateKey::ClosedSteps(account, index) => closed_steps_key(account, *index),
            StateKey::SavingsHistory(branch, through, index) => {
                super::folds::history_key(branch, *through, *index)
            }
        }
        .into_bytes()
    }
}

impl LedgerState {
    /// The record of `key` in the current state.
    fn record(&self, key: &StateKey) -> Option<Vec<u8>> {
        match key {
            StateKey::Head => Some(encode(&(self.last_sequence, self.last_hash()))),
            StateKey::Format => Some(encode(&STATE_FORMAT)),
            StateKey::Branch(id) => self.branches.get(id).map(encode),
            StateKey::Center(id) => self.centers.get(id).map(encode),
            StateKey::Group(id) => self.groups.get(id).map(encode),
            StateKey::Member(id) => self.members.get(id).map(|member| encode(&**member)),
            StateKey::Savings(id) => self.savings.get(id).map(|account| encode(&**account)),
            StateKey::Loan(id) => self
                .running_loan(id)
                .map(|loan| encode(&LoanRecord::of(loan))),
            StateKey::LoanProgress(id) => self
                .running_loan(id)
                .map(|loan| encode(&LoanProgress::of(loan))),
            StateKey::LoanEvents(id, chunk) => self
                .running_loan(id)
                .and_then(|loan| list_chunk(&loan.events, *chunk))
                .map(|chunk| encode(&chunk)),
            StateKey::LoanHistory(id, chunk) => self
                .running_loan(id)
                .and_then(|loan| list_chunk(&loan.history, *chunk))
                .map(|chunk| encode(&chunk)),
            // A loan memory let go of: read back from the store (never
            // among the changed records then: `take_changed_keys`).
            StateKey::LoanSchedule(id) => match self.loans.get(id) {
                Some(loan) => loan.has_ended().then(|| encode(&**loan)),
                None => self.stored.read(&key.to_bytes()).ok().flatten(),
            },
            StateKey::LoanEnded(id) => match self.loans.get(id) {
                Some(loan) => EndedLoan::of(loan).map(|ended| encode(&ended)),
                None => self.stored.read(&key.to_bytes()).ok().flatten(),
            },
            StateKey::EndedLatest => self.ended_latest.map(|date| encode(&DateRecord(date))),
            StateKey::Product(id) => self.products.get(id).map(encode),
            StateKey::Reversed(sequence) => self.reversed.get(sequence).map(encode),
            StateKey::Day(branch, date) => self
                .days
                .get(branch)
                .and_then(|days| days.get(date))
                .map(encode),
            StateKey::Access => (!self.access.is_empty()).then(|| encode(&*self.access)),
            // Read back in part when let go of (an export's; a checkpoint
            // takes a grown one through `grown_account_record`). None for
            // a loan that ended: its records are kept in one
            // (`StateKey::LoanSteps`).
            StateKey::Steps(account, index) => {
                if self.steps_kept(account) {
                    return None;
                }
                self.books.account_record(account, *index).ok().flatten()
            }
            // Taken by `record_or_read`, which says when it cannot be read.
            StateKey::LoanSteps(id) => self.loan_steps_record(id).ok().flatten(),
            StateKey::ClosedSteps(account, index) => self
                .books
                .moved_account_record(account, *index)
                .ok()
                .flatten(),
            StateKey::SavingsHistory(branch, through, index) => self
                .savings_history_record(branch, *through, *index)
                .ok()
                .flatten(),
            StateKey::LineSteps(branch, line, index) => {
                self.books.line_record(branch, line, *index)
            }
            StateKey::SavingsProduct(id) => self.savings_products.get(id).map(encode),
            // Read back from the store when let go of (never among the
            // changed records: `take_changed_keys`).
            StateKey::DayChunk(branch, first) => self
                .day_log
                .closed_chunk(branch, *first)
                .ok()
                .flatten()
                .map(|chunk| encode(&*chunk)),
            StateKey::DayOpen(branch) => self.day_log.open_chunk(branch).map(encode),
            StateKey::Carry(branch, date) => self
                .books
                .carries()
                .find(|((b, d), _)| b == branch && d == date)
                .map(|(_, lines)| encode(lines)),
        }
    }

    /// The record of `key` in the current state, an error when what it
    /// must be made of could not be read back from the store (a closed
    /// or cancelled loan's account's records let go of): a checkpoint
    /// then writes nothing, rather than a record without them.
    fn record_or_read(&self, key: &StateKey) -> Result<Option<Vec<u8>>, ReadError> {
        match key {
            StateKey::LoanSteps(id) => self.loan_steps_record(id),
            StateKey::Steps(account, index) if !self.steps_kept(account) => {
                self.books.account_record(account, *index)
            }
            StateKey::ClosedSteps(account, index) => {
                self.books.moved_account_record(account, *index)
            }
            StateKey::SavingsHistory(branch, through, index) => {
                self.savings_history_record(branch, *through, *index)
            }
            key => Ok(self.record(key)),
        }
    }

    /// True when `account`'s records of steps are kept in one record
    /// ([`StateKey::LoanSteps`]), not in its own: a loan's account once
    /// the loan ended (memory holds it ended, or let go of it).
    pub(super) fn steps_kept(&self, account: &AccountId) -> bool {
        match account {
            AccountId::Loan(id) => self.loans.get(id).is_none_or(|loan| loan.has_ended()),
            _ => false,
        }
    }

    /// The record keeping a closed or cancelled loan's account's records
    /// of steps: made from the books while memory holds the loan, as the
    /// store keeps it once memory let go of it; none while it runs.
    fn loan_steps_record(&self, id: &LoanId) -> Result<Option<Vec<u8>>, ReadError> {
        match self.loans.get(id) {
            Some(loan) if loan.has_ended() => self
                .books
                .kept_steps_value(&AccountId::Loan(id.clone()))
                .map(Some),
            Some(_) => Ok(None),
            None => self
                .stored
                .read(&StateKey::LoanSteps(id.clone()).to_bytes()),
        }
    }

    /// Loan `id` while it runs (active or written off): a closed or
    /// cancelled loan has none of the records of one.
    fn running_loan(&self, id: &LoanId) -> Option<&Loan> {
        self.loans
            .get(id)
            .filter(|loan| !loan.has_ended())
            .map(Arc::as_ref)
    }

    /// The records changed since the last call, with their keys, to
    /// save: taken under the state's lock, all but the accounts' records
    /// grown since they were let go of, which
    /// [`Changes::complete`] reads back from the store, and which the
    /// server completes outside it.
    pub fn take_changes_to_save(&mut self) -> Changes {
        let keys = self.take_changed_keys();
        let mut records = Vec::with_capacity(keys.len());
        let mut grown = Vec::new();
        let mut failed = None;
        // Records moving out whose own keys' values wait for their steps
        // to be read back (keys sort a record's own before its steps').
        let mut moved_later: BTreeMap<(AccountId, u64), usize> = BTreeMap::new();
        for key in &keys {
            let grown_record = match key {
                // What a record moving out keeps under its own key: made
                // here when what its steps are stored as is known.
                StateKey::Steps(account, index) if self.books.is_moved(account, *index) => {
                    if !self.books.moved_value_known(account, *index) {
                        moved_later.insert((account.clone(), *index), records.len());
                        records.push((key.to_bytes(), None));
                        continue;
                    }
                    None
                }
                StateKey::Steps(account, index) if !self.steps_kept(account) => self
                    .books
                    .grown_account_record(account, *index)
                    .map(|record| (account.clone(), *index, record)),
                // Read back outside the lock, with its own key's value when
                // that waits for it.
                StateKey::ClosedSteps(account, index) => {
                    let later = moved_later.contains_key(&(account.clone(), *index));
                    self.books
                        .moved_record_to_complete(account, *index, later)
                        .map(|record| (account.clone(), *index, record))
                }
                _ => None,
            };
            let value = match grown_record {
                Some((account, index, record)) => {
                    let own = match record.completes_moved() {
                        true => moved_later.remove(&(account.clone(), index)),
                        false => None,
                    };
                    grown.push((records.len(), account, index, record, own));
                    None
                }
                None => match self.record_or_read(key) {
                    Ok(value) => value,
                    Err(error) => {
                        failed.get_or_insert(error);
                        None
                    }
                },
            };
            records.push((key.to_bytes(), value));
        }
        // Each waits for its steps, noted changed with it.
        if let Some((account, index)) = moved_later.keys().next() {
            failed.get_or_insert(ReadError::Damaged(format!(
                "record {:?} moves out without its steps",
                String::from_utf8_lossy(&StateKey::Steps(account.clone(), *index).to_bytes())
            )));
        }
        Changes {
            keys,
            records,
            grown,
            store: self.books.stored_records(),
            failed,
        }
    }

    /// The records changed since the last call, with their keys, taken
    /// and completed at once ([`LedgerState::take_changes_to_save`]); an
    /// error, with every key still noted changed, when one could not be
    /// read back to be written whole.
    pub fn take_changes_with_keys(
        &mut self,
    ) -> Result<(Vec<StateKey>, Vec<StateRecord>), ReadError> {
        match self.take_changes_to_save().complete() {
            Ok((records, saved)) => {
                // Nothing was booked since they were taken.
                for (account, index, written) in &saved.written {
                    self.books.note_written(account, *index, *written);
                }
                Ok((saved.keys, records))
            }
            Err((error, keys)) => {
                self.mark_changed(keys);
                Err(error)
            }
        }
    }

    /// The keys changed since the last call, in key order.
    fn take_changed_keys(&mut self) -> Vec<StateKey> {
        let mut keys = self.changed.take();
        // The loans that ended or reopened since: their accounts' records
        // move between their own keys and the one that keeps them.
        let moved: BTreeSet<LoanId> = keys
            .iter()
            .filter_map(|key| match key {
                StateKey::LoanSteps(id) => Some(id.clone()),
                _ => None,
            })
            .collect();
        let moved_account = |account: &AccountId| match account {
            AccountId::Loan(id) => moved.contains(id),
            _ => false,
        };
        // The closed records moving out of those read at startup: their own
        // keys are written again, let go of or not.
        let moving: BTreeSet<(AccountId, u64)> = keys
            .iter()
            .filter_map(|key| match key {
                StateKey::ClosedSteps(account, index) => Some((account.clone(), *index)),
                _ => None,
            })
            .collect();
        // A closed day-log chunk let go of is in the store as it will stay:
        // its record is never written again (nor, unread, taken for gone).
        keys.retain(|key| match key {
            StateKey::DayChunk(branch, first) => !self.day_log.is_let_go(branch, *first),
            // And an account's record of steps let go of (closed, or a
            // member's account's last one), unless its loan ended or
            // reopened: its records then move.
            StateKey::Steps(account, index) => {
                !self.books.is_let_go(account, *index)
                    || moved_account(account)
                    || moving.contains(&(account.clone(), *index))
            }
            // So are an ended loan's records once memory let go of it,
            // until the loan changes.
            StateKey::LoanSchedule(id) | StateKey::LoanEnded(id) | StateKey::LoanSteps(id) => {
                self.loans.contains_key(id)
            }
            _ => true,
        });
        keys.sort_unstable();
        keys
    }

    /// The records of `keys` were saved: what the state holds only for
    /// the store to save (closed day-log chunks, closed and cancelled
    /// loans, accounts' closed records of steps, and a member's account's
    /// last one) is let go of, to be read back when asked.
    pub fn saved(&mut self, keys: &[StateKey]) {
        for key in keys {
            match key {
                StateKey::DayChunk(branch, first) => self.day_log.let_go(branch, *first),
                StateKey::LoanSchedule(id) => self.let_go_of_ended(id),
                // Folded changes, unless folded again since (a reopening
                // and a close of the same date).
                StateKey::SavingsHistory(branch, through, index)
                    if self.stored.0.is_some() && !self.changed.contains(key) =>
                {
                    self.savings_history
                        .remove(&(branch.clone(), *through, *index));
                }
                // With the account's records before it that closed since
                // they were saved (a record saved while it was the last
                // is not named again when the next one opens), unless
                // entries applied while it saved changed them again: the
                // store then holds an older one, until the next checkpoint.
                // Not a loan's that ended: its records went, kept in one
                // (`StateKey::LoanSteps`), and its book goes with the loan.
                StateKey::Steps(account, index)
                    if self.stored.0.is_some() && !self.steps_kept(account) =>
                {
                    for k in (0..=*index).rev() {
                        if self.books.is_let_go(account, k) {
                            break;
                        }
                        if !self.changed.contains(&StateKey::Steps(account.clone(), k)) {
                            self.books.let_go(account, k);
                        }
                    }
                    // The last too, of a member's account, unless a later
                    // entry booked to it since.
                    if let Some(last) = self.books.last_record(account)
                        && !self
                            .changed
                            .contains(&StateKey::Steps(account.clone(), last))
                    {
                        self.books.let_go_last(account);
                    }
                }
                _ => {}
            }
        }
    }

    /// The records of `saved` were saved ([`LedgerState::saved`]), and
    /// with them the accounts' records grown since they were let go of
    /// that it completed: each is let go of again unless an entry applied
    /// since the checkpoint took it booked to it.
    pub fn saved_whole(&mut self, saved: &Saved) {
        for (account, index, written) in &saved.written {
            if !self
                .changed
                .contains(&StateKey::Steps(account.clone(), *index))
            {
                self.books.note_written(account, *index, *written);
            }
        }
        self.saved(&saved.keys);
    }

    /// Marks `keys` changed again (their records were not saved).
    pub fn mark_changed(&mut self, keys: Vec<StateKey>) {
        for key in keys {
            self.changed.note(|| key);
        }
    }

    /// The records changed since the last call, in key order (an error as
    /// for [`LedgerState::take_changes_with_keys`]).
    pub fn take_changes(&mut self) -> Result<Vec<StateRecord>, ReadError> {
        self.take_changes_with_keys().map(|(_, records)| records)
    }

    /// Forgets which records changed (after loading or rebuilding).
    pub fn clear_changes(&mut self) {
        self.changed.clear();
    }

    /// Every record of the state, sorted by key bytes: the ended loans
    /// memory let go of read from the store, an error when it could not
    /// list or read them.
    pub fn export(&self) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, DomainError> {
        let mut keys = vec![StateKey::Head, StateKey::Format, StateKey::Access];
        keys.extend(self.branches.keys().cloned().map(StateKey::Branch));
        keys.extend(self.centers.keys().cloned().map(StateKey::Center));
        keys.extend(self.groups.keys().cloned().map(StateKey::Group));
        keys.extend(self.members.keys().cloned().map(StateKey::Member));
        keys.extend(self.savings.keys().cloned().map(StateKey::Savings));
        // Each branch's folds' records (those no account fell to have none).
        for branch in self.branches.values() {
            for fold in &branch.folds {
                keys.extend(
                    (0..fold.records).map(|index| {
                        StateKey::SavingsHistory(branch.id.clone(), fold.through, index)
                    }),
                );
            }
        }
        keys.extend(self.loans.keys().cloned().map(StateKey::Loan));
        keys.extend(self.loans.keys().cloned().map(StateKey::LoanProgress));
        // Those memory let go of too, as the store lists them.
        let mut let_go = BTreeMap::new();
        for loan in self.every_loan(None)? {
            let id = loan.id().clone();
            if loan.is_summary() {
                // Its three records as the store holds them.
                for key in [
                    StateKey::LoanSchedule(id.clone()),
                    StateKey::LoanEnded(id.clone()),
                    StateKey::LoanSteps(id.clone()),
                ] {
                    let key = key.to_bytes();
                    let value = self
                        .stored
                        .read(&key)
                        .map_err(|error| stored_error(&format!("loan {id}'s records"), error))?
                        .ok_or_else(|| DomainError::Damaged {
                            message: format!(
                                "record {:?} is missing from the state cache",
                                String::from_utf8_lossy(&key)
                            ),
                        })?;
                    let_go.insert(key, value);
                }
            } else if loan.has_ended() {
                keys.push(StateKey::LoanSchedule(id.clone()));
                keys.push(StateKey::LoanEnded(id.clone()));
                let key = StateKey::LoanSteps(id.clone());
                let value = self
                    .record_or_read(&key)
                    .map_err(|error| stored_error(&format!("loan {id}'s account"), error))?;
                let_go.extend(value.map(|value| (key.to_bytes(), value)));
            }
        }
        if self.ended_latest.is_some() {
            keys.push(StateKey::EndedLatest);
        }
        for (id, loan) in &self.loans {
            keys.extend(
                (0..list_chunks(loan.events.len())).map(|k| StateKey::LoanEvents(id.clone(), k)),
            );
            keys.extend(
                (0..list_chunks(loan.history.len())).map(|k| StateKey::LoanHistory(id.clone(), k)),
            );
        }
        keys.extend(self.products.keys().cloned().map(StateKey::Product));
        keys.extend(
            self.savings_products
                .keys()
                .cloned()
                .map(StateKey::SavingsProduct),
        );
        keys.extend(self.reversed.keys().copied().map(StateKey::Reversed));
        for (branch, days) in &self.days {
            keys.extend(days.keys().map(|date| StateKey::Day(branch.clone(), *date)));
        }
        keys.extend(
            self.books
                .account_record_keys()
                .filter(|(account, _)| !self.steps_kept(account))
                .map(|(account, index)| StateKey::Steps(account.clone(), index)),
        );
        keys.extend(
            self.books
                .account_record_keys()
                .filter(|(account, index)| self.books.is_moved(account, *index))
                .map(|(account, index)| StateKey::ClosedSteps(account.clone(), index)),
        );
        keys.extend(
            self.books.line_record_keys().map(|(branch, line, index)| {
                StateKey::LineSteps(branch.clone(), line.clone(), index)
            }),
        );
        keys.extend(
            self.day_log
                .closed_keys()
                .map(|(branch, first)| StateKey::DayChunk(branch.clone(), first)),
        );
        keys.extend(self.day_log.branches().cloned().map(StateKey::DayOpen));
        keys.extend(
            self.books
                .carries()
                .map(|((branch, date), _)| StateKey::Carry(branch.clone(), *date)),
        );
        let mut records = BTreeMap::new();
        for key in &keys {
            let value = self
                .record_or_read(key)
                .map_err(|error| stored_error("the state's records", error))?;
            if let Some(value) = value {
                records.insert(key.to_bytes(), value);
            }
        }
        records.append(&mut let_go);
        Ok(records)
    }

    /// Rebuilds a state from its records (as `export` gives them).
    pub fn import<'a>(
        records: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<LedgerState, String> {
        let mut import = StateImport::default();
        for (key, value) in records {
            import.add(key, value)?;
        }
        import.finish()
    }

    fn import_record(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        if key == HEAD_KEY {
            let (sequence, hash): (u64, Hash) = decode(key, value)?;
            self.last_sequence = sequence;
            self.last_hash = (sequence > 0).then_some(hash);
            return Ok(());
        }
        if key == ENDED_LATEST_KEY {
            let DateRecord(date) = decode(key, value)?;
            self.ended_latest = Some(date);
            return Ok(());
        }
        if key == FORMAT_KEY {
            let format: u32 = decode(key, value)?;
            if format != STATE_FORMAT {
                return Err(format!(
                    "state records of format {format}; this release reads format {STATE_FORMAT}"
                ));
            }
            return Ok(());
        }
        if key == ACCESS_KEY {
            let mut access: Access = decode(key, value)?;
            access.reindex();
            self.access = Arc::new(access);
            return Ok(());
        }
        let (kind, rest) = key
            .split_once('/')
            .ok_or_else(|| format!("record key {key:?} has no kind"))?;
        match kind {
            "branch" => {
                let branch: Branch = decode(key, value)?;
                self.branches.insert(branch.id.clone(), branch);
            }
            "center" => {
                let center: Center = decode(key, value)?;
                self.centers.insert(center.id.clone(), center);
            }
            "group" => {
                let group: Group = decode(key, value)?;
                self.groups.insert(group.id.clone(), group);
            }
            "member" => {
                let member: Member = decode(key, value)?;
                self.members.insert(member.id.clone(), Arc::new(member));
            }
            "savings" => {
                let account: SavingsAccount = decode(key, value)?;
                self.savings.insert(account.id.clone(), Arc::new(account));
            }
            "loan" => {
                let loan: LoanRecord = decode(key, value)?;
                self.loans
                    .insert(loan.id.clone(), Arc::new(loan.into_loan()));
            }
            "repaid" => {
                let progress: LoanProgress = decode(key, value)?;
                let id = LoanId::parse("key", rest).map_err(|e| e.to_string())?;
                let loan = self
                    .loan_being_read(&id)
                    .ok_or_else(|| format!("record {key:?} has no loan record"))?;
                progress.restore(loan)?;
            }
            "savings-product" => {
                let versions: Vec<crate::product::SavingsProductVersion> = decode(key, value)?;
                let id = ProductId::parse("key", rest).map_err(|e| e.to_string())?;
                self.savings_products.insert(id, versions);
            }
            "product" => {
                let versions: Vec<ProductVersion> = decode(key, value)?;
                let id = ProductId::parse("key", rest).map_err(|e| e.to_string())?;
                self.products.insert(id, versions);
            }
            "reversed" => {
                let sequence: u64 = rest.parse().map_err(|_| format!("record key {key:?}"))?;
                self.reversed.insert(sequence, decode(key, value)?);
            }
            "day" => {
                let (branch, date) = rest
                    .split_once('/')
                    .ok_or_else(|| format!("record key {key:?}"))?;
                let branch = BranchId::parse("key", branch).map_err(|e| e.to_string())?;
                let date: NaiveDate = date.parse().map_err(|_| format!("record key {key:?}"))?;
                self.days
                    .entry(branch)
                    .or_default()
                    .insert(date, decode(key, value)?);
            }
            _ => return Err(format!("record key {key:?} has an unknown kind")),
        }
        Ok(())
    }

    /// Takes in the closed and cancelled loans read back ([`EndedRecords`]):
    /// each read whole is held (checked against its summary) until the
    /// state is given the store ([`LedgerState::keep_stored_in`]). Every
    /// such loan must have its three records, must have ended, and none
    /// may have the records of a running loan too.
    fn take_ended_loans(&mut self, ended: EndedRecords) -> Result<(), String> {
        let EndedRecords {
            wholes,
            summaries,
            schedule_ids,
            summary_ids,
            steps_ids,
            hasher: _,
        } = ended;
        if schedule_ids != summary_ids {
            return Err(format!(
                "the state cache holds the records of {} closed or cancelled loans \
                 ({LOAN_SCHEDULE_PREFIX}) and the summaries of {} ({LOAN_ENDED_PREFIX}), \
                 not of the same loans",
                schedule_ids.count, summary_ids.count
            ));
        }
        if schedule_ids != steps_ids {
            return Err(format!(
                "the state cache holds the records of {} closed or cancelled loans \
                 ({LOAN_SCHEDULE_PREFIX}) and the accounts' records of {} \
                 ({KEPT_STEPS_PREFIX}), not of the same loans",
                schedule_ids.count, steps_ids.count
            ));
        }
        let mut summaries: BTreeMap<LoanId, EndedLoan> = summaries
            .into_iter()
            .map(|summary| (summary.id.clone(), summary))
            .collect();
        if let Some(summary) = summaries.values().find(|s| self.loans.contains_key(&s.id)) {
            return Err(format!(
                "loan {} has the records of a running loan and the summary of a {:?} one",
                summary.id, summary.status
            ));
        }
        for mut loan in wholes {
            if !loan.has_ended() {
                return Err(format!(
                    "record {LOAN_SCHEDULE_PREFIX}{} holds a {:?} loan, not a closed or cancelled one",
                    loan.id, loan.status
                ));
            }
            let id = loan.id.clone();
            if let Some(summary) = summaries.remove(&id)
                && EndedLoan::of(&loan).as_ref() != Some(&summary)
            {
                return Err(format!(
                    "record {LOAN_SCHEDULE_PREFIX}{id} holds loan {id} {:?}, not the {:?} \
                     loan its summary describes",
                    loan.status, summary.status
                ));
            }
            if self.loans.contains_key(&id) {
                return Err(format!(
                    "loan {id} has the records of a running loan and the record of a {:?} one",
                    loan.status
                ));
            }
            loan.keep_running_sums();
            self.loans.insert(id, Arc::new(loan));
        }
        Ok(())
    }

    /// Builds the maps read back again at once from their entries in key
    /// order, which fills their nodes: inserted one at a time in key
    /// order, as they are read, a `BTreeMap` leaves every node it split
    /// about half full, since the half left of the split is never written
    /// to again. The writer's copy of the maps takes their shape.
    fn pack_maps(&mut self) {
        fn packed<K: Ord, V>(map: &mut BTreeMap<K, V>) {
            *map = std::mem::take(map).into_iter().collect();
        }
        packed(&mut self.centers);
        packed(&mut self.groups);
        packed(&mut self.members);
        packed(&mut self.savings);
        packed(&mut self.loans);
        for days in self.days.values_mut() {
            packed(days);
        }
    }

    /// Loan `id` as its records are read back (from its loan record on).
    fn loan_being_read(&mut self, id: &LoanId) -> Option<&mut Loan> {
        self.loans.get_mut(id).map(Arc::make_mut)
    }
}

/// A loan's record without what was repaid: its rules, terms and schedule
/// (rewritten only when a tranche or a prepayment changes the schedule).
#[derive(Serialize, Deserialize)]
struct LoanRecord {
    id: LoanId,
    member: MemberId,
    branch: BranchId,
    currency: Currency,
    product: Option<(ProductId, u32)>,
    policy: LoanPolicy,
    terms: LoanTerms,
    #[serde(with = "crate::codec::date")]
    disbursed_on: NaiveDate,
    #[serde(with = "crate::codec::decimal")]
    approved_principal: Decimal,
    schedule: Vec<Installment>,
}

impl LoanRecord {
    fn of(loan: &Loan) -> LoanRecord {
        LoanRecord {
            id: loan.id.clone(),
            member: loan.member.clone(),
            branch: loan.branch.clone(),
            currency: loan.currency,
            product: loan.product.clone(),
            policy: loan.policy.clone(),
            terms: loan.terms.clone(),
            disbursed_on: loan.disbursed_on,
            approved_principal: loan.approved_principal,
            schedule: loan.installments.dues().collect(),
        }
    }

    /// The loan with nothing repaid; its progress record completes it.
    fn into_loan(self) -> Loan {
        Loan {
            principal_unpaid: Decimal::ZERO,
            interest_unpaid: Decimal::ZERO,
            fee_unpaid: Decimal::ZERO,
            first_unpaid: 0,
            id: self.id,
            member: self.member,
            branch: self.branch,
            currency: self.currency,
            product: self.product,
            policy: self.policy,
            principal_changes: crate::dated::DatedAmounts::new(),
            paid_changes: crate::dated::DatedAmounts::new(),
            disbursed: self.terms.principal,
            terms: self.terms,
            disbursed_on: self.disbursed_on,
            approved_principal: self.approved_principal,
            status: LoanStatus::Active,
            installments: self
                .schedule
                .into_iter()
                .map(InstallmentState::unpaid)
                .collect(),
            last_repayment_on: self.disbursed_on,
            tranches: 1,
            principal_prepaid: Decimal::ZERO,
            written_off: Decimal::ZERO,
            recovered: Decimal::ZERO,
            ended_on: None,
            events: EntryList::new(),
            history: EntryList::new(),
        }
    }
}

/// A closed or cancelled loan's summary ([`StateKey::LoanEnded`]) read
/// back, which must be loan `id`'s.
pub(super) fn decode_summary(
    key: &[u8],
    value: &[u8],
    id: &LoanId,
) -> Result<EndedLoan, ReadError> {
    let name = String::from_utf8_lossy(key);
    let summary: EndedLoan = decode(&name, value).map_err(ReadError::Damaged)?;
    if summary.id != *id {
        return Err(ReadError::Damaged(format!(
            "record {name:?} holds the summary of loan {}",
            summary.id
        )));
    }
    Ok(summary)
}

/// The latest date a loan ended on, as its record holds it.
#[derive(Serialize, Deserialize)]
struct DateRecord(#[serde(with = "crate::codec::date")] NaiveDate);

/// A closed or cancelled loan's record ([`StateKey::LoanSchedule`]), the
/// loan whole, read back and checked against its summary.
pub(super) fn decode_ended_loan(
    key: &str,
    value: &[u8],
    ended: &EndedLoan,
) -> Result<Loan, String> {
    let mut loan: Loan = decode(key, value)?;
    if EndedLoan::of(&loan).as_ref() != Some(ended) {
        return Err(format!(
            "the record holds loan {} {:?}, not the {:?} loan {} its summary describes",
            loan.id, loan.status, ended.status, ended.id
        ));
    }
    loan.keep_running_sums();
    Ok(loan)
}

/// What was paid on one installment at or after the first unpaid one.
#[derive(Serialize, Deserialize)]
struct Paid {
    number: u32,
    #[serde(with = "crate::codec::decimal")]
    principal: Decimal,
    #[serde(with = "crate::codec::decimal")]
    interest: Decimal,
    #[serde(with = "crate::codec::decimal")]
    fee: Decimal,
}

/// What has happened on a loan since disbursement, compactly: every
/// installment before `first_unpaid` is paid in full; the others are listed
/// when partly paid.
#[derive(Serialize, Deserialize)]
struct LoanProgress {
    status: LoanStatus,
    #[serde(with = "crate::codec::date")]
    last_repayment_on: NaiveDate,
    #[serde(with = "crate::codec::date_decimal_map")]
    principal_changes: crate::dated::DatedAmounts,
    #[serde(with = "crate::codec::date_decimal_map")]
    paid_changes: crate::dated::DatedAmounts,
    #[serde(with = "crate::codec::decimal")]
    principal_unpaid: Decimal,
    #[serde(with = "crate::codec::decimal")]
    interest_unpaid: Decimal,
    #[serde(with = "crate::codec::decimal")]
    fee_unpaid: Decimal,
    first_unpaid: u32,
    paid_after_first_unpaid: Vec<Paid>,
    #[serde(with = "crate::codec::decimal")]
    disbursed: Decimal,
    tranches: u32,
    #[serde(with = "crate::codec::decimal")]
    principal_prepaid: Decimal,
    #[serde(with = "crate::codec::decimal")]
    written_off: Decimal,
    #[serde(with = "crate::codec::decimal")]
    recovered: Decimal,
    #[serde(with = "crate::codec::date_option")]
    ended_on: Option<NaiveDate>,
    /// The loan's entries that still stand after the last full chunk.
    events: ListTail,
    /// Every entry that changed the loan, after the last full chunk.
    history: ListTail,
}

/// A loan's list of entries as its progress record holds it: its length,
/// and its entries after the chunks that have records of their own
/// ([`StateKey::LoanEvents`], [`StateKey::LoanHistory`]).
#[derive(Serialize, Deserialize)]
struct ListTail {
    len: u64,
    tail: Vec<u64>,
}

impl ListTail {
    fn of(list: &EntryList) -> ListTail {
        ListTail {
            len: list.len() as u64,
            tail: list_tail(list),
        }
    }

    /// Appends the tail to `list`, which holds the full chunks read before
    /// (`loan` and `which` name them in a refusal).
    fn restore(self, list: &mut EntryList, loan: &LoanId, which: &str) -> Result<(), String> {
        let chunks = list.len() as u64;
        if !chunks.is_multiple_of(LOAN_LIST_CHUNK as u64)
            || self.tail.len() >= LOAN_LIST_CHUNK
            || chunks + self.tail.len() as u64 != self.len
        {
            return Err(format!(
                "loan {loan}: its progress record says its {which} holds {} entries, {} of them \
                 after its full chunks, and {chunks} were read in chunks",
                self.len,
                self.tail.len()
            ));
        }
        list.extend_from_slice(&self.tail);
        Ok(())
    }
}

impl LoanProgress {
    fn of(loan: &Loan) -> LoanProgress {
        LoanProgress {
            status: loan.status,
            last_repayment_on: loan.last_repayment_on,
            principal_changes: loan.principal_changes.clone(),
            paid_changes: loan.paid_changes.clone(),
            principal_unpaid: loan.principal_unpaid,
            interest_unpaid: loan.interest_unpaid,
            fee_unpaid: loan.fee_unpaid,
            first_unpaid: loan.first_unpaid,
            paid_after_first_unpaid: loan
                .installments
                .paid_from(loan.first_unpaid as usize)
                .filter(|i| {
                    !i.principal_paid.is_zero()
                        || !i.interest_paid.is_zero()
                        || !i.fee_paid.is_zero()
                })
                .map(|i| Paid {
                    number: i.due.number,
                    principal: i.principal_paid,
                    interest: i.interest_paid,
                    fee: i.fee_paid,
                })
                .collect(),
            disbursed: loan.disbursed,
            tranches: loan.tranches,
            principal_prepaid: loan.principal_prepaid,
            written_off: loan.written_off,
            recovered: loan.recovered,
            ended_on: loan.ended_on,
            events: ListTail::of(&loan.events),
            history: ListTail::of(&loan.history),
        }
    }

    fn restore(self, loan: &mut Loan) -> Result<(), String> {
        loan.status = self.status;
        if loan.has_ended() {
            return Err(format!(
                "loan {}: its progress record says {:?}, and a closed or cancelled loan is kept \
                 whole in record {LOAN_SCHEDULE_PREFIX}{}",
                loan.id, self.status, loan.id
            ));
        }
        self.restore_installments(loan)?;
        self.events
            .restore(&mut loan.events, &loan.id, "list of entries")?;
        self.history
            .restore(&mut loan.history, &loan.id, "history")?;
        loan.paid_changes = self.paid_changes;
        loan.last_repayment_on = self.last_repayment_on;
        loan.principal_changes = self.principal_changes;
        loan.keep_running_sums();
        loan.principal_unpaid = self.principal_unpaid;
        loan.interest_unpaid = self.interest_unpaid;
        loan.fee_unpaid = self.fee_unpaid;
        loan.first_unpaid = self.first_unpaid;
        loan.disbursed = self.disbursed;
        loan.tranches = self.tranches;
        loan.principal_prepaid = self.principal_prepaid;
        loan.written_off = self.written_off;
        loan.recovered = self.recovered;
        loan.ended_on = self.ended_on;
        Ok(())
    }

    /// What was paid on each installment, into the loan's schedule.
    fn restore_installments(&self, loan: &mut Loan) -> Result<(), String> {
        let first = self.first_unpaid as usize;
        if first > loan.installments.len() {
            return Err(format!(
                "loan {}: first unpaid installment {first} out of range",
                loan.id
            ));
        }
        loan.installments.for_each_before_mut(first, |installment| {
            installment.principal_paid = installment.due.principal;
            installment.interest_paid = installment.due.interest;
            installment.fee_paid = installment.due.fee;
        });
        for paid in &self.paid_after_first_unpaid {
            let index = (paid.number as usize)
                .checked_sub(1)
                .filter(|i| *i >= first);
            let mut installment = index
                .and_then(|i| loan.installments.get_mut(i))
                .ok_or_else(|| {
                    format!("loan {}: installment {} out of range", loan.id, paid.number)
                })?;
            installment.principal_paid = paid.principal;
            installment.interest_paid = paid.interest;
            installment.fee_paid = paid.fee;
        }
        Ok(())
    }
}

/// What a year-end close carried out of a branch's lines on a date.
type Carry = (BranchId, NaiveDate, Vec<(Line, Balance)>);

/// The books made up from their records apart from the rest of the state
/// (on threads of their own at startup: at 10^7 entries they are most of
/// the records and most of the work of reading them back).
#[derive(Default)]
pub struct BooksRecords {
    import: crate::books::BooksImport,
    records: usize,
}

impl BooksRecords {
    /// Books' records taken in letting go of the accounts' closed records
    /// as they are read ([`crate::books::BooksImport::letting_go`]): for
    /// records read from a store the state will read them back from
    /// ([`LedgerState::keep_stored_in`]).
    pub fn letting_go() -> BooksRecords {
        BooksRecords {
            import: crate::books::BooksImport::letting_go(),
            records: 0,
        }
    }

    /// True for a record of the books ([`BooksRecords::add`] takes it in).
    pub fn holds(key: &[u8]) -> bool {
        key.starts_with(ACCOUNT_STEPS_PREFIX.as_bytes())
            || key.starts_with(LINE_STEPS_PREFIX.as_bytes())
    }

    /// Takes in one record of the books (a value that does not decode may
    /// be refused by a later call, or by [`BooksRecords::settle`], naming
    /// its key).
    pub fn add(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), String> {
        let key = std::str::from_utf8(key).map_err(|_| "a record key is not text".to_owned())?;
        let bad_key = || format!("record key {key:?}");
        let (of, index) = key.rsplit_once('/').ok_or_else(bad_key)?;
        let index: u64 = index.parse().map_err(|_| bad_key())?;
        let of = if let Some(account) = of.strip_prefix(ACCOUNT_STEPS_PREFIX) {
            StepsOf::Account(AccountId::parse("key", account).map_err(|e| e.to_string())?)
        } else if let Some(line) = of.strip_prefix(LINE_STEPS_PREFIX) {
            let (branch, line) = line.split_once('/').ok_or_else(bad_key)?;
            let branch = BranchId::parse("key", branch).map_err(|e| e.to_string())?;
            let line = Line::parse("key", line)
                .map_err(|e| e.to_string())?
                .ok_or_else(bad_key)?;
            StepsOf::Line(branch, line)
        } else {
            return Err(format!("record key {key:?} is not one of the books'"));
        };
        self.import.add(of, index, value)?;
        self.records += 1;
        Ok(())
    }

    /// Takes in an account's closed record of steps moved out, whole
    /// ([`StateKey::ClosedSteps`]): for a state read back whole
    /// ([`LedgerState::import`]).
    pub fn add_moved_whole(&mut self, account: AccountId, index: u64, value: Vec<u8>) {
        self.import.add_moved_whole(account, index, value);
    }

    /// Takes in the records of steps a closed or cancelled loan's account
    /// keeps in one ([`StateKey::LoanSteps`], `key`): for a state read
    /// back whole ([`LedgerState::import`]), which holds the loan.
    pub fn add_kept(&mut self, key: &str, account: AccountId, value: &[u8]) -> Result<(), String> {
        let records: Vec<Vec<u8>> = decode(key, value)?;
        for (record, index) in records.into_iter().zip(0..) {
            self.import
                .add(StepsOf::Account(account.clone()), index, record)?;
            self.records += 1;
        }
        Ok(())
    }

    /// Ends the reading of a share of the books' records: the records
    /// held appended and the totals by date worked out (on the thread
    /// that took them in).
    pub fn settle(&mut self) -> Result<(), String> {
        self.import.settle()
    }

    /// Takes in what another took in: the books' records may be shared
    /// out between several, by account ([`BooksRecords::share_of`]).
    pub fn absorb(&mut self, other: BooksRecords) -> Result<(), String> {
        self.import.absorb(other.import)?;
        self.records += other.records;
        Ok(())
    }

    /// Which of `shares` takes a record of the books in: the same for every
    /// record of one history, so that each history's come to one share in
    /// key order.
    pub fn share_of(key: &[u8], shares: usize) -> usize {
        let account = key
            .iter()
            .rposition(|&b| b == b'/')
            .map_or(key, |slash| &key[..slash]);
        // FNV-1a: any spread will do, the same in every process is not needed.
        let hash = account.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, &b| {
            (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        usize::try_from(hash % shares.max(1) as u64).unwrap_or(0)
    }
}

/// A state being rebuilt from its records, one at a time as a store reads
/// them (so that the records need not all be in memory at once):
/// [`LedgerState::import`] record by record.
#[derive(Default)]
pub struct StateImport {
    state: LedgerState,
    any: bool,
    head: bool,
    format: bool,
    books: BooksRecords,
    carries: Vec<Carry>,
    /// Each branch's day log: its closed chunks (read, or left in the
    /// store) and its open one.
    day_logs: BTreeMap<BranchId, DayRecords>,
    /// The chunks of the loan's list being read, held until a record of
    /// another comes, so the list is sized once for them (grown chunk by
    /// chunk, the lists kept about 100 MiB more resident at 10^7 entries).
    list: Option<ListRun>,
    /// Closed and cancelled loans' records.
    ended: EndedRecords,
    /// The keys of the accounts' closed records of steps moved out
    /// ([`StateKey::ClosedSteps`]), read.
    closed: KeySum,
    /// The records read when asked are not handed over, but for the day
    /// logs' closed chunks by key ([`StateImport::at_startup`]); otherwise
    /// each is handed over whole.
    at_startup: bool,
}

/// The closed and cancelled loans' records a state is rebuilt from, read
/// whole ([`LedgerState::import`]; startup reads none).
#[derive(Default)]
struct EndedRecords {
    /// Loans read whole, taken in with the rest: checked against their
    /// summaries at the end.
    wholes: Vec<Loan>,
    /// Summaries read.
    summaries: Vec<EndedLoan>,
    /// The loans with a record whole ([`StateKey::LoanSchedule`]).
    schedule_ids: IdSum,
    /// The loans with a summary ([`StateKey::LoanEnded`]).
    summary_ids: IdSum,
    /// The loans whose account's records of steps are kept in one
    /// ([`StateKey::LoanSteps`]).
    steps_ids: IdSum,
    hasher: FastHash,
}

impl EndedRecords {
    fn add_schedule(&mut self, id: &str) {
        self.schedule_ids.add(&self.hasher, id);
    }

    fn add_summary(&mut self, id: &str) {
        self.summary_ids.add(&self.hasher, id);
    }

    fn add_steps(&mut self, id: &str) {
        self.steps_ids.add(&self.hasher, id);
    }
}

/// A set of ids, as their number and the sum of their hashes: two sets
/// that differ have the same sum by chance only.
#[derive(Debug, Default, PartialEq, Eq)]
struct IdSum {
    count: u64,
    sum: u64,
}

impl IdSum {
    fn add(&mut self, hasher: &FastHash, id: &str) {
        use std::hash::BuildHasher;
        self.count += 1;
        self.sum = self.sum.wrapping_add(hasher.hash_one(id));
    }
}

/// A branch's day-log records read so far.
#[derive(Default)]
struct DayRecords {
    closed: Vec<(u64, Option<DayChunk>)>,
    open: Option<DayChunk>,
}

/// The branch and first entry a closed day-log chunk's key names.
fn closed_chunk_of(key: &str, rest: &str) -> Result<(BranchId, u64), String> {
    rest.rsplit_once('/')
        .and_then(|(branch, first)| {
            Some((BranchId::parse("key", branch).ok()?, first.parse().ok()?))
        })
        .ok_or_else(|| format!("record key {key:?}"))
}

/// Consecutive chunks of one of a loan's lists of entries.
struct ListRun {
    loan: LoanId,
    /// The list of every entry that changed the loan, or of those that stand.
    history: bool,
    /// The first chunk's key, for a refusal.
    key: String,
    chunks: Vec<Vec<u64>>,
}

/// The records a checkpoint took to save ([`LedgerState::take_changes_to_save`]):
/// all but the accounts' records grown since they were let go of, which
/// [`Changes::complete`] reads back from the store, outside the state's
/// lock, and puts in their place.
#[derive(Debug)]
pub struct Changes {
    keys: Vec<StateKey>,
    records: Vec<StateRecord>,
    /// Where in `records` each grown record goes, its account and index,
    /// and the record.
    grown: Vec<(
        usize,
        AccountId,
        u64,
        crate::books::GrownAccountRecord,
        Option<usize>,
    )>,
    store: Option<Arc<dyn crate::stored::StoredRecords>>,
    /// Why a record taken under the lock could not be made (a closed
    /// loan's account's record let go of, unreadable): nothing is written.
    failed: Option<ReadError>,
}

/// What a checkpoint saved, once it is saved ([`LedgerState::saved_whole`]):
/// its keys, and what it wrote of each account's record grown since it
/// was let go of.
#[derive(Debug)]
pub struct Saved {
    keys: Vec<StateKey>,
    written: Vec<(AccountId, u64, crate::books::StoredAs)>,
}

impl Saved {
    /// The keys saved, to mark changed again when the save failed.
    pub fn into_keys(self) -> Vec<StateKey> {
        self.keys
    }
}

impl Changes {
    /// The records to save, every grown one read back from the store and
    /// written whole, and what to tell the state once they are saved; an
    /// error, with the keys to mark changed again, when one could not be
    /// read back or is not the one let go of (nothing is then written).
    pub fn complete(self) -> Result<(Vec<StateRecord>, Saved), (ReadError, Vec<StateKey>)> {
        let Changes {
            keys,
            mut records,
            grown,
            store,
            failed,
        } = self;
        if let Some(error) = failed {
            return Err((error, keys));
        }
        let mut written = Vec::with_capacity(grown.len());
        for (at, account, index, record, own) in grown {
            match record.complete(store.as_deref()) {
                Ok(completed) => {
                    records[at].1 = Some(completed.value);
                    if let Some(own) = own {
                        records[own].1 = completed.moved;
                    }
                    written.push((account, index, completed.written));
                }
                Err(error) => return Err((error, keys)),
            }
        }
        Ok((records, Saved { keys, written }))
    }
}

/// The loan whose account's records of steps a kept record's key names
/// ([`StateKey::LoanSteps`]), if it is one.
fn loan_steps_id(key: &str) -> Option<Result<LoanId, String>> {
    let account = key.strip_prefix(KEPT_STEPS_PREFIX)?;
    let id = match AccountId::parse("key", account) {
        Ok(AccountId::Loan(id)) => Ok(id),
        _ => Err(format!("record {key:?} names no loan's account")),
    };
    Some(id)
}

/// A record of one of a loan's lists: the loan, which list, the chunk.
fn list_record(key: &str) -> Option<Result<(LoanId, bool, u64), String>> {
    let (history, rest) = match key.strip_prefix("loanevents/") {
        Some(rest) => (false, rest),
        None => (true, key.strip_prefix("loanhistory/")?),
    };
    let parsed = rest
        .rsplit_once('/')
        .and_then(|(id, chunk)| Some((LoanId::parse("key", id).ok()?, chunk.parse().ok()?)))
        .map(|(id, chunk)| (id, history, chunk))
        .ok_or_else(|| format!("record key {key:?}"));
    Some(parsed)
}

impl StateImport {
    /// An import of the records a store reads at startup: every record
    /// but those read when asked, of which only the day logs' closed
    /// chunks are handed over, by key ([`StateImport::add_stored`]). The
    /// others are read when asked, each checked against the hash the
    /// store keeps for it, and the store checks those hashes against
    /// their sum ([`crate::stored`]).
    pub fn at_startup() -> StateImport {
        StateImport {
            at_startup: true,
            ..StateImport::default()
        }
    }

    /// Takes in one record.
    pub fn add(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        let key = std::str::from_utf8(key).map_err(|_| "a record key is not text".to_owned())?;
        if self.at_startup && crate::stored::is_stored_key(key.as_bytes()) {
            return Err(format!(
                "record {key:?} is read when asked, and was handed over at startup"
            ));
        }
        match list_record(key) {
            Some(parsed) => {
                let (loan, history, chunk) = parsed?;
                let entries: Vec<u64> = decode(key, value)?;
                self.take_list_chunk(key, loan, history, chunk, entries)?;
                self.any = true;
                return Ok(());
            }
            None => self.append_list()?,
        }
        if BooksRecords::holds(key.as_bytes()) {
            self.books.add(key.as_bytes(), value.to_vec())?;
        } else if let Some(rest) = key.strip_prefix("carry/") {
            let (branch, date) = rest
                .split_once('/')
                .ok_or_else(|| format!("record key {key:?}"))?;
            let branch = BranchId::parse("key", branch).map_err(|e| e.to_string())?;
            let date = NaiveDate::parse_from_str(date, "%Y-%m-%d")
                .map_err(|_| format!("record key {key:?}"))?;
            self.carries.push((branch, date, decode(key, value)?));
        } else if let Some(rest) = key.strip_prefix(CLOSED_CHUNK_PREFIX) {
            let (branch, first) = closed_chunk_of(key, rest)?;
            let chunk = decode(key, value)?;
            self.day_logs
                .entry(branch)
                .or_default()
                .closed
                .push((first, Some(chunk)));
        } else if let Some(branch) = key.strip_prefix(OPEN_CHUNK_PREFIX) {
            let branch = BranchId::parse("key", branch).map_err(|e| e.to_string())?;
            self.day_logs.entry(branch).or_default().open = Some(decode(key, value)?);
        } else if let Some(id) = key.strip_prefix(LOAN_SCHEDULE_PREFIX) {
            let loan: Loan = decode(key, value)?;
            if loan.id.as_str() != id {
                return Err(format!("record {key:?} holds loan {}", loan.id));
            }
            self.ended.add_schedule(id);
            self.ended.wholes.push(loan);
        } else if let Some(id) = key.strip_prefix(LOAN_ENDED_PREFIX) {
            let summary: EndedLoan = decode(key, value)?;
            if summary.id.as_str() != id {
                return Err(format!("record {key:?} holds loan {}", summary.id));
            }
            self.ended.add_summary(id);
            self.ended.summaries.push(summary);
        } else if let Some(id) = loan_steps_id(key) {
            let id = id?;
            self.ended.add_steps(id.as_str());
            self.books.add_kept(key, AccountId::Loan(id), value)?;
        } else if let Some(closed) = closed_steps_of(key) {
            let (account, index) = closed?;
            self.closed.add(key);
            self.books.add_moved_whole(account, index, value.to_vec());
        } else if let Some(history) = super::folds::history_of(key) {
            let (branch, through, index) = history?;
            let record = super::folds::decode_history(key, value, through)?;
            self.state
                .savings_history
                .insert((branch, through, index), Arc::new(record));
        } else {
            self.state.import_record(key, value)?;
        }
        self.any = true;
        self.head |= key == HEAD_KEY;
        self.format |= key == FORMAT_KEY;
        Ok(())
    }

    /// Takes in a record the store keeps without reading it
    /// ([`crate::stored`]): read when asked, from the store the state is
    /// then given ([`LedgerState::keep_stored_in`]). Startup hands over
    /// only the day logs' closed chunks so
    /// ([`crate::stored::LISTED_AT_STARTUP`]), to an
    /// import made by [`StateImport::at_startup`].
    pub fn add_stored(&mut self, key: &[u8]) -> Result<(), String> {
        let key = std::str::from_utf8(key).map_err(|_| "a record key is not text".to_owned())?;
        if !self.at_startup {
            return Err(format!(
                "record {key:?} handed over by its key alone, to a reading of every record whole"
            ));
        }
        let Some(rest) = key.strip_prefix(CLOSED_CHUNK_PREFIX) else {
            return Err(format!(
                "record {key:?} is read when asked, and startup lists only the day logs' \
                 ({CLOSED_CHUNK_PREFIX})"
            ));
        };
        self.append_list()?;
        let (branch, first) = closed_chunk_of(key, rest)?;
        self.day_logs
            .entry(branch)
            .or_default()
            .closed
            .push((first, None));
        self.any = true;
        Ok(())
    }

    /// Takes in chunk `chunk` of a loan's list, which must be full: held
    /// with the chunks before it.
    fn take_list_chunk(
        &mut self,
        key: &str,
        loan: LoanId,
        history: bool,
        chunk: u64,
        entries: Vec<u64>,
    ) -> Result<(), String> {
        if entries.len() != LOAN_LIST_CHUNK {
            return Err(format!(
                "record {key:?} holds {} entries, not a full chunk of {LOAN_LIST_CHUNK}",
                entries.len()
            ));
        }
        if let Some(run) = self.list.as_mut()
            && run.loan == loan
            && run.history == history
        {
            if run.chunks.len() as u64 != chunk {
                return Err(format!(
                    "record {key:?} does not follow the {} chunks read before it",
                    run.chunks.len()
                ));
            }
            run.chunks.push(entries);
            return Ok(());
        }
        self.append_list()?;
        if chunk != 0 {
            return Err(format!("record {key:?} follows no chunk {}", chunk - 1));
        }
        self.list = Some(ListRun {
            loan,
            history,
            key: key.to_owned(),
            chunks: vec![entries],
        });
        Ok(())
    }

    /// Gives the loan the list whose chunks are held.
    fn append_list(&mut self) -> Result<(), String> {
        let Some(run) = self.list.take() else {
            return Ok(());
        };
        let loan = self
            .state
            .loan_being_read(&run.loan)
            .ok_or_else(|| format!("record {:?} has no loan record", run.key))?;
        let list = if run.history {
            &mut loan.history
        } else {
            &mut loan.events
        };
        if !list.is_empty() {
            return Err(format!("record {:?} read twice", run.key));
        }
        for chunk in &run.chunks {
            list.extend_from_slice(chunk);
        }
        Ok(())
    }

    /// The state the records make up.
    pub fn finish(self) -> Result<LedgerState, String> {
        self.finish_with_books(BooksRecords::default())
    }

    /// The state the records make up, with the books' records taken in
    /// apart from them ([`BooksRecords`]; any handed to
    /// [`StateImport::add`] as well count too).
    pub fn finish_with_books(mut self, mut books: BooksRecords) -> Result<LedgerState, String> {
        self.append_list()?;
        let StateImport {
            mut state,
            mut any,
            head,
            format,
            books: added,
            carries,
            day_logs,
            list: _,
            ended,
            closed,
            at_startup,
        } = self;
        state.take_ended_loans(ended)?;
        // At startup the folded changes are left in the store.
        if !at_startup {
            state.check_folds()?;
        }
        state.pack_maps();
        books.absorb(added)?;
        any |= books.records > 0;
        // Records without a head are a cache cut short (a clear or a rebuild
        // interrupted): they say nothing about which entry they reflect.
        if any && !head {
            return Err("state records without a head record".into());
        }
        if any && !format {
            return Err(format!(
                "state records without a format record (written before format {STATE_FORMAT})"
            ));
        }
        let (finished, moved) = books.import.finish_with_moved()?;
        state.books = finished;
        // At startup the records moved out are not handed over: one
        // missing is refused when read, and the store checks the hashes
        // kept for them against their sum.
        if !at_startup && moved != closed {
            return Err(format!(
                "the state cache holds {} closed records of steps moved out \
                 ({ACCOUNT_STEPS_PREFIX}) and the steps of {} ({CLOSED_STEPS_PREFIX}), \
                 not of the same records",
                moved.count, closed.count
            ));
        }
        // A loan that ended has its account's records kept in one (read
        // whole with the loan, or left in the store with it): a loan's
        // account with records of its own is a running loan's.
        let refused = state
            .books
            .accounts_after(None)
            .map(|(account, _)| account)
            .find(|account| match account {
                AccountId::Loan(id) => !state.loans.contains_key(id),
                _ => false,
            });
        if let Some(account) = refused {
            return Err(format!(
                "account {account} has its own records of steps, and no running loan: \
                 a loan's that ended are kept in record {}",
                kept_steps_key(account)
            ));
        }
        // Each account's balance is what its history posted in all; none
        // for an ended loan's, which owes nothing (`LedgerState::balances`).
        state.balances = state
            .books
            .accounts_after(None)
            .filter(|(account, _)| !state.steps_kept(account))
            .map(|(account, book)| (account.clone(), book.history.latest()))
            .collect();
        for (branch, date, lines) in carries {
            state.books.note_carry(&branch, date, lines);
        }
        for (branch, mut records) in day_logs {
            let Some(open) = records.open else {
                return Err(format!(
                    "day log of {branch}: closed chunks and no open one"
                ));
            };
            records.closed.sort_by_key(|(first, _)| *first);
            state.day_log.restore(branch, records.closed, open)?;
        }
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A progress record's list tail is taken only after whole chunks,
    /// shorter than a chunk, and adding up to the length it states: any
    /// other is refused, naming the loan and the list, and the list is left
    /// as it was read.
    #[test]
    fn a_list_tail_is_refused_unless_it_follows_whole_chunks_and_adds_up() {
        let loan = LoanId::parse("l", "M0/L1").unwrap();
        let chunk = LOAN_LIST_CHUNK as u64;
        let read = |entries: u64| {
            let mut list = EntryList::new();
            list.extend_from_slice(&(1..=entries).collect::<Vec<_>>());
            list
        };
        let tail = |len: u64, from: u64, to: u64| ListTail {
            len,
            tail: (from..=to).collect(),
        };
        // After one full chunk, two more entries: taken.
        let mut list = read(chunk);
        tail(chunk + 2, chunk + 1, chunk + 2)
            .restore(&mut list, &loan, "history")
            .unwrap();
        assert_eq!(list.len() as u64, chunk + 2);
        assert_eq!(list.last(), Some(chunk + 2));
        // A whole chunk's entries as a tail (they belong in a chunk's
        // record), a tail after a list that is not whole chunks, and one
        // that does not add up to its length: refused.
        for (before, bad) in [
            (0, tail(chunk, 1, chunk)),
            (chunk - 1, tail(chunk, chunk, chunk)),
            (chunk, tail(chunk + 3, chunk + 1, chunk + 2)),
        ] {
            let mut list = read(before);
            let refused = bad.restore(&mut list, &loan, "history").unwrap_err();
            assert!(
                refused.starts_with("loan M0/L1: its progress record says its history holds"),
                "{refused}"
            );
            assert_eq!(list.len() as u64, before, "the list as it was read");
        }
    }
}
