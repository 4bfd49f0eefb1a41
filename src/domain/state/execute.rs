//! Deciding commands: checks against the state and builds the entry body.
//! Nothing here changes the state.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::*;

/// Reads an earlier entry's body (for reversals).
pub type LookupEntry<'a> = dyn Fn(u64) -> Result<Option<EntryBody>, String> + 'a;

/// A decision: the branch, effective date, outcome and postings of an entry.
struct Decision {
    branch: BranchId,
    effective_date: NaiveDate,
    outcome: Outcome,
    postings: Vec<Posting>,
}

impl Decision {
    fn structural(branch: BranchId, effective_date: NaiveDate) -> Decision {
        Decision {
            branch,
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
        let decision = self.decide(&command.body, context, lookup)?;
        let body = EntryBody {
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
        };
        assert!(
            body.is_balanced(),
            "entry {} is not balanced: {:?}",
            body.sequence,
            body.postings
        );
        Ok(body)
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
            CommandBody::DisburseLoan {
                member_id,
                terms,
                disbursed_on,
            } => self.decide_disbursement(member_id, terms, *disbursed_on, context)?,
            CommandBody::RecordRepayment {
                loan_id,
                amount,
                effective_date,
            } => self.decide_repayment(loan_id, *amount, *effective_date, context)?,
            CommandBody::ReverseEntry {
                sequence,
                effective_date,
                ..
            } => self.decide_reversal(*sequence, *effective_date, context, lookup)?,
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
                format!("{time_zone:?} is not an IANA time zone such as \"Asia/Ho_Chi_Minh\""),
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
        let date = opened_on.unwrap_or(today);
        not_in_future("opened_on", date, today, time_zone)?;
        Ok(Decision::structural(branch_id.clone(), date))
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
            branch: branch.id.clone(),
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
        check_currency("amount.currency", amount, branch)?;
        let date = self.resolve_date("effective_date", effective_date, branch, context)?;
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
            let after = checked_add(balance, amount.amount)?;
            (
                after,
                vec![
                    Posting::debit(cash, amount.amount),
                    Posting::credit(savings, amount.amount),
                ],
            )
        } else {
            let after = checked_sub(balance, amount.amount)?;
            self.check_withdrawal(account, date, balance, amount.amount, after, branch)?;
            (
                after,
                vec![
                    Posting::debit(savings, amount.amount),
                    Posting::credit(cash, amount.amount),
                ],
            )
        };
        Ok(Decision {
            branch: branch.id.clone(),
            effective_date: date,
            outcome: Outcome::SavingsMoved {
                account: account_id.clone(),
                balance_after: balance_after.normalize(),
            },
            postings,
        })
    }

    fn check_withdrawal(
        &self,
        account: &SavingsAccount,
        date: NaiveDate,
        balance: Decimal,
        amount: Decimal,
        after: Decimal,
        branch: &Branch,
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
        let required = self.required_savings(account)?;
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
        input: &LoanTermsInput,
        disbursed_on: Option<NaiveDate>,
        context: ExecContext,
    ) -> Result<Decision, DomainError> {
        let member = self.find_member("member_id", member_id)?;
        let branch = self.find_branch("member_id", &member.branch)?;
        check_currency("terms.principal.currency", input.principal, branch)?;
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
        if input.first_repayment_date <= date {
            return Err(DomainError::invalid(
                "terms.first_repayment_date",
                format!(
                    "{} is not after the disbursement date {date}",
                    input.first_repayment_date
                ),
            ));
        }
        let terms = LoanTerms {
            principal: input.principal.amount,
            annual_interest_rate_percent: input.annual_interest_rate_percent,
            interest_method: input.interest_method,
            installment_count: input.installment_count,
            frequency: input.frequency,
            first_repayment_date: input.first_repayment_date,
            rounding_multiple: input
                .rounding_multiple
                .unwrap_or(branch.currency.unit())
                .normalize(),
            currency_decimal_places: branch.currency.decimal_places(),
        };
        let schedule = compute_schedule(&terms).map_err(|e| {
            let text = e.to_string();
            match text.split_once(": ") {
                Some((field, message)) if !field.contains(' ') => {
                    DomainError::invalid(&format!("terms.{field}"), message)
                }
                _ => DomainError::invalid("terms", text),
            }
        })?;
        let schedule = schedule
            .into_iter()
            .map(|mut i| {
                i.principal = i.principal.normalize();
                i.interest = i.interest.normalize();
                i
            })
            .collect();
        let loan = LoanId::new(member_id, 'L', member.loans.len() as u32 + 1);
        let principal = terms.principal;
        Ok(Decision {
            branch: branch.id.clone(),
            effective_date: date,
            postings: vec![
                Posting::debit(AccountId::Loan(loan.clone()), principal),
                Posting::credit(AccountId::Cash(branch.id.clone()), principal),
            ],
            outcome: Outcome::LoanDisbursed {
                loan,
                terms,
                currency: branch.currency,
                schedule,
            },
        })
    }

