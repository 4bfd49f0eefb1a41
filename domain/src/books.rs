//! The general ledger: every account's history of debits and credits, so
//! that any balance can be read as of an effective date (the business view)
//! or as of a journal sequence (what the books said then, before later
//! back-dated entries) with a binary search; the general-ledger lines the
//! accounts roll up to (one per branch and line), and the trial balance,
//! balance sheet and income statement worked out from those lines.
//!
//! A history keeps two running totals: one per entry that posted to the
//! account, in sequence order (entries arrive in that order, so it only
//! grows at its end; kept encoded, about 7 bytes a step, see `steps`), and
//! one per effective date (a back-dated entry is inserted at its date and
//! moves the totals after it). An account's totals by date are read from
//! its steps for as long as its entries come in date order; from the first
//! back-dated one on, what is posted is also kept by date, and a total on a
//! date is the steps' before that entry plus what was kept since: most
//! accounts never keep anything twice, and none reads its earlier steps
//! when an entry is back-dated. Debits and credits
//! are each sums of positive amounts, so every running total lies between
//! zero and the account's total, which `apply` checked before the entry was
//! booked: booking cannot overflow.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::account::{AccountId, AccountKind};
use super::command::SavingsKind;
use super::entry::Side;
use super::error::DomainError;
use super::ids::{BranchId, FeeCode};

mod chart;
mod steps;
pub use chart::{Chart, GlAccount};
pub use steps::RECORD_STEPS;
pub use steps::StoredAs;
pub use steps::StoredSteps;
use steps::{BlockStart, Disorder, GrownRecord, MovedRecord, RecordRead, Step, Steps, held};

use crate::stored::{ReadError, StoredRecords};

/// Debits and credits posted to one account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    #[serde(with = "crate::codec::decimal")]
    pub debits: Decimal,
    #[serde(with = "crate::codec::decimal")]
    pub credits: Decimal,
}

impl Balance {
    /// The balance on the account's normal side.
    pub fn on_normal_side(&self, kind: AccountKind) -> Decimal {
        if kind.is_debit_normal() {
            self.debits - self.credits
        } else {
            self.credits - self.debits
        }
    }

    /// One posting's debit or credit.
    pub fn of(side: Side, amount: Decimal) -> Balance {
        match side {
            Side::Debit => Balance {
                debits: amount,
                credits: Decimal::ZERO,
            },
            Side::Credit => Balance {
                debits: Decimal::ZERO,
                credits: amount,
            },
        }
    }

    /// The sum; the callers' totals are bounded by a checked total.
    fn plus(self, other: Balance) -> Balance {
        Balance {
            debits: self.debits + other.debits,
            credits: self.credits + other.credits,
        }
    }

    /// What was posted between `earlier` and `self`.
    pub fn since(self, earlier: Balance) -> Balance {
        Balance {
            debits: self.debits - earlier.debits,
            credits: self.credits - earlier.credits,
        }
    }
}

/// The moment a figure is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsOf {
    /// Everything booked so far.
    Latest,
    /// What the books said right after this entry: entries up to it, whatever their date.
    Sequence(u64),
    /// The business view at the end of this day: every entry dated on or
    /// before it, including those booked later (back-dated).
    Date(NaiveDate),
}

/// The general-ledger line an account rolls up to in its branch's books.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Line {
    /// Cash on hand and in banks.
    Cash,
    /// Gross loan portfolio: principal outstanding.
    LoanPortfolio,
    /// Interest earned and not yet received (the ledger books interest when
    /// received, so this line stays at zero; it is in the chart for an
    /// institution that accrues).
    InterestReceivable,
    /// Allowance for loan losses (contra asset; in the chart, unused while
    /// losses are booked as write-offs).
    LoanLossAllowance,
    /// Compulsory savings members keep while they borrow.
    CompulsorySavings,
    /// Voluntary savings.
    VoluntarySavings,
    /// Results of closed years.
    RetainedEarnings,
    /// Interest income on loans.
    InterestIncome,
    /// Income from one kind of fee.
    FeeIncome(FeeCode),
    /// Collected on loans written off.
    Recoveries,
    /// Interest paid on members' savings.
    InterestExpense,
    /// Principal written off (loan-loss expense).
    LoanLoss,
    /// Funds from head office the branch owes back (added with branch
    /// funding: new lines go at the end, so the state cache's records of
    /// the others decode unchanged; the chart orders lines by code).
    HeadOfficeFunding,
    /// Paid-in capital and donated equity placed in the branch.
    Capital,
}

/// The part of a statement a line belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Assets,
    Liabilities,
    Equity,
    Income,
    Expenses,
}

impl Line {
    /// The line `account` rolls up to; `savings` is the kind of a savings account.
    pub fn of(account: &AccountId, savings: Option<SavingsKind>) -> Line {
        match account {
            AccountId::Cash(_) => Line::Cash,
            AccountId::Loan(_) => Line::LoanPortfolio,
            AccountId::Savings(_) => match savings {
                Some(SavingsKind::Compulsory) => Line::CompulsorySavings,
                _ => Line::VoluntarySavings,
            },
            AccountId::InterestIncome(_) => Line::InterestIncome,
            AccountId::FeeIncome(_, fee) => Line::FeeIncome(fee.clone()),
            AccountId::LoanLoss(_) => Line::LoanLoss,
            AccountId::Recoveries(_) => Line::Recoveries,
            AccountId::RetainedEarnings(_) => Line::RetainedEarnings,
            AccountId::InterestExpense(_) => Line::InterestExpense,
            AccountId::HeadOfficeFunding(_) => Line::HeadOfficeFunding,
            AccountId::Capital(_) => Line::Capital,
        }
    }

    /// The branch's one account on this line, for the lines that have one
    /// account per branch (not loans and savings).
    pub fn account(&self, branch: &BranchId) -> Option<AccountId> {
        let b = branch.clone();
        Some(match self {
            Line::Cash => AccountId::Cash(b),
            Line::InterestIncome => AccountId::InterestIncome(b),
            Line::FeeIncome(fee) => AccountId::FeeIncome(b, fee.clone()),
            Line::Recoveries => AccountId::Recoveries(b),
            Line::InterestExpense => AccountId::InterestExpense(b),
            Line::LoanLoss => AccountId::LoanLoss(b),
            Line::RetainedEarnings => AccountId::RetainedEarnings(b),
            Line::HeadOfficeFunding => AccountId::HeadOfficeFunding(b),
            Line::Capital => AccountId::Capital(b),
            _ => return None,
        })
    }

    /// The lines every branch's books show, in chart order (fee lines are
    /// added as fees are booked).
    pub const FIXED: [Line; 13] = [
        Line::Cash,
        Line::LoanPortfolio,
        Line::InterestReceivable,
        Line::LoanLossAllowance,
        Line::CompulsorySavings,
        Line::VoluntarySavings,
        Line::HeadOfficeFunding,
        Line::Capital,
        Line::RetainedEarnings,
        Line::InterestIncome,
        Line::Recoveries,
        Line::InterestExpense,
        Line::LoanLoss,
    ];

    /// Where the line goes in the statements.
    pub fn section(&self) -> Section {
        match self {
            Line::Cash
            | Line::LoanPortfolio
            | Line::InterestReceivable
            | Line::LoanLossAllowance => Section::Assets,
            Line::CompulsorySavings | Line::VoluntarySavings | Line::HeadOfficeFunding => {
                Section::Liabilities
            }
            Line::Capital | Line::RetainedEarnings => Section::Equity,
            Line::InterestIncome | Line::FeeIncome(_) | Line::Recoveries => Section::Income,
            Line::InterestExpense | Line::LoanLoss => Section::Expenses,
        }
    }

    /// The side its balance normally lies on.
    pub fn kind(&self) -> AccountKind {
        match self.section() {
            // The allowance is a contra asset: shown under assets, credit-normal.
            _ if *self == Line::LoanLossAllowance => AccountKind::Liability,
            Section::Assets => AccountKind::Asset,
            Section::Liabilities => AccountKind::Liability,
            Section::Equity => AccountKind::Equity,
            Section::Income => AccountKind::Income,
            Section::Expenses => AccountKind::Expense,
        }
    }

    /// Its balance as the statements show it: positive on the normal side
    /// of its section (an allowance shows negative among the assets).
    pub fn in_section(&self, balance: Balance) -> Decimal {
        match self {
            Line::LoanLossAllowance => balance.debits - balance.credits,
            _ => balance.on_normal_side(self.kind()),
        }
    }

    /// The line's name in the chart configuration, e.g. `cash`, `fee-income/disbursement`.
    pub fn key(&self) -> String {
        match self {
            Line::FeeIncome(fee) => format!("fee-income/{fee}"),
            other => other.fixed_key().to_owned(),
        }
    }

    fn fixed_key(&self) -> &'static str {
        match self {
            Line::Cash => "cash",
            Line::LoanPortfolio => "loan-portfolio",
            Line::InterestReceivable => "interest-receivable",
            Line::LoanLossAllowance => "loan-loss-allowance",
            Line::CompulsorySavings => "savings-compulsory",
            Line::VoluntarySavings => "savings-voluntary",
            Line::RetainedEarnings => "retained-earnings",
            Line::InterestIncome => "interest-income",
            Line::FeeIncome(_) => "fee-income",
            Line::Recoveries => "recoveries",
            Line::InterestExpense => "interest-expense",
            Line::LoanLoss => "loan-loss",
            Line::HeadOfficeFunding => "head-office-funding",
            Line::Capital => "capital",
        }
    }

    /// Parses a line's key as [`Line::key`] gives it (`fee-income` alone is
    /// the default of every fee line).
    pub fn parse(field: &str, text: &str) -> Result<Option<Line>, DomainError> {
        if text == "fee-income" {
            return Ok(None);
        }
        if let Some(fee) = text.strip_prefix("fee-income/") {
            return Ok(Some(Line::FeeIncome(FeeCode::parse(field, fee)?)));
        }
        Line::FIXED
            .into_iter()
            .find(|line| line.fixed_key() == text)
            .map(Some)
            .ok_or_else(|| {
                DomainError::invalid(
                    field,
                    format!(
                        "{} is not a line of the chart; use one of {}, fee-income or fee-income/FEE",
                        super::error::echo(text),
                        Line::FIXED.map(|l| l.fixed_key()).join(", ")
                    ),
                )
            })
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// One movement of an account: what one entry posted to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Movement {
    pub sequence: u64,
    pub date: NaiveDate,
    pub posted: Balance,
}

impl Movement {
    fn of((step, posted): (Step, Balance)) -> Movement {
        Movement {
            sequence: step.sequence,
            date: step.date,
            posted,
        }
    }
}

/// An account's (or a line's) running totals by sequence and by date.
///
/// Its totals by date are read from its steps for as long as they come in
/// date order (an account's, until an entry is back-dated); from the first
/// posting that does not ([`History::dated_from`]) on, what was posted is
/// also kept by date, and a total on a date is the steps' before it plus
/// those. Switching costs nothing and reads no earlier step, so the steps
/// before it need not be in memory when it happens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// The totals after each entry that posted here, encoded.
    steps: Steps,
    /// The running totals of what entries from `dated_from` on posted, at
    /// the end of each date one of them is dated on, in date order.
    by_date: Vec<(NaiveDate, Balance)>,
    /// The first entry whose postings are kept in `by_date`: those of the
    /// steps before it are in date order and read from them. 0 (a line's,
    /// and a copy kept by date alone) keeps every posting by date;
    /// [`History::IN_DATE_ORDER`] none.
    dated_from: u64,
}

impl History {
    /// `dated_from` of a history whose steps are all in date order.
    const IN_DATE_ORDER: u64 = u64::MAX;

    /// An empty history whose totals by date are read from its steps for
    /// as long as its postings come in date order (an account's).
    pub fn dated_by_steps() -> History {
        History {
            dated_from: History::IN_DATE_ORDER,
            ..History::default()
        }
    }

    /// Books what entry `sequence`, dated `date`, posted; entries come in
    /// sequence order (several postings of one entry add up).
    pub fn post(&mut self, sequence: u64, date: NaiveDate, posted: Balance) {
        if self.dated_from == History::IN_DATE_ORDER
            && let Some(last) = self.steps.last()
            && (date < last.date || (last.sequence == sequence && date != last.date))
        {
            self.dated_from = sequence;
            if last.sequence == sequence {
                // The entry posted here already, on another date: its
                // step is from `dated_from` on, so that posting is kept
                // by date too.
                let posted = self.steps.last_posted().unwrap_or_default();
                self.by_date = vec![(last.date, posted)];
            }
        }
        self.steps.push(sequence, date, posted);
        if self.dated_from != History::IN_DATE_ORDER {
            self.post_dated(date, posted);
        }
    }

    /// Books a posting dated `date` into the totals by date alone: a
    /// history kept only this way (the writer's lines, `dated_from` 0)
    /// answers by date and [`History::latest`], not by sequence.
    fn post_dated(&mut self, date: NaiveDate, posted: Balance) {
        let at = self.by_date.partition_point(|(d, _)| *d < date);
        if self.by_date.get(at).is_none_or(|(d, _)| *d != date) {
            let before = at
                .checked_sub(1)
                .map_or(Balance::default(), |i| self.by_date[i].1);
            self.by_date.insert(at, (date, before));
        }
        for (_, total) in &mut self.by_date[at..] {
            *total = total.plus(posted);
        }
    }

    /// True when closed record `index` of the steps may move out of those
    /// startup reads: a record follows it, and no step up to its last went
    /// back in date (the first that did, `dated_from`, is in a later one).
    fn is_moved(&self, index: usize) -> bool {
        self.steps
            .record_first_sequence(index + 1)
            .is_some_and(|next| self.dated_from != 0 && self.dated_from >= next)
    }

    /// The first entry whose postings are kept by date, apart from the
    /// steps (`None` while they are all in date order).
    pub fn dated_from(&self) -> Option<u64> {
        (self.dated_from != History::IN_DATE_ORDER).then_some(self.dated_from)
    }

