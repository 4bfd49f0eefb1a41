//! The ledger's state machine: decides commands and applies entries.
//!
//! [`LedgerState::execute`] checks a command against the state and builds the
//! entry body it would produce, changing nothing. [`LedgerState::apply`]
//! applies a sealed entry. Both are pure and deterministic: the same entries
//! in the same order give the same state, which is what makes replay,
//! verification and simulation possible. This module never does I/O and never
//! reads a clock: the time of recording comes in [`ExecContext`].
//!
//! The state is a cache of the journal: every field can be rebuilt by
//! applying the journal's entries from the first. [`LedgerState::export`]
//! gives it as sorted key/value records (what the store persists and what
//! `verify` compares).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use super::access::Access;
use super::account::{AccountId, AccountKind};
pub use super::books::Balance;
use super::books::Books;
use super::command::{Command, CommandBody, Money, SavingsKind};
use super::entry::{
    Entry, EntryBody, GENESIS_HASH, Hash, InstallmentPayment, Outcome, Posting, Undo,
};
use super::error::DomainError;
use super::ids::{
    BranchId, CenterId, GroupId, LoanId, MemberId, Name, ProductId, RequestId, SavingsAccountId,
};
use super::money::{Currency, checked_add, checked_sub, format_amount, grouped};
use super::product::{LoanPolicy, ProductVersion};
use super::request_index::RequestIndex;
use super::schedule::{Installment, LoanTerms};
use super::totals::{BorrowerStep, DayTotals, Overflow, PeriodFigures, borrower_steps};

/// The hasher of the state's in-memory maps keyed by ids and accounts:
/// seeded at random per process like std's, and several times faster than
/// its SipHash on the short keys these maps hold (noting an entry's changed
/// keys hashed each of them with SipHash, a tenth of the read side's time).
type FastHash = foldhash::fast::RandomState;

mod keys;
pub use entry_list::EntryList;
pub use installments::{CumulativeDues, InstallmentMut, Installments};
pub use keys::{Changes, STATE_FORMAT, Saved, StateKey, StateRecord, records_format};

/// Default share of outstanding principal kept in compulsory savings, in percent.
pub const COMPULSORY_SAVINGS_PERCENT_DEFAULT: u32 = 5;
/// Default time zone of a branch's calendar.
pub const TIME_ZONE_DEFAULT: &str = "Asia/Ho_Chi_Minh";

/// What executing a command may depend on besides the state.
#[derive(Clone, Copy, Debug)]
pub struct ExecContext {
    /// When the entry is recorded; also decides "today" in a branch's zone.
    pub recorded_at: DateTime<Utc>,
    /// The rules version to decide under, recorded in the entry: the
    /// writer's is `entry::RULES_VERSION_CURRENT`; `verify` passes the one
    /// each entry names.
    pub rules_version: super::entry::RulesVersion,
}

/// A branch: the root of its centers, groups and members, and its books.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branch {
    pub id: BranchId,
    pub name: Name,
    /// IANA zone of the branch's business dates.
    pub time_zone: String,
    /// Currency of every amount in the branch's books.
    pub currency: Currency,
    /// Share of outstanding principal a borrower keeps in compulsory savings.
    #[serde(with = "crate::codec::decimal")]
    pub compulsory_savings_percent: Decimal,
    #[serde(with = "crate::codec::date")]
    pub opened_on: NaiveDate,
    /// The books are closed through this date, by this entry: no entry may
    /// be dated on or before it.
    pub closed: Option<Closed>,
    /// By kind of savings, the last period end its interest was posted for:
    /// no savings movement of that kind may be dated on or before it (the
    /// interest was paid on the balances then).
    pub interest_posted: Vec<(SavingsKind, NaiveDate)>,
    /// Its closes' folds of its savings accounts' changes
    /// ([`SavingsAccount::folded`]), oldest first: the changes up to each
    /// one's date, after the one before, are in records read when asked
    /// ([`StateKey::SavingsHistory`]). A reopening takes back those it
    /// reopens.
    pub folds: Vec<folds::Fold>,
}

/// How far a branch's books are closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closed {
    #[serde(with = "crate::codec::date")]
    pub through: NaiveDate,
    /// The entry that closed them.
    pub by: u64,
}

impl Branch {
    /// The last period end interest on `kind` savings was posted for.
    pub fn interest_posted_through(&self, kind: SavingsKind) -> Option<NaiveDate> {
        self.interest_posted
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, date)| *date)
    }

    /// Refuses `date`, given in `field`, when it lies in the closed period.
    pub fn check_open(&self, field: &str, date: NaiveDate) -> Result<(), DomainError> {
        match self.closed {
            Some(closed) if date <= closed.through => Err(DomainError::precondition(
                field,
                format!(
                    "{date} is in branch {}'s closed period (closed through {} by entry {}); date the entry after {}, or reopen the period",
                    self.id, closed.through, closed.by, closed.through
                ),
            )),
            _ => Ok(()),
        }
    }

    /// "branch TB keeps its books", for messages about currencies: written
    /// out when a message is, not for every amount checked.
    pub fn books(&self) -> BooksOf<'_> {
        BooksOf(&self.id)
    }
}

/// "branch TB keeps its books" ([`Branch::books`]).
pub struct BooksOf<'a>(&'a BranchId);

impl std::fmt::Display for BooksOf<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "branch {} keeps its books", self.0)
    }
}

/// A center where groups meet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Center {
    pub id: CenterId,
    pub branch: BranchId,
    pub name: Name,
    #[serde(with = "crate::codec::date")]
    pub opened_on: NaiveDate,
}

