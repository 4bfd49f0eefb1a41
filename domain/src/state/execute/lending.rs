//! Loans: disbursements and tranches, repayments and write-offs.

use super::*;

impl LedgerState {
    pub(super) fn decide_disbursement(
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

    pub(super) fn decide_tranche(
        &self,
        loan_id: &LoanId,
        amount: Money,
        disbursed_on: Option<NaiveDate>,
        context: ExecContext,
    ) -> Result<Decision, DomainError> {
        let slot = self.find_loan("loan_id", loan_id)?;
        let branch = self.find_branch("loan_id", slot.branch())?;
        let loan = running(&slot)?;
        amount.check("amount", branch.currency, &branch.books())?;
        let date = self.resolve_date("disbursed_on", disbursed_on, branch, context)?;
        in_date_order("disbursed_on", date, &slot)?;
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
    pub(super) fn decide_repayment(
        &self,
        slot: &LoanSlot,
        amount: Money,
        date: NaiveDate,
    ) -> Result<(Repayment, Vec<Posting>), DomainError> {
        let loan_id = slot.id();
        let branch = self.find_branch("loan_id", slot.branch())?;
        amount.check("amount", branch.currency, &branch.books())?;
        in_date_order("effective_date", date, slot)?;
        let cash = AccountId::Cash(branch.id.clone());
        // A closed or cancelled loan is refused here as below.
        let loan = running_or_written_off(slot)?;
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
            _ => check_active(slot)?,
        }
        let repayment = loan.allocate(amount.amount, date)?;
        // Cash, principal, interest and fees: room for all four at once
        // (grown from one, the list was allocated again a repayment).
        let mut postings = Vec::with_capacity(4);
        postings.push(Posting::debit(cash, amount.amount));
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

    pub(super) fn decide_write_off(
        &self,
        loan_id: &LoanId,
        effective_date: Option<NaiveDate>,
        context: ExecContext,
    ) -> Result<Decision, DomainError> {
        let slot = self.find_loan("loan_id", loan_id)?;
        let branch = self.find_branch("loan_id", slot.branch())?;
        let loan = running(&slot)?;
        let date = self.resolve_date("effective_date", effective_date, branch, context)?;
        in_date_order("effective_date", date, &slot)?;
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

    /// Loan transactions are undone newest first: `sequence` must be the
    /// latest standing entry on `loan`. A closed loan memory let go of
    /// is read back whole now (applying the reversal reads it again): a
    /// store that cannot read it refuses the reversal, which may be asked
    /// again, rather than failing it once decided.
    pub(super) fn check_latest_on_loan(
        &self,
        sequence: u64,
        loan: &LoanId,
    ) -> Result<(), DomainError> {
        let state = self.find_whole_loan("sequence", loan)?;
        match state.events.last() {
            Some(last) if last == sequence => Ok(()),
            Some(last) => Err(DomainError::precondition(
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
}

/// Refuses anything but an active loan, saying what it is instead.
pub(super) fn check_active(loan: &LoanSlot) -> Result<(), DomainError> {
    let id = loan.id();
    let why = match loan.status() {
        LoanStatus::Active => return Ok(()),
        LoanStatus::Closed => format!("loan {id} is closed: repaid in full"),
        LoanStatus::Cancelled => format!("loan {id} is cancelled: its disbursement was reversed"),
        LoanStatus::WrittenOff => format!("loan {id} is written off"),
    };
    Err(DomainError::precondition("loan_id", why))
}

/// Fees deducted at disbursement must leave money to pay out.
pub(super) fn fees_leave_something(
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
pub(super) fn in_date_order(
    field: &str,
    date: NaiveDate,
    loan: &LoanSlot,
) -> Result<(), DomainError> {
    if date < loan.last_repayment_on() {
        return Err(DomainError::precondition(
            field,
            format!(
                "{date} is before loan {}'s last transaction on {}; enter a loan's transactions in date order",
                loan.id(),
                loan.last_repayment_on()
            ),
        ));
    }
    Ok(())
}

/// The loan a command for an active loan works on, once
/// [`check_active`] lets it through.
pub(super) fn running(slot: &LoanSlot) -> Result<&Loan, DomainError> {
    check_active(slot)?;
    running_or_written_off(slot)
}

/// The loan a repayment works on: refused as [`check_active`] refuses it
/// when closed or cancelled and read back as its summary (a loan held whole is
/// let through, its status checked by the caller).
pub(super) fn running_or_written_off(slot: &LoanSlot) -> Result<&Loan, DomainError> {
    match slot {
        LoanSlot::Whole(loan) => Ok(loan),
        LoanSlot::Ended(_) => {
            check_active(slot)?;
            // A summary is only ever of a closed or cancelled loan.
            Err(DomainError::precondition(
                "loan_id",
                format!("loan {} has ended", slot.id()),
            ))
        }
    }
}

/// Debit the loan with the principal; credit cash with what is paid out and
/// each fee deducted at disbursement to its income account.
pub(super) fn disbursement_postings(
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
pub(super) fn installment_fee_account(loan: &Loan, branch: &BranchId) -> AccountId {
    let code = loan
        .policy
        .fees
        .iter()
        .find(|f| f.collection == FeeCollection::WithFirstInstallment)
        .map(|f| f.code.clone())
        .unwrap_or_else(|| FeeCode::parse("fee", "installment").expect("a valid fee code"));
    AccountId::FeeIncome(branch.clone(), code)
}
