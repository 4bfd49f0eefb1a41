//! Read-only views of members and loans for auditors.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::*;

/// A savings account with its balance and required minimum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavingsView {
    pub account: SavingsAccount,
    pub balance: Decimal,
    pub required_minimum: Decimal,
}

/// A member with her accounts.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberView {
    pub member: Member,
    pub currency: Currency,
    pub savings: Vec<SavingsView>,
    pub loans: Vec<Loan>,
}

/// Where an installment stands on a date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallmentStatus {
    Paid,
    NotDue,
    Due,
    Overdue,
}

/// A loan as of a date.
#[derive(Clone, Debug, PartialEq)]
pub struct LoanView {
    pub loan: Loan,
    pub as_of: NaiveDate,
    pub statuses: Vec<InstallmentStatus>,
    pub principal_overdue: Decimal,
    pub interest_overdue: Decimal,
}

impl LedgerState {
    /// A member with her savings and loans.
    pub fn member_view(&self, id: &MemberId) -> Result<MemberView, DomainError> {
        let member = self.find_member("member_id", id)?;
        let branch = self.find_branch("member_id", &member.branch)?;
        let mut savings = Vec::new();
        for account_id in &member.savings_accounts {
            let Some(account) = self.savings.get(account_id) else {
                continue;
            };
            savings.push(SavingsView {
                account: account.clone(),
                balance: self
                    .balance(&AccountId::Savings(account_id.clone()))
                    .on_normal_side(AccountKind::Liability),
                required_minimum: self.required_savings(account)?,
            });
        }
        let loans = member
            .loans
            .iter()
            .filter_map(|id| self.loans.get(id))
            .cloned()
            .collect();
        Ok(MemberView {
            member: member.clone(),
            currency: branch.currency,
            savings,
            loans,
        })
    }

    /// A loan with each installment's status on `as_of` (today in the
    /// branch's zone at `now` when `None`).
    pub fn loan_view(
        &self,
        id: &LoanId,
        as_of: Option<NaiveDate>,
        now: DateTime<Utc>,
    ) -> Result<LoanView, DomainError> {
        let loan = self.find_loan("loan_id", id)?;
        let branch = self.find_branch("loan_id", &loan.branch)?;
        let as_of = as_of.unwrap_or_else(|| today_in(&branch.time_zone, now));
        let mut view = LoanView {
            loan: loan.clone(),
            as_of,
            statuses: Vec::with_capacity(loan.installments.len()),
            principal_overdue: Decimal::ZERO,
            interest_overdue: Decimal::ZERO,
        };
        for installment in &loan.installments {
            let status = if installment.is_paid() {
                InstallmentStatus::Paid
            } else if installment.due.due_date > as_of {
                InstallmentStatus::NotDue
            } else if installment.due.due_date == as_of {
                InstallmentStatus::Due
            } else {
                view.principal_overdue += installment.principal_unpaid();
                view.interest_overdue += installment.interest_unpaid();
                InstallmentStatus::Overdue
            };
            view.statuses.push(status);
        }
        if loan.status == LoanStatus::Cancelled {
            view.principal_overdue = Decimal::ZERO;
            view.interest_overdue = Decimal::ZERO;
        }
        Ok(view)
    }

    /// Checks that an account exists in the chart (its branch, loan or
    /// savings account exists) and gives its currency.
    pub fn account_currency(&self, account: &AccountId) -> Result<Currency, DomainError> {
        let branch = match account {
            AccountId::Cash(branch) | AccountId::InterestIncome(branch) => branch.clone(),
            AccountId::Loan(loan) => self.find_loan("account", loan)?.branch.clone(),
            AccountId::Savings(id) => self
                .savings
                .get(id)
                .ok_or_else(|| DomainError::not_found("account", "savings account", id.as_str()))?
                .branch
                .clone(),
        };
        Ok(self.find_branch("account", &branch)?.currency)
    }
}
