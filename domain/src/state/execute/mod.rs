//! Deciding commands: checks against the state and builds the entry body.
//! Nothing here changes the state.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;

use super::*;
use crate::access::{APPROVAL_WAIT_DAYS, AccessCommand, Action};
use crate::books::Line;
use crate::command::{
    COLLECTION_LINES_MAX, CollectionLine, FundingSource, LoanSpec, check_date, check_len,
};
use crate::entry::{
    Attribution, ENTRY_BYTES_MAX, FeeCharge, LineOutcome, RULES_VERSION_ACCESS, Repayment,
    SavingsAmount, Side,
};
use crate::error::echo;
use crate::ids::FeeCode;
use crate::product::{CompulsorySavings, FeeCollection, ProductRules};
use crate::schedule::{
    Amortization, InstallmentBasis, InstallmentRounding, InterestPeriod, RoundingMode,
};
use crate::totals::{fees_overflow, too_large};

mod books;
mod collection;
mod lending;
mod reversal;
mod savings;
mod structure;

/// Reads an earlier entry's body (for reversals).
pub type LookupEntry<'a> = dyn Fn(u64) -> Result<Option<EntryBody>, String> + 'a;

/// A decision: the branch, effective date, outcome and postings of an entry.
struct Decision {
    branch: Option<BranchId>,
    effective_date: NaiveDate,
    outcome: Outcome,
    postings: Vec<Posting>,
}

impl Decision {
    fn structural(branch: BranchId, effective_date: NaiveDate) -> Decision {
        Decision {
            branch: Some(branch),
            effective_date,
            outcome: Outcome::Created,
            postings: Vec::new(),
        }
    }
}

impl LedgerState {
    /// Decides `command`: the entry body it produces, or why it is refused.
    /// The body's sequence number follows the last applied entry. Its size
    /// is not checked here: a body to be written goes through
    /// [`LedgerState::seal_and_keep`], which refuses one the journal could
    /// not hold.
    pub fn execute(
        &self,
        command: &Command,
        context: ExecContext,
        lookup: &LookupEntry<'_>,
    ) -> Result<EntryBody, ExecuteError> {
        let action = self.authorize(command, context, lookup)?;
        let now = context.recorded_at.timestamp_micros();
        if let (Some(approval), Some(maker)) = (&command.approval, &command.principal) {
            self.access
                .check_approval(approval, maker, &command.body, now)?;
        } else if command.approval.is_some() {
            return Err(DomainError::invalid(
                "approval",
                "only a command with a principal (rules version 2 or later) is approved",
            )
            .into());
        }
        let mut decision = match &command.body {
            CommandBody::Access(access) => self.decide_access(command, access, context)?,
            body => self.decide(body, context, lookup)?,
        };
        self.check_not_closed(&command.body, &decision)?;
        if let (Some(action), Some(principal)) = (action, &command.principal) {
            // The branch the decision found is the one the entry is in: the
            // principal's roles must cover it (they covered the branch found
            // before deciding; this holds the two to the same answer).
            self.access
                .authorize(principal, action, decision.branch.as_ref())?;
            // Maker-checker: decided in full (so that a request that could
            // never be made is refused now), then recorded as pending.
            if command.approval.is_none() && self.needs_approval(&command.body, &decision) {
                decision = Decision {
                    branch: decision.branch,
                    effective_date: decision.effective_date,
                    outcome: Outcome::ApprovalRequested {
                        expires_at_micros: (context.recorded_at
                            + chrono::Duration::days(APPROVAL_WAIT_DAYS))
                        .timestamp_micros(),
                    },
                    postings: Vec::new(),
                };
            }
        }
        let attribution = (context.rules_version >= RULES_VERSION_ACCESS).then(|| Attribution {
            principal: command
                .principal
                .clone()
                .expect("authorize refused a command without a principal"),
            approval: command.approval.clone(),
        });
        let currency = match (&command.body, &decision.branch) {
            (CommandBody::CreateBranch { currency, .. }, _) => *currency,
            (
                CommandBody::CreateProduct { rules, .. } | CommandBody::UpdateProduct { rules, .. },
                _,
            ) => rules.currency,
            (_, Some(branch)) => self.find_branch("branch_id", branch)?.currency,
            (_, None) => Currency::default(),
        };
        let body = EntryBody {
            rules_version: context.rules_version,
            sequence: self.last_sequence + 1,
            effective_date: decision.effective_date,
            recorded_at_micros: context.recorded_at.timestamp_micros(),
            branch: decision.branch,
            actor: command.actor.clone(),
            request_id: command.request_id.clone(),
            request_hash: command.request_hash(),
            command: command.body.clone(),
            outcome: decision.outcome,
            postings: decision.postings,
            currency,
            attribution,
        };
        assert!(
            body.is_balanced(),
            "entry {} is not balanced: {:?}",
            body.sequence,
            body.postings
        );
        // Its size is checked when it is sealed, from its canonical bytes
        // ([`LedgerState::seal_and_keep`]), not by encoding it a second time.
        Ok(body)
    }