    fn decide_repayment(
        &self,
        loan_id: &LoanId,
        amount: Money,
        effective_date: Option<NaiveDate>,
        context: ExecContext,
    ) -> Result<Decision, DomainError> {
        let loan = self.find_loan("loan_id", loan_id)?;
        let branch = self.find_branch("loan_id", &loan.branch)?;
        match loan.status {
            LoanStatus::Active => {}
            LoanStatus::Closed => {
                return Err(DomainError::precondition(
                    "loan_id",
                    format!("loan {loan_id} is closed: repaid in full"),
                ));
            }
            LoanStatus::Cancelled => {
                return Err(DomainError::precondition(
                    "loan_id",
                    format!("loan {loan_id} is cancelled: its disbursement was reversed"),
                ));
            }
        }
        check_currency("amount.currency", amount, branch)?;
        let date = self.resolve_date("effective_date", effective_date, branch, context)?;
        if date < loan.last_repayment_on {
            return Err(DomainError::precondition(
                "effective_date",
                format!(
                    "{date} is before loan {loan_id}'s last transaction on {}; enter repayments in date order",
                    loan.last_repayment_on
                ),
            ));
        }
        let principal_outstanding = loan.principal_outstanding();
        let interest_outstanding = loan.interest_outstanding();
        let outstanding = checked_add(principal_outstanding, interest_outstanding)?;
        if amount.amount > outstanding {
            return Err(DomainError::precondition(
                "amount",
                format!(
                    "{} is more than the {} outstanding on loan {loan_id} (principal {}, interest {})",
                    show(amount.amount, branch.currency),
                    show(outstanding, branch.currency),
                    show(principal_outstanding, branch.currency),
                    show(interest_outstanding, branch.currency)
                ),
            ));
        }
        let payments = allocate(loan.from_first_unpaid(), amount.amount);
        let principal: Decimal = payments.iter().map(|p| p.principal).sum();
        let interest: Decimal = payments.iter().map(|p| p.interest).sum();
        let mut postings = vec![Posting::debit(
            AccountId::Cash(branch.id.clone()),
            amount.amount,
        )];
        if !principal.is_zero() {
            postings.push(Posting::credit(AccountId::Loan(loan_id.clone()), principal));
        }
        if !interest.is_zero() {
            postings.push(Posting::credit(
                AccountId::InterestIncome(branch.id.clone()),
                interest,
            ));
        }
        let principal_after = principal_outstanding - principal;
        Ok(Decision {
            branch: branch.id.clone(),
            effective_date: date,
            postings,
            outcome: Outcome::RepaymentAllocated {
                loan: loan_id.clone(),
                payments,
                principal_outstanding_after: principal_after.normalize(),
                closed: amount.amount == outstanding,
            },
        })
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
        let branch = self.find_branch("sequence", &original.branch)?;
        let date = match effective_date {
            Some(date) => self.resolve_date("effective_date", Some(date), branch, context)?,
            None => original.effective_date,
        };
        not_before(
            "effective_date",
            date,
            original.effective_date,
            "the reversed entry's date",
        )?;
        let undo = self.undo_of(&original, branch, date)?;
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
            branch: branch.id.clone(),
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
                let state = self.savings.get(account).ok_or_else(|| {
                    DomainError::not_found("sequence", "savings account", account.as_str())
                })?;
                let (lowest, on) = state.lowest_balance_from(date);
                if lowest < amount.amount {
                    return Err(DomainError::precondition(
                        "sequence",
                        format!(
                            "reversing the deposit of {} in entry {sequence} would take savings account {account} below zero on {on} (balance then {})",
                            show(amount.amount, branch.currency),
                            show(lowest, branch.currency)
                        ),
                    ));
                }
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
            (_, Outcome::LoanDisbursed { loan, terms, .. }) => {
                let state = self.find_loan("sequence", loan)?;
                if state.has_repayments() {
                    return Err(DomainError::precondition(
                        "sequence",
                        format!(
                            "loan {loan} disbursed in entry {sequence} has repayments; reverse them first"
                        ),
                    ));
                }
                Ok(Undo::Disbursement {
                    loan: loan.clone(),
                    principal: terms.principal,
                })
            }
            (_, Outcome::RepaymentAllocated { loan, payments, .. }) => Ok(Undo::Repayment {
                loan: loan.clone(),
                payments: payments.clone(),
            }),
            (command, _) => Err(DomainError::precondition(
                "sequence",
                format!(
                    "entry {sequence} ({}) moves no money; only deposits, withdrawals, disbursements and repayments can be reversed",
                    command.name()
                ),
            )),
        }
    }

    /// The least balance a withdrawal must leave in `account`: for a
    /// compulsory account, the branch's share of the member's outstanding
    /// principal, rounded up to the currency's unit; zero otherwise.
    pub fn required_savings(&self, account: &SavingsAccount) -> Result<Decimal, DomainError> {
        if account.kind != SavingsKind::Compulsory {
            return Ok(Decimal::ZERO);
        }
        let (Some(member), Some(branch)) = (
            self.members.get(&account.member),
            self.branches.get(&account.branch),
        ) else {
            return Ok(Decimal::ZERO);
        };
        let mut outstanding = Decimal::ZERO;
        for loan in member.loans.iter().filter_map(|id| self.loans.get(id)) {
            if loan.status == LoanStatus::Active {
                outstanding = checked_add(outstanding, loan.principal_outstanding())?;
            }
        }
        let share = outstanding
            .checked_mul(branch.compulsory_savings_percent)
            .and_then(|x| x.checked_div(Decimal::ONE_HUNDRED))
            .ok_or(DomainError::Overflow)?;
        Ok(share.round_dp_with_strategy(
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
        let date = given.unwrap_or(today);
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
        self.loans
            .get(id)
            .ok_or_else(|| DomainError::not_found(field, "loan", id.as_str()))
    }
}

/// Spreads a payment over installments, oldest first: each installment's
/// interest, then its principal.
fn allocate(installments: &[InstallmentState], amount: Decimal) -> Vec<InstallmentPayment> {
    let mut left = amount;
    let mut payments = Vec::new();
    for installment in installments {
        if left.is_zero() {
            break;
        }
        let interest = installment.interest_unpaid().min(left);
        left -= interest;
        let principal = installment.principal_unpaid().min(left);
        left -= principal;
        if !interest.is_zero() || !principal.is_zero() {
            payments.push(InstallmentPayment {
                number: installment.due.number,
                interest: interest.normalize(),
                principal: principal.normalize(),
            });
        }
    }
    payments
}

fn check_currency(field: &str, amount: Money, branch: &Branch) -> Result<(), DomainError> {
    if amount.currency != branch.currency {
        return Err(DomainError::invalid(
            field,
            format!(
                "{} but branch {} keeps its books in {}",
                amount.currency, branch.id, branch.currency
            ),
        ));
    }
    Ok(())
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
