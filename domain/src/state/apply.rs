//! Applying sealed entries to the state. Deterministic; checks that the entry
//! fits the state (sequence, chain, balance; the chain is worked out rather
//! than checked when the state seals the entry itself,
//! [`LedgerState::seal_and_keep`]) and fails rather than guess.
//!
//! An entry is applied in two steps. [`Stage`] works out everything it
//! changes on copies of the objects it touches (loans, members, savings
//! accounts, balances), with checked arithmetic, and
//! [`LedgerState::work_days`] what it changes of the branch's days, in a
//! state that keeps them ([`DayWork`]); only when all of it fits does
//! [`LedgerState::commit`] write the copies into the state, a step that
//! cannot fail. An entry that contradicts the state or overflows leaves the
//! state exactly as it was.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::*;
use crate::access::{Access, PendingRequest, Stamp};
use crate::day_changes::DayChanges;
use crate::entry::{Recast, Repayment};
use crate::product::FeeCollection;
use crate::totals::{Overflow, ProductDay, minus, plus, sum};

/// What applying one entry wrote into the state: the new value of every
/// object the entry changed, and what it changes of the days (worked out,
/// or, from the writer's copy, which keeps none, what working them out
/// needs). A second copy of the state at the same head takes it with
/// [`LedgerState::apply_written`] instead of working the entry out again
/// (the writer applies each entry to its working state, and the read side
/// takes what it wrote).
#[derive(Clone)]
pub struct Written {
    /// The entry applied: its sequence number and hash.
    sequence: u64,
    hash: Hash,
    /// The hash it chains to: the writer worked the entry's hash out from
    /// it and its canonical bytes ([`LedgerState::seal_and_keep`]; a
    /// standby's writer checked a followed entry's), and checked its
    /// balance, before applying it.
    previous: Hash,
    commit: Commit,
    /// What the entry changes of the days, still to be worked out, when the
    /// state that applied it keeps none ([`LedgerState::keeps_days`]).
    days: Option<DayWork>,
}

impl Written {
    /// Works out what the entry's loans change of their branches'
    /// portfolio figures, which needs the loans alone (before and after
    /// the entry), not the state: the read side's publisher does it before
    /// it takes the lock readers wait on, so that
    /// [`LedgerState::apply_written`] has only the days' sums left to do.
    pub fn work_out_loans(&mut self) {
        if let Some(work) = &mut self.days {
            work.work_out_loans(&self.commit.loans);
        }
    }
}

/// Why [`LedgerState::seal_and_keep`] wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The entry is larger than the journal holds: the command is refused.
    #[error(transparent)]
    Refused(DomainError),
    /// The entry did not apply (a bug: it was decided against this state).
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// Whether staging checks that an entry's hash chains to the state's last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chain {
    /// An entry from elsewhere (the journal, a standby's primary): checked.
    Check,
    /// Sealed by [`LedgerState::seal_and_keep`] from this state's last hash
    /// a moment before: the same computation, not made twice.
    SealedHere,
}

impl LedgerState {
    /// Applies `entry`, which must follow the last applied one. On an error
    /// the state is unchanged.
    pub fn apply(&mut self, entry: &Entry) -> Result<(), ApplyError> {
        let (commit, _) = self.stage_and_work_days(entry, Chain::Check)?;
        self.commit_entry(entry, commit)
    }

    /// Applies `entry` as [`LedgerState::apply`] does, and returns what it
    /// wrote, for a copy of the state at the same head.
    pub fn apply_and_keep(&mut self, entry: &Entry) -> Result<Written, ApplyError> {
        let previous = self.last_hash();
        let (commit, days) = self.stage_and_work_days(entry, Chain::Check)?;
        let written = Written {
            sequence: entry.body.sequence,
            hash: entry.hash,
            previous,
            commit: commit.clone(),
            days,
        };
        self.commit_entry(entry, commit)?;
        Ok(written)
    }

    /// Seals `body`, decided against this state ([`LedgerState::execute`]),
    /// after its last entry, and applies it as
    /// [`LedgerState::apply_and_keep`] does: the writer's path. Refuses an
    /// entry whose canonical bytes are over [`crate::entry::ENTRY_BYTES_MAX`]
    /// (the journal could not hold it), leaving the state as it was. The
    /// entry's hash is worked out here from this state's last, so staging
    /// does not work it out a second time to check that it chains.
    ///
    /// The bound is the writer's limit, what the journal can hold, not a
    /// rule decided again: `verify` and replay do not check it on entries
    /// already written (the store's record limit bounds what a journal
    /// holds). Builds before this one counted, in `execute`, the canonical
    /// bytes without the attribution encoded after the body, so an entry
    /// they wrote may be over the bound by up to its attribution's bytes.
    pub fn seal_and_keep(&mut self, body: EntryBody) -> Result<(Entry, Written), SealError> {
        let canonical = body.canonical_bytes();
        if canonical.len() > crate::entry::ENTRY_BYTES_MAX {
            return Err(SealError::Refused(super::execute::entry_too_large(
                &body,
                canonical.len(),
            )));
        }
        let previous = self.last_hash();
        let entry = body.sealed_as(canonical, &previous);
        let (commit, days) = self.stage_and_work_days(&entry, Chain::SealedHere)?;
        let written = Written {
            sequence: entry.body.sequence,
            hash: entry.hash,
            previous,
            commit: commit.clone(),
            days,
        };
        self.commit_entry(&entry, commit)?;
        Ok((entry, written))
    }

    /// Applies `entry` by writing what applying it to a copy of this state
    /// at the same head wrote ([`LedgerState::apply_and_keep`]): the same
    /// state as [`LedgerState::apply`], without working it out again, but
    /// for the days, when the copy kept none: those are worked out here
    /// ([`DayWork`]), and an entry that overflows a day's figure is refused
    /// with the state as it was. The entry must still follow the last
    /// applied one and chain to it: its sequence number comes next, and the
    /// hash it was applied after is this state's last (the writer worked
    /// its hash out from that one, or checked it, and checked its balance,
    /// so they are not worked out a second time).
    pub fn apply_written(&mut self, entry: &Entry, written: Written) -> Result<(), ApplyError> {
        self.check_next(&entry.body)?;
        if written.previous != self.last_hash() {
            return Err(ApplyError {
                sequence: entry.body.sequence,
                message: "hash does not chain to the previous entry".into(),
            });
        }
        if (written.sequence, written.hash) != (entry.body.sequence, entry.hash) {
            return Err(ApplyError {
                sequence: entry.body.sequence,
                message: format!(
                    "what was written is entry {}'s, not this one's",
                    written.sequence
                ),
            });
        }
        let mut commit = written.commit;
        match written.days {
            Some(work) if self.keeps_days() => {
                self.set_days(&mut commit, work, entry.body.sequence)?
            }
            // A copy that keeps no days writes none, whoever worked them out.
            _ if !self.keeps_days() => commit.days = None,
            _ => {}
        }
        self.commit_entry(entry, commit)
    }

    /// Checks that `entry` follows the last applied one: sequence, hash
    /// chain (unless `chain` says this state sealed it), balance.
    fn check_follows(&self, entry: &Entry, chain: Chain) -> Result<(), ApplyError> {
        let body = &entry.body;
        let fail = |message: String| ApplyError {
            sequence: body.sequence,
            message,
        };
        self.check_next(body)?;
        if chain == Chain::Check
            && super::super::entry::chain_hash(&self.last_hash(), &entry.canonical) != entry.hash
        {
            return Err(fail("hash does not chain to the previous entry".into()));
        }
        if !body.is_balanced() {
            return Err(fail("debits do not equal credits".into()));
        }
        // Postings are booked in their branch's books, from which a state
        // read back takes each account's balance.
        if body.branch.is_none() && !body.postings.is_empty() {
            return Err(fail(
                "the entry posts to accounts and names no branch".into(),
            ));
        }
        Ok(())
    }

    /// Checks that `body`'s sequence number is the next one.
    fn check_next(&self, body: &EntryBody) -> Result<(), ApplyError> {
        let fail = |message: String| ApplyError {
            sequence: body.sequence,
            message,
        };
        let expected = self
            .last_sequence
            .checked_add(1)
            .ok_or_else(|| fail("sequence overflow".into()))?;
        if body.sequence != expected {
            return Err(fail(format!("expected sequence {expected}")));
        }
        Ok(())
    }

    /// Works out everything `entry` changes, leaving the state as it is:
    /// what it changes of the days too when the state keeps them, and
    /// otherwise what is needed to work them out
    /// ([`LedgerState::apply_written`]).
    fn stage_and_work_days(
        &self,
        entry: &Entry,
        chain: Chain,
    ) -> Result<(Commit, Option<DayWork>), ApplyError> {
        let (mut commit, work) = self.stage(entry, chain)?;
        if !self.keeps_days() {
            return Ok((commit, Some(work)));
        }
        self.set_days(&mut commit, work, entry.body.sequence)?;
        Ok((commit, None))
    }

    /// Works `work` out into `commit`'s days (`sequence`, the entry's, names
    /// it if a figure overflows).
    fn set_days(
        &self,
        commit: &mut Commit,
        work: DayWork,
        sequence: u64,
    ) -> Result<(), ApplyError> {
        let days = self
            .work_days(work, &commit.loans)
            .map_err(|overflow| ApplyError {
                sequence,
                message: overflow.to_string(),
            })?;
        commit.days = Some(Arc::new(days));
        Ok(())
    }

    /// Works out everything `entry` changes but the days' figures, leaving
    /// the state as it is.
    fn stage(&self, entry: &Entry, chain: Chain) -> Result<(Commit, DayWork), ApplyError> {
        self.check_follows(entry, chain)?;
        let body = &entry.body;
        let fail = |message: String| ApplyError {
            sequence: body.sequence,
            message,
        };
        let mut stage = Stage::new(self, body.sequence, body.effective_date);
        stage.outcome(body).map_err(fail)?;
        stage.postings(body).map_err(fail)?;
        stage.finish().map_err(fail)
    }