    /// Refuses an entry dated in its branch's closed period, naming the
    /// command's date field: every command, whatever path decided it
    /// (batches, collection sheets, reversals, approvals), meets this one
    /// check. Closing and reopening are dated as they say.
    fn check_not_closed(&self, body: &CommandBody, decision: &Decision) -> Result<(), DomainError> {
        let field = match body {
            CommandBody::ClosePeriod { .. } | CommandBody::ReopenPeriod { .. } => return Ok(()),
            CommandBody::CreateBranch { .. }
            | CommandBody::CreateCenter { .. }
            | CommandBody::CreateGroup { .. }
            | CommandBody::OpenSavingsAccount { .. } => "opened_on",
            CommandBody::RegisterMember { .. } => "joined_on",
            CommandBody::DisburseLoan { .. } | CommandBody::DisburseTranche { .. } => {
                "disbursed_on"
            }
            CommandBody::RecordCollectionSheet { .. } => "meeting_date",
            CommandBody::CreateProduct { .. }
            | CommandBody::UpdateProduct { .. }
            | CommandBody::DefineSavingsProduct { .. } => "effective_from",
            CommandBody::PostSavingsInterest { .. } => "period_end",
            _ => "effective_date",
        };
        if let Some(branch) = decision.branch.as_ref().and_then(|b| self.branches.get(b)) {
            self.check_interest_not_posted(branch, field, decision)?;
        }
        match decision.branch.as_ref().and_then(|b| self.branches.get(b)) {
            Some(branch) => branch.check_open(field, decision.effective_date),
            None => Ok(()),
        }
    }

    /// Under rules with access control, checks that the command's principal
    /// holds a role that allows it in the branch it writes in, before
    /// anything about that branch's objects is looked at (so a refusal
    /// tells nothing about them). Returns the action checked, for the check
    /// against the decided entry's branch; `None` for access commands,
    /// which [`Access::decide`] checks, and under earlier rules.
    fn authorize(
        &self,
        command: &Command,
        context: ExecContext,
        lookup: &LookupEntry<'_>,
    ) -> Result<Option<Action>, ExecuteError> {
        if context.rules_version < RULES_VERSION_ACCESS {
            if let CommandBody::Access(access) = &command.body {
                return Err(DomainError::invalid(
                    "command",
                    format!(
                        "{} needs rules version {RULES_VERSION_ACCESS} or later",
                        access.name()
                    ),
                )
                .into());
            }
            return Ok(None);
        }
        let Some(principal) = &command.principal else {
            return Err(DomainError::invalid(
                "principal",
                "is required: every command names the principal who sent it",
            )
            .into());
        };
        let Some(action) = action_of(&command.body) else {
            return Ok(None);
        };
        match self.branch_of(&command.body, lookup)? {
            Some(branch) => self.access.authorize(principal, action, branch.as_ref())?,
            None => self.access.authorize_somewhere(principal, action)?,
        }
        Ok(Some(action))
    }

