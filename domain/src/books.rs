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
use steps::{Step, Steps};

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

/// Entries per bucket of an account's history in the state cache: the
/// postings of entries `b × POSTING_BUCKET ..` to `(b + 1) × POSTING_BUCKET`
/// to one account are one record, so a checkpoint rewrites one record per
/// account it changed, not one per posting.
pub const POSTING_BUCKET: u64 = 4096;

/// What one bucket of entries posted to one account, as the state cache
/// keeps it (`posting/ACCOUNT/BUCKET`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostingBucket {
    pub branch: BranchId,
    pub line: Line,
    /// Sequence, effective date and what the entry posted, in sequence order.
    pub postings: Vec<BucketPosting>,
}

/// One entry's postings to the account, in a [`PostingBucket`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketPosting {
    pub sequence: u64,
    #[serde(with = "crate::codec::date")]
    pub date: NaiveDate,
    pub posted: Balance,
}

impl BucketPosting {
    /// The posting a step's entry made.
    fn of((step, posted): (Step, Balance)) -> BucketPosting {
        BucketPosting {
            sequence: step.sequence,
            date: step.date,
            posted,
        }
    }
}

/// Books being rebuilt from the state cache's bucket records, one at a
/// time as the store reads them: each bucket is booked into its account's
/// history as it comes and let go (the records of one account come in
/// bucket order as sled reads them; one that comes after a later bucket of
/// its account is kept aside and booked in order at the end).
#[derive(Default)]
pub struct BooksImport {
    accounts: BTreeMap<AccountId, AccountBook>,
    late: Vec<(AccountId, PostingBucket)>,
}

impl BooksImport {
    /// Takes in one bucket record of `account`.
    pub fn add(&mut self, account: AccountId, bucket: PostingBucket) {
        let Some(first) = bucket.postings.first().map(|p| p.sequence) else {
            return;
        };
        match self.accounts.get_mut(&account) {
            Some(book)
                if book
                    .history
                    .steps
                    .last()
                    .is_some_and(|s| s.sequence >= first) =>
            {
                self.late.push((account, bucket));
            }
            Some(book) => {
                for posting in &bucket.postings {
                    book.history
                        .post(posting.sequence, posting.date, posting.posted);
                }
            }
            None => {
                let mut history = History::dated_by_steps();
                history.steps.reserve(bucket.postings.len());
                for posting in &bucket.postings {
                    history.post(posting.sequence, posting.date, posting.posted);
                }
                let PostingBucket { branch, line, .. } = bucket;
                let book = AccountBook {
                    branch,
                    line,
                    history,
                };
                self.accounts.insert(account, book);
            }
        }
    }

    /// Takes in what another import took in (of other accounts, when the
    /// buckets were shared out by account; an account both took in is
    /// booked in sequence order at the end, as a bucket out of order is).
    pub fn absorb(&mut self, other: BooksImport) {
        let BooksImport { accounts, late } = other;
        for (account, book) in accounts {
            match self.accounts.entry(account) {
                std::collections::btree_map::Entry::Vacant(vacant) => {
                    vacant.insert(book);
                }
                std::collections::btree_map::Entry::Occupied(held) => {
                    let postings = book.history.steps.iter().map(BucketPosting::of).collect();
                    let bucket = PostingBucket {
                        branch: book.branch,
                        line: book.line,
                        postings,
                    };
                    self.late.push((held.key().clone(), bucket));
                }
            }
        }
        self.late.extend(late);
    }

    /// The books the buckets make up.
    pub fn finish(self) -> Books {
        self.finish_on(1)
    }

    /// The books the buckets make up, the lines merged on up to `threads`
    /// threads (the caller's included; [`LINE_MERGE_THREADS`] at most).
    pub fn finish_on(self, threads: usize) -> Books {
        let BooksImport { mut accounts, late } = self;
        // An account with buckets out of order: its postings sorted and
        // booked again.
        let mut redo: BTreeMap<AccountId, Vec<BucketPosting>> = BTreeMap::new();
        for (account, bucket) in late {
            redo.entry(account).or_default().extend(bucket.postings);
        }
        for (account, mut postings) in redo {
            let Some(book) = accounts.get_mut(&account) else {
                continue;
            };
            postings.extend(book.history.steps.iter().map(BucketPosting::of));
            postings.sort_by_key(|p| p.sequence);
            let mut history = History::dated_by_steps();
            for posting in postings {
                history.post(posting.sequence, posting.date, posting.posted);
            }
            book.history = history;
        }
        for book in accounts.values_mut() {
            book.history.steps.shrink_to_fit();
        }
        Books {
            accounts,
            ..Books::default()
        }
        .with_lines_of_accounts(threads)
    }
}

