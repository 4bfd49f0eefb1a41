//! Commands: what a client asks the ledger to do, already parsed and valid in
//! shape (ids, amounts, dates). Whether the ledger's state allows a command is
//! decided by `state::LedgerState::execute`.
//!
//! A command's [`Command::request_hash`] covers everything the client sent
//! except the request id, so a retry can be told from a different request.
//!
//! Every list a client controls has a bound here or beside its type
//! ([`COLLECTION_LINES_MAX`], [`crate::product::FEES_MAX`],
//! [`crate::product::TRANCHES_MAX`], 520 installments), and every
//! date a command or query names lies in [`DATE_MIN`]`..=`[`DATE_MAX`].

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::access::AccessCommand;
use super::account::AccountId;
use super::codec::digest_encoding;
use super::entry::Approval;
use super::error::DomainError;
use super::ids::{
    Actor, BranchId, CenterId, GroupId, LoanId, MemberId, Name, PrincipalId, ProductId, RequestId,
    SavingsAccountId,
};
use super::money::Currency;
use super::product::{LoanApplication, ProductRules};
use super::schedule::{InterestMethod, RepaymentFrequency};

/// Earliest date a command or a query may name.
pub const DATE_MIN: NaiveDate = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap();
/// Latest date a command or a query may name, and a loan's last due date.
pub const DATE_MAX: NaiveDate = NaiveDate::from_ymd_opt(9999, 12, 31).unwrap();

/// Most lines on one collection sheet.
pub const COLLECTION_LINES_MAX: usize = 1000;

/// Refuses a date outside [`DATE_MIN`]`..=`[`DATE_MAX`], naming `field`.
pub fn check_date(field: &str, date: NaiveDate) -> Result<NaiveDate, DomainError> {
    if !(DATE_MIN..=DATE_MAX).contains(&date) {
        return Err(DomainError::invalid(
            field,
            format!("{date} is outside {DATE_MIN} to {DATE_MAX}"),
        ));
    }
    Ok(date)
}

/// Refuses a list of `len` items unless it has 1 to `max` of them (`0` to
/// `max` when `empty_ok`), naming `field` and saying what `items` are.
pub fn check_len(
    field: &str,
    len: usize,
    max: usize,
    empty_ok: bool,
    items: &str,
) -> Result<(), DomainError> {
    let min = usize::from(!empty_ok);
    if len < min || len > max {
        return Err(DomainError::invalid(
            field,
            format!("has {len} {items}; {min} to {max} allowed"),
        ));
    }
    Ok(())
}

/// A positive amount of money, as a client sent it (normalised).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    /// Positive, normalised; the ledger checks its decimal places against
    /// the currency of the books it goes into.
    #[serde(with = "crate::codec::decimal")]
    pub amount: Decimal,
    /// The currency the client named; `None` means that of the books (the
    /// branch's, or the product's).
    pub currency: Option<Currency>,
}

impl Money {
    /// Refuses the amount unless it can be booked in `books`: the same
    /// currency (or none named) and no more decimal places than it has.
    /// `field` names the amount, e.g. `amount` or `lines[2].repayment`;
    /// `whose` says whose books they are, e.g. "branch TB keeps its books"
    /// (written out only into a refusal: a command that passes formats
    /// nothing).
    pub fn check(
        &self,
        field: &str,
        books: Currency,
        whose: &dyn std::fmt::Display,
    ) -> Result<(), DomainError> {
        if let Some(currency) = self.currency
            && currency != books
        {
            return Err(DomainError::invalid(
                &format!("{field}.currency"),
                format!("{currency} but {whose} in {books}"),
            ));
        }
        let places = self.amount.normalize().scale();
        if places > books.decimal_places() {
            return Err(DomainError::invalid(
                &format!("{field}.amount"),
                format!(
                    "{} has {places} decimal places but {books} allows {}",
                    self.amount.normalize(),
                    books.decimal_places()
                ),
            ));
        }
        Ok(())
    }
}

/// A command with the request id that makes it exactly-once and who sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// The client's id for this request.
    pub request_id: RequestId,
    /// Who entered it (as the client says: a clerk at a shared terminal).
    pub actor: Actor,
    /// The authenticated principal who asked for it. Every entry decided
    /// under rules version 2 or later names one; entries of rules version 1
    /// (written before access control) have none.
    pub principal: Option<PrincipalId>,
    /// For a command that needed approval: the checker's approval of the
    /// pending request (the principal is then the maker who asked).
    pub approval: Option<Approval>,
    /// What to do.
    pub body: CommandBody,
}

