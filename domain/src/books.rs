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
//! its steps for as long as its entries come in date order, and kept apart
//! only once one is back-dated: most accounts never keep them twice. Debits and credits
//! are each sums of positive amounts, so every running total lies between
//! zero and the account's total, which `apply` checked before the entry was
//! booked: booking cannot overflow.

use std::collections::BTreeMap;
use std::fmt;

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
use steps::{BlockStart, Step, Steps};

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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// The totals after each entry that posted here, encoded.
    steps: Steps,
    /// Totals at the end of each date something is dated on, date order;
    /// empty while `dates_from_steps`.
    by_date: Vec<(NaiveDate, Balance)>,
    /// True while every step is dated on or after the one before (an
    /// account's postings, unless an entry is back-dated): the totals by
    /// date are then read from the steps, not kept a second time.
    dates_from_steps: bool,
}

impl History {
    /// An empty history whose totals by date are read from its steps for
    /// as long as its postings come in date order (an account's).
    pub fn dated_by_steps() -> History {
        History {
            dates_from_steps: true,
            ..History::default()
        }
    }

    /// Books what entry `sequence`, dated `date`, posted; entries come in
    /// sequence order (several postings of one entry add up).
    pub fn post(&mut self, sequence: u64, date: NaiveDate, posted: Balance) {
        if self.dates_from_steps
            && self.steps.last().is_some_and(|last| {
                date < last.date || (last.sequence == sequence && date != last.date)
            })
        {
            self.keep_dates();
        }
        self.steps.push(sequence, date, posted);
        if !self.dates_from_steps {
            self.post_dated(date, posted);
        }
    }

    /// Books a posting dated `date` into the totals by date alone: a
    /// history kept only this way (the writer's lines) answers by date and
    /// [`History::latest`], not by sequence.
    pub fn post_dated(&mut self, date: NaiveDate, posted: Balance) {
        self.keep_dates();
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

    /// Keeps the totals by date from now on, worked out from the steps if
    /// they were read from them.
    fn keep_dates(&mut self) {
        if self.dates_from_steps {
            self.by_date = self.dates_of_steps();
            self.dates_from_steps = false;
        }
    }

    /// The totals at the end of each date, from steps in date order.
    fn dates_of_steps(&self) -> Vec<(NaiveDate, Balance)> {
        self.steps.totals_by_date_in_order()
    }

    /// The totals by date, whether kept or read from the steps.
    fn dates(&self) -> std::borrow::Cow<'_, [(NaiveDate, Balance)]> {
        if self.dates_from_steps {
            std::borrow::Cow::Owned(self.dates_of_steps())
        } else {
            std::borrow::Cow::Borrowed(&self.by_date)
        }
    }

    /// A copy keeping only the totals by date (no step per entry).
    fn dates_only(&self) -> History {
        History {
            steps: Steps::default(),
            by_date: self.dates().into_owned(),
            dates_from_steps: false,
        }
    }

    /// Everything posted: the total at the end of the latest date (kept
    /// also by a history kept by date alone).
    pub fn latest(&self) -> Balance {
        if self.dates_from_steps {
            return self.steps.last().map_or(Balance::default(), |s| s.total);
        }
        self.by_date
            .last()
            .map_or(Balance::default(), |(_, total)| *total)
    }

    /// Posted by entries up to `sequence`.
    pub fn at_sequence(&self, sequence: u64) -> Balance {
        self.steps.total_at(sequence)
    }

    /// Posted by entries dated on or before `date`.
    pub fn on_date(&self, date: NaiveDate) -> Balance {
        if self.dates_from_steps {
            return self.steps.total_on_date_in_order(date);
        }
        let at = self.by_date.partition_point(|(d, _)| *d <= date);
        at.checked_sub(1)
            .map_or(Balance::default(), |i| self.by_date[i].1)
    }

