//! Savings accounts, deposits and withdrawals (and the minimum a loan requires), and a branch's funding.

use super::*;

impl LedgerState {
    pub(super) fn decide_open_savings(
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

    pub(super) fn decide_savings_move(
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
    pub(super) fn savings_move(
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
    pub(super) fn check_withdrawal(
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
        let (opening, changes) = self.savings_from(account, date, &mut Default::default())?;
        let (lowest, on) = crate::state::lowest_balance_from(opening, &changes, date);
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

    /// Funds put into a branch's cash from `source` (debit cash, credit
    /// the source's account), or, when `returned`, given back to it (debit
    /// the source, credit cash): never more than the branch holds from that
    /// source on the return's date or any later one.
    pub(super) fn decide_funding(
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
    pub(super) fn check_funding_held(
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
        // Only active loans require savings: a closed or cancelled one,
        // which memory may have let go of, requires none.
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
}