    /// The branch a command writes in (`Some(None)`: the institution's
    /// catalogue), or `None` when an object it names does not exist
    /// (deciding it then refuses it as not found). An error when a loan
    /// memory let go of, which it names, cannot be read back: the command
    /// is then refused before any permission is checked, not let through
    /// as naming no loan.
    fn branch_of(
        &self,
        body: &CommandBody,
        lookup: &LookupEntry<'_>,
    ) -> Result<Option<Option<BranchId>>, DomainError> {
        let member = |id: &MemberId| self.members.get(id).map(|m| m.branch.clone());
        let loan = |id: &LoanId| -> Result<Option<BranchId>, DomainError> {
            Ok(match self.held_loan(id) {
                Some(loan) => Some(loan.branch.clone()),
                None => self.loan(id)?.map(|loan| loan.branch().clone()),
            })
        };
        let branch = match body {
            CommandBody::CreateBranch { branch_id, .. }
            | CommandBody::CreateCenter { branch_id, .. }
            | CommandBody::ClosePeriod { branch_id, .. }
            | CommandBody::ReopenPeriod { branch_id, .. }
            | CommandBody::PostSavingsInterest { branch_id, .. }
            | CommandBody::FundBranch { branch_id, .. }
            | CommandBody::ReturnBranchFunding { branch_id, .. } => Some(branch_id.clone()),
            CommandBody::CreateGroup { center_id, .. }
            | CommandBody::RecordCollectionSheet { center_id, .. } => {
                self.centers.get(center_id).map(|c| c.branch.clone())
            }
            CommandBody::RegisterMember { group_id, .. } => {
                self.groups.get(group_id).map(|g| g.branch.clone())
            }
            CommandBody::OpenSavingsAccount { member_id, .. }
            | CommandBody::DisburseLoan { member_id, .. } => member(member_id),
            CommandBody::DepositSavings { account_id, .. }
            | CommandBody::WithdrawSavings { account_id, .. } => {
                self.savings.get(account_id).map(|a| a.branch.clone())
            }
            CommandBody::DisburseTranche { loan_id, .. }
            | CommandBody::WriteOffLoan { loan_id, .. }
            | CommandBody::RecordRepayment { loan_id, .. } => loan(loan_id)?,
            CommandBody::ReverseEntry { sequence, .. } => {
                if *sequence > self.last_sequence {
                    return Ok(None);
                }
                return Ok(lookup(*sequence).ok().flatten().map(|entry| entry.branch));
            }
            CommandBody::CreateProduct { .. }
            | CommandBody::UpdateProduct { .. }
            | CommandBody::DefineSavingsProduct { .. }
            | CommandBody::Access(_) => return Ok(Some(None)),
        };
        Ok(branch.map(Some))
    }

    /// True when a decided command takes effect only once another manager
    /// of its branch approves it: reversals, write-offs, and disbursements
    /// above their product's approval limit.
    fn needs_approval(&self, body: &CommandBody, decision: &Decision) -> bool {
        match (body, &decision.outcome) {
            (
                CommandBody::ReverseEntry { .. }
                | CommandBody::WriteOffLoan { .. }
                | CommandBody::ReopenPeriod { .. },
                _,
            ) => true,
            (
                CommandBody::DisburseLoan { .. },
                Outcome::LoanDisbursed {
                    product: Some((product, _)),
                    approved_principal,
                    ..
                },
            ) => self
                .access
                .approval_limit(product)
                .is_some_and(|limit| *approved_principal > limit),
            (
                CommandBody::DisburseTranche {
                    loan_id, amount, ..
                },
                _,
            ) => self
                .held_loan(loan_id)
                .and_then(|loan| loan.product.as_ref())
                .and_then(|(product, _)| self.access.approval_limit(product))
                .is_some_and(|limit| amount.amount > limit),
            _ => false,
        }
    }

