//! Arguments of the client commands. Amounts, rates and dates are strings
//! passed to the server exactly as typed; the server checks them and names
//! the field at fault.

use clap::{ArgGroup, Args, ValueEnum};

use crate::pb;

/// Arguments of `branch-create`.
#[derive(Args, Clone, Debug)]
pub struct BranchCreateArgs {
    /// Short code of the new branch, e.g. TB (1 to 32 characters of A-Z a-z 0-9 . _ -).
    pub id: String,
    /// Display name, e.g. "TYM - Chi nhánh Thái Bình".
    #[arg(long)]
    pub name: String,
    /// IANA time zone of the branch's calendar [server default: Asia/Ho_Chi_Minh].
    #[arg(long, value_name = "TZ")]
    pub time_zone: Option<String>,
    /// ISO 4217 currency of the branch's books, e.g. VND [server default: VND].
    #[arg(long)]
    pub currency: Option<String>,
    /// Share of outstanding loan principal a borrower must keep in compulsory
    /// savings, in percent, 0 to 100 [server default: 5].
    #[arg(long, value_name = "P")]
    pub compulsory_savings_percent: Option<String>,
    /// Date the branch opened, YYYY-MM-DD [default: today].
    #[arg(long, value_name = "DATE")]
    pub opened_on: Option<String>,
}

/// Arguments of `center-create`.
#[derive(Args, Clone, Debug)]
pub struct CenterCreateArgs {
    /// Id of the new center, unique in the ledger (1 to 32 characters of A-Z a-z 0-9 . _ -).
    pub id: String,
    /// Branch the center belongs to.
    #[arg(long, value_name = "BRANCH")]
    pub branch: String,
    /// Display name of the center.
    #[arg(long)]
    pub name: String,
    /// Date the center was founded, YYYY-MM-DD [default: today].
    #[arg(long, value_name = "DATE")]
    pub opened_on: Option<String>,
}

/// Arguments of `group-create`.
#[derive(Args, Clone, Debug)]
pub struct GroupCreateArgs {
    /// Id of the new group, unique in the ledger (1 to 32 characters of A-Z a-z 0-9 . _ -).
    pub id: String,
    /// Center the group meets in.
    #[arg(long, value_name = "CENTER")]
    pub center: String,
    /// Display name of the group.
    #[arg(long)]
    pub name: String,
    /// Date the group was formed, YYYY-MM-DD [default: today].
    #[arg(long, value_name = "DATE")]
    pub opened_on: Option<String>,
}

/// Arguments of `register`.
#[derive(Args, Clone, Debug)]
pub struct RegisterArgs {
    /// Member id, unique in the ledger, e.g. TB-0001.
    pub member_id: String,
    /// Full name, e.g. "Nguyễn Thị Hoa".
    #[arg(long)]
    pub name: String,
    /// Group the member belongs to (which gives her center and branch).
    #[arg(long, value_name = "GROUP")]
    pub group: String,
    /// Date she joined, YYYY-MM-DD [default: today].
    #[arg(long, value_name = "DATE")]
    pub joined_on: Option<String>,
}

/// Kind of savings account.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SavingsKindArg {
    /// Tied to loans: kept above a share of her outstanding principal (at most one per member).
    Compulsory,
    /// Withdrawable freely down to zero.
    Voluntary,
}

impl From<SavingsKindArg> for pb::SavingsKind {
    fn from(kind: SavingsKindArg) -> Self {
        match kind {
            SavingsKindArg::Compulsory => pb::SavingsKind::Compulsory,
            SavingsKindArg::Voluntary => pb::SavingsKind::Voluntary,
        }
    }
}

/// Arguments of `open-savings`.
#[derive(Args, Clone, Debug)]
pub struct OpenSavingsArgs {
    /// Member who owns the account.
    pub member_id: String,
    /// Compulsory or voluntary.
    #[arg(long, value_enum)]
    pub kind: SavingsKindArg,
    /// Date the account opened, YYYY-MM-DD [default: today].
    #[arg(long, value_name = "DATE")]
    pub opened_on: Option<String>,
}

/// Arguments of `deposit` and `withdraw`.
#[derive(Args, Clone, Debug)]
pub struct SavingsMoveArgs {
    /// Savings account, e.g. TB-0001/C1.
    pub account_id: String,
    /// Positive amount as a plain decimal, e.g. 50000 (no separators).
    pub amount: String,
    /// ISO 4217 currency of the amount [default: the branch's].
    #[arg(long)]
    pub currency: Option<String>,
    /// Business date, YYYY-MM-DD, not in the future [default: today].
    #[arg(long, value_name = "DATE")]
    pub date: Option<String>,
}

/// How interest is charged.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum MethodArg {
    /// Interest on the original principal every period.
    Flat,
    /// Interest on the outstanding balance, with equal installments.
    #[value(alias = "declining-balance")]
    Declining,
}

impl From<MethodArg> for pb::InterestMethod {
    fn from(method: MethodArg) -> Self {
        match method {
            MethodArg::Flat => pb::InterestMethod::Flat,
            MethodArg::Declining => pb::InterestMethod::DecliningBalance,
        }
    }
}