    /// The least balance on `kind`'s normal side at the end of `date` and
    /// of every later date something is dated on, and the first date it is
    /// that low: how much can leave the account on `date` without taking it
    /// below zero on any day after.
    pub fn lowest_from(&self, date: NaiveDate, kind: AccountKind) -> (Decimal, NaiveDate) {
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

    /// The total as of `as_of`.
    pub fn as_of(&self, as_of: AsOf) -> Balance {
        match as_of {
            AsOf::Latest => self.latest(),
            AsOf::Sequence(sequence) => self.at_sequence(sequence),
            AsOf::Date(date) => self.on_date(date),
        }
    }

    /// What entry `sequence` posted, if it posted here.
    pub fn posted_by(&self, sequence: u64) -> Option<Movement> {
        self.steps.find(sequence).map(Movement::of)
    }

    /// Every movement dated `from..=to`, in date order (sequence order within a date).
    pub fn movements(&self, from: NaiveDate, to: NaiveDate) -> Vec<Movement> {
        let mut movements: Vec<Movement> = self
            .steps
            .iter()
            .filter(|(step, _)| (from..=to).contains(&step.date))
            .map(Movement::of)
            .collect();
        movements.sort_by_key(|m| (m.date, m.sequence));
        movements
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
}

/// The head of an account's record of steps in the state cache: where the
/// account belongs and where the record's blocks start; the steps' bytes
/// follow it in the record's value as they are.
#[derive(Serialize, Deserialize)]
struct AccountStepsHead {
    branch: BranchId,
    line: Line,
    starts: Vec<BlockStart>,
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
    /// Its totals by date worked out for the steps it holds.
    settled: bool,
}

impl Reading {
    fn new(line: bool) -> Reading {
        Reading {
            history: History::default(),
            line,
            in_date_order: true,
            settled: false,
        }
    }

    /// Appends a record. A line's totals by date are worked out on the
    /// same walk while its steps are in date order (walking a line's steps
    /// again for them was a fifth of the books' reading at 10^7 entries).
    fn append(&mut self, starts: &[BlockStart], bytes: &[u8]) -> Result<(), String> {
        let dates = (self.line && self.in_date_order).then_some(&mut self.history.by_date);
        let in_order = self.history.steps.append_record(starts, bytes, dates)?;
        self.in_date_order &= in_order;
        self.settled = false;
        Ok(())
    }

    /// Works out its totals by date: kept apart for a line, and for an
    /// account whose steps are not in date order (as booking keeps them).
    fn settle(&mut self) {
        if self.settled {
            return;
        }
        let history = &mut self.history;
        match (self.line, self.in_date_order) {
            (false, true) => {
                history.by_date = Vec::new();
                history.dates_from_steps = true;
            }
            // Worked out while its records were read.
            (true, true) => history.dates_from_steps = false,
            (_, false) => {
                history.by_date = history.steps.totals_by_date(false);
                history.dates_from_steps = false;
            }
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

/// A record's value split into its blocks' starts and its steps' bytes
/// (and for an account, where it belongs).
type RecordParts<'a> = (Option<(BranchId, Line)>, Vec<BlockStart>, &'a [u8]);

fn record_parts<'a>(of: &StepsOf, value: &'a [u8]) -> Result<RecordParts<'a>, String> {
    match of {
        StepsOf::Account(_) => {
            let (head, bytes): (AccountStepsHead, &[u8]) =
                postcard::take_from_bytes(value).map_err(|e| e.to_string())?;
            Ok((Some((head.branch, head.line)), head.starts, bytes))
        }
        StepsOf::Line(..) => {
            let (starts, bytes): (Vec<BlockStart>, &[u8]) =
                postcard::take_from_bytes(value).map_err(|e| e.to_string())?;
            Ok((None, starts, bytes))
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
}

impl BooksImport {
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
                let Some((Some((branch, line)), _, _)) = parts.first() else {
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
                        .find_map(|((head, _, _), index)| {
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
            parts.iter().map(|(_, starts, _)| starts.len()).sum(),
        );
        for ((_, starts, bytes), index) in parts.iter().zip(run.first..) {
            reading
                .append(starts, bytes)
                .map_err(|why| format!("record {:?}: {why}", run.of.key(index)))?;
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
        } = other;
        for (account, (branch, line, reading)) in accounts {
            match self.accounts.entry(account) {
                std::collections::btree_map::Entry::Vacant(vacant) => {
                    vacant.insert((branch, line, reading));
                }
                std::collections::btree_map::Entry::Occupied(held) => {
                    let of = StepsOf::Account(held.key().clone());
                    for index in 0..reading.history.steps.record_count() {
                        if let Some((starts, bytes)) = reading.history.steps.record(index) {
                            let head = AccountStepsHead {
                                branch: branch.clone(),
                                line: line.clone(),
                                starts,
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
    pub fn finish(mut self) -> Result<Books, String> {
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
        self.settle()?;
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
        Ok(Books {
            accounts,
            lines,
            ..Books::default()
        })
    }
}

/// The general ledger of every branch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
        let account_record = match self.accounts.get_mut(account) {
            Some(book) => {
                book.history.post(sequence, date, posted);
                book.history.steps.last_record()
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

    /// How many accounts have postings.
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// The state cache's record `index` of `account`'s steps (its value).
    pub fn account_record(&self, account: &AccountId, index: u64) -> Option<Vec<u8>> {
        let book = self.accounts.get(account)?;
        let (starts, bytes) = book.history.steps.record(usize::try_from(index).ok()?)?;
        let head = AccountStepsHead {
            branch: book.branch.clone(),
            line: book.line.clone(),
            starts,
        };
        Some(steps_value(&head, bytes))
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
            .map(|(a, k)| (a.clone(), k, books.account_record(a, k).unwrap()))
            .collect();
        let lines = books
            .line_record_keys()
            .map(|(b, l, k)| (b.clone(), l.clone(), k, books.line_record(b, l, k).unwrap()))
            .collect();
        (accounts, lines)
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
                .any(|book| book.history.dates_from_steps != apart)
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
}