/// A group of members who vouch for each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub id: GroupId,
    pub center: CenterId,
    pub branch: BranchId,
    pub name: Name,
    #[serde(with = "crate::codec::date")]
    pub opened_on: NaiveDate,
}

/// A member with the ids of her accounts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: MemberId,
    pub full_name: Name,
    pub group: GroupId,
    pub center: CenterId,
    pub branch: BranchId,
    #[serde(with = "crate::codec::date")]
    pub joined_on: NaiveDate,
    /// The entry that registered her.
    pub registered: u64,
    /// Her savings accounts, in the order opened.
    pub savings_accounts: Vec<SavingsAccountId>,
    /// Her loans, in the order disbursed.
    pub loans: Vec<LoanId>,
    /// Voluntary accounts opened so far (numbers the next one).
    pub voluntary_accounts_opened: u32,
    /// The steps she currently contributes to her branch's borrower counts,
    /// kept so that they can be replaced exactly when her loans change.
    pub borrower_steps: Vec<BorrowerStep>,
    /// What her loans that ended (closed or cancelled) changed of the
    /// number of loans she had outstanding, by date
    /// ([`crate::totals::add_borrowing_changes`]): her borrower steps are
    /// worked out again from it and her running loans, without reading
    /// back the loans memory let go of.
    pub ended_borrowing: Vec<crate::totals::BorrowingChange>,
}

/// A savings account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavingsAccount {
    pub id: SavingsAccountId,
    pub member: MemberId,
    pub branch: BranchId,
    pub kind: SavingsKind,
    #[serde(with = "crate::codec::date")]
    pub opened_on: NaiveDate,
    /// The entry that opened it.
    pub opened: u64,
    /// Net change of the balance by effective date, so that a back-dated
    /// withdrawal or reversal can be checked against every later balance:
    /// those after [`SavingsAccount::folded`]'s date, when a close folded
    /// the ones before (no entry is dated in a closed period).
    #[serde(with = "crate::codec::packed_amounts")]
    pub changes: crate::dated::PackedAmounts,
    /// The changes its branch's closes took out of `changes`, through a
    /// date, into records read when asked ([`StateKey::SavingsHistory`]):
    /// memory keeps their sum.
    pub folded: Option<Folded>,
}

/// What a savings account keeps of the changes its branch's closes folded
/// ([`SavingsAccount::folded`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Folded {
    /// The last date folded: every change on or before it is in the
    /// records read when asked, none after it.
    #[serde(with = "crate::codec::date")]
    pub through: NaiveDate,
    /// Their sum: the balance at the end of `through` (`changes` holds
    /// none dated on or before it: a reopening that takes back later
    /// folds leaves the account folded through the last one it keeps).
    #[serde(with = "crate::codec::decimal")]
    pub carried: Decimal,
}

impl SavingsAccount {
    /// The changes from `from` on and the balance before the first of
    /// `changes` (the folded changes' sum), when memory holds them: `None`
    /// when `from` is on or before the folded date, whose changes are in
    /// the records read when asked ([`LedgerState::savings_from`]).
    pub fn held_from(&self, from: NaiveDate) -> Option<(Decimal, &crate::dated::PackedAmounts)> {
        match self.folded {
            Some(folded) if from <= folded.through => None,
            Some(folded) => Some((folded.carried, &self.changes)),
            None => Some((Decimal::ZERO, &self.changes)),
        }
    }
}

/// The lowest balance an account has on `from` or on any later date with
/// a change, and that date, from `changes` (every change from `from` on)
/// and `opening`, the balance before the first of them.
pub fn lowest_balance_from(
    opening: Decimal,
    changes: &crate::dated::PackedAmounts,
    from: NaiveDate,
) -> (Decimal, NaiveDate) {
    let mut running = opening;
    let mut lowest: Option<(Decimal, NaiveDate)> = None;
    let mut consider = |balance: Decimal, date: NaiveDate| {
        if lowest.is_none_or(|(low, _)| balance < low) {
            lowest = Some((balance, date));
        }
    };
    let mut from_seen = false;
    for (date, change) in changes {
        if date > from && !from_seen {
            consider(running, from);
            from_seen = true;
        }
        running += change;
        if date >= from {
            consider(running, date);
            from_seen = true;
        }
    }
    if !from_seen {
        consider(running, from);
    }
    lowest.unwrap_or((opening, from))
}

/// Whether a loan is being repaid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoanStatus {
    /// Principal or interest outstanding.
    Active,
    /// Repaid in full.
    Closed,
    /// Disbursement reversed.
    Cancelled,
    /// Outstanding principal written off to loan loss; payments are recoveries.
    WrittenOff,
}

/// One installment and what was paid on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallmentState {
    pub due: Installment,
    #[serde(with = "crate::codec::decimal")]
    pub principal_paid: Decimal,
    #[serde(with = "crate::codec::decimal")]
    pub interest_paid: Decimal,
    #[serde(with = "crate::codec::decimal")]
    pub fee_paid: Decimal,
}

impl InstallmentState {
    /// A scheduled installment nothing was paid on yet.
    pub fn unpaid(due: Installment) -> InstallmentState {
        InstallmentState {
            due,
            principal_paid: Decimal::ZERO,
            interest_paid: Decimal::ZERO,
            fee_paid: Decimal::ZERO,
        }
    }

    /// Interest still owed on it.
    pub fn interest_unpaid(&self) -> Decimal {
        self.due.interest - self.interest_paid
    }