/// How often installments fall due.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum FrequencyArg {
    /// Every 7 days.
    Weekly,
    /// Every 14 days.
    Fortnightly,
    /// Every calendar month, on the first repayment's day (or the month's last day).
    Monthly,
}

impl From<FrequencyArg> for pb::RepaymentFrequency {
    fn from(frequency: FrequencyArg) -> Self {
        match frequency {
            FrequencyArg::Weekly => pb::RepaymentFrequency::Weekly,
            FrequencyArg::Fortnightly => pb::RepaymentFrequency::Fortnightly,
            FrequencyArg::Monthly => pb::RepaymentFrequency::Monthly,
        }
    }
}

/// Arguments of `disburse`.
#[derive(Args, Clone, Debug)]
pub struct DisburseArgs {
    /// Borrower; she must hold a compulsory savings account.
    pub member_id: String,
    /// Principal as a plain decimal, e.g. 10000000.
    #[arg(long, value_name = "AMOUNT")]
    pub principal: String,
    /// ISO 4217 currency of the principal [default: the branch's].
    #[arg(long)]
    pub currency: Option<String>,
    /// Annual nominal interest rate in percent, 0 to 100, e.g. 18.
    #[arg(long, value_name = "PERCENT")]
    pub rate: String,
    /// Flat or declining balance.
    #[arg(long, value_enum)]
    pub method: MethodArg,
    /// Number of installments, 1 to 520.
    #[arg(long, value_name = "N")]
    pub installments: u32,
    /// How often installments fall due.
    #[arg(long, value_enum)]
    pub frequency: FrequencyArg,
    /// Due date of the first installment, YYYY-MM-DD, after the disbursement date.
    #[arg(long, value_name = "DATE")]
    pub first_repayment: String,
    /// Round installments to a multiple of this, e.g. 1000 [default: the currency's unit].
    #[arg(long, value_name = "MULTIPLE")]
    pub rounding: Option<String>,
    /// Disbursement date, YYYY-MM-DD, not in the future [default: today].
    #[arg(long, value_name = "DATE")]
    pub date: Option<String>,
}

/// Arguments of `repay`.
#[derive(Args, Clone, Debug)]
pub struct RepayArgs {
    /// Loan repaid, e.g. TB-0001/L1.
    pub loan_id: String,
    /// Positive amount paid, at most what is outstanding (principal plus scheduled interest).
    pub amount: String,
    /// ISO 4217 currency of the amount [default: the branch's].
    #[arg(long)]
    pub currency: Option<String>,
    /// Business date, YYYY-MM-DD, not in the future nor before the loan's last
    /// transaction [default: today].
    #[arg(long, value_name = "DATE")]
    pub date: Option<String>,
}

/// Arguments of `reverse`.
#[derive(Args, Clone, Debug)]
pub struct ReverseArgs {
    /// Sequence number of the entry to reverse (a deposit, withdrawal, disbursement or repayment).
    pub sequence: u64,
    /// Why it is reversed, 1 to 200 characters.
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Business date of the reversal, YYYY-MM-DD [default: the reversed entry's date].
    #[arg(long, value_name = "DATE")]
    pub date: Option<String>,
}

/// Arguments of `balance`.
#[derive(Args, Clone, Debug)]
pub struct BalanceArgs {
    /// Account: cash:BRANCH, interest-income:BRANCH, savings:ACCOUNT_ID or
    /// loan:LOAN_ID (e.g. cash:TB, savings:TB-0001/C1, loan:TB-0001/L1).
    pub account: String,
}

/// Arguments of `member`.
#[derive(Args, Clone, Debug)]
pub struct MemberArgs {
    /// Member id, e.g. TB-0001.
    pub member_id: String,
}

/// Arguments of `loan`.
#[derive(Args, Clone, Debug)]
pub struct LoanArgs {
    /// Loan id, e.g. TB-0001/L1.
    pub loan_id: String,
    /// Date installment statuses are computed for, YYYY-MM-DD [default: today
    /// in the branch's time zone].
    #[arg(long, value_name = "DATE")]
    pub as_of: Option<String>,
}

/// Arguments of `totals`: a branch and exactly one period.
#[derive(Args, Clone, Debug)]
#[command(group(ArgGroup::new("period").required(true).args(["year", "month", "from"])))]
pub struct TotalsArgs {
    /// Branch id, e.g. TB.
    pub branch: String,
    /// A calendar year, e.g. 2024; compared with the year before.
    #[arg(long, value_name = "YEAR")]
    pub year: Option<i32>,
    /// A calendar month, YYYY-MM; compared with the month before.
    #[arg(long, value_name = "YYYY-MM")]
    pub month: Option<String>,
    /// First day of a range, YYYY-MM-DD (with --to); compared with the same
    /// number of days just before it.
    #[arg(long, value_name = "DATE", requires = "to")]
    pub from: Option<String>,
    /// Last day of the range, YYYY-MM-DD, on or after --from.
    #[arg(long, value_name = "DATE", requires = "from")]
    pub to: Option<String>,
}

/// Arguments of `journal`.
#[derive(Args, Clone, Debug)]
pub struct JournalArgs {
    /// First sequence number to show.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub from: u64,
    /// Most entries to show.
    #[arg(long, value_name = "N", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
}