/// Threads [`Books`] merges its lines' histories on when it is rebuilt.
const LINE_MERGE_THREADS: usize = 4;

/// A line's history from its accounts'.
fn merged_line(histories: &[&History]) -> History {
    match histories {
        // A line of one account (a branch's cash, its interest income) has
        // that account's history, with its totals by date kept as every
        // line's are.
        [only] => {
            let mut history = (*only).clone();
            history.keep_dates();
            history
        }
        _ => {
            // The accounts' steps merged in sequence order, one step of each
            // account waiting at a time (several accounts' postings of one
            // entry add up in any order).
            let mut walks: Vec<_> = histories.iter().map(|h| h.steps.iter()).collect();
            let mut next: std::collections::BinaryHeap<_> = walks
                .iter_mut()
                .enumerate()
                .filter_map(|(i, walk)| walk.next().map(|s| Waiting(s, i)))
                .collect();
            let mut history = History::default();
            history
                .steps
                .reserve(histories.iter().map(|h| h.len()).sum());
            while let Some(Waiting((step, posted), i)) = next.pop() {
                history.post(step.sequence, step.date, posted);
                if let Some(s) = walks[i].next() {
                    next.push(Waiting(s, i));
                }
            }
            history.steps.shrink_to_fit();
            history
        }
    }
}

/// An account's next step in a merge of several: the heap pops the
/// lowest sequence first.
struct Waiting((Step, Balance), usize);