    /// Writes what staging `entry` worked out, and moves the head to it,
    /// after reading back the books of the loans memory let go of that it
    /// changes ([`LedgerState::books_to_bring_back`]): an error, with the
    /// state as it was, when the store cannot give them.
    fn commit_entry(&mut self, entry: &Entry, commit: Commit) -> Result<(), ApplyError> {
        let books = self
            .books_to_bring_back(&commit)
            .map_err(|message| ApplyError {
                sequence: entry.body.sequence,
                message,
            })?;
        for (account, book) in books {
            self.books.bring_back(account, book);
        }
        self.commit_staged(entry, commit);
        Ok(())
    }

    /// The books of the closed or cancelled loans memory let go of that
    /// `commit` changes (a reversal that reopens one), read back whole
    /// from the store, for the entry to book to them: memory holds each
    /// loan's account's book while the loan runs, and lets go of it with
    /// the loan ([`LedgerState::saved`]). None on a copy that keeps only
    /// the lines.
    fn books_to_bring_back(
        &self,
        commit: &Commit,
    ) -> Result<Vec<(AccountId, crate::books::AccountBook)>, String> {
        if self.books.keeps_lines_only() {
            return Ok(Vec::new());
        }
        let mut books = Vec::new();
        for (loan, records) in &commit.loans {
            let account = AccountId::Loan(loan.id.clone());
            // A loan memory holds has its account's book held too (a new
            // one has none yet); one let go of was ended before the entry.
            if !records.ended || self.loans.contains_key(&loan.id) || self.books.holds(&account) {
                continue;
            }
            let book = self
                .books
                .read_kept(&account)
                .map_err(|error| format!("loan {}'s account: {error}", loan.id))?;
            books.push((account, book));
        }
        Ok(books)
    }

    /// Writes what staging `entry` worked out, and moves the head to it.
    fn commit_staged(&mut self, entry: &Entry, commit: Commit) {
        let body = &entry.body;
        for (branch, changes) in commit.days.iter().flat_map(|days| days.iter()) {
            let before = self.days.get(branch);
            if let Some(noted) = self.day_log.note(body.sequence, branch, before, changes) {
                if let Some(first) = noted.closed {
                    self.changed
                        .note(|| StateKey::DayChunk(branch.clone(), first));
                }
                self.changed.note(|| StateKey::DayOpen(branch.clone()));
            }
        }
        self.commit(commit);
        self.book(body);
        if !self.skip_requests {
            self.requests
                .insert(body.request_id.as_str(), body.sequence);
        }
        self.last_sequence = body.sequence;
        self.last_hash = Some(entry.hash);
        self.changed.note(|| StateKey::Head);
        self.changed.note(|| StateKey::Format);
    }

    /// Books the entry's postings in the general ledger, after the commit
    /// (a savings account opened by the entry is then known). Cannot fail:
    /// the running totals are bounded by the balances and the lines' totals
    /// `stage` checked.
    fn book(&mut self, body: &EntryBody) {
        let Some(branch) = &body.branch else {
            return;
        };
        // The lines' records this entry noted changed (the first few): a
        // collection sheet posts to a few lines dozens of times, and each
        // note of one is a key built (a count taken on the branch's id),
        // hashed and compared with the one noted already, then dropped.
        // All an entry's postings to a line add up in one step, so in one
        // record. Held in place: a repayment posts to distinct lines, and
        // allocating a list for it would cost what it saves a sheet.
        let mut lines_noted: [Option<(crate::books::Line, u64)>; 8] = [const { None }; 8];
        for posting in &body.postings {
            let savings = match &posting.account {
                AccountId::Savings(id) => self.savings.get(id).map(|account| account.kind),
                _ => None,
            };
            let line = crate::books::Line::of(&posting.account, savings);
            let records = self.books.post(
                body.sequence,
                body.effective_date,
                branch,
                &posting.account,
                line.clone(),
                Balance::of(posting.side, posting.amount),
            );
            if let Some(records) = records {
                self.changed
                    .note(|| StateKey::Steps(posting.account.clone(), records.account));
                // The record it closed moves out of those startup reads.
                if let Some(moved) = records.moved {
                    self.changed
                        .note(|| StateKey::Steps(posting.account.clone(), moved));
                    self.changed
                        .note(|| StateKey::ClosedSteps(posting.account.clone(), moved));
                }
                let noted = (line, records.line);
                if !lines_noted.iter().flatten().any(|seen| *seen == noted) {
                    self.changed
                        .note(|| StateKey::LineSteps(branch.clone(), noted.0.clone(), noted.1));
                    // Past the first eight, noted every time, as before.
                    if let Some(free) = lines_noted.iter_mut().find(|slot| slot.is_none()) {
                        *free = Some(noted);
                    }
                }
            }
        }
        if let Outcome::PeriodClosed {
            through,
            carried: true,
        } = &body.outcome
        {
            let carried = body
                .postings
                .iter()
                .filter(|p| !matches!(p.account, AccountId::RetainedEarnings(_)))
                .map(|p| {
                    (
                        crate::books::Line::of(&p.account, None),
                        Balance::of(p.side, p.amount),
                    )
                })
                .collect();
            self.books.note_carry(branch, *through, carried);
            self.changed
                .note(|| StateKey::Carry(branch.clone(), *through));
        }
    }

    /// Writes what a stage worked out. Cannot fail.
    fn commit(&mut self, commit: Commit) {
        if let Some(branch) = commit.branch {
            self.changed.note(|| StateKey::Branch(branch.id.clone()));
            self.branches.insert(branch.id.clone(), branch);
        }
        if let Some(center) = commit.center {
            self.changed.note(|| StateKey::Center(center.id.clone()));
            self.centers.insert(center.id.clone(), center);
        }
        if let Some(group) = commit.group {
            self.changed.note(|| StateKey::Group(group.id.clone()));
            self.groups.insert(group.id.clone(), group);
        }
        if let Some(version) = commit.product {
            self.changed.note(|| StateKey::Product(version.id.clone()));
            self.products
                .entry(version.id.clone())
                .or_default()
                .push(version);
        }
        if let Some(version) = commit.savings_product {
            self.changed
                .note(|| StateKey::SavingsProduct(version.id.clone()));
            self.savings_products
                .entry(version.id.clone())
                .or_default()
                .push(version);
        }
        for member in commit.members {
            self.changed.note(|| StateKey::Member(member.id.clone()));
            self.members.insert(member.id.clone(), member);
        }
        for account in commit.savings {
            self.changed.note(|| StateKey::Savings(account.id.clone()));
            self.savings.insert(account.id.clone(), account);
        }
        for account in commit.savings_whole {
            self.changed.note(|| StateKey::Savings(account.id.clone()));
            self.savings.insert(account.id.clone(), account);
        }
        for (branch, through, index, record) in commit.savings_history {
            self.changed
                .note(|| StateKey::SavingsHistory(branch.clone(), through, index));
            match record {
                Some(record) => {
                    self.savings_history
                        .insert((branch, through, index), record);
                }
                None => {
                    self.savings_history.remove(&(branch, through, index));
                }
            }
        }
        for (id, date, moved) in commit.savings_moves {
            if let Some(account) = self.savings.get_mut(&id) {
                // Shared with the other side only until its first change
                // after opening: then each side has its own.
                let account = Arc::make_mut(account);
                // Checked when staged: it fits.
                let _ = move_on(&mut account.changes, date, moved);
                self.changed.note(|| StateKey::Savings(id));
            }
        }
        // Loans that ended: what deciding keeps of their accounts goes.
        let mut ended = Vec::new();
        for (loan, records) in commit.loans {
            let id = &loan.id;
            if records.ended {
                // Closed, cancelled or reopened: its records change from
                // those of a running loan (its terms, progress and both
                // lists, every chunk) to those of an ended one (the loan
                // whole, and its summary), or back.
                self.changed.note(|| StateKey::Loan(id.clone()));
                self.changed.note(|| StateKey::LoanSchedule(id.clone()));
                self.changed.note(|| StateKey::LoanEnded(id.clone()));
                for chunk in 0..=keys::list_chunks(loan.events.len()) {
                    self.changed
                        .note(|| StateKey::LoanEvents(id.clone(), chunk));
                }
                for chunk in 0..=keys::list_chunks(loan.history.len()) {
                    self.changed
                        .note(|| StateKey::LoanHistory(id.clone(), chunk));
                }
                // Its account's records of steps too: kept in one while the
                // loan has ended, each under its own key while it runs.
                self.changed.note(|| StateKey::LoanSteps(id.clone()));
                let account = AccountId::Loan(id.clone());
                for index in self
                    .books
                    .last_record(&account)
                    .map_or(0..0, |last| 0..last + 1)
                {
                    self.changed
                        .note(|| StateKey::Steps(account.clone(), index));
                }
            } else {
                if records.loan {
                    self.changed.note(|| StateKey::Loan(id.clone()));
                }
                if let Some(chunk) = keys::list_chunk_touched(loan.events.len()) {
                    self.changed
                        .note(|| StateKey::LoanEvents(id.clone(), chunk));
                }
                if let Some(chunk) = keys::list_chunk_touched(loan.history.len()) {
                    self.changed
                        .note(|| StateKey::LoanHistory(id.clone(), chunk));
                }
            }
            self.changed.note(|| StateKey::LoanProgress(id.clone()));
            if loan.has_ended() {
                // Set on every loan that ended; one without would have been
                // active on every day since its disbursement.
                let ended_on = loan.ended_on.unwrap_or(NaiveDate::MAX);
                if self.ended_latest.is_none_or(|latest| latest < ended_on) {
                    self.ended_latest = Some(ended_on);
                    self.changed.note(|| StateKey::EndedLatest);
                }
                if !self.balances_in_books {
                    ended.push(AccountId::Loan(id.clone()));
                }
            }
            self.loans.insert(id.clone(), loan);
        }
        for (branch, changes) in commit.days.iter().flat_map(|days| days.iter()) {
            self.write_days(branch, changes);
        }
        if !self.balances_in_books {
            for (account, balance) in commit.balances {
                self.balances.insert(account, balance);
            }
            // An ended loan's account owes nothing: deciding keeps no
            // balance for it, as after a restart (`LedgerState::balances`).
            for account in ended {
                self.balances.remove(&account);
            }
        }
        if let Some((sequence, by)) = commit.reversed {
            self.reversed.insert(sequence, by);
            self.changed.note(|| StateKey::Reversed(sequence));
        }
        if let Some(access) = commit.access {
            self.access = access;
            self.changed.note(|| StateKey::Access);
        }
    }
}