    /// The totals at the end of each date something is dated on.
    fn dates(&self) -> std::borrow::Cow<'_, [(NaiveDate, Balance)]> {
        use std::borrow::Cow;
        if self.dated_from == 0 {
            return Cow::Borrowed(&self.by_date);
        }
        let before = held(self.steps.totals_by_date_before(self.dated_from, None));
        if self.by_date.is_empty() {
            return Cow::Owned(before);
        }
        // Both lists in date order: each date's total is each list's at
        // its last date on or before it, added.
        let (mut a, mut b) = (before.iter().peekable(), self.by_date.iter().peekable());
        let (mut from_steps, mut kept) = (Balance::default(), Balance::default());
        let mut dates = Vec::with_capacity(before.len() + self.by_date.len());
        loop {
            let date = match (a.peek(), b.peek()) {
                (Some((x, _)), Some((y, _))) => *x.min(y),
                (Some((x, _)), None) => *x,
                (None, Some((y, _))) => *y,
                (None, None) => break,
            };
            if let Some((_, total)) = a.next_if(|(d, _)| *d == date) {
                from_steps = *total;
            }
            if let Some((_, total)) = b.next_if(|(d, _)| *d == date) {
                kept = *total;
            }
            dates.push((date, from_steps.plus(kept)));
        }
        Cow::Owned(dates)
    }

    /// A copy keeping only the totals by date (no step per entry).
    fn dates_only(&self) -> History {
        History {
            steps: Steps::default(),
            by_date: self.dates().into_owned(),
            dated_from: 0,
        }
    }

    /// Everything posted: the total at the end of the latest date (kept
    /// also by a history kept by date alone).
    pub fn latest(&self) -> Balance {
        if self.dated_from == 0 {
            return self
                .by_date
                .last()
                .map_or(Balance::default(), |(_, total)| *total);
        }
        self.steps.last().map_or(Balance::default(), |s| s.total)
    }

    /// Posted by entries up to `sequence`, of a history whose records are
    /// all held (a line's).
    #[cfg(test)]
    pub(crate) fn at_sequence(&self, sequence: u64) -> Balance {
        held(self.try_at_sequence(sequence, None))
    }

    /// Posted by entries up to `sequence`, records let go of read back
    /// from `from`.
    pub fn try_at_sequence(
        &self,
        sequence: u64,
        from: Option<&dyn StoredSteps>,
    ) -> Result<Balance, ReadError> {
        self.steps.total_at(sequence, from)
    }

    /// Posted by entries dated on or before `date`, of a history whose
    /// records are all held (a line's).
    pub(crate) fn on_date(&self, date: NaiveDate) -> Balance {
        held(self.try_on_date(date, None))
    }

    /// Posted by entries dated on or before `date`, records let go of
    /// read back from `from`.
    pub fn try_on_date(
        &self,
        date: NaiveDate,
        from: Option<&dyn StoredSteps>,
    ) -> Result<Balance, ReadError> {
        let from_steps = match self.dated_from {
            0 => Balance::default(),
            before => self.steps.total_on_date_before(date, before, from)?,
        };
        let at = self.by_date.partition_point(|(d, _)| *d <= date);
        Ok(match at.checked_sub(1) {
            Some(i) => from_steps.plus(self.by_date[i].1),
            None => from_steps,
        })
    }

    /// The least balance on `kind`'s normal side at the end of `date` and
    /// of every later date something is dated on, and the first date it is
    /// that low: how much can leave the account on `date` without taking it
    /// below zero on any day after. Of a history whose records are all held
    /// (a line's).
    pub(crate) fn lowest_from(&self, date: NaiveDate, kind: AccountKind) -> (Decimal, NaiveDate) {
        let dates = self.dates();
        let at = dates.partition_point(|(d, _)| *d <= date);
        let mut lowest = (self.on_date(date).on_normal_side(kind), date);
        for (d, total) in &dates[at..] {
            let balance = total.on_normal_side(kind);
            if balance < lowest.0 {
                lowest = (balance, *d);
            }
        }
        lowest
    }

    /// The total as of `as_of`, of a history whose records are all held
    /// (a line's).
    pub(crate) fn as_of(&self, as_of: AsOf) -> Balance {
        held(self.try_as_of(as_of, None))
    }

    /// The total as of `as_of`, records let go of read back from `from`.
    pub fn try_as_of(
        &self,
        as_of: AsOf,
        from: Option<&dyn StoredSteps>,
    ) -> Result<Balance, ReadError> {
        match as_of {
            AsOf::Latest => Ok(self.latest()),
            AsOf::Sequence(sequence) => self.try_at_sequence(sequence, from),
            AsOf::Date(date) => self.try_on_date(date, from),
        }
    }

    /// Every movement dated `from..=to`, in date order (sequence order
    /// within a date), of a history whose records are all held.
    #[cfg(test)]
    pub(crate) fn movements(&self, from: NaiveDate, to: NaiveDate) -> Vec<Movement> {
        held(self.try_movements(from, to, None))
    }

    /// Every movement dated `from..=to`, in date order (sequence order
    /// within a date), records let go of read back from `store`: of the
    /// steps in date order (those before [`History::dated_from`]), only
    /// the records that can hold those dates are read.
    pub fn try_movements(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        store: Option<&dyn StoredSteps>,
    ) -> Result<Vec<Movement>, ReadError> {
        let mut movements = Vec::new();
        let before = self.dated_from;
        if before > 0 {
            let mut walk = self
                .steps
                .walk(self.steps.block_for_date(from, before), store);
            for (step, posted) in &mut walk {
                if step.sequence >= before || step.date > to {
                    break;
                }
                if step.date >= from {
                    movements.push(Movement::of((step, posted)));
                }
            }
            walk.finish()?;
        }
        if before != History::IN_DATE_ORDER {
            // Records let go of dated outside the span are not read back.
            let start = self.steps.block_for_sequence(before);
            let mut walk = self.steps.walk_dated(start, store, (from, to));
            for (step, posted) in &mut walk {
                if step.sequence >= before && (from..=to).contains(&step.date) {
                    movements.push(Movement::of((step, posted)));
                }
            }
            walk.finish()?;
        }
        movements.sort_by_key(|m| (m.date, m.sequence));
        Ok(movements)
    }

    /// The date of the earliest movement, without reading a step: the
    /// first step's (the earliest of those in date order) or the earliest
    /// kept by date.
    pub fn first_date(&self) -> Option<NaiveDate> {
        let kept = self.by_date.first().map(|(date, _)| *date);
        let first_step = self.steps.first_date().filter(|_| self.dated_from > 0);
        match (first_step, kept) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Lets go of this history's closed records held ([`Steps::let_go`]):
    /// the store must hold them as they are.
    fn let_go_closed(&mut self) {
        for index in 0..self.steps.record_count() {
            self.steps.let_go(index);
        }
    }

    /// How many entries posted here.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// True when nothing was posted.
    pub fn is_empty(&self) -> bool {
        self.steps.len() == 0
    }
}

/// One account's book: where it belongs and what was posted to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountBook {
    pub branch: BranchId,
    pub line: Line,
    pub history: History,
}

/// Which records of the state cache one posting changed: the last of its
/// account's history and of its line's ([`Books::account_record`],
/// [`Books::line_record`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostedRecords {
    pub account: u64,
    pub line: u64,
    /// The account's record this posting closed, which moves out of those
    /// startup reads ([`moves_closed_records`]): the posting opened the
    /// record after it.
    pub moved: Option<u64>,
}

/// The head of an account's record of steps in the state cache: where the
/// account belongs and where the record's blocks start; the steps' bytes
/// follow it in the record's value as they are, unless the record moved
/// out to one read when asked ([`closed_steps_key`]), when `moved` says
/// what startup needs of it and no bytes follow.
#[derive(Debug, Serialize, Deserialize)]
struct AccountStepsHead {
    branch: BranchId,
    line: Line,
    starts: Vec<BlockStart>,
    moved: Option<MovedRecord>,
}

/// A record's value: a postcard head followed by the steps' bytes.
fn steps_value<H: Serialize>(head: &H, bytes: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(64 + bytes.len());
    crate::codec::encode_into(head, &mut value);
    value.extend_from_slice(bytes);
    value
}

/// A history being read back from its records.
#[derive(Debug)]
struct Reading {
    history: History,
    /// A line's: its totals by date are kept apart from its steps.
    line: bool,
    /// Every step so far dated on or after the one before.
    in_date_order: bool,
    /// An account's: where its steps first went back in date, and what
    /// was posted since.
    disorder: Disorder,
    /// Its totals by date worked out for the steps it holds.
    settled: bool,
}

impl Reading {
    fn new(line: bool) -> Reading {
        Reading {
            history: History::default(),
            line,
            in_date_order: true,
            disorder: Disorder::default(),
            settled: false,
        }
    }

    /// Appends a record, let go of as it is unless `keep` (an account's
    /// closed record, which the store holds). A line's totals by date are
    /// worked out on the same walk while its steps are in date order
    /// (walking a line's steps again for them was a fifth of the books'
    /// reading at 10^7 entries), and so is what an account kept by date.
    fn append(&mut self, starts: &[BlockStart], bytes: &[u8], keep: bool) -> Result<(), String> {
        let dates = (self.line && self.in_date_order).then_some(&mut self.history.by_date);
        let disorder = (!self.line).then_some(&mut self.disorder);
        let in_order = self.history.steps.append_record_with(
            starts,
            bytes,
            dates,
            disorder,
            keep || self.line,
        )?;
        self.in_date_order &= in_order;
        self.settled = false;
        Ok(())
    }

    /// Appends a closed record moved out of those startup reads: its steps
    /// are in date order, as are all before it (records move out from the
    /// first, and [`BooksImport::finish`] refuses more than can).
    fn append_moved(&mut self, starts: &[BlockStart], moved: &MovedRecord) -> Result<(), String> {
        if self.line {
            return Err("a line's record moved out".into());
        }
        self.history.steps.append_moved(starts, moved)?;
        self.settled = false;
        Ok(())
    }

    /// Works out its totals by date: kept apart for a line, and for an
    /// account whose steps are not in date order, from its first step
    /// dated before the one before it (as booking keeps them).
    fn settle(&mut self) {
        if self.settled {
            return;
        }
        let history = &mut self.history;
        match (self.line, self.in_date_order) {
            (false, true) => {
                history.by_date = Vec::new();
                history.dated_from = History::IN_DATE_ORDER;
            }
            // Worked out while its records were read.
            (true, true) => history.dated_from = 0,
            (true, false) => {
                history.by_date = history.steps.totals_by_date(false);
                history.dated_from = 0;
            }
            // As booking left it: from the first step dated before the
            // one before it.
            (false, false) => match self.disorder.since() {
                Some((from, since)) => {
                    history.by_date = since;
                    history.dated_from = from;
                }
                None => {
                    history.by_date = Vec::new();
                    history.dated_from = History::IN_DATE_ORDER;
                }
            },
        }
        history.steps.shrink_to_fit();
        self.settled = true;
    }
}

/// Whose history a record of steps is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum StepsOf {
    Account(AccountId),
    Line(BranchId, Line),
}

impl StepsOf {
    /// The state cache's key of its record `index`: `steps/ACCOUNT/INDEX`
    /// or `linesteps/BRANCH/LINE/INDEX`.
    pub fn key(&self, index: u64) -> String {
        match self {
            StepsOf::Account(account) => format!("{ACCOUNT_STEPS_PREFIX}{account}/{index:010}"),
            StepsOf::Line(branch, line) => {
                format!("{LINE_STEPS_PREFIX}{branch}/{line}/{index:010}")
            }
        }
    }
}

/// Prefix of the keys of the accounts' records of steps.
pub const ACCOUNT_STEPS_PREFIX: &str = "steps/";
/// Prefix of the keys of the lines' records of steps.
pub const LINE_STEPS_PREFIX: &str = "linesteps/";

/// Prefix of the key of a closed or cancelled loan's account's records of
/// steps, kept in one record read when asked ([`crate::stored`]):
/// `cold/steps/ACCOUNT`.
pub const KEPT_STEPS_PREFIX: &str = "cold/steps/";

/// The key of the record that keeps `account`'s records of steps whole
/// once its loan ended ([`KEPT_STEPS_PREFIX`]).
pub fn kept_steps_key(account: &AccountId) -> String {
    format!("{KEPT_STEPS_PREFIX}{account}")
}

/// Prefix of the keys of the accounts' closed records of steps moved out
/// of those startup reads, each read when asked ([`crate::stored`]):
/// `cold/closed/ACCOUNT/INDEX`.
pub const CLOSED_STEPS_PREFIX: &str = "cold/closed/";

/// The key of `account`'s record `index` of steps once it moved out
/// ([`CLOSED_STEPS_PREFIX`]): its record under [`StepsOf::key`] then
/// holds what startup takes of it, not its steps.
pub fn closed_steps_key(account: &AccountId, index: u64) -> String {
    format!("{CLOSED_STEPS_PREFIX}{account}/{index:010}")
}

/// The account and index a moved-out record's key names
/// ([`closed_steps_key`]), if it is one.
pub fn closed_steps_of(key: &str) -> Option<Result<(AccountId, u64), String>> {
    let rest = key.strip_prefix(CLOSED_STEPS_PREFIX)?;
    let parsed = rest
        .rsplit_once('/')
        .and_then(|(account, index)| {
            Some((AccountId::parse("key", account).ok()?, index.parse().ok()?))
        })
        .filter(|(account, _)| moves_closed_records(account))
        .ok_or_else(|| format!("record key {key:?}"));
    Some(parsed)
}

/// True for an account whose closed records of steps move out of those
/// startup reads, each to a record read when asked ([`closed_steps_key`]),
/// once the record after it opens and if no step up to it went back in
/// date: a savings account's, posted to at every meeting for as long as
/// its member saves, whose history grows with the branch's years. Its
/// record under its own key then keeps what startup needs to know of it
/// (its blocks' starts and totals, its bytes' hash, dates and length),
/// about a sixth of its steps' bytes. A loan's history ends with the loan
/// (and moves whole then, [`kept_steps_key`]); the branch's own accounts'
/// steps are read for every entry.
pub fn moves_closed_records(account: &AccountId) -> bool {
    matches!(account, AccountId::Savings(_))
}