    fn decide(
        &self,
        body: &CommandBody,
        context: ExecContext,
        lookup: &LookupEntry<'_>,
    ) -> Result<Decision, ExecuteError> {
        Ok(match body {
            CommandBody::CreateBranch {
                branch_id,
                time_zone,
                compulsory_savings_percent,
                opened_on,
                ..
            } => self.decide_create_branch(
                branch_id,
                time_zone,
                *compulsory_savings_percent,
                *opened_on,
                context,
            )?,
            CommandBody::CreateCenter {
                center_id,
                branch_id,
                opened_on,
                ..
            } => {
                if self.centers.contains_key(center_id) {
                    return Err(DomainError::already_exists(
                        "center_id",
                        "center",
                        center_id.as_str(),
                    )
                    .into());
                }
                let branch = self.find_branch("branch_id", branch_id)?;
                let date = self.resolve_date("opened_on", *opened_on, branch, context)?;
                not_before("opened_on", date, branch.opened_on, "the branch opened")?;
                Decision::structural(branch.id.clone(), date)
            }
            CommandBody::CreateGroup {
                group_id,
                center_id,
                opened_on,
                ..
            } => {
                if self.groups.contains_key(group_id) {
                    return Err(DomainError::already_exists(
                        "group_id",
                        "group",
                        group_id.as_str(),
                    )
                    .into());
                }
                let center = self.centers.get(center_id).ok_or_else(|| {
                    DomainError::not_found("center_id", "center", center_id.as_str())
                })?;
                let branch = self.find_branch("center_id", &center.branch)?;
                let date = self.resolve_date("opened_on", *opened_on, branch, context)?;
                not_before("opened_on", date, center.opened_on, "the center opened")?;
                Decision::structural(branch.id.clone(), date)
            }
            CommandBody::RegisterMember {
                member_id,
                group_id,
                joined_on,
                ..
            } => {
                if self.members.contains_key(member_id) {
                    return Err(DomainError::already_exists(
                        "member_id",
                        "member",
                        member_id.as_str(),
                    )
                    .into());
                }
                let group = self.groups.get(group_id).ok_or_else(|| {
                    DomainError::not_found("group_id", "group", group_id.as_str())
                })?;
                let branch = self.find_branch("group_id", &group.branch)?;
                let date = self.resolve_date("joined_on", *joined_on, branch, context)?;
                not_before("joined_on", date, group.opened_on, "the group was formed")?;
                Decision::structural(branch.id.clone(), date)
            }
            CommandBody::OpenSavingsAccount {
                member_id,
                kind,
                opened_on,
            } => self.decide_open_savings(member_id, *kind, *opened_on, context)?,
            CommandBody::DepositSavings {
                account_id,
                amount,
                effective_date,
            } => self.decide_savings_move(account_id, *amount, *effective_date, true, context)?,
            CommandBody::WithdrawSavings {
                account_id,
                amount,
                effective_date,
            } => self.decide_savings_move(account_id, *amount, *effective_date, false, context)?,
            CommandBody::CreateProduct {
                product_id,
                rules,
                effective_from,
            } => self.decide_product(product_id, rules, *effective_from, true, context)?,
            CommandBody::UpdateProduct {
                product_id,
                rules,
                effective_from,
            } => self.decide_product(product_id, rules, *effective_from, false, context)?,
            CommandBody::DisburseLoan {
                member_id,
                loan,
                disbursed_on,
            } => self.decide_disbursement(member_id, loan, *disbursed_on, context)?,
            CommandBody::DisburseTranche {
                loan_id,
                amount,
                disbursed_on,
            } => self.decide_tranche(loan_id, *amount, *disbursed_on, context)?,
            CommandBody::RecordRepayment {
                loan_id,
                amount,
                effective_date,
            } => {
                let loan = self.find_loan("loan_id", loan_id)?;
                let branch = self.find_branch("loan_id", loan.branch())?;
                let date = self.resolve_date("effective_date", *effective_date, branch, context)?;
                let (repayment, postings) = self.decide_repayment(&loan, *amount, date)?;
                Decision {
                    branch: Some(branch.id.clone()),
                    effective_date: date,
                    postings,
                    outcome: Outcome::RepaymentAllocated(repayment),
                }
            }
            CommandBody::WriteOffLoan {
                loan_id,
                effective_date,
                ..
            } => self.decide_write_off(loan_id, *effective_date, context)?,
            CommandBody::RecordCollectionSheet {
                center_id,
                lines,
                meeting_date,
            } => self.decide_collection_sheet(center_id, lines, *meeting_date, context)?,
            CommandBody::ReverseEntry {
                sequence,
                effective_date,
                ..
            } => self.decide_reversal(*sequence, *effective_date, context, lookup)?,
            CommandBody::ClosePeriod { branch_id, through } => {
                self.decide_close(branch_id, *through, context)?
            }
            CommandBody::ReopenPeriod {
                branch_id, from, ..
            } => self.decide_reopen(branch_id, *from, context)?,
            CommandBody::DefineSavingsProduct {
                product_id,
                kind,
                rules,
                effective_from,
                ..
            } => self.decide_savings_product(product_id, *kind, rules, *effective_from, context)?,
            CommandBody::PostSavingsInterest {
                branch_id,
                period_end,
            } => self.decide_savings_interest(branch_id, *period_end, context)?,
            CommandBody::FundBranch {
                branch_id,
                source,
                amount,
                effective_date,
            } => {
                self.decide_funding(branch_id, *source, *amount, *effective_date, false, context)?
            }
            CommandBody::ReturnBranchFunding {
                branch_id,
                source,
                amount,
                effective_date,
            } => {
                self.decide_funding(branch_id, *source, *amount, *effective_date, true, context)?
            }
            CommandBody::Access(_) => unreachable!("execute decides access commands"),
        })
    }