impl LedgerState {
    /// Writes what an entry changed of a branch's days.
    fn write_days(&mut self, branch: &BranchId, changes: &DayChanges) {
        let days = match self.days.get_mut(branch) {
            Some(days) => days,
            None => self.days.entry(branch.clone()).or_default(),
        };
        match self.changed.days_of(branch) {
            Some(noted) => changes.write_into(days, |date| {
                noted.insert(date);
            }),
            None => changes.write_into(days, |_| {}),
        }
    }
}

/// Everything an entry changes, ready to be written.
#[derive(Clone, Default)]
struct Commit {
    branch: Option<Branch>,
    center: Option<Center>,
    group: Option<Group>,
    product: Option<ProductVersion>,
    savings_product: Option<crate::product::SavingsProductVersion>,
    members: Vec<Arc<Member>>,
    /// Accounts opened by the entry.
    savings: Vec<Arc<SavingsAccount>>,
    /// Net change of existing accounts' balances on the entry's date: each
    /// side writes it into its own copy of the account, in place, instead
    /// of both taking a copy of the whole change history.
    savings_moves: Vec<(SavingsAccountId, NaiveDate, Decimal)>,
    /// Accounts a close folded or a reopening took folds back into,
    /// replaced whole ([`super::folds`]).
    savings_whole: Vec<Arc<SavingsAccount>>,
    /// The records of the changes a close folded out of a branch's
    /// accounts, by the date folded through and index (`None`: a reopening
    /// took them back).
    savings_history: Vec<(
        BranchId,
        NaiveDate,
        u32,
        Option<Arc<super::folds::FoldRecord>>,
    )>,
    /// Loans, and which of their records changed besides their progress.
    /// Shared: the read side takes the writer's (see [`Written`]).
    loans: Vec<(Arc<Loan>, LoanRecords)>,
    /// What the entry changes of each branch's days: the figures it moves,
    /// each with its new value; `None` for a state that keeps no days (the
    /// writer's), which hands what they need to the read side
    /// ([`DayWork`]).
    days: Option<Arc<BTreeMap<BranchId, DayChanges>>>,
    balances: Vec<(AccountId, Balance)>,
    reversed: Option<(u64, u64)>,
    /// Who may do what, after an access command.
    access: Option<Arc<Access>>,
}

/// Which of a changed loan's records change besides its progress.
#[derive(Clone, Copy, Debug, Default)]
struct LoanRecords {
    /// Its `Loan` record: the schedule changed (recast, or a new loan).
    loan: bool,
    /// The loan is closed or cancelled, or was before the entry
    /// ([`Loan::has_ended`]): every record of it changes.
    ended: bool,
}

/// A loan being changed by the entry.
struct StagedLoan {
    loan: Loan,
    /// The loan before the entry, whole (`None` for a new one).
    before: Option<Arc<Loan>>,
    /// First date whose figures the entry changes.
    from: NaiveDate,
    /// The schedule changed (recast, or a new loan).
    schedule_changed: bool,
}

/// The entry being applied: copies of what it changes.
struct Stage<'s> {
    state: &'s LedgerState,
    /// The entry's sequence number.
    sequence: u64,
    /// The entry's effective date.
    date: NaiveDate,
    commit: Commit,
    members: BTreeMap<MemberId, Member>,
    /// Accounts the entry opens.
    savings: BTreeMap<SavingsAccountId, SavingsAccount>,
    /// Net change of existing accounts on the entry's date.
    savings_moves: BTreeMap<SavingsAccountId, Decimal>,
    loans: BTreeMap<LoanId, StagedLoan>,
    /// Members whose borrower steps must be worked out again.
    refresh: BTreeSet<MemberId>,
    /// Changes of day totals, by branch and date (by branch first: an entry
    /// changes one branch's days, and its id is then copied once).
    days: BTreeMap<BranchId, BTreeMap<NaiveDate, DayTotals>>,
}

/// Loans' changes of one branch's portfolio figures ([`QualityDay`]).
#[derive(Clone, Default)]
struct QualityChanges {
    days: Vec<(NaiveDate, loans::QualityDay)>,
    /// More than one loan's list: no longer in date order.
    several: bool,
}

impl QualityChanges {
    /// Adds one loan's changes (in date order, one per date).
    fn extend(&mut self, change: Vec<(NaiveDate, loans::QualityDay)>) {
        if self.days.is_empty() {
            self.days = change;
        } else if !change.is_empty() {
            self.days.extend(change);
            self.several = true;
        }
    }

    /// The changes summed by date, in date order.
    fn by_date(self) -> Result<Vec<(NaiveDate, loans::QualityDay)>, Overflow> {
        if self.several {
            loans::merge_by_date(self.days)
        } else {
            Ok(self.days)
        }
    }
}