impl Command {
    /// SHA-256 of the normalised request (principal, actor and body, not the
    /// request id): a request id reused by another principal is a different
    /// request, never a retry that returns someone else's result. Without a
    /// principal (rules version 1) it covers actor and body, as it did then.
    pub fn request_hash(&self) -> [u8; 32] {
        let mut digest = Sha256::new();
        match (&self.principal, &self.approval) {
            (None, _) => digest_encoding(&(&self.actor, &self.body), &mut digest),
            (Some(principal), None) => {
                digest_encoding(&(principal, &self.actor, &self.body), &mut digest)
            }
            (Some(principal), Some(approval)) => {
                digest_encoding(&(principal, approval, &self.actor, &self.body), &mut digest)
            }
        }
        digest.finalize().into()
    }
}

/// Kind of savings account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SavingsKind {
    /// Tied to loans; cannot fall below the required share while a loan is outstanding.
    Compulsory,
    /// Withdrawable down to zero.
    Voluntary,
}

/// Where money put into a branch's cash comes from, and so the line of the
/// branch's books credited with it (and debited when it goes back).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FundingSource {
    /// Funds the head office lends or transfers to the branch to lend out:
    /// a liability of the branch to the head office (the institution's
    /// borrowings and other funding as the branch sees them).
    HeadOffice,
    /// Paid-in capital or donated equity placed in the branch: equity.
    Capital,
}

impl FundingSource {
    /// Every source.
    pub const ALL: [FundingSource; 2] = [FundingSource::HeadOffice, FundingSource::Capital];

    /// The source's name on the wire and in the CLI: `head-office`, `capital`.
    pub fn name(self) -> &'static str {
        match self {
            FundingSource::HeadOffice => "head-office",
            FundingSource::Capital => "capital",
        }
    }

    /// The source named `text` (as [`FundingSource::name`] gives it), for `field`.
    pub fn parse(field: &str, text: &str) -> Result<FundingSource, DomainError> {
        FundingSource::ALL
            .into_iter()
            .find(|source| source.name() == text)
            .ok_or_else(|| {
                DomainError::invalid(
                    field,
                    format!(
                        "{} is not a funding source; use one of {}",
                        super::error::echo(text),
                        FundingSource::ALL.map(FundingSource::name).join(", ")
                    ),
                )
            })
    }

    /// The branch's account credited with funds from this source.
    pub fn account(self, branch: &BranchId) -> AccountId {
        match self {
            FundingSource::HeadOffice => AccountId::HeadOfficeFunding(branch.clone()),
            FundingSource::Capital => AccountId::Capital(branch.clone()),
        }
    }
}

impl std::fmt::Display for FundingSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Loan terms as a client sends them: the principal carries its currency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoanTermsInput {
    /// Principal to disburse.
    pub principal: Money,
    /// Annual rate in percent, 0 to 100.
    #[serde(with = "crate::codec::decimal")]
    pub annual_interest_rate_percent: Decimal,
    /// Flat or declining balance.
    pub interest_method: InterestMethod,
    /// 1 to 520.
    pub installment_count: u32,
    /// Weekly, fortnightly or monthly.
    pub frequency: RepaymentFrequency,
    /// Due date of the first installment.
    #[serde(with = "crate::codec::date")]
    pub first_repayment_date: NaiveDate,
    /// Installment rounding; `None` means the currency's unit.
    #[serde(with = "crate::codec::decimal_option")]
    pub rounding_multiple: Option<Decimal>,
}

/// What a loan is disbursed under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LoanSpec {
    /// A catalogue product (the version in force on the disbursement date)
    /// and the application against it.
    Product {
        product_id: ProductId,
        application: LoanApplication,
    },
    /// Terms given in full, outside the catalogue (e.g. loans brought over
    /// from another system): equal installments, rates per period, half-even
    /// rounding, no grace, no fees, one tranche; the branch's compulsory
    /// savings share applies.
    Terms(LoanTermsInput),
}

/// One member's line on a center meeting's collection sheet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionLine {
    /// The member.
    pub member_id: MemberId,
    /// Her repayment, if any: the loan and the amount.
    pub repayment: Option<(LoanId, Money)>,
    /// Her savings deposit, if any: the account and the amount.
    pub deposit: Option<(SavingsAccountId, Money)>,
}

