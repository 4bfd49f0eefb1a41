//! Period-end work: savings products, savings interest, closing and reopening a branch's books.

use super::*;

impl LedgerState {
    /// Refuses a savings movement dated on or before the last period end
    /// whose interest was posted for its account's kind: the interest was
    /// paid on the balances as they stood.
    pub(super) fn check_interest_not_posted(
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
    pub(super) fn decide_savings_product(
        &self,
        product_id: &ProductId,
        kind: SavingsKind,
        rules: &crate::savings_interest::SavingsInterestRules,
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
    pub(super) fn decide_savings_interest(
        &self,
        branch_id: &BranchId,
        period_end: NaiveDate,
        context: ExecContext,
    ) -> Result<Decision, DomainError> {
        use crate::savings_interest::{accrued_from, posted};
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
        // The records of folds the accounts' periods read back, once each.
        let mut reads = super::super::folds::FoldReads::default();
        for (kind, versions, current) in &due {
            let (start, _) = current.rules.posting.period_of(period_end);
            for account in self
                .savings
                .values()
                .filter(|a| a.branch == *branch_id && a.kind == *kind)
            {
                let from = start.max(account.opened_on);
                // The period's changes: memory's, or, for a period begun
                // before a close that folded its first days, read back.
                let (_, changes) = self.savings_from(account, from, &mut reads)?;
                // The balance at the end of the day before `from`: today's
                // less the changes dated from then on (few: the period's),
                // so a posting reads the period, not the account's history.
                let now = self
                    .balance(&AccountId::Savings(account.id.clone()))
                    .on_normal_side(AccountKind::Liability);
                let since_from =
                    crate::totals::sum(changes.range(from..).map(|(_, change)| change))
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
                    let before_since =
                        crate::totals::sum(changes.range(from..since).map(|(_, change)| change))
                            .map_err(overflow)?;
                    let part = accrued_from(
                        checked_add(opening, before_since).map_err(|_| too_large("period_end"))?,
                        &changes,
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
    pub(super) fn decide_close(
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
    pub(super) fn decide_reopen(
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
        // The savings accounts' folds it reopens are read back when it
        // applies: a store that cannot give them refuses it here, rather
        // than stopping the ledger once the entry is written.
        self.folds_taken_back(branch, closed_through)?;
        Ok(Decision {
            branch: Some(branch_id.clone()),
            effective_date: today_in(&branch.time_zone, context.recorded_at),
            postings: Vec::new(),
            outcome: Outcome::PeriodReopened { closed_through },
        })
    }
}