/// True for an account whose records of steps are kept in one record read
/// when asked once what it belongs to ended: a loan's.
pub fn is_kept_when_ended(account: &AccountId) -> bool {
    matches!(account, AccountId::Loan(_))
}

/// The records of steps a kept record holds ([`kept_steps_key`]), each as
/// [`Books::account_record`] gives it, in order.
fn kept_records(key: &str, value: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    postcard::from_bytes(value).map_err(|e| format!("record {key:?}: {e}"))
}

/// The account a kept record's key names ([`kept_steps_key`]).
fn kept_account_of(key: &[u8]) -> Option<AccountId> {
    let account = std::str::from_utf8(key.strip_prefix(KEPT_STEPS_PREFIX.as_bytes())?).ok()?;
    AccountId::parse("key", account)
        .ok()
        .filter(is_kept_when_ended)
}

/// `account`'s book read back from the record that keeps it in `store`
/// ([`kept_steps_key`]), if there is one.
pub fn read_kept_book(
    store: &dyn StoredRecords,
    account: &AccountId,
) -> Result<Option<AccountBook>, ReadError> {
    if !is_kept_when_ended(account) {
        return Ok(None);
    }
    let key = kept_steps_key(account);
    let Some(value) = store.read(key.as_bytes())? else {
        return Ok(None);
    };
    kept_book_of(account, &key, &value)
}

/// `account`'s book as the value of its kept record ([`kept_steps_key`],
/// `key`) makes it up.
fn kept_book_of(
    account: &AccountId,
    key: &str,
    value: &[u8],
) -> Result<Option<AccountBook>, ReadError> {
    let records = kept_records(key, value).map_err(ReadError::Damaged)?;
    book_of_records(account, records)
        .map_err(|why| ReadError::Damaged(format!("record {key:?}: {why}")))
}

/// `account`'s book made up of its records of steps (`None` when there are
/// none), all held.
fn book_of_records(
    account: &AccountId,
    records: Vec<Vec<u8>>,
) -> Result<Option<AccountBook>, String> {
    let mut import = BooksImport::default();
    for (record, index) in records.into_iter().zip(0..) {
        import.add(StepsOf::Account(account.clone()), index, record)?;
    }
    let mut books = import.finish()?;
    Ok(books.accounts.remove(account))
}

/// A record's value split into its blocks' starts and its steps' bytes
/// (and for an account, where it belongs, and what startup takes of it
/// if it moved out, its bytes then none).
type RecordParts<'a> = (
    Option<(BranchId, Line)>,
    Vec<BlockStart>,
    &'a [u8],
    Option<MovedRecord>,
);

fn record_parts<'a>(of: &StepsOf, value: &'a [u8]) -> Result<RecordParts<'a>, String> {
    match of {
        StepsOf::Account(account) => {
            let (head, bytes): (AccountStepsHead, &[u8]) =
                postcard::take_from_bytes(value).map_err(|e| e.to_string())?;
            if head.moved.is_some() {
                if !moves_closed_records(account) {
                    return Err(format!("it moved out, and {account}'s records never do"));
                }
                if !bytes.is_empty() {
                    return Err("it moved out, and holds steps".into());
                }
            }
            Ok((
                Some((head.branch, head.line)),
                head.starts,
                bytes,
                head.moved,
            ))
        }
        StepsOf::Line(..) => {
            let (starts, bytes): (Vec<BlockStart>, &[u8]) =
                postcard::take_from_bytes(value).map_err(|e| e.to_string())?;
            Ok((None, starts, bytes, None))
        }
    }
}

/// Consecutive records of one history (its record `first` and those after
/// it), held until a record of another comes or [`RUN_RECORDS`] are held.
struct Run {
    of: StepsOf,
    first: u64,
    values: Vec<Vec<u8>>,
}

/// Records of a history held before they are appended: taking a long
/// history's records in only after its last was read (its room taken
/// once) left the thread idle while they were read, and the reading
/// stopped while it then took them all in (a branch's cash at 10^7
/// entries is 78,000 records).
const RUN_RECORDS: usize = 512;

/// A record read out of its history's order, kept until the ones before
/// it are read.
struct LateRecord {
    of: StepsOf,
    index: u64,
    value: Vec<u8>,
}

/// Books being read back from the state cache's records of steps, one at
/// a time as the store reads them. A history's records come one after
/// another in order as sled reads them: they are held until a record of
/// another history comes (or [`RUN_RECORDS`] are held), then appended to
/// their history at once, its room taken once for all of them rather than
/// record by record. A record
/// that comes before the one preceding it is kept aside until that one is
/// read.
#[derive(Default)]
pub struct BooksImport {
    accounts: BTreeMap<AccountId, (BranchId, Line, Reading)>,
    lines: BTreeMap<(BranchId, Line), Reading>,
    run: Option<Run>,
    late: Vec<LateRecord>,
    /// Lets go of the accounts' closed records as they are read
    /// ([`BooksImport::letting_go`]).
    let_go: bool,
    /// The records moved out taken in, by their steps' keys
    /// ([`closed_steps_key`]), for a reading of every record whole to pair
    /// with the steps it was given (startup is given none).
    moved: KeySum,
    /// Records moved out given whole ([`BooksImport::add_moved_whole`]),
    /// taken in in their place.
    moved_whole: BTreeMap<(AccountId, u64), Vec<u8>>,
    /// What the records moved out taken in keep of them, for those given
    /// whole to be checked against (not kept by an import letting go,
    /// which is given none).
    moved_kept: BTreeMap<(AccountId, u64), MovedRecord>,
    /// How many records moved out each account's first records are.
    moved_counts: BTreeMap<AccountId, u64>,
}

/// A set of keys, as their number and the sum of their hashes: two sets
/// that differ have the same sum by chance only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeySum {
    pub count: u64,
    sum: u64,
}