impl<'s> Stage<'s> {
    fn new(state: &'s LedgerState, sequence: u64, date: NaiveDate) -> Stage<'s> {
        Stage {
            state,
            sequence,
            date,
            commit: Commit::default(),
            members: BTreeMap::new(),
            savings: BTreeMap::new(),
            savings_moves: BTreeMap::new(),
            loans: BTreeMap::new(),
            refresh: BTreeSet::new(),
            days: BTreeMap::new(),
        }
    }

    /// The staged copy of a member.
    fn member(&mut self, id: &MemberId) -> Result<&mut Member, String> {
        if !self.members.contains_key(id) {
            let member = self.state.members.get(id).ok_or("unknown member")?;
            self.members.insert(id.clone(), Member::clone(member));
        }
        self.members
            .get_mut(id)
            .ok_or_else(|| "unknown member".into())
    }

    /// The staged copy of a loan, changed from `from` on.
    fn loan(&mut self, id: &LoanId, from: NaiveDate) -> Result<&mut StagedLoan, String> {
        if !self.loans.contains_key(id) {
            // A closed or cancelled loan memory let go of is read back.
            let whole = self
                .state
                .whole_loan(id)
                .map_err(|e| e.to_string())?
                .ok_or("unknown loan")?;
            self.loans.insert(
                id.clone(),
                StagedLoan {
                    loan: Loan::clone(&whole),
                    before: Some(whole),
                    from,
                    schedule_changed: false,
                },
            );
        }
        let staged = self.loans.get_mut(id).ok_or("unknown loan")?;
        staged.from = staged.from.min(from);
        Ok(staged)
    }

    /// Adds `change` to a branch's day.
    fn add_day(
        &mut self,
        branch: &BranchId,
        date: NaiveDate,
        change: &DayTotals,
    ) -> Result<(), Overflow> {
        let days = match self.days.get_mut(branch) {
            Some(days) => days,
            None => self.days.entry(branch.clone()).or_default(),
        };
        days.entry(date).or_default().add(change)
    }

    fn outcome(&mut self, body: &EntryBody) -> Result<(), String> {
        if let Outcome::ApprovalRequested { expires_at_micros } = body.outcome {
            return self.approval_requested(body, expires_at_micros);
        }
        self.command_outcome(body)?;
        if let Some(approval) = body.attribution.as_ref().and_then(|a| a.approval.as_ref()) {
            let mut access = match self.commit.access.take() {
                Some(access) => Arc::unwrap_or_clone(access),
                None => Access::clone(&self.state.access),
            };
            access.resolve_approved(approval, body.sequence)?;
            self.commit.access = Some(Arc::new(access));
        }
        Ok(())
    }

    /// A command recorded as waiting for approval: it changes nothing but
    /// the list of pending requests.
    fn approval_requested(
        &mut self,
        body: &EntryBody,
        expires_at_micros: i64,
    ) -> Result<(), String> {
        let maker = body
            .attribution
            .as_ref()
            .ok_or("a pending request names no principal")?
            .principal
            .clone();
        if !body.postings.is_empty() {
            return Err("a pending request moves no money".into());
        }
        let mut access = Access::clone(&self.state.access);
        access.add_pending(PendingRequest {
            sequence: body.sequence,
            maker,
            actor: body.actor.clone(),
            branch: entry_branch(body)?,
            command: body.command.clone(),
            requested_at_micros: body.recorded_at_micros,
            expires_at_micros,
            resolution: None,
        })?;
        self.commit.access = Some(Arc::new(access));
        Ok(())
    }

    fn command_outcome(&mut self, body: &EntryBody) -> Result<(), String> {
        let date = body.effective_date;
        match (&body.command, &body.outcome) {
            (
                CommandBody::CreateBranch {
                    branch_id,
                    name,
                    time_zone,
                    currency,
                    compulsory_savings_percent,
                    ..
                },
                _,
            ) => {
                self.commit.branch = Some(Branch {
                    id: branch_id.clone(),
                    name: name.clone(),
                    time_zone: time_zone.clone(),
                    currency: *currency,
                    compulsory_savings_percent: *compulsory_savings_percent,
                    opened_on: date,
                    closed: None,
                    interest_posted: Vec::new(),
                    folds: Vec::new(),
                });
            }
            (
                CommandBody::CreateCenter {
                    center_id,
                    branch_id,
                    name,
                    ..
                },
                _,
            ) => {
                self.commit.center = Some(Center {
                    id: center_id.clone(),
                    branch: branch_id.clone(),
                    name: name.clone(),
                    opened_on: date,
                });
            }
            (
                CommandBody::CreateGroup {
                    group_id,
                    center_id,
                    name,
                    ..
                },
                _,
            ) => {
                let branch = self
                    .state
                    .centers
                    .get(center_id)
                    .ok_or("unknown center")?
                    .branch
                    .clone();
                self.commit.group = Some(Group {
                    id: group_id.clone(),
                    center: center_id.clone(),
                    branch,
                    name: name.clone(),
                    opened_on: date,
                });
            }
            (
                CommandBody::RegisterMember {
                    member_id,
                    full_name,
                    group_id,
                    ..
                },
                _,
            ) => {
                let group = self.state.groups.get(group_id).ok_or("unknown group")?;
                // The group's ids as its record holds them, not the
                // command's copies.
                let member = Member {
                    id: member_id.clone(),
                    full_name: full_name.clone(),
                    group: group.id.clone(),
                    center: group.center.clone(),
                    branch: group.branch.clone(),
                    joined_on: date,
                    registered: body.sequence,
                    savings_accounts: Vec::new(),
                    loans: Vec::new(),
                    voluntary_accounts_opened: 0,
                    borrower_steps: Vec::new(),
                    ended_borrowing: Vec::new(),
                };
                self.members.insert(member_id.clone(), member);
            }
            (
                CommandBody::OpenSavingsAccount { member_id, .. },
                Outcome::SavingsAccountOpened { account, kind },
            ) => {
                let member = self.member(member_id)?;
                member.savings_accounts.push(account.clone());
                if *kind == SavingsKind::Voluntary {
                    member.voluntary_accounts_opened = member
                        .voluntary_accounts_opened
                        .checked_add(1)
                        .ok_or("too many accounts")?;
                }
                // Her record's ids, not the command's copies of them.
                let (branch, owner) = (member.branch.clone(), member.id.clone());
                // An account with nothing in it changes no borrower count.
                self.savings.insert(
                    account.clone(),
                    SavingsAccount {
                        id: account.clone(),
                        member: owner,
                        branch,
                        kind: *kind,
                        opened_on: date,
                        opened: body.sequence,
                        changes: crate::dated::PackedAmounts::new(),
                        folded: None,
                    },
                );
            }
            (CommandBody::DepositSavings { amount, .. }, Outcome::SavingsMoved { account, .. }) => {
                self.change_savings(&entry_branch(body)?, account, amount.amount)?;
            }
            (
                CommandBody::WithdrawSavings { amount, .. },
                Outcome::SavingsMoved { account, .. },
            ) => {
                self.change_savings(&entry_branch(body)?, account, -amount.amount)?;
            }
            (
                CommandBody::CreateProduct {
                    product_id, rules, ..
                }
                | CommandBody::UpdateProduct {
                    product_id, rules, ..
                },
                Outcome::ProductDefined { version },
            ) => {
                let defined = self.state.products.get(product_id).map_or(0, Vec::len);
                if u32::try_from(defined).ok().and_then(|n| n.checked_add(1)) != Some(*version) {
                    return Err(format!(
                        "product {product_id} version {version} out of order"
                    ));
                }
                self.commit.product = Some(ProductVersion {
                    id: product_id.clone(),
                    version: *version,
                    effective_from: date,
                    rules: rules.clone(),
                });
            }
            (CommandBody::DisburseLoan { member_id, .. }, Outcome::LoanDisbursed { .. }) => {
                self.disbursement(body, member_id)?;
            }
            (
                CommandBody::DisburseTranche { amount, .. },
                Outcome::TrancheDisbursed { loan, fees, recast },
            ) => {
                let branch = entry_branch(body)?;
                let fees = sum(fees
                    .iter()
                    .filter(|c| c.collection == FeeCollection::AtDisbursement)
                    .map(|c| c.amount))?;
                self.tranche(
                    &branch,
                    loan,
                    amount.amount,
                    fees,
                    recast,
                    Some(body.sequence),
                )?;
            }
            (_, Outcome::RepaymentAllocated(repayment)) => {
                let branch = entry_branch(body)?;
                self.repayment(&branch, repayment, Some(body.sequence))?;
            }
            (_, Outcome::WrittenOff { loan, principal }) => {
                let branch = entry_branch(body)?;
                self.write_off(&branch, loan, *principal, Some(body.sequence))?;
            }
            (
                CommandBody::RecordCollectionSheet {
                    lines: commands, ..
                },
                Outcome::CollectionSheetRecorded { lines },
            ) => {
                let branch = entry_branch(body)?;
                if commands.len() != lines.len() {
                    return Err("collection sheet lines do not match their outcomes".into());
                }
                for line in lines {
                    if let Some(repayment) = &line.repayment {
                        self.repayment(&branch, repayment, Some(body.sequence))?;
                    }
                }
                for command in commands {
                    if let Some((account, amount)) = &command.deposit {
                        self.change_savings(&branch, account, amount.amount)?;
                    }
                }
            }
            (CommandBody::ReverseEntry { .. }, Outcome::Reversed { sequence, undo }) => {
                let branch = entry_branch(body)?;
                if self.state.reversed.contains_key(sequence) {
                    return Err(format!("entry {sequence} is already reversed"));
                }
                self.undo(&branch, undo)?;
                self.commit.reversed = Some((*sequence, body.sequence));
            }
            (CommandBody::ClosePeriod { branch_id, .. }, Outcome::PeriodClosed { through, .. }) => {
                let mut branch = self.find_branch(branch_id)?.clone();
                branch.closed = Some(Closed {
                    through: *through,
                    by: body.sequence,
                });
                // Its savings accounts' changes in the closed period are
                // folded: no entry can change them until a reopening.
                let mut folded_changes = Vec::new();
                for account in self.state.savings.values() {
                    if account.branch != *branch_id {
                        continue;
                    }
                    if let Some((folded, changes)) = super::folds::fold(account, *through)? {
                        folded_changes.push((account.id.clone(), changes));
                        self.commit.savings_whole.push(Arc::new(folded));
                    }
                }
                if !folded_changes.is_empty() {
                    let (fold, records) = super::folds::fold_records(*through, folded_changes);
                    for (index, record) in records {
                        self.commit.savings_history.push((
                            branch_id.clone(),
                            *through,
                            index,
                            Some(Arc::new(record)),
                        ));
                    }
                    branch.folds.push(fold);
                }
                self.commit.branch = Some(branch);
            }
            (
                CommandBody::ReopenPeriod { branch_id, .. },
                Outcome::PeriodReopened { closed_through },
            ) => {
                let mut branch = self.find_branch(branch_id)?.clone();
                branch.closed = match (branch.closed, closed_through) {
                    (Some(closed), Some(through)) => Some(Closed {
                        through: *through,
                        by: closed.by,
                    }),
                    _ => None,
                };
                // The folds it reopens are taken back into the accounts:
                // its entries may be dated in the days they cover.
                let (taken, records) = self
                    .state
                    .folds_taken_back(&branch, *closed_through)
                    .map_err(|error| error.to_string())?;
                for account in taken {
                    self.commit.savings_whole.push(Arc::new(account));
                }
                for (through, index) in records {
                    self.commit
                        .savings_history
                        .push((branch_id.clone(), through, index, None));
                }
                branch
                    .folds
                    .retain(|fold| closed_through.is_some_and(|through| fold.through <= through));
                self.commit.branch = Some(branch);
            }
            (
                CommandBody::DefineSavingsProduct {
                    product_id,
                    name,
                    kind,
                    rules,
                    ..
                },
                Outcome::ProductDefined { version },
            ) => {
                self.commit.savings_product = Some(crate::product::SavingsProductVersion {
                    id: product_id.clone(),
                    name: name.clone(),
                    kind: *kind,
                    version: *version,
                    effective_from: date,
                    rules: *rules,
                });
            }
            (
                CommandBody::PostSavingsInterest { branch_id, .. },
                Outcome::SavingsInterestPosted { kinds, credited },
            ) => {
                for credit in credited {
                    self.change_savings(branch_id, &credit.account, credit.amount)?;
                }
                let mut branch = self.find_branch(branch_id)?.clone();
                for kind in kinds {
                    branch.interest_posted.retain(|(k, _)| k != kind);
                    branch.interest_posted.push((*kind, date));
                }
                self.commit.branch = Some(branch);
            }
            (
                CommandBody::FundBranch { branch_id, .. }
                | CommandBody::ReturnBranchFunding { branch_id, .. },
                Outcome::FundingMoved { .. },
            ) => {
                // Its postings are all it changes.
                self.find_branch(branch_id)?;
            }
            (CommandBody::Access(command), Outcome::AccessChanged) => {
                let mut access = Access::clone(&self.state.access);
                let stamp = Stamp {
                    sequence: body.sequence,
                    at_micros: body.recorded_at_micros,
                };
                let by = &body
                    .attribution
                    .as_ref()
                    .ok_or("an access entry names no principal")?
                    .principal;
                access.apply(command, by, stamp)?;
                self.commit.access = Some(Arc::new(access));
            }
            (command, outcome) => {
                return Err(format!(
                    "outcome {outcome:?} does not fit command {}",
                    command.name()
                ));
            }
        }
        Ok(())
    }

    /// The new balances of the accounts the entry posts to.
    fn postings(&mut self, body: &EntryBody) -> Result<(), String> {
        let mut balances: BTreeMap<&AccountId, Balance> = BTreeMap::new();
        for posting in &body.postings {
            let balance = balances
                .entry(&posting.account)
                .or_insert_with(|| self.state.balance(&posting.account));
            let total = match posting.side {
                super::super::entry::Side::Debit => &mut balance.debits,
                super::super::entry::Side::Credit => &mut balance.credits,
            };
            *total = total
                .checked_add(posting.amount)
                .ok_or("balance overflow")?;
        }
        self.commit.balances = balances
            .into_iter()
            .map(|(account, balance)| (account.clone(), balance))
            .collect();
        self.lines_fit(body)
    }

    /// Checks that the lines of the books the entry's postings are booked
    /// to take them: a line adds up its accounts, so it can overflow where
    /// none of them does, and booking, after the commit, cannot fail.
    fn lines_fit(&self, body: &EntryBody) -> Result<(), String> {
        let Some(branch) = &body.branch else {
            return Ok(());
        };
        let mut lines: BTreeMap<crate::books::Line, Balance> = BTreeMap::new();
        for posting in &body.postings {
            let savings = match &posting.account {
                AccountId::Savings(id) => self
                    .savings
                    .get(id)
                    .map(|account| account.kind)
                    .or_else(|| self.state.savings.get(id).map(|account| account.kind)),
                _ => None,
            };
            let line = crate::books::Line::of(&posting.account, savings);
            let total = match lines.get_mut(&line) {
                Some(total) => total,
                None => {
                    let now = self
                        .state
                        .books
                        .line(branch, &line, crate::books::AsOf::Latest);
                    lines.entry(line).or_insert(now)
                }
            };
            let side = match posting.side {
                super::super::entry::Side::Debit => &mut total.debits,
                super::super::entry::Side::Credit => &mut total.credits,
            };
            *side = side.checked_add(posting.amount).ok_or("balance overflow")?;
        }
        Ok(())
    }

    fn disbursement(&mut self, body: &EntryBody, member_id: &MemberId) -> Result<(), String> {
        let Outcome::LoanDisbursed {
            loan,
            product,
            fees,
            ..
        } = &body.outcome
        else {
            return Err("not a disbursement".into());
        };
        // Her list names every loan she ever had, those memory let go of
        // too.
        let exists = |member: &Member| member.loans.contains(loan);
        if self.state.loans.contains_key(loan)
            || self.members.get(member_id).is_some_and(exists)
            || self.state.members.get(member_id).is_some_and(|m| exists(m))
        {
            return Err(format!("loan {loan} already exists"));
        }
        let branch = entry_branch(body)?;
        let date = body.effective_date;
        // Her record's id, not the command's copy of it.
        let owner = self.member(member_id)?.id.clone();
        let state = disbursed_loan(body, &owner)?;
        let principal = state.terms.principal;
        self.loans.insert(
            loan.clone(),
            StagedLoan {
                loan: state,
                before: None,
                from: date,
                schedule_changed: true,
            },
        );
        self.member(member_id)?.loans.push(loan.clone());
        let withheld = sum(fees
            .iter()
            .filter(|c| c.collection == FeeCollection::AtDisbursement)
            .map(|c| c.amount))?;
        self.add_day(
            &branch,
            date,
            &DayTotals {
                loans_disbursed: 1,
                amount_disbursed: principal,
                portfolio_change: principal,
                fees_collected: withheld,
                fees_withheld: withheld,
                disbursed_by_product: BTreeMap::from([(
                    product.as_ref().map(|(id, _)| id.clone()),
                    ProductDay {
                        loans: 1,
                        amount: principal,
                    },
                )]),
                ..DayTotals::default()
            },
        )?;
        // A member who borrows already, on the loan's date and every date
        // after it, is a borrower (and one who saves) on the same days with
        // one loan more: her steps stay as they are, and her other loans'
        // principal need not be read to say so.
        let member = self.member(member_id)?;
        if !borrower_throughout(&member.borrower_steps, date) {
            self.refresh.insert(member_id.clone());
        }
        Ok(())
    }
}

/// Whether `steps` (a member's borrower steps) make her a borrower on
/// `date` and on every date after it: what a new loan from `date` on,
/// whose principal is outstanding from then, cannot change.
fn borrower_throughout(steps: &[BorrowerStep], date: NaiveDate) -> bool {
    let mut borrower = 0;
    for step in steps {
        if step.date > date {
            if step.borrower != 0 {
                return false;
            }
        } else {
            borrower += step.borrower;
        }
    }
    borrower > 0
}

impl LedgerState {
    /// Loan `id` as it stood right after entry `sequence` (`None` before its
    /// disbursement). Replays the loan's own entries, read with `lookup`,
    /// through the code that applied them: the answer is what a read right
    /// after `sequence` gave, and its cost grows with the loan's entries,
    /// not with the journal.
    pub fn loan_at(
        &self,
        id: &LoanId,
        sequence: u64,
        lookup: &mut dyn FnMut(u64) -> Result<EntryBody, String>,
    ) -> Result<Option<Loan>, String> {
        // An ended loan's history is read back with it.
        let Some(now) = self.whole_loan(id).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        self.loan_whole_at(&now, sequence, lookup)
    }