    /// Principal still owed on it.
    pub fn principal_unpaid(&self) -> Decimal {
        self.due.principal - self.principal_paid
    }

    /// Fees still owed on it.
    pub fn fee_unpaid(&self) -> Decimal {
        self.due.fee - self.fee_paid
    }

    /// Everything still owed on it.
    pub fn unpaid_total(&self) -> Decimal {
        self.interest_unpaid() + self.principal_unpaid() + self.fee_unpaid()
    }

    /// True when nothing is owed on it.
    pub fn is_paid(&self) -> bool {
        self.principal_paid == self.due.principal
            && self.interest_paid == self.due.interest
            && self.fee_paid == self.due.fee
    }
}

/// A loan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loan {
    pub id: LoanId,
    pub member: MemberId,
    pub branch: BranchId,
    pub currency: Currency,
    /// Product and version it was disbursed under; none outside the catalogue.
    pub product: Option<(ProductId, u32)>,
    /// Rules kept from the product version.
    pub policy: LoanPolicy,
    /// Terms of the first disbursement.
    pub terms: LoanTerms,
    #[serde(with = "crate::codec::date")]
    pub disbursed_on: NaiveDate,
    /// Most the loan's tranches may add up to.
    #[serde(with = "crate::codec::decimal")]
    pub approved_principal: Decimal,
    pub status: LoanStatus,
    pub installments: Installments,
    /// Date of the latest transaction on the loan: they are entered in date
    /// order so that allocation follows the calendar.
    #[serde(with = "crate::codec::date")]
    pub last_repayment_on: NaiveDate,
    /// Principal outstanding changes by effective date (portfolio, borrowers);
    /// a closed or cancelled loan's summary keeps only its spans ([`borrowing_spans`]).
    #[serde(with = "crate::codec::date_decimal_map")]
    pub principal_changes: crate::dated::DatedAmounts,
    /// Amounts paid on scheduled installments by effective date (arrears as of a date).
    #[serde(with = "crate::codec::date_decimal_map")]
    pub paid_changes: crate::dated::DatedAmounts,
    /// Sum of the installments' unpaid principal, kept as they change.
    #[serde(with = "crate::codec::decimal")]
    pub principal_unpaid: Decimal,
    /// Sum of the installments' unpaid interest, kept as they change.
    #[serde(with = "crate::codec::decimal")]
    pub interest_unpaid: Decimal,
    /// Sum of the installments' unpaid fees, kept as they change.
    #[serde(with = "crate::codec::decimal")]
    pub fee_unpaid: Decimal,
    /// Index of the first installment not fully paid (all before it are).
    pub first_unpaid: u32,
    /// Principal disbursed so far, all tranches.
    #[serde(with = "crate::codec::decimal")]
    pub disbursed: Decimal,
    /// Tranches disbursed so far.
    pub tranches: u32,
    /// Principal repaid ahead of the schedule.
    #[serde(with = "crate::codec::decimal")]
    pub principal_prepaid: Decimal,
    /// Principal written off (zero unless written off).
    #[serde(with = "crate::codec::decimal")]
    pub written_off: Decimal,
    /// Collected since the write-off.
    #[serde(with = "crate::codec::decimal")]
    pub recovered: Decimal,
    /// Date it was closed or written off.
    #[serde(with = "crate::codec::date_option")]
    pub ended_on: Option<NaiveDate>,
    /// Entries that changed the loan and still stand, oldest first: only
    /// the last can be reversed.
    pub events: EntryList,
    /// Every entry that changed the loan, in order, including those since
    /// reversed and their reversals: what [`LedgerState::loan_at`] replays
    /// to show the loan as it stood after any entry.
    pub history: EntryList,
}

impl Loan {
    /// True when the loan is closed or cancelled: nothing falls due on it
    /// any more, and the state cache keeps it whole in a record of its own
    /// ([`StateKey::LoanSchedule`]), read when asked, memory only its
    /// summary ([`EndedLoan`]).
    pub fn has_ended(&self) -> bool {
        matches!(self.status, LoanStatus::Closed | LoanStatus::Cancelled)
    }

    /// Principal not yet repaid (zero once written off or cancelled).
    pub fn principal_outstanding(&self) -> Decimal {
        match self.status {
            LoanStatus::WrittenOff | LoanStatus::Cancelled => Decimal::ZERO,
            _ => self.principal_unpaid,
        }
    }

    /// Scheduled interest not yet paid.
    pub fn interest_outstanding(&self) -> Decimal {
        match self.status {
            LoanStatus::WrittenOff | LoanStatus::Cancelled => Decimal::ZERO,
            _ => self.interest_unpaid,
        }
    }

    /// Scheduled fees not yet paid.
    pub fn fees_outstanding(&self) -> Decimal {
        match self.status {
            LoanStatus::WrittenOff | LoanStatus::Cancelled => Decimal::ZERO,
            _ => self.fee_unpaid,
        }
    }

    /// The installments not yet fully paid, in order.
    pub fn from_first_unpaid(&self) -> impl Iterator<Item = InstallmentState> + Clone + '_ {
        self.installments.iter_from(self.first_unpaid as usize)
    }

    /// Principal outstanding at the end of `date`.
    pub fn principal_on(&self, date: NaiveDate) -> Result<Decimal, Overflow> {
        super::totals::sum(self.principal_changes.range(..=date).map(|(_, c)| c))
    }

    /// Paid on scheduled installments up to the end of `date`.
    pub fn paid_on(&self, date: NaiveDate) -> Result<Decimal, Overflow> {
        super::totals::sum(self.paid_changes.range(..=date).map(|(_, c)| c))
    }
}