impl KeySum {
    /// Adds `key`.
    pub fn add(&mut self, key: &str) {
        // FNV-1a, the same in every share of a reading.
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, b| {
            (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        self.count += 1;
        self.sum = self.sum.wrapping_add(hash);
    }

    fn absorb(&mut self, other: KeySum) {
        self.count += other.count;
        self.sum = self.sum.wrapping_add(other.sum);
    }
}

impl BooksImport {
    /// An import that lets go of each account's closed records as it
    /// reads them (memory keeps the hash of each, and never holds them
    /// all at once): for records read from a store that the books will
    /// read them back from ([`Books::keep_in`]).
    pub fn letting_go() -> BooksImport {
        BooksImport {
            let_go: true,
            ..BooksImport::default()
        }
    }

    /// Takes in record `index` of a history's steps (its value as
    /// [`Books::account_record`] or [`Books::line_record`] gave it). A
    /// record that does not decode may be refused by a later call, naming
    /// its key.
    pub fn add(&mut self, of: StepsOf, index: u64, value: Vec<u8>) -> Result<(), String> {
        if let Some(run) = self.run.as_mut()
            && run.of == of
            && run.first + run.values.len() as u64 == index
        {
            run.values.push(value);
            if run.values.len() >= RUN_RECORDS {
                // A long history is taken in as its records come, not all
                // at its end: the reading threads go on meanwhile.
                self.append_run()?;
            }
            return Ok(());
        }
        self.append_run()?;
        let next = self.records_of(&of);
        if index == next {
            self.run = Some(Run {
                of,
                first: index,
                values: vec![value],
            });
            return Ok(());
        }
        if index < next {
            return Err(format!("record {:?} read twice", of.key(index)));
        }
        self.late.push(LateRecord { of, index, value });
        Ok(())
    }

    /// Takes in `account`'s record `index` moved out, whole (its value
    /// under [`closed_steps_key`]), in place of what its own key keeps of
    /// it when that comes: for a state read back whole
    /// ([`crate::state::LedgerState::import`]), which holds every record.
    pub fn add_moved_whole(&mut self, account: AccountId, index: u64, value: Vec<u8>) {
        self.moved_whole.insert((account, index), value);
    }

    /// Records of `of` appended so far.
    fn records_of(&self, of: &StepsOf) -> u64 {
        let reading = match of {
            StepsOf::Account(account) => self.accounts.get(account).map(|(_, _, r)| r),
            StepsOf::Line(branch, line) => self.lines.get(&(branch.clone(), line.clone())),
        };
        reading.map_or(0, |r| r.history.steps.record_count() as u64)
    }

    /// Appends the records held to their history, its room taken once
    /// for them.
    fn append_run(&mut self) -> Result<(), String> {
        let Some(run) = self.run.take() else {
            return Ok(());
        };
        let mut parts = Vec::with_capacity(run.values.len());
        for (value, index) in run.values.iter().zip(run.first..) {
            let record = record_parts(&run.of, value)
                .map_err(|why| format!("record {:?}: {why}", run.of.key(index)))?;
            parts.push(record);
        }
        let reading = match &run.of {
            StepsOf::Account(account) => {
                let Some((Some((branch, line)), _, _, _)) = parts.first() else {
                    return Err(format!("record {:?} has no line", run.of.key(run.first)));
                };
                let (held_branch, held_line, reading) = self
                    .accounts
                    .entry(account.clone())
                    .or_insert_with(|| (branch.clone(), line.clone(), Reading::new(false)));
                if let Some(((b, l), index)) =
                    parts
                        .iter()
                        .zip(run.first..)
                        .find_map(|((head, _, _, _), index)| {
                            head.as_ref()
                                .filter(|(b, l)| (b, l) != (&*held_branch, &*held_line))
                                .map(|head| (head, index))
                        })
                {
                    return Err(format!(
                        "record {:?} names line {l} of branch {b}, the account's others line \
                         {held_line} of branch {held_branch}",
                        run.of.key(index)
                    ));
                }
                reading
            }
            StepsOf::Line(branch, line) => self
                .lines
                .entry((branch.clone(), line.clone()))
                .or_insert_with(|| Reading::new(true)),
        };
        reading.history.steps.reserve_records(
            parts.len(),
            parts.iter().map(|(_, starts, _, _)| starts.len()).sum(),
        );
        // The run's last record is kept (it may be the history's last,
        // which booking goes on in), the others let go of as they are
        // read, and the one before the run once the run follows it.
        let last = run.first + parts.len() as u64 - 1;
        for ((_, starts, bytes, moved), index) in parts.iter().zip(run.first..) {
            match (moved, &run.of) {
                (Some(moved), StepsOf::Account(account)) => {
                    // Records move out in order, from the first.
                    let count = self.moved_counts.entry(account.clone()).or_default();
                    if *count != index {
                        return Err(format!(
                            "record {:?} moved out, and record {} did not",
                            run.of.key(index),
                            *count
                        ));
                    }
                    *count += 1;
                    self.moved.add(&closed_steps_key(account, index));
                    if !self.let_go {
                        self.moved_kept
                            .insert((account.clone(), index), moved.clone());
                    }
                    reading.append_moved(starts, moved)
                }
                _ => reading.append(starts, bytes, !self.let_go || index == last),
            }
            .map_err(|why| format!("record {:?}: {why}", run.of.key(index)))?;
        }
        if self.let_go && run.first > 0 && !reading.line {
            reading.history.steps.let_go(run.first as usize - 1);
        }
        // A member's account's last record too, as soon as it is read
        // (let go of later, it would leave its room scattered among what
        // was read since).
        if self.let_go
            && let StepsOf::Account(account) = &run.of
            && lets_go_of_last(account)
        {
            reading.history.steps.let_go_last();
        }
        Ok(())
    }

    /// Ends the reading: the records held appended, and the totals by
    /// date of the histories read so far worked out (on the reading
    /// thread, before [`BooksImport::absorb`] gathers them).
    pub fn settle(&mut self) -> Result<(), String> {
        self.append_run()?;
        for (_, _, reading) in self.accounts.values_mut() {
            reading.settle();
        }
        for reading in self.lines.values_mut() {
            reading.settle();
        }
        Ok(())
    }

    /// Takes in what another import took in (of other histories, when the
    /// records were shared out by history; a history both took in has the
    /// other's records taken in again, in order, at the end).
    pub fn absorb(&mut self, mut other: BooksImport) -> Result<(), String> {
        other.append_run()?;
        let BooksImport {
            accounts,
            lines,
            run: _,
            late,
            let_go: _,
            moved,
            moved_whole,
            moved_kept,
            moved_counts,
        } = other;
        self.moved_counts.extend(moved_counts);
        self.moved.absorb(moved);
        self.moved_whole.extend(moved_whole);
        self.moved_kept.extend(moved_kept);
        for (account, (branch, line, reading)) in accounts {
            match self.accounts.entry(account) {
                std::collections::btree_map::Entry::Vacant(vacant) => {
                    vacant.insert((branch, line, reading));
                }
                std::collections::btree_map::Entry::Occupied(held) => {
                    let of = StepsOf::Account(held.key().clone());
                    for index in 0..reading.history.steps.record_count() {
                        if reading.history.steps.is_let_go(index) {
                            return Err(format!(
                                "record {:?} was taken in by two readings",
                                of.key(index as u64)
                            ));
                        }
                        if let Some((starts, bytes)) = reading.history.steps.record(index) {
                            let head = AccountStepsHead {
                                branch: branch.clone(),
                                line: line.clone(),
                                starts,
                                moved: None,
                            };
                            self.late.push(LateRecord {
                                of: of.clone(),
                                index: index as u64,
                                value: steps_value(&head, bytes),
                            });
                        }
                    }
                }
            }
        }
        for (key, reading) in lines {
            match self.lines.entry(key) {
                std::collections::btree_map::Entry::Vacant(vacant) => {
                    vacant.insert(reading);
                }
                std::collections::btree_map::Entry::Occupied(held) => {
                    let of = StepsOf::Line(held.key().0.clone(), held.key().1.clone());
                    for index in 0..reading.history.steps.record_count() {
                        if let Some((starts, bytes)) = reading.history.steps.record(index) {
                            self.late.push(LateRecord {
                                of: of.clone(),
                                index: index as u64,
                                value: steps_value(&starts, bytes),
                            });
                        }
                    }
                }
            }
        }
        self.late.extend(late);
        Ok(())
    }

    /// The books the records make up: refused when a history's records
    /// leave a gap.
    pub fn finish(self) -> Result<Books, String> {
        self.finish_with_moved().map(|(books, _)| books)
    }

    /// [`BooksImport::finish`], and the records moved out it took in, by
    /// their steps' keys.
    pub fn finish_with_moved(mut self) -> Result<(Books, KeySum), String> {
        self.append_run()?;
        let mut late = std::mem::take(&mut self.late);
        late.sort_by(|a, b| (&a.of, a.index).cmp(&(&b.of, b.index)));
        for record in late {
            self.add(record.of, record.index, record.value)?;
        }
        self.append_run()?;
        if let Some(gap) = self.late.first() {
            return Err(format!(
                "record {:?} follows no record {}",
                gap.of.key(gap.index),
                gap.index - 1
            ));
        }
        // Records moved out given whole: their steps held, checked against
        // what their own keys keep of them.
        for ((account, index), whole) in std::mem::take(&mut self.moved_whole) {
            let key = closed_steps_key(&account, index);
            let of = StepsOf::Account(account);
            let StepsOf::Account(account) = &of else {
                unreachable!()
            };
            let (_, starts, bytes, again) =
                record_parts(&of, &whole).map_err(|why| format!("record {key:?}: {why}"))?;
            let moved = self.moved_kept.get(&(account.clone(), index));
            let held = match (again, moved, usize::try_from(index)) {
                (None, Some(moved), Ok(index)) => {
                    self.accounts
                        .get_mut(account)
                        .is_some_and(|(_, _, reading)| {
                            reading
                                .history
                                .steps
                                .hold_moved(index, &starts, bytes, moved)
                        })
                }
                _ => false,
            };
            if !held {
                return Err(format!(
                    "record {key:?} does not hold the steps of a record that moved out"
                ));
            }
        }
        // A record moves out only once a later one follows it.
        if let Some((account, (_, _, reading))) = self
            .accounts
            .iter()
            .find(|(_, (_, _, r))| r.history.steps.ends_moved())
        {
            return Err(format!(
                "record {:?} moved out, and no record follows it",
                StepsOf::Account(account.clone())
                    .key(reading.history.steps.record_count() as u64 - 1)
            ));
        }
        self.settle()?;
        // Every record that can move out has (they move with the record
        // that opens after them, in the same checkpoint).
        for (account, (_, _, reading)) in &self.accounts {
            if !moves_closed_records(account) {
                continue;
            }
            let history = &reading.history;
            let closed = history.steps.record_count().saturating_sub(1);
            let movable = (0..closed).take_while(|k| history.is_moved(*k)).count() as u64;
            let moved = self.moved_counts.get(account).copied().unwrap_or(0);
            if moved != movable {
                return Err(format!(
                    "{moved} of {account}'s closed records of steps moved out of those read \
                     at startup, where {movable} can (record {:?} on)",
                    StepsOf::Account(account.clone()).key(moved.min(movable))
                ));
            }
        }
        let accounts = self
            .accounts
            .into_iter()
            .map(|(account, (branch, line, reading))| {
                let book = AccountBook {
                    branch,
                    line,
                    history: reading.history,
                };
                (account, book)
            })
            .collect();
        let mut lines: BTreeMap<BranchId, BTreeMap<Line, History>> = BTreeMap::new();
        for ((branch, line), reading) in self.lines {
            lines
                .entry(branch)
                .or_default()
                .insert(line, reading.history);
        }
        let books = Books {
            accounts,
            lines,
            ..Books::default()
        };
        Ok((books, self.moved))
    }
}

/// An account's record of steps grown since it was let go of, as a
/// checkpoint takes it ([`Books::grown_account_record`]); or one let go
/// of that moves out ([`Books::moved_record_to_complete`]), with what its
/// own key then keeps, but for what its steps are stored as.
#[derive(Debug)]
pub struct GrownAccountRecord {
    account: AccountId,
    head: AccountStepsHead,
    record: GrownRecord,
    moved: Option<AccountStepsHead>,
}

/// A record a checkpoint read back whole ([`GrownAccountRecord::complete`]).
#[derive(Debug)]
pub struct Completed {
    /// Its value whole.
    pub value: Vec<u8>,
    /// What lets it be let go of again once saved ([`Books::note_written`]).
    pub written: StoredAs,
    /// For a record that moves out, the value its own key then keeps.
    pub moved: Option<Vec<u8>>,
}

impl GrownAccountRecord {
    /// The record's value whole, the bytes let go of read back from
    /// `store` and checked, and what lets it be let go of again once
    /// saved ([`Books::note_written`]); an error when they cannot be read
    /// or are not those let go of (the checkpoint then writes nothing).
    /// For a record that moves out, the value its own key then keeps too.
    pub fn complete(self, store: Option<&dyn StoredRecords>) -> Result<Completed, ReadError> {
        let from = store.map(|store| AccountSteps {
            store,
            of: StepsOf::Account(self.account),
        });
        let (bytes, written) = self
            .record
            .complete(from.as_ref().map(|s| s as &dyn StoredSteps))?;
        let moved = match self.moved {
            Some(head) => {
                let moved = match head.moved {
                    Some(moved) => Some(moved.with_steps(&bytes, written)?),
                    None => None,
                };
                Some(steps_value(&AccountStepsHead { moved, ..head }, &[]))
            }
            None => None,
        };
        Ok(Completed {
            value: steps_value(&self.head, &bytes),
            written,
            moved,
        })
    }

    /// True when it completes the value its record's own key keeps too.
    pub fn completes_moved(&self) -> bool {
        self.moved.is_some()
    }
}

/// The state cache's value of an account's record of steps read (none
/// when there is no such record): its head, then its steps' bytes.
fn account_value(branch: &BranchId, line: &Line, read: Option<RecordRead<'_>>) -> Option<Vec<u8>> {
    let (starts, bytes) = read?;
    let head = AccountStepsHead {
        branch: branch.clone(),
        line: line.clone(),
        starts,
        moved: None,
    };
    Some(steps_value(&head, &bytes))
}

/// True for a member's account (a loan's, a savings account's), posted
/// to about once a meeting, if at all: its last record of steps, once the
/// store holds it, is let go of too, not only its closed ones. A later
/// posting is booked all the same, held after the bytes let go of; the
/// next checkpoint reads them back to write the record whole, and once
/// saved the record is let go of again ([`Steps::let_go_last`]). A
/// branch's own accounts (its cash, its income), which most entries post
/// to, keep their last record: read back at every checkpoint, it would
/// cost more than its bytes.
fn lets_go_of_last(account: &AccountId) -> bool {
    matches!(account, AccountId::Loan(_) | AccountId::Savings(_))
}

/// The general ledger of every branch.
#[derive(Clone, Debug, Default)]
pub struct Books {
    accounts: BTreeMap<AccountId, AccountBook>,
    lines: BTreeMap<BranchId, BTreeMap<Line, History>>,
    /// What each year-end close carried out of the income and expense
    /// lines into retained earnings, by branch and the close's date, so that
    /// an income statement leaves the closing entry out.
    carried: BTreeMap<(BranchId, NaiveDate), Vec<(Line, Balance)>>,
    /// True on a copy that keeps only the lines (the writer's, which
    /// decides commands and answers no reads).
    lines_only: bool,
    /// Where the accounts' closed records of steps let go of are read
    /// back from ([`Books::keep_in`]).
    store: Option<Arc<dyn StoredRecords>>,
}

impl PartialEq for Books {
    fn eq(&self, other: &Books) -> bool {
        self.accounts == other.accounts
            && self.lines == other.lines
            && self.carried == other.carried
            && self.lines_only == other.lines_only
    }
}

impl Eq for Books {}

/// An account's records of steps in the store, read back when asked.
struct AccountSteps<'a> {
    store: &'a dyn StoredRecords,
    of: StepsOf,
}

impl StoredSteps for AccountSteps<'_> {
    fn steps_bytes(&self, index: usize) -> Result<Vec<u8>, ReadError> {
        let key = self.name(index);
        let value = match self.store.read_again(key.as_bytes())? {
            Some(value) => value,
            // A loan's account, its records kept whole in one record
            // since a checkpoint saved the loan ended (a reversal reopened
            // it since, or memory has not let go of it yet): read from there.
            None => self
                .kept_record(index)?
                .ok_or_else(|| ReadError::Damaged(format!("record {key:?} is missing")))?,
        };
        let (_, _, bytes, moved) = record_parts(&self.of, &value)
            .map_err(|why| ReadError::Damaged(format!("record {key:?}: {why}")))?;
        if moved.is_none() {
            return Ok(bytes.to_vec());
        }
        // Moved out: its steps are in the record read when asked.
        let StepsOf::Account(account) = &self.of else {
            return Err(ReadError::Damaged(format!("record {key:?} moved out")));
        };
        let closed = closed_steps_key(account, index as u64);
        let value = self
            .store
            .read(closed.as_bytes())?
            .ok_or_else(|| ReadError::Damaged(format!("record {closed:?} is missing")))?;
        match record_parts(&self.of, &value) {
            Ok((_, _, bytes, None)) => Ok(bytes.to_vec()),
            Ok(_) => Err(ReadError::Damaged(format!(
                "record {closed:?} holds no steps"
            ))),
            Err(why) => Err(ReadError::Damaged(format!("record {closed:?}: {why}"))),
        }
    }

    fn name(&self, index: usize) -> String {
        self.of.key(index as u64)
    }
}

impl AccountSteps<'_> {
    /// Record `index` as the account's kept record holds it, if it has one.
    fn kept_record(&self, index: usize) -> Result<Option<Vec<u8>>, ReadError> {
        let StepsOf::Account(account) = &self.of else {
            return Ok(None);
        };
        if !is_kept_when_ended(account) {
            return Ok(None);
        }
        let key = kept_steps_key(account);
        let Some(value) = self.store.read(key.as_bytes())? else {
            return Ok(None);
        };
        let mut records = kept_records(&key, &value).map_err(ReadError::Damaged)?;
        Ok((index < records.len()).then(|| records.swap_remove(index)))
    }
}

impl Books {
    /// Books one posting of entry `sequence`, dated `date`, in `branch`:
    /// which records of the state cache it changed (`None` on a copy that
    /// keeps only the lines, which has none).
    pub fn post(
        &mut self,
        sequence: u64,
        date: NaiveDate,
        branch: &BranchId,
        account: &AccountId,
        line: Line,
        posted: Balance,
    ) -> Option<PostedRecords> {
        // Looked up by reference first: booking allocates only for a new line.
        let lines = match self.lines.get_mut(branch) {
            Some(lines) => lines,
            None => self.lines.entry(branch.clone()).or_default(),
        };
        let history = match lines.get_mut(&line) {
            Some(history) => history,
            None => lines.entry(line.clone()).or_default(),
        };
        if self.lines_only {
            // The writer decides by date (balances that must not go below
            // zero on any later date, the year-end close) and answers no
            // reads: its lines keep no step per entry.
            history.post_dated(date, posted);
            return None;
        }
        history.post(sequence, date, posted);
        let line_record = history.steps.last_record() as u64;
        let mut moved = None;
        let account_record = match self.accounts.get_mut(account) {
            Some(book) => {
                book.history.post(sequence, date, posted);
                let last = book.history.steps.last_record();
                if book.history.steps.len() % RECORD_STEPS == 1
                    && last > 0
                    && moves_closed_records(account)
                    && book.history.is_moved(last - 1)
                {
                    moved = Some(last as u64 - 1);
                }
                last
            }
            None => {
                let mut history = History::dated_by_steps();
                history.post(sequence, date, posted);
                self.accounts.insert(
                    account.clone(),
                    AccountBook {
                        branch: branch.clone(),
                        line,
                        history,
                    },
                );
                0
            }
        };
        Some(PostedRecords {
            account: account_record as u64,
            line: line_record,
            moved,
        })
    }

    /// Keeps only the general-ledger lines, by date, from now on: drops the
    /// accounts' histories and the lines' steps by entry (for a copy that
    /// decides commands and answers no reads).
    pub fn keep_lines_only(&mut self) {
        self.lines_only = true;
        self.accounts = BTreeMap::new();
        for history in self.lines.values_mut().flat_map(BTreeMap::values_mut) {
            *history = history.dates_only();
        }
    }

    /// A copy keeping only the lines, by date ([`Books::keep_lines_only`]),
    /// made without copying what that drops.
    pub fn lines_by_date(&self) -> Books {
        let lines = self
            .lines
            .iter()
            .map(|(branch, lines)| {
                let lines = lines
                    .iter()
                    .map(|(line, history)| (line.clone(), history.dates_only()))
                    .collect();
                (branch.clone(), lines)
            })
            .collect();
        Books {
            accounts: BTreeMap::new(),
            lines,
            carried: self.carried.clone(),
            lines_only: true,
            store: None,
        }
    }

    /// Notes that entry postings on `date` in `branch` closed the year:
    /// what they took out of each income and expense line.
    pub fn note_carry(
        &mut self,
        branch: &BranchId,
        date: NaiveDate,
        carried: Vec<(Line, Balance)>,
    ) {
        // A year closed again after a reopening carries what was added.
        let lines = self.carried.entry((branch.clone(), date)).or_default();
        for (line, balance) in carried {
            match lines.iter_mut().find(|(l, _)| *l == line) {
                Some((_, total)) => *total = total.plus(balance),
                None => lines.push((line, balance)),
            }
        }
    }

    /// The year-end carries, as records: `((branch, date), lines)`.
    pub fn carries(&self) -> impl Iterator<Item = (&(BranchId, NaiveDate), &Vec<(Line, Balance)>)> {
        self.carried.iter()
    }

    /// An account's book.
    pub fn account(&self, account: &AccountId) -> Option<&AccountBook> {
        self.accounts.get(account)
    }

    /// The line of the books `account` is booked to, if it has postings
    /// (a loan's account, held or let go of with its loan, is on the
    /// loan portfolio's line, which its name gives).
    pub fn account_line(&self, account: &AccountId) -> Option<Line> {
        match self.accounts.get(account) {
            Some(book) => Some(book.line.clone()),
            None => is_kept_when_ended(account).then(|| Line::of(account, None)),
        }
    }