/// What a client asks. Dates left `None` take their default when executed
/// (today, or the reversed entry's date), and the entry records the result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandBody {
    /// Create a branch.
    CreateBranch {
        branch_id: BranchId,
        name: Name,
        time_zone: String,
        currency: Currency,
        #[serde(with = "crate::codec::decimal")]
        compulsory_savings_percent: Decimal,
        #[serde(with = "crate::codec::date_option")]
        opened_on: Option<NaiveDate>,
    },
    /// Create a center in a branch.
    CreateCenter {
        center_id: CenterId,
        branch_id: BranchId,
        name: Name,
        #[serde(with = "crate::codec::date_option")]
        opened_on: Option<NaiveDate>,
    },
    /// Create a group in a center.
    CreateGroup {
        group_id: GroupId,
        center_id: CenterId,
        name: Name,
        #[serde(with = "crate::codec::date_option")]
        opened_on: Option<NaiveDate>,
    },
    /// Register a member in a group.
    RegisterMember {
        member_id: MemberId,
        full_name: Name,
        group_id: GroupId,
        #[serde(with = "crate::codec::date_option")]
        joined_on: Option<NaiveDate>,
    },
    /// Open a savings account.
    OpenSavingsAccount {
        member_id: MemberId,
        kind: SavingsKind,
        #[serde(with = "crate::codec::date_option")]
        opened_on: Option<NaiveDate>,
    },
    /// Deposit into savings.
    DepositSavings {
        account_id: SavingsAccountId,
        amount: Money,
        #[serde(with = "crate::codec::date_option")]
        effective_date: Option<NaiveDate>,
    },
    /// Withdraw from savings.
    WithdrawSavings {
        account_id: SavingsAccountId,
        amount: Money,
        #[serde(with = "crate::codec::date_option")]
        effective_date: Option<NaiveDate>,
    },
    /// Define a new loan product (version 1).
    CreateProduct {
        product_id: ProductId,
        rules: ProductRules,
        #[serde(with = "crate::codec::date_option")]
        effective_from: Option<NaiveDate>,
    },
    /// Change a product: its next version.
    UpdateProduct {
        product_id: ProductId,
        rules: ProductRules,
        #[serde(with = "crate::codec::date_option")]
        effective_from: Option<NaiveDate>,
    },
    /// Disburse a loan.
    DisburseLoan {
        member_id: MemberId,
        loan: LoanSpec,
        #[serde(with = "crate::codec::date_option")]
        disbursed_on: Option<NaiveDate>,
    },
    /// Disburse a further tranche of a loan.
    DisburseTranche {
        loan_id: LoanId,
        amount: Money,
        #[serde(with = "crate::codec::date_option")]
        disbursed_on: Option<NaiveDate>,
    },
    /// Write a loan's outstanding principal off to loan loss.
    WriteOffLoan {
        loan_id: LoanId,
        reason: Name,
        #[serde(with = "crate::codec::date_option")]
        effective_date: Option<NaiveDate>,
    },
    /// A center meeting's repayments and deposits, all or nothing.
    RecordCollectionSheet {
        center_id: CenterId,
        lines: Vec<CollectionLine>,
        #[serde(with = "crate::codec::date_option")]
        meeting_date: Option<NaiveDate>,
    },
    /// Repay a loan.
    RecordRepayment {
        loan_id: LoanId,
        amount: Money,
        #[serde(with = "crate::codec::date_option")]
        effective_date: Option<NaiveDate>,
    },
    /// Reverse an earlier entry.
    ReverseEntry {
        sequence: u64,
        reason: Name,
        #[serde(with = "crate::codec::date_option")]
        effective_date: Option<NaiveDate>,
    },
    /// Principals, roles and credentials (added after encoding version 3:
    /// new variants go at the end, so older entries decode unchanged).
    Access(AccessCommand),
    /// Close a branch's books through a date: no entry may be dated on or
    /// before it afterwards. Closing through 31 December also carries the
    /// year's income and expenses into retained earnings, by the entry.
    ClosePeriod {
        branch_id: BranchId,
        #[serde(with = "crate::codec::date")]
        through: NaiveDate,
    },
    /// Reopen a branch's closed books from a date on (needs a second
    /// manager's approval): they stay closed through the day before.
    ReopenPeriod {
        branch_id: BranchId,
        #[serde(with = "crate::codec::date")]
        from: NaiveDate,
        reason: Name,
    },
    /// Define a savings product (version 1), or its next version: the
    /// interest every savings account of its kind earns from
    /// `effective_from` on. One product per kind.
    DefineSavingsProduct {
        product_id: ProductId,
        name: Name,
        kind: SavingsKind,
        rules: crate::savings_interest::SavingsInterestRules,
        #[serde(with = "crate::codec::date_option")]
        effective_from: Option<NaiveDate>,
    },
    /// Post the interest a branch's savings accounts earned over the
    /// posting period ending on `period_end`, once per period.
    PostSavingsInterest {
        branch_id: BranchId,
        #[serde(with = "crate::codec::date")]
        period_end: NaiveDate,
    },
    /// Put money into a branch's cash from a funding source: cash debited,
    /// the source's line credited (head-office funding, or capital).
    FundBranch {
        branch_id: BranchId,
        source: FundingSource,
        amount: Money,
        #[serde(with = "crate::codec::date_option")]
        effective_date: Option<NaiveDate>,
    },
    /// Give money of a branch's cash back to the source it came from: the
    /// source's line debited, cash credited; never more than the branch
    /// holds from that source on any day from the return on.
    ReturnBranchFunding {
        branch_id: BranchId,
        source: FundingSource,
        amount: Money,
        #[serde(with = "crate::codec::date_option")]
        effective_date: Option<NaiveDate>,
    },
}