/// What executing a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// The ledger refuses the command.
    #[error(transparent)]
    Refused(#[from] DomainError),
    /// Reading an earlier entry failed.
    #[error("reading entry {sequence}: {message}")]
    Lookup { sequence: u64, message: String },
}

/// Why an entry cannot be applied: the journal contradicts the state. Never
/// happens for entries built by `execute`; found by replay and `verify`.
#[derive(Debug, thiserror::Error)]
#[error("entry {sequence} cannot be applied: {message}")]
pub struct ApplyError {
    pub sequence: u64,
    pub message: String,
}

/// The whole derived state of the ledger.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LedgerState {
    last_sequence: u64,
    last_hash: Option<Hash>,
    branches: BTreeMap<BranchId, Branch>,
    centers: BTreeMap<CenterId, Center>,
    groups: BTreeMap<GroupId, Group>,
    /// Shared between the writer and the read side: an entry that changes
    /// a member stages a copy and hands both sides the same new one, so
    /// neither holds a copy of the other's members.
    members: BTreeMap<MemberId, Arc<Member>>,
    /// Shared like loans: an account an entry opens goes to the read side
    /// without a copy; each later change is written into each side's own
    /// account in place (`Arc::make_mut`), since an account's change history
    /// grows with every deposit.
    savings: BTreeMap<SavingsAccountId, Arc<SavingsAccount>>,
    /// The records of the changes a close folded out of a branch's savings
    /// accounts, by branch, date and index ([`StateKey::SavingsHistory`]):
    /// held until the checkpoint that saved them completes (on the
    /// writer's copy, whose records are never taken, as long as the read
    /// side holds them), then read back from the store when a reopening or
    /// a question from before a fold asks. Shared by the writer and the
    /// read side.
    savings_history: folds::HeldFolds,
    /// Shared, so that a read can take loans out of the lock and look at
    /// them after releasing it; applying an entry replaces a changed loan
    /// with a new one (it stages a copy anyway), never edits a shared one.
    /// A loan that ended leaves memory once the store holds it whole and
    /// its summary ([`EndedLoan`]), both read back by key when asked
    /// ([`LedgerState::loan`]); the running ones, and those that ended
    /// since the last checkpoint, are held.
    loans: BTreeMap<LoanId, Arc<Loan>>,
    /// The latest date any loan ended on (closed or cancelled), as entries
    /// ever set it (not moved back when a reversal reopens a loan): a loan
    /// that ended was active on no day from its end on, so a question
    /// about a day on or after this one reads none of those memory let go
    /// of. `None` until a loan ends.
    ended_latest: Option<NaiveDate>,
    /// Every version of every product, oldest first.
    products: BTreeMap<ProductId, Vec<ProductVersion>>,
    /// Every version of every savings product, oldest first.
    savings_products: BTreeMap<ProductId, Vec<crate::product::SavingsProductVersion>>,
    /// Every account's debits and credits, for deciding commands: the
    /// books' histories hold them too, but the writer keeps no account's
    /// history. Empty on the read side ([`LedgerState::balances_in_books`]).
    /// Without the closed and cancelled loans' accounts (left out at
    /// startup, and removed as a loan ends): such an account owes nothing,
    /// and a reversal that reopens its loan starts its debits and credits
    /// here from zero, its balance on its normal side (what deciding
    /// reads, of savings accounts only) the same. So it holds the running
    /// loans' accounts only, not one for every loan the branch ever made.
    balances: HashMap<AccountId, Balance, FastHash>,
    /// True on the read side's copy, which keeps every account's history:
    /// an account's balance is its history's last total, not kept a second
    /// time in `balances` (an entry for every account, and an insert for
    /// every posting the publisher writes).
    balances_in_books: bool,
    /// Every account's and every general-ledger line's history, for
    /// figures as of a date or a sequence.
    books: Books,
    /// Request id -> the entry it produced, by the id's hash. Not part of
    /// the state cache: the journal holds every entry's request id, and
    /// startup rebuilds this index from it, so it is kept exactly as long
    /// as the journal.
    requests: RequestIndex,
    /// False on copies that never decide commands (the read side).
    skip_requests: bool,
    /// Reversed entry -> the entry that reversed it.
    reversed: HashMap<u64, u64>,
    days: BTreeMap<BranchId, BTreeMap<NaiveDate, DayTotals>>,
    /// True on the writer's copy, which keeps no days (none is read to
    /// decide a command): what each entry changes of them goes to the read
    /// side to work out ([`Written`]).
    days_elsewhere: bool,
    /// Each branch's days as they stood after any entry, for figures as of
    /// a sequence number.
    day_log: crate::day_log::DayLog,
    /// Principals, roles and credentials: shared, so that the server can
    /// authenticate a call without taking the state's lock (an access
    /// command replaces it whole; access changes are rare and small).
    access: Arc<Access>,
    /// Keys changed since the last `take_changes`.
    changed: ChangeLog,
    /// Where what the state lets go of is read back from (closed and
    /// cancelled loans whole, the day log's closed chunks), once the store
    /// holds it ([`LedgerState::keep_stored_in`]).
    stored: StoredIn,
}

/// The store records let go of are read back from, if any. Not part of
/// what a state is: two states are equal whatever they read from.
#[derive(Clone, Debug, Default)]
struct StoredIn(Option<Arc<dyn crate::stored::StoredRecords>>);