impl PartialEq for Waiting {
    fn eq(&self, other: &Waiting) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Waiting {}

impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Waiting) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Waiting {
    fn cmp(&self, other: &Waiting) -> std::cmp::Ordering {
        (other.0.0.sequence, other.1).cmp(&(self.0.0.sequence, self.1))
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
    /// Books one posting of entry `sequence`, dated `date`, in `branch`.
    pub fn post(
        &mut self,
        sequence: u64,
        date: NaiveDate,
        branch: &BranchId,
        account: &AccountId,
        line: Line,
        posted: Balance,
    ) {
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
            return;
        }
        history.post(sequence, date, posted);
        match self.accounts.get_mut(account) {
            Some(book) => book.history.post(sequence, date, posted),
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
            }
        }
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

    /// The cache record of bucket `bucket` of `account`'s history.
    pub fn bucket_record(&self, account: &AccountId, bucket: u64) -> Option<PostingBucket> {
        let book = self.accounts.get(account)?;
        let first = bucket.checked_mul(POSTING_BUCKET)?;
        let postings: Vec<BucketPosting> = book
            .history
            .steps
            .between(first, first.saturating_add(POSTING_BUCKET))
            .map(BucketPosting::of)
            .collect();
        (!postings.is_empty()).then(|| PostingBucket {
            branch: book.branch.clone(),
            line: book.line.clone(),
            postings,
        })
    }

    /// Every bucket of every account's history, as `(account, bucket)` keys.
    pub fn bucket_keys(&self) -> impl Iterator<Item = (&AccountId, u64)> {
        self.accounts.iter().flat_map(|(account, book)| {
            let mut buckets: Vec<u64> = book
                .history
                .steps
                .iter()
                .map(|(s, _)| s.sequence / POSTING_BUCKET)
                .collect();
            buckets.dedup();
            buckets.into_iter().map(move |bucket| (account, bucket))
        })
    }

    /// Rebuilds the books from bucket records in any order
    /// ([`BooksImport`]).
    pub fn from_buckets(records: Vec<(AccountId, PostingBucket)>) -> Books {
        let mut import = BooksImport::default();
        for (account, bucket) in records {
            import.add(account, bucket);
        }
        import.finish()
    }

    /// The lines, from the accounts' histories: each line's steps are its
    /// accounts' merged, every history sized for what it holds. The lines
    /// are merged on up to `threads` threads (the caller's included; at
    /// most [`LINE_MERGE_THREADS`]), their steps shared out about evenly:
    /// at startup this is most of what remains once the cache is read. A
    /// thread that cannot be started leaves its share to the caller's.
    fn with_lines_of_accounts(self, threads: usize) -> Books {
        let mut books = self;
        let mut members: BTreeMap<(&BranchId, &Line), Vec<&History>> = BTreeMap::new();
        for book in books.accounts.values() {
            members
                .entry((&book.branch, &book.line))
                .or_default()
                .push(&book.history);
        }
        let mut work: Vec<((&BranchId, &Line), Vec<&History>)> = members.into_iter().collect();
        // A line's work: its steps, a line of one account's at a twelfth (its
        // history is copied, and its totals by date summed from its encoded
        // steps, not merged through a heap and encoded again: a profile of
        // a restart at 10^7 entries timed its steps at about a twelfth of
        // a merged line's).
        let steps = |histories: &[&History]| {
            let steps = histories.iter().map(|h| h.len()).sum::<usize>();
            if histories.len() == 1 {
                steps / 12
            } else {
                steps
            }
        };
        // Largest first, each to the share with the least work so far.
        work.sort_by_key(|(_, histories)| std::cmp::Reverse(steps(histories)));
        let threads = threads.clamp(1, LINE_MERGE_THREADS);
        let mut shares: Vec<(usize, Vec<usize>)> = vec![(0, Vec::new()); threads];
        for (i, (_, histories)) in work.iter().enumerate() {
            if let Some(share) = shares.iter_mut().min_by_key(|(held, _)| *held) {
                share.0 += steps(histories);
                share.1.push(i);
            }
        }
        let merge_share = |share: &[usize]| -> Vec<(usize, History)> {
            share
                .iter()
                .map(|&i| (i, merged_line(&work[i].1)))
                .collect()
        };
        let mut merged: Vec<(usize, History)> = std::thread::scope(|scope| {
            let mut here: Vec<usize> = shares[0].1.clone();
            let mut others = Vec::new();
            for (_, share) in shares[1..].iter().filter(|(_, share)| !share.is_empty()) {
                match std::thread::Builder::new()
                    .name("books-lines".into())
                    .spawn_scoped(scope, || merge_share(share))
                {
                    Ok(other) => others.push(other),
                    Err(_) => here.extend_from_slice(share),
                }
            }
            let mut merged = merge_share(&here);
            for other in others {
                // A merge only adds up what was booked already: it has
                // nothing to panic on; if it did, the panic goes on here.
                merged.extend(
                    other
                        .join()
                        .unwrap_or_else(|e| std::panic::resume_unwind(e)),
                );
            }
            merged
        });
        merged.sort_by_key(|(i, _)| *i);
        let mut lines: BTreeMap<BranchId, BTreeMap<Line, History>> = BTreeMap::new();
        for (((branch, line), _), (_, history)) in work.iter().zip(merged) {
            lines
                .entry((*branch).clone())
                .or_default()
                .insert((*line).clone(), history);
        }
        books.lines = lines;
        books
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

    /// Postings to two branches' cash, interest income and loans, some
    /// back-dated, over several buckets of entries.
    fn postings() -> Vec<(u64, NaiveDate, BranchId, AccountId, Balance)> {
        let branches = ["TB", "HN"].map(|b| BranchId::parse("branch", b).unwrap());
        let mut postings = Vec::new();
        for n in 1..=40u64 {
            let sequence = n * POSTING_BUCKET / 4 + n;
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
        for (i, (sequence, date, branch, account, posted)) in postings().into_iter().enumerate() {
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

    #[test]
    fn books_rebuilt_from_their_buckets_are_the_books() {
        let mut books = Books::default();
        for (sequence, date, branch, account, posted) in postings() {
            let line = Line::of(&account, None);
            books.post(sequence, date, &branch, &account, line, posted);
        }
        let mut records: Vec<(AccountId, PostingBucket)> = books
            .bucket_keys()
            .map(|(account, bucket)| {
                (
                    account.clone(),
                    books.bucket_record(account, bucket).unwrap(),
                )
            })
            .collect();
        // In the order sled reads them (each account's buckets in order)...
        assert_eq!(Books::from_buckets(records.clone()), books);
        // ...and in any other: buckets of an account coming after a later
        // one are booked in order at the end.
        records.reverse();
        assert_eq!(Books::from_buckets(records.clone()), books);
        let third = records.len() / 3;
        records.rotate_left(third);
        assert_eq!(Books::from_buckets(records), books);
    }
}