    /// [`LedgerState::loan_at`] from `now`, the loan whole as the state
    /// holds it now (a closed one read back by the caller, whose error
    /// then says the state cache could not be read, not the journal).
    pub(super) fn loan_whole_at(
        &self,
        now: &Loan,
        sequence: u64,
        lookup: &mut dyn FnMut(u64) -> Result<EntryBody, String>,
    ) -> Result<Option<Loan>, String> {
        let id = &now.id;
        let count = now.history.partition_point(|at| at <= sequence);
        if count == now.history.len() {
            return Ok(Some(Loan::clone(now)));
        }
        let Some(first) = now.history.first().filter(|_| count > 0) else {
            return Ok(None);
        };
        let body = lookup(first)?;
        let CommandBody::DisburseLoan { member_id, .. } = &body.command else {
            return Err(format!("entry {first} did not disburse loan {id}"));
        };
        let mut loan = disbursed_loan(&body, member_id)?;
        note_in_history(&mut loan, first);
        for at in now.history.range(1, count) {
            let body = lookup(at)?;
            let mut stage = Stage::new(self, at, body.effective_date);
            stage.loans.insert(
                id.clone(),
                StagedLoan {
                    loan,
                    before: None,
                    from: body.effective_date,
                    schedule_changed: false,
                },
            );
            stage.replay_loan(&body, id)?;
            loan = stage
                .loans
                .remove(id)
                .ok_or("the loan left the stage")?
                .loan;
            note_in_history(&mut loan, at);
        }
        Ok(Some(loan))
    }
}

impl Stage<'_> {
    /// Applies what entry `body` did to loan `id`, and nothing else.
    fn replay_loan(&mut self, body: &EntryBody, id: &LoanId) -> Result<(), String> {
        let branch = entry_branch(body)?;
        let sequence = Some(body.sequence);
        match (&body.command, &body.outcome) {
            (_, Outcome::RepaymentAllocated(repayment)) if repayment.loan == *id => {
                self.repayment(&branch, repayment, sequence)
            }
            (
                CommandBody::DisburseTranche { amount, .. },
                Outcome::TrancheDisbursed { loan, fees, recast },
            ) if loan == id => {
                let fees = sum(fees
                    .iter()
                    .filter(|c| c.collection == FeeCollection::AtDisbursement)
                    .map(|c| c.amount))?;
                self.tranche(&branch, loan, amount.amount, fees, recast, sequence)
            }
            (_, Outcome::WrittenOff { loan, principal }) if loan == id => {
                self.write_off(&branch, loan, *principal, sequence)
            }
            (_, Outcome::CollectionSheetRecorded { lines }) => {
                for repayment in lines.iter().filter_map(|line| line.repayment.as_ref()) {
                    if repayment.loan == *id {
                        self.repayment(&branch, repayment, sequence)?;
                    }
                }
                Ok(())
            }
            (
                _,
                Outcome::Reversed {
                    undo: Undo::CollectionSheet { repayments, .. },
                    ..
                },
            ) => {
                for repayment in repayments.iter().filter(|r| r.loan == *id) {
                    self.repayment(&branch, repayment, None)?;
                }
                Ok(())
            }
            (_, Outcome::Reversed { undo, .. }) => self.undo(&branch, undo),
            _ => Err(format!("entry {} did not change loan {id}", body.sequence)),
        }
    }
}

/// The loan a disbursement entry creates, as it stands right after it.
fn disbursed_loan(body: &EntryBody, member_id: &MemberId) -> Result<Loan, String> {
    let Outcome::LoanDisbursed {
        loan,
        product,
        terms,
        policy,
        approved_principal,
        currency,
        schedule,
        ..
    } = &body.outcome
    else {
        return Err("not a disbursement".into());
    };
    let date = body.effective_date;
    let (mut interest_unpaid, mut fee_unpaid) = (Decimal::ZERO, Decimal::ZERO);
    for installment in schedule {
        interest_unpaid = plus(interest_unpaid, installment.interest)?;
        fee_unpaid = plus(fee_unpaid, installment.fee)?;
    }
    let mut state = Loan {
        id: loan.clone(),
        member: member_id.clone(),
        branch: entry_branch(body)?,
        currency: *currency,
        product: product.clone(),
        policy: policy.clone(),
        terms: terms.clone(),
        disbursed_on: date,
        approved_principal: *approved_principal,
        status: LoanStatus::Active,
        installments: schedule
            .iter()
            .cloned()
            .map(InstallmentState::unpaid)
            .collect(),
        last_repayment_on: date,
        principal_changes: crate::dated::DatedAmounts::from([(date, terms.principal)]).with_sums(),
        paid_changes: crate::dated::DatedAmounts::new().with_sums(),
        principal_unpaid: terms.principal,
        interest_unpaid,
        fee_unpaid,
        first_unpaid: 0,
        disbursed: terms.principal,
        tranches: 1,
        principal_prepaid: Decimal::ZERO,
        written_off: Decimal::ZERO,
        recovered: Decimal::ZERO,
        ended_on: None,
        events: EntryList::from(vec![body.sequence]),
        history: EntryList::new(),
    };
    advance_first_unpaid(&mut state);
    Ok(state)
}