impl PartialEq for StoredIn {
    fn eq(&self, _: &StoredIn) -> bool {
        true
    }
}

impl StoredIn {
    /// The record `key`'s value, as the store keeps it (`None` without a
    /// store).
    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, crate::stored::ReadError> {
        match &self.0 {
            Some(store) => store.read(key),
            None => Ok(None),
        }
    }
}

/// The keys changed since the last checkpoint, unless tracking is off (the
/// writer's working copy never persists, so it does not track).
#[derive(Clone, Debug, PartialEq)]
struct ChangeLog {
    enabled: bool,
    /// Hashed, not ordered: an entry notes ten or so keys, most of them
    /// noted already since the last checkpoint, and a hash and one
    /// comparison cost less than a walk down a tree comparing ids that
    /// share long prefixes. They are sorted once when taken.
    keys: HashSet<StateKey, FastHash>,
    /// The days changed, by branch (`StateKey::Day`): a new loan changes a
    /// day per installment, and a key of its own for each, with a copy of
    /// the branch's id hashed every time, cost more than the day itself.
    days: BTreeMap<BranchId, BTreeSet<NaiveDate>>,
}

impl Default for ChangeLog {
    fn default() -> ChangeLog {
        ChangeLog {
            enabled: true,
            keys: HashSet::default(),
            days: BTreeMap::new(),
        }
    }
}

impl ChangeLog {
    /// Notes the key `key()` as changed.
    fn note(&mut self, key: impl FnOnce() -> StateKey) {
        if self.enabled {
            match key() {
                StateKey::Day(branch, date) => {
                    self.days.entry(branch).or_default().insert(date);
                }
                key => {
                    self.keys.insert(key);
                }
            }
        }
    }

    /// Where to note `branch`'s changed days (`None`: not tracking).
    fn days_of(&mut self, branch: &BranchId) -> Option<&mut BTreeSet<NaiveDate>> {
        if !self.enabled {
            return None;
        }
        if !self.days.contains_key(branch) {
            self.days.insert(branch.clone(), BTreeSet::new());
        }
        self.days.get_mut(branch)
    }

    /// Every key noted, in no order; none is noted any more.
    fn take(&mut self) -> Vec<StateKey> {
        let mut keys: Vec<StateKey> = std::mem::take(&mut self.keys).into_iter().collect();
        for (branch, dates) in std::mem::take(&mut self.days) {
            keys.extend(
                dates
                    .into_iter()
                    .map(|date| StateKey::Day(branch.clone(), date)),
            );
        }
        keys
    }

    /// True when `key` (not a day's) was noted since the last take.
    fn contains(&self, key: &StateKey) -> bool {
        self.keys.contains(key)
    }

    /// Forgets every key noted.
    fn clear(&mut self) {
        self.keys.clear();
        self.days.clear();
    }
}

mod apply;
#[cfg(test)]
mod apply_overflow_tests;
mod ended;
mod entry_list;
mod execute;
pub mod folds;
mod installments;
#[cfg(test)]
mod loan_tests;
mod loans;
mod ordered;
mod queries;
mod search;
#[cfg(test)]
mod tests;
pub use apply::{SealError, Written};
pub use ended::{EndedLoan, LoanSlot};
pub use keys::{BooksRecords, StateImport};
pub use loans::{Arrears, PayoffQuote, charged, initial_schedule};
pub use ordered::LoansTaken;
pub use queries::{
    InstallmentStatus, LoanView, MemberView, PortfolioQuality, ProductCount, SavingsView,
};

impl LedgerState {
    /// An empty ledger.
    pub fn new() -> LedgerState {
        LedgerState::default()
    }

    /// Stops noting changed keys: for a copy whose records are never taken.
    pub fn stop_tracking_changes(&mut self) {
        self.changed.enabled = false;
        self.changed.clear();
    }

    /// Splits a recovered state into the read side's copy (the books'
    /// histories, each account's balance read from its own, the days and
    /// the day log; no request index) and the writer's
    /// ([`LedgerState::keep_decisions_only`], with the request index and
    /// the accounts' balances),
    /// copying only what both keep: neither side's peak holds a copy of
    /// what the other alone keeps.
    pub fn split_for_writer(mut self) -> (LedgerState, LedgerState) {
        let books = std::mem::take(&mut self.books);
        let day_log = std::mem::take(&mut self.day_log);
        let days = std::mem::take(&mut self.days);
        let requests = std::mem::take(&mut self.requests);
        let balances = std::mem::take(&mut self.balances);
        let mut writer = self.clone();
        writer.books = books.lines_by_date();
        writer.requests = requests;
        writer.balances = balances;
        writer.keep_decisions_only();
        let mut reader = self;
        reader.books = books;
        reader.day_log = day_log;
        reader.days = days;
        reader.balances_in_books = true;
        reader.skip_request_index();
        (reader, writer)
    }