    fn resolve_date(
        &self,
        field: &str,
        given: Option<NaiveDate>,
        branch: &Branch,
        context: ExecContext,
    ) -> Result<NaiveDate, DomainError> {
        let today = today_in(&branch.time_zone, context.recorded_at);
        let date = check_date(field, given.unwrap_or(today))?;
        not_in_future(field, date, today, &branch.time_zone)?;
        Ok(date)
    }

    pub(super) fn find_branch(&self, field: &str, id: &BranchId) -> Result<&Branch, DomainError> {
        self.branches
            .get(id)
            .ok_or_else(|| DomainError::not_found(field, "branch", id.as_str()))
    }

    pub(super) fn find_member(&self, field: &str, id: &MemberId) -> Result<&Member, DomainError> {
        self.members
            .get(id)
            .map(|member| &**member)
            .ok_or_else(|| DomainError::not_found(field, "member", id.as_str()))
    }

    pub(super) fn find_loan(&self, field: &str, id: &LoanId) -> Result<LoanSlot, DomainError> {
        self.loan(id)?
            .ok_or_else(|| DomainError::not_found(field, "loan", id.as_str()))
    }

    /// A loan whole, for a command that changes it: read back from the
    /// store when only its summary is held ([`LedgerState::whole_loan`]),
    /// and then its account's book read too, which the read side reads
    /// back to book the entry to it (the reversal that reopens the loan):
    /// a store that cannot give either refuses the command here, rather
    /// than stopping the ledger once the entry is written.
    pub(super) fn find_whole_loan(
        &self,
        field: &str,
        id: &LoanId,
    ) -> Result<Arc<Loan>, DomainError> {
        let slot = self.find_loan(field, id)?;
        let whole = super::whole_loan(self.stored.0.as_deref(), &slot)?;
        if slot.is_summary()
            && let Some(store) = self.stored.0.as_deref()
        {
            let account = AccountId::Loan(id.clone());
            let what = || format!("loan {id}'s account");
            match crate::books::read_kept_book(store, &account) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(DomainError::Damaged {
                        message: format!(
                            "{} is missing from the ledger's state cache (record {:?}); \
                             `mfi-ledger verify` compares the state cache with the journal",
                            what(),
                            crate::books::kept_steps_key(&account)
                        ),
                    });
                }
                Err(error) => return Err(super::stored_error(&what(), error)),
            }
        }
        Ok(whole)
    }
}