impl Stage<'_> {
    /// Applies a tranche (`sequence` is its entry) or, with `None`, undoes it.
    fn tranche(
        &mut self,
        branch: &BranchId,
        loan_id: &LoanId,
        amount: Decimal,
        fees: Decimal,
        recast: &Recast,
        sequence: Option<u64>,
    ) -> Result<(), String> {
        let date = self.date;
        let forward = sequence.is_some();
        let sign = if forward { Decimal::ONE } else { -Decimal::ONE };
        let (from, to) = if forward {
            (&recast.before, &recast.after)
        } else {
            (&recast.after, &recast.before)
        };
        let staged = self.loan(loan_id, date)?;
        staged.schedule_changed = true;
        let loan = &mut staged.loan;
        replace_installments(loan, from, to)?;
        loan.disbursed = plus(loan.disbursed, sign * amount)?;
        track_event(loan, sequence, date)?;
        let disbursed_on = loan.disbursed_on;
        change_on(
            &mut loan.principal_changes,
            date,
            sign * amount,
            disbursed_on,
        )?;
        loan.tranches = if forward {
            loan.tranches.checked_add(1)
        } else {
            loan.tranches.checked_sub(1)
        }
        .ok_or("tranche count out of range")?;
        let member = loan.member.clone();
        self.add_day(
            branch,
            date,
            &DayTotals {
                amount_disbursed: sign * amount,
                portfolio_change: sign * amount,
                fees_collected: sign * fees,
                fees_withheld: sign * fees,
                ..DayTotals::default()
            },
        )?;
        self.refresh.insert(member);
        Ok(())
    }

    /// Applies a repayment (`sequence` is its entry) or, with `None`, undoes it.
    fn repayment(
        &mut self,
        branch: &BranchId,
        repayment: &Repayment,
        sequence: Option<u64>,
    ) -> Result<(), String> {
        let date = self.date;
        let forward = sequence.is_some();
        let sign = if forward { Decimal::ONE } else { -Decimal::ONE };
        let staged = self.loan(&repayment.loan, date)?;
        let loan = &mut staged.loan;
        track_event(loan, sequence, date)?;
        if !repayment.recovery.is_zero() {
            loan.recovered = plus(loan.recovered, sign * repayment.recovery)?;
            let recovered = sign * repayment.recovery;
            self.add_day(
                branch,
                date,
                &DayTotals {
                    recovered,
                    ..DayTotals::default()
                },
            )?;
            return Ok(());
        }
        if let Some(recast) = &repayment.recast {
            staged.schedule_changed = true;
            let loan = &mut staged.loan;
            if forward {
                replace_installments(loan, &recast.before, &recast.after)?;
                apply_payments(loan, &repayment.payments, sign)?;
            } else {
                apply_payments(loan, &repayment.payments, sign)?;
                replace_installments(loan, &recast.after, &recast.before)?;
            }
        } else {
            apply_payments(&mut staged.loan, &repayment.payments, sign)?;
        }
        let loan = &mut staged.loan;
        let mut principal = repayment.prepaid;
        let (mut interest, mut fees) = (Decimal::ZERO, Decimal::ZERO);
        for payment in &repayment.payments {
            principal = plus(principal, payment.principal)?;
            interest = plus(interest, payment.interest)?;
            fees = plus(fees, payment.fee)?;
        }
        let to_installments = plus(plus(interest, fees)?, minus(principal, repayment.prepaid)?)?;
        loan.principal_prepaid = plus(loan.principal_prepaid, sign * repayment.prepaid)?;
        let disbursed_on = loan.disbursed_on;
        change_on(
            &mut loan.principal_changes,
            date,
            -sign * principal,
            disbursed_on,
        )?;
        change_on(
            &mut loan.paid_changes,
            date,
            sign * to_installments,
            disbursed_on,
        )?;
        if forward && repayment.closed {
            loan.status = LoanStatus::Closed;
            loan.ended_on = Some(date);
        } else if !forward && loan.status == LoanStatus::Closed {
            loan.status = LoanStatus::Active;
            loan.ended_on = None;
        }
        if loan.principal_unpaid.is_sign_negative() || loan.interest_unpaid.is_sign_negative() {
            return Err(format!("loan {} would owe less than nothing", loan.id));
        }
        // A repayment on the latest date that leaves principal outstanding
        // cannot change when the loan is active: skip recounting borrowers.
        let at_the_end = loan
            .principal_changes
            .last_key_value()
            .is_some_and(|(last, _)| last <= date);
        let unchanged = forward && at_the_end && loan.principal_unpaid > Decimal::ZERO;
        let member = loan.member.clone();
        self.add_day(
            branch,
            date,
            &DayTotals {
                principal_collected: sign * principal,
                interest_collected: sign * interest,
                fees_collected: sign * fees,
                portfolio_change: -sign * principal,
                ..DayTotals::default()
            },
        )?;
        if !unchanged {
            self.refresh.insert(member);
        }
        Ok(())
    }

    /// Applies a write-off (`sequence` is its entry) or, with `None`, undoes it.
    fn write_off(
        &mut self,
        branch: &BranchId,
        loan_id: &LoanId,
        principal: Decimal,
        sequence: Option<u64>,
    ) -> Result<(), String> {
        let date = self.date;
        let forward = sequence.is_some();
        let sign = if forward { Decimal::ONE } else { -Decimal::ONE };
        let loan = &mut self.loan(loan_id, date)?.loan;
        track_event(loan, sequence, date)?;
        if forward {
            loan.status = LoanStatus::WrittenOff;
            loan.written_off = principal;
            loan.ended_on = Some(date);
        } else {
            loan.status = LoanStatus::Active;
            loan.written_off = Decimal::ZERO;
            loan.ended_on = None;
        }
        let disbursed_on = loan.disbursed_on;
        change_on(
            &mut loan.principal_changes,
            date,
            -sign * principal,
            disbursed_on,
        )?;
        let member = loan.member.clone();
        self.add_day(
            branch,
            date,
            &DayTotals {
                written_off: sign * principal,
                portfolio_change: -sign * principal,
                ..DayTotals::default()
            },
        )?;
        self.refresh.insert(member);
        Ok(())
    }

    fn find_branch(&self, id: &BranchId) -> Result<&Branch, String> {
        self.state
            .branches
            .get(id)
            .ok_or_else(|| format!("unknown branch {id}"))
    }

    fn undo(&mut self, branch: &BranchId, undo: &Undo) -> Result<(), String> {
        let date = self.date;
        match undo {
            Undo::Deposit { amount, account } => {
                self.change_savings(branch, account, -*amount)?;
            }
            Undo::Withdrawal { amount, account } => {
                self.change_savings(branch, account, *amount)?;
            }
            Undo::Disbursement {
                loan,
                principal,
                fees,
            } => {
                let disbursed_on = self
                    .state
                    .loan(loan)
                    .map_err(|e| e.to_string())?
                    .ok_or("unknown loan")?
                    .disbursed_on();
                // Cancelled, the loan's installments count nowhere: its
                // figures change from its disbursement on.
                let state = &mut self.loan(loan, disbursed_on)?.loan;
                track_event(state, None, date)?;
                state.status = LoanStatus::Cancelled;
                state.ended_on = Some(date);
                change_on(
                    &mut state.principal_changes,
                    date,
                    -*principal,
                    disbursed_on,
                )?;
                let member = state.member.clone();
                let product = state.product.as_ref().map(|(id, _)| id.clone());
                let first_principal = state.terms.principal;
                self.add_day(
                    branch,
                    date,
                    &DayTotals {
                        loans_disbursed: -1,
                        amount_disbursed: -*principal,
                        portfolio_change: -*principal,
                        fees_collected: -*fees,
                        fees_withheld: -*fees,
                        ..DayTotals::default()
                    },
                )?;
                self.add_day(
                    branch,
                    disbursed_on,
                    &DayTotals {
                        disbursed_by_product: BTreeMap::from([(
                            product,
                            ProductDay {
                                loans: -1,
                                amount: -first_principal,
                            },
                        )]),
                        ..DayTotals::default()
                    },
                )?;
                self.refresh.insert(member);
            }
            Undo::Tranche {
                loan,
                amount,
                fees,
                recast,
            } => {
                self.tranche(branch, loan, *amount, *fees, recast, None)?;
            }
            Undo::Repayment(repayment) => {
                self.repayment(branch, repayment, None)?;
            }
            Undo::WriteOff { loan, principal } => {
                self.write_off(branch, loan, *principal, None)?;
            }
            Undo::CollectionSheet {
                repayments,
                deposits,
            } => {
                for repayment in repayments {
                    self.repayment(branch, repayment, None)?;
                }
                for deposit in deposits {
                    self.change_savings(branch, &deposit.account, -deposit.amount)?;
                }
            }
            // Funding moves only the accounts the reversal's postings name.
            Undo::Funding { .. } => {}
        }
        Ok(())
    }

    /// Records a savings balance change on the entry's date.
    fn change_savings(
        &mut self,
        branch: &BranchId,
        account: &SavingsAccountId,
        change: Decimal,
    ) -> Result<(), String> {
        let date = self.date;
        let member = if let Some(opened) = self.savings.get_mut(account) {
            // Opened by this entry: its staged copy.
            let old = opened.changes.get(&date).unwrap_or_default();
            let new = plus(old, change)?;
            if new.is_zero() {
                opened.changes.remove(&date);
            } else {
                opened.changes.insert(date, new);
            }
            opened.member.clone()
        } else {
            let existing = self
                .state
                .savings
                .get(account)
                .ok_or("unknown savings account")?;
            let moved = self.savings_moves.entry(account.clone()).or_default();
            *moved = plus(*moved, change)?;
            // What the account will hold on the date must fit, as when the
            // change is written.
            plus(existing.changes.get(&date).unwrap_or_default(), *moved)?;
            existing.member.clone()
        };
        self.add_day(
            branch,
            date,
            &DayTotals {
                savings_change: change,
                ..DayTotals::default()
            },
        )?;
        if !self.savings_keep_steps(&member, change)? {
            self.refresh.insert(member);
        }
        Ok(())
    }

    /// True when a savings change of `change` on the entry's date leaves a
    /// member's borrower steps as they are: it is on or after every date
    /// her savings changed, and her savings are positive both before and
    /// after it. Her loans need no look: her steps follow, day by day,
    /// whether a loan is outstanding and whether her savings are positive,
    /// and then her savings are positive on every day from the entry's date
    /// on, before and after the change, and unchanged before it. (Builds
    /// before this one also looked up every loan she ever had, which cost a
    /// deposit or a repayment of a member with dozens of loans more than
    /// the rest of it.)
    fn savings_keep_steps(
        &mut self,
        member_id: &MemberId,
        change: Decimal,
    ) -> Result<bool, String> {
        let date = self.date;
        // Read, not staged: what is only read here is not copied (nor
        // written back to the cache as if it had changed).
        let member = match self.members.get(member_id) {
            Some(member) => member,
            None => self.state.members.get(member_id).ok_or("unknown member")?,
        };
        let mut total = Decimal::ZERO;
        for id in &member.savings_accounts {
            let (account, held) = match self.savings.get(id) {
                // Opened by this entry: its changes are this entry's.
                Some(account) => (account, account.changes.sum()?),
                // Its changes add up to its balance before this entry (an
                // invariant the state's property tests check): read that,
                // not every change in its history.
                None => {
                    let account = self
                        .state
                        .savings
                        .get(id)
                        .ok_or("unknown savings account")?;
                    let ledger_account = AccountId::Savings(id.clone());
                    let balance = self.state.balance(&ledger_account);
                    (&**account, balance.on_normal_side(ledger_account.kind()))
                }
            };
            if account
                .changes
                .last_key_value()
                .is_some_and(|(last, _)| last > date)
            {
                return Ok(false);
            }
            total = plus(total, held)?;
            if let Some(moved) = self.savings_moves.get(id) {
                // A change on the entry's date: it moves no date past it.
                total = plus(total, *moved)?;
            }
        }
        let before = minus(total, change)?;
        Ok(before > Decimal::ZERO && total > Decimal::ZERO)
    }

    /// Works out the loans' running sums and the members' borrower steps;
    /// what the entry changes of the days is left to
    /// [`LedgerState::work_days`], with what it needs.
    fn finish(mut self) -> Result<(Commit, DayWork), String> {
        let mut loans = std::mem::take(&mut self.loans);
        for staged in loans.values_mut() {
            note_in_history(&mut staged.loan, self.sequence);
            staged.loan.keep_running_sums();
        }
        for staged in loans.values() {
            // A loan that ended, or no longer has, counts in her borrowing
            // through what its member keeps of her ended loans.
            let ended = |loan: &Loan| {
                if loan.has_ended() {
                    crate::totals::borrowing_changes(&loan.principal_changes)
                } else {
                    Ok(Vec::new())
                }
            };
            let was = staged.before.as_deref().map_or(Ok(Vec::new()), ended)?;
            let now = ended(&staged.loan)?;
            if was != now {
                let member = self.member(&staged.loan.member)?;
                let borrowing = &mut member.ended_borrowing;
                crate::totals::add_borrowing_changes(borrowing, &was, -1)?;
                crate::totals::add_borrowing_changes(borrowing, &now, 1)?;
                self.refresh.insert(staged.loan.member.clone());
            }
        }
        for member_id in std::mem::take(&mut self.refresh) {
            let member = self.member(&member_id)?.clone();
            let mut principal_changes = Vec::with_capacity(member.loans.len());
            for id in &member.loans {
                if let Some(changes) = running_principal_changes(&loans, self.state, id) {
                    principal_changes.push(changes);
                }
            }
            // Her accounts' histories as the entry leaves them.
            let mut moved_changes = Vec::new();
            for id in &member.savings_accounts {
                if let Some(moved) = self.savings_moves.get(id) {
                    let account = self
                        .state
                        .savings
                        .get(id)
                        .ok_or("unknown savings account")?;
                    let mut changes = account.changes.clone();
                    move_on(&mut changes, self.date, *moved)?;
                    moved_changes.push((id, changes));
                }
            }
            let mut savings_changes = Vec::with_capacity(member.savings_accounts.len());
            for id in &member.savings_accounts {
                savings_changes.push(match self.savings.get(id) {
                    Some(account) => as_read_for_steps(account, &account.changes),
                    None => {
                        let account = self
                            .state
                            .savings
                            .get(id)
                            .ok_or("unknown savings account")?;
                        match moved_changes.iter().find(|(moved, _)| *moved == id) {
                            Some((_, changes)) => as_read_for_steps(account, changes),
                            None => as_read_for_steps(account, &account.changes),
                        }
                    }
                });
            }
            let steps = borrower_steps(
                &principal_changes,
                &member.ended_borrowing,
                &savings_changes,
                &member.borrower_steps,
            )?;
            if steps == member.borrower_steps {
                continue;
            }
            let branch = member.branch.clone();
            for step in &member.borrower_steps {
                self.add_day(
                    &branch,
                    step.date,
                    &DayTotals {
                        borrowers_change: -step.borrower,
                        borrowers_with_savings_change: -step.with_savings,
                        ..DayTotals::default()
                    },
                )?;
            }
            for step in &steps {
                self.add_day(
                    &branch,
                    step.date,
                    &DayTotals {
                        borrowers_change: step.borrower,
                        borrowers_with_savings_change: step.with_savings,
                        ..DayTotals::default()
                    },
                )?;
            }
            self.member(&member_id)?.borrower_steps = steps;
        }
        let mut commit = self.commit;
        commit.members = self.members.into_values().map(Arc::new).collect();
        commit.savings = self.savings.into_values().map(Arc::new).collect();
        let date = self.date;
        commit.savings_moves = self
            .savings_moves
            .into_iter()
            .map(|(id, moved)| (id, date, moved))
            .collect();
        let mut befores = Vec::with_capacity(loans.len());
        commit.loans = loans
            .into_values()
            .map(|staged| {
                let ended = staged.loan.has_ended();
                let was_ended = staged
                    .before
                    .as_ref()
                    .is_some_and(|before| before.has_ended());
                let records = LoanRecords {
                    loan: staged.schedule_changed,
                    ended: ended || was_ended,
                };
                befores.push(LoanBefore {
                    before: staged.before,
                    from: staged.from,
                    schedule_changed: staged.schedule_changed,
                });
                (Arc::new(staged.loan), records)
            })
            .collect();
        let work = DayWork {
            own: self.days,
            loans: befores,
            quality: None,
        };
        Ok((commit, work))
    }
}