    /// Reads the records it leaves in the store ([`crate::stored`]) from
    /// `store` from now on, and lets go of those it holds: for a state
    /// whose records `store` holds (startup read or saved them).
    pub fn keep_stored_in(&mut self, store: Arc<dyn crate::stored::StoredRecords>) {
        self.day_log.keep_in(store.clone());
        self.books.keep_in(store.clone());
        self.stored = StoredIn(Some(store));
        let changed = &self.changed;
        // Folded changes the store holds are read back from it.
        self.savings_history.retain(|(branch, through, index)| {
            changed.contains(&StateKey::SavingsHistory(branch.clone(), *through, *index))
        });
        let books = &mut self.books;
        self.loans.retain(|id, loan| {
            let keep = !loan.has_ended() || changed.contains(&StateKey::LoanSchedule(id.clone()));
            if !keep {
                // Its account's book goes with it, kept in one record.
                books.forget(&AccountId::Loan(id.clone()));
            }
            keep
        });
        // Members' accounts' last records too (read back from the cache,
        // they were let go of as startup read them), unless one changed
        // since the store took it.
        self.books.let_go_every_last(|account, last| {
            !changed.contains(&StateKey::Steps(account.clone(), last))
        });
    }

    /// Lets go of loan `id`, closed or cancelled, once the store holds it
    /// whole and its summary (a checkpoint saved its
    /// [`StateKey::LoanSchedule`] record): kept while the state has no
    /// store to read it back from, and when the record changed again since
    /// the checkpoint took it (entries applied while it saved: the loan
    /// reopened, or closed again), until the checkpoint that saves it as it
    /// now is.
    fn let_go_of_ended(&mut self, id: &LoanId) {
        if self.stored.0.is_none() || self.changed.contains(&StateKey::LoanSchedule(id.clone())) {
            return;
        }
        if self.loans.get(id).is_some_and(|loan| loan.has_ended()) {
            self.loans.remove(id);
            // And its account's book, whose records the checkpoint kept in
            // one ([`StateKey::LoanSteps`], noted changed with the loan's).
            self.books.forget(&AccountId::Loan(id.clone()));
        }
    }

    /// Loan `id` whole: read back from the store when memory let go of it
    /// (a closed or cancelled loan's).
    pub fn whole_loan(&self, id: &LoanId) -> Result<Option<Arc<Loan>>, DomainError> {
        self.loan(id)?
            .map(|slot| whole_loan(self.stored.0.as_deref(), &slot))
            .transpose()
    }

    /// Keeps only what deciding commands needs: of the general ledger its
    /// lines, not each account's history; no branch's days, which are left
    /// to the copy [`LedgerState::apply_written`] writes into. For the
    /// writer's copy, which answers no reads and whose records are never
    /// taken. It holds the records of savings folds only while another
    /// copy does (`folds::HeldFolds`): that copy, the read side, must hold
    /// every one not yet in the store this state reads from, and take
    /// what this one writes.
    pub fn keep_decisions_only(&mut self) {
        self.stop_tracking_changes();
        self.savings_history.hold_while_shared();
        self.books.keep_lines_only();
        self.day_log.stop();
        self.days = BTreeMap::new();
        self.days_elsewhere = true;
    }

    /// Sequence number of the last applied entry (0 when empty).
    pub fn last_sequence(&self) -> u64 {
        self.last_sequence
    }

    /// Hash of the last applied entry.
    pub fn last_hash(&self) -> Hash {
        self.last_hash.unwrap_or(GENESIS_HASH)
    }