    /// Where `account`'s records let go of are read back from.
    fn stored_steps(&self, account: &AccountId) -> Option<AccountSteps<'_>> {
        self.store.as_deref().map(|store| AccountSteps {
            store,
            of: StepsOf::Account(account.clone()),
        })
    }

    /// What was posted to `account` as of `as_of` (nothing for an account
    /// without postings): an error when a record of its steps let go of
    /// could not be read back, or is not the one written.
    pub fn account_as_of(&self, account: &AccountId, as_of: AsOf) -> Result<Balance, ReadError> {
        let Some(book) = self.book_or_kept(account)? else {
            return Ok(Balance::default());
        };
        let stored = self.stored_steps(account);
        book.history
            .try_as_of(as_of, stored.as_ref().map(|s| s as &dyn StoredSteps))
    }

    /// `account`'s book: held, or read back whole from the record that
    /// keeps it once its loan ended and memory let go of it
    /// ([`Books::forget`]); `None` for an account without postings.
    pub fn book_or_kept(
        &self,
        account: &AccountId,
    ) -> Result<Option<std::borrow::Cow<'_, AccountBook>>, ReadError> {
        if let Some(book) = self.accounts.get(account) {
            return Ok(Some(std::borrow::Cow::Borrowed(book)));
        }
        Ok(self.kept_book(account)?.map(std::borrow::Cow::Owned))
    }

    /// `account`'s book read back from the record that keeps it, if the
    /// store has one.
    fn kept_book(&self, account: &AccountId) -> Result<Option<AccountBook>, ReadError> {
        match self.store.as_deref() {
            Some(store) => read_kept_book(store, account),
            None => Ok(None),
        }
    }

    /// True when memory holds `account`'s book.
    pub fn holds(&self, account: &AccountId) -> bool {
        self.accounts.contains_key(account)
    }

    /// True on a copy that keeps only the lines ([`Books::keep_lines_only`]).
    pub fn keeps_lines_only(&self) -> bool {
        self.lines_only
    }

    /// `account`'s book read back whole from the record that keeps it, for
    /// an entry to book to it again (the reversal that reopens its loan:
    /// [`Books::bring_back`]): an error when the store cannot read it or
    /// has none.
    pub fn read_kept(&self, account: &AccountId) -> Result<AccountBook, ReadError> {
        self.kept_book(account)?.ok_or_else(|| {
            ReadError::Damaged(format!(
                "record {:?} is missing from the state cache",
                kept_steps_key(account)
            ))
        })
    }

    /// Holds `account`'s book read back ([`Books::read_kept`]) again.
    pub fn bring_back(&mut self, account: AccountId, book: AccountBook) {
        self.accounts.entry(account).or_insert(book);
    }

    /// Lets go of `account`'s book whole, once the store keeps its records
    /// in the record read when asked ([`kept_steps_key`]): its loan ended
    /// and a checkpoint saved it. Kept while the books have no store.
    pub fn forget(&mut self, account: &AccountId) {
        if self.store.is_some() {
            self.accounts.remove(account);
        }
    }

    /// The value of the record that keeps `account`'s records of steps
    /// whole ([`kept_steps_key`]): each as [`Books::account_record`]
    /// gives it, those let go of read back from the store (an error when
    /// one cannot be); an empty list for an account without postings.
    pub fn kept_steps_value(&self, account: &AccountId) -> Result<Vec<u8>, ReadError> {
        let count = self
            .accounts
            .get(account)
            .map_or(0, |book| book.history.steps.record_count() as u64);
        let mut records = Vec::with_capacity(count as usize);
        for index in 0..count {
            let record = self.account_record(account, index)?.ok_or_else(|| {
                ReadError::Damaged(format!(
                    "record {:?} is not held",
                    StepsOf::Account(account.clone()).key(index)
                ))
            })?;
            records.push(record);
        }
        Ok(crate::codec::encode(&records))
    }

    /// Every movement of `account` dated `from..=to`, in date order
    /// (sequence order within a date); an error as for
    /// [`Books::account_as_of`].
    pub fn account_movements(
        &self,
        account: &AccountId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<Movement>, ReadError> {
        let Some(book) = self.book_or_kept(account)? else {
            return Ok(Vec::new());
        };
        let stored = self.stored_steps(account);
        book.history
            .try_movements(from, to, stored.as_ref().map(|s| s as &dyn StoredSteps))
    }

    /// From now on reads the accounts' closed records of steps it lets go
    /// of from `store`, and lets go of every one it holds: for books whose
    /// records `store` holds (startup read or saved them). The lines keep
    /// theirs: the writer and the statements read them where nothing may
    /// fail.
    pub fn keep_in(&mut self, store: Arc<dyn StoredRecords>) {
        if self.lines_only {
            return;
        }
        self.store = Some(store);
        for book in self.accounts.values_mut() {
            book.history.let_go_closed();
        }
    }

    /// Lets go of `account`'s record `index` of steps once the store holds
    /// it as it will stay (a checkpoint saved it, and a later record
    /// follows); kept while the books have no store to read it back from.
    pub fn let_go(&mut self, account: &AccountId, index: u64) {
        if self.store.is_none() {
            return;
        }
        if let Some(book) = self.accounts.get_mut(account)
            && let Ok(index) = usize::try_from(index)
        {
            book.history.steps.let_go(index);
        }
    }

    /// The index of `account`'s last record of steps, if it has steps.
    pub fn last_record(&self, account: &AccountId) -> Option<u64> {
        let book = self.accounts.get(account)?;
        (book.history.steps.len() > 0).then(|| book.history.steps.last_record() as u64)
    }

    /// Lets go of `account`'s last record of steps too, if it is a
    /// member's account's ([`lets_go_of_last`]), once the store holds the
    /// record as it is (a checkpoint saved it, and nothing was booked to
    /// it since); kept while the books have no store.
    pub fn let_go_last(&mut self, account: &AccountId) {
        if self.store.is_none() || !lets_go_of_last(account) {
            return;
        }
        if let Some(book) = self.accounts.get_mut(account) {
            book.history.steps.let_go_last();
        }
    }

    /// [`Books::let_go_last`] for every member's account whose last
    /// record the store holds as it is (`saved`: its index).
    pub fn let_go_every_last(&mut self, saved: impl Fn(&AccountId, u64) -> bool) {
        if self.store.is_none() {
            return;
        }
        for (account, book) in &mut self.accounts {
            if lets_go_of_last(account) && saved(account, book.history.steps.last_record() as u64) {
                book.history.steps.let_go_last();
            }
        }
    }

    /// True when `account`'s record `index` of steps is held whole.
    #[cfg(test)]
    pub(crate) fn holds_whole(&self, account: &AccountId, index: u64) -> bool {
        self.accounts.get(account).is_some_and(|book| {
            usize::try_from(index).is_ok_and(|index| book.history.steps.record(index).is_some())
        })
    }

    /// True when `account`'s record `index` of steps was let go of and
    /// the store holds it as it is, under its key or, once the account's
    /// loan ended, in the record that keeps them all (a checkpoint never
    /// writes it again unless a posting grows it, which makes this false,
    /// or it moves between the two).
    pub fn is_let_go(&self, account: &AccountId, index: u64) -> bool {
        self.accounts.get(account).is_some_and(|book| {
            usize::try_from(index).is_ok_and(|index| book.history.steps.is_let_go(index))
        })
    }

    /// Bytes of the accounts' and lines' steps held in memory.
    pub fn held_bytes(&self) -> usize {
        let accounts = self.accounts.values().map(|b| b.history.steps.held_bytes());
        let lines = self
            .lines
            .values()
            .flat_map(BTreeMap::values)
            .map(|h| h.steps.held_bytes());
        accounts.chain(lines).sum()
    }

    /// Every account with a posting, in name order, from `after` on (exclusive).
    pub fn accounts_after<'a>(
        &'a self,
        after: Option<&AccountId>,
    ) -> impl Iterator<Item = (&'a AccountId, &'a AccountBook)> + 'a {
        use std::ops::Bound;
        let start = match after {
            Some(after) => Bound::Excluded(after.clone()),
            None => Bound::Unbounded,
        };
        self.accounts.range((start, Bound::Unbounded))
    }

    /// At most `limit` accounts with a posting, in name order from
    /// `after` on (exclusive): those memory holds, and the closed and
    /// cancelled loans' accounts it let go of, read back from the store
    /// (the records of those it holds passed over unread: memory's are the
    /// newer). An error when the store cannot list or read them.
    pub fn accounts_listed(
        &self,
        after: Option<&AccountId>,
        limit: usize,
    ) -> Result<Vec<(AccountId, std::borrow::Cow<'_, AccountBook>)>, ReadError> {
        use std::borrow::Cow;
        let held = self
            .accounts_after(after)
            .take(limit)
            .map(|(account, book)| (account.clone(), Cow::Borrowed(book)));
        let mut listed: Vec<(AccountId, Cow<'_, AccountBook>)> = held.collect();
        if let Some(store) = self.store.as_deref() {
            // Only loans' accounts are kept: none to list past them.
            let start = match after {
                Some(after @ AccountId::Loan(_)) => Some(after.to_string()),
                Some(AccountId::Cash(_) | AccountId::InterestIncome(_)) | None => None,
                Some(_) => return Ok(listed),
            };
            // Past the last held one taken, nothing kept can be listed.
            let bound = (listed.len() == limit)
                .then(|| listed.last().map(|(account, _)| account.clone()))
                .flatten();
            let skip = |key: &[u8]| {
                kept_account_of(key).is_some_and(|account| self.accounts.contains_key(&account))
            };
            let kept = store.records_after(
                KEPT_STEPS_PREFIX.as_bytes(),
                start.as_deref().map(str::as_bytes),
                limit,
                &skip,
            )?;
            for (key, value) in kept {
                let key = String::from_utf8_lossy(&key).into_owned();
                let account = kept_account_of(key.as_bytes()).ok_or_else(|| {
                    ReadError::Damaged(format!("record {key:?} names no loan's account"))
                })?;
                if bound.as_ref().is_some_and(|bound| account > *bound) {
                    break;
                }
                if let Some(book) = kept_book_of(&account, &key, &value)? {
                    listed.push((account, Cow::Owned(book)));
                }
            }
            listed.sort_by(|a, b| a.0.cmp(&b.0));
            listed.truncate(limit);
        }
        Ok(listed)
    }

    /// The state cache's record `index` of `account`'s steps (its value,
    /// `None` when there is no such record): the steps' bytes let go of
    /// read back from the store and checked against those let go of, an
    /// error when they cannot be (a checkpoint must then write nothing
    /// rather than a record without them). For a record moved out, what
    /// startup takes of it (its steps are [`Books::moved_account_record`]).
    pub fn account_record(
        &self,
        account: &AccountId,
        index: u64,
    ) -> Result<Option<Vec<u8>>, ReadError> {
        if self.is_moved(account, index) {
            return self.moved_record_value(account, index);
        }
        self.whole_account_record(account, index)
    }

    /// [`Books::account_record`] with its steps, moved out or not.
    fn whole_account_record(
        &self,
        account: &AccountId,
        index: u64,
    ) -> Result<Option<Vec<u8>>, ReadError> {
        let Some(book) = self.accounts.get(account) else {
            return Ok(None);
        };
        let Ok(index) = usize::try_from(index) else {
            return Ok(None);
        };
        let stored = self.stored_steps(account);
        let read = book
            .history
            .steps
            .record_read(index, stored.as_ref().map(|s| s as &dyn StoredSteps))?;
        Ok(account_value(&book.branch, &book.line, read))
    }

    /// True when `account`'s record `index` of steps moved out of those
    /// startup reads ([`moves_closed_records`]): its record under
    /// [`StepsOf::key`] holds what startup takes of it, its steps are under
    /// [`closed_steps_key`].
    pub fn is_moved(&self, account: &AccountId, index: u64) -> bool {
        moves_closed_records(account)
            && usize::try_from(index).is_ok_and(|index| {
                self.accounts
                    .get(account)
                    .is_some_and(|book| book.history.is_moved(index))
            })
    }

    /// The state cache's record `index` of `account`'s steps whole, under
    /// [`closed_steps_key`], if it moved out (`None` otherwise): read back
    /// as [`Books::account_record`] reads a record.
    pub fn moved_account_record(
        &self,
        account: &AccountId,
        index: u64,
    ) -> Result<Option<Vec<u8>>, ReadError> {
        if !self.is_moved(account, index) {
            return Ok(None);
        }
        self.whole_account_record(account, index)
    }

    /// What `account`'s record `index` moved out keeps under
    /// [`StepsOf::key`] (`None` when it did not move), made from its steps,
    /// read back if let go of.
    fn moved_record_value(
        &self,
        account: &AccountId,
        index: u64,
    ) -> Result<Option<Vec<u8>>, ReadError> {
        let (Some(book), Ok(index)) = (self.accounts.get(account), usize::try_from(index)) else {
            return Ok(None);
        };
        let steps = &book.history.steps;
        let stored = self.stored_steps(account);
        let (Some(starts), Some(moved)) = (
            steps.starts(index),
            steps.moved_read(index, stored.as_ref().map(|s| s as &dyn StoredSteps))?,
        ) else {
            return Ok(None);
        };
        let head = AccountStepsHead {
            branch: book.branch.clone(),
            line: book.line.clone(),
            starts,
            moved: Some(moved),
        };
        Ok(Some(steps_value(&head, &[])))
    }

    /// `account`'s record `index` if it grew since it was let go of: for
    /// a checkpoint to complete, reading the bytes let go of back, outside
    /// the state's lock ([`GrownAccountRecord::complete`]).
    pub fn grown_account_record(
        &self,
        account: &AccountId,
        index: u64,
    ) -> Option<GrownAccountRecord> {
        let book = self.accounts.get(account)?;
        let index = usize::try_from(index).ok()?;
        let record = book.history.steps.grown_record(index)?;
        let head = AccountStepsHead {
            branch: book.branch.clone(),
            line: book.line.clone(),
            starts: book.history.steps.starts(index)?,
            moved: None,
        };
        Some(GrownAccountRecord {
            account: account.clone(),
            head,
            record,
            moved: None,
        })
    }

    /// `account`'s record `index` moved out, if memory let go of it: its
    /// steps for a checkpoint to read back whole outside the state's lock
    /// (under [`closed_steps_key`]), with what its own key then keeps when
    /// that is not known without them (`with_moved`: a record grown since
    /// it was let go of and not written since), both made by
    /// [`GrownAccountRecord::complete`].
    pub fn moved_record_to_complete(
        &self,
        account: &AccountId,
        index: u64,
        with_moved: bool,
    ) -> Option<GrownAccountRecord> {
        if !self.is_moved(account, index) {
            return None;
        }
        let book = self.accounts.get(account)?;
        let index = usize::try_from(index).ok()?;
        let steps = &book.history.steps;
        let record = steps.let_go_record(index)?;
        let head = |moved| AccountStepsHead {
            branch: book.branch.clone(),
            line: book.line.clone(),
            starts: steps.starts(index).unwrap_or_default(),
            moved,
        };
        let moved = match with_moved {
            true => Some(head(Some(steps.moved_parts(index)?))),
            false => None,
        };
        Some(GrownAccountRecord {
            account: account.clone(),
            head: head(None),
            record,
            moved,
        })
    }

    /// True when what `account`'s record `index` moved out keeps under its
    /// own key is known without reading its steps back
    /// ([`Books::moved_record_to_complete`]).
    pub fn moved_value_known(&self, account: &AccountId, index: u64) -> bool {
        self.accounts.get(account).is_some_and(|book| {
            usize::try_from(index).is_ok_and(|index| book.history.steps.is_held(index))
        })
    }

    /// Notes what a checkpoint wrote of `account`'s record `index`, grown
    /// since it was let go of, so that it is let go of again once the
    /// checkpoint is saved: the caller knows nothing was booked to it since
    /// the checkpoint took it.
    pub fn note_written(&mut self, account: &AccountId, index: u64, written: StoredAs) {
        if let Some(book) = self.accounts.get_mut(account)
            && let Ok(index) = usize::try_from(index)
        {
            book.history.steps.note_written(index, written);
        }
    }

    /// The store the accounts' records let go of are read back from.
    pub fn stored_records(&self) -> Option<Arc<dyn StoredRecords>> {
        self.store.clone()
    }

    /// The state cache's record `index` of the steps of `line` of `branch`
    /// (its value).
    pub fn line_record(&self, branch: &BranchId, line: &Line, index: u64) -> Option<Vec<u8>> {
        let history = self.lines.get(branch)?.get(line)?;
        let (starts, bytes) = history.steps.record(usize::try_from(index).ok()?)?;
        Some(steps_value(&starts, bytes))
    }

    /// Every record of every account's steps, as `(account, index)`.
    pub fn account_record_keys(&self) -> impl Iterator<Item = (&AccountId, u64)> {
        self.accounts.iter().flat_map(|(account, book)| {
            (0..book.history.steps.record_count() as u64).map(move |index| (account, index))
        })
    }

    /// Every record of every line's steps, as `(branch, line, index)`.
    pub fn line_record_keys(&self) -> impl Iterator<Item = (&BranchId, &Line, u64)> {
        self.lines.iter().flat_map(|(branch, lines)| {
            lines.iter().flat_map(move |(line, history)| {
                (0..history.steps.record_count() as u64).map(move |index| (branch, line, index))
            })
        })
    }

    /// Books read back from their records ([`BooksImport`]), in any order.
    #[cfg(test)]
    fn from_records(
        accounts: Vec<(AccountId, u64, Vec<u8>)>,
        lines: Vec<(BranchId, Line, u64, Vec<u8>)>,
    ) -> Result<Books, String> {
        let mut import = BooksImport::default();
        for (account, index, value) in accounts {
            import.add(StepsOf::Account(account), index, value)?;
        }
        for (branch, line, index, value) in lines {
            import.add(StepsOf::Line(branch, line), index, value)?;
        }
        import.finish()
    }

    /// A line of a branch's books as of `as_of`.
    pub fn line(&self, branch: &BranchId, line: &Line, as_of: AsOf) -> Balance {
        self.lines
            .get(branch)
            .and_then(|lines| lines.get(line))
            .map_or(Balance::default(), |history| history.as_of(as_of))
    }

    /// [`History::lowest_from`] of a line of a branch's books (zero on
    /// `date` for a line nothing was booked to).
    pub fn line_lowest_from(
        &self,
        branch: &BranchId,
        line: &Line,
        date: NaiveDate,
    ) -> (Decimal, NaiveDate) {
        self.lines
            .get(branch)
            .and_then(|lines| lines.get(line))
            .map_or((Decimal::ZERO, date), |history| {
                history.lowest_from(date, line.kind())
            })
    }

    /// The lines of `branch` (every branch's, added up, when `None`) as of
    /// `as_of`: the fixed lines of the chart and every line booked to.
    pub fn lines(&self, branch: Option<&BranchId>, as_of: AsOf) -> BTreeMap<Line, Balance> {
        let mut lines: BTreeMap<Line, Balance> = Line::FIXED
            .into_iter()
            .map(|line| (line, Balance::default()))
            .collect();
        for (b, histories) in &self.lines {
            if branch.is_some_and(|branch| branch != b) {
                continue;
            }
            for (line, history) in histories {
                let balance = history.as_of(as_of);
                // A fee line shows once something was booked to it.
                if balance != Balance::default() {
                    let total = lines.entry(line.clone()).or_default();
                    *total = total.plus(balance);
                }
            }
        }
        lines
    }

    /// The income and expense lines of `branch` with a balance on `date`,
    /// for the year-end close to carry.
    pub fn nominal_lines(&self, branch: &BranchId, date: NaiveDate) -> Vec<(Line, Balance)> {
        self.lines
            .get(branch)
            .into_iter()
            .flatten()
            .filter(|(line, _)| matches!(line.section(), Section::Income | Section::Expenses))
            .map(|(line, history)| (line.clone(), history.on_date(date)))
            .filter(|(_, balance)| balance.debits != balance.credits)
            .collect()
    }

    /// The trial balance of `branch` (of the institution when `None`).
    pub fn trial_balance(&self, branch: Option<&BranchId>, as_of: AsOf) -> TrialBalance {
        let rows: Vec<(Line, Balance)> = self.lines(branch, as_of).into_iter().collect();
        let debits = rows.iter().map(|(_, b)| b.debits).sum();
        let credits = rows.iter().map(|(_, b)| b.credits).sum();
        TrialBalance {
            rows,
            debits,
            credits,
        }
    }

    /// The balance sheet at the end of `date`.
    pub fn balance_sheet(&self, branch: Option<&BranchId>, date: NaiveDate) -> BalanceSheet {
        let lines = self.lines(branch, AsOf::Date(date));
        let mut sheet = BalanceSheet {
            date,
            ..BalanceSheet::default()
        };
        for (line, balance) in lines {
            let amount = line.in_section(balance);
            match line.section() {
                Section::Assets => sheet.assets.push((line, amount)),
                Section::Liabilities => sheet.liabilities.push((line, amount)),
                Section::Equity => sheet.equity.push((line, amount)),
                Section::Income => sheet.result += amount,
                Section::Expenses => sheet.result -= amount,
            }
        }
        sheet
    }

    /// The income statement of `from..=to`: what was earned and spent,
    /// leaving out the year-end closing entries.
    pub fn income_statement(
        &self,
        branch: Option<&BranchId>,
        from: NaiveDate,
        to: NaiveDate,
    ) -> IncomeStatement {
        let end = self.lines(branch, AsOf::Date(to));
        let start = match from.pred_opt() {
            Some(before) => self.lines(branch, AsOf::Date(before)),
            None => BTreeMap::new(),
        };
        let mut moved: BTreeMap<Line, Balance> = end
            .into_iter()
            .filter(|(line, _)| matches!(line.section(), Section::Income | Section::Expenses))
            .map(|(line, total)| {
                let before = start.get(&line).copied().unwrap_or_default();
                (line, total.since(before))
            })
            .collect();
        for ((b, date), carried) in &self.carried {
            if branch.is_none_or(|branch| branch == b) && (from..=to).contains(date) {
                for (line, balance) in carried {
                    let total = moved.entry(line.clone()).or_default();
                    *total = total.since(*balance);
                }
            }
        }
        let mut statement = IncomeStatement {
            from,
            to,
            ..IncomeStatement::default()
        };
        for (line, balance) in moved {
            let amount = line.in_section(balance);
            match line.section() {
                Section::Income => {
                    statement.income.push((line, amount));
                    statement.result += amount;
                }
                _ => {
                    statement.expenses.push((line, amount));
                    statement.result -= amount;
                }
            }
        }
        statement
    }
}