/// What an entry changes of the branches' days, before it is summed into
/// the days a state holds: its own changes (what was collected, disbursed,
/// deposited; borrowers' steps) and, for each loan it changed, the loan as
/// it was (the loan after it is the commit's), whose portfolio figures
/// (active, at risk, in arrears) it moves from a date on. No command is
/// decided on the days, so the writer keeps none and hands this to the
/// read side ([`Written`]), which works it out beside the writer.
///
/// The writer therefore does not check a day's figures for overflow, as
/// it checks every balance and line of the books. A day's money figures
/// sum what that date's entries posted to a few of the books' lines
/// (collected, disbursed, saved, written off), each line's debits and
/// credits bounded by the writer's own checks, or what the branch's loans
/// owe and hold at risk that date (bounded by what was disbursed and each
/// loan's own dues, which fit); the rest are counts of loans and
/// borrowers. So a figure could reach the largest decimal (about
/// 7.9 x 10^28 đồng) only with lines of the books already near it. The
/// read side checks the sums all the same, but later than the writer did:
/// such an entry, durable, would not apply to the read side
/// ([`LedgerState::apply_written`]) nor to a restart's replay, so the
/// ledger would stop deciding and the server would not start again until
/// a build refused it on replay or kept larger figures.
#[derive(Clone)]
struct DayWork {
    /// The entry's own changes, by branch and date.
    own: BTreeMap<BranchId, BTreeMap<NaiveDate, DayTotals>>,
    /// Each loan of the commit's `loans`, in the same order, as it was.
    loans: Vec<LoanBefore>,
    /// The loans' changes of their branches' portfolio figures, once
    /// worked out ([`DayWork::work_out_loans`]).
    quality: Option<Result<BTreeMap<BranchId, QualityChanges>, Overflow>>,
}

/// A loan an entry changed, as it was before.
#[derive(Clone)]
struct LoanBefore {
    /// `None` for a new loan.
    before: Option<Arc<Loan>>,
    /// First date whose figures the entry changes.
    from: NaiveDate,
    /// The schedule changed (recast, or a new loan).
    schedule_changed: bool,
}

impl DayWork {
    /// Works out the loans' changes of their branches' portfolio figures
    /// from each loan before and after the entry (`loans`, the commit's).
    fn work_out_loans(&mut self, loans: &[(Arc<Loan>, LoanRecords)]) {
        if self.quality.is_none() {
            self.quality = Some(loans_quality(&self.loans, loans));
        }
    }
}

/// Each loan's contribution to its branch's portfolio figures from `from`
/// on, after less before: an entry changes few of its days (a payment, the
/// installments it settles), so only the days that differ are touched.
fn loans_quality(
    befores: &[LoanBefore],
    afters: &[(Arc<Loan>, LoanRecords)],
) -> Result<BTreeMap<BranchId, QualityChanges>, Overflow> {
    debug_assert_eq!(befores.len(), afters.len(), "a loan before for each after");
    let mut quality: BTreeMap<BranchId, QualityChanges> = BTreeMap::new();
    for (staged, (loan, _)) in befores.iter().zip(afters) {
        let was = staged.before.as_deref();
        // With the schedule and the end unchanged, the installments no
        // payment before or after the entry reaches are the same in both
        // and left out of both: a repayment costs the installments it can
        // reach, not the whole schedule.
        let paid = match was {
            Some(was)
                if !staged.schedule_changed
                    && was.ended_on == loan.ended_on
                    && was.status == loan.status =>
            {
                Some([was.paid_on_installments()?, loan.paid_on_installments()?])
            }
            _ => None,
        };
        let paid_bound = paid.map(|[was, is]| was.max(is));
        // An entry on the loan's latest day: the difference worked out
        // from where each stands, without listing either's days.
        let standing = match (was, paid) {
            (Some(was), Some(paid)) => {
                loans::quality_change_standing(was, loan, staged.from, paid_bound, paid)?
            }
            _ => None,
        };
        let change = match standing {
            Some(change) => change,
            None => {
                let after = loan.quality_days_paid_below(staged.from, paid_bound)?;
                let before = match was {
                    Some(before) => before.quality_days_paid_below(staged.from, paid_bound)?,
                    None => Vec::new(),
                };
                loans::quality_change(after, before)?
            }
        };
        if !change.is_empty() {
            match quality.get_mut(&loan.branch) {
                Some(changes) => changes.extend(change),
                None => quality
                    .entry(loan.branch.clone())
                    .or_default()
                    .extend(change),
            }
        }
    }
    Ok(quality)
}