impl CommandBody {
    /// Snake-case name of the command, as shown in the journal.
    pub fn name(&self) -> &'static str {
        match self {
            CommandBody::CreateBranch { .. } => "create_branch",
            CommandBody::CreateCenter { .. } => "create_center",
            CommandBody::CreateGroup { .. } => "create_group",
            CommandBody::RegisterMember { .. } => "register_member",
            CommandBody::OpenSavingsAccount { .. } => "open_savings_account",
            CommandBody::DepositSavings { .. } => "deposit_savings",
            CommandBody::WithdrawSavings { .. } => "withdraw_savings",
            CommandBody::CreateProduct { .. } => "create_product",
            CommandBody::UpdateProduct { .. } => "update_product",
            CommandBody::DisburseLoan { .. } => "disburse_loan",
            CommandBody::DisburseTranche { .. } => "disburse_tranche",
            CommandBody::WriteOffLoan { .. } => "write_off_loan",
            CommandBody::RecordCollectionSheet { .. } => "record_collection_sheet",
            CommandBody::RecordRepayment { .. } => "record_repayment",
            CommandBody::ReverseEntry { .. } => "reverse_entry",
            CommandBody::Access(command) => command.name(),
            CommandBody::ClosePeriod { .. } => "close_period",
            CommandBody::ReopenPeriod { .. } => "reopen_period",
            CommandBody::DefineSavingsProduct { .. } => "define_savings_product",
            CommandBody::PostSavingsInterest { .. } => "post_savings_interest",
            CommandBody::FundBranch { .. } => "fund_branch",
            CommandBody::ReturnBranchFunding { .. } => "return_branch_funding",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode;
    use crate::ids::{LoanId, PrincipalId, RequestId};

    /// A request's hash is SHA-256 of postcard's encoding of what it
    /// covers, in each of its three shapes (before access control; with a
    /// principal; with a principal and an approval), as journals already
    /// written hold it: a retry of a request they recorded must hash the
    /// same, or it would be refused as a different request.
    #[test]
    fn a_request_hash_is_the_digest_of_the_encoding_of_what_it_covers() {
        let long = "x".repeat(56);
        let command = Command {
            request_id: RequestId::parse("request_id", "r-1").unwrap(),
            actor: Actor::parse("actor", &format!("clerk-{long}")).unwrap(),
            principal: None,
            approval: None,
            body: CommandBody::RecordRepayment {
                loan_id: LoanId::parse("loan_id", "TB-C01-G02-M0000123/L1").unwrap(),
                amount: Money {
                    amount: Decimal::from(1_005_000u64),
                    currency: Some(Currency::Vnd),
                },
                effective_date: NaiveDate::from_ymd_opt(2023, 3, 7),
            },
        };
        let digest = |bytes: Vec<u8>| -> [u8; 32] { Sha256::digest(bytes).into() };
        assert_eq!(
            command.request_hash(),
            digest(encode(&(&command.actor, &command.body)))
        );
        let principal = PrincipalId::parse("principal", &format!("maker-{long}")).unwrap();
        let with_principal = Command {
            principal: Some(principal.clone()),
            ..command.clone()
        };
        assert_eq!(
            with_principal.request_hash(),
            digest(encode(&(&principal, &command.actor, &command.body)))
        );
        let approval = Approval {
            by: PrincipalId::parse("by", "checker").unwrap(),
            request: 41,
        };
        let approved = Command {
            approval: Some(approval.clone()),
            ..with_principal.clone()
        };
        assert_eq!(
            approved.request_hash(),
            digest(encode(&(
                &principal,
                &approval,
                &command.actor,
                &command.body
            )))
        );
        // The three shapes cover different things.
        assert_ne!(command.request_hash(), with_principal.request_hash());
        assert_ne!(with_principal.request_hash(), approved.request_hash());
    }
}