/// Every line with its debits, credits and balance; debits equal credits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrialBalance {
    pub rows: Vec<(Line, Balance)>,
    pub debits: Decimal,
    pub credits: Decimal,
}

/// Assets, liabilities and equity at the end of a date.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BalanceSheet {
    pub date: NaiveDate,
    pub assets: Vec<(Line, Decimal)>,
    pub liabilities: Vec<(Line, Decimal)>,
    /// Capital and retained earnings.
    pub equity: Vec<(Line, Decimal)>,
    /// Income less expenses not yet carried into retained earnings.
    pub result: Decimal,
}

impl BalanceSheet {
    /// Total assets.
    pub fn total_assets(&self) -> Decimal {
        self.assets.iter().map(|(_, a)| a).sum()
    }

    /// Total liabilities.
    pub fn total_liabilities(&self) -> Decimal {
        self.liabilities.iter().map(|(_, a)| a).sum()
    }

    /// Total equity: capital, retained earnings and the result not yet carried.
    pub fn total_equity(&self) -> Decimal {
        self.equity.iter().map(|(_, a)| a).sum::<Decimal>() + self.result
    }
}

/// Income and expenses of a period and the result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IncomeStatement {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub income: Vec<(Line, Decimal)>,
    pub expenses: Vec<(Line, Decimal)>,
    /// Income less expenses.
    pub result: Decimal,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 1, d).unwrap()
    }

    fn debit(amount: i64) -> Balance {
        Balance::of(Side::Debit, Decimal::from(amount))
    }

    #[test]
    fn a_history_answers_by_sequence_and_by_date() {
        let mut history = History::default();
        history.post(1, day(10), debit(100));
        history.post(2, day(12), debit(20));
        // Entry 3 is back-dated before both.
        history.post(3, day(5), debit(3));
        history.post(3, day(5), Balance::of(Side::Credit, Decimal::ONE));
        assert_eq!(history.at_sequence(0), Balance::default());
        assert_eq!(history.at_sequence(1).debits, Decimal::from(100));
        assert_eq!(history.at_sequence(2).debits, Decimal::from(120));
        assert_eq!(history.at_sequence(9).debits, Decimal::from(123));
        assert_eq!(history.on_date(day(4)), Balance::default());
        assert_eq!(history.on_date(day(5)).debits, Decimal::from(3));
        assert_eq!(history.on_date(day(11)).debits, Decimal::from(103));
        assert_eq!(history.on_date(day(31)).debits, Decimal::from(123));
        assert_eq!(history.on_date(day(31)).credits, Decimal::ONE);
        let moves = history.movements(day(1), day(11));
        assert_eq!(
            moves.iter().map(|m| m.sequence).collect::<Vec<_>>(),
            vec![3, 1]
        );
        assert_eq!(moves[0].posted.debits, Decimal::from(3));
        assert_eq!(moves[0].posted.credits, Decimal::ONE);
    }

    /// `count` entries' postings to two branches' cash, interest income
    /// and loans, some back-dated, and a fee in date order.
    fn postings(count: u64) -> Vec<(u64, NaiveDate, BranchId, AccountId, Balance)> {
        let branches = ["TB", "HN"].map(|b| BranchId::parse("branch", b).unwrap());
        let mut postings = Vec::new();
        for n in 1..=count {
            let sequence = n * 1_025;
            let branch = &branches[(sequence % 2) as usize];
            let date = day(1 + ((sequence * 7) % 20) as u32);
            let amount = Decimal::from(10 + sequence as i64);
            postings.push((
                sequence,
                date,
                branch.clone(),
                AccountId::Cash(branch.clone()),
                Balance::of(Side::Debit, amount),
            ));
            postings.push((
                sequence,
                date,
                branch.clone(),
                AccountId::InterestIncome(branch.clone()),
                Balance::of(Side::Credit, amount),
            ));
            // A line of several accounts: the branch's loans.
            let loan =
                crate::ids::LoanId::parse("loan", &format!("{branch}-M{}/L1", n % 3)).unwrap();
            postings.push((
                sequence,
                date,
                branch.clone(),
                AccountId::Loan(loan),
                Balance::of(Side::Debit, Decimal::from(n as i64)),
            ));
            if n.is_multiple_of(3) {
                // A line of one account whose steps are in date order.
                let fee = FeeCode::parse("fee", "DISB").unwrap();
                postings.push((
                    sequence,
                    day(1) + chrono::Days::new(n),
                    branch.clone(),
                    AccountId::FeeIncome(branch.clone(), fee),
                    Balance::of(Side::Credit, Decimal::new(n as i64, 1)),
                ));
            }
            if n.is_multiple_of(5) {
                // Cash goes out again: its lowest point moves.
                postings.push((
                    sequence,
                    date,
                    branch.clone(),
                    AccountId::Cash(branch.clone()),
                    Balance::of(Side::Credit, amount * Decimal::from(3)),
                ));
            }
        }
        postings
    }

    #[test]
    fn the_writers_lines_by_date_answer_as_the_full_books_do() {
        let mut full = Books::default();
        let mut writer = None;
        for (i, (sequence, date, branch, account, posted)) in postings(40).into_iter().enumerate() {
            if i == 30 {
                // The writer's copy is made part way, as at a restart.
                writer = Some(full.lines_by_date());
            }
            let line = Line::of(&account, None);
            full.post(sequence, date, &branch, &account, line.clone(), posted);
            if let Some(writer) = writer.as_mut() {
                writer.post(sequence, date, &branch, &account, line, posted);
            }
        }
        let writer = writer.unwrap();
        assert!(writer.accounts.is_empty());
        for (branch, lines) in &full.lines {
            for line in lines.keys() {
                let theirs = &writer.lines[branch][line];
                assert!(theirs.is_empty(), "the writer keeps no step per entry");
                for d in 0..=22 {
                    let date = day(1) + chrono::Days::new(d);
                    assert_eq!(
                        writer.line(branch, line, AsOf::Date(date)),
                        full.line(branch, line, AsOf::Date(date))
                    );
                    assert_eq!(
                        writer.line_lowest_from(branch, line, date),
                        full.line_lowest_from(branch, line, date)
                    );
                }
                assert_eq!(
                    writer.line(branch, line, AsOf::Latest),
                    full.line(branch, line, AsOf::Latest)
                );
                assert_ne!(full.line(branch, line, AsOf::Latest), Balance::default());
            }
            assert_eq!(
                writer.nominal_lines(branch, day(31)),
                full.nominal_lines(branch, day(31))
            );
            assert!(!full.nominal_lines(branch, day(31)).is_empty());
        }
    }

    /// Every record of `books`, as the state cache keeps them.
    #[allow(clippy::type_complexity)]
    fn records_of(
        books: &Books,
    ) -> (
        Vec<(AccountId, u64, Vec<u8>)>,
        Vec<(BranchId, Line, u64, Vec<u8>)>,
    ) {
        let accounts = books
            .account_record_keys()
            .map(|(a, k)| (a.clone(), k, books.account_record(a, k).unwrap().unwrap()))
            .collect();
        let lines = books
            .line_record_keys()
            .map(|(b, l, k)| (b.clone(), l.clone(), k, books.line_record(b, l, k).unwrap()))
            .collect();
        (accounts, lines)
    }

    /// A savings account's closed records before its first step back in
    /// date move out of those startup reads: read back from what their own
    /// keys keep (their steps from the store), the books answer as those
    /// that held them, every figure by entry and date and every movement;
    /// given whole, they are held again as they were. Such a record is
    /// refused where it cannot be: after a step back in date, as the last
    /// of its history, not after the totals of the record before it, or
    /// with steps that are not its own.
    #[test]
    fn moved_records_read_back_as_held_and_are_refused_out_of_place() {
        let tb = BranchId::parse("branch", "TB").unwrap();
        let savings = AccountId::parse("account", "savings:TB-1/C1").unwrap();
        let line = Line::of(&savings, Some(SavingsKind::Voluntary));
        let books_of = |date: &dyn Fn(u64) -> u32, amount: i64| {
            let mut books = Books::default();
            for n in 1..=300u64 {
                let posted = Balance::of(Side::Credit, Decimal::from(amount + n as i64));
                books.post(n, day(date(n)), &tb, &savings, line.clone(), posted);
            }
            books
        };
        let in_order = books_of(&|n| 1 + (n / 12) as u32, 10);
        // Entry 50 dated back, in the first record.
        let back = books_of(&|n| if n == 50 { 1 } else { 1 + (n / 12) as u32 }, 10);
        let moved =
            |books: &Books| -> Vec<bool> { (0..3).map(|k| books.is_moved(&savings, k)).collect() };
        assert_eq!(moved(&in_order), [true, true, false]);
        assert_eq!(moved(&back), [false, false, false]);
        // The first step back the first of the second record: the first
        // moves, as every step up to its last is in date order.
        let second_back = books_of(&|n| if n == 129 { 1 } else { 1 + (n / 12) as u32 }, 10);
        assert_eq!(moved(&second_back), [true, false, false]);
        let (accounts, lines) = records_of(&in_order);
        let steps: BTreeMap<Vec<u8>, Vec<u8>> = (0..2)
            .map(|k| {
                let whole = in_order.moved_account_record(&savings, k).unwrap().unwrap();
                (closed_steps_key(&savings, k).into_bytes(), whole)
            })
            .collect();
        let whole = steps[&closed_steps_key(&savings, 0).into_bytes()].len();
        assert!(
            accounts[0].2.len() * 3 < whole,
            "what a moved record's own key keeps: {} bytes of {whole}",
            accounts[0].2.len()
        );
        assert_eq!(in_order.moved_account_record(&savings, 2).unwrap(), None);

        // Read back letting go, as startup reads them, the steps from a store.
        let mut import = BooksImport::letting_go();
        for (account, index, value) in accounts.clone() {
            import.add(StepsOf::Account(account), index, value).unwrap();
        }
        for (branch, line, index, value) in lines.clone() {
            import
                .add(StepsOf::Line(branch, line), index, value)
                .unwrap();
        }
        let (mut read, moved_keys) = import.finish_with_moved().unwrap();
        assert_eq!(moved_keys.count, 2);
        // The store holds what every record's own key keeps too.
        let mut stored = steps.clone();
        stored.extend(accounts.iter().map(|(account, index, value)| {
            (
                StepsOf::Account(account.clone()).key(*index).into_bytes(),
                value.clone(),
            )
        }));
        let store = Arc::new(crate::stored::KeptInMap::new(stored));
        read.keep_in(store.clone());
        let held = &in_order.account(&savings).unwrap().history;
        for sequence in 0..=301 {
            assert_eq!(
                read.account_as_of(&savings, AsOf::Sequence(sequence))
                    .unwrap(),
                held.at_sequence(sequence),
                "as of entry {sequence}"
            );
        }
        for d in 1..=28 {
            assert_eq!(
                read.account_as_of(&savings, AsOf::Date(day(d))).unwrap(),
                held.on_date(day(d)),
                "on {}",
                day(d)
            );
        }
        for (from, to) in [(1, 28), (3, 3), (9, 14), (20, 28)] {
            assert_eq!(
                read.account_movements(&savings, day(from), day(to))
                    .unwrap(),
                held.movements(day(from), day(to))
            );
        }
        // And its records are the same records again.
        for (account, index, value) in &accounts {
            assert_eq!(
                &read.account_record(account, *index).unwrap().unwrap(),
                value
            );
        }
        // Its steps edited: refused as damaged, naming the record.
        store.0.lock().unwrap().insert(
            closed_steps_key(&savings, 0).into_bytes(),
            steps[&closed_steps_key(&savings, 1).into_bytes()].clone(),
        );
        let damaged = read.account_as_of(&savings, AsOf::Sequence(5)).unwrap_err();
        assert!(
            matches!(&damaged, ReadError::Damaged(m) if m.contains("steps/savings:TB-1/C1/0000000000")),
            "{damaged}"
        );

        // Given whole, they are held again: the books that held them.
        let mut import = BooksImport::default();
        for (key, value) in &steps {
            let (account, index) = closed_steps_of(std::str::from_utf8(key).unwrap())
                .unwrap()
                .unwrap();
            import.add_moved_whole(account, index, value.clone());
        }
        for (account, index, value) in accounts.clone() {
            import.add(StepsOf::Account(account), index, value).unwrap();
        }
        for (branch, line, index, value) in lines.clone() {
            import
                .add(StepsOf::Line(branch, line), index, value)
                .unwrap();
        }
        assert_eq!(import.finish().unwrap(), in_order);

        let refused = |accounts: Vec<(AccountId, u64, Vec<u8>)>| {
            Books::from_records(accounts, lines.clone()).unwrap_err()
        };
        // As its history's last.
        let why = refused(accounts[..2].to_vec());
        assert!(why.contains("no record follows it"), "{why}");
        // After one that did not move: the first record of the books whose
        // first went back, then what the second's own key keeps here.
        let (back_accounts, _) = records_of(&back);
        let why = refused(vec![
            back_accounts[0].clone(),
            accounts[1].clone(),
            back_accounts[2].clone(),
        ]);
        assert!(why.contains("moved out, and record 0 did not"), "{why}");
        // Held whole where they can move out (as a cache that missed them).
        let whole = |k: u64| {
            (
                savings.clone(),
                k,
                in_order.moved_account_record(&savings, k).unwrap().unwrap(),
            )
        };
        let why = refused(vec![whole(0), whole(1), accounts[2].clone()]);
        assert!(
            why.contains("0 of savings:TB-1/C1's closed records"),
            "{why}"
        );
        assert!(why.contains("where 2 can"), "{why}");
        // After other totals: another account's postings, of other amounts.
        let (other, _) = records_of(&books_of(&|n| 1 + (n / 12) as u32, 20));
        let why = refused(vec![
            accounts[0].clone(),
            other[1].clone(),
            accounts[2].clone(),
        ]);
        assert!(why.contains("not those of the step before"), "{why}");
        // Given whole with steps not its own: another record's, or its
        // own with one amount edited (its last step's scale).
        let first = steps[&closed_steps_key(&savings, 0).into_bytes()].clone();
        let mut edited = first.clone();
        *edited.last_mut().unwrap() ^= 1;
        for wrong in [
            steps[&closed_steps_key(&savings, 1).into_bytes()].clone(),
            edited,
        ] {
            let mut import = BooksImport::default();
            import.add_moved_whole(savings.clone(), 0, wrong);
            for (account, index, value) in accounts.clone() {
                import.add(StepsOf::Account(account), index, value).unwrap();
            }
            let why = import.finish().unwrap_err();
            assert!(
                why.contains("does not hold the steps of a record that moved out"),
                "{why}"
            );
        }
    }

    #[test]
    fn books_read_back_from_their_records_are_the_books() {
        let mut books = Books::default();
        for (sequence, date, branch, account, posted) in postings(700) {
            let line = Line::of(&account, None);
            books.post(sequence, date, &branch, &account, line, posted);
        }
        let (mut accounts, mut lines) = records_of(&books);
        let cash = |k: u64| {
            lines
                .iter()
                .filter(|(_, line, index, _)| *line == Line::Cash && *index == k)
                .count()
        };
        assert_eq!(
            (cash(2), cash(3)),
            (2, 0),
            "three records of each branch's cash"
        );
        let kept_apart = |apart: bool| {
            books
                .accounts
                .values()
                .any(|book| book.history.dated_from().is_some() == apart)
        };
        assert!(
            kept_apart(true) && kept_apart(false),
            "accounts of both kinds"
        );
        // In the order sled reads them...
        let read = Books::from_records(accounts.clone(), lines.clone());
        assert_eq!(read.as_ref(), Ok(&books));
        let read = read.unwrap();
        for branch in ["TB", "HN"].map(|b| BranchId::parse("b", b).unwrap()) {
            for d in 1..=31 {
                let as_of = AsOf::Date(day(d));
                assert_eq!(
                    read.lines(Some(&branch), as_of),
                    books.lines(Some(&branch), as_of)
                );
            }
        }
        // ...and in any other: a record read before the one preceding it
        // waits for it.
        accounts.reverse();
        lines.reverse();
        assert_eq!(
            Books::from_records(accounts.clone(), lines.clone()),
            Ok(books.clone())
        );
        let third = lines.len() / 3;
        lines.rotate_left(third);
        assert_eq!(
            Books::from_records(accounts.clone(), lines.clone()),
            Ok(books.clone())
        );
        // A record missing or read twice is refused.
        let second = lines.iter().position(|(_, _, k, _)| *k == 1).unwrap();
        let mut gap = lines.clone();
        gap.remove(second);
        let refused = Books::from_records(accounts.clone(), gap).unwrap_err();
        assert!(refused.contains("follows no record 1"), "{refused}");
        let mut twice = lines.clone();
        twice.push(lines[second].clone());
        let refused = Books::from_records(accounts.clone(), twice).unwrap_err();
        assert!(refused.contains("read twice"), "{refused}");
        // An account's later record naming another line than its first.
        let later = accounts.iter().position(|(_, k, _)| *k == 1).unwrap();
        let (head, bytes): (AccountStepsHead, &[u8]) =
            postcard::take_from_bytes(&accounts[later].2).unwrap();
        let moved = AccountStepsHead {
            line: Line::Recoveries,
            ..head
        };
        let mut elsewhere = accounts.clone();
        elsewhere[later].2 = steps_value(&moved, bytes);
        let refused = Books::from_records(elsewhere, lines.clone()).unwrap_err();
        assert!(refused.contains("names line recoveries"), "{refused}");
    }

    /// A line's totals by date are worked out while its records are read
    /// when its steps are in date order, and from its steps afterwards
    /// when they are not: either way they are the books'.
    #[test]
    fn lines_read_back_keep_their_totals_by_date_in_date_order_or_not() {
        let [tb, hn] = ["TB", "HN"].map(|b| BranchId::parse("branch", b).unwrap());
        let mut books = Books::default();
        for n in 1..=400u64 {
            // Several entries a date, dates running across records'
            // edges; HN's 300th back-dated, in its third record.
            for (branch, back) in [(&tb, false), (&hn, n == 300)] {
                let date = match back {
                    true => day(1),
                    false => day(1 + (n / 14) as u32),
                };
                let amount = match n % 5 {
                    0 => Decimal::new(n as i64 * 101, 2),
                    _ => Decimal::from(n),
                };
                let cash = AccountId::Cash(branch.clone());
                let line = Line::of(&cash, None);
                books.post(
                    n,
                    date,
                    branch,
                    &cash,
                    line,
                    Balance::of(Side::Debit, amount),
                );
            }
        }
        let (accounts, lines) = records_of(&books);
        let records = |branch: &BranchId| lines.iter().filter(|(b, ..)| b == branch).count();
        assert_eq!((records(&tb), records(&hn)), (4, 4));
        let read = Books::from_records(accounts, lines).unwrap();
        assert_eq!(read, books);
        // The same digits, not only equal values: statements print them.
        assert_eq!(format!("{:?}", read.lines), format!("{:?}", books.lines));
        for branch in [&tb, &hn] {
            for d in 1..=31 {
                let as_of = AsOf::Date(day(d));
                assert_eq!(
                    read.lines(Some(branch), as_of),
                    books.lines(Some(branch), as_of),
                    "{branch} on day {d}"
                );
            }
        }
    }

    /// A history of more records than a run holds is taken in a run at a
    /// time, in the order sled reads them or any other.
    #[test]
    fn a_long_history_is_read_back_a_run_at_a_time() {
        let tb = BranchId::parse("branch", "TB").unwrap();
        let cash = AccountId::Cash(tb.clone());
        let mut books = Books::default();
        let postings = (RUN_RECORDS + 3) * steps::RECORD_STEPS;
        for n in 0..postings as u64 {
            let date = day(1) + chrono::Days::new(n / 1_000);
            let amount = Decimal::new(n as i64 % 997 + 1, (n % 3) as u32);
            let line = Line::of(&cash, None);
            books.post(
                n + 1,
                date,
                &tb,
                &cash,
                line,
                Balance::of(Side::Debit, amount),
            );
        }
        let (mut accounts, mut lines) = records_of(&books);
        assert_eq!(accounts.len(), RUN_RECORDS + 3);
        assert_eq!(
            Books::from_records(accounts.clone(), lines.clone()).as_ref(),
            Ok(&books)
        );
        accounts.reverse();
        lines.rotate_left(RUN_RECORDS / 2);
        assert_eq!(Books::from_records(accounts, lines), Ok(books));
    }

    #[test]
    fn booking_changes_only_the_records_it_names() {
        let postings = postings(500);
        let mut books = Books::default();
        let mut named = std::collections::BTreeSet::new();
        let (mut accounts, mut lines) = records_of(&books);
        for (i, (sequence, date, branch, account, posted)) in postings.into_iter().enumerate() {
            let line = Line::of(&account, None);
            let records = books
                .post(sequence, date, &branch, &account, line.clone(), posted)
                .unwrap();
            named.insert(format!("{account} {}", records.account));
            named.insert(format!("{branch} {line} {}", records.line));
            if i % 97 == 0 {
                // A checkpoint: every record not named since the last is
                // as it was.
                let (now_accounts, now_lines) = records_of(&books);
                for (account, k, value) in &now_accounts {
                    let before = accounts.iter().find(|(a, i, _)| a == account && i == k);
                    if !named.contains(&format!("{account} {k}")) {
                        assert_eq!(before.map(|(_, _, v)| v), Some(value), "{account} {k}");
                    }
                }
                for (branch, line, k, value) in &now_lines {
                    let before = lines
                        .iter()
                        .find(|(b, l, i, _)| b == branch && l == line && i == k);
                    if !named.contains(&format!("{branch} {line} {k}")) {
                        assert_eq!(before.map(|(_, _, _, v)| v), Some(value), "{line} {k}");
                    }
                }
                (accounts, lines) = (now_accounts, now_lines);
                named.clear();
            }
        }
        assert!(
            lines.iter().any(|(_, _, k, _)| *k >= 1),
            "lines of several records"
        );
    }

    /// An entry's postings to one account: its date, and what each posted
    /// (several postings of an entry add up).
    type PlainEntry = (u64, Vec<(NaiveDate, Balance)>);

    /// Entries of one to three postings, dated over a few weeks, some
    /// with cents: in date order up to a point anywhere in the list (a
    /// few blocks of steps in), most of them back-dated after it. With
    /// `one_date`, every posting of an entry on its date (as the ledger
    /// books them), else now and then a posting of an entry on another.
    fn plain_entries(one_date: bool) -> impl Strategy<Value = Vec<PlainEntry>> {
        let posting = (0u32..40, 1i64..10_000, 0u32..3, any::<bool>());
        (
            proptest::collection::vec((1u64..4, proptest::collection::vec(posting, 1..4)), 0..300),
            any::<proptest::sample::Index>(),
        )
            .prop_map(move |(mut entries, in_order)| {
                let in_order = in_order.index(entries.len() + 1);
                let mut dates: Vec<u32> = entries[..in_order].iter().map(|(_, p)| p[0].0).collect();
                dates.sort_unstable();
                for ((_, postings), date) in entries.iter_mut().zip(dates) {
                    postings[0].0 = date;
                }
                let mut sequence = 0;
                entries
                    .into_iter()
                    .map(|(gap, postings)| {
                        sequence += gap;
                        let first = day(1) + chrono::Days::new(u64::from(postings[0].0));
                        let postings = postings
                            .into_iter()
                            .map(|(days, mantissa, scale, debit)| {
                                let date = match one_date || days % 7 != 0 {
                                    true => first,
                                    false => day(1) + chrono::Days::new(u64::from(days)),
                                };
                                let side = if debit { Side::Debit } else { Side::Credit };
                                (date, Balance::of(side, Decimal::new(mantissa, scale)))
                            })
                            .collect();
                        (sequence, postings)
                    })
                    .collect()
            })
    }

    /// What a plain list of postings says of `entries` on `date`: the sum
    /// of every posting dated on or before it, in date order.
    fn plain_on_date(entries: &[PlainEntry], date: NaiveDate) -> Balance {
        let mut postings: Vec<(NaiveDate, Balance)> = entries
            .iter()
            .flat_map(|(_, postings)| postings.iter().copied())
            .filter(|(d, _)| *d <= date)
            .collect();
        postings.sort_by_key(|(d, _)| *d);
        postings
            .into_iter()
            .fold(Balance::default(), |total, (_, posted)| total.plus(posted))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// An account's history answers by date, by entry and at its
        /// lowest as a plain list of its postings does, to the digit and
        /// scale (statements print them), whether its postings come in
        /// date order, go back in date, or an entry posts on two dates;
        /// and keeps by date only what was posted from the first posting
        /// that went back on.
        #[test]
        fn an_accounts_totals_by_date_are_a_plain_lists(entries in plain_entries(false)) {
            let mut history = History::dated_by_steps();
            let mut first_back: Option<u64> = None;
            let mut last: Option<(u64, NaiveDate)> = None;
            for (sequence, postings) in &entries {
                for &(date, posted) in postings {
                    if first_back.is_none()
                        && last.is_some_and(|(s, d)| date < d || (s == *sequence && date != d))
                    {
                        first_back = Some(*sequence);
                    }
                    last = Some((*sequence, last.filter(|(s, _)| s == sequence).map_or(date, |(_, d)| d)));
                    history.post(*sequence, date, posted);
                }
            }
            prop_assert_eq!(history.dated_from(), first_back);
            let kept: std::collections::BTreeSet<NaiveDate> = entries
                .iter()
                .filter(|(s, _)| first_back.is_some_and(|from| *s >= from))
                .flat_map(|(_, postings)| postings.iter().map(|(d, _)| *d))
                .collect();
            prop_assert_eq!(history.by_date.len(), kept.len());
            let dates_only = history.dates_only();
            for d in 0..45 {
                let date = day(1) + chrono::Days::new(d);
                let expected = plain_on_date(&entries, date);
                prop_assert_eq!(format!("{:?}", history.on_date(date)), format!("{expected:?}"), "on {}", date);
                prop_assert_eq!(format!("{:?}", dates_only.on_date(date)), format!("{expected:?}"), "on {}", date);
                let kind = AccountKind::Asset;
                let plain_lowest = (d..45)
                    .map(|later| {
                        let on = day(1) + chrono::Days::new(later);
                        (plain_on_date(&entries, on).on_normal_side(kind), on)
                    })
                    .fold(None::<(Decimal, NaiveDate)>, |low, (b, on)| match low {
                        Some((l, _)) if l <= b => low,
                        _ => Some((b, on)),
                    })
                    .unwrap();
                let lowest = history.lowest_from(date, kind);
                prop_assert_eq!(lowest.0, plain_lowest.0, "lowest from {}", date);
                prop_assert_eq!(plain_on_date(&entries, lowest.1).on_normal_side(kind), lowest.0);
                prop_assert!(lowest.1 >= date);
            }
            let mut total = Balance::default();
            for (sequence, postings) in &entries {
                for (_, posted) in postings {
                    total = total.plus(*posted);
                }
                prop_assert_eq!(history.at_sequence(*sequence), total);
            }
            prop_assert_eq!(history.latest(), total);
            prop_assert_eq!(dates_only.latest(), total);
            // Movements: what each entry posted, by date then entry.
            let mut plain: Vec<Movement> = entries
                .iter()
                .map(|(sequence, postings)| {
                    let posted = postings.iter().fold(Balance::default(), |t, (_, p)| t.plus(*p));
                    // A step keeps its entry's first posting's date.
                    Movement { sequence: *sequence, date: postings[0].0, posted }
                })
                .collect();
            plain.sort_by_key(|m| (m.date, m.sequence));
            for (from, to) in [(0, 44), (0, 0), (3, 9), (10, 10), (20, 44), (41, 44)] {
                let (from, to) = (day(1) + chrono::Days::new(from), day(1) + chrono::Days::new(to));
                let expected: Vec<Movement> =
                    plain.iter().filter(|m| (from..=to).contains(&m.date)).copied().collect();
                prop_assert_eq!(history.movements(from, to), expected, "from {} to {}", from, to);
            }
            let first = entries.iter().flat_map(|(_, p)| p.iter().map(|(d, _)| *d)).min();
            prop_assert_eq!(history.first_date(), first);
        }

        /// An account's history read back from its records is the one
        /// booked, its postings kept by date from the same entry on.
        #[test]
        fn an_accounts_history_read_back_is_the_one_booked(entries in plain_entries(true)) {
            let branch = BranchId::parse("branch", "TB").unwrap();
            let account = AccountId::Cash(branch.clone());
            // And a loan's account, settled by a last entry: nothing is
            // outstanding on it; and one still running, as booked.
            let loan = AccountId::Loan(crate::ids::LoanId::parse("loan", "TB-M1/L1").unwrap());
            let running = AccountId::Loan(crate::ids::LoanId::parse("loan", "TB-M2/L1").unwrap());
            let mut books = Books::default();
            for (sequence, postings) in &entries {
                for &(date, posted) in postings {
                    books.post(*sequence, date, &branch, &account, Line::Cash, posted);
                    books.post(*sequence, date, &branch, &loan, Line::LoanPortfolio, posted);
                    books.post(*sequence, date, &branch, &running, Line::LoanPortfolio, posted);
                }
            }
            if let Some((last, postings)) = entries.last() {
                let total = books.account(&loan).unwrap().history.latest();
                let settling = match total.debits > total.credits {
                    true => Balance::of(crate::entry::Side::Credit, total.debits - total.credits),
                    false => Balance::of(crate::entry::Side::Debit, total.credits - total.debits),
                };
                books.post(last + 1, postings[0].0, &branch, &loan, Line::LoanPortfolio, settling);
            }
            let (accounts, lines) = records_of(&books);
            let read = Books::from_records(accounts.clone(), lines.clone()).unwrap();
            prop_assert_eq!(&read, &books);
            let Some(book) = read.account(&account) else {
                prop_assert!(entries.is_empty());
                return Ok(());
            };
            // Read back as a server starts: its closed records let go of
            // as they are read, and read back from the store when asked;
            // in key order (the account's records one run), and with the
            // line's between them (each record a run of its own).
            let kept: BTreeMap<Vec<u8>, Vec<u8>> = accounts
                .iter()
                .map(|(a, k, v)| (StepsOf::Account(a.clone()).key(*k).into_bytes(), v.clone()))
                .collect();
            let mut records: Vec<(StepsOf, u64, Vec<u8>)> = accounts
                .into_iter()
                .map(|(a, k, v)| (StepsOf::Account(a), k, v))
                .chain(lines.into_iter().map(|(b, l, k, v)| (StepsOf::Line(b, l), k, v)))
                .collect();
            let mut interleaved = records.clone();
            interleaved.sort_by_key(|(_, k, _)| *k);
            let mut import = BooksImport::letting_go();
            for (of, index, value) in interleaved {
                import.add(of, index, value).unwrap();
            }
            let mut started = import.finish().unwrap();
            let mut import = BooksImport::letting_go();
            for (of, index, value) in records.drain(..) {
                import.add(of, index, value).unwrap();
            }
            let mut in_runs = import.finish().unwrap();
            // Let go of as they were read, before the store is given.
            let count = book.history.steps.record_count();
            let loan_records = read.account(&loan).unwrap().history.steps.record_count();
            for books in [&started, &in_runs] {
                for index in 0..count {
                    prop_assert_eq!(books.is_let_go(&account, index as u64), index + 1 < count);
                }
                // A member's account's last one too, whether the loan is
                // settled or running (the branch's cash keeps its last).
                for index in 0..loan_records {
                    prop_assert!(books.is_let_go(&loan, index as u64));
                }
                let records = read.account(&running).unwrap().history.steps.record_count();
                for index in 0..records {
                    prop_assert!(books.is_let_go(&running, index as u64));
                }
                // The lines keep theirs, and their totals by date.
                prop_assert_eq!(&books.lines, &read.lines);
            }
            started.keep_in(Arc::new(crate::stored::KeptInMap::new(kept.clone())));
            in_runs.keep_in(Arc::new(crate::stored::KeptInMap::new(kept)));
            prop_assert_eq!(&in_runs, &started);
            for index in 0..count {
                prop_assert_eq!(started.is_let_go(&account, index as u64), index + 1 < count);
            }
            let history = &started.account(&account).unwrap().history;
            prop_assert_eq!(history.dated_from(), book.history.dated_from());
            prop_assert_eq!(&history.by_date, &book.history.by_date);
            for d in 0..45 {
                let date = day(1) + chrono::Days::new(d);
                prop_assert_eq!(book.history.on_date(date), plain_on_date(&entries, date));
                prop_assert_eq!(
                    started.account_as_of(&account, AsOf::Date(date)).unwrap(),
                    plain_on_date(&entries, date)
                );
            }
            for (sequence, _) in &entries {
                prop_assert_eq!(
                    started.account_as_of(&account, AsOf::Sequence(*sequence)).unwrap(),
                    book.history.at_sequence(*sequence)
                );
            }
            let end = day(1) + chrono::Days::new(44);
            prop_assert_eq!(
                started.account_movements(&account, day(1), end).unwrap(),
                book.history.movements(day(1), end)
            );
            // The loans', every record read back.
            for loan in [&loan, &running] {
                let booked = &read.account(loan).unwrap().history;
                prop_assert_eq!(
                    started.account_movements(loan, day(1), end).unwrap(),
                    booked.movements(day(1), end)
                );
                for (sequence, _) in &entries {
                    prop_assert_eq!(
                        started.account_as_of(loan, AsOf::Sequence(*sequence)).unwrap(),
                        booked.at_sequence(*sequence)
                    );
                }
                prop_assert_eq!(started.account_as_of(loan, AsOf::Latest).unwrap(), booked.latest());
            }
        }
    }
}