impl LedgerState {
    /// Whether this state keeps the branches' days (every state but the
    /// writer's, [`LedgerState::keep_decisions_only`]).
    fn keeps_days(&self) -> bool {
        !self.days_elsewhere
    }

    /// What an entry changes of this state's days (`work`, with `loans`,
    /// the commit's): each figure it moves, with its new value.
    fn work_days(
        &self,
        mut work: DayWork,
        loans: &[(Arc<Loan>, LoanRecords)],
    ) -> Result<BTreeMap<BranchId, DayChanges>, Overflow> {
        work.work_out_loans(loans);
        let mut quality = match work.quality {
            Some(quality) => quality?,
            None => BTreeMap::new(),
        };
        let mut own = work.own;
        for branch in quality.keys() {
            if !own.contains_key(branch) {
                own.insert(branch.clone(), BTreeMap::new());
            }
        }
        let mut new_days = BTreeMap::new();
        for (branch, changes) in own {
            let held = self.days.get(&branch);
            let quality = match quality.remove(&branch) {
                Some(quality) => quality.by_date()?,
                None => Vec::new(),
            };
            let mut day_changes = DayChanges::with_capacity(changes.len() + quality.len());
            // The two lists of changes, both in date order, merged by date
            // (the entry's own changes, a day or two, taken from their map
            // as the loans' reach them: a whole day is not moved about).
            let mut changes = changes;
            let mut quality = quality.into_iter().peekable();
            loop {
                let date = match (changes.first_key_value(), quality.peek()) {
                    (Some((a, _)), Some((b, _))) => *a.min(b),
                    (Some((date, _)), None) | (None, Some((date, _))) => *date,
                    (None, None) => break,
                };
                let own = match changes.first_key_value() {
                    Some((first, _)) if *first == date => {
                        changes.pop_first().map(|(_, change)| change)
                    }
                    _ => None,
                };
                let loans = quality
                    .next_if(|(on, _)| *on == date)
                    .map(|(_, loans)| loans);
                let held_day = held.and_then(|days| days.get(&date));
                match (own, loans) {
                    // Most of a new loan's days: an installment due, the
                    // day it would be late.
                    (None, Some(loans)) => {
                        day_changes.push_figures(date, held_day, loans.figures(), None)?;
                    }
                    (Some(own), loans) => {
                        let mut by = own.figures();
                        if let Some(loans) = loans {
                            loans.add_to_figures(&mut by)?;
                        }
                        day_changes.push(date, held_day, &by, Some(&own.disbursed_by_product))?;
                    }
                    (None, None) => {}
                }
            }
            if !day_changes.is_empty() {
                new_days.insert(branch, day_changes);
            }
        }
        Ok(new_days)
    }
}

/// Loan `id`'s principal by date as staged, else as `state` holds it,
/// while it runs (`None` once it ended: its member's
/// [`Member::ended_borrowing`] counts it, and memory may have let go of
/// it).
fn running_principal_changes<'a>(
    staged: &'a BTreeMap<LoanId, StagedLoan>,
    state: &'a LedgerState,
    id: &LoanId,
) -> Option<&'a crate::dated::DatedAmounts> {
    let loan = match staged.get(id) {
        Some(staged) => &staged.loan,
        None => state.loans.get(id)?,
    };
    (!loan.has_ended()).then_some(&loan.principal_changes)
}

/// Adds `moved` to an account's change on `date`; a change that comes to
/// zero leaves no date behind.
fn move_on(
    changes: &mut crate::dated::PackedAmounts,
    date: NaiveDate,
    moved: Decimal,
) -> Result<(), Overflow> {
    let new = plus(changes.get(&date).unwrap_or_default(), moved)?;
    if new.is_zero() {
        changes.remove(&date);
    } else {
        changes.insert(date, new);
    }
    Ok(())
}

/// What a member's borrower steps read of one of her savings accounts:
/// `changes`, its changes as the entry leaves them, and what it keeps of
/// those a close folded.
fn as_read_for_steps<'a>(
    account: &SavingsAccount,
    changes: &'a crate::dated::PackedAmounts,
) -> crate::totals::SavingsChanges<'a> {
    crate::totals::SavingsChanges {
        folded: account
            .folded
            .map(|folded| (folded.through, folded.carried)),
        changes,
    }
}

/// The branch of an entry that must have one.
fn entry_branch(body: &EntryBody) -> Result<BranchId, String> {
    body.branch
        .clone()
        .ok_or_else(|| format!("entry {} names no branch", body.sequence))
}

/// Adds `change` to `map[date]`, dropping a zero (except on `keep`, the
/// disbursement date, which always stays).
fn change_on(
    map: &mut crate::dated::DatedAmounts,
    date: NaiveDate,
    change: Decimal,
    keep: NaiveDate,
) -> Result<(), Overflow> {
    let total = plus(map.get(&date).unwrap_or_default(), change)?;
    if total.is_zero() && date != keep {
        map.remove(&date);
    } else {
        map.insert(date, total);
    }
    Ok(())
}

/// Adds entry `sequence` to the entries that changed the loan.
fn note_in_history(loan: &mut Loan, sequence: u64) {
    if loan.history.last() != Some(sequence) {
        loan.history.push(sequence);
    }
}

/// Records entry `sequence` as the loan's latest transaction on `date`, or
/// with `None`, forgets its latest one (a reversal).
fn track_event(loan: &mut Loan, sequence: Option<u64>, date: NaiveDate) -> Result<(), String> {
    match sequence {
        Some(sequence) => {
            if loan.events.last() != Some(sequence) {
                loan.events.push(sequence);
            }
        }
        None => {
            loan.events.pop().ok_or("loan has no transaction to undo")?;
        }
    }
    loan.last_repayment_on = loan.last_repayment_on.max(date);
    Ok(())
}

/// Replaces the installments `from` (as they are now) by `to`, keeping the
/// loan's unpaid totals right; what was paid on each must still fit.
fn replace_installments(
    loan: &mut Loan,
    from: &[Installment],
    to: &[Installment],
) -> Result<(), String> {
    if from.len() != to.len() {
        return Err("recast changes the number of installments".into());
    }
    for (old, new) in from.iter().zip(to) {
        if old.number != new.number || old.due_date != new.due_date {
            return Err(format!(
                "recast of installment {} does not match",
                old.number
            ));
        }
        let index = (old.number as usize)
            .checked_sub(1)
            .ok_or("installment 0")?;
        let mut installment = loan
            .installments
            .get_mut(index)
            .ok_or("unknown installment")?;
        if installment.due != *old {
            return Err(format!(
                "installment {} is not as the recast found it",
                old.number
            ));
        }
        if installment.principal_paid > new.principal
            || installment.interest_paid > new.interest
            || installment.fee_paid > new.fee
        {
            return Err(format!(
                "installment {} would be paid beyond what is due",
                old.number
            ));
        }
        installment.due = new.clone();
        loan.principal_unpaid = plus(loan.principal_unpaid, minus(new.principal, old.principal)?)?;
        loan.interest_unpaid = plus(loan.interest_unpaid, minus(new.interest, old.interest)?)?;
        loan.fee_unpaid = plus(loan.fee_unpaid, minus(new.fee, old.fee)?)?;
    }
    loan.first_unpaid = loan.first_unpaid.min(
        from.first()
            .map(|i| i.number.saturating_sub(1))
            .unwrap_or(loan.first_unpaid),
    );
    advance_first_unpaid(loan);
    Ok(())
}

fn advance_first_unpaid(loan: &mut Loan) {
    while loan
        .installments
        .get(loan.first_unpaid as usize)
        .is_some_and(|installment| installment.is_paid())
    {
        loan.first_unpaid += 1;
    }
}

/// Adds (`sign` 1) or removes (`sign` -1) payments on a loan's installments.
fn apply_payments(
    loan: &mut Loan,
    payments: &[InstallmentPayment],
    sign: Decimal,
) -> Result<(), String> {
    for payment in payments {
        let index = (payment.number as usize)
            .checked_sub(1)
            .ok_or("installment 0")?;
        let mut installment = loan
            .installments
            .get_mut(index)
            .ok_or("unknown installment")?;
        installment.fee_paid = plus(installment.fee_paid, sign * payment.fee)?;
        installment.interest_paid = plus(installment.interest_paid, sign * payment.interest)?;
        installment.principal_paid = plus(installment.principal_paid, sign * payment.principal)?;
        let paid_ok = |paid: Decimal, due: Decimal| paid >= Decimal::ZERO && paid <= due;
        if !paid_ok(installment.interest_paid, installment.due.interest)
            || !paid_ok(installment.principal_paid, installment.due.principal)
            || !paid_ok(installment.fee_paid, installment.due.fee)
        {
            return Err(format!(
                "installment {} paid outside 0..=due",
                payment.number
            ));
        }
        loan.principal_unpaid = minus(loan.principal_unpaid, sign * payment.principal)?;
        loan.interest_unpaid = minus(loan.interest_unpaid, sign * payment.interest)?;
        loan.fee_unpaid = minus(loan.fee_unpaid, sign * payment.fee)?;
        if sign.is_sign_negative() {
            loan.first_unpaid = loan.first_unpaid.min(index as u32);
        }
    }
    advance_first_unpaid(loan);
    Ok(())
}
