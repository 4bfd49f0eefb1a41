//! Deciding commands: checks against the state and builds the entry body.
//! Nothing here changes the state.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;

use super::*;
use crate::domain::access::{APPROVAL_WAIT_DAYS, AccessCommand, Action};
use crate::domain::books::Line;
use crate::domain::command::{
    COLLECTION_LINES_MAX, CollectionLine, FundingSource, LoanSpec, check_date, check_len,
};
use crate::domain::entry::{
    Attribution, ENTRY_BYTES_MAX, FeeCharge, LineOutcome, RULES_VERSION_ACCESS, Repayment,
    SavingsAmount, Side,
};
use crate::domain::error::echo;
use crate::domain::ids::FeeCode;
use crate::domain::product::{CompulsorySavings, FeeCollection, ProductRules};
use crate::domain::schedule::{
    Amortization, InstallmentBasis, InstallmentRounding, InterestPeriod, RoundingMode,
};
use crate::domain::totals::{fees_overflow, too_large};

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
    /// The body's sequence number follows the last applied entry.
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
        check_entry_size(&body)?;
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

    /// Refuses a savings movement dated on or before the last period end
    /// whose interest was posted for its account's kind: the interest was
    /// paid on the balances as they stood.
    fn check_interest_not_posted(
        &self,
        branch: &Branch,
        field: &str,
        decision: &Decision,
    ) -> Result<(), DomainError> {
        if branch.interest_posted.is_empty() {
            return Ok(());
        }
        let date = decision.effective_date;
        let moved: Vec<&SavingsAccountId> = match &decision.outcome {
            Outcome::SavingsMoved { account, .. } => vec![account],
            Outcome::CollectionSheetRecorded { lines } => lines
                .iter()
                .filter_map(|line| line.deposit.as_ref().map(|d| &d.account))
                .collect(),
            Outcome::Reversed { undo, .. } => match undo {
                Undo::Deposit { account, .. } | Undo::Withdrawal { account, .. } => vec![account],
                Undo::CollectionSheet { deposits, .. } => {
                    deposits.iter().map(|d| &d.account).collect()
                }
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        for account in moved {
            let Some(kind) = self.savings.get(account).map(|a| a.kind) else {
                continue;
            };
            if let Some(posted) = branch.interest_posted_through(kind)
                && date <= posted
            {
                return Err(DomainError::precondition(
                    field,
                    format!(
                        "{date}: interest on {} savings in branch {} was posted for the period ending {posted}, on the balances then; date the movement of {account} after {posted}",
                        format!("{kind:?}").to_lowercase(),
                        branch.id
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Defines a savings product, or its next version.
    fn decide_savings_product(
        &self,
        product_id: &ProductId,
        kind: SavingsKind,
        rules: &crate::domain::savings_interest::SavingsInterestRules,
        effective_from: Option<NaiveDate>,
        context: ExecContext,
    ) -> Result<Decision, DomainError> {
        rules.validate("rules")?;
        let today = today_in(TIME_ZONE_DEFAULT, context.recorded_at);
        let date = check_date("effective_from", effective_from.unwrap_or(today))?;
        not_in_future("effective_from", date, today, TIME_ZONE_DEFAULT)?;
        let version = match self.savings_products.get(product_id).and_then(|v| v.last()) {
            Some(latest) => {
                if latest.kind != kind {
                    return Err(DomainError::precondition(
                        "kind",
                        format!(
                            "savings product {product_id} covers {} savings; a product keeps its kind",
                            format!("{:?}", latest.kind).to_lowercase()
                        ),
                    ));
                }
                if date <= latest.effective_from {
                    return Err(DomainError::invalid(
                        "effective_from",
                        format!(
                            "{date} is not after {}, from which version {} of savings product {product_id} applies",
                            latest.effective_from, latest.version
                        ),
                    ));
                }
                latest.version + 1
            }
            None => {
                if let Some(other) = self.savings_product_of(kind).and_then(|v| v.first()) {
                    return Err(DomainError::precondition(
                        "kind",
                        format!(
                            "savings product {} already covers {} savings; define its next version",
                            other.id,
                            format!("{kind:?}").to_lowercase()
                        ),
                    ));
                }
                1
            }
        };
        Ok(Decision {
            branch: None,
            effective_date: date,
            outcome: Outcome::ProductDefined { version },
            postings: Vec::new(),
        })
    }

    /// Works out the interest each savings account of `branch_id` earned
    /// over the posting period ending on `period_end`: on the daily closing
    /// balance, actual/365, at the rate of the product version in force on
    /// each day, rounded once as the version in force at the period's end
    /// says.
    fn decide_savings_interest(
        &self,
        branch_id: &BranchId,
        period_end: NaiveDate,
        context: ExecContext,
    ) -> Result<Decision, DomainError> {
        use crate::domain::savings_interest::{accrued_from, posted};
        let branch = self.find_branch("branch_id", branch_id)?;
        let period_end = check_date("period_end", period_end)?;
        let today = today_in(&branch.time_zone, context.recorded_at);
        if period_end >= today {
            return Err(DomainError::invalid(
                "period_end",
                format!(
                    "{period_end} has not ended yet (today is {today} in {})",
                    branch.time_zone
                ),
            ));
        }
        let mut due = Vec::new();
        for kind in [SavingsKind::Compulsory, SavingsKind::Voluntary] {
            let Some(versions) = self.savings_product_of(kind) else {
                continue;
            };
            let Some(current) = versions
                .iter()
                .rev()
                .find(|v| v.effective_from <= period_end)
            else {
                continue;
            };
            if !current.rules.posting.is_period_end(period_end) {
                continue;
            }
            if let Some(posted) = branch.interest_posted_through(kind)
                && period_end <= posted
            {
                return Err(DomainError::precondition(
                    "period_end",
                    format!(
                        "interest on {} savings in branch {branch_id} was already posted for the period ending {posted}",
                        format!("{kind:?}").to_lowercase()
                    ),
                ));
            }
            due.push((kind, versions, current));
        }
        if due.is_empty() {
            return Err(DomainError::invalid(
                "period_end",
                format!(
                    "{period_end} ends no posting period of a savings product in force (define one, or give the last day of its month, quarter, half-year or year)"
                ),
            ));
        }
        let overflow = |_| too_large("period_end");
        let mut credited = Vec::new();
        // Each account is credited once.
        let mut postings = Vec::new();
        let mut total = Decimal::ZERO;
        for (kind, versions, current) in &due {
            let (start, _) = current.rules.posting.period_of(period_end);
            for account in self
                .savings
                .values()
                .filter(|a| a.branch == *branch_id && a.kind == *kind)
            {
                let from = start.max(account.opened_on);
                // The balance at the end of the day before `from`: today's
                // less the changes dated from then on (few: the period's),
                // so a posting reads the period, not the account's history.
                let now = self
                    .balance(&AccountId::Savings(account.id.clone()))
                    .on_normal_side(AccountKind::Liability);
                let since_from = crate::domain::totals::sum(
                    account.changes.range(from..).map(|(_, change)| *change),
                )
                .map_err(overflow)?;
                let opening = checked_sub(now, since_from).map_err(|_| too_large("period_end"))?;
                let mut earned = Decimal::ZERO;
                for (i, version) in versions.iter().enumerate() {
                    let until = versions
                        .get(i + 1)
                        .and_then(|next| next.effective_from.pred_opt())
                        .map_or(period_end, |day| day.min(period_end));
                    let since = from.max(version.effective_from);
                    if since > until {
                        continue;
                    }
                    let before_since = crate::domain::totals::sum(
                        account
                            .changes
                            .range(from..since)
                            .map(|(_, change)| *change),
                    )
                    .map_err(overflow)?;
                    let part = accrued_from(
                        checked_add(opening, before_since).map_err(|_| too_large("period_end"))?,
                        &account.changes,
                        since,
                        until,
                        version.rules.annual_rate_percent,
                    )
                    .map_err(overflow)?;
                    earned = checked_add(earned, part).map_err(|_| too_large("period_end"))?;
                }
                let amount = posted(earned, current.rules.rounding).map_err(overflow)?;
                let amount = amount.round_dp_with_strategy(
                    branch.currency.decimal_places(),
                    RoundingStrategy::ToZero,
                );
                if amount <= Decimal::ZERO {
                    continue;
                }
                total = checked_add(total, amount).map_err(|_| too_large("period_end"))?;
                postings.push(Posting::credit(
                    AccountId::Savings(account.id.clone()),
                    amount,
                ));
                credited.push(SavingsAmount {
                    account: account.id.clone(),
                    amount: amount.normalize(),
                });
            }
        }
        if total > Decimal::ZERO {
            postings.insert(
                0,
                Posting::debit(AccountId::InterestExpense(branch_id.clone()), total),
            );
        }
        Ok(Decision {
            branch: Some(branch_id.clone()),
            effective_date: period_end,
            postings,
            outcome: Outcome::SavingsInterestPosted {
                kinds: due.iter().map(|(kind, ..)| *kind).collect(),
                credited,
            },
        })
    }

    /// Closes `branch_id`'s books through `through`; through 31 December,
    /// the entry carries the year's income and expenses into retained
    /// earnings: each income line is debited, each expense line credited,
    /// by its balance on that date, and retained earnings take the result.
    fn decide_close(
        &self,
        branch_id: &BranchId,
        through: NaiveDate,
        context: ExecContext,
    ) -> Result<Decision, DomainError> {
        let branch = self.find_branch("branch_id", branch_id)?;
        let through = check_date("through", through)?;
        let today = today_in(&branch.time_zone, context.recorded_at);
        if through >= today {
            return Err(DomainError::invalid(
                "through",
                format!(
                    "{through} has not ended yet (today is {today} in {}); close a day that is over",
                    branch.time_zone
                ),
            ));
        }
        if let Some(closed) = branch.closed
            && through <= closed.through
        {
            return Err(DomainError::precondition(
                "through",
                format!(
                    "branch {branch_id}'s books are already closed through {} (entry {})",
                    closed.through, closed.by
                ),
            ));
        }
        let year_end = through.month() == 12 && through.day() == 31;
        let mut postings = Vec::new();
        if year_end {
            let mut result = Decimal::ZERO;
            for (line, balance) in self.books.nominal_lines(branch_id, through) {
                let account = line
                    .account(branch_id)
                    .expect("income and expense lines have one account per branch");
                // Debit what the line holds on the credit side, credit what it holds on the debit side.
                let net = balance.credits - balance.debits;
                result += net;
                match net.cmp(&Decimal::ZERO) {
                    std::cmp::Ordering::Greater => postings.push(Posting::debit(account, net)),
                    std::cmp::Ordering::Less => postings.push(Posting::credit(account, -net)),
                    std::cmp::Ordering::Equal => {}
                }
            }
            let retained = AccountId::RetainedEarnings(branch_id.clone());
            match result.cmp(&Decimal::ZERO) {
                std::cmp::Ordering::Greater => postings.push(Posting::credit(retained, result)),
                std::cmp::Ordering::Less => postings.push(Posting::debit(retained, -result)),
                std::cmp::Ordering::Equal => {}
            }
        }
        Ok(Decision {
            branch: Some(branch_id.clone()),
            effective_date: through,
            postings,
            outcome: Outcome::PeriodClosed {
                through,
                carried: year_end,
            },
        })
    }

    /// Reopens `branch_id`'s books from `from` on; dated today.
    fn decide_reopen(
        &self,
        branch_id: &BranchId,
        from: NaiveDate,
        context: ExecContext,
    ) -> Result<Decision, DomainError> {
        let branch = self.find_branch("branch_id", branch_id)?;
        let from = check_date("from", from)?;
        if branch.closed.is_none_or(|closed| from > closed.through) {
            return Err(DomainError::precondition(
                "from",
                match branch.closed {
                    Some(closed) => format!(
                        "{from} is after {}, through which branch {branch_id}'s books are closed: it is open already",
                        closed.through
                    ),
                    None => format!("branch {branch_id}'s books are not closed"),
                },
            ));
        }
        let closed_through = from.pred_opt().filter(|day| *day >= branch.opened_on);
        Ok(Decision {
            branch: Some(branch_id.clone()),
            effective_date: today_in(&branch.time_zone, context.recorded_at),
            postings: Vec::new(),
            outcome: Outcome::PeriodReopened { closed_through },
        })
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
        match self.branch_of(&command.body, lookup) {
            Some(branch) => self.access.authorize(principal, action, branch.as_ref())?,
            None => self.access.authorize_somewhere(principal, action)?,
        }
        Ok(Some(action))
    }

    /// The branch a command writes in (`Some(None)`: the institution's
    /// catalogue), or `None` when an object it names does not exist
    /// (deciding it then refuses it as not found).
    fn branch_of(&self, body: &CommandBody, lookup: &LookupEntry<'_>) -> Option<Option<BranchId>> {
        let member = |id: &MemberId| self.members.get(id).map(|m| m.branch.clone());
        let loan = |id: &LoanId| self.loan(id).map(|l| l.branch.clone());
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
            | CommandBody::RecordRepayment { loan_id, .. } => loan(loan_id),
            CommandBody::ReverseEntry { sequence, .. } => {
                if *sequence > self.last_sequence {
                    return None;
                }
                return lookup(*sequence).ok().flatten().map(|entry| entry.branch);
            }
            CommandBody::CreateProduct { .. }
            | CommandBody::UpdateProduct { .. }
            | CommandBody::DefineSavingsProduct { .. }
            | CommandBody::Access(_) => return Some(None),
        };
        branch.map(Some)
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
                .loan(loan_id)
                .and_then(|loan| loan.product.as_ref())
                .and_then(|(product, _)| self.access.approval_limit(product))
                .is_some_and(|limit| amount.amount > limit),
            _ => false,
        }
    }

    /// Decides an access command: no postings, in no branch, dated today
    /// in the institution's default zone.
    fn decide_access(
        &self,
        command: &Command,
        access: &AccessCommand,
        context: ExecContext,
    ) -> Result<Decision, DomainError> {
        let principal = command
            .principal
            .as_ref()
            .expect("authorize refused a command without a principal");
        self.access
            .decide(access, principal, context.recorded_at.timestamp_micros())?;
        if let AccessCommand::SetApprovalLimit { product_id, above } = access {
            let versions = self.products.get(product_id).ok_or_else(|| {
                DomainError::not_found("product_id", "product", product_id.as_str())
            })?;
            if let (Some(limit), Some(latest)) = (above, versions.last()) {
                let books = latest.rules.currency;
                limit.check("above", books, &format!("product {product_id} lends"))?;
            }
        }
        Ok(Decision {
            branch: None,
            effective_date: today_in(TIME_ZONE_DEFAULT, context.recorded_at),
            outcome: Outcome::AccessChanged,
            postings: Vec::new(),
        })
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
                let branch = self.find_branch("loan_id", &loan.branch)?;
                let date = self.resolve_date("effective_date", *effective_date, branch, context)?;
                let (repayment, postings) = self.decide_repayment(loan, *amount, date)?;
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

    fn decide_create_branch(
        &self,
        branch_id: &BranchId,
        time_zone: &str,
        compulsory_savings_percent: Decimal,
        opened_on: Option<NaiveDate>,
        context: ExecContext,
    ) -> Result<Decision, DomainError> {
        if self.branches.contains_key(branch_id) {
            return Err(DomainError::already_exists(
                "branch_id",
                "branch",
                branch_id.as_str(),
            ));
        }
        if Tz::from_str(time_zone).is_err() {
            return Err(DomainError::invalid(
                "time_zone",
                format!(
                    "{} is not an IANA time zone such as \"Asia/Ho_Chi_Minh\"",
                    echo(time_zone)
                ),
            ));
        }
        if compulsory_savings_percent.is_sign_negative()
            || compulsory_savings_percent > Decimal::ONE_HUNDRED
        {
            return Err(DomainError::invalid(
                "compulsory_savings_percent",
                format!("{compulsory_savings_percent} is outside 0 to 100"),
            ));
        }
        let today = today_in(time_zone, context.recorded_at);
        let date = check_date("opened_on", opened_on.unwrap_or(today))?;
        not_in_future("opened_on", date, today, time_zone)?;
        Ok(Decision::structural(branch_id.clone(), date))
    }

    fn decide_product(
        &self,
        product_id: &ProductId,
        rules: &ProductRules,
        effective_from: Option<NaiveDate>,
        create: bool,
        context: ExecContext,
    ) -> Result<Decision, DomainError> {
        // The catalogue is the institution's: its calendar is that of the
        // default zone.
        let today = today_in(TIME_ZONE_DEFAULT, context.recorded_at);
        let date = check_date("effective_from", effective_from.unwrap_or(today))?;
        not_in_future("effective_from", date, today, TIME_ZONE_DEFAULT)?;
        let versions = self.products.get(product_id);
        if let Some(latest) = versions.and_then(|v| v.last())
            && !create
            && date < latest.effective_from
        {
            return Err(DomainError::invalid(
                "effective_from",
                format!(
                    "{date} is before {}, from which version {} of product {product_id} applies",
                    latest.effective_from, latest.version
                ),
            ));
        }
        let version = match (versions.and_then(|v| v.last()), create) {
            (Some(_), true) => {
                return Err(DomainError::already_exists(
                    "product_id",
                    "product",
                    product_id.as_str(),
                ));
            }
            (None, false) => {
                return Err(DomainError::not_found(
                    "product_id",
                    "product",
                    product_id.as_str(),
                ));
            }
            (None, true) => 1,
            (Some(latest), false) => {
                if latest.rules == *rules {
                    return Err(DomainError::precondition(
                        "rules",
                        format!(
                            "are the same as version {} of product {product_id}; nothing to change",
                            latest.version
                        ),
                    ));
                }
                latest.version + 1
            }
        };
        rules.validate()?;
        Ok(Decision {
            branch: None,
            effective_date: date,
            outcome: Outcome::ProductDefined { version },
            postings: Vec::new(),
        })
    }

    fn decide_open_savings(
        &self,
        member_id: &MemberId,
        kind: SavingsKind,
        opened_on: Option<NaiveDate>,
        context: ExecContext,
    ) -> Result<Decision, DomainError> {
        let member = self.find_member("member_id", member_id)?;
        let branch = self.find_branch("member_id", &member.branch)?;
        let date = self.resolve_date("opened_on", opened_on, branch, context)?;
        not_before("opened_on", date, member.joined_on, "the member joined")?;
        let account = match kind {
            SavingsKind::Compulsory => {
                if let Some(existing) = self.compulsory_account(member) {
                    return Err(DomainError::precondition(
                        "kind",
                        format!(
                            "member {member_id} already has compulsory savings account {existing}"
                        ),
                    ));
                }
                SavingsAccountId::new(member_id, 'C', 1)
            }
            SavingsKind::Voluntary => {
                SavingsAccountId::new(member_id, 'V', member.voluntary_accounts_opened + 1)
            }
        };
        Ok(Decision {
            branch: Some(branch.id.clone()),
            effective_date: date,
            outcome: Outcome::SavingsAccountOpened { account, kind },
            postings: Vec::new(),
        })
    }

    fn decide_savings_move(
        &self,
        account_id: &SavingsAccountId,
        amount: Money,
        effective_date: Option<NaiveDate>,
        deposit: bool,
        context: ExecContext,
    ) -> Result<Decision, DomainError> {
        let account = self.savings.get(account_id).ok_or_else(|| {
            DomainError::not_found("account_id", "savings account", account_id.as_str())
        })?;
        let branch = self.find_branch("account_id", &account.branch)?;
        let date = self.resolve_date("effective_date", effective_date, branch, context)?;
        let today = today_in(&branch.time_zone, context.recorded_at);
        let (balance_after, postings) =
            self.savings_move(account, branch, amount, date, deposit, today)?;
        Ok(Decision {
            branch: Some(branch.id.clone()),
            effective_date: date,
            outcome: Outcome::SavingsMoved {
                account: account_id.clone(),
                balance_after,
            },
            postings,
        })
    }

    /// Checks a deposit or withdrawal on `date` (`today` being the latest
    /// day its balance counts for): the balance after it and its postings.
    fn savings_move(
        &self,
        account: &SavingsAccount,
        branch: &Branch,
        amount: Money,
        date: NaiveDate,
        deposit: bool,
        today: NaiveDate,
    ) -> Result<(Decimal, Vec<Posting>), DomainError> {
        let account_id = &account.id;
        amount.check("amount", branch.currency, &branch.books())?;
        not_before(
            "effective_date",
            date,
            account.opened_on,
            "the account opened",
        )?;
        let savings = AccountId::Savings(account_id.clone());
        let cash = AccountId::Cash(branch.id.clone());
        let balance = self
            .balance(&savings)
            .on_normal_side(AccountKind::Liability);
        let (balance_after, postings) = if deposit {
            let after = checked_add(balance, amount.amount).map_err(|_| too_large("amount"))?;
            (
                after,
                vec![
                    Posting::debit(cash, amount.amount),
                    Posting::credit(savings, amount.amount),
                ],
            )
        } else {
            let after = checked_sub(balance, amount.amount).map_err(|_| too_large("amount"))?;
            self.check_withdrawal(account, date, balance, amount.amount, after, branch, today)?;
            (
                after,
                vec![
                    Posting::debit(savings, amount.amount),
                    Posting::credit(cash, amount.amount),
                ],
            )
        };
        Ok((balance_after.normalize(), postings))
    }

    #[allow(clippy::too_many_arguments)]
    fn check_withdrawal(
        &self,
        account: &SavingsAccount,
        date: NaiveDate,
        balance: Decimal,
        amount: Decimal,
        after: Decimal,
        branch: &Branch,
        today: NaiveDate,
    ) -> Result<(), DomainError> {
        let currency = branch.currency;
        let (lowest, on) = account.lowest_balance_from(date);
        if lowest < amount && lowest < balance {
            return Err(DomainError::precondition(
                "amount",
                format!(
                    "withdrawing {} on {date} would take savings account {} below zero on {on} (balance then {})",
                    show(amount, currency),
                    account.id,
                    show(lowest, currency)
                ),
            ));
        }
        if after.is_sign_negative() && !after.is_zero() {
            return Err(DomainError::precondition(
                "amount",
                format!(
                    "{} is more than the balance {} of savings account {}",
                    show(amount, currency),
                    show(balance, currency),
                    account.id
                ),
            ));
        }
        // A back-dated withdrawal lowers every later balance: it must leave
        // what is required on the latest of them.
        let required = self.required_savings(account, date.max(today))?;
        if after < required {
            return Err(DomainError::precondition(
                "amount",
                format!(
                    "withdrawing {} would leave {} in compulsory savings account {}, below the {} required while loans are outstanding",
                    show(amount, currency),
                    show(after, currency),
                    account.id,
                    show(required, currency)
                ),
            ));
        }
        Ok(())
    }

    fn decide_disbursement(
        &self,
        member_id: &MemberId,
        spec: &LoanSpec,
        disbursed_on: Option<NaiveDate>,
        context: ExecContext,
    ) -> Result<Decision, DomainError> {
        let member = self.find_member("member_id", member_id)?;
        let branch = self.find_branch("member_id", &member.branch)?;
        let date = self.resolve_date("disbursed_on", disbursed_on, branch, context)?;
        not_before("disbursed_on", date, member.joined_on, "the member joined")?;
        let Some(compulsory) = self
            .compulsory_account(member)
            .and_then(|id| self.savings.get(id))
        else {
            return Err(DomainError::precondition(
                "member_id",
                format!(
                    "member {member_id} has no compulsory savings account; open one before disbursing a loan"
                ),
            ));
        };
        not_before(
            "disbursed_on",
            date,
            compulsory.opened_on,
            "her compulsory savings account opened",
        )?;
        let (product, terms, policy, approved_principal) = match spec {
            LoanSpec::Terms(input) => {
                input
                    .principal
                    .check("terms.principal", branch.currency, &branch.books())?;
                let terms = LoanTerms {
                    principal: input.principal.amount,
                    annual_interest_rate_percent: input.annual_interest_rate_percent,
                    interest_method: input.interest_method,
                    amortization: Amortization::EqualInstallments,
                    interest_period: InterestPeriod::PerPeriod,
                    installment_basis: InstallmentBasis::NominalPeriodRate,
                    installment_count: input.installment_count,
                    frequency: input.frequency,
                    disbursed_on: date,
                    first_repayment_date: input.first_repayment_date,
                    rounding: InstallmentRounding {
                        multiple: input
                            .rounding_multiple
                            .unwrap_or(branch.currency.unit())
                            .normalize(),
                        mode: RoundingMode::HalfEven,
                    },
                    currency_decimal_places: branch.currency.decimal_places(),
                    grace_on_principal: 0,
                    grace_on_interest: 0,
                };
                let principal = terms.principal;
                (None, terms, LoanPolicy::outside_catalogue(), principal)
            }
            LoanSpec::Product {
                product_id,
                application,
            } => {
                let version = self.product_on(product_id, date)?;
                if version.rules.currency != branch.currency {
                    return Err(DomainError::precondition(
                        "product_id",
                        format!(
                            "product {product_id} lends in {} but branch {} keeps its books in {}",
                            version.rules.currency, branch.id, branch.currency
                        ),
                    ));
                }
                let terms = version
                    .rules
                    .terms_for(application, date)
                    .map_err(|e| e.within("application"))?;
                let approved = application
                    .approved_principal
                    .unwrap_or(application.principal);
                (
                    Some((product_id.clone(), version.version)),
                    terms,
                    LoanPolicy::of(&version.rules),
                    approved,
                )
            }
        };
        let field = match spec {
            LoanSpec::Terms(_) => "terms",
            LoanSpec::Product { .. } => "application",
        };
        let (schedule, fees) =
            loans::initial_schedule(&terms, &policy.fees, branch.currency, field)?;
        let principal_field = match spec {
            LoanSpec::Terms(_) => "terms.principal",
            LoanSpec::Product { .. } => "application.principal",
        };
        fees_leave_something(principal_field, terms.principal, &fees, branch.currency)?;
        let loan = LoanId::new(member_id, 'L', member.loans.len() as u32 + 1);
        let principal = terms.principal;
        let postings = disbursement_postings(&loan, &branch.id, principal, &fees)
            .map_err(|_| too_large(principal_field))?;
        Ok(Decision {
            branch: Some(branch.id.clone()),
            effective_date: date,
            postings,
            outcome: Outcome::LoanDisbursed {
                loan,
                product,
                terms,
                policy,
                approved_principal: approved_principal.normalize(),
                currency: branch.currency,
                fees,
                schedule,
            },
        })
    }

    /// The version of a product in force on `date`: the latest that applies
    /// from then or before.
    pub fn product_on(
        &self,
        id: &ProductId,
        date: NaiveDate,
    ) -> Result<&ProductVersion, DomainError> {
        let versions = self
            .products
            .get(id)
            .ok_or_else(|| DomainError::not_found("product_id", "product", id.as_str()))?;
        versions
            .iter()
            .rev()
            .find(|v| v.effective_from <= date)
            .ok_or_else(|| {
                DomainError::precondition(
                    "product_id",
                    format!(
                        "product {id} applies only from {}; it was not in force on {date}",
                        versions.first().map_or(date, |v| v.effective_from)
                    ),
                )
            })
    }

    fn decide_tranche(
        &self,
        loan_id: &LoanId,
        amount: Money,
        disbursed_on: Option<NaiveDate>,
        context: ExecContext,
    ) -> Result<Decision, DomainError> {
        let loan = self.find_loan("loan_id", loan_id)?;
        let branch = self.find_branch("loan_id", &loan.branch)?;
        check_active(loan)?;
        amount.check("amount", branch.currency, &branch.books())?;
        let date = self.resolve_date("disbursed_on", disbursed_on, branch, context)?;
        in_date_order("disbursed_on", date, loan)?;
        if loan.tranches >= loan.policy.tranches_max {
            return Err(DomainError::precondition(
                "loan_id",
                format!(
                    "loan {loan_id} has had its {} tranche(s), the most its product allows",
                    loan.tranches
                ),
            ));
        }
        let total = checked_add(loan.disbursed, amount.amount).map_err(|_| too_large("amount"))?;
        if total > loan.approved_principal {
            return Err(DomainError::precondition(
                "amount",
                format!(
                    "{} would bring loan {loan_id} to {}, beyond its approved principal {}",
                    show(amount.amount, branch.currency),
                    show(total, branch.currency),
                    show(loan.approved_principal, branch.currency)
                ),
            ));
        }
        let fees = loans::fee_charges(&loan.policy.fees, amount.amount, branch.currency)?;
        fees_leave_something("amount", amount.amount, &fees, branch.currency)?;
        let with_installment = loans::charged(&fees, FeeCollection::WithFirstInstallment)
            .map_err(|_| fees_overflow("amount"))?;
        let recast = loan.recast_after_tranche(amount.amount, date, with_installment)?;
        let postings = disbursement_postings(loan_id, &branch.id, amount.amount, &fees)
            .map_err(|_| too_large("amount"))?;
        Ok(Decision {
            branch: Some(branch.id.clone()),
            effective_date: date,
            postings,
            outcome: Outcome::TrancheDisbursed {
                loan: loan_id.clone(),
                fees,
                recast,
            },
        })
    }

    /// A payment on `loan` on `date`: its allocation and postings.
    fn decide_repayment(
        &self,
        loan: &Loan,
        amount: Money,
        date: NaiveDate,
    ) -> Result<(Repayment, Vec<Posting>), DomainError> {
        let loan_id = &loan.id;
        let branch = self.find_branch("loan_id", &loan.branch)?;
        amount.check("amount", branch.currency, &branch.books())?;
        in_date_order("effective_date", date, loan)?;
        let cash = AccountId::Cash(branch.id.clone());
        match loan.status {
            LoanStatus::Active => {}
            LoanStatus::WrittenOff => {
                let left = checked_sub(loan.written_off, loan.recovered)?;
                if amount.amount > left {
                    return Err(DomainError::precondition(
                        "amount",
                        format!(
                            "{} is more than the {} of loan {loan_id}'s written-off principal not yet recovered",
                            show(amount.amount, branch.currency),
                            show(left, branch.currency)
                        ),
                    ));
                }
                let repayment = Repayment {
                    loan: loan_id.clone(),
                    payments: Vec::new(),
                    prepaid: Decimal::ZERO,
                    recast: None,
                    recovery: amount.amount,
                    principal_outstanding_after: Decimal::ZERO,
                    closed: false,
                };
                let postings = vec![
                    Posting::debit(cash, amount.amount),
                    Posting::credit(AccountId::Recoveries(branch.id.clone()), amount.amount),
                ];
                return Ok((repayment, postings));
            }
            _ => check_active(loan)?,
        }
        let repayment = loan.allocate(amount.amount, date)?;
        let mut postings = vec![Posting::debit(cash, amount.amount)];
        let principal = repayment.principal().map_err(|_| too_large("amount"))?;
        if !principal.is_zero() {
            postings.push(Posting::credit(AccountId::Loan(loan_id.clone()), principal));
        }
        let interest = repayment.interest().map_err(|_| too_large("amount"))?;
        if !interest.is_zero() {
            postings.push(Posting::credit(
                AccountId::InterestIncome(branch.id.clone()),
                interest,
            ));
        }
        let fees = repayment.fees().map_err(|_| too_large("amount"))?;
        if !fees.is_zero() {
            postings.push(Posting::credit(
                installment_fee_account(loan, &branch.id),
                fees,
            ));
        }
        Ok((repayment, postings))
    }

    fn decide_write_off(
        &self,
        loan_id: &LoanId,
        effective_date: Option<NaiveDate>,
        context: ExecContext,
    ) -> Result<Decision, DomainError> {
        let loan = self.find_loan("loan_id", loan_id)?;
        let branch = self.find_branch("loan_id", &loan.branch)?;
        check_active(loan)?;
        let date = self.resolve_date("effective_date", effective_date, branch, context)?;
        in_date_order("effective_date", date, loan)?;
        let principal = loan.principal_outstanding();
        if principal.is_zero() {
            return Err(DomainError::precondition(
                "loan_id",
                format!("loan {loan_id} has no principal outstanding to write off"),
            ));
        }
        Ok(Decision {
            branch: Some(branch.id.clone()),
            effective_date: date,
            postings: vec![
                Posting::debit(AccountId::LoanLoss(branch.id.clone()), principal),
                Posting::credit(AccountId::Loan(loan_id.clone()), principal),
            ],
            outcome: Outcome::WrittenOff {
                loan: loan_id.clone(),
                principal: principal.normalize(),
            },
        })
    }

    fn decide_collection_sheet(
        &self,
        center_id: &CenterId,
        lines: &[CollectionLine],
        meeting_date: Option<NaiveDate>,
        context: ExecContext,
    ) -> Result<Decision, DomainError> {
        let center = self
            .centers
            .get(center_id)
            .ok_or_else(|| DomainError::not_found("center_id", "center", center_id.as_str()))?;
        let branch = self.find_branch("center_id", &center.branch)?;
        let date = self.resolve_date("meeting_date", meeting_date, branch, context)?;
        check_len("lines", lines.len(), COLLECTION_LINES_MAX, false, "lines")?;
        let mut loans_seen = BTreeSet::new();
        let mut accounts_seen = BTreeSet::new();
        let mut outcomes = Vec::with_capacity(lines.len());
        let mut postings = Postings::default();
        for (i, line) in lines.iter().enumerate() {
            let prefix = format!("lines[{i}]");
            let outcome = self
                .decide_line(
                    line,
                    center,
                    branch,
                    date,
                    &mut loans_seen,
                    &mut accounts_seen,
                )
                .map_err(|e| e.within(&prefix))?;
            postings.extend(outcome.1)?;
            outcomes.push(outcome.0);
        }
        Ok(Decision {
            branch: Some(branch.id.clone()),
            effective_date: date,
            postings: postings.into_vec(),
            outcome: Outcome::CollectionSheetRecorded { lines: outcomes },
        })
    }

    fn decide_line(
        &self,
        line: &CollectionLine,
        center: &Center,
        branch: &Branch,
        date: NaiveDate,
        loans_seen: &mut BTreeSet<LoanId>,
        accounts_seen: &mut BTreeSet<SavingsAccountId>,
    ) -> Result<(LineOutcome, Vec<Posting>), DomainError> {
        let member = self.find_member("member_id", &line.member_id)?;
        if member.center != center.id {
            return Err(DomainError::precondition(
                "member_id",
                format!(
                    "member {} meets at center {}, not {}",
                    member.id, member.center, center.id
                ),
            ));
        }
        if line.repayment.is_none() && line.deposit.is_none() {
            return Err(DomainError::invalid(
                "",
                "has neither a repayment nor a deposit",
            ));
        }
        let mut outcome = LineOutcome {
            repayment: None,
            deposit: None,
        };
        let mut postings = Vec::new();
        if let Some((loan_id, amount)) = &line.repayment {
            let loan = self.find_loan("loan_id", loan_id)?;
            if loan.member != member.id {
                return Err(DomainError::precondition(
                    "loan_id",
                    format!("loan {loan_id} is not member {}'s", member.id),
                ));
            }
            if !loans_seen.insert(loan_id.clone()) {
                return Err(DomainError::invalid(
                    "loan_id",
                    format!("loan {loan_id} is on an earlier line too; one line per loan"),
                ));
            }
            let (repayment, lines) = self.decide_repayment(loan, *amount, date).map_err(|e| {
                e.renamed("amount", "repayment")
                    .renamed("effective_date", "meeting_date")
            })?;
            outcome.repayment = Some(repayment);
            postings.extend(lines);
        }
        if let Some((account_id, amount)) = &line.deposit {
            let account = self.savings.get(account_id).ok_or_else(|| {
                DomainError::not_found("savings_account_id", "savings account", account_id.as_str())
            })?;
            if account.member != member.id {
                return Err(DomainError::precondition(
                    "savings_account_id",
                    format!("savings account {account_id} is not member {}'s", member.id),
                ));
            }
            if !accounts_seen.insert(account_id.clone()) {
                return Err(DomainError::invalid(
                    "savings_account_id",
                    format!(
                        "savings account {account_id} is on an earlier line too; one line per account"
                    ),
                ));
            }
            let (balance_after, lines) = self
                .savings_move(account, branch, *amount, date, true, date)
                .map_err(|e| {
                    e.renamed("amount", "deposit")
                        .renamed("effective_date", "meeting_date")
                })?;
            outcome.deposit = Some(SavingsAmount {
                account: account_id.clone(),
                amount: balance_after,
            });
            postings.extend(lines);
        }
        Ok((outcome, postings))
    }

    fn decide_reversal(
        &self,
        sequence: u64,
        effective_date: Option<NaiveDate>,
        context: ExecContext,
        lookup: &LookupEntry<'_>,
    ) -> Result<Decision, ExecuteError> {
        let original = match lookup(sequence) {
            Ok(Some(body)) if sequence >= 1 && sequence <= self.last_sequence => body,
            Ok(_) => {
                return Err(DomainError::not_found(
                    "sequence",
                    "journal entry",
                    sequence.to_string(),
                )
                .into());
            }
            Err(message) => return Err(ExecuteError::Lookup { sequence, message }),
        };
        if let Outcome::Reversed {
            sequence: reversed, ..
        } = original.outcome
        {
            return Err(DomainError::precondition(
                "sequence",
                format!("entry {sequence} is itself the reversal of entry {reversed}; a reversal cannot be reversed"),
            )
            .into());
        }
        if let Some(by) = self.reversed_by(sequence) {
            return Err(DomainError::precondition(
                "sequence",
                format!("entry {sequence} was already reversed by entry {by}"),
            )
            .into());
        }
        if let CommandBody::Access(access) = &original.command {
            return Err(DomainError::precondition(
                "sequence",
                format!(
                    "entry {sequence} ({}) changes access; access is changed by a new grant or \
                     revocation, not reversed",
                    access.name()
                ),
            )
            .into());
        }
        let Some(original_branch) = &original.branch else {
            return Err(DomainError::precondition(
                "sequence",
                format!(
                    "entry {sequence} ({}) defines a product; products are changed by a new version, not reversed",
                    original.command.name()
                ),
            )
            .into());
        };
        let branch = self.find_branch("sequence", original_branch)?;
        // An entry of the closed period is reversed after the close, so that
        // the closed books stay as they are.
        let in_closed_period = branch
            .closed
            .filter(|closed| original.effective_date <= closed.through);
        let date = match (effective_date, in_closed_period) {
            (Some(date), _) => self.resolve_date("effective_date", Some(date), branch, context)?,
            (None, Some(closed)) => closed.through.succ_opt().unwrap_or(closed.through),
            (None, None) => original.effective_date,
        };
        not_before(
            "effective_date",
            date,
            original.effective_date,
            "the reversed entry's date",
        )?;
        let undo = self.undo_of(&original, branch, date)?;
        let loan_transaction = matches!(
            undo,
            Undo::Tranche { .. }
                | Undo::Repayment(_)
                | Undo::WriteOff { .. }
                | Undo::CollectionSheet { .. }
        );
        if let Some(closed) = in_closed_period
            && (loan_transaction || matches!(undo, Undo::Disbursement { .. }))
        {
            return Err(DomainError::precondition(
                "sequence",
                format!(
                    "entry {sequence} changed a loan on {}, in branch {}'s closed period (closed through {} by entry {}): a loan's transaction is reversed as of its own date, which would change the closed books; reopen the period to reverse it",
                    original.effective_date, branch.id, closed.through, closed.by
                ),
            )
            .into());
        }
        if loan_transaction && date != original.effective_date {
            // Undone as of its own date, a loan transaction leaves every
            // installment due before any later date as it was: arrears on
            // past dates stay right.
            return Err(DomainError::invalid(
                "effective_date",
                format!(
                    "{date}: entry {sequence} changed a loan, and a loan's transaction is reversed as of its own date, {}",
                    original.effective_date
                ),
            )
            .into());
        }
        let postings = original
            .postings
            .iter()
            .map(|p| Posting {
                account: p.account.clone(),
                side: p.side.opposite(),
                amount: p.amount,
            })
            .collect();
        Ok(Decision {
            branch: Some(branch.id.clone()),
            effective_date: date,
            postings,
            outcome: Outcome::Reversed { sequence, undo },
        })
    }

    /// What reversing `original` undoes, if the state allows it.
    fn undo_of(
        &self,
        original: &EntryBody,
        branch: &Branch,
        date: NaiveDate,
    ) -> Result<Undo, DomainError> {
        let sequence = original.sequence;
        match (&original.command, &original.outcome) {
            (CommandBody::DepositSavings { amount, .. }, Outcome::SavingsMoved { account, .. }) => {
                self.check_deposit_reversible(sequence, account, amount.amount, branch, date)?;
                Ok(Undo::Deposit {
                    account: account.clone(),
                    amount: amount.amount,
                })
            }
            (
                CommandBody::WithdrawSavings { amount, .. },
                Outcome::SavingsMoved { account, .. },
            ) => Ok(Undo::Withdrawal {
                account: account.clone(),
                amount: amount.amount,
            }),
            (
                _,
                Outcome::LoanDisbursed {
                    loan, terms, fees, ..
                },
            ) => {
                let state = self.find_loan("sequence", loan)?;
                if state.events.len() > 1 {
                    return Err(DomainError::precondition(
                        "sequence",
                        format!(
                            "loan {loan} disbursed in entry {sequence} has later transactions; reverse them first (latest: entry {})",
                            state.events.last().copied().unwrap_or(sequence)
                        ),
                    ));
                }
                Ok(Undo::Disbursement {
                    loan: loan.clone(),
                    principal: terms.principal,
                    fees: loans::charged(fees, FeeCollection::AtDisbursement)?,
                })
            }
            (
                CommandBody::DisburseTranche { amount, .. },
                Outcome::TrancheDisbursed { loan, recast, fees },
            ) => {
                self.check_latest_on_loan(sequence, loan)?;
                Ok(Undo::Tranche {
                    loan: loan.clone(),
                    amount: amount.amount,
                    fees: loans::charged(fees, FeeCollection::AtDisbursement)?,
                    recast: recast.clone(),
                })
            }
            (_, Outcome::RepaymentAllocated(repayment)) => {
                self.check_latest_on_loan(sequence, &repayment.loan)?;
                Ok(Undo::Repayment(repayment.clone()))
            }
            (_, Outcome::WrittenOff { loan, principal }) => {
                self.check_latest_on_loan(sequence, loan)?;
                Ok(Undo::WriteOff {
                    loan: loan.clone(),
                    principal: *principal,
                })
            }
            (
                CommandBody::RecordCollectionSheet {
                    lines: commands, ..
                },
                Outcome::CollectionSheetRecorded { lines },
            ) => {
                for (i, (line, command)) in lines.iter().zip(commands).enumerate() {
                    if let Some(repayment) = &line.repayment {
                        self.check_latest_on_loan(sequence, &repayment.loan)
                            .map_err(|e| e.within(&format!("lines[{i}]")))?;
                    }
                    if let (Some(deposit), Some((_, amount))) = (&line.deposit, &command.deposit) {
                        self.check_deposit_reversible(
                            sequence,
                            &deposit.account,
                            amount.amount,
                            branch,
                            date,
                        )
                        .map_err(|e| e.within(&format!("lines[{i}]")))?;
                    }
                }
                Ok(Undo::CollectionSheet {
                    repayments: lines.iter().filter_map(|l| l.repayment.clone()).collect(),
                    deposits: commands
                        .iter()
                        .filter_map(|c| c.deposit.as_ref())
                        .map(|(account, amount)| SavingsAmount {
                            account: account.clone(),
                            amount: amount.amount,
                        })
                        .collect(),
                })
            }
            (CommandBody::ClosePeriod { .. } | CommandBody::ReopenPeriod { .. }, _) => {
                Err(DomainError::precondition(
                    "sequence",
                    format!(
                        "entry {sequence} ({}) closes or reopens the books; it is not reversed: reopen them (reopen-period) or close them again",
                        original.command.name()
                    ),
                ))
            }
            (
                CommandBody::FundBranch { amount, .. }
                | CommandBody::ReturnBranchFunding { amount, .. },
                Outcome::FundingMoved { source, .. },
            ) => {
                let returned = matches!(original.command, CommandBody::ReturnBranchFunding { .. });
                if !returned {
                    // Undoing a funding takes it out of the source again.
                    self.check_funding_held(
                        "sequence",
                        branch,
                        *source,
                        amount.amount,
                        date,
                        &format!("reversing the funding of entry {sequence}"),
                    )?;
                }
                Ok(Undo::Funding {
                    source: *source,
                    amount: amount.amount,
                    returned,
                })
            }
            (CommandBody::PostSavingsInterest { .. }, _) => Err(DomainError::precondition(
                "sequence",
                format!(
                    "entry {sequence} posts savings interest, which is not reversed: the periods after it build on the balances it credited; a different rate applies from a new version of the savings product"
                ),
            )),
            (command, _) => Err(DomainError::precondition(
                "sequence",
                format!(
                    "entry {sequence} ({}) moves no money; only entries that move money can be reversed",
                    command.name()
                ),
            )),
        }
    }

    /// Funds put into a branch's cash from `source` (debit cash, credit
    /// the source's account), or, when `returned`, given back to it (debit
    /// the source, credit cash): never more than the branch holds from that
    /// source on the return's date or any later one.
    fn decide_funding(
        &self,
        branch_id: &BranchId,
        source: FundingSource,
        amount: Money,
        effective_date: Option<NaiveDate>,
        returned: bool,
        context: ExecContext,
    ) -> Result<Decision, DomainError> {
        let branch = self.find_branch("branch_id", branch_id)?;
        let date = self.resolve_date("effective_date", effective_date, branch, context)?;
        not_before(
            "effective_date",
            date,
            branch.opened_on,
            "the branch opened",
        )?;
        amount.check("amount", branch.currency, &branch.books())?;
        let cash = AccountId::Cash(branch_id.clone());
        let account = source.account(branch_id);
        let held = self.balance(&account).on_normal_side(account.kind());
        let (balance_after, postings) = if returned {
            self.check_funding_held("amount", branch, source, amount.amount, date, "the return")?;
            let after = checked_sub(held, amount.amount).map_err(|_| too_large("amount"))?;
            (
                after,
                vec![
                    Posting::debit(account, amount.amount),
                    Posting::credit(cash, amount.amount),
                ],
            )
        } else {
            let after = checked_add(held, amount.amount).map_err(|_| too_large("amount"))?;
            (
                after,
                vec![
                    Posting::debit(cash, amount.amount),
                    Posting::credit(account, amount.amount),
                ],
            )
        };
        Ok(Decision {
            branch: Some(branch_id.clone()),
            effective_date: date,
            outcome: Outcome::FundingMoved {
                source,
                balance_after: balance_after.normalize(),
            },
            postings,
        })
    }

    /// Refuses taking `amount` out of what `branch` holds from `source` on
    /// `date` when that would leave less than nothing on that day or a
    /// later one (`what` says what takes it, for the message).
    fn check_funding_held(
        &self,
        field: &str,
        branch: &Branch,
        source: FundingSource,
        amount: Decimal,
        date: NaiveDate,
        what: &str,
    ) -> Result<(), DomainError> {
        let line = Line::of(&source.account(&branch.id), None);
        let (lowest, on) = self.books.line_lowest_from(&branch.id, &line, date);
        if lowest < amount {
            return Err(DomainError::precondition(
                field,
                format!(
                    "{what} of {} dated {date} is more than branch {} holds from {source} on {on}: {}",
                    show(amount, branch.currency),
                    branch.id,
                    show(lowest, branch.currency)
                ),
            ));
        }
        Ok(())
    }

    fn check_deposit_reversible(
        &self,
        sequence: u64,
        account: &SavingsAccountId,
        amount: Decimal,
        branch: &Branch,
        date: NaiveDate,
    ) -> Result<(), DomainError> {
        let state = self.savings.get(account).ok_or_else(|| {
            DomainError::not_found("sequence", "savings account", account.as_str())
        })?;
        let (lowest, on) = state.lowest_balance_from(date);
        if lowest < amount {
            return Err(DomainError::precondition(
                "sequence",
                format!(
                    "reversing the deposit of {} in entry {sequence} would take savings account {account} below zero on {on} (balance then {})",
                    show(amount, branch.currency),
                    show(lowest, branch.currency)
                ),
            ));
        }
        Ok(())
    }

    /// Loan transactions are undone newest first: `sequence` must be the
    /// latest standing entry on `loan`.
    fn check_latest_on_loan(&self, sequence: u64, loan: &LoanId) -> Result<(), DomainError> {
        let state = self.find_loan("sequence", loan)?;
        match state.events.last() {
            Some(&last) if last == sequence => Ok(()),
            Some(&last) => Err(DomainError::precondition(
                "sequence",
                format!(
                    "entry {sequence} is not the latest transaction on loan {loan}; reverse entry {last} first"
                ),
            )),
            None => Err(DomainError::precondition(
                "sequence",
                format!("loan {loan} has no transaction to reverse"),
            )),
        }
    }

    /// The least balance a withdrawal on `date` must leave in `account`:
    /// for a compulsory account, what the rules of the member's active loans
    /// require (a share of outstanding principal, or a fixed deposit per
    /// installment due so far), rounded up to the currency's unit; zero
    /// otherwise.
    pub fn required_savings(
        &self,
        account: &SavingsAccount,
        date: NaiveDate,
    ) -> Result<Decimal, DomainError> {
        let Some(member) = self.members.get(&account.member) else {
            return Ok(Decimal::ZERO);
        };
        let loans = member.loans.iter().filter_map(|id| self.loans.get(id));
        self.required_savings_with(account, date, loans.map(|loan| &**loan))
    }

    /// [`Self::required_savings`] with the member's loans as given (as they
    /// stood after an earlier entry, say).
    pub fn required_savings_with<'a>(
        &self,
        account: &SavingsAccount,
        date: NaiveDate,
        loans: impl IntoIterator<Item = &'a Loan>,
    ) -> Result<Decimal, DomainError> {
        if account.kind != SavingsKind::Compulsory {
            return Ok(Decimal::ZERO);
        }
        let Some(branch) = self.branches.get(&account.branch) else {
            return Ok(Decimal::ZERO);
        };
        let mut required = Decimal::ZERO;
        for loan in loans {
            if loan.status != LoanStatus::Active {
                continue;
            }
            let percent = |p: Decimal| {
                loan.principal_outstanding()
                    .checked_mul(p)
                    .and_then(|x| x.checked_div(Decimal::ONE_HUNDRED))
                    .ok_or(DomainError::Overflow)
            };
            let share = match loan.policy.compulsory_savings {
                CompulsorySavings::PercentOfPrincipal(p) => percent(p)?,
                CompulsorySavings::FixedPerInstallment(amount) => {
                    let due = loan
                        .installments
                        .iter()
                        .take_while(|i| i.due.due_date <= date)
                        .count();
                    amount
                        .checked_mul(Decimal::from(due))
                        .ok_or(DomainError::Overflow)?
                }
                CompulsorySavings::None if loan.policy.branch_share => {
                    percent(branch.compulsory_savings_percent)?
                }
                CompulsorySavings::None => Decimal::ZERO,
            };
            required = checked_add(required, share)?;
        }
        Ok(required.round_dp_with_strategy(
            branch.currency.decimal_places(),
            RoundingStrategy::AwayFromZero,
        ))
    }

    pub(super) fn compulsory_account<'a>(
        &'a self,
        member: &'a Member,
    ) -> Option<&'a SavingsAccountId> {
        member.savings_accounts.iter().find(|id| {
            self.savings
                .get(*id)
                .is_some_and(|a| a.kind == SavingsKind::Compulsory)
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
            .ok_or_else(|| DomainError::not_found(field, "member", id.as_str()))
    }

    pub(super) fn find_loan(&self, field: &str, id: &LoanId) -> Result<&Loan, DomainError> {
        self.loan(id)
            .ok_or_else(|| DomainError::not_found(field, "loan", id.as_str()))
    }
}

/// The action a command needs; `None` for access commands, which
/// [`crate::domain::access::Access::decide`] checks.
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

/// Refuses anything but an active loan, saying what it is instead.
fn check_active(loan: &Loan) -> Result<(), DomainError> {
    let id = &loan.id;
    let why = match loan.status {
        LoanStatus::Active => return Ok(()),
        LoanStatus::Closed => format!("loan {id} is closed: repaid in full"),
        LoanStatus::Cancelled => format!("loan {id} is cancelled: its disbursement was reversed"),
        LoanStatus::WrittenOff => format!("loan {id} is written off"),
    };
    Err(DomainError::precondition("loan_id", why))
}

/// Fees deducted at disbursement must leave money to pay out.
fn fees_leave_something(
    field: &str,
    principal: Decimal,
    fees: &[FeeCharge],
    currency: Currency,
) -> Result<(), DomainError> {
    let deducted =
        loans::charged(fees, FeeCollection::AtDisbursement).map_err(|_| fees_overflow(field))?;
    if deducted >= principal {
        return Err(DomainError::precondition(
            field,
            format!(
                "the fees deducted at disbursement ({}) leave nothing of {} to pay out",
                show(deducted, currency),
                show(principal, currency)
            ),
        ));
    }
    Ok(())
}

/// Transactions on a loan are entered in date order.
fn in_date_order(field: &str, date: NaiveDate, loan: &Loan) -> Result<(), DomainError> {
    if date < loan.last_repayment_on {
        return Err(DomainError::precondition(
            field,
            format!(
                "{date} is before loan {}'s last transaction on {}; enter a loan's transactions in date order",
                loan.id, loan.last_repayment_on
            ),
        ));
    }
    Ok(())
}

/// Debit the loan with the principal; credit cash with what is paid out and
/// each fee deducted at disbursement to its income account.
fn disbursement_postings(
    loan: &LoanId,
    branch: &BranchId,
    principal: Decimal,
    fees: &[FeeCharge],
) -> Result<Vec<Posting>, Overflow> {
    let mut postings = vec![Posting::debit(AccountId::Loan(loan.clone()), principal)];
    let mut paid_out = principal;
    let mut fee_postings = Vec::new();
    for fee in fees {
        if fee.collection == FeeCollection::AtDisbursement {
            paid_out = paid_out.checked_sub(fee.amount).ok_or(Overflow)?;
            fee_postings.push(Posting::credit(
                AccountId::FeeIncome(branch.clone(), fee.code.clone()),
                fee.amount,
            ));
        }
    }
    if !paid_out.is_zero() {
        postings.push(Posting::credit(AccountId::Cash(branch.clone()), paid_out));
    }
    postings.extend(fee_postings);
    Ok(postings)
}

/// The account installment fees are credited to: the loan's fee collected
/// with installments (a product has at most one).
fn installment_fee_account(loan: &Loan, branch: &BranchId) -> AccountId {
    let code = loan
        .policy
        .fees
        .iter()
        .find(|f| f.collection == FeeCollection::WithFirstInstallment)
        .map(|f| f.code.clone())
        .unwrap_or_else(|| FeeCode::parse("fee", "installment").expect("a valid fee code"));
    AccountId::FeeIncome(branch.clone(), code)
}

/// Postings of many lines merged by account and side, in first-seen order.
#[derive(Default)]
struct Postings {
    postings: Vec<Posting>,
    /// Where each (account, side) is in `postings`: merging stays linear in
    /// the number of lines.
    index: HashMap<(AccountId, bool), usize>,
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

/// Refuses an entry whose canonical encoding is over [`ENTRY_BYTES_MAX`]:
/// the journal could not hold it. The field named is the list that made it
/// so large.
fn check_entry_size(body: &EntryBody) -> Result<(), DomainError> {
    // The canonical bytes are the version byte, the rules version, then the
    // postcard encoding of the body.
    let header = 1 + std::mem::size_of::<crate::domain::entry::RulesVersion>();
    let len = postcard::serialize_with_flavor(body, postcard::ser_flavors::Size::default())
        .map_or(usize::MAX, |len: usize| len.saturating_add(header));
    if len <= ENTRY_BYTES_MAX {
        return Ok(());
    }
    let (field, advice) = match &body.command {
        CommandBody::RecordCollectionSheet { .. } => {
            ("lines", "; record the meeting on several smaller sheets")
        }
        CommandBody::CreateProduct { .. } | CommandBody::UpdateProduct { .. } => ("rules", ""),
        CommandBody::DisburseLoan { .. } => ("loan", ""),
        CommandBody::ReverseEntry { .. } => ("sequence", ""),
        _ => ("", ""),
    };
    Err(DomainError::invalid(
        field,
        format!(
            "the journal entry would be {len} bytes, over the {ENTRY_BYTES_MAX} bytes an entry may have{advice}"
        ),
    ))
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
