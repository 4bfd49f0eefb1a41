//! The chart of accounts: which accounts exist and on which side they grow.
//!
//! An [`AccountId`] prints and parses as `kind:key`, e.g. `cash:TB`,
//! `loan:TB-0001/L1`, `savings:TB-0001/C1`, `interest-income:TB`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::error::DomainError;
use super::ids::{BranchId, FeeCode, LoanId, SavingsAccountId};

/// Asset, liability, equity, income or expense: decides the account's normal side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountKind {
    /// Debit-normal: cash, loans.
    Asset,
    /// Credit-normal: member savings, funding from head office.
    Liability,
    /// Credit-normal: interest income.
    Income,
    /// Debit-normal.
    Expense,
    /// Credit-normal: capital, retained earnings.
    Equity,
}

impl AccountKind {
    /// True when debits increase the balance.
    pub fn is_debit_normal(self) -> bool {
        matches!(self, AccountKind::Asset | AccountKind::Expense)
    }
}

/// One account of the chart.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AccountId {
    /// A branch's cash (asset). Money comes in by funding (`FundBranch`:
    /// from head office or capital), repayments and deposits, and goes out by
    /// disbursements, withdrawals and funding returned. The ledger records
    /// what happened and does not refuse a disbursement for want of cash, so
    /// a branch that is not funded shows it below zero.
    Cash(BranchId),
    /// Interest earned on a branch's loans (income), cash basis.
    InterestIncome(BranchId),
    /// One loan's outstanding principal (asset): the loan portfolio, per loan.
    Loan(LoanId),
    /// One member savings account (liability): what the branch owes her.
    Savings(SavingsAccountId),
    /// A branch's income from one kind of fee (income), e.g. `fee-income:TB/disbursement`.
    FeeIncome(BranchId, FeeCode),
    /// Principal a branch wrote off (expense).
    LoanLoss(BranchId),
    /// Money collected on written-off loans (income).
    Recoveries(BranchId),
    /// Results of a branch's closed years (equity): each year-end close
    /// carries the year's income and expenses into it. (Added after
    /// encoding version 4's first release: new accounts go at the end, so
    /// older entries decode unchanged.)
    RetainedEarnings(BranchId),
    /// Interest a branch pays on its members' savings (expense).
    InterestExpense(BranchId),
    /// What a branch owes its head office for the funds it sent it
    /// (liability), e.g. `head-office-funding:TB`. (Added with branch
    /// funding: at the end, so older entries decode unchanged.)
    HeadOfficeFunding(BranchId),
    /// Paid-in capital and donated equity placed in a branch (equity),
    /// e.g. `capital:TB`.
    Capital(BranchId),
}

impl AccountId {
    /// Asset, liability, income or expense.
    pub fn kind(&self) -> AccountKind {
        match self {
            AccountId::Cash(_) | AccountId::Loan(_) => AccountKind::Asset,
            AccountId::InterestIncome(_) | AccountId::FeeIncome(..) | AccountId::Recoveries(_) => {
                AccountKind::Income
            }
            AccountId::LoanLoss(_) | AccountId::InterestExpense(_) => AccountKind::Expense,
            AccountId::Savings(_) | AccountId::HeadOfficeFunding(_) => AccountKind::Liability,
            AccountId::RetainedEarnings(_) | AccountId::Capital(_) => AccountKind::Equity,
        }
    }

    /// Parses `kind:key` as given in `field`.
    pub fn parse(field: &str, text: &str) -> Result<AccountId, DomainError> {
        let Some((kind, key)) = text.split_once(':') else {
            return Err(DomainError::invalid(
                field,
                format!(
                    "{text:?} is not an account name (cash:BRANCH, interest-income:BRANCH, fee-income:BRANCH/FEE, loan-loss:BRANCH, recoveries:BRANCH, interest-expense:BRANCH, retained-earnings:BRANCH, head-office-funding:BRANCH, capital:BRANCH, loan:LOAN, savings:ACCOUNT)"
                ),
            ));
        };
        match kind {
            "cash" => Ok(AccountId::Cash(BranchId::parse(field, key)?)),
            "interest-income" => Ok(AccountId::InterestIncome(BranchId::parse(field, key)?)),
            "loan" => Ok(AccountId::Loan(LoanId::parse(field, key)?)),
            "savings" => Ok(AccountId::Savings(SavingsAccountId::parse(field, key)?)),
            "loan-loss" => Ok(AccountId::LoanLoss(BranchId::parse(field, key)?)),
            "recoveries" => Ok(AccountId::Recoveries(BranchId::parse(field, key)?)),
            "retained-earnings" => Ok(AccountId::RetainedEarnings(BranchId::parse(field, key)?)),
            "interest-expense" => Ok(AccountId::InterestExpense(BranchId::parse(field, key)?)),
            "head-office-funding" => Ok(AccountId::HeadOfficeFunding(BranchId::parse(field, key)?)),
            "capital" => Ok(AccountId::Capital(BranchId::parse(field, key)?)),
            "fee-income" => {
                let Some((branch, fee)) = key.split_once('/') else {
                    return Err(DomainError::invalid(
                        field,
                        format!("{text:?} is not of the form fee-income:BRANCH/FEE"),
                    ));
                };
                Ok(AccountId::FeeIncome(
                    BranchId::parse(field, branch)?,
                    FeeCode::parse(field, fee)?,
                ))
            }
            other => Err(DomainError::invalid(
                field,
                format!(
                    "{other:?} is not an account kind (cash, interest-income, fee-income, loan-loss, recoveries, interest-expense, retained-earnings, head-office-funding, capital, loan, savings)"
                ),
            )),
        }
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountId::Cash(b) => write!(f, "cash:{b}"),
            AccountId::InterestIncome(b) => write!(f, "interest-income:{b}"),
            AccountId::Loan(l) => write!(f, "loan:{l}"),
            AccountId::Savings(s) => write!(f, "savings:{s}"),
            AccountId::FeeIncome(b, fee) => write!(f, "fee-income:{b}/{fee}"),
            AccountId::LoanLoss(b) => write!(f, "loan-loss:{b}"),
            AccountId::Recoveries(b) => write!(f, "recoveries:{b}"),
            AccountId::RetainedEarnings(b) => write!(f, "retained-earnings:{b}"),
            AccountId::InterestExpense(b) => write!(f, "interest-expense:{b}"),
            AccountId::HeadOfficeFunding(b) => write!(f, "head-office-funding:{b}"),
            AccountId::Capital(b) => write!(f, "capital:{b}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_round_trip() {
        for text in [
            "cash:TB",
            "interest-income:TB",
            "loan:TB-0001/L1",
            "savings:TB-0001/V2",
            "fee-income:TB/disbursement",
            "loan-loss:TB",
            "recoveries:TB",
            "retained-earnings:TB",
            "interest-expense:TB",
            "head-office-funding:TB",
            "capital:TB",
        ] {
            assert_eq!(AccountId::parse("account", text).unwrap().to_string(), text);
        }
        assert!(AccountId::parse("account", "bank:TB").is_err());
        assert!(AccountId::parse("account", "cash").is_err());
    }
}