/// The action a command needs; `None` for access commands, which
/// [`crate::access::Access::decide`] checks.
pub fn action_of(body: &CommandBody) -> Option<Action> {
    Some(match body {
        CommandBody::CreateBranch { .. }
        | CommandBody::CreateCenter { .. }
        | CommandBody::CreateGroup { .. } => Action::Organize,
        CommandBody::RegisterMember { .. }
        | CommandBody::OpenSavingsAccount { .. }
        | CommandBody::DepositSavings { .. }
        | CommandBody::WithdrawSavings { .. }
        | CommandBody::DisburseLoan { .. }
        | CommandBody::DisburseTranche { .. }
        | CommandBody::RecordCollectionSheet { .. }
        | CommandBody::RecordRepayment { .. } => Action::Write,
        CommandBody::WriteOffLoan { .. } | CommandBody::ReverseEntry { .. } => Action::Correct,
        CommandBody::ClosePeriod { .. }
        | CommandBody::ReopenPeriod { .. }
        | CommandBody::PostSavingsInterest { .. } => Action::Close,
        CommandBody::FundBranch { .. } | CommandBody::ReturnBranchFunding { .. } => Action::Fund,
        CommandBody::DefineSavingsProduct { .. } => Action::Catalogue,
        CommandBody::CreateProduct { .. } | CommandBody::UpdateProduct { .. } => Action::Catalogue,
        CommandBody::Access(_) => return None,
    })
}

/// Postings of many lines merged by account and side, in first-seen order.
#[derive(Default)]
struct Postings {
    postings: Vec<Posting>,
    /// Where each (account, side) is in `postings`: merging stays linear in
    /// the number of lines.
    index: HashMap<(AccountId, bool), usize, super::FastHash>,
}

impl Postings {
    fn extend(&mut self, postings: Vec<Posting>) -> Result<(), DomainError> {
        for posting in postings {
            let debit = posting.side == Side::Debit;
            match self.index.entry((posting.account.clone(), debit)) {
                Slot::Occupied(at) => {
                    let existing = &mut self.postings[*at.get()];
                    existing.amount = checked_add(existing.amount, posting.amount)
                        .map_err(|_| too_large("lines"))?
                        .normalize();
                }
                Slot::Vacant(slot) => {
                    slot.insert(self.postings.len());
                    self.postings.push(posting);
                }
            }
        }
        Ok(())
    }

    fn into_vec(self) -> Vec<Posting> {
        self.postings
    }
}

/// The refusal of an entry whose canonical encoding, `len` bytes, is over
/// [`ENTRY_BYTES_MAX`]: the journal could not hold it. The field named is
/// the list that made it so large.
pub(crate) fn entry_too_large(body: &EntryBody, len: usize) -> DomainError {
    let (field, advice) = match &body.command {
        CommandBody::RecordCollectionSheet { .. } => {
            ("lines", "; record the meeting on several smaller sheets")
        }
        CommandBody::CreateProduct { .. } | CommandBody::UpdateProduct { .. } => ("rules", ""),
        CommandBody::DisburseLoan { .. } => ("loan", ""),
        CommandBody::ReverseEntry { .. } => ("sequence", ""),
        _ => ("", ""),
    };
    DomainError::invalid(
        field,
        format!(
            "the journal entry would be {len} bytes, over the {ENTRY_BYTES_MAX} bytes an entry may have{advice}"
        ),
    )
}

fn not_in_future(
    field: &str,
    date: NaiveDate,
    today: NaiveDate,
    time_zone: &str,
) -> Result<(), DomainError> {
    if date > today {
        return Err(DomainError::invalid(
            field,
            format!("{date} is in the future (today is {today} in {time_zone})"),
        ));
    }
    Ok(())
}

fn not_before(
    field: &str,
    date: NaiveDate,
    earliest: NaiveDate,
    what: &str,
) -> Result<(), DomainError> {
    if date < earliest {
        return Err(DomainError::precondition(
            field,
            format!("{date} is before {earliest}, when {what}"),
        ));
    }
    Ok(())
}