    /// The entries that may have been produced by `request_id`, oldest
    /// first: at most one was, the one whose entry records that id
    /// ([`RequestIndex::candidates`]). An error: the index on disk could
    /// not be read.
    pub fn request_candidates<'a>(
        &'a self,
        request_id: &'a RequestId,
    ) -> Result<impl Iterator<Item = u64> + 'a, String> {
        self.requests.candidates(request_id.as_str())
    }

    /// Does not keep the request index (for a copy that only answers reads).
    pub fn skip_request_index(&mut self) {
        self.skip_requests = true;
        self.requests = RequestIndex::default();
    }

    /// Takes the request index startup rebuilt from the journal.
    pub fn import_request_index(&mut self, index: RequestIndex) {
        if !self.skip_requests {
            self.requests = index;
        }
    }

    /// Hands the entries a store's index written while the server ran
    /// covers to it ([`RequestIndex::covered_by`]); false when it cannot
    /// take them (another key), and the index keeps them in memory.
    pub fn requests_covered_by(
        &mut self,
        on_disk: Arc<dyn crate::request_index::FoundRequests>,
    ) -> bool {
        !self.skip_requests && self.requests.covered_by(on_disk)
    }

    /// How many request ids the state holds in memory (those past the
    /// store's index on disk).
    pub fn requests_in_memory(&self) -> usize {
        self.requests.in_memory()
    }

    /// The entry that reversed `sequence`, if any.
    pub fn reversed_by(&self, sequence: u64) -> Option<u64> {
        self.reversed.get(&sequence).copied()
    }

    /// A branch.
    pub fn branch(&self, id: &BranchId) -> Option<&Branch> {
        self.branches.get(id)
    }

    /// A loan: whole when memory holds it, or the summary of one that
    /// ended, read back from the store ([`LedgerState::whole_loan`] reads
    /// the loan whole). An error when the store could not be read, or
    /// holds something else than the summary written.
    pub fn loan(&self, id: &LoanId) -> Result<Option<LoanSlot>, DomainError> {
        if let Some(loan) = self.loans.get(id) {
            return Ok(Some(LoanSlot::Whole(loan.clone())));
        }
        self.ended_loan(id)
            .map(|ended| ended.map(|ended| LoanSlot::Ended(Arc::new(ended))))
    }

    /// Loan `id` if memory holds it: running, or ended since the last
    /// checkpoint (no store read).
    pub fn held_loan(&self, id: &LoanId) -> Option<&Arc<Loan>> {
        self.loans.get(id)
    }

    /// The summary of loan `id` as the store holds it, when memory let go
    /// of the loan (`None` without a store, or when it holds none).
    fn ended_loan(&self, id: &LoanId) -> Result<Option<EndedLoan>, DomainError> {
        let key = StateKey::LoanEnded(id.clone()).to_bytes();
        let read = self.stored.read(&key).and_then(|value| {
            value
                .map(|value| keys::decode_summary(&key, &value, id))
                .transpose()
        });
        read.map_err(|error| stored_error(&format!("loan {id}'s summary"), error))
    }

    /// A product's versions, oldest first.
    pub fn product_versions(&self, id: &ProductId) -> Option<&[ProductVersion]> {
        self.products.get(id).map(Vec::as_slice)
    }

    /// A savings product's versions, oldest first.
    pub fn savings_product_versions(
        &self,
        id: &ProductId,
    ) -> Option<&[crate::product::SavingsProductVersion]> {
        self.savings_products.get(id).map(Vec::as_slice)
    }

    /// Every savings product's versions, by id.
    pub fn savings_products(
        &self,
    ) -> impl Iterator<Item = &Vec<crate::product::SavingsProductVersion>> {
        self.savings_products.values()
    }

    /// The savings product of `kind`, if one is defined.
    pub fn savings_product_of(
        &self,
        kind: SavingsKind,
    ) -> Option<&[crate::product::SavingsProductVersion]> {
        self.savings_products
            .values()
            .find(|versions| versions.first().is_some_and(|v| v.kind == kind))
            .map(Vec::as_slice)
    }

    /// Every product's latest version, by id.
    pub fn products(&self) -> impl Iterator<Item = &ProductVersion> {
        self.products
            .values()
            .filter_map(|versions| versions.last())
    }

    /// Who may do what, as of the last applied entry.
    pub fn access(&self) -> &Arc<Access> {
        &self.access
    }

    /// Every branch's days as they stood after any entry.
    pub fn day_log(&self) -> &crate::day_log::DayLog {
        &self.day_log
    }

    /// The general ledger: every account's and line's history.
    pub fn books(&self) -> &Books {
        &self.books
    }

    /// Debits and credits of an account (zero if never posted to), as
    /// memory holds it: a closed or cancelled loan's account reads as zero
    /// here on the writer, and on the read side once memory let go of it
    /// ([`LedgerState::balances`]); [`LedgerState::account_as_of`] reads
    /// it back.
    pub fn balance(&self, account: &AccountId) -> Balance {
        if self.balances_in_books {
            return self
                .books
                .account(account)
                .map_or_else(Balance::default, |book| book.history.latest());
        }
        self.balances.get(account).copied().unwrap_or_default()
    }

    /// Figures of one branch over `from..=to`, from its days: O(days).
    pub fn period_figures(
        &self,
        branch: &BranchId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<PeriodFigures, DomainError> {
        self.period_figures_at(branch, from, to, None)
    }

    /// Figures of one branch over `from..=to` as the books gave them right
    /// after entry `sequence` (`None`: now), before any later entry,
    /// back-dated ones included. O(days), now or as of an earlier entry
    /// ([`crate::day_log`]).
    pub fn period_figures_at(
        &self,
        branch: &BranchId,
        from: NaiveDate,
        to: NaiveDate,
        sequence: Option<u64>,
    ) -> Result<PeriodFigures, DomainError> {
        let past;
        let days = match sequence.filter(|s| *s < self.last_sequence) {
            Some(sequence) => {
                past = self.days_at(branch, sequence)?;
                Some(&past)
            }
            None => self.days.get(branch),
        };
        match days {
            Some(days) => Ok(PeriodFigures::from_days(days, from, to)?),
            None => Ok(PeriodFigures {
                from: Some(from),
                to: Some(to),
                ..PeriodFigures::default()
            }),
        }
    }

    /// What was posted to `account` as of `as_of` (nothing for an
    /// account without postings).
    pub fn account_as_of(
        &self,
        account: &AccountId,
        as_of: crate::books::AsOf,
    ) -> Result<Balance, DomainError> {
        self.books
            .account_as_of(account, as_of)
            .map_err(|error| steps_unreadable(account, error))
    }

    /// The first date a movement of `account` is dated on (none for an
    /// account without postings), read back for a closed loan's account
    /// memory let go of.
    pub fn account_first_date(
        &self,
        account: &AccountId,
    ) -> Result<Option<NaiveDate>, DomainError> {
        let book = self
            .books
            .book_or_kept(account)
            .map_err(|error| steps_unreadable(account, error))?;
        Ok(book.and_then(|book| book.history.first_date()))
    }

    /// At most `limit` accounts with a posting, in name order from `after`
    /// on (exclusive), closed loans' accounts memory let go of read back
    /// ([`Books::accounts_listed`]).
    pub fn accounts_listed(
        &self,
        after: Option<&AccountId>,
        limit: usize,
    ) -> Result<Vec<(AccountId, std::borrow::Cow<'_, crate::books::AccountBook>)>, DomainError>
    {
        self.books
            .accounts_listed(after, limit)
            .map_err(|error| stored_error("the closed loans' accounts", error))
    }

    /// Every movement of `account` dated `from..=to`, in date order
    /// (sequence order within a date).
    pub fn account_movements(
        &self,
        account: &AccountId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<crate::books::Movement>, DomainError> {
        self.books
            .account_movements(account, from, to)
            .map_err(|error| steps_unreadable(account, error))
    }

    /// `branch`'s days as they stood right after entry `sequence`.
    fn days_at(
        &self,
        branch: &BranchId,
        sequence: u64,
    ) -> Result<crate::day_log::Days, DomainError> {
        use crate::stored::ReadError;
        self.day_log
            .days_at(branch, sequence)
            .map_err(|error| match error {
                ReadError::Damaged(message) => DomainError::Damaged {
                    message: format!(
                        "the ledger's day figures as of entry {sequence} are damaged ({message}); \
                         `mfi-ledger verify` compares the state cache with the journal"
                    ),
                },
                ReadError::Unreadable(message) => DomainError::Unavailable {
                    message: format!(
                        "the ledger's day figures as of entry {sequence} could not be read from \
                         its state cache ({message}); nothing changed: ask again"
                    ),
                },
            })
    }
}

/// The refusal of a read of `account`'s history whose record of steps
/// could not be read back from the state cache, or is not the one written.
fn steps_unreadable(account: &AccountId, error: crate::stored::ReadError) -> DomainError {
    use crate::stored::ReadError;
    match error {
        ReadError::Damaged(message) => DomainError::Damaged {
            message: format!(
                "the history of account {account} is damaged ({message}); `mfi-ledger verify` \
                 compares the state cache with the journal"
            ),
        },
        ReadError::Unreadable(message) => DomainError::Unavailable {
            message: format!(
                "the history of account {account} could not be read from its state cache \
                 ({message}); nothing changed: ask again"
            ),
        },
    }
}

/// What of a loan's principal by date its borrower's figures and the
/// checks before them read, once it is closed or cancelled: +1 on each date
/// its principal outstanding became positive and -1 on each it came back
/// to zero. Her borrower steps ([`borrower_steps`]) ask only whether a loan
/// has principal outstanding at the end of a day, and whether a change
/// comes after a date asks for its last date, which is the same (a change
/// after the principal is back to zero would make it positive again) but
/// for a loan paid off or cancelled on the day it was disbursed: its spans
/// are empty where its changes end on that day, and it adds no borrower
/// step either way.
/// `None` when the principal does not add up (never for a loan an entry
/// built): then it is kept whole.
fn borrowing_spans(changes: &crate::dated::DatedAmounts) -> Option<crate::dated::DatedAmounts> {
    let mut spans = crate::dated::DatedAmounts::new();
    let mut outstanding = Decimal::ZERO;
    for (date, change) in changes.iter() {
        let was = outstanding > Decimal::ZERO;
        outstanding = outstanding.checked_add(change)?;
        let now = outstanding > Decimal::ZERO;
        if now != was {
            spans.insert(
                date,
                if now {
                    Decimal::ONE
                } else {
                    Decimal::NEGATIVE_ONE
                },
            );
        }
    }
    Some(spans)
}

/// [`borrowing_spans`], or the changes themselves when they do not add up.
fn borrowing_spans_or_all(changes: &crate::dated::DatedAmounts) -> crate::dated::DatedAmounts {
    borrowing_spans(changes).unwrap_or_else(|| changes.clone())
}

/// The loan `slot` holds, whole: itself, or for the summary of one memory
/// let go of, read back from `store` (the state's, read in its lock: a
/// record changes only when its loan changes, and the state holds a loan
/// whole from the change until the checkpoint that saved it) and checked
/// against the summary.
pub(crate) fn whole_loan(
    store: Option<&dyn crate::stored::StoredRecords>,
    slot: &LoanSlot,
) -> Result<Arc<Loan>, DomainError> {
    use crate::stored::ReadError;
    let ended = match slot {
        LoanSlot::Whole(loan) => return Ok(loan.clone()),
        LoanSlot::Ended(ended) => ended,
    };
    let id = &ended.id;
    let key = StateKey::LoanSchedule(id.clone()).to_bytes();
    let read = match store {
        Some(store) => store.read(&key),
        None => Err(ReadError::Unreadable(
            "the state has no store to read it from".into(),
        )),
    };
    let whole = read.and_then(|value| {
        let value = value.ok_or_else(|| ReadError::Damaged("the record is missing".into()))?;
        let name = String::from_utf8_lossy(&key);
        keys::decode_ended_loan(&name, &value, ended).map_err(ReadError::Damaged)
    });
    whole
        .map(Arc::new)
        .map_err(|error| stored_error(&format!("loan {id}'s record"), error))
}

/// What a client is told when `what`, a record read when asked, could not
/// be read from the state cache, or is not the one written.
fn stored_error(what: &str, error: crate::stored::ReadError) -> DomainError {
    use crate::stored::ReadError;
    match error {
        ReadError::Damaged(message) => DomainError::Damaged {
            message: format!(
                "{what} is damaged in the ledger's state cache ({message}); \
                 `mfi-ledger verify` compares the state cache with the journal"
            ),
        },
        ReadError::Unreadable(message) => DomainError::Unavailable {
            message: format!(
                "{what} could not be read from the ledger's state cache \
                 ({message}); nothing changed: ask again"
            ),
        },
    }
}

/// Today in `time_zone` at `at`.
pub fn today_in(time_zone: &str, at: DateTime<Utc>) -> NaiveDate {
    match Tz::from_str(time_zone) {
        Ok(tz) => at.with_timezone(&tz).date_naive(),
        Err(_) => at.date_naive(),
    }
}

/// Text of an amount in a currency, for messages: "1,005,000 VND".
fn show(amount: Decimal, currency: Currency) -> String {
    format!("{} {currency}", grouped(&format_amount(amount, currency)))
}
